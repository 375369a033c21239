// Cloud load generator: simulated nodes speak the real signaling protocol (sealed UDP, no TUN) from loopback to
// real `cloud start --roles nms` processes, against one SQLite instance and 1 and 3 PostgreSQL-backed instances
// (a throwaway cluster, test/harness/postgres.ts). Nodes are created in the store directly (enrollment is not what
// is measured), spread over the instances round-robin. Prints per configuration: registrations/s, keepalives/s,
// route selections/s with p50/p99 latency (pairs across instances included), and RSS per registered node.
// The generator shares the machine's cores with the instances: figures are a floor, not a capacity claim.
//
// usage: node dist/bench/cloud.js [--nodes N (2000)] [--routes N (1000)] [--route-rate PER_S (200)] [--only sqlite|pg1|pg3]

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { closeSync, cpSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCloud } from '../src/cloud/cloud.js';
import { isLiveInstance } from '../src/cloud/instances.js';
import { NmsClient } from '../src/node/signaling.js';
import { MessageType } from '../src/protocol/constants.js';
import type { Endpoint } from '../src/protocol/endpoint.js';
import { splitFrame } from '../src/protocol/header.js';
import { decodeBody } from '../src/protocol/messages.js';
import { openStore } from '../src/store/index.js';
import type { Store } from '../src/store/types.js';
import { PostgresCluster, postgresSkip } from '../test/harness/postgres.js';
import { CLI } from '../test/harness/cluster.js';
import { errMsg, sleep } from './lib/measure.js';

const POOLS = { v4: '100.64.0.0/10', v6: 'fd00:bb::/48' };
const SOCKETS = 16;
const WINDOW = 256;

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1 || v > 1_000_000) throw new Error(`${name}: a positive integer`);
  return v;
}

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
  kaPerS: number;
  routesPerS: number;
  p50: number;
  p99: number;
  routeFailed: number;
  kbPerNode: number;
}

async function runConfig(label: string, db: string, instances: number, nodes: number, routes: number, routeRate: number): Promise<Row> {
  const base = mkdtempSync(join(tmpdir(), 'cyp-bench-cloud-'));
  const children: ChildProcess[] = [];
  const sockets: dgram.Socket[] = [];
  let store: Store | null = null;
  try {
    const dir0 = join(base, 'i0');
    await initCloud({ dir: dir0, advertise: ['127.0.0.1'], db, ipv6Pool: POOLS.v6, ipv4Pool: POOLS.v4 });
    const dirs = [dir0];
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
      children.push(spawn(process.execPath, [...prof, CLI, 'cloud', 'start', '--dir', d, '--roles', 'nms', '--nms-port', '0', '--console', 'off'], { stdio: ['ignore', log, log], env: { ...process.env, CYPHONIC_LOG_LEVEL: 'warn' } }));
      closeSync(log);
    }
    let nms: Endpoint[] = [];
    for (let t = 0; t < 200 && nms.length < instances; t++) {
      await sleep(100);
      nms = (await s.listInstances()).filter((r) => isLiveInstance(r, Date.now())).flatMap((r) => r.nms.filter((e) => e.address === '127.0.0.1'));
    }
    if (nms.length < instances) throw new Error(`only ${nms.length} of ${instances} instances came up`);
    const rssBefore = children.reduce((a, c) => a + rssKb(c.pid!), 0);

    // Loopback sockets shared by many simulated nodes; replies are told apart by the node id in the header.
    const clients = new Map<number, NmsClient>();
    for (let k = 0; k < SOCKETS; k++) {
      const sock = dgram.createSocket('udp4');
      await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
      sock.on('message', (msg) => {
        try {
          const id = Number(splitFrame(msg).header.id);
          clients.get(id)?.handleDatagram(msg);
        } catch {
          // not ours
        }
      });
      sockets.push(sock);
    }
    const epOf = (i: number): Endpoint => ({ address: '127.0.0.1', port: (sockets[i % SOCKETS]!.address() as { port: number }).port });
    for (let i = 0; i < nodes; i++) {
      const sock = sockets[i % SOCKETS]!;
      const c = new NmsClient({ nodeId: ids[i]!, commonKey: keys[i]!, nms: nms[i % nms.length]! }, { send: (d, to) => sock.send(d, to.port, to.address) });
      c.onPush = (type, body) => {
        if (type !== MessageType.RouteDirectionResponder) return;
        void c.confirm(decodeBody(MessageType.RouteDirectionResponder, body).pathId, true).catch(() => undefined);
      };
      clients.set(ids[i]!, c);
    }
    const all = [...clients.values()];

    let t0 = performance.now();
    const regFailed = await pooled(nodes, WINDOW, (i) => all[i]!.register([epOf(i)], false).then(() => undefined));
    const regPerS = (nodes - regFailed) / ((performance.now() - t0) / 1000);

    t0 = performance.now();
    const kaFailed = await pooled(nodes * 2, WINDOW, (i) => all[i % nodes]!.keepalive().then(() => undefined));
    const kaPerS = (nodes * 2 - kaFailed) / ((performance.now() - t0) / 1000);
    const rssAfter = children.reduce((a, c) => a + rssKb(c.pid!), 0);

    // Route selections at a fixed offered rate between random pairs (about 1 - 1/instances of them across instances).
    const lat: number[] = [];
    let routeFailed = 0;
    const started: Promise<void>[] = [];
    t0 = performance.now();
    for (let r = 0; r < routes; r++) {
      const due = t0 + (r * 1000) / routeRate;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      const a = (r * 7919) % nodes;
      const b = (a + 1 + ((r * 104729) % (nodes - 1))) % nodes;
      const t = performance.now();
      started.push(
        all[a]!.direction({ targetFqdn: `n${b}.cyphonic.internal` }).then(
          () => void lat.push(performance.now() - t),
          () => void routeFailed++,
        ),
      );
    }
    await Promise.all(started);
    const routesPerS = lat.length / ((performance.now() - t0) / 1000);
    return {
      config: label,
      nodes,
      regPerS,
      kaPerS,
      routesPerS,
      p50: pct(lat, 50),
      p99: pct(lat, 99),
      routeFailed,
      kbPerNode: (rssAfter - rssBefore) / nodes,
    };
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await sleep(300);
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const sk of sockets) sk.close();
    await store?.close();
    if (!process.env['CYPHONIC_KEEP']) rmSync(base, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const nodes = arg('--nodes', 2000);
  const routes = arg('--routes', 1000);
  const routeRate = arg('--route-rate', 200);
  const oi = process.argv.indexOf('--only');
  const only = oi > 0 ? process.argv[oi + 1] : undefined;
  const rows: Row[] = [];
  if (!only || only === 'sqlite') rows.push(await runConfig('sqlite ×1', 'cyphonic.db', 1, nodes, routes, routeRate));
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
        rows.push(await runConfig(`postgres ×${k}`, await pg.createDatabase(), k, nodes, routes, routeRate));
      }
    } finally {
      await pg.stop();
    }
  }
  console.log(`\ncloud load (${nodes} simulated nodes, ${routes} route selections offered at ${routeRate}/s, generator in the same machine)`);
  console.log('config        reg/s   keepalive/s  routes/s  p50 ms  p99 ms  failed  RSS kB/node');
  for (const r of rows) {
    console.log(
      `${r.config.padEnd(12)} ${r.regPerS.toFixed(0).padStart(6)} ${r.kaPerS.toFixed(0).padStart(12)} ${r.routesPerS.toFixed(0).padStart(9)} ${r.p50.toFixed(2).padStart(7)} ${r.p99.toFixed(2).padStart(7)} ${String(r.routeFailed).padStart(7)} ${r.kbPerNode.toFixed(2).padStart(12)}`,
    );
  }
}

main().catch((err: unknown) => {
  console.error(errMsg(err));
  process.exitCode = 1;
});
