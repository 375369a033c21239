// Data-plane benchmark: plain veth vs wireguard-go vs Nebula vs cyphonic (and cyphonic on its portable path,
// --no-offload) between two namespaces of one testbed — TCP (1 and 4 streams), UDP 1400-byte packets/s and loss
// (unpaced flood), UDP throughput at <= 1 % loss (the highest iperf3 -b rate found by bisection), ping RTT, CPU s
// per Gbit; prints tables.
//
// usage: node dist/bench/dataplane.js [--only veth,wg,nebula,cyphonic,portable] [--seconds N] [--repeat N] [--udp-len B] [--udp-rate R]
//        [--udp-window W] [--udp-steps N] [--udp-step-seconds N]
// needs root and iperf3, wireguard-go, wireguard-tools, nebula, bind9-dnsutils (scripts/setup.sh installs them).

import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Testbed, type Host } from '../test/harness/netns/index.js';
import { workDir } from '../test/harness/cluster.js';
import { IperfServer, iperfTcp, iperfUdp, UDP_MAX_LOSS, udpAtLowLoss } from './lib/iperf.js';
import { cpuDelta, cpuSnapshot, dig, errMsg, firstContactPing, median, pingMedian, routeMtu, udp4Fragments, type DigResult } from './lib/measure.js';
import { setupWireguard } from './lib/wireguard.js';
import { setupNebula } from './lib/nebula.js';
import { setupOverlay, type Overlay } from './lib/cyphonic.js';

type RowKey = 'veth' | 'wg' | 'nebula' | 'cyphonic' | 'portable';
const ROW_LABEL: Record<RowKey, string> = { veth: 'plain veth', wg: 'wireguard-go', nebula: 'Nebula', cyphonic: 'cyphonic', portable: 'cyphonic --no-offload' };
const ALL_ROWS: RowKey[] = ['veth', 'wg', 'nebula', 'cyphonic', 'portable'];
/** Rows cyphonic is compared with (ratio lines). */
const REFERENCE_ROWS: RowKey[] = ['wg', 'nebula'];

interface Options {
  only: RowKey[];
  seconds: number;
  repeat: number;
  udpLen: number;
  udpRate: string;
  /** iperf3 -w for the UDP runs ('' = the system's default socket buffers). */
  udpWindow: string;
  /** Bisection steps of the <= 1 % loss search (0 = no search) and seconds per step. */
  udpSteps: number;
  udpStepSeconds: number;
}

function usage(): string {
  return 'usage: node dist/bench/dataplane.js [--only veth,wg,nebula,cyphonic,portable] [--seconds N (10)] [--repeat N (1)] [--udp-len PAYLOAD BYTES (1372: 1400-byte IPv4 packets)] [--udp-rate RATE (0 = unlimited)] [--udp-window W (4M; "default": the system\'s socket buffers)] [--udp-steps N (6; 0 = no <= 1 % loss search)] [--udp-step-seconds N (3)]\n';
}

function parseArgs(argv: string[]): Options {
  const o: Options = { only: [...ALL_ROWS], seconds: 10, repeat: 1, udpLen: 1372, udpRate: '0', udpWindow: '4M', udpSteps: 6, udpStepSeconds: 3 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const int = (min: number, max: number): number => {
      const n = Number(val());
      if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${a} must be an integer in ${min}..${max}`);
      return n;
    };
    if (a === '--only') {
      const list = val().split(',').map((s) => s.trim()).filter(Boolean);
      for (const r of list) if (!ALL_ROWS.includes(r as RowKey)) throw new Error(`--only: unknown row "${r}" (${ALL_ROWS.join(', ')})`);
      o.only = ALL_ROWS.filter((r) => list.includes(r));
    } else if (a === '--seconds') o.seconds = int(1, 600);
    else if (a === '--repeat') o.repeat = int(1, 20);
    else if (a === '--udp-len') o.udpLen = int(16, 65_000);
    else if (a === '--udp-rate') {
      o.udpRate = val();
      if (!/^\d+(\.\d+)?[KMG]?$/.test(o.udpRate)) throw new Error('--udp-rate: an iperf3 -b rate such as 0 (unlimited), 500M, 2G');
    }
    else if (a === '--udp-window') {
      const w = val();
      if (w !== 'default' && !/^\d+[KM]?$/.test(w)) throw new Error('--udp-window: an iperf3 -w size such as 4M, or "default"');
      o.udpWindow = w === 'default' ? '' : w;
    } else if (a === '--udp-steps') o.udpSteps = int(0, 12);
    else if (a === '--udp-step-seconds') o.udpStepSeconds = int(1, 60);
    else if (a === '--help' || a === '-h') {
      process.stdout.write(usage());
      process.exit(0);
    } else throw new Error(`unknown option ${a}\n${usage()}`);
  }
  return o;
}

/** One table row; a null cell prints as 'n/a' and its reason lands in `errors`. */
interface Row {
  key: RowKey;
  tcp1: number | null;
  tcp4: number | null;
  udpPps: number | null;
  udpLoss: number | null;
  /** Highest goodput (Mbit/s) of a UDP run with <= 1 % loss, and the -b rate that gave it. */
  udpMbps: number | null;
  udpAt: string;
  rtt: number | null;
  cpuPerGbit: number | null;
  errors: string[];
  notes: string[];
}

interface CyphonicExtra {
  firstPing: { ms: number; how: string } | null;
  dnsFirst: number | null;
  dnsWarm: number | null;
  dnsAnswer: string;
  path: string;
  /** As the initiating node measured them (node status: peers[].routeSelectionMs / tunnelMs). */
  routeMs: number | null;
  tunnelMs: number | null;
  errors: string[];
}

function emptyRow(key: RowKey): Row {
  return { key, tcp1: null, tcp4: null, udpPps: null, udpLoss: null, udpMbps: null, udpAt: '', rtt: null, cpuPerGbit: null, errors: [], notes: [] };
}

/** Runs `fn`, recording a failure in `row.errors` instead of throwing. */
async function cell<T>(row: { errors: string[] }, what: string, fn: () => Promise<T>): Promise<T | null> {
  try {
    return await fn();
  } catch (err) {
    row.errors.push(`${what}: ${errMsg(err)}`);
    return null;
  }
}

/** The four measurements shared by every row, client `a` -> server `target` (an address of b). */
async function measure(row: Row, o: Options, a: Host, target: string, server: IperfServer, cpuRoots: (() => number[]) | null): Promise<void> {
  row.rtt = (await cell(row, 'ping', () => pingMedian(a, target)))?.median ?? null;

  // Every iperf run restarts the server after a failure so one broken run does not wedge the rest.
  const guarded = async <T>(what: string, fn: () => Promise<T>): Promise<T | null> => {
    const r = await cell(row, what, fn);
    if (r === null) await server.restart().catch(() => undefined);
    return r;
  };

  const tcp1: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < o.repeat; i++) {
    const roots = cpuRoots ? cpuRoots() : [];
    const before = cpuRoots ? cpuSnapshot(roots) : null;
    const r = await guarded('TCP 1 stream', () => iperfTcp(a, target, o.seconds, 1));
    if (!r) break;
    tcp1.push(r.gbps);
    if (before) {
      const secs = cpuDelta(before, cpuSnapshot(roots));
      const gbit = (r.bytes * 8) / 1e9;
      if (gbit > 0) cpu.push(secs / gbit);
    }
  }
  if (tcp1.length > 0) row.tcp1 = median(tcp1);
  if (cpu.length > 0) row.cpuPerGbit = median(cpu);

  const tcp4: number[] = [];
  for (let i = 0; i < o.repeat; i++) {
    const r = await guarded('TCP 4 streams', () => iperfTcp(a, target, o.seconds, 4));
    if (!r) break;
    tcp4.push(r.gbps);
  }
  if (tcp4.length > 0) row.tcp4 = median(tcp4);

  // Every row sends the same payload; where it does not fit the path MTU the kernel fragments it.
  const mtu = await routeMtu(a, target).catch(() => null);
  const frags = mtu === null ? 0 : udp4Fragments(o.udpLen, mtu);
  if (mtu === null) row.notes.push(`path MTU to ${target} unknown`);
  else if (frags > 1) row.notes.push(`UDP ${o.udpLen} B datagrams (${o.udpLen + 28} B IPv4) exceed the MTU ${mtu}: ${frags} IP fragments each`);

  const pps: number[] = [];
  const loss: number[] = [];
  const sent: number[] = [];
  for (let i = 0; i < o.repeat; i++) {
    const r = await guarded(`UDP ${o.udpLen} B`, () => iperfUdp(a, target, o.seconds, o.udpLen, o.udpRate, o.udpWindow || undefined));
    if (!r) break;
    pps.push(r.pps);
    loss.push(r.lossPct);
    sent.push(r.sentPps);
  }
  if (pps.length > 0) {
    row.udpPps = median(pps);
    row.udpLoss = median(loss);
    row.notes.push(`UDP sender offered ${fmtPps(median(sent))} pkt/s (-b ${o.udpRate})`);
  }
  if (o.udpSteps > 0 && sent.length > 0) {
    const found = await guarded('UDP <= 1 % loss search', () => udpAtLowLoss(a, target, o.udpLen, (median(sent) * (o.udpLen + 28) * 8) / 1e6, o.udpSteps, o.udpStepSeconds, o.udpWindow || undefined));
    if (found) {
      row.udpMbps = found.mbps;
      row.udpAt = found.at;
    }
  }
}

/** Resolver address and port from the node's `dns` status field ("ip", "ip:port" or "[ip6]:port"). */
function resolverOf(dns: string | null, vip4: string): { addr: string; port: number } {
  if (!dns) return { addr: vip4, port: 53 };
  const m6 = /^\[(.+)\]:(\d+)$/.exec(dns);
  if (m6) return { addr: m6[1]!, port: Number(m6[2]) };
  const m4 = /^([\d.]+):(\d+)$/.exec(dns);
  if (m4) return { addr: m4[1]!, port: Number(m4[2]) };
  return { addr: dns, port: 53 };
}

/** Hosts the cyphonic rows share: the cloud, and 'c' (looked up by name only, so its DNS first contact is cold). */
interface OverlayHosts {
  cloud: Host;
  c: Host;
}

async function overlayHosts(tb: Testbed, have: OverlayHosts | null): Promise<OverlayHosts> {
  return have ?? { cloud: await tb.addHost('cloud', { site: tb.global, family: 'dual' }), c: await tb.addHost('c', { site: tb.global, family: 'dual' }) };
}

/**
 * A cyphonic row on a fresh overlay (cloud + a, b, c) in `dir`. With `extra`, also the first-contact figures;
 * `nodeArgs` go to every `node up` (the portable row passes --no-offload).
 */
async function cyphonicRow(row: Row, extra: CyphonicExtra | null, o: Options, hosts: OverlayHosts, a: Host, b: Host, server: IperfServer, dir: string, nodeArgs: string[] = []): Promise<void> {
  let ov: Overlay | null = null;
  try {
    ov = await setupOverlay(hosts.cloud, [a, b, hosts.c], dir, nodeArgs);
    const na = ov.nodes.get('a')!;
    const nb = ov.nodes.get('b')!;
    const nc = ov.nodes.get('c')!;
    row.notes.push(`vips a=${na.vip4} b=${nb.vip4}, resolver ${na.dns ?? '(status has no dns; tried vip4:53)'}`);
    const offload = (na.status as { offload?: unknown }).offload;
    row.notes.push(`offload at a: ${JSON.stringify(offload ?? null)}`);
    if (!extra) {
      const overlay = ov;
      await measure(row, o, a, nb.vip4, server, () => overlay.pids(['a', 'b']));
      return;
    }

    const res = resolverOf(na.dns, na.vip4);
    const digC = (): Promise<DigResult> => dig(a, res.addr, 'c.cyphonic.internal', 'A', res.port);
    const first = await cell(extra, 'DNS first contact', async () => {
      const r = await digC();
      if (r.status !== 'NOERROR' || !r.answers.includes(nc.vip4)) throw new Error(`c.cyphonic.internal -> ${r.status} [${r.answers.join(', ')}], want ${nc.vip4}`);
      return r;
    });
    if (first) {
      extra.dnsFirst = first.queryMs;
      extra.dnsAnswer = `c.cyphonic.internal A ${first.answers.join(', ')}`;
      const warm: number[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await cell(extra, 'DNS repeated', digC);
        if (!r) break;
        warm.push(r.queryMs);
      }
      if (warm.length > 0) extra.dnsWarm = median(warm);
    }

    extra.firstPing = await cell(extra, 'first ping a->b', () => firstContactPing(a, nb.vip4));
    if (!extra.firstPing) {
      row.errors.push(`no overlay connectivity a -> b (${nb.vip4}); throughput not measured`);
      return;
    }
    const peer = await cell(extra, 'peer status', async () => (await ov!.peers('a')).find((p) => p.name === 'b' || p.vip4 === nb.vip4) ?? null);
    extra.path = peer ? `${peer.path ?? '?'} via ${peer.endpoint ?? '?'}` : 'b not in a\'s peers';
    extra.routeMs = (peer as { routeSelectionMs?: number | null } | null)?.routeSelectionMs ?? null;
    extra.tunnelMs = (peer as { tunnelMs?: number | null } | null)?.tunnelMs ?? null;

    const overlay = ov;
    await measure(row, o, a, nb.vip4, server, () => overlay.pids(['a', 'b']));
  } finally {
    await ov?.stop();
  }
}

// ---- output ---------------------------------------------------------------------------------

const fmt = (v: number | null, digits: number): string => (v === null ? 'n/a' : v.toFixed(digits));
const fmtPps = (v: number | null): string => (v === null ? 'n/a' : v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : `${(v / 1e3).toFixed(0)}k`);

function versions(): string {
  const v = (cmd: string, args: string[], re: RegExp): string => {
    try {
      const out = execFileSync(cmd, args, { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'pipe'] });
      return re.exec(out)?.[1] ?? '?';
    } catch (err) {
      const out = (err as { stdout?: string }).stdout ?? '';
      return re.exec(out)?.[1] ?? 'missing';
    }
  };
  return `iperf3 ${v('iperf3', ['--version'], /iperf (\S+)/)}, wireguard-go ${v('wireguard-go', ['--version'], /wireguard-go v?(\S+)/)}, nebula ${v('nebula', ['-version'], /Version: v?(\S+)/)}`;
}

function render(rows: Row[], extra: CyphonicExtra | null, o: Options, kernel: string): string {
  const out: string[] = [];
  const cpu = cpus();
  out.push(`cyphonic data-plane benchmark — a -> b across the testbed's global segment (veth + bridge + veth)`);
  out.push(`${o.seconds} s per iperf3 run, ${o.repeat} run(s) each (medians), ${cpu.length} x ${cpu[0]?.model.trim() ?? '?'}, Linux ${kernel}, node ${process.version}, ${versions()}`);
  out.push('');
  const head = ['', 'TCP 1 Gbit/s', 'TCP 4 Gbit/s', `UDP ${o.udpLen + 28} B pkt/s`, 'UDP loss %', `UDP Mbit/s @<=${UDP_MAX_LOSS}%`, 'RTT ms', 'CPU s/Gbit'];
  const w = [Math.max(14, ...rows.map((r) => ROW_LABEL[r.key].length)), 13, 13, 17, 11, 17, 8, 11];
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(' ');
  out.push(line(head));
  out.push(line(w.map((n) => '-'.repeat(n))));
  for (const r of rows) {
    out.push(line([
      ROW_LABEL[r.key],
      fmt(r.tcp1, 2),
      fmt(r.tcp4, 2),
      fmtPps(r.udpPps),
      fmt(r.udpLoss, 1),
      fmt(r.udpMbps, 0),
      fmt(r.rtt, 3),
      r.key === 'veth' ? '-' : fmt(r.cpuPerGbit, 2),
    ]));
  }
  const get = (k: RowKey): Row | undefined => rows.find((r) => r.key === k);
  const veth = get('veth');
  const cy = get('cyphonic');
  const refs = REFERENCE_ROWS.map(get).filter((r): r is Row => r !== undefined);
  out.push('');
  for (const ref of refs) {
    if (!cy) break;
    const ratio = ref.tcp1 && cy.tcp1 !== null ? `${(cy.tcp1 / ref.tcp1).toFixed(2)}x` : 'n/a';
    out.push(`cyphonic / ${ROW_LABEL[ref.key]}, TCP 1 stream: ${ratio}`);
  }
  for (const t of [...refs, cy]) {
    if (!t || !veth) continue;
    const added = t.rtt !== null && veth.rtt !== null ? `${((t.rtt - veth.rtt) * 1000).toFixed(0)} us` : 'n/a';
    out.push(`added RTT of ${ROW_LABEL[t.key]} over plain veth: ${added}`);
  }
  for (const t of [...refs, cy, get('portable')]) {
    if (!t || !veth || t.udpMbps === null || !veth.udpMbps) continue;
    out.push(`UDP at <= ${UDP_MAX_LOSS} % loss, ${ROW_LABEL[t.key]} / plain veth: ${((100 * t.udpMbps) / veth.udpMbps).toFixed(0)} %`);
  }
  out.push('CPU s/Gbit: user+sys CPU of the tunnel processes at both ends during the TCP 1-stream run / Gbit received');
  out.push(`UDP pkt/s and loss: one unpaced iperf3 -u flood; UDP Mbit/s @<=${UDP_MAX_LOSS}%: goodput of the fastest -b rate with at most ${UDP_MAX_LOSS} % loss (bisection, ${o.udpSteps} x ${o.udpStepSeconds} s); iperf3 -w ${o.udpWindow || '(system default)'}`);
  for (const r of rows) if (r.udpAt) out.push(`  ${ROW_LABEL[r.key]}: ${r.udpAt}`);

  if (extra) {
    out.push('', 'cyphonic first contact (a fresh overlay: nodes a, b, c)');
    const l2 = (k: string, v: string): string => `  ${k.padEnd(46)} ${v}`;
    out.push(l2('route selection (node a, Direction Request)', extra.routeMs !== null ? `${extra.routeMs.toFixed(2)} ms` : 'n/a'));
    out.push(l2('tunnel establishment (node a, Tunnel Req/Res)', extra.tunnelMs !== null ? `${extra.tunnelMs.toFixed(2)} ms` : 'n/a'));
    out.push(l2('route selection + tunnel (first ping a -> b)', extra.firstPing ? `${extra.firstPing.ms.toFixed(2)} ms  (${extra.firstPing.how})` : 'n/a'));
    out.push(l2('DNS first contact (dig c.cyphonic.internal)', extra.dnsFirst !== null ? `${extra.dnsFirst} ms  (dig Query time; ${extra.dnsAnswer})` : 'n/a'));
    out.push(l2('DNS repeated (median of 5)', extra.dnsWarm !== null ? `${extra.dnsWarm} ms` : 'n/a'));
    out.push(l2('tunnel a -> b after first contact', extra.path || 'n/a'));
  }

  const problems = [...rows.flatMap((r) => [...r.notes.map((n) => `${ROW_LABEL[r.key]}: ${n}`), ...r.errors.map((e) => `${ROW_LABEL[r.key]}: n/a because ${e}`)]), ...(extra?.errors ?? []).map((e) => `cyphonic first contact: n/a because ${e}`)];
  if (problems.length > 0) out.push('', ...problems.map((p) => `note: ${p}`));
  return out.join('\n') + '\n';
}

// ---- main -----------------------------------------------------------------------------------

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const why = Testbed.unavailableReason();
  if (why) throw new Error(why);
  const tools: Array<[cmd: string, pkg: string, row: RowKey | null]> = [
    ['iperf3', 'iperf3', null], ['dig', 'bind9-dnsutils', null], ['wg', 'wireguard-tools', 'wg'], ['wireguard-go', 'wireguard-go', 'wg'],
    ['nebula', 'nebula', 'nebula'], ['nebula-cert', 'nebula', 'nebula'],
  ];
  for (const [cmd, pkg, forRow] of tools) {
    if (forRow !== null && !o.only.includes(forRow)) continue;
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore', timeout: 5000 });
    } catch {
      throw new Error(`needs \`${cmd}\` (apt-get install ${pkg}, or run scripts/setup.sh)`);
    }
  }
  const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
  const work = workDir('bench-dp');
  const tb = await Testbed.create();
  const rows: Row[] = [];
  let extra: CyphonicExtra | null = null;
  try {
    const a = await tb.addHost('a', { site: tb.global, family: 'dual' });
    const b = await tb.addHost('b', { site: tb.global, family: 'dual' });
    const server = new IperfServer(b, join(work.dir, 'iperf3-server.log'));
    await server.start();
    let hosts: OverlayHosts | null = null;
    for (const key of o.only) {
      const row = emptyRow(key);
      rows.push(row);
      process.stderr.write(`bench: ${ROW_LABEL[key]} ...\n`);
      try {
        if (key === 'veth') {
          await measure(row, o, a, b.addr4!, server, null);
        } else if (key === 'wg') {
          const wg = await setupWireguard(tb.prefix, a, b, work.dir);
          try {
            await measure(row, o, a, wg.addrB, server, () => wg.pids);
          } finally {
            await wg.stop();
          }
        } else if (key === 'nebula') {
          const neb = await setupNebula(a, b, work.dir);
          try {
            await measure(row, o, a, neb.addrB, server, () => neb.pids);
          } finally {
            await neb.stop();
          }
        } else if (key === 'cyphonic') {
          extra = { firstPing: null, dnsFirst: null, dnsWarm: null, dnsAnswer: '', path: '', routeMs: null, tunnelMs: null, errors: [] };
          hosts = await overlayHosts(tb, hosts);
          await cyphonicRow(row, extra, o, hosts, a, b, server, join(work.dir, key));
        } else {
          hosts = await overlayHosts(tb, hosts);
          await cyphonicRow(row, null, o, hosts, a, b, server, join(work.dir, key), ['--no-offload']);
        }
      } catch (err) {
        row.errors.push(`setup: ${errMsg(err)}`);
      }
    }
    await server.stop();
  } finally {
    await tb.cleanup();
    work.remove();
  }
  process.stdout.write(render(rows, extra, o, kernel));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
