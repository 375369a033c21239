// End-to-end test of the access policy on the namespace testbed: three nodes tagged ops / cam / none under a policy
// that allows ops → cam on icmp and tcp:2222. The allowed flows work on both overlay families; tcp:2223, udp:2222, the
// reverse direction and the untagged node are refused (no route, no DNS answer, or dropped by the receiving node's
// filter in its data-plane engine); `cloud policy check` agrees; raw packets an insider with valid session keys writes
// into its TUN get nothing through; an invalid policy file is refused and the old one holds; a policy change and a tag
// change reach the running nodes within 5 s (PolicyUpdate pushed by the NMS) without a new handshake; a revocation
// closes the peer's tunnel both ways within 5 s and reaches the cloud's TRS (RelayRevoke) within the same 5 s; a
// revocation of one end of a relayed pair (IPv4-only ↔ IPv6-only through the TRS) during a ping and a TCP transfer
// stops the traffic at the other end and at the TRS (its path dropped, nothing forwarded) within 5 s.
//
//   global segment 198.18.0.0/24, 2001:db8::/64
//   [cloud] ──────┬──────────────┬──────────────┬─────────────────┬──────────────────┐
//    (TRS :4503) [ops1] tag ops  [cam1] tag cam  [plain] no tag  [r4] v4-only, ops  [r6] v6-only, cam

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CloudProc, cyphonic, NodeProc, REPO, useOverlayDns, waitFor, workDir, type NodeStatusJson } from '../harness/cluster.js';
import { Testbed, type Host } from '../harness/netns/index.js';
import { e2eSkip, needs } from '../harness/requires.js';

const skip = e2eSkip();
const PROBE = join(REPO, 'test', 'e2e', 'tools', 'policy-probe.py');
const TOOLS = join(REPO, 'dist', 'test', 'e2e', 'tools');
const POLICY = { allow: [{ from: ['tag:ops'], to: ['tag:cam'], ports: ['icmp', 'tcp:2222'] }] };

type Up = NodeStatusJson & { vip4: string; vip6: string };

describe('access policy: tags, policy file, enforcement at the NMS, DNS and each node\'s filter (netns)', { skip, timeout: 180_000 }, () => {
  let tb: Testbed;
  let work: ReturnType<typeof workDir>;
  let cloud: CloudProc;
  let ops: NodeProc;
  let cam: NodeProc;
  let plain: NodeProc;
  /** A relayed pair: r4 reaches r6 only through the TRS. */
  let r4: NodeProc;
  let r6: NodeProc;
  let o: Up;
  let c: Up;
  let p: Up;
  let freshPolicy: unknown;
  const undo: (() => void)[] = [];
  let trs: ChildProcess | undefined;

  const cli = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    cloud.host.exec(process.execPath, [join(REPO, 'bin', 'cyphonic.js'), ...args, '--dir', cloud.dir]);
  const ping = (h: Host, fam: 4 | 6, to: string): Promise<number> => h.exec('ping', [`-${fam}`, '-n', '-c', '2', '-i', '0.2', '-W', '1', to]).then((r) => r.code);
  const connect = (h: Host, addr: string, port: number): Promise<number> => h.exec('python3', [PROBE, 'connect', addr, String(port)]).then((r) => r.code);
  const counters = async (n: NodeProc): Promise<Record<string, number>> => (await n.status()).counters;
  /** Runs a listener on `h` while `body` runs; returns what it counted. */
  async function serving(h: Host, specs: string, secs: number, body: () => Promise<void>): Promise<Record<string, number>> {
    const server = h.exec('python3', [PROBE, 'serve', String(secs), specs], { timeoutMs: (secs + 10) * 1000 });
    await new Promise((r) => setTimeout(r, 400));
    await body();
    const r = await server;
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Record<string, number>;
  }

  before(async () => {
    tb = await Testbed.create();
    work = workDir('policy');
    cloud = new CloudProc(await tb.addHost('cloud', { site: tb.global, family: 'dual' }), work.dir);
    await cloud.init();
    freshPolicy = JSON.parse(await cyphonic(cloud.host, ['cloud', 'policy', 'show', '--dir', cloud.dir, '--json']));
    await cloud.start();
    trs = await cloud.startTrs(4503); // a TRS process: the revocation case checks it hears of the revocation
    ops = new NodeProc(await tb.addHost('ops1', { site: tb.global, family: 'dual' }), work.dir, 'ops1');
    cam = new NodeProc(await tb.addHost('cam1', { site: tb.global, family: 'dual' }), work.dir, 'cam1');
    plain = new NodeProc(await tb.addHost('plain', { site: tb.global, family: 'dual' }), work.dir, 'plain');
    ops.start((await cyphonic(cloud.host, ['cloud', 'enroll', 'ops1', '--tags', 'ops', '--dir', cloud.dir])).trim());
    cam.start((await cyphonic(cloud.host, ['cloud', 'enroll', 'cam1', '--tags', 'cam', '--dir', cloud.dir])).trim());
    plain.start(await cloud.enroll('plain'));
    r4 = new NodeProc(await tb.addHost('r4', { site: tb.global, family: 'v4' }), work.dir, 'r4');
    r6 = new NodeProc(await tb.addHost('r6', { site: tb.global, family: 'v6' }), work.dir, 'r6');
    r4.start((await cyphonic(cloud.host, ['cloud', 'enroll', 'r4', '--tags', 'ops', '--dir', cloud.dir])).trim());
    r6.start((await cyphonic(cloud.host, ['cloud', 'enroll', 'r6', '--tags', 'cam', '--dir', cloud.dir])).trim());
    [o, c, p] = (await Promise.all([ops.waitRegistered(), cam.waitRegistered(), plain.waitRegistered(), r4.waitRegistered(), r6.waitRegistered()])) as Up[] as [Up, Up, Up];
    undo.push(useOverlayDns(ops.host, o.dns!), useOverlayDns(cam.host, c.dns!), useOverlayDns(plain.host, p.dns!));
  });

  after(async () => {
    trs?.kill('SIGKILL');
    for (const u of undo) u();
    await tb?.cleanup();
    work?.remove();
  });

  test('a fresh cloud allows everything; policy set takes a valid file; tags show in cloud nodes', async () => {
    assert.deepEqual(freshPolicy, { allow: [{ from: ['*'], to: ['*'], ports: ['*'] }] });
    const file = join(work.dir, 'policy.json');
    writeFileSync(file, JSON.stringify(POLICY));
    const set = await cli(['cloud', 'policy', 'set', file]);
    assert.equal(set.code, 0, set.stderr);
    assert.deepEqual(JSON.parse((await cli(['cloud', 'policy', 'show', '--json'])).stdout), POLICY);
    const tags = Object.fromEntries((await cloud.nodes()).map((n) => [n.name, n.tags]));
    assert.deepEqual(tags, { ops1: ['ops'], cam1: ['cam'], plain: [], r4: ['ops'], r6: ['cam'] });
  });

  test('ops → cam: ping by name and TCP 2222 work on both overlay families; each side shows what its peer may open', async () => {
    for (const fam of [4, 6] as const) assert.equal(await ping(ops.host, fam, 'cam1.cyphonic.internal'), 0, `ping -${fam}`);
    const got = await serving(cam.host, 'tcp:2222', 4, async () => {
      assert.equal(await connect(ops.host, c.vip4, 2222), 0, 'tcp:2222 over IPv4');
      assert.equal(await connect(ops.host, c.vip6, 2222), 0, 'tcp:2222 over IPv6');
    });
    assert.equal(got['tcp:2222'], 2);
    const atCam = (await cam.status()).peers.find((x) => x.name === 'ops1');
    const atOps = (await ops.status()).peers.find((x) => x.name === 'cam1');
    assert.deepEqual(atCam?.allowed, ['icmp', 'tcp:2222']);
    assert.deepEqual(atOps?.allowed, []);
    const check = await cli(['cloud', 'policy', 'check', 'ops1', 'cam1', 'tcp:2222']);
    assert.equal(check.code, 0);
    assert.match(check.stdout, /allowed: .* by rule 0 .*"tag:ops"/);
    assert.equal((await cli(['cloud', 'policy', 'check', 'ops1', 'cam1', 'icmp'])).code, 0);
  });

  test('tcp:2223, udp:2222 and the reverse direction are dropped by the receiving node\'s filter; policy check agrees', async () => {
    const camBefore = await counters(cam);
    const opsBefore = await counters(ops);
    const atCam = await serving(cam.host, 'tcp:2223,udp:2222', 6, async () => {
      for (const addr of [c.vip4, c.vip6]) {
        assert.equal(await connect(ops.host, addr, 2223), 1, `tcp:2223 to ${addr}`);
        await ops.host.run('python3', [PROBE, 'udp', addr, '2222', '3']);
      }
    });
    assert.deepEqual(atCam, { 'tcp:2223': 0, 'udp:2222': 0 });
    // cam has a tunnel to ops (ops opened it) and ignores nothing on its side: ops's filter must refuse it.
    const atOps = await serving(ops.host, 'tcp:2222', 8, async () => {
      for (const fam of [4, 6] as const) assert.notEqual(await ping(cam.host, fam, fam === 4 ? o.vip4 : o.vip6), 0, `cam pings ops -${fam}`);
      assert.equal(await connect(cam.host, o.vip4, 2222), 1);
    });
    assert.deepEqual(atOps, { 'tcp:2222': 0 });
    const camDrops = (await counters(cam))['filter.dropNoRule']! - (camBefore['filter.dropNoRule'] ?? 0);
    const opsDrops = (await counters(ops))['filter.dropNoRule']! - (opsBefore['filter.dropNoRule'] ?? 0);
    assert.ok(camDrops >= 8, `cam's filter dropped ops's refused flows (${camDrops})`);
    assert.ok(opsDrops >= 5, `ops's filter dropped cam's flows (${opsDrops})`);
    for (const [from, to, port] of [['ops1', 'cam1', 'tcp:2223'], ['ops1', 'cam1', 'udp:2222'], ['cam1', 'ops1', 'tcp:2222'], ['plain', 'cam1', 'icmp']]) {
      const r = await cli(['cloud', 'policy', 'check', from!, to!, port!]);
      assert.equal(r.code, 1, `${from} -> ${to} ${port}: ${r.stdout}`);
      assert.match(r.stdout, /denied: .*no rule allows it/);
    }
  });

  test('the untagged node gets no route and no DNS answer, and reaches nobody', { skip: needs('dig') }, async () => {
    const nx = await ops.host.run('dig', [`@${o.dns}`, 'plain.cyphonic.internal', 'A', '+tries=1', '+time=3']);
    assert.match(nx, /status: NXDOMAIN/, 'ops\'s DNS does not answer for plain');
    const nx2 = await plain.host.run('dig', [`@${p.dns}`, 'cam1.cyphonic.internal', 'AAAA', '+tries=1', '+time=3']);
    assert.match(nx2, /status: NXDOMAIN/, 'plain\'s DNS does not answer for cam1');
    assert.notEqual(await ping(plain.host, 4, c.vip4), 0);
    assert.notEqual(await ping(ops.host, 6, p.vip6), 0);
    assert.equal((await plain.status()).peers.length, 0, 'plain has no tunnel');
    const nms = (await cloud.metrics()).nms!;
    assert.ok((nms['route.refused.policy'] ?? 0) >= 4, JSON.stringify(nms));
  });

  test('an insider with valid session keys (cam) writing raw packets into its TUN gets nothing through ops\'s filter', async () => {
    assert.equal(await ping(ops.host, 4, c.vip4), 0, 'the tunnel is up');
    const before = await counters(ops);
    const got = await serving(ops.host, 'tcp:40100,udp:40100', 4, async () => {
      const out = JSON.parse(await cam.host.run('python3', [PROBE, 'raw', c.vip4, o.vip4, c.vip6, o.vip6, '40100', '5'])) as { sent: number };
      assert.equal(out.sent, 40);
    });
    assert.deepEqual(got, { 'tcp:40100': 0, 'udp:40100': 0 });
    let after: Record<string, number> = {};
    await waitFor('raw packets dropped at ops', async () => {
      after = await counters(ops);
      return (after['filter.dropNoRule'] ?? 0) - (before['filter.dropNoRule'] ?? 0) >= 40;
    }, 5000).catch((err: Error) => assert.fail(`${err.message}: ${JSON.stringify(after)}`));
    assert.equal((after['data.spoofed'] ?? 0) - (before['data.spoofed'] ?? 0), 0, 'the sources were cam\'s own: the policy dropped them, not the source check');
    assert.equal(await ping(ops.host, 6, c.vip6), 0, 'allowed traffic still flows');
  });

  test('an invalid policy file is refused with the problem named, and the old policy still holds', async () => {
    const file = join(work.dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ allow: [{ from: ['tag:ops'], to: ['*'], ports: ['tcp:99999'] }] }));
    const r = await cli(['cloud', 'policy', 'set', file]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_POLICY: allow\[0\]\.ports\[0\]: "99999" is not a port number/);
    writeFileSync(file, '{"allow": [');
    assert.match((await cli(['cloud', 'policy', 'set', file])).stderr, /ERR_POLICY: not valid JSON/);
    assert.deepEqual(JSON.parse((await cli(['cloud', 'policy', 'show', '--json'])).stdout), POLICY);
    assert.equal((await cli(['cloud', 'policy', 'check', 'ops1', 'plain', 'tcp:22'])).code, 1);
    assert.notEqual(await ping(ops.host, 4, p.vip4), 0, 'ops still reaches nothing of plain');
  });

  test('general-node add --tags tags a general node; tags refuse bad names; policy check sees general nodes', async () => {
    const add = await cli(['cloud', 'general-node', 'add', 'cam2', '--mac', '52:54:00:aa:bb:02', '--adapter', 'ops1', '--tags', 'cam,lab', '--json']);
    assert.equal(add.code, 0, add.stderr);
    assert.deepEqual((JSON.parse(add.stdout) as { tags: string[] }).tags, ['cam', 'lab']);
    assert.deepEqual((await cloud.nodes()).find((n) => n.name === 'cam2')?.tags, ['cam', 'lab']);
    assert.equal((await cli(['cloud', 'policy', 'check', 'ops1', 'cam2', 'tcp:2222'])).code, 0);
    const bad = await cli(['cloud', 'tags', 'cam2', '--set', 'Bad Tag']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /ERR_BAD_TAG/);
    assert.equal((await cli(['cloud', 'enroll', 'x1', '--tags', 'UPPER'])).code, 1, 'no token for a bad tag');
  });

  test('a policy change and a tag change reach the running nodes within 5 s; the allowed tunnel keeps its session', async () => {
    const hs = async (): Promise<[string | null | undefined, string | null | undefined]> => [
      (await cam.status()).peers.find((x) => x.name === 'ops1')?.lastHandshake,
      (await ops.status()).peers.find((x) => x.name === 'cam1')?.lastHandshake,
    ];
    const before = await hs();
    assert.ok(before[0] && before[1], 'the tunnel is up at both ends');
    const file = join(work.dir, 'policy2.json');
    writeFileSync(file, JSON.stringify({ allow: [{ from: ['tag:ops'], to: ['tag:cam'], ports: ['icmp', 'tcp:2222-2223'] }] }));
    const t0 = Date.now();
    assert.equal((await cli(['cloud', 'policy', 'set', file])).code, 0);
    await waitFor('cam\'s filter takes the new ports', async () => (await cam.status()).peers.find((x) => x.name === 'ops1')?.allowed?.includes('tcp:2222-2223'), 5000, 100);
    const tookPolicy = Date.now() - t0;
    const got = await serving(cam.host, 'tcp:2223', 3, async () => {
      assert.equal(await connect(ops.host, c.vip4, 2223), 0, 'tcp:2223 now allowed');
    });
    assert.equal(got['tcp:2223'], 1);
    // cam loses its tag: no rule connects the pair; ops's pings stop at cam's filter, and ops's DNS stops answering.
    const t1 = Date.now();
    assert.equal((await cli(['cloud', 'tags', 'cam1', '--set', 'video'])).code, 0);
    await waitFor('cam\'s filter refuses ops', async () => (await cam.status()).peers.find((x) => x.name === 'ops1')?.allowed?.length === 0, 5000, 100);
    const tookTags = Date.now() - t1;
    assert.notEqual(await ping(ops.host, 4, c.vip4), 0, 'ping refused after the tag change');
    if (!needs('dig')) assert.match(await ops.host.run('dig', [`@${o.dns}`, 'cam1.cyphonic.internal', 'A', '+tries=1', '+time=3']), /status: NXDOMAIN/);
    assert.equal((await cli(['cloud', 'tags', 'cam1', '--set', 'cam'])).code, 0);
    await waitFor('the tag back: ping works again', async () => (await ping(ops.host, 6, c.vip6)) === 0, 5000, 100);
    assert.deepEqual(await hs(), before, 'no new handshake: the session survived every change');
    process.stdout.write(`# policy set -> cam's filter: ${tookPolicy} ms; tag change -> cam's filter: ${tookTags} ms\n`);
  });

  test('revocation during a running ping: within 5 s the peer closes the tunnel both ways', async () => {
    assert.equal(await ping(ops.host, 4, c.vip4), 0, 'the tunnel is up');
    const before = await counters(ops);
    const running = ops.host.exec('ping', ['-4', '-n', '-i', '0.1', '-c', '60', '-W', '1', c.vip4], { timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = Date.now();
    assert.equal((await cli(['cloud', 'revoke', 'cam1'])).code, 0);
    await waitFor('ops closes its tunnel to cam1', async () => (await ops.status()).peers.find((x) => x.name === 'cam1')?.revoked === true, 5000, 100);
    const took = Date.now() - t0;
    // The cloud's TRS was told too (RelayRevoke): it would drop cam1's relayed paths (test/unit/cloud/trs-revoke.test.ts).
    const trsCounters = async (): Promise<Record<string, number>> =>
      (JSON.parse((await cli(['cloud', 'stats'])).stdout) as { trsProcesses: Record<string, { counters: Record<string, number> }> }).trsProcesses['trs-4503']!.counters;
    await waitFor('the TRS has the revocation', async () => (await trsCounters())['revoke.received'] === 1, Math.max(500, 5000 - (Date.now() - t0)), 200);
    const out = (await running).stdout;
    const after = await counters(ops);
    const received = Number(/(\d+) received/.exec(out)?.[1] ?? -1);
    assert.ok(received > 5 && received < 55, `the ping ran, then stopped: ${out}`);
    assert.ok((after['filter.dropRevokedOut'] ?? 0) - (before['filter.dropRevokedOut'] ?? 0) >= 5, 'ops sends nothing to cam1 any more');
    // cam1 still runs and still holds the session: what it sends is dropped at ops.
    assert.notEqual(await ping(cam.host, 4, o.vip4), 0);
    assert.ok((await counters(ops))['filter.dropRevoked']! - (before['filter.dropRevoked'] ?? 0) >= 1, 'cam1\'s packets dropped at ops');
    process.stdout.write(`# cloud revoke -> tunnel closed at the peer: ${took} ms\n`);
  });

  test('revocation of one end of a relayed pair during a ping and a TCP transfer: within 5 s traffic stops at the peer and at the TRS', async () => {
    const trsStats = async (): Promise<Record<string, number>> =>
      (JSON.parse((await cli(['cloud', 'stats'])).stdout) as { trsProcesses: Record<string, { counters: Record<string, number> }> }).trsProcesses['trs-4503']!.counters;
    const v6 = (await r6.status()) as Up;
    // r4 (IPv4 only, tag ops) → r6 (IPv6 only, tag cam): allowed (icmp, tcp:2222-2223), only through the TRS.
    await waitFor('r4 → r6 through the TRS', async () => (await r4.host.exec('ping', ['-4', '-n', '-c', '1', '-W', '1', v6.vip4])).code === 0, 20_000, 200);
    const peer = async (n: NodeProc, name: string) => (await n.status()).peers.find((x) => x.name === name);
    assert.equal((await peer(r4, 'r6'))?.path, 'relayed');
    const server = r6.host.spawn(process.execPath, [join(TOOLS, 'tcp-check.js'), 'server', v6.vip4, '2222'], { logFile: join(work.dir, 'relay-tcp-server.log') });
    await new Promise((r) => setTimeout(r, 400));
    const sender = r4.host.spawn(process.execPath, [join(TOOLS, 'tcp-paced.js'), v6.vip4, '2222', String(4 << 20), String(256 * 1024)], { logFile: join(work.dir, 'relay-tcp-client.log') });
    try {
      // 15 s of pings, each reply stamped (-D: wall-clock time, the clock Date.now() reads): long enough to outlast a
      // slow revocation on a loaded machine, so the replies before it and the silence after it are both seen.
      const ping = r4.host.exec('ping', ['-4', '-n', '-D', '-i', '0.1', '-c', '150', '-W', '1', v6.vip4], { timeoutMs: 30_000 });
      await new Promise((r) => setTimeout(r, 1500));
      const rx0 = (await peer(r6, 'r4'))?.rxBytes ?? 0;
      const trs0 = await trsStats();
      assert.ok(trs0['paths']! >= 1, 'the TRS holds the relayed path');
      assert.ok(rx0 > 200_000, `the transfer runs through the TRS (r6 received ${rx0} B)`);
      const t0 = Date.now();
      assert.equal((await cli(['cloud', 'revoke', 'r6'])).code, 0);
      await waitFor('r4 closes its tunnel to r6', async () => (await peer(r4, 'r6'))?.revoked === true, 5000, 100);
      await waitFor('the TRS drops the relayed path', async () => {
        const t = await trsStats();
        return t['paths.revoked']! >= 1 && t['paths'] === trs0['paths']! - 1;
      }, Math.max(500, 5000 - (Date.now() - t0)), 200);
      const tDone = Date.now();
      const took = tDone - t0;
      // Nothing moves any more: the TRS forwards nothing, r6 receives nothing from r4 and r4 nothing from r6 (both
      // still run and keep trying: r4's sends stop at its filter, r6's at the TRS).
      const [trs1, atR6, atR4, r4c] = [await trsStats(), await peer(r6, 'r4'), await peer(r4, 'r6'), (await r4.status()).counters];
      await new Promise((r) => setTimeout(r, 1500));
      const [trs2, atR6b, atR4b, r4c2] = [await trsStats(), await peer(r6, 'r4'), await peer(r4, 'r6'), (await r4.status()).counters];
      assert.equal(trs2['forwarded'], trs1['forwarded'], 'the TRS forwards nothing for the pair');
      assert.equal(atR6b?.rxBytes, atR6?.rxBytes, 'r6 receives nothing');
      assert.equal(atR4b?.rxBytes, atR4?.rxBytes, 'r4 receives nothing');
      assert.ok((r4c2['filter.dropRevokedOut'] ?? 0) > (r4c['filter.dropRevokedOut'] ?? 0), 'r4\'s pings and segments stop at its filter');
      const out = (await ping).stdout;
      const replies = [...out.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from /gm)].map((m) => Number(m[1]) * 1000);
      const sent = Number(/(\d+) packets transmitted/.exec(out)?.[1] ?? -1);
      assert.ok(replies.filter((t) => t < t0).length > 5, `the ping ran before the revocation: ${out}`);
      assert.deepEqual(replies.filter((t) => t > tDone), [], `no reply after the revocation took effect: ${out}`);
      assert.ok(sent - replies.length >= 10, `the ping went on after the revocation and was not answered: ${out}`);
      process.stdout.write(`# cloud revoke r6 (relayed) -> peer closed and TRS path dropped: ${took} ms\n`);
    } finally {
      sender.kill('SIGKILL');
      server.kill('SIGKILL');
    }
  });
});
