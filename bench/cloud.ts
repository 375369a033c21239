// Cloud load generator: simulated nodes speak the real signaling protocol (sealed UDP, no TUN) from loopback to
// real `cloud start --roles nms` processes, against one SQLite instance and 1 and 3 PostgreSQL-backed instances
// (a throwaway cluster, test/harness/postgres.ts). Nodes are created in the store directly (enrollment is not what
// is measured), spread over the instances round-robin. The generator runs in worker threads (bench/lib/cloud-gen.ts)
// on many loopback source addresses. Prints per configuration: registrations/s, keepalives/s (sustained), route
// selections/s with p50/p99 latency (pairs across instances included), RSS per registered node, and per phase the
// CPU the instances, the generator and the rest of the machine used, with registrations and keepalives per NMS
// core-second. With --hold-seconds, a paced phase too: every node keeps alive once per --hold-interval for that long,
// as that many live nodes would (answered, failed, latency, NMS cores busy). With --ka-peers N, every keepalive
// carries N peer reports (what a node with tunnels sends, up to MAX_PEER_REPORTS). With --warm-routes, the route
// selections run a second time over the same pairs, among nodes the instances have seen. With --gc, the instances
// run with V8's --trace-gc-nvp and the bench prints, per phase, their scavenges (how many, mean and longest pause),
// full GCs and promoted bytes. With --pin, the instances run on CPU 0 and the bench with its generator threads on the
// others, so neither waits in the other's run queue (what separate machines give). Each route pass is also seen from
// the instances' side (their own handling times of the Direction Requests, read over the control socket) beside the
// generator's event-loop delay, to tell where a selection's tail is spent. Method and figures: docs/PERFORMANCE.md
// "Cloud".
//
// usage: node dist/bench/cloud.js [--nodes N (10000)] [--routes N (5000)] [--route-rate PER_S (1000)]
//   [--ka-seconds S (5)] [--hold-seconds S (0: skip)] [--hold-interval S (5)] [--workers W (2)] [--sockets K (64)]
//   [--window N (512)] [--ka-peers N (0)] [--warm-routes] [--gc] [--pin] [--only sqlite|pg1|pg3]
//   CYPHONIC_BENCH_PROF=DIR: V8 CPU profiles of the instances in DIR.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, cpSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { cloudControlPath, initCloud } from '../src/cloud/cloud.js';
import type { HandleTimes } from '../src/cloud/api/metrics.js';
import { countsSince, quantileBound, type HistogramCounts } from '../src/metrics/prom.js';
import { controlGet } from '../src/util/control.js';
import { isLiveInstance } from '../src/cloud/instances.js';
import { Worker } from 'node:worker_threads';
import type { Endpoint } from '../src/protocol/endpoint.js';
import type { GenCommand, GenInit, GenResult } from './lib/cloud-gen.js';
import { openStore } from '../src/store/index.js';
import type { Store } from '../src/store/types.js';
import { PostgresCluster, postgresSkip } from '../test/harness/postgres.js';
import { CLI } from '../test/harness/cluster.js';
import { gcWindow, parseGcNvp, type GcWindow } from './lib/gc-nvp.js';
import { errMsg, sleep } from './lib/measure.js';
import { intArg } from './lib/args.js';

const POOLS = { v4: '100.64.0.0/10', v6: 'fd00:bb::/48' };
const GEN = new URL('./lib/cloud-gen.js', import.meta.url);

const arg = (flag: string, def: number): number => intArg(flag, def);

function pct(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Runs `fn` over 0..n-1 with at most `window` in flight; returns the failures. */
async function pooled(n: number, window: number, fn: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  let failed = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      await fn(i).catch(() => failed++);
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, worker));
  return failed;
}

interface Row {
  config: string;
  nodes: number;
  regPerS: number;
  regFailed: number;
  kaPerS: number;
  kaFailed: number;
  routesPerS: number;
  p50: number;
  p99: number;
  routeFailed: number;
  kbPerNode: number;
  /** Per phase: CPU seconds per wall second of the instances (sum), the generator, and everything else on the box. */
  cpu: Record<'reg' | 'ka' | 'routes', { nms: number; gen: number; rest: number }>;
  /** Registrations and keepalives per CPU second of the instances (what one NMS core does). */
  regPerNmsCore: number;
  kaPerNmsCore: number;
  /** The paced phase (--hold-seconds): every node keeps alive once per interval, as live nodes do. */
  hold?: { perS: number; ok: number; failed: number; p50: number; p99: number; nmsCores: number; behindMs: number; kbPerNode: number };
  /** --warm-routes: the same route selections again, every node now known to the instances' caches. */
  warm?: { perS: number; failed: number; p50: number; p99: number; nmsCores: number };
  /** --gc: the instances' GCs per phase (all instances together). */
  gc?: { phase: string; w: GcWindow }[];
  /** Per route pass (first contacts, then --warm-routes): where a selection's time went (RouteSplit). */
  split: RouteSplit[];
}

/**
 * One route pass seen from both ends: the generator's latencies (request sent → Route Direction read), the
 * instances' own handling times of the Direction Requests (cyphonic_nms_handle_seconds, read over `cloud stats`'s
 * control socket before and after: its buckets give "at most" bounds), and how late the generator's event loops ran.
 * What the generator saw beyond the instance's handling is the wire, the instance's queue and the generator itself.
 */
interface RouteSplit {
  pass: string;
  genP50: number;
  genP99: number;
  nmsCount: number;
  nmsMeanMs: number;
  nmsP50AtMost: number;
  nmsP99AtMost: number;
  loopP99: number;
  loopMax: number;
}

/** The Direction Requests' handling times of every instance (summed), read from their control sockets. */
async function directionTimes(dirs: string[]): Promise<HistogramCounts> {
  const all = await Promise.all(dirs.map(async (d) => ((await controlGet(cloudControlPath(d), '/metrics')) as { nmsHandle?: { byType: Record<string, HandleTimes> } }).nmsHandle?.byType['DirectionRequest']));
  const sum: HistogramCounts = { count: 0, sum: 0, buckets: [] };
  for (const t of all) {
    if (!t) continue;
    sum.count += t.count;
    sum.sum += t.sumMs / 1e3;
    t.counts.forEach((c, k) => (sum.buckets[k] = (sum.buckets[k] ?? 0) + c));
  }
  return sum;
}

/** A phase's span on the bench's clock (performance.now()), for --gc. */
interface Span {
  phase: string;
  from: number;
  to: number;
}

const TICK = 100; // USER_HZ on Linux

/** CPU seconds used by process `pid` so far (utime + stime). */
function procCpu(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / TICK;
}

/** CPU seconds all cores of the machine spent busy so far. */
function machineBusy(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
  return (cpu.reduce((a, b) => a + b, 0) - idle) / TICK;
}

function genCpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Runs one phase on every worker; returns the results and wall time, and the CPU the phase cost by whom. */
async function phase(workers: Worker[], cmd: (w: number) => GenCommand, nmsPids: number[], spans: Span[], name: string): Promise<{ res: GenResult[]; secs: number; cpu: { nms: number; gen: number; rest: number }; nmsCpu: number }> {
  const n0 = nmsPids.reduce((a, p) => a + procCpu(p), 0);
  const g0 = genCpu();
  const m0 = machineBusy();
  const t0 = performance.now();
  const res = await Promise.all(workers.map((w, i) => new Promise<GenResult>((resolve) => {
    w.once('message', (m: GenResult) => resolve(m));
    w.postMessage(cmd(i));
  })));
  const t1 = performance.now();
  spans.push({ phase: name, from: t0, to: t1 });
  const secs = (t1 - t0) / 1000;
  const errors: Record<string, number> = {};
  for (const r of res) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
  if (Object.keys(errors).length) console.log(`  failures: ${JSON.stringify(errors)}`);
  const nmsCpu = nmsPids.reduce((a, p) => a + procCpu(p), 0) - n0;
  const gen = genCpu() - g0;
  const all = machineBusy() - m0;
  return { res, secs, nmsCpu, cpu: { nms: nmsCpu / secs, gen: gen / secs, rest: Math.max(0, all - nmsCpu - gen) / secs } };
}

async function runConfig(label: string, db: string, instances: number, o: Opts): Promise<Row> {
  const { nodes } = o;
  const base = mkdtempSync(join(tmpdir(), 'cyp-bench-cloud-'));
  const children: ChildProcess[] = [];
  /** When each instance was started (performance.now()): its GC lines count from about then. */
  const startedAt: number[] = [];
  const spans: Span[] = [];
  let row: Row | null = null;
  const workers: Worker[] = [];
  let store: Store | null = null;
  const dirs: string[] = [];
  try {
    const dir0 = join(base, 'i0');
    await initCloud({ dir: dir0, advertise: ['127.0.0.1'], db, ipv6Pool: POOLS.v6, ipv4Pool: POOLS.v4 });
    dirs.push(dir0);
    for (let k = 1; k < instances; k++) {
      cpSync(dir0, join(base, `i${k}`), { recursive: true });
      dirs.push(join(base, `i${k}`));
    }
    store = await openStore(db.startsWith('postgres') ? db : join(dir0, db));
    const s = store;
    // Nodes straight into the store, each with a Common Key and a (placeholder) certificate.
    const keys: Buffer[] = [];
    const ids: number[] = [];
    await pooled(nodes, 16, async (i) => {
      const n = await s.createNode({ name: `n${i}`, kind: 'node' }, POOLS);
      const key = randomBytes(32);
      await s.putCommonKey({ nodeId: n.id, key, expiresAt: Date.now() + 3_600_000, createdAt: Date.now() });
      await s.addCertificate({ serial: randomBytes(8).toString('hex'), nodeId: n.id, der: randomBytes(600), notAfter: Date.now() + 86_400_000, createdAt: Date.now() });
      keys[i] = key;
      ids[i] = n.id;
    });
    for (const d of dirs) {
      const log = openSync(`${d}.log`, 'a');
      const prof = process.env['CYPHONIC_BENCH_PROF'] ? ['--cpu-prof', '--cpu-prof-dir', process.env['CYPHONIC_BENCH_PROF']] : [];
      if (o.gc) prof.push('--trace-gc-nvp');
      startedAt.push(performance.now());
      const argv = [...prof, CLI, 'cloud', 'start', '--dir', d, '--roles', 'nms', '--nms-port', '0', '--console', 'off'];
      // --pin: the instances on CPU 0 (taskset execs node: the pid is the instance's), the bench on the others.
      const [cmd, args] = o.pin ? ['taskset', ['-c', '0', process.execPath, ...argv]] : [process.execPath, argv];
      children.push(spawn(cmd, args, { stdio: ['ignore', log, log], env: { ...process.env, CYPHONIC_LOG_LEVEL: 'warn' } }));
      closeSync(log);
    }
    let nms: Endpoint[] = [];
    for (let t = 0; t < 200 && nms.length < instances; t++) {
      await sleep(100);
      nms = (await s.listInstances()).filter((r) => isLiveInstance(r, Date.now())).flatMap((r) => r.nms.filter((e) => e.address === '127.0.0.1'));
    }
    if (nms.length < instances) throw new Error(`only ${nms.length} of ${instances} instances came up`);
    const pids = children.map((c) => c.pid!);
    const rssBefore = pids.reduce((a, p) => a + rssKb(p), 0);

    // Worker threads, each a contiguous slice of the nodes on its own loopback addresses; node i registers at
    // instance i mod k, so route selections cross instances for about 1 - 1/k of the pairs.
    const per = Math.ceil(nodes / o.workers);
    for (let w = 0; w < o.workers; w++) {
      const first = w * per;
      const last = Math.min(nodes, first + per);
      if (first >= last) break;
      const init: GenInit = {
        worker: w,
        ids: ids.slice(first, last),
        keys: keys.slice(first, last).map((k) => new Uint8Array(k)),
        nms: ids.slice(first, last).map((_, j) => nms[(first + j) % nms.length]!),
        sockets: o.sockets,
        window: o.window,
        first,
        total: nodes,
        peers: o.kaPeers,
      };
      const wk = new Worker(GEN, { workerData: init });
      await new Promise<void>((resolve, reject) => {
        wk.once('message', () => resolve());
        wk.once('error', reject);
      });
      workers.push(wk);
    }

    const reg = await phase(workers, () => ({ op: 'register' }), pids, spans, 'reg');
    const regOk = reg.res.reduce((a, r) => a + r.ok, 0);
    const ka = await phase(workers, () => ({ op: 'keepalive', ms: o.kaSeconds * 1000 }), pids, spans, 'ka');
    const kaOk = ka.res.reduce((a, r) => a + r.ok, 0);
    const rssAfter = pids.reduce((a, p) => a + rssKb(p), 0);
    const share = Math.ceil(o.routes / workers.length);
    const split: RouteSplit[] = [];
    const routes = async (name: string): ReturnType<typeof phase> => {
      const before = await directionTimes(dirs);
      const ph = await phase(workers, () => ({ op: 'routes', count: share, rate: o.routeRate / workers.length }), pids, spans, name);
      const nms = countsSince(await directionTimes(dirs), before);
      const gl = ph.res.flatMap((r) => r.lat ?? []);
      split.push({
        pass: name,
        genP50: pct(gl, 50),
        genP99: pct(gl, 99),
        nmsCount: nms.count,
        nmsMeanMs: (nms.sum / nms.count) * 1e3,
        nmsP50AtMost: quantileBound(nms, 0.5) * 1e3,
        nmsP99AtMost: quantileBound(nms, 0.99) * 1e3,
        loopP99: Math.max(...ph.res.map((r) => r.loopDelay?.p99 ?? NaN)),
        loopMax: Math.max(...ph.res.map((r) => r.loopDelay?.max ?? NaN)),
      });
      return ph;
    };
    const rt = await routes('routes');
    const lat = rt.res.flatMap((r) => r.lat ?? []);
    // The same pairs again (the generator's pairs depend only on the index): what selections among nodes the
    // instances have seen before cost, as in a cloud that has run for a while, against the first pass's first contacts.
    let warm: Row['warm'];
    if (o.warmRoutes) {
      const w = await routes('warm');
      const wl = w.res.flatMap((r) => r.lat ?? []);
      warm = { perS: wl.length / w.secs, failed: w.res.reduce((a, r) => a + r.failed, 0), p50: pct(wl, 50), p99: pct(wl, 99), nmsCores: w.cpu.nms };
    }
    // Last: the route phase then runs on the same state with or without it (route latencies after a hold were worse).
    let hold: Row['hold'];
    if (o.holdSeconds > 0) {
      const h = await phase(workers, () => ({ op: 'hold', ms: o.holdSeconds * 1000, interval: o.holdInterval * 1000 }), pids, spans, 'hold');
      const hl = h.res.flatMap((r) => r.lat ?? []);
      const ok = h.res.reduce((a, r) => a + r.ok, 0);
      hold = {
        perS: ok / h.secs,
        ok,
        failed: h.res.reduce((a, r) => a + r.failed, 0),
        p50: pct(hl, 50),
        p99: pct(hl, 99),
        nmsCores: h.cpu.nms,
        behindMs: Math.max(...h.res.map((r) => r.behindMs ?? 0)),
        kbPerNode: (pids.reduce((a, p) => a + rssKb(p), 0) - rssBefore) / nodes,
      };
    }
    row = {
      config: label,
      nodes,
      regPerS: regOk / reg.secs,
      regFailed: reg.res.reduce((a, r) => a + r.failed, 0),
      kaPerS: kaOk / ka.secs,
      kaFailed: ka.res.reduce((a, r) => a + r.failed, 0),
      routesPerS: lat.length / rt.secs,
      p50: pct(lat, 50),
      p99: pct(lat, 99),
      routeFailed: rt.res.reduce((a, r) => a + r.failed, 0),
      kbPerNode: (rssAfter - rssBefore) / nodes,
      cpu: { reg: reg.cpu, ka: ka.cpu, routes: rt.cpu },
      regPerNmsCore: regOk / reg.nmsCpu,
      kaPerNmsCore: kaOk / ka.nmsCpu,
      ...(hold ? { hold } : {}),
      ...(warm ? { warm } : {}),
      split,
    };
    return row;
  } finally {
    for (const w of workers) {
      w.postMessage({ op: 'close' } satisfies GenCommand);
    }
    await sleep(100);
    for (const w of workers) await w.terminate();
    for (const c of children) c.kill('SIGTERM');
    // A profiled instance writes its profile as it exits, which takes seconds with many nodes.
    const grace = process.env['CYPHONIC_BENCH_PROF'] ? 60_000 : 500;
    for (let waited = 0; waited < grace && children.some((c) => c.exitCode === null && c.signalCode === null); waited += 100) await sleep(100);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await store?.close();
    // The instances have exited (their GC lines are all written): each one's GCs per phase, on its own clock.
    if (row && o.gc) {
      const events = dirs.map((d, k) => parseGcNvp(readFileSync(`${d}.log`, 'utf8')).map((e) => ({ ...e, at: e.at + startedAt[k]! })));
      row.gc = spans.map((sp) => ({ phase: sp.phase, w: sumWindows(events.map((ev) => gcWindow(ev, sp.from, sp.to))) }));
    }
    if (!process.env['CYPHONIC_KEEP']) rmSync(base, { recursive: true, force: true });
  }
}

/** Several instances' windows as one: counts and bytes added, the mean weighted, the maxima of the maxima. */
function sumWindows(ws: GcWindow[]): GcWindow {
  const scavenges = ws.reduce((a, w) => a + w.scavenges, 0);
  return {
    scavenges,
    scavengeMeanMs: scavenges ? ws.reduce((a, w) => a + (w.scavenges ? w.scavengeMeanMs * w.scavenges : 0), 0) / scavenges : NaN,
    scavengeMaxMs: Math.max(0, ...ws.map((w) => w.scavengeMaxMs)),
    fullGcs: ws.reduce((a, w) => a + w.fullGcs, 0),
    fullMaxMs: Math.max(0, ...ws.map((w) => w.fullMaxMs)),
    promotedBytes: ws.reduce((a, w) => a + w.promotedBytes, 0),
    sizeAfter: ws.some((w) => Number.isFinite(w.sizeAfter)) ? ws.reduce((a, w) => a + (Number.isFinite(w.sizeAfter) ? w.sizeAfter : 0), 0) : NaN,
  };
}

interface Opts {
  nodes: number;
  routes: number;
  routeRate: number;
  kaSeconds: number;
  holdSeconds: number;
  holdInterval: number;
  warmRoutes: boolean;
  gc: boolean;
  kaPeers: number;
  /** The instances on CPU 0, the bench and its generator threads on the other CPUs (taskset). */
  pin: boolean;
  workers: number;
  sockets: number;
  window: number;
}

async function main(): Promise<void> {
  const o: Opts = {
    nodes: arg('--nodes', 10_000),
    routes: arg('--routes', 5000),
    routeRate: arg('--route-rate', 1000),
    kaSeconds: arg('--ka-seconds', 5),
    holdSeconds: arg('--hold-seconds', 0),
    holdInterval: arg('--hold-interval', 5),
    warmRoutes: process.argv.includes('--warm-routes'),
    gc: process.argv.includes('--gc'),
    kaPeers: arg('--ka-peers', 0),
    pin: process.argv.includes('--pin'),
    workers: arg('--workers', 2),
    sockets: arg('--sockets', 64),
    window: arg('--window', 512),
  };
  const { nodes, routes, routeRate } = o;
  if (o.pin) {
    const cpus = availableParallelism();
    if (cpus < 2) throw new Error('--pin needs at least two CPUs');
    // Every thread of this process now, and the generator threads it starts later (they inherit the mask).
    execFileSync('taskset', ['-a', '-p', '-c', `1-${cpus - 1}`, String(process.pid)], { stdio: 'ignore' });
  }
  const oi = process.argv.indexOf('--only');
  const only = oi > 0 ? process.argv[oi + 1] : undefined;
  const rows: Row[] = [];
  if (!only || only === 'sqlite') rows.push(await runConfig('sqlite ×1', 'cyphonic.db', 1, o));
  let pgSkip: string | false;
  try {
    pgSkip = postgresSkip();
  } catch (err) {
    pgSkip = errMsg(err);
  }
  if (pgSkip) {
    console.log(`PostgreSQL rows skipped: ${pgSkip}`);
  } else if (only !== 'sqlite') {
    const pg = await PostgresCluster.start();
    try {
      for (const k of [1, 3]) {
        if (only && only !== `pg${k}`) continue;
        rows.push(await runConfig(`postgres ×${k}`, await pg.createDatabase(), k, o));
      }
    } finally {
      await pg.stop();
    }
  }
  const f = (x: number, w: number, d = 0): string => (Number.isFinite(x) ? x.toFixed(d) : '-').padStart(w);
  console.log(`\ncloud load: ${nodes} simulated nodes in ${o.workers} generator threads (${o.sockets} loopback sources each, ${o.window} in flight each), keepalives for ${o.kaSeconds} s${o.kaPeers ? ` with ${o.kaPeers} peer reports each` : ''}, ${routes} route selections offered at ${routeRate}/s${o.pin ? '; instances pinned to CPU 0, the generator to the others' : ''}`);
  console.log('config        reg/s  reg/NMS-core-s  keepalive/s  ka/NMS-core-s  routes/s  p50 ms  p99 ms  failed(reg/ka/route)  RSS kB/node');
  for (const r of rows) {
    console.log(
      `${r.config.padEnd(12)} ${f(r.regPerS, 6)} ${f(r.regPerNmsCore, 15)} ${f(r.kaPerS, 12)} ${f(r.kaPerNmsCore, 14)} ${f(r.routesPerS, 9)} ${f(r.p50, 7, 2)} ${f(r.p99, 7, 2)} ${`${r.regFailed}/${r.kaFailed}/${r.routeFailed}`.padStart(21)} ${f(r.kbPerNode, 12, 2)}`,
    );
  }
  console.log('\ncores busy per phase (CPU s per wall s): instances / generator / rest of the machine (PostgreSQL, other users)');
  for (const r of rows) {
    const c = (k: 'reg' | 'ka' | 'routes'): string => `${k} ${r.cpu[k].nms.toFixed(2)}/${r.cpu[k].gen.toFixed(2)}/${r.cpu[k].rest.toFixed(2)}`;
    console.log(`${r.config.padEnd(12)} ${c('reg')}   ${c('ka')}   ${c('routes')}`);
  }
  const warmed = rows.filter((r) => r.warm);
  if (warmed.length) {
    console.log('\nroute selections again, the same pairs (every node already seen by the instances)');
    console.log('config        routes/s  p50 ms  p99 ms  failed  NMS cores busy');
    for (const r of warmed) {
      const w = r.warm!;
      console.log(`${r.config.padEnd(12)} ${f(w.perS, 9)} ${f(w.p50, 7, 2)} ${f(w.p99, 7, 2)} ${f(w.failed, 7)} ${f(w.nmsCores, 15, 2)}`);
    }
  }
  console.log('\nroute selection from both ends: the generator (sent → answer read), the instances (Direction Request received → answer, bucket bounds), the generator threads\' event-loop delay (worst thread)');
  console.log('config       pass    gen p50 ms  gen p99 ms  NMS answered  NMS mean ms  NMS p50 ≤ ms  NMS p99 ≤ ms  gen loop p99/max ms');
  for (const r of rows) {
    for (const x of r.split) {
      console.log(`${r.config.padEnd(12)} ${x.pass.padEnd(6)} ${f(x.genP50, 11, 2)} ${f(x.genP99, 11, 2)} ${f(x.nmsCount, 13)} ${f(x.nmsMeanMs, 12, 2)} ${f(x.nmsP50AtMost, 13, 2)} ${f(x.nmsP99AtMost, 13, 2)} ${`${f(x.loopP99, 0, 1)}/${f(x.loopMax, 0, 1)}`.padStart(20)}`);
    }
  }
  const traced = rows.filter((r) => r.gc);
  if (traced.length) {
    console.log("\nGC in the instances per phase (V8's --trace-gc-nvp; an instance's clock starts when it is spawned, within ~50 ms)");
    console.log('config       phase   scavenges  mean ms  max ms  full GCs  max full ms  promoted MB  heap after MB');
    for (const r of traced) {
      for (const { phase: ph, w } of r.gc!) {
        console.log(`${r.config.padEnd(12)} ${ph.padEnd(6)} ${f(w.scavenges, 10)} ${f(w.scavengeMeanMs, 8, 1)} ${f(w.scavengeMaxMs, 7, 1)} ${f(w.fullGcs, 9)} ${f(w.fullGcs ? w.fullMaxMs : NaN, 12, 1)} ${f(w.promotedBytes / 1e6, 12, 1)} ${f(w.sizeAfter / 1e6, 14, 1)}`);
      }
    }
  }
  const held = rows.filter((r) => r.hold);
  if (held.length) {
    console.log(`\nheld: every node keeps alive once per ${o.holdInterval} s for ${o.holdSeconds} s (paced, as live nodes do)`);
    console.log('config        keepalive/s   answered  failed  p50 ms  p99 ms  NMS cores busy  generator behind (max ms)  RSS kB/node');
    for (const r of held) {
      const h = r.hold!;
      console.log(`${r.config.padEnd(12)} ${f(h.perS, 12)} ${f(h.ok, 10)} ${f(h.failed, 7)} ${f(h.p50, 7, 2)} ${f(h.p99, 7, 2)} ${f(h.nmsCores, 15, 2)} ${f(h.behindMs, 26, 1)} ${f(h.kbPerNode, 12, 2)}`);
    }
  }
}

main().catch((err: unknown) => {
  console.error(errMsg(err));
  process.exitCode = 1;
});
