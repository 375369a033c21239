// End-to-end test of the foundation in real network namespaces: cloud (`cloud start` with no flags: AS + NMS + TRS) on the global segment,
// nodes on the global segment, IPv6-only and behind a NAPT router; restarts after kill -9; hostile input.
//
//              global segment 198.18.0.0/24, 2001:db8::/64
//   [cloud] ─────┬──────────────┬──────────────┬──────────────────
//             [alpha]        [gamma6]       [router: nftables masquerade]
//          dual-stack      IPv6-only               │ 10.x LAN
//                                               [beta]

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { CloudProc, cyphonic, exitCode, NodeProc, waitFor, workDir, REPO } from '../harness/cluster.js';
import { Testbed, type Host } from '../harness/netns/index.js';
import { decodeToken, encodeToken } from '../../src/config/token.js';
import { contains } from '../../src/net/addr/cidr.js';
import { e2eSkip } from '../harness/requires.js';

const skip = e2eSkip();
const HOSTILE = join(REPO, 'dist', 'test', 'e2e', 'tools', 'hostile.js');

describe('foundation: cloud, PKI, enrollment, login, registration (netns)', { skip, timeout: 300_000 }, () => {
  let tb: Testbed;
  let work: ReturnType<typeof workDir>;
  let cloud: CloudProc;
  let cloudHost: Host;
  let alpha: NodeProc;
  let beta: NodeProc;
  let gamma: NodeProc;
  let betaRouterWan = '';
  const tokens: Record<string, string> = {};
  let pools = { v4: '', v6: '' };

  before(async () => {
    tb = await Testbed.create();
    work = workDir('foundation');
    cloudHost = await tb.addHost('cloud', { site: tb.global, family: 'dual' });
    const site = await tb.addSite('nat1', { kind: 'napt', nat: 'eim' });
    betaRouterWan = site.wan4!;
    const hA = await tb.addHost('alpha', { site: tb.global, family: 'dual' });
    const hG = await tb.addHost('gamma', { site: tb.global, family: 'v6' });
    const hB = await tb.addHost('beta', { site, family: 'v4' });
    cloud = new CloudProc(cloudHost, work.dir);
    await cloud.init();
    await cloud.patchConfig({ keepaliveNatSec: 1, keepaliveOpenSec: 2 });
    const cfg = JSON.parse((await cloudHost.run('cat', [join(cloud.dir, 'cloud.json')])).toString()) as { pools: { v4: string; v6: string } };
    pools = cfg.pools;
    await cloud.start([]); // the embedded defaults: AS, NMS and TRS in one process
    alpha = new NodeProc(hA, work.dir, 'alpha');
    beta = new NodeProc(hB, work.dir, 'beta');
    gamma = new NodeProc(hG, work.dir, 'gamma');
    for (const n of [alpha, beta, gamma]) tokens[n.name] = await cloud.enroll(n.name);
  });

  after(async () => {
    await tb?.cleanup();
    work?.remove();
  });

  test('nodes enroll, log in and register; NAT is detected; addresses come from the pools', async () => {
    for (const n of [alpha, beta]) n.start(tokens[n.name]);
    gamma.start(tokens['gamma'], ['--metrics', '[::1]:9101']);
    const [a, b, g] = await Promise.all([alpha.waitRegistered(), beta.waitRegistered(), gamma.waitRegistered()]);
    assert.equal(a.nat, false, 'alpha is on the global segment');
    assert.equal(g.nat, false, 'gamma (IPv6-only) is on the global segment');
    assert.equal(b.nat, true, 'beta is behind the NAPT router');
    assert.equal(b.observed?.split(':')[0], betaRouterWan, 'the NMS sees beta at the router WAN address');
    const all = [a, b, g];
    assert.equal(new Set(all.map((s) => s.vip4)).size, 3, 'distinct virtual IPv4');
    assert.equal(new Set(all.map((s) => s.vip6)).size, 3, 'distinct virtual IPv6');
    for (const s of all) {
      assert.ok(contains(pools.v4, s.vip4!), `${s.vip4} in ${pools.v4}`);
      assert.ok(contains(pools.v6, s.vip6!), `${s.vip6} in ${pools.v6}`);
      assert.equal(s.fqdn, `${s.name}.cyphonic.internal`);
    }
    const rows = await cloud.nodes();
    for (const name of ['alpha', 'beta', 'gamma']) {
      const r = rows.find((x) => x.name === name);
      assert.ok(r, `cloud nodes lists ${name}`);
      assert.equal(r.online, true, `${name} online`);
      assert.ok(r.lastSeen && !Number.isNaN(Date.parse(r.lastSeen)), 'lastSeen is an ISO time');
    }
    assert.equal(rows.find((x) => x.name === 'beta')!.nat, true);
    assert.equal(rows.find((x) => x.name === 'alpha')!.nat, false);
  });

  test('cloud start with no flags relays between the IPv4-only beta (behind NAPT) and the IPv6-only gamma', async () => {
    const g = await gamma.status();
    await waitFor('beta pings gamma through the overlay', () => beta.host.exec('ping', ['-c', '1', '-W', '2', g.vip4!]).then((r) => r.code === 0), 20_000, 500);
    assert.match(await gamma.host.run('ping', ['-c', '2', '-i', '0.3', '-W', '2', (await beta.status()).vip6!]), / 0% packet loss/);
    const peer = (await beta.status()).peers.find((p) => p.name === 'gamma');
    assert.equal(peer?.path, 'relayed', 'through the TRS the cloud runs by default');
    // node ping: by name through the overlay, each probe's RTT and the path it took.
    const ping = await cyphonic(beta.host, ['node', 'ping', 'gamma', '--state', beta.state, '--count', '3']);
    assert.match(ping, /^probe 1: [0-9.]+ ms$/m);
    assert.match(ping, /^probe 3: [0-9.]+ ms$/m);
    // gamma's --metrics (Prometheus text on its loopback): the relayed peer's bytes, and the daemon's counters.
    const scrape = await gamma.host.run(process.execPath, ['-e', "fetch('http://[::1]:9101/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
    const rx = /^cyphonic_node_peer_bytes\{peer="beta",direction="rx",path="relayed"\} (\d+)$/m.exec(scrape);
    assert.ok(rx && Number(rx[1]) > 0, `peer bytes in gamma's metrics: ${scrape.slice(0, 400)}`);
    assert.match(scrape, /^cyphonic_node_registered 1$/m);
    assert.match(ping, new RegExp(`^gamma \\(${g.vip4!.replace(/\./g, '\\.')}\\) path relayed via \\S+:4503: 3/3 answered$`, 'm'));
  });

  test('kill -9 of a node: restart with the same --state keeps identity and addresses, no new enrollment', async () => {
    const before = await alpha.status();
    const enrolled = (await cloud.metrics()).as!['enroll.ok'] ?? 0;
    await alpha.kill9();
    alpha.start(); // no token: everything comes from --state
    const now = await alpha.waitRegistered();
    assert.equal(now.nodeId, before.nodeId);
    assert.equal(now.vip4, before.vip4);
    assert.equal(now.vip6, before.vip6);
    assert.equal((await cloud.metrics()).as!['enroll.ok'] ?? 0, enrolled, 'no new enrollment');
  });

  test('kill -9 of the cloud: nodes re-register by themselves with the same addresses', async () => {
    const before = await Promise.all([alpha.status(), beta.status(), gamma.status()]);
    await cloud.kill9();
    // Long enough for every node to notice (keepalive 1-2 s + retransmissions) and start re-registering.
    await waitFor('nodes to notice the cloud is gone', async () => (await Promise.all([alpha.status(), beta.status(), gamma.status()])).every((s) => !s.registered), 30_000);
    await cloud.start([]);
    const after = await Promise.all([alpha.waitRegistered(40_000), beta.waitRegistered(40_000), gamma.waitRegistered(40_000)]);
    for (let i = 0; i < 3; i++) {
      assert.equal(after[i]!.vip4, before[i]!.vip4);
      assert.equal(after[i]!.vip6, before[i]!.vip6);
      assert.ok(Date.parse(after[i]!.lastRegistration!) > Date.parse(before[i]!.lastRegistration!), `${after[i]!.name} registered again`);
    }
    const m = await cloud.metrics();
    assert.ok((m.nms!['register.re'] ?? 0) >= 3, `re-registrations counted: ${JSON.stringify(m.nms)}`);
  });

  test('a reused token and a forged token are refused with clear codes', async () => {
    const h = alpha.host;
    const reuse = new NodeProc(h, work.dir, 'alpha-again');
    const c1 = reuse.start(tokens['alpha'], ['--port', '30001']);
    assert.notEqual(await exitCode(c1), 0);
    assert.match(reuse.tail(), /ERR_TOKEN_USED: enrollment token used/);
    const forgedToken = encodeToken({ ...decodeToken(tokens['alpha']!), secret: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
    const forged = new NodeProc(h, work.dir, 'forged');
    const c2 = forged.start(forgedToken, ['--port', '30002']);
    assert.notEqual(await exitCode(c2), 0);
    assert.match(forged.tail(), /ERR_TOKEN_INVALID: enrollment token unknown/);
    const m = await cloud.metrics();
    assert.ok((m.as!['enroll.refused.token.used'] ?? 0) >= 1);
    assert.ok((m.as!['enroll.refused.token.unknown'] ?? 0) >= 1);
  });

  test('a certificate from another CA cannot log in', async () => {
    const out = await alpha.host.run(process.execPath, [HOSTILE, 'login-foreign', `${cloudHost.addr4}:4501`, join(alpha.state, 'root.pem')]);
    const r = JSON.parse(out) as { code: string };
    assert.equal(r.code, 'ERR_CERT_INVALID', out);
  });

  test('a registration sealed with a wrong key and thousands of random/mutated datagrams are refused and counted', async () => {
    const before = await cloud.metrics();
    const refusedBefore = sumRefused(before.nms!);
    const alphaId = (await alpha.status()).nodeId;
    const wk = JSON.parse(await alpha.host.run(process.execPath, [HOSTILE, 'wrong-key', `${cloudHost.addr4}:4502`, String(alphaId)])) as { answered: number };
    assert.equal(wk.answered, 0, 'no answer to a forged registration');
    const mid = await cloud.metrics();
    assert.ok((mid.nms!['refused.auth'] ?? 0) - (before.nms!['refused.auth'] ?? 0) >= 5, 'wrong-key registrations counted');
    const fz = JSON.parse(await beta.host.run(process.execPath, [HOSTILE, 'fuzz', `${cloudHost.addr4}:4502`, '3000', '42', String(alphaId)], { timeoutMs: 60_000 })) as { sent: number; answered: number };
    assert.equal(fz.sent, 3000);
    assert.equal(fz.answered, 0, 'the NMS never answers garbage');
    const afterFuzz = await cloud.metrics();
    assert.ok(sumRefused(afterFuzz.nms!) - refusedBefore >= 3000, `refusals counted: ${JSON.stringify(afterFuzz.nms)}`);
    // The good nodes kept their registration and keep being seen.
    const t0 = Date.now();
    await waitFor('keepalives after the fuzz', async () => {
      const rows = await cloud.nodes();
      return ['alpha', 'beta', 'gamma'].every((n) => {
        const r = rows.find((x) => x.name === n);
        return r?.online && Date.parse(r.lastSeen!) > t0;
      });
    }, 15_000);
    for (const n of [alpha, beta, gamma]) assert.equal((await n.status()).registered, true);
  });

  test('a revoked node can no longer log in or register', async () => {
    await cyphonic(cloudHost, ['cloud', 'revoke', 'gamma', '--dir', cloud.dir]);
    await waitFor('gamma to lose its registration', async () => !(await gamma.status()).registered, 30_000);
    await waitFor('the AS to refuse the revoked certificate', async () => ((await cloud.metrics()).as!['login.refused.revoked'] ?? 0) >= 1, 30_000);
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal((await gamma.status()).registered, false);
    const rows = await cloud.nodes();
    assert.equal(rows.find((x) => x.name === 'gamma')!.online, false);
    assert.equal((await alpha.status()).registered, true, 'other nodes unaffected');
  });
});

function sumRefused(m: Record<string, number>): number {
  return Object.entries(m).filter(([k]) => k.startsWith('refused.')).reduce((a, [, v]) => a + v, 0);
}
