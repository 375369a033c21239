// End-to-end test of path choice across NATs and address families (issue #5), in network namespaces: direct,
// punched and relayed paths, chosen by the NMS from what registration learned (NAT, mapping probe), the TRS
// forwarding what it cannot read, and a TRS killed under a TCP transfer.
//
//                        global segment (198.18.0.0/24, 2001:db8::/64)
//   [cloud] AS+NMS, TRS :4503, TRS :4513 ──┬──────┬──────┬───────────┬───────────────┬───────────────┐
//                                        [g4]   [g6]   [gd]      [siteA] eim      [siteB] eim     [siteC] random
//                                       v4-only v6-only dual     ├─ [e1]          └─ [e2]          └─ [r1]
//                                                                └─ [e1b] (same NAPT as e1)       (answers unsolicited UDP
//                                                                                                   with port unreachable)
//   [siteD] eim └─ [e4]: its punch with e2 is blocked at first (falls back to a relay), then allowed (moves to it)
//
// Every pair pings by name on both overlay families and moves 256 KiB over TCP with a checksum; each end's
// `node status` must show the path type the rules in src/cloud/nms/paths.ts give (the table below).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { CLI, CloudProc, NodeProc, REPO, waitFor, useOverlayDns, workDir, type NodeStatusJson } from '../harness/cluster.js';
import { Testbed, type Host } from '../harness/netns/index.js';
import { e2eSkip, needs } from '../harness/requires.js';

const skip = e2eSkip();
const TOOLS = join(REPO, 'dist', 'test', 'e2e', 'tools');


type PathName = 'direct' | 'punched' | 'relayed';

/** The site matrix: [initiator, responder, expected path]. e1b's own NAT mapping is learned, so its punch pair is computed. */
const PAIRS: [string, string, PathName | 'by-mapping'][] = [
  ['g4', 'g6', 'relayed'], // IPv4-only against IPv6-only
  ['g4', 'gd', 'direct'],
  ['g4', 'e1', 'direct'], // the responder behind NAT opens the way
  ['g4', 'r1', 'direct'], // … also through a random-port NAT
  ['g6', 'gd', 'direct'],
  ['g6', 'e2', 'relayed'], // IPv6-only against an IPv4 NAPT
  ['gd', 'r1', 'direct'],
  ['gd', 'e1b', 'direct'],
  ['e1', 'e1b', 'direct'], // same NAPT: LAN endpoints
  ['e1', 'e2', 'punched'], // two endpoint-independent NAPTs
  ['e1', 'r1', 'relayed'], // EIM against random-port: not punchable under port-dependent filtering
  ['e2', 'r1', 'relayed'],
  ['r1', 'g4', 'direct'], // initiator behind NAT, responder reachable (path already up from g4: reused)
  ['e1b', 'e2', 'by-mapping'],
];

describe('NAT traversal: direct, punched and relayed paths; TRS failover (netns)', { skip, timeout: 600_000 }, () => {
  let tb: Testbed;
  let work: ReturnType<typeof workDir>;
  let cloud: CloudProc;
  const trs = new Map<number, ChildProcess>();
  const nodes = new Map<string, NodeProc>();
  const st = new Map<string, NodeStatusJson>();
  const undo: (() => void)[] = [];

  const startTrs = (port: number): void => {
    trs.set(port, cloud.host.spawn(process.execPath, [CLI, 'cloud', 'start', '--dir', cloud.dir, '--roles', 'trs', '--trs-port', String(port)], { logFile: join(work.dir, `trs-${port}.log`) }));
  };

  before(async () => {
    tb = await Testbed.create();
    work = workDir('nat');
    const cloudHost = await tb.addHost('cloud', { site: tb.global, family: 'dual' });
    cloud = new CloudProc(cloudHost, work.dir);
    await cloud.init();
    await cloud.start();
    startTrs(4503);
    startTrs(4513);
    await waitFor('two live TRS', async () => {
      const out = await cloudHost.run(process.execPath, [CLI, 'cloud', 'relays', '--dir', cloud.dir, '--json']);
      return (JSON.parse(out) as { live: boolean }[]).filter((r) => r.live).length === 2;
    }, 20_000);
    const siteA = await tb.addSite('siteA', { kind: 'napt', nat: 'eim' });
    const siteB = await tb.addSite('siteB', { kind: 'napt', nat: 'eim' });
    // siteC answers unsolicited inbound UDP with ICMP port unreachable (as many home routers and plain hosts do);
    // the others drop it silently.
    const siteC = await tb.addSite('siteC', { kind: 'napt', nat: 'random', unsolicited: 'reject' });
    const siteD = await tb.addSite('siteD', { kind: 'napt', nat: 'eim' });
    const hosts: [string, Host][] = [
      ['g4', await tb.addHost('g4', { site: tb.global, family: 'v4' })],
      ['g6', await tb.addHost('g6', { site: tb.global, family: 'v6' })],
      ['gd', await tb.addHost('gd', { site: tb.global, family: 'dual' })],
      ['e1', await tb.addHost('e1', { site: siteA })],
      ['e1b', await tb.addHost('e1b', { site: siteA })],
      ['e2', await tb.addHost('e2', { site: siteB })],
      ['r1', await tb.addHost('r1', { site: siteC })],
      ['e4', await tb.addHost('e4', { site: siteD })],
    ];
    for (const [name, host] of hosts) {
      const n = new NodeProc(host, work.dir, name);
      nodes.set(name, n);
      n.start(await cloud.enroll(name), ['--path-keepalive', '2', '--punch-retry', '3']);
    }
    for (const [name, n] of nodes) {
      const s = await n.waitRegistered(60_000);
      st.set(name, s);
      undo.push(useOverlayDns(n.host, s.dns!));
    }
  });

  after(async () => {
    for (const u of undo) u();
    for (const c of trs.values()) c.kill('SIGKILL');
    await tb?.cleanup();
    work?.remove();
  });

  const node = (n: string): NodeProc => nodes.get(n)!;
  const vip4 = (n: string): string => st.get(n)!.vip4!;

  async function tcp(from: string, to: string, port: number, bytes: number, opts: { marker?: string; paceMs?: number; during?: () => Promise<void> } = {}): Promise<void> {
    const server = node(to).host.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'server', vip4(to), String(port)], { timeoutMs: 150_000 });
    await new Promise((r) => setTimeout(r, 400));
    const client = node(from).host.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'client', vip4(to), String(port), String(bytes), opts.marker ?? 'x'], {
      timeoutMs: 150_000,
      ...(opts.paceMs ? { env: { TCP_CHECK_PACE_MS: String(opts.paceMs) } } : {}),
    });
    if (opts.during) await opts.during();
    const [c, s] = await Promise.all([client, server]);
    assert.equal(c.code, 0, `${from} -> ${to} client: ${c.stderr}`);
    assert.equal(s.code, 0, `${from} -> ${to} server: ${s.stderr}`);
    const sent = JSON.parse(c.stdout) as { bytes: number; sha256: string };
    const got = JSON.parse(s.stdout) as { bytes: number; sha256: string };
    assert.equal(got.bytes, bytes, `${from} -> ${to}: bytes`);
    assert.equal(got.sha256, sent.sha256, `${from} -> ${to}: checksum`);
  }

  test('registration learns NAT and mapping behaviour (cloud nodes)', async () => {
    const rows = await waitFor('mapping probes', async () => {
      const r = await cloud.nodes();
      return ['e1', 'e2', 'r1'].every((n) => r.find((x) => x.name === n)?.mapping) ? r : null;
    }, 15_000);
    const row = (n: string) => rows.find((x) => x.name === n)!;
    for (const n of ['g4', 'g6', 'gd']) assert.equal(row(n).nat, false, n);
    for (const n of ['e1', 'e1b', 'e2', 'r1']) assert.equal(row(n).nat, true, n);
    assert.equal(row('e1').mapping, 'independent', 'EIM NAPT keeps the public port for a new destination');
    assert.equal(row('e2').mapping, 'independent');
    assert.equal(row('r1').mapping, 'dependent', 'random-port NAPT picks a new port per destination');
    const text = await cloud.host.run(process.execPath, [CLI, 'cloud', 'nodes', '--dir', cloud.dir]);
    assert.match(text, /mapping/);
  });

  test('node netcheck on running nodes: NAT and mapping behind an EIM and a random-port NAPT, none on the open net; families', async () => {
    type Report = { source: string; nat: boolean | null; mapping: string | null; observed: string | null; families: { v4: { addresses: string[]; defaultRoute: string | null }; v6: { addresses: string[]; defaultRoute: string | null } }; nms: { registered: boolean; rttMs: number | null }[]; as: { endpoint: string; rttMs: number | null }[]; relays: { relay: string; rttMs: number | null; error: string | null; via: string }[] };
    const check = async (n: string): Promise<Report> => JSON.parse(await node(n).host.run(process.execPath, [CLI, 'node', 'netcheck', '--state', node(n).state, '--json'])) as Report;
    // g4 and gd get a direct path to each other first: a node with only direct paths must still list every TRS.
    await waitFor('g4 pings gd (direct)', async () => (await node('g4').host.exec('ping', ['-4', '-n', '-c', '1', '-W', '1', 'gd.cyphonic.internal'])).code === 0, 20_000);
    const t0 = Date.now();
    const [e1, r1, gd, g4] = await Promise.all(['e1', 'r1', 'gd', 'g4'].map(check));
    console.log(`# netcheck on 4 nodes in parallel: ${Date.now() - t0} ms`);
    for (const [n, r] of [['e1', e1], ['r1', r1], ['gd', gd], ['g4', g4]] as const) {
      assert.equal(r!.source, 'daemon', n);
      assert.ok(r!.nms.some((x) => x.registered && x.rttMs !== null), `${n}: its NMS answered`);
      assert.ok(r!.as.some((x) => x.rttMs !== null), `${n}: an AS reachable (those of a family it lacks are not)`);
    }
    assert.deepEqual([e1!.nat, e1!.mapping], [true, 'independent'], 'EIM NAPT');
    assert.equal(e1!.observed, st.get('e1')!.observed, 'the public endpoint the NMS registered');
    assert.ok(!e1!.families.v4.addresses.includes(e1!.observed!.split(':')[0]!), 'the public address is not one of its own');
    assert.deepEqual([r1!.nat, r1!.mapping], [true, 'dependent'], 'random-port NAPT');
    assert.deepEqual([gd!.nat, gd!.mapping], [false, null], 'open net');
    assert.ok(gd!.families.v4.addresses.length > 0 && gd!.families.v6.addresses.length > 0 && gd!.families.v4.defaultRoute && gd!.families.v6.defaultRoute, JSON.stringify(gd!.families));
    assert.deepEqual([g4!.families.v6.addresses, g4!.families.v6.defaultRoute], [[], null], 'IPv4-only host: no IPv6 global address or default route');
    assert.ok(gd!.as.every((x) => x.rttMs !== null), `dual-stack host reaches every AS: ${JSON.stringify(gd!.as)}`);
    const g4v6 = g4!.as.filter((x) => x.endpoint.startsWith('['));
    assert.ok(g4v6.length > 0 && g4v6.every((x) => x.rttMs === null), `IPv4-only host: the AS's IPv6 endpoint unreachable: ${JSON.stringify(g4!.as)}`);
    // Both TRS are listed and timed though no node has a relayed path (g4 and gd one direct path, e1 and r1 none):
    // probes under NMS tickets, through an EIM and a random-port NAPT too. An IPv4-only host reports the TRS's IPv6
    // endpoints unreachable.
    for (const n of ['g4', 'gd']) assert.deepEqual((await node(n).status()).peers.map((p) => p.path), ['direct'], `${n}: only a direct path`);
    for (const [n, r] of [['e1', e1], ['r1', r1], ['gd', gd], ['g4', g4]] as const) {
      assert.ok((await node(n).status()).peers.every((p) => p.path !== 'relayed'), `${n}: no relayed path`);
      for (const port of [4503, 4513]) assert.ok(r!.relays.some((x) => x.relay.endsWith(`:${port}`) && x.via === 'ticket' && x.rttMs !== null), `${n}: TRS :${port} timed: ${JSON.stringify(r!.relays)}`);
    }
    for (const [n, r] of [['e1', e1], ['r1', r1], ['gd', gd], ['g4', g4]] as const) console.log(`# ${n} TRS: ${r!.relays.map((x) => `${x.relay} ${x.rttMs ?? x.error}`).join(', ')}`);
    assert.ok(gd!.relays.every((x) => x.rttMs !== null), `dual-stack host reaches every TRS endpoint: ${JSON.stringify(gd!.relays)}`);
    const g4trs6 = g4!.relays.filter((x) => x.relay.startsWith('['));
    assert.ok(g4trs6.length > 0 && g4trs6.every((x) => x.rttMs === null && x.error), `IPv4-only host: TRS IPv6 endpoints unreachable: ${JSON.stringify(g4!.relays)}`);
  });

  test('every pair of sites reaches each other by name (ping v4 + v6, TCP with checksum) on the expected path', async () => {
    const rows = await cloud.nodes();
    const e1bIndependent = rows.find((x) => x.name === 'e1b')?.mapping === 'independent';
    let port = 6000;
    const seen: string[] = [];
    for (const [a, b, want] of PAIRS) {
      const expected: PathName = want === 'by-mapping' ? (e1bIndependent ? 'punched' : 'relayed') : want;
      const fqdn = `${b}.cyphonic.internal`;
      await waitFor(`${a} pings ${b} (v4)`, async () => (await node(a).host.exec('ping', ['-4', '-n', '-c', '1', '-W', '1', fqdn])).code === 0, 20_000);
      const p4 = await node(a).host.exec('ping', ['-4', '-n', '-c', '2', '-i', '0.2', '-W', '2', fqdn]);
      assert.equal(p4.code, 0, `${a} -> ${b} v4: ${p4.stdout}`);
      const p6 = await node(a).host.exec('ping', ['-6', '-n', '-c', '2', '-i', '0.2', '-W', '2', fqdn]);
      assert.equal(p6.code, 0, `${a} -> ${b} v6: ${p6.stdout}`);
      const back = await node(b).host.exec('ping', ['-4', '-n', '-c', '1', '-W', '2', `${a}.cyphonic.internal`]);
      assert.equal(back.code, 0, `${b} -> ${a} v4`);
      await tcp(a, b, port++, 256 * 1024);
      for (const [me, other] of [[a, b], [b, a]] as const) {
        const peer = (await node(me).status()).peers.find((p) => p.name === other);
        assert.ok(peer && peer.state === 'established', `${me} has ${other} established`);
        assert.equal(peer.path, expected, `${a} -> ${b}: path at ${me} (${JSON.stringify(peer)})`);
        if (expected === 'relayed') assert.match(peer.relay ?? '', /:45[01]3$/, `${me}: relay set`);
        else assert.equal(peer.relay, null, `${me}: no relay on a ${expected} path`);
      }
      seen.push(`${a}-${b}:${expected}`);
    }
    assert.ok(seen.some((s) => s.endsWith(':punched')) && seen.some((s) => s.endsWith(':relayed')), seen.join(' '));
  });

  test('the TRS sees only ciphertext: a relayed transfer with a plaintext marker never shows it there', { skip: needs('tcpdump') }, async () => {
    const pcap = join(work.dir, 'trs.pcap');
    const cap = cloud.host.spawn('tcpdump', ['-i', 'eth0', '-n', '-U', '--immediate-mode', '-s', '300', '-w', pcap, 'udp portrange 4503-4513'], { logFile: join(work.dir, 'tcpdump.log') });
    await new Promise((r) => setTimeout(r, 1000));
    const MARKER = 'CYPHONIC-RELAY-PLAINTEXT-3c9e';
    await tcp('e1', 'r1', 6100, 2 * 1024 * 1024, { marker: MARKER });
    await new Promise((r) => setTimeout(r, 300));
    cap.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 500));
    const text = await cloud.host.run('tcpdump', ['-r', pcap, '-n', '-A'], { timeoutMs: 60_000 });
    const packets = (await cloud.host.run('tcpdump', ['-r', pcap, '-n', '-q'], { timeoutMs: 60_000 })).split('\n').filter(Boolean).length;
    assert.ok(packets > 500, `the capture saw the relayed transfer (${packets} packets)`);
    assert.ok(!text.includes(MARKER), 'the marker never appears at the TRS');
  });

  test('killing the TRS in use during a TCP transfer: the path moves to the other TRS within 5 s and the transfer completes', async (t) => {
    // g6 -> e2 is relayed (IPv6-only against an IPv4 NAPT); g6 initiated it, so it watches the TRS.
    const relayOf = async (): Promise<string | null> => (await node('g6').status()).peers.find((p) => p.name === 'e2')?.relay ?? null;
    await waitFor('g6 reaches e2', async () => (await node('g6').host.exec('ping', ['-4', '-n', '-c', '1', '-W', '1', 'e2.cyphonic.internal'])).code === 0, 20_000);
    const before = await relayOf();
    assert.ok(before, 'g6 -> e2 is relayed');
    const usedPort = Number(before.slice(before.lastIndexOf(':') + 1));
    let movedMs = -1;
    await tcp('g6', 'e2', 6200, 6 * 1024 * 1024, {
      paceMs: 60,
      during: async () => {
        await new Promise((r) => setTimeout(r, 1500));
        trs.get(usedPort)!.kill('SIGKILL');
        const t0 = Date.now();
        const after = await waitFor('a new relay', async () => {
          const r = await relayOf();
          return r && r !== before ? r : null;
        }, 10_000, 100);
        movedMs = Date.now() - t0;
        assert.notEqual(after, before);
      },
    });
    t.diagnostic(`TRS killed: path moved to the other TRS after ${movedMs} ms (status polled every 100 ms)`);
    assert.ok(movedMs >= 0 && movedMs < 5000, `path moved in ${movedMs} ms`);
    const c = (await node('g6').status()).counters;
    assert.ok((c['peers.relay.failover'] ?? 0) >= 1, JSON.stringify(c));
    const p = await node('e2').host.exec('ping', ['-4', '-n', '-c', '2', '-i', '0.2', '-W', '2', 'g6.cyphonic.internal']);
    assert.equal(p.code, 0, 'traffic flows on the new path both ways');
  });

  test('keepalives hold an idle punched path open through NATs that forget UDP state after 6 s', async () => {
    const routers = ['siteA', 'siteB'].map((n) => tb.sites.get(n)!.router!);
    const sysctl = (h: Host, v: number): Promise<unknown> =>
      h.run('sysctl', ['-q', '-w', `net.netfilter.nf_conntrack_udp_timeout=${v}`, `net.netfilter.nf_conntrack_udp_timeout_stream=${v}`]);
    const saved = await Promise.all(routers.map(async (h) => Number((await h.run('sysctl', ['-n', 'net.netfilter.nf_conntrack_udp_timeout'])).trim())));
    try {
      await Promise.all(routers.map((h) => sysctl(h, 6)));
      const peer = async (a: string, b: string) => (await node(a).status()).peers.find((p) => p.name === b);
      assert.equal((await peer('e1', 'e2'))?.path, 'punched');
      const before = [(await node('e1').status()).counters, (await node('e2').status()).counters];
      await new Promise((r) => setTimeout(r, 14_000)); // idle, more than twice the NATs' timeout
      const p = await node('e1').host.exec('ping', ['-4', '-n', '-c', '2', '-i', '0.3', '-W', '2', 'e2.cyphonic.internal']);
      assert.equal(p.code, 0, `the punched path still carries traffic: ${p.stdout}`);
      const after = [(await node('e1').status()).counters, (await node('e2').status()).counters];
      for (const i of [0, 1]) {
        assert.ok((after[i]!['peers.keepalive.sent'] ?? 0) > (before[i]!['peers.keepalive.sent'] ?? 0), 'keepalives were sent');
        assert.equal(after[i]!['peers.route.ok'] ?? 0, before[i]!['peers.route.ok'] ?? 0, 'no new route selection was needed');
      }
      assert.equal((await peer('e1', 'e2'))?.path, 'punched');
    } finally {
      await Promise.all(routers.map((h, i) => sysctl(h, saved[i]!)));
    }
  });

  test('a failed punch falls back to a relay at once; when punching works again the path moves to it under a TCP transfer', async (t) => {
    const [d, b] = [tb.sites.get('siteD')!.wan4!, tb.sites.get('siteB')!.wan4!];
    // The global segment's bridge drops UDP between the two NAPTs: the punch cannot work, the TRS still can.
    const block = `table bridge cyp_block {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n  ip saddr ${d} ip daddr ${b} meta l4proto udp drop\n  ip saddr ${b} ip daddr ${d} meta l4proto udp drop\n }\n}\n`;
    await tb.inet.run('nft', ['-f', '-'], { input: block });
    let blocked = true;
    try {
      const t0 = Date.now();
      await waitFor('e4 reaches e2', async () => (await node('e4').host.exec('ping', ['-4', '-n', '-c', '1', '-W', '1', 'e2.cyphonic.internal'])).code === 0, 15_000, 50);
      const reachedMs = Date.now() - t0;
      const peer = async (a: string, o: string) => (await node(a).status()).peers.find((p) => p.name === o);
      const first = await peer('e4', 'e2');
      assert.equal(first?.path, 'relayed', JSON.stringify(first));
      assert.ok((await node('e4').status()).counters['peers.punch.failed']! >= 1);
      // DNS + route selection + ~1.5 s of unanswered punching + relay route, bind and handshake + ping's 1 s wait.
      t.diagnostic(`blocked punch: first ping through the relay ${reachedMs} ms after the first try`);
      assert.ok(reachedMs < 4500, `reached through the relay ${reachedMs} ms after the first try`);
      await tb.inet.run('nft', ['delete', 'table', 'bridge', 'cyp_block']);
      blocked = false;
      let movedAt = 0;
      await tcp('e4', 'e2', 6300, 6 * 1024 * 1024, {
        paceMs: 60,
        during: async () => {
          await waitFor('the punched path', async () => (await peer('e4', 'e2'))?.path === 'punched', 20_000, 200);
          movedAt = Date.now();
        },
      });
      assert.ok(movedAt > 0);
      const [s4, s2] = [await peer('e4', 'e2'), await peer('e2', 'e4')];
      assert.equal(s4?.path, 'punched');
      assert.equal(s4?.relay, null);
      assert.equal(s2?.path, 'punched', 'both ends moved');
      assert.ok((await node('e4').status()).counters['peers.punch.upgraded']! >= 1);
    } finally {
      if (blocked) await tb.inet.exec('nft', ['delete', 'table', 'bridge', 'cyp_block']);
    }
  });

  test('NAT rebinding under a relayed path (a random-port NAPT forgets its mappings): re-registered and rebound, traffic resumes', async (t) => {
    const router = tb.sites.get('siteC')!.router!;
    const sysctl = (v: number): Promise<unknown> =>
      router.run('sysctl', ['-q', '-w', `net.netfilter.nf_conntrack_udp_timeout=${v}`, `net.netfilter.nf_conntrack_udp_timeout_stream=${v}`]);
    const saved = Number((await router.run('sysctl', ['-n', 'net.netfilter.nf_conntrack_udp_timeout'])).trim());
    const peer = async () => (await node('r1').status()).peers.find((p) => p.name === 'e1');
    // Traffic first: if the TRS under this path was the one killed above, e1 moves it to a live one now.
    await waitFor('e1 reaches r1', async () => (await node('e1').host.exec('ping', ['-4', '-n', '-c', '1', '-W', '1', 'r1.cyphonic.internal'])).code === 0, 15_000);
    const relayBefore = (await peer())?.relay;
    assert.ok(relayBefore, 'r1 and e1 (random-port vs EIM) are relayed');
    const before = await node('r1').status();
    const failoversBefore = (await node('e1').status()).counters['peers.relay.failover'] ?? 0;
    try {
      await sysctl(3);
      // Idle for longer than the NAPT keeps UDP state: every mapping of r1 (NMS, TRS) is gone; new ones get new ports.
      await new Promise((r) => setTimeout(r, 7000));
      const t0 = Date.now();
      await waitFor('e1 reaches r1 again', async () => (await node('e1').host.exec('ping', ['-4', '-n', '-c', '1', '-W', '1', 'r1.cyphonic.internal'])).code === 0, 15_000, 50);
      const ms = Date.now() - t0;
      // Traffic may resume (the relay check's bind repairs the TRS end) before r1's next keepalive shows the NMS
      // the new port (every 5 s behind NAT): wait for that re-registration rather than race it.
      await waitFor('the NMS saw r1 from a new public port and r1 registered again', async () => (await node('r1').status()).observed !== before.observed, 12_000, 100);
      const after = await node('r1').status();
      assert.ok((after.counters['relay.rebind'] ?? 0) + (after.counters['peers.relay.check'] ?? 0) > (before.counters['relay.rebind'] ?? 0) + (before.counters['peers.relay.check'] ?? 0), 'r1 bound again');
      assert.equal((await peer())?.relay, relayBefore, 'the same TRS: the binding was repaired, not replaced');
      assert.equal((await node('e1').status()).counters['peers.relay.failover'] ?? 0, failoversBefore, 'no failover');
      t.diagnostic(`NAT rebinding: traffic resumed ${ms} ms after the first try`);
      // siteC answers what reaches its forgotten mappings (the TRS, the NMS) with port unreachable.
      const rejected = /counter packets (\d+)/.exec(await router.run('nft', ['list', 'chain', 'inet', 'cyphonic_filter', 'input']));
      t.diagnostic(`siteC answered ${rejected?.[1]} unsolicited UDP datagrams with port unreachable`);
      assert.ok(ms < 8000, `traffic resumed ${ms} ms after the first try`);
      await tcp('e1', 'r1', 6400, 1024 * 1024);
    } finally {
      await sysctl(saved);
    }
  });
  test('NAT rebinding under a direct path (the NAPT maps e1 to a new port): the peer follows an EndpointUpdate, no new handshake', async (t) => {
    const router = tb.sites.get('siteA')!.router!;
    const sysctl = (v: number): Promise<unknown> =>
      router.run('sysctl', ['-q', '-w', `net.netfilter.nf_conntrack_udp_timeout=${v}`, `net.netfilter.nf_conntrack_udp_timeout_stream=${v}`]);
    const saved = Number((await router.run('sysctl', ['-n', 'net.netfilter.nf_conntrack_udp_timeout'])).trim());
    const peer = async () => (await node('g4').status()).peers.find((p) => p.name === 'e1');
    await waitFor('g4 reaches e1', async () => (await node('g4').host.exec('ping', ['-4', '-n', '-c', '1', '-W', '1', 'e1.cyphonic.internal'])).code === 0, 15_000);
    const before = await peer();
    assert.equal(before?.path, 'direct');
    const reboundBefore = (await node('e1').status()).counters['mobility.nat-rebound'] ?? 0;
    const rule = (...masq: string[]): Promise<unknown> =>
      router.run('nft', ['-f', '-'], { input: `flush chain ip cyphonic_nat postrouting\n${masq.map((m) => `add rule ip cyphonic_nat postrouting oifname "wan0" ${m}\n`).join('')}` });
    try {
      // New mappings now come from another port range, and idle ones die in 1 s: e1's next packets leave from a new
      // public port, as if its NAT had rebooted. An entry takes the short timeout only when a packet refreshes it, so
      // the window spans more than one NMS keepalive interval (5 s behind NAT).
      await rule('meta l4proto udp masquerade to :50000-50999', 'masquerade');
      await sysctl(1);
      await new Promise((r) => setTimeout(r, 7000));
      await sysctl(saved);
      const t0 = Date.now();
      await waitFor('g4 reaches e1 again', async () => (await node('g4').host.exec('ping', ['-4', '-n', '-c', '1', '-W', '1', 'e1.cyphonic.internal'])).code === 0, 20_000, 50);
      t.diagnostic(`NAT rebinding (direct path): traffic resumed ${Date.now() - t0} ms after the first try`);
      const after = await peer();
      assert.match(after?.endpoint ?? '', /:50\d\d\d$/, 'g4 sends to e1\'s new mapping');
      assert.equal(after?.lastHandshake, before?.lastHandshake, 'the same session: no new handshake');
      assert.ok(((await node('e1').status()).counters['mobility.nat-rebound'] ?? 0) > reboundBefore, 'e1 noticed the rebinding');
      await tcp('g4', 'e1', 6500, 1024 * 1024);
    } finally {
      await sysctl(saved);
      await rule('masquerade');
    }
  });
});

