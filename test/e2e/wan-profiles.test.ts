// The overlay under harsh networks: nodes whose uplinks sit behind the testbed's WAN emulator (test/harness/wan/)
// with the `satellite` (600 ms RTT, 1 % loss each way) and `mobile` (150 ± 50 ms RTT, 3 % loss, reordering)
// profiles, and `clean` (the emulator in the path, impairing nothing) as the control. For each profile: tunnel
// setup and ping by name, 20 MB over TCP with a checksum while the sessions rekey every 5 s, a relayed path
// (IPv4-only ↔ IPv6-only through the TRS) and a move with a TCP transfer running. The receiver tracks its progress:
// nothing may be black-holed, and no stall may last longer than 3 RTTs (750 ms at least: scheduling on a shared
// 2-core machine) except the one a move causes.
//
//                  global segment 198.18.0.0/24, 2001:db8::/64
//   [cloud] AS+NMS, TRS :4503 ──┬────────────────────────┬──────────────┬──────────────┐
//                        [p<P>] v4-only                [q<P>] dual     [r<P>] v6-only   [home] NAPT (eim)
//                        eth0 ── [emulator: profile P] ── br0           (clean uplinks)   p<P> moves here,
//                                                                                          its emulator with it
//   [gw] adapter ══ LAN ══ [gn1] general node (dhclient -4): pings [tmob], a node behind the mobile profile
//
// TCP congestion control: the node namespaces set BBR (this machine's default already; many kernels default to CUBIC).
// A loss-based sender at 1 % random loss and 600 ms RTT is held near the Mathis bound (MSS/RTT * 1.22/sqrt(p), a few
// hundred kbit/s): measured here with reno (cubic is not in this kernel's tcp_allowed_congestion_control for other
// namespaces), 4 MB did not arrive within 150 s; with BBR, 20 MB took 16-35 s. BBR does not read random loss as
// congestion. WAN_TCP_CC=NAME and WAN_TCP_MB=N override both for measurements.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { CLI, CloudProc, cyphonic, NodeProc, REPO, waitFor, useOverlayDns, workDir, type NodeStatusJson } from '../harness/cluster.js';
import { dhclient, Lan } from '../harness/lan.js';
import { Testbed, WAN_PROFILES, type Site, type WanProfileName } from '../harness/netns/index.js';
import { e2eSkip, needs } from '../harness/requires.js';

const skip = e2eSkip('gcc');
const TOOLS = join(REPO, 'dist', 'test', 'e2e', 'tools');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const CC = process.env['WAN_TCP_CC'] ?? 'bbr';
/** Transfer size per profile: a lossy mobile path moves ~2.5 Mbit/s, so 6 MB still spans several rekeys (CI time). */
const TCP_MB_OF: Record<string, number> = { clean: 20, satellite: 20, mobile: 6 };
const tcpMb = (profile: string): number => Number(process.env['WAN_TCP_MB'] ?? TCP_MB_OF[profile] ?? 20);
const REKEY_S = 5;

type Peer = NodeStatusJson['peers'][number];
interface Progress {
  bytes: number;
  sha256: string;
  firstMs: number;
  lastMs: number;
  maxGapMs: number;
  gaps: [number, number][];
}

/** Short node-name stem per profile (node names are DNS labels). */
const STEM: Record<string, string> = { clean: 'cln', satellite: 'sat', mobile: 'mob' };
/** WAN_RUN=clean,mobile runs a subset (measurements, debugging). */
const RUN = (process.env['WAN_RUN']?.split(',') ?? ['clean', 'satellite', 'mobile']) as WanProfileName[];

describe('the overlay under WAN profiles: clean (control), satellite, mobile (netns)', { skip, timeout: 720_000 }, () => {
  let tb: Testbed;
  let work: ReturnType<typeof workDir>;
  let cloud: CloudProc;
  let home: Site;
  const undo: (() => void)[] = [];

  before(async () => {
    tb = await Testbed.create();
    work = workDir('wan');
    cloud = new CloudProc(await tb.addHost('cloud', { site: tb.global, family: 'dual' }), work.dir);
    await cloud.init();
    await cloud.start();
    await cloud.startTrs(4503);
    home = await tb.addSite('home', { kind: 'napt', nat: 'eim' });
  });

  let lan: Lan | undefined;
  let gw: ChildProcess | undefined;

  after(async () => {
    for (const u of undo) u();
    gw?.kill('SIGTERM');
    lan?.cleanup();
    await tb?.cleanup();
    work?.remove();
  });

  for (const profile of RUN) {
    const prof = WAN_PROFILES[profile];
    /** Round trip of the emulated path, and its worst case with jitter. */
    const rtt = (prof.up.delayMs ?? 0) + (prof.down.delayMs ?? 0);
    const rttMax = rtt + (prof.up.jitterMs ?? 0) + (prof.down.jitterMs ?? 0);
    const rttMin = Math.max(0, rtt - (prof.up.jitterMs ?? 0) - (prof.down.jitterMs ?? 0));
    const stallLimit = Math.max(3 * rttMax, 750);
    // The TCP receiver itself may pause longer than 3 RTTs after random loss alone: a retransmission that is lost
    // too doubles the RTO (≥ RTT + 200 ms): 1 + 2 + 4 + 8 RTOs for a segment (or its ACKs) lost four times, which
    // at 3 % loss each way does happen in a long transfer (a 3.1 s gap at 150 ms RTT was seen while every ping got
    // through; a 1.86 s gap at 600 ms RTT and 1 % loss on the relayed path). The overlay's continuity is what the
    // pings judge; this bound catches a stalled flow.
    const tcpLimit = 15 * (rttMax + 200);
    const s = STEM[profile]!;

    describe(`${profile} (RTT ${rtt} ms)`, () => {
      let p: NodeProc;
      let q: NodeProc;
      let r: NodeProc;
      const st = new Map<string, NodeStatusJson>();
      const vip4 = (n: NodeProc): string => st.get(n.name)!.vip4!;
      const peerOf = async (n: NodeProc, other: NodeProc): Promise<Peer | undefined> => (await n.status()).peers.find((x) => x.name === other.name);
      const counters = async (n: NodeProc): Promise<Record<string, number>> => (await n.status()).counters;
      const dump = async (): Promise<string> => {
        const out: string[] = [];
        for (const n of [p, q, r]) {
          const c = await counters(n).catch(() => ({}) as Record<string, number>);
          out.push(`${n.name}: ${JSON.stringify(Object.fromEntries(Object.entries(c).filter(([k, v]) => v && /^(data|peers|mobility|relay)\./.test(k))))}`);
        }
        const w = await tb.wanStats(p.host).catch(() => null);
        if (w) out.push(`emulator: up ${JSON.stringify(w.up)} down ${JSON.stringify(w.down)}`);
        return out.join('\n');
      };

      /** TCP from one node to another's vip4 with a checksum and the receiver's progress. */
      async function tcp(from: NodeProc, to: NodeProc, port: number, bytes: number, opts: { paceRate?: number; during?: () => Promise<void>; deadlineS?: number } = {}): Promise<Progress & { ms: number }> {
        const deadlineS = opts.deadlineS ?? 150;
        const env = { TCP_CHECK_PROGRESS: '1', TCP_CHECK_DEADLINE_S: String(deadlineS) };
        const server = to.host.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'server', vip4(to), String(port)], { timeoutMs: (deadlineS + 10) * 1000, env: { ...process.env, ...env } });
        await sleep(400);
        const t0 = Date.now();
        const client = opts.paceRate
          ? from.host.exec(process.execPath, [join(TOOLS, 'tcp-paced.js'), vip4(to), String(port), String(bytes), String(opts.paceRate)], { timeoutMs: (deadlineS + 10) * 1000 })
          : from.host.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'client', vip4(to), String(port), String(bytes)], { timeoutMs: (deadlineS + 10) * 1000, env: { ...process.env, ...env } });
        if (opts.during) await opts.during();
        const [c, sv] = await Promise.all([client, server]);
        const ms = Date.now() - t0;
        assert.equal(c.code, 0, `${from.name} -> ${to.name} client: ${c.stderr}\n${await dump()}`);
        assert.equal(sv.code, 0, `${from.name} -> ${to.name} server: ${sv.stderr}\n${await dump()}`);
        const sent = JSON.parse(c.stdout) as { bytes: number; sha256: string };
        const got = JSON.parse(sv.stdout) as Progress;
        assert.equal(got.bytes, bytes, `${from.name} -> ${to.name}: every byte arrived`);
        assert.equal(got.sha256, sent.sha256, `${from.name} -> ${to.name}: checksum`);
        return { ...got, ms };
      }

      before(async () => {
        p = new NodeProc(await tb.addHost(`p${s}`, { site: tb.global, family: 'v4', wan: profile }), work.dir, `p${s}`);
        q = new NodeProc(await tb.addHost(`q${s}`, { site: tb.global, family: 'dual' }), work.dir, `q${s}`);
        r = new NodeProc(await tb.addHost(`r${s}`, { site: tb.global, family: 'v6' }), work.dir, `r${s}`);
        for (const n of [p, q, r]) {
          await n.host.run('sysctl', ['-q', '-w', `net.ipv4.tcp_congestion_control=${CC}`]);
          n.start(await cloud.enroll(n.name), ['--rekey-after', String(REKEY_S)]);
        }
        for (const n of [p, q, r]) {
          const ns = await n.waitRegistered(60_000);
          st.set(n.name, ns);
          undo.push(useOverlayDns(n.host, ns.dns!));
        }
      });

      after(async () => {
        for (const n of [p, q, r]) await n?.stop().catch(() => undefined);
      });

      test(`${profile}: tunnel setup and ping by name on both overlay families; overlay RTT follows the path`, async (t) => {
        const t0 = Date.now();
        await waitFor(`${p.name} pings ${q.name}`, async () => (await p.host.exec('ping', ['-4', '-n', '-c', '1', '-W', '3', `${q.name}.cyphonic.internal`])).code === 0, 40_000, 100).catch(
          async (err: Error) => assert.fail(`${err.message}\n${await dump()}`),
        );
        const firstMs = Date.now() - t0;
        const p4 = await p.host.exec('ping', ['-4', '-n', '-q', '-c', '10', '-i', '0.2', '-W', '3', `${q.name}.cyphonic.internal`], { timeoutMs: 30_000 });
        const p6 = await p.host.exec('ping', ['-6', '-n', '-q', '-c', '10', '-i', '0.2', '-W', '3', `${q.name}.cyphonic.internal`], { timeoutMs: 30_000 });
        const back = await q.host.exec('ping', ['-4', '-n', '-q', '-c', '5', '-i', '0.2', '-W', '3', `${p.name}.cyphonic.internal`], { timeoutMs: 30_000 });
        const parse = (out: string): { got: number; avg: number } => ({
          got: Number(/(\d+) received/.exec(out)?.[1] ?? 0),
          avg: Number(/= [\d.]+\/([\d.]+)\//.exec(out)?.[1] ?? NaN),
        });
        const [a4, a6, b4] = [parse(p4.stdout), parse(p6.stdout), parse(back.stdout)];
        t.diagnostic(`${profile}: first ping ${firstMs} ms after the first try; overlay RTT v4 ${a4.avg} ms (${a4.got}/10), v6 ${a6.avg} ms (${a6.got}/10), back ${b4.avg} ms (${b4.got}/5)`);
        // A round trip is lost with probability 1-(1-loss)^2: 2 % (satellite), 6 % (mobile); 6 of 10 is a loose floor.
        assert.ok(a4.got >= 6 && a6.got >= 6 && b4.got >= 3, `pings answered: ${p4.stdout}${p6.stdout}${back.stdout}\n${await dump()}`);
        // Averages of a few probes: anywhere in the path's jitter range (the overlay adds well under a millisecond).
        for (const avg of [a4.avg, a6.avg, b4.avg]) assert.ok(avg >= rttMin - 1 && avg <= rttMax + 60, `overlay RTT ${avg} ms on a ${rttMin}..${rttMax} ms path`);
        const peer = await peerOf(p, q);
        assert.equal(peer?.path, 'direct', JSON.stringify(peer));
      });

      const TCP_MB = tcpMb(profile);
      test(`${profile}: ${TCP_MB} MB over TCP (${CC}) arrive intact while the sessions rekey every ${REKEY_S} s; pings every 50 ms answered throughout (no run lost over ${stallLimit} ms)`, async (t) => {
        const [pb, qb] = [await counters(p), await counters(q)];
        // A ping every 50 ms for the whole transfer and at least two rekeys (a fast transfer alone may fit between
        // two): a run of lost replies longer than the stall limit is a black hole, not random loss.
        const minN = Math.ceil((2.5 * REKEY_S * 1000) / 50);
        const pingChild = q.host.spawn('ping', ['-4', '-n', '-c', '4000', '-i', '0.05', '-W', '3', vip4(p)]);
        let pingOut = '';
        pingChild.stdout!.on('data', (b: Buffer) => (pingOut += b.toString('utf8')));
        pingChild.stderr!.resume();
        const pingDone = new Promise<void>((res) => pingChild.once('exit', () => res()));
        const pingStart = Date.now();
        await sleep(300);
        const res = await tcp(q, p, 5001, TCP_MB * 1024 * 1024);
        await sleep(Math.max(0, minN * 50 + 300 - (Date.now() - pingStart)));
        pingChild.kill('SIGINT');
        await Promise.race([pingDone, sleep(5000)]);
        const pr = { stdout: pingOut };
        // Requests sent (ping's summary), less those whose replies were still on their way when it was stopped.
        const sentN = Number(/(\d+) packets transmitted/.exec(pingOut)?.[1] ?? Math.floor((Date.now() - pingStart) / 50));
        const N = sentN - Math.ceil((rttMax + 100) / 50);
        const [pa, qa] = [await counters(p), await counters(q)];
        const d = (a: Record<string, number>, b: Record<string, number>, k: string): number => (a[k] ?? 0) - (b[k] ?? 0);
        const seen = new Set([...pr.stdout.matchAll(/icmp_seq=(\d+)/g)].map((m) => Number(m[1])).filter((x) => x <= N));
        let run = 0;
        let longestRun = 0;
        for (let i = 1; i <= N; i++) {
          run = seen.has(i) ? 0 : run + 1;
          longestRun = Math.max(longestRun, run);
        }
        const w = await tb.wanStats(p.host);
        t.diagnostic(
          `${profile}: ${TCP_MB} MB in ${res.ms} ms (${((TCP_MB * 8 * 1048576) / res.ms / 1000).toFixed(1)} Mbit/s), longest receiver gap ${res.maxGapMs} ms, ` +
            `largest gaps: ${JSON.stringify([...res.gaps].sort((x, y) => y[1] - x[1]).slice(0, 6))}; ping ${seen.size}/${N} answered, longest run lost ${longestRun} (${longestRun * 50} ms); ` +
            `rekeys p +${d(pa, pb, 'peers.rekey')} q +${d(qa, qb, 'peers.rekey')}; badTag p +${d(pa, pb, 'data.badTag')} q +${d(qa, qb, 'data.badTag')}; ` +
            `emulator down: ${w ? `${w.down.rxSuper} super-frames -> ${w.down.segments} segments, ${w.down.lost} lost, ${w.down.poolDrops} pool drops` : '-'}`,
        );
        assert.ok(d(pa, pb, 'peers.rekey') + d(qa, qb, 'peers.rekey') >= 2, `sessions were rekeyed while traffic flowed\n${await dump()}`);
        assert.ok(seen.size >= N * 0.8, `pings answered: ${seen.size}/${N}\n${await dump()}`);
        assert.ok(longestRun * 50 <= stallLimit, `${longestRun} pings in a row lost (${longestRun * 50} ms): a black hole\n${await dump()}`);
        assert.ok(res.maxGapMs <= tcpLimit, `the TCP receiver stalled for ${res.maxGapMs} ms (limit ${tcpLimit}); gaps ${JSON.stringify(res.gaps)}\n${await dump()}`);
      });

      test(`${profile}: relayed path (IPv4-only behind the emulator ↔ IPv6-only) through the TRS`, async (t) => {
        const t0 = Date.now();
        await waitFor(`${p.name} pings ${r.name}`, async () => (await p.host.exec('ping', ['-4', '-n', '-c', '1', '-W', '3', `${r.name}.cyphonic.internal`])).code === 0, 40_000, 100).catch(
          async (err: Error) => assert.fail(`${err.message}\n${await dump()}`),
        );
        const firstMs = Date.now() - t0;
        const back = await r.host.exec('ping', ['-6', '-n', '-q', '-c', '5', '-i', '0.2', '-W', '3', `${p.name}.cyphonic.internal`], { timeoutMs: 30_000 });
        assert.ok(Number(/(\d+) received/.exec(back.stdout)?.[1] ?? 0) >= 3, `${r.name} -> ${p.name}: ${back.stdout}`);
        for (const [me, other] of [[p, r], [r, p]] as const) {
          const peer = await peerOf(me, other);
          assert.equal(peer?.path, 'relayed', `${me.name}: ${JSON.stringify(peer)}`);
          assert.match(peer?.relay ?? '', /:4503$/);
        }
        const res = await tcp(r, p, 5002, 2 * 1024 * 1024);
        t.diagnostic(`${profile}: relayed: first ping ${firstMs} ms after the first try; 2 MB in ${res.ms} ms, longest receiver gap ${res.maxGapMs} ms`);
        assert.ok(res.maxGapMs <= tcpLimit, `the TCP receiver stalled for ${res.maxGapMs} ms (limit ${tcpLimit}); gaps ${JSON.stringify(res.gaps)}\n${await dump()}`);
      });

      test(`${profile}: a move behind a NAPT (the emulator moves along) with a TCP transfer and a 50 ms ping running`, async (t) => {
        const RATE = 128 * 1024;
        const BYTES = RATE * 14;
        const N = 320; // 16 s of pings, q -> p
        const pinger = q.host.exec('ping', ['-4', '-n', '-c', String(N), '-i', '0.05', '-W', '3', vip4(p)], { timeoutMs: 60_000 });
        const res = await tcp(p, q, 5003, BYTES, {
          paceRate: RATE,
          during: async () => {
            await sleep(4000);
            await tb.moveHost(p.host, home);
            await waitFor(`${q.name} to send to ${p.name} behind the NAPT`, async () => (await peerOf(q, p))?.endpoint?.includes(home.wan4!), 15_000, 50).catch(
              async (err: Error) => assert.fail(`${err.message}\n${await dump()}`),
            );
          },
        });
        const pr = await pinger;
        const seen = new Set([...pr.stdout.matchAll(/icmp_seq=(\d+)/g)].map((m) => Number(m[1])));
        const runs: number[] = [];
        let run = 0;
        for (let i = 1; i <= N; i++) {
          if (seen.has(i)) {
            if (run) runs.push(run * 50);
            run = 0;
          } else run++;
        }
        if (run) runs.push(run * 50);
        runs.sort((x, y) => y - x);
        const gaps = res.gaps.map((g) => g[1]).sort((x, y) => y - x);
        t.diagnostic(`${profile}: move at +4 s; ${BYTES} B paced in ${res.ms} ms; TCP receiver gaps > 250 ms [at, ms]: ${JSON.stringify(res.gaps)}; ping ${seen.size}/${N}, longest lost runs (ms): ${JSON.stringify(runs.slice(0, 5))}`);
        // The move itself interrupts traffic once (the peer must learn the new endpoint: an EndpointUpdate and its
        // ack, or a new route selection). After that recovery, the overlay must carry the 50 ms pings with no gap
        // over 3 RTTs: anything longer is a black hole, not random loss.
        const moveLimit = 3000 + 3 * rttMax;
        assert.ok((runs[0] ?? 0) <= moveLimit, `the move cut the pings for ${runs[0]} ms (limit ${moveLimit})\n${await dump()}`);
        assert.ok((runs[1] ?? 0) <= stallLimit, `after the move, pings were lost for ${runs[1]} ms in a row (limit ${stallLimit}); runs ${JSON.stringify(runs)}\n${await dump()}`);
        assert.ok(seen.size >= N * 0.7, `pings answered: ${seen.size}/${N}`);
        // TCP's own pauses are looser: a thin, paced flow recovers losses by retransmission timeouts (RTO ≥ 200 ms +
        // 4 RTT variances, doubled per lost retransmission), so it resumes up to one RTO after the overlay does, and
        // after an outage its backed-off RTO can pause it once more for about as long as the outage lasted.
        // The pings above judge the product (the way back within moveLimit). TCP's own retransmission timer doubles
        // through the outage: its retransmissions go out at RTO0·(2^k − 1) after the last segment got through, so the
        // first one after an outage of length L comes before 2·L + RTO0, and its data arrives half an RTT later. RTO0
        // is at least RTT + 200 ms and may already be doubled once by a random loss, so with L ≤ moveLimit the gap
        // stays under 2·moveLimit + 2·(rttMax + 200) + rttMax. Seen at 600 ms RTT: a 1.55 s ping outage gave a 6.3 s
        // receiver gap, and one CI run a 10.8 s gap (above the earlier bound of 2·moveLimit, 9.6 s) after a move whose
        // ping outage stayed within moveLimit. A black hole still fails.
        const moveTcpLimit = 2 * moveLimit + 2 * (rttMax + 200) + rttMax;
        assert.ok((gaps[0] ?? 0) <= moveTcpLimit, `the move stalled the TCP receiver for ${gaps[0]} ms (limit ${moveTcpLimit})\n${await dump()}`);
        const secondLimit = stallLimit + (gaps[0] ?? 0);
        assert.ok((gaps[1] ?? 0) <= secondLimit, `a second TCP stall of ${gaps[1]} ms (limit ${secondLimit}); gaps ${JSON.stringify(res.gaps)}\n${await dump()}`);
      });
    });
  }

  test('a general node behind an adapter pings a node behind the mobile profile', { skip: needs('dhclient') }, async (t) => {
    const MAC = '02:c0:ff:ee:0a:01';
    const target = new NodeProc(await tb.addHost('tmob', { site: tb.global, family: 'dual', wan: 'mobile' }), work.dir, 'tmob');
    target.start(await cloud.enroll('tmob'));
    const gwHost = await tb.addHost('gw', { site: tb.global, family: 'dual' });
    lan = await Lan.create(tb, gwHost, 'lan0');
    const dev = await lan.addDevice('gn1', MAC);
    const gwState = join(work.dir, 'gw');
    gw = gwHost.spawn(process.execPath, [CLI, 'adapter', 'up', '--state', gwState, '--lan', 'lan0', '--token', await cloud.enroll('gw'), '--info-interval', '1'], { logFile: join(work.dir, 'gw.log') });
    const tst = await target.waitRegistered(60_000);
    await waitFor('adapter registered', async () => (JSON.parse(await cyphonic(gwHost, ['adapter', 'status', '--state', gwState, '--json'])) as { registered: boolean }).registered, 30_000, 500);
    await cyphonic(cloud.host, ['cloud', 'general-node', 'add', 'gn1', '--dir', cloud.dir, '--mac', MAC, '--adapter', 'gw', '--family', 'v4']);
    await waitFor('the general node registered', async () => {
      const st = JSON.parse(await cyphonic(gwHost, ['adapter', 'status', '--state', gwState, '--json'])) as { generalNodes: { name: string; registered: boolean }[] };
      return st.generalNodes.some((g) => g.name === 'gn1' && g.registered);
    }, 30_000, 500);
    await dhclient(dev, join(work.dir, 'gn1'), 4);
    const t0 = Date.now();
    await waitFor('gn1 pings tmob', async () => (await dev.exec('ping', ['-n', '-c', '1', '-W', '2', tst.vip4!])).code === 0, 30_000, 200);
    const firstMs = Date.now() - t0;
    const out = (await dev.exec('ping', ['-n', '-q', '-c', '40', '-i', '0.1', '-W', '2', tst.vip4!], { timeoutMs: 30_000 })).stdout;
    const got = Number(/(\d+) received/.exec(out)?.[1] ?? 0);
    const avg = Number(/= [\d.]+\/([\d.]+)\//.exec(out)?.[1] ?? NaN);
    t.diagnostic(`general node -> mobile node: first ping ${firstMs} ms after the first try; ${got}/40 answered, RTT avg ${avg} ms`);
    // 3 % loss each way: ~6 % of round trips lost; 30 of 40 is a loose floor.
    assert.ok(got >= 30, `answered ${got}/40: ${out}`);
    assert.ok(avg >= 100 && avg <= 200, `RTT ${avg} ms on a 150 ± 50 ms path`);
  });
});
