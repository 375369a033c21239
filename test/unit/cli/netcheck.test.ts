// `node netcheck` against a real cloud (AS + NMS with its mapping probe port + TRS) on loopback: asked of a running node
// daemon over its control socket (its registration untouched), then standalone once the node is stopped (log in with
// the state directory's certificate, register, probe); and the pure parts (default routes, the mapping judgement).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEnrollment, initCloud, startCloud } from '../../../src/cloud/cloud.js';
import { formatNetcheck, judgeMapping, nodeNetcheck, parseDefaultRoute } from '../../../src/cli/netcheck.js';
import { NodeDaemon } from '../../../src/node/daemon.js';
import { silentLogger } from '../../../src/util/log.js';

describe('node netcheck (real cloud on loopback)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-netcheck-'));
  const cloudDir = join(dir, 'cloud');
  const stateDir = join(dir, 'alpha');
  let cloud: Awaited<ReturnType<typeof startCloud>>;
  let node: NodeDaemon | null = null;

  before(async () => {
    await initCloud({ dir: cloudDir, advertise: ['127.0.0.1'] });
    cloud = await startCloud({ dir: cloudDir, logger: silentLogger, host: '127.0.0.1', ports: { as: 0, nms: 0, trs: 0 }, roles: ['as', 'nms', 'trs'] });
    node = new NodeDaemon({ stateDir, token: await createEnrollment(cloudDir, 'alpha'), cloud: [`127.0.0.1:${cloud.ports.as}`], port: 0, tun: false }, silentLogger);
    await node.start();
    const deadline = Date.now() + 15_000;
    const probed = (): number => cloud.nms!.counters.get('probe.independent') + cloud.nms!.counters.get('probe.open');
    // Registered, and the node's own mapping probe after its registration is in.
    while (Date.now() < deadline && !(node.status().registered && (node.status().nat === false || probed() > 0))) await new Promise((r) => setTimeout(r, 50));
    assert.ok(node.status().registered);
  });
  after(async () => {
    await node?.stop();
    await cloud?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a running node measures over its own socket: NMS and probe answered, the same endpoint at both, nothing moved', async () => {
    const before = node!.status();
    const probes = cloud.nms!.counters.get('probe.independent') + cloud.nms!.counters.get('probe.open');
    const logins = cloud.as!.counters.get('login.ok');
    const r = await nodeNetcheck(stateDir);
    assert.equal(r.source, 'daemon');
    assert.equal(r.name, 'alpha');
    assert.equal(r.nms.length, 1);
    const n = r.nms[0]!;
    assert.equal(n.registered, true);
    assert.equal(n.endpoint, `127.0.0.1:${cloud.ports.nms}`);
    assert.ok(n.rttMs !== null && n.rttMs >= 0, JSON.stringify(n));
    assert.equal(n.observed, before.observed, 'the NMS sees the socket the node registered from');
    assert.equal(n.probe?.observed, before.observed, 'the probe port sees the same endpoint');
    assert.ok(n.probe?.rttMs !== null);
    assert.equal(r.nat, before.nat);
    assert.equal(r.mapping, before.nat ? 'independent' : null);
    assert.equal(r.as.length, 1);
    assert.ok(r.as[0]!.rttMs !== null, JSON.stringify(r.as));
    // No relayed path, yet the TRS is listed (a ticket from the NMS) and timed over the node's own socket.
    assert.equal(node!.status().peers.length, 0, 'no peer, so no relayed path');
    assert.equal(r.relayListError, null);
    assert.equal(r.relays.length, 1, JSON.stringify(r.relays));
    const t = r.relays[0]!;
    assert.equal(t.relay, `127.0.0.1:${cloud.ports.trs}`);
    assert.equal(t.relayId, cloud.trs!.id);
    assert.equal(t.via, 'ticket');
    assert.ok(t.rttMs !== null && t.rttMs >= 0, JSON.stringify(t));
    assert.equal(t.observed, before.observed, 'the TRS sees the socket the node registered from');
    assert.equal(cloud.trs!.counters.get('probe.ok'), 1);
    assert.ok(!r.families.v4.addresses.includes('127.0.0.1') && !r.families.v4.addresses.includes(before.vip4!), 'loopback and overlay addresses are left out');
    // The node's registration and Common Key are untouched: no login, same endpoint, still registered.
    const after = node!.status();
    assert.equal(after.registered, true);
    assert.equal(after.observed, before.observed);
    assert.equal(cloud.as!.counters.get('login.ok'), logins, 'no new login');
    assert.equal(cloud.nms!.counters.get('probe.independent') + cloud.nms!.counters.get('probe.open'), probes + 1, 'one probe reached the NMS');
    const text = formatNetcheck(r).join('\n');
    assert.match(text, /measured by the running node/);
    assert.match(text, new RegExp(`NMS 127\\.0\\.0\\.1:${cloud.ports.nms} \\(registered\\): [0-9.]+ ms; probe port \\d+: [0-9.]+ ms`));
    assert.match(text, new RegExp(`TRS 127\\.0\\.0\\.1:${cloud.ports.trs} ${cloud.trs!.id}: [0-9.]+ ms; sees us as ${before.observed}`));
  });

  test('standalone when the node is not running: logs in with the state directory, registers once and probes', async () => {
    await node!.stop();
    node = null;
    const logins = cloud.as!.counters.get('login.ok');
    const r = await nodeNetcheck(stateDir);
    assert.equal(r.source, 'standalone');
    assert.equal(cloud.as!.counters.get('login.ok'), logins + 1);
    const n = r.nms[0]!;
    assert.equal(n.registered, true);
    assert.ok(n.rttMs !== null);
    assert.match(n.observed ?? '', /^127\.0\.0\.1:\d+$/);
    assert.equal(n.probe?.observed, n.observed);
    assert.equal(r.observed, n.observed);
    assert.equal(typeof r.nat, 'boolean');
    assert.equal(r.mapping, r.nat ? 'independent' : null);
    assert.equal(r.relays.length, 1);
    assert.ok(r.relays[0]!.rttMs !== null, JSON.stringify(r.relays));
    assert.equal(r.relays[0]!.observed, n.observed, 'probed from the socket that registered');
  });

  test('a directory without an enrolled node is refused with a typed error', async () => {
    await assert.rejects(nodeNetcheck(join(dir, 'nobody')), { code: 'ERR_NOT_ENROLLED' });
  });
});

describe('node netcheck: pure parts', () => {
  test('default routes from ip -j route output', () => {
    assert.equal(parseDefaultRoute('[{"dst":"default","gateway":"198.18.0.1","dev":"eth0","flags":[]}]'), '198.18.0.1 dev eth0');
    assert.equal(parseDefaultRoute('[{"dst":"default","dev":"ppp0","scope":"link"}]'), 'dev ppp0');
    assert.equal(parseDefaultRoute('[]'), null);
    assert.equal(parseDefaultRoute(''), null);
    assert.equal(parseDefaultRoute('{"dst":"default"}'), null);
    assert.equal(parseDefaultRoute('[{"dst":"10.0.0.0/8","gateway":"10.0.0.1"}]'), null);
  });

  test('mapping as the NMS judges it', () => {
    assert.equal(judgeMapping(false, '1.2.3.4:5', '1.2.3.4:5'), null);
    assert.equal(judgeMapping(true, '1.2.3.4:5', '1.2.3.4:5'), 'independent');
    assert.equal(judgeMapping(true, '1.2.3.4:5', '1.2.3.4:6'), 'dependent');
    assert.equal(judgeMapping(true, '1.2.3.4:5', null), 'unknown');
  });
});
