// Adapter benchmark (the deck's slides 20–21 table): what a general node on the adapter's LAN sees.
//   - ARP and ND proxy response time (request from the device → answer with the adapter's MAC), µs: device-side
//     (kernel timestamps of the request leaving and the answer arriving at the device's interface) and the probe
//     process's own round trip (bench/lib/lan-probe.ts)
//   - DNS response time for an overlay name through the adapter (first query, which starts route selection, and
//     warm queries), and for comparison the cyphonic node's own resolver
//   - RTT general node → cyphonic node through the adapter (IPv4 and IPv6) vs node → node (the adapter's own node)
//   - TCP throughput general node → cyphonic node through the adapter, and back (node → general node), vs node → node
//     (iperf3), with how many packets the adapter's IP fast path carried (lan.fast.out / .in, native/lan_fast.c)
//   - UDP throughput at <= 1 % loss, general node → cyphonic node through the adapter vs node → node: 1400-byte IPv4
//     datagrams (iperf3 -u -l 1372 -w 4M), the highest -b rate found by bisection below what an unpaced flood
//     offered (bench/lib/iperf.ts's udpAtLowLoss, as bench/dataplane.ts's UDP row); and the same search with a
//     UDP GSO sender (bench/lib/udp-gso-load.ts: UDP_SEGMENT sends of 40 such datagrams, as a QUIC stack sends),
//     whose super-datagrams the adapter carries into the general node's engine whole (lan.fast.out.gso.udp); iperf3's
//     plain datagrams the adapter merges, runs of one flow it reads together, into super-datagrams (lan.fast.out.merged.udp)
//   - the adapter process's CPU time per datagram of iperf3 -u at a fixed 80 Mbit/s (general node → node), which the
//     sender reaches on a busy box too, so builds compare by what the adapter spends rather than by what got sent
//
// usage: node dist/bench/adapter.js [--seconds N (10)] [--probes N (200)] [--no-lan-fast (the adapter carries every
//        packet through its main thread, for A/B runs)] [--adapter-side (also time each ARP/ND answer at the
//        adapter's own LAN interface, request in → answer out: a second capture socket there, off by default)]
//        [--udp-steps N (5; 0: no UDP rows)] [--udp-step-seconds N (3)]
// needs root and iperf3, dhclient (isc-dhcp-client), dig (bind9-dnsutils); scripts/setup.sh installs them.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { controlGet } from '../src/util/control.js';
import type { AdapterStatus } from '../src/adapter/daemon.js';
import { CLI, CloudProc, cyphonic, NodeProc, REPO, waitFor, workDir } from '../test/harness/cluster.js';
import { dhclient, Lan } from '../test/harness/lan.js';
import { Testbed, type Host } from '../test/harness/netns/index.js';
import { IperfServer, iperfTcp, iperfUdp, searchLowLoss, UDP_MAX_LOSS, udpAtLowLoss } from './lib/iperf.js';
import { dig, errMsg, median, pingMedian } from './lib/measure.js';
import { intArg } from './lib/args.js';

const PROBE = join(REPO, 'dist', 'bench', 'lib', 'lan-probe.js');
const GSO_LOAD = join(REPO, 'dist', 'bench', 'lib', 'udp-gso-load.js');
/** Datagrams per UDP GSO send of the GSO sender rows (40 × 1400 B: 56 KB, under the 64 KiB a send may carry). */
const GSO_BURST = 40;
const GSO_PORT = 9100;
const DOMAIN = 'cyphonic.internal';
/** UDP payload bytes: 1400-byte IPv4 datagrams, the overlay's MTU (as bench/dataplane.ts's UDP row). */
const UDP_LEN = 1372;
const UDP_WINDOW = '4M';
/** The fixed rate of the adapter CPU row: under what the general node's iperf3 got through in every run so far. */
const UDP_FIXED_MBPS = 80;

/** CPU seconds (user + system, all threads) process `pid` has used so far (/proc/<pid>/stat, CLK_TCK 100). */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function main(): Promise<void> {
  const seconds = intArg('--seconds', 10, 1, 100_000);
  const probes = intArg('--probes', 200, 1, 100_000);
  const udpSteps = intArg('--udp-steps', 5, 0, 12);
  const udpStepSeconds = intArg('--udp-step-seconds', 3, 1, 60);
  const tb = await Testbed.create();
  const work = workDir('bench-adapter');
  let lan: Lan | null = null;
  let gw: ChildProcess | null = null;
  const rows: [string, string][] = [];
  try {
    const cloud = new CloudProc(await tb.addHost('cloud', { family: 'dual' }), work.dir);
    await cloud.init();
    await cloud.start();
    const alpha = new NodeProc(await tb.addHost('alpha', { family: 'dual' }), work.dir, 'alpha');
    alpha.start(await cloud.enroll('alpha'));
    const gwHost = await tb.addHost('gw', { family: 'dual' });
    lan = await Lan.create(tb, gwHost, 'lan0');
    const g1 = await lan.addDevice('g1', '02:be:00:00:00:01');
    const state = join(work.dir, 'gw');
    const noFast = process.argv.includes('--no-lan-fast') ? ['--no-lan-fast'] : [];
    const adapterSide = process.argv.includes('--adapter-side');
    gw = gwHost.spawn(process.execPath, [CLI, 'adapter', 'up', '--state', state, '--lan', 'lan0', '--token', await cloud.enroll('gw'), '--info-interval', '1', ...noFast], { logFile: join(work.dir, 'gw.log') });
    const status = (): Promise<AdapterStatus> => controlGet(join(state, 'adapter.sock'), '/status') as Promise<AdapterStatus>;
    const a = await alpha.waitRegistered();
    await waitFor('adapter registered', async () => (await status()).registered, 30_000);
    await cyphonic(cloud.host, ['cloud', 'general-node', 'add', 'g1', '--dir', cloud.dir, '--mac', '02:be:00:00:00:01', '--adapter', 'gw']);
    await waitFor('general node registered', async () => (await status()).generalNodes[0]?.registered === true, 30_000);
    await dhclient(g1, join(work.dir, 'g1'), 4);
    await dhclient(g1, join(work.dir, 'g1'), 6);
    const st = await status();
    const me = st.generalNodes[0]!;

    // DNS: the first query for a peer starts route selection; warm ones are answered from the known peer.
    const first = await dig(g1, st.vip4!, `alpha.${DOMAIN}`, 'A');
    const warm: number[] = [];
    for (let i = 0; i < 20; i++) warm.push((await dig(g1, st.vip4!, `alpha.${DOMAIN}`, i % 2 ? 'AAAA' : 'A')).queryMs);
    rows.push(['DNS overlay name via the adapter: first query', `${first.queryMs} ms (${first.answers.join(' ')})`]);
    rows.push(['DNS overlay name via the adapter: warm (median of 20)', `${median(warm)} ms`]);
    const nodeDns: number[] = [];
    for (let i = 0; i < 20; i++) nodeDns.push((await dig(alpha.host, a.dns!, `gw.${DOMAIN}`, 'A')).queryMs);
    rows.push(['DNS overlay name at a node\'s own resolver (median of 20)', `${median(nodeDns)} ms`]);

    // ARP / ND proxy response time, once the device knows the peer (a name it resolved): the adapter joined the
    // peer address's solicited-node group then, so neighbour solicitations reach it through the MLD-snooping switch.
    for (const [mode, mine, target] of [['arp', me.vip4!, a.vip4!], ['nd', me.vip6!, a.vip6!]] as const) {
      const watch = adapterSide ? gwHost.run(process.execPath, [PROBE, `watch-${mode}`, 'lan0', '-', target, String(probes), String(30_000 + probes * 50)], { timeoutMs: 120_000 }) : null;
      if (watch) await new Promise((r) => setTimeout(r, 500)); // its socket is open before the first request
      const r = JSON.parse(await g1.run(process.execPath, [PROBE, mode, 'eth0', mine, target, String(probes)], { timeoutMs: 120_000 })) as { samples: number[]; wire: number[]; lost: number; unstamped: number };
      const name = mode === 'arp' ? 'ARP' : 'ND';
      const fig = (xs: number[]): string => (xs.length ? `${median(xs).toFixed(0)} / ${pct(xs, 90).toFixed(0)} µs` : 'n/a');
      rows.push([`${name} proxy response, device-side, kernel timestamps (median / p90)`, `${fig(r.wire)} (${r.wire.length} stamped, ${r.unstamped} unstamped)`]);
      rows.push([`${name} proxy response, probe process round trip (median / p90)`, `${fig(r.samples)} (${r.samples.length} answered, ${r.lost} lost)`]);
      if (watch) {
        const w = JSON.parse(await watch) as { adapter: number[] };
        rows.push([`${name} proxy, adapter-side: request in → answer out at lan0 (median / p90)`, `${fig(w.adapter)} (${w.adapter.length} pairs)`]);
      }
    }

    // RTT.
    const r4 = await pingMedian(g1, a.vip4!);
    const r6 = await pingMedian(g1, a.vip6!);
    const n4 = await pingMedian(gwHost, a.vip4!);
    rows.push(['RTT general node → node, IPv4 (median of 50)', `${r4.median.toFixed(3)} ms`]);
    rows.push(['RTT general node → node, IPv6 (median of 50)', `${r6.median.toFixed(3)} ms`]);
    rows.push(['RTT node → node (the adapter\'s own node), IPv4', `${n4.median.toFixed(3)} ms`]);

    // TCP throughput.
    const iperf = new IperfServer(alpha.host, join(work.dir, 'iperf.log'));
    await iperf.start();
    const fast = async (): Promise<[number, number]> => {
      const c = (await status()).lanCounters;
      return [c['lan.fast.out'] ?? 0, c['lan.fast.in'] ?? 0];
    };
    let gn = 0;
    try {
      const f0 = await fast();
      const t = await iperfTcp(g1, a.vip4!, seconds);
      const f1 = await fast();
      gn = t.gbps;
      rows.push([`TCP general node → node through the adapter (${seconds} s)`, `${(t.gbps * 1000).toFixed(1)} Mbit/s (retransmits ${t.retransmits ?? '-'}; fast path out ${f1[0] - f0[0]}, in ${f1[1] - f0[1]} packets)`]);
      await iperf.restart();
      const n = await iperfTcp(gwHost, a.vip4!, seconds);
      rows.push([`TCP node → node (the adapter's own node, ${seconds} s)`, `${(n.gbps * 1000).toFixed(1)} Mbit/s (general node → node: ${((100 * gn) / n.gbps).toFixed(0)} %)`]);
    } finally {
      await iperf.stop();
    }
    // The other way: the cyphonic node sends to the general node.
    const back = new IperfServer(g1, join(work.dir, 'iperf-g1.log'));
    await back.start();
    try {
      const c0 = (await status()).lanCounters;
      const t = await iperfTcp(alpha.host, me.vip4!, seconds);
      const c1 = (await status()).lanCounters;
      const d = (k: string): number => (c1[k] ?? 0) - (c0[k] ?? 0);
      rows.push([`TCP node → general node through the adapter (${seconds} s)`, `${(t.gbps * 1000).toFixed(1)} Mbit/s (retransmits ${t.retransmits ?? '-'}; fast path in ${d('lan.fast.in')} packets in ${d('lan.fast.in.gso')} GSO frames + singles, out ${d('lan.fast.out')})`]);
    } finally {
      await back.stop();
    }

    // UDP at <= 1 % loss: general node → node through the adapter, then node → node (the adapter's own node).
    if (udpSteps > 0) {
      const srv = new IperfServer(alpha.host, join(work.dir, 'iperf-udp.log'));
      await srv.start();
      try {
        let gnUdp = 0;
        for (const [label, from] of [['general node → node through the adapter', g1], ['node → node (the adapter\'s own node)', gwHost]] as const) {
          const c0 = (await status()).lanCounters;
          const flood = await iperfUdp(from, a.vip4!, udpStepSeconds, UDP_LEN, '0', UDP_WINDOW);
          const found = await udpAtLowLoss(from, a.vip4!, UDP_LEN, (flood.sentPps * (UDP_LEN + 28) * 8) / 1e6, udpSteps, udpStepSeconds, UDP_WINDOW);
          const c1 = (await status()).lanCounters;
          const d = (k: string): number => (c1[k] ?? 0) - (c0[k] ?? 0);
          const extra = from === g1
            ? `fast path out ${d('lan.fast.out')} packets, ${d('lan.fast.out.gso.udp')} UDP super-frames whole, ${d('lan.fast.out.merged.udp.datagrams')} merged into ${d('lan.fast.out.merged.udp')} writes`
            : `general node → node: ${gnUdp > 0 && found.mbps > 0 ? ((100 * gnUdp) / found.mbps).toFixed(0) : '-'} %`;
          if (from === g1) gnUdp = found.mbps;
          rows.push([`UDP ${label}, ${UDP_LEN + 28} B datagrams at <= ${UDP_MAX_LOSS} % loss`, `${found.mbps.toFixed(0)} Mbit/s (${found.at}; unpaced flood ${(flood.pps / 1000).toFixed(0)}k pkt/s received, ${flood.lossPct.toFixed(1)} % loss; ${extra})`]);
          if (from === g1 && gw.pid !== undefined) {
            // What the adapter spends on the same datagrams at a rate every build carries (the figure above is bounded
            // by what the sender gets out on a shared box too): its process's CPU time per datagram received.
            const c2 = (await status()).lanCounters;
            const cpu0 = cpuSeconds(gw.pid);
            const fixed = await iperfUdp(from, a.vip4!, 2 * udpStepSeconds, UDP_LEN, `${UDP_FIXED_MBPS}M`, UDP_WINDOW);
            const cpu = cpuSeconds(gw.pid) - cpu0;
            const c3 = (await status()).lanCounters;
            const got = fixed.pps * 2 * udpStepSeconds;
            rows.push([`UDP general node → node at ${UDP_FIXED_MBPS} Mbit/s (${2 * udpStepSeconds} s): the adapter process's CPU`, `${((1e6 * cpu) / got).toFixed(2)} µs per datagram (${((100 * cpu) / (2 * udpStepSeconds)).toFixed(0)} % of a core; ${(fixed.pps / 1000).toFixed(1)}k pkt/s received, ${fixed.lossPct.toFixed(2)} % loss; ${(c3['lan.fast.out.merged.udp.datagrams'] ?? 0) - (c2['lan.fast.out.merged.udp.datagrams'] ?? 0)} merged into ${(c3['lan.fast.out.merged.udp'] ?? 0) - (c2['lan.fast.out.merged.udp'] ?? 0)} writes)`]);
          }
        }
      } finally {
        await srv.stop();
      }
      // The same search with a UDP GSO sender (each send one super-datagram of GSO_BURST datagrams).
      const gsoRun = async (from: Host, mbps: number, secs: number): Promise<{ lossPct: number; goodMbps: number; offeredMbps: number }> => {
        const rx = alpha.host.exec(process.execPath, [GSO_LOAD, 'recv', String(GSO_PORT), '1500'], { timeoutMs: (secs + 60) * 1000 });
        await new Promise((r) => setTimeout(r, 300));
        const s = JSON.parse(await from.run(process.execPath, [GSO_LOAD, 'send', a.vip4!, String(GSO_PORT), String(secs), String(mbps), String(UDP_LEN), String(GSO_BURST)], { timeoutMs: (secs + 60) * 1000 })) as { sent: number; seconds: number };
        const got = await rx;
        if (got.code !== 0) throw new Error(`udp-gso-load recv: exit ${got.code} ${got.stderr.trim()}`);
        const r = JSON.parse(got.stdout) as { received: number; bytes: number };
        return {
          lossPct: s.sent > 0 ? (100 * Math.max(0, s.sent - r.received)) / s.sent : 100,
          goodMbps: (r.bytes * 8) / s.seconds / 1e6,
          offeredMbps: (s.sent * (UDP_LEN + 28) * 8) / s.seconds / 1e6,
        };
      };
      let gnGso = 0;
      for (const [label, from] of [['general node → node through the adapter', g1], ['node → node (the adapter\'s own node)', gwHost]] as const) {
        const c0 = (await status()).lanCounters;
        const flood = await gsoRun(from, 0, udpStepSeconds);
        // The kernel accepts GSO sends far faster than anything carries them (what it accepted is no ceiling):
        // search up to 1.5 × what the unpaced flood got through.
        const found = await searchLowLoss(1.5 * flood.goodMbps, udpSteps, (_at, mbps) => gsoRun(from, mbps, udpStepSeconds));
        const c1 = (await status()).lanCounters;
        const d = (k: string): number => (c1[k] ?? 0) - (c0[k] ?? 0);
        const extra = from === g1
          ? `fast path out ${d('lan.fast.out')} packets, ${d('lan.fast.out.gso.udp')} UDP super-frames whole, ${d('lan.rx.gso.udp')} cut in the reader`
          : `general node → node: ${gnGso > 0 && found.mbps > 0 ? ((100 * gnGso) / found.mbps).toFixed(0) : '-'} %`;
        if (from === g1) gnGso = found.mbps;
        rows.push([`UDP GSO sender (${GSO_BURST} per send) ${label}, ${UDP_LEN + 28} B datagrams at <= ${UDP_MAX_LOSS} % loss`, `${found.mbps.toFixed(0)} Mbit/s (${found.at}; unpaced: ${flood.goodMbps.toFixed(0)} Mbit/s received, ${flood.lossPct.toFixed(1)} % loss; ${extra})`]);
      }
    }
  } catch (err) {
    rows.push(['error', errMsg(err)]);
  } finally {
    gw?.kill('SIGTERM');
    lan?.cleanup();
    await tb.cleanup();
    work.remove();
  }
  const w = Math.max(...rows.map((r) => r[0].length));
  process.stdout.write('adapter benchmark (one host, network namespaces; the paper measured 32.6 Mbit/s through its adapter)\n');
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(w)}  ${v}\n`);
}

void main();
