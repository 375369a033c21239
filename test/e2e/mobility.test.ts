// End-to-end mobility in network namespaces: a node with an open TCP connection (paced, checksummed) and a
// running ping moves global IPv4 → behind NAPT → IPv6-only → dual-stack → back to IPv4, with a dual-stack peer;
// the connection survives every move on the same End Key session. Then a captured endpoint update is replayed
// and forged (nothing changes), both ends move at once (they find each other again through the NMS), and the
// moved node, killed with -9, comes back from its state directory in its new network.
//
//                          global segment 198.18.0.0/24, 2001:db8::/64 (captured on <p>-inet br0)
//   [cloud] ────┬──────────────┬───────────────┬───────────────────────┐
//            [beta] dual    [mallory]      [home] NAPT (eim) ── 10.x LAN
//                           replays/forges     ▲
//   [alpha] v4 ── moves: global v4 → home LAN → global v6-only → global dual → global v4

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { CloudProc, NodeProc, REPO, waitFor, workDir, type NodeStatusJson } from '../harness/cluster.js';
import { Testbed, type Host, type Site } from '../harness/netns/index.js';
import { e2eSkip, needs } from '../harness/requires.js';

const skip = e2eSkip();
const TOOLS = join(REPO, 'dist', 'test', 'e2e', 'tools');
/** "The same End Key session" is part of what is checked: no test may run past the first rekey. */
const NODE_ARGS: string[] = []; // the default rekey (120 s) is later than the moves test ends
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('mobility: moves with a TCP transfer and a ping running (netns)', { skip, timeout: 400_000 }, () => {
  let tb: Testbed;
  let work: ReturnType<typeof workDir>;
  let cloud: CloudProc;
  let home: Site;
  let mallory: Host;
  let alpha: NodeProc;
  let beta: NodeProc;
  let b: NodeStatusJson & { vip4: string; vip6: string };
  let a: NodeStatusJson & { vip4: string; vip6: string };
  let pcap: string;

  const peerOf = async (n: NodeProc, name: string): Promise<NodeStatusJson['peers'][number] | undefined> => (await n.status()).peers.find((p) => p.name === name);
  const ping = (from: NodeProc, to: string, count: number, intervalS: number, timeoutMs: number) =>
    from.host.exec('ping', ['-n', '-q', '-c', String(count), '-i', String(intervalS), '-W', '1', to], { timeoutMs });
  const received = (out: string): { sent: number; got: number } => {
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    return m ? { sent: Number(m[1]), got: Number(m[2]) } : { sent: 0, got: 0 };
  };

  before(async () => {
    tb = await Testbed.create();
    work = workDir('mobility');
    pcap = join(work.dir, 'wire.pcap');
    cloud = new CloudProc(await tb.addHost('cloud', { site: tb.global, family: 'dual' }), work.dir);
    await cloud.init();
    await cloud.start();
    home = await tb.addSite('home', { kind: 'napt', nat: 'eim' });
    mallory = await tb.addHost('mallory', { site: tb.global, family: 'dual' });
    beta = new NodeProc(await tb.addHost('beta', { site: tb.global, family: 'dual' }), work.dir, 'beta');
    alpha = new NodeProc(await tb.addHost('alpha', { site: tb.global, family: 'v4' }), work.dir, 'alpha');
    for (const n of [beta, alpha]) n.start(await cloud.enroll(n.name), NODE_ARGS);
    [b, a] = (await Promise.all([beta.waitRegistered(), alpha.waitRegistered()])) as [typeof b, typeof a];
    await waitFor('alpha → beta tunnel', async () => (await ping(alpha, b.vip4, 1, 0.2, 5000)).code === 0, 20_000);
  });

  after(async () => {
    await tb?.cleanup();
    work?.remove();
  });

  test('global v4 → NAPT → IPv6-only → dual-stack → back: the TCP transfer survives every move on the same session, data intact; ping answered', { skip: needs('tcpdump') }, async () => {
    const cap = tb.inet.spawn('tcpdump', ['-i', 'br0', '-n', '-U', '--immediate-mode', '-s', '300', '-w', pcap, 'udp port 30000'], { logFile: join(work.dir, 'tcpdump.log') });
    await sleep(800);
    const before = (await peerOf(beta, 'alpha'))!;
    assert.ok(before.lastHandshake, 'beta has a session with alpha');
    const cloudBefore = await cloud.metrics();
    const RATE = 48 * 1024;
    const BYTES = RATE * 26;
    const server = beta.host.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'server', b.vip4, '5001'], { timeoutMs: 120_000 });
    await sleep(400);
    const client = alpha.host.exec(process.execPath, [join(TOOLS, 'tcp-paced.js'), b.vip4, '5001', String(BYTES), String(RATE)], { timeoutMs: 120_000 });
    const pinger = ping(alpha, b.vip4, 240, 0.1, 60_000);
    await sleep(1500);

    const moves: { to: Site; family: 'v4' | 'v6' | 'dual'; label: string }[] = [
      { to: home, family: 'v4', label: 'behind NAPT (eim)' },
      { to: tb.global, family: 'v6', label: 'IPv6-only' },
      { to: tb.global, family: 'dual', label: 'dual-stack' },
      { to: tb.global, family: 'v4', label: 'back to global IPv4' },
    ];
    for (const m of moves) {
      await tb.moveHost(alpha.host, m.to, { family: m.family });
      // beta sends to where alpha's traffic now comes from: its new address, or its NAPT's public one. Moved to
      // dual-stack, either: the new IPv6 address is tentative (DAD) for a second or two, so alpha may well move over
      // IPv4 first and stay there.
      const expect = m.to === home ? [home.wan4!] : m.family === 'v4' ? [alpha.host.addr4!] : m.family === 'v6' ? [alpha.host.addr6!] : [alpha.host.addr4!, alpha.host.addr6!];
      await waitFor(`beta to send to alpha ${m.label} (${expect.join(' or ')})`, async () => {
        const ep = (await peerOf(beta, 'alpha'))?.endpoint;
        return !!ep && expect.some((e) => ep.includes(e));
      }, 5000);
      // alpha re-registered with an NMS address of a family it still has.
      await waitFor(`alpha re-registered ${m.label}`, async () => {
        const s = await alpha.status();
        return s.registered && s.nms !== null && (m.family === 'v6' ? s.nms.startsWith('[') : !s.nms.startsWith('[')) && s.observed !== null;
      }, 8000);
      await sleep(2000);
    }

    const sent = JSON.parse((await client).stdout) as { bytes: number; sha256: string };
    const got = await server;
    assert.equal(got.code, 0, got.stderr);
    const recv = JSON.parse(got.stdout) as { bytes: number; sha256: string };
    assert.equal(recv.bytes, BYTES, 'every byte arrived');
    assert.equal(recv.sha256, sent.sha256, 'in order and intact');
    const p = received((await pinger).stdout);
    assert.ok(p.sent >= 200 && p.got >= p.sent * 0.85, `ping answered across the moves: ${p.got}/${p.sent}`);

    const after = (await peerOf(beta, 'alpha'))!;
    assert.equal(after.lastHandshake, before.lastHandshake, 'the End Key session was kept (no new handshake)');
    const st = await alpha.status();
    assert.ok((st.counters['mobility.update.acked'] ?? 0) >= moves.length, JSON.stringify(st.counters));
    assert.equal(st.counters['peers.reselect.no-ack'] ?? 0, 0, 'a dual-stack peer needs no new route');
    assert.equal(st.counters['peers.reselect.family'] ?? 0, 0);
    // The move to dual-stack may count twice: over IPv4 at once, then IPv6 once its address settled (DAD).
    const counted = st.mobility?.moves ?? 0;
    assert.ok(counted >= moves.length && counted <= moves.length + 1, `moves counted: ${counted}`);
    assert.deepEqual([st.vip4, st.vip6], [a.vip4, a.vip6], 'virtual addresses never change');
    // Each move was a re-registration with the still-valid Common Key (one round trip), never a new login.
    const cloudAfter = await cloud.metrics();
    const d = (k: 'as' | 'nms', c: string): number => (cloudAfter[k]?.[c] ?? 0) - (cloudBefore[k]?.[c] ?? 0);
    assert.ok(d('nms', 'register.re') >= moves.length, `re-registrations: ${d('nms', 'register.re')}`);
    assert.equal(d('as', 'login.ok'), 0, 'no new login');
    cap.kill('SIGINT');
    await sleep(500);
  });

  test('a replayed or forged endpoint update changes nothing', async () => {
    const peer = (await peerOf(beta, 'alpha'))!;
    const before = (await beta.status()).counters;
    // The last update alpha sent to beta's IPv4 address (the move back to IPv4), sent again from mallory: once as
    // captured, once with a fresh counter and a flipped byte.
    const out = JSON.parse(await mallory.run(process.execPath, [join(TOOLS, 'capsules.js'), pcap, beta.host.addr4!, '30000', '0x32'])) as { found: boolean };
    assert.equal(out.found, true, 'an endpoint update was captured');
    const delta = (c: Record<string, number>, k: string): number => (c[k] ?? 0) - (before[k] ?? 0);
    let now: Record<string, number> = {};
    await waitFor('refusals counted', async () => {
      now = (await beta.status()).counters;
      return delta(now, 'mobility.refused.replay') >= 2 && delta(now, 'mobility.refused.auth') >= 1;
    }, 5000).catch((err: Error) => assert.fail(`${err.message}: ${JSON.stringify(now)}`));
    assert.equal(delta(now, 'mobility.update.accepted'), 0);
    assert.equal((await peerOf(beta, 'alpha'))!.endpoint, peer.endpoint, 'beta still sends to alpha, not to mallory');
    const p = await ping(beta, a.vip4, 3, 0.2, 10_000);
    assert.equal(p.code, 0, 'traffic still flows');
  });

  test('both ends move at once: updates to stale endpoints go unanswered, route selection through the NMS reunites them', async () => {
    const RATE = 32 * 1024;
    const BYTES = RATE * 12;
    const server = beta.host.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'server', b.vip4, '5002'], { timeoutMs: 90_000 });
    await sleep(400);
    const client = alpha.host.exec(process.execPath, [join(TOOLS, 'tcp-paced.js'), b.vip4, '5002', String(BYTES), String(RATE)], { timeoutMs: 90_000 });
    await sleep(1500);
    await Promise.all([tb.moveHost(alpha.host, tb.global, { family: 'dual' }), tb.moveHost(beta.host, tb.global, { family: 'dual' })]);
    await waitFor('ping across after both moved', async () => (await ping(alpha, b.vip4, 1, 0.2, 3000)).code === 0, 15_000);
    const sent = JSON.parse((await client).stdout) as { bytes: number; sha256: string };
    const got = await server;
    assert.equal(got.code, 0, got.stderr);
    const recv = JSON.parse(got.stdout) as { bytes: number; sha256: string };
    assert.deepEqual(recv, sent, 'the TCP transfer survived, data intact');
    const ca = (await alpha.status()).counters;
    const cb = (await beta.status()).counters;
    assert.ok((ca['peers.reselect.no-ack'] ?? 0) + (cb['peers.reselect.no-ack'] ?? 0) >= 1, 'at least one end had to ask the NMS again');
    const back = await ping(beta, a.vip4, 3, 0.2, 10_000);
    assert.equal(back.code, 0, 'and the other way');
  });

  test('kill -9 after a move: the node restarts from its state in the new network without a token and reaches its peer', async () => {
    await tb.moveHost(alpha.host, home);
    await waitFor('alpha registered behind the NAPT', async () => (await alpha.status()).nat === true, 10_000);
    await alpha.kill9();
    alpha.start(undefined, NODE_ARGS);
    const s = await alpha.waitRegistered();
    assert.deepEqual([s.vip4, s.vip6, s.nat], [a.vip4, a.vip6, true]);
    await waitFor('alpha reaches beta again', async () => (await ping(alpha, b.vip4, 1, 0.2, 3000)).code === 0, 20_000);
    const rows = await cloud.nodes();
    assert.equal(rows.filter((r) => r.name === 'alpha').length, 1, 'no second enrollment');
  });
});
