// TRS instances in the store and the NMS side: heartbeats, pickRelay (live, least-loaded; never a stale one),
// allocateRelay against running TRS (fallback past a silent one), and `cloud start --roles trs` with its control socket.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { spawn, type ChildProcess } from 'node:child_process';
import { openStore } from '../../../src/store/index.js';
import type { RelayServerRecord, Store } from '../../../src/store/types.js';
import { RELAY_HEARTBEAT_MS, RELAY_LIVE_INTERVALS, RelayRegistry, liveRelays, pickRelay } from '../../../src/cloud/trs/registry.js';
import { RelayClient, RelayError, allocateRelay } from '../../../src/cloud/trs/client.js';
import { loadRelayKey, RELAY_KEY_META } from '../../../src/cloud/trs/control.js';
import { cloudControlPath, initCloud, listRelays, startCloud, trsControlPaths, type TrsMetrics } from '../../../src/cloud/cloud.js';
import { controlGet } from '../../../src/util/control.js';
import { silentLogger } from '../../../src/util/log.js';
import { RelayEnd } from '../../harness/relay-end.js';
import { CLI } from '../../harness/cluster.js';

/** Runs the CLI to completion; resolves with its exit code and output. */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    p.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const NOW = 1_700_000_000_000;

function row(id: string, load: number, heartbeatAt: number, port = 4503): RelayServerRecord {
  return { id, endpoints: [{ address: '198.51.100.1', port }], load, startedAt: NOW - 60_000, heartbeatAt };
}

async function withStore(fn: (s: Store) => Promise<void>): Promise<void> {
  const s = await openStore(':memory:');
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

describe('pickRelay', () => {
  test('prefers the least-loaded live TRS', () =>
    withStore(async (s) => {
      await s.upsertRelayServer(row('busy', 40, NOW - 1000));
      await s.upsertRelayServer(row('idle', 3, NOW - 2000));
      await s.upsertRelayServer(row('mid', 10, NOW));
      assert.equal((await pickRelay(s, NOW))?.id, 'idle');
      assert.deepEqual((await liveRelays(s, NOW)).map((r) => r.id), ['idle', 'mid', 'busy']);
      assert.equal((await pickRelay(s, NOW, { exclude: new Set(['idle']) }))?.id, 'mid');
    }));

  test('a TRS whose heartbeat is older than 3 intervals is never picked, however idle', () =>
    withStore(async (s) => {
      const limit = RELAY_HEARTBEAT_MS * RELAY_LIVE_INTERVALS;
      await s.upsertRelayServer(row('dead', 0, NOW - limit - 1));
      await s.upsertRelayServer(row('edge', 5, NOW - limit));
      await s.upsertRelayServer(row('live', 9, NOW - 10));
      for (let i = 0; i < 50; i++) assert.notEqual((await pickRelay(s, NOW, { random: Math.random }))?.id, 'dead');
      assert.equal((await pickRelay(s, NOW))?.id, 'edge');
      await s.deleteRelayServer('edge');
      await s.deleteRelayServer('live');
      assert.equal(await pickRelay(s, NOW), null);
      // a TRS with no endpoint cannot be used either
      await s.upsertRelayServer({ ...row('mute', 0, NOW), endpoints: [] });
      assert.equal(await pickRelay(s, NOW), null);
    }));

  test('equally loaded TRS share the picks', () =>
    withStore(async (s) => {
      await s.upsertRelayServer(row('a', 2, NOW));
      await s.upsertRelayServer(row('b', 2, NOW));
      await s.upsertRelayServer(row('c', 7, NOW));
      const seen = new Map<string, number>();
      for (let i = 0; i < 200; i++) {
        const id = (await pickRelay(s, NOW))!.id;
        seen.set(id, (seen.get(id) ?? 0) + 1);
      }
      assert.equal(seen.get('c'), undefined);
      assert.ok((seen.get('a') ?? 0) > 40 && (seen.get('b') ?? 0) > 40, JSON.stringify([...seen]));
    }));
});

describe('RelayRegistry', () => {
  test('registers, heartbeats its load, prunes long-dead rows, removes itself on stop', () =>
    withStore(async (s) => {
      let now = NOW;
      const server = { id: 'trs-self', advertised: [{ address: '203.0.113.5', port: 4503 }], load: 0 };
      await s.upsertRelayServer(row('trs-gone', 0, NOW - 3600_000));
      await s.upsertRelayServer(row('trs-recent', 0, NOW - 60_000));
      const reg = new RelayRegistry({ heartbeatMs: 60_000, pruneAfterMs: 600_000 }, { store: s, server, logger: silentLogger, now: () => now });
      await reg.start();
      const ids = (await s.listRelayServers()).map((r) => r.id);
      assert.deepEqual(ids, ['trs-recent', 'trs-self'], 'the hour-old row is pruned, the minute-old one kept');
      const first = (await s.listRelayServers()).find((r) => r.id === 'trs-self')!;
      assert.deepEqual(first, { id: 'trs-self', endpoints: server.advertised, load: 0, startedAt: NOW, heartbeatAt: NOW });
      server.load = 12;
      now += 5000;
      await reg.beat();
      const beat = (await s.listRelayServers()).find((r) => r.id === 'trs-self')!;
      assert.equal(beat.load, 12);
      assert.equal(beat.heartbeatAt, NOW + 5000);
      assert.equal(beat.startedAt, NOW);
      await reg.stop();
      assert.deepEqual((await s.listRelayServers()).map((r) => r.id), ['trs-recent']);
    }));

  test('the relay key is made once and shared', () =>
    withStore(async (s) => {
      const [k1, k2] = await Promise.all([loadRelayKey(s), loadRelayKey(s)]);
      assert.equal(k1.length, 32);
      assert.deepEqual(k1, k2);
      assert.deepEqual(await loadRelayKey(s), k1);
      await s.setMeta(RELAY_KEY_META, 'not a key');
      await assert.rejects(loadRelayKey(s), { code: 'ERR_RELAY_KEY' });
    }));
});

describe('allocateRelay and the cloud with --roles trs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-trs-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('two TRS processes on one store: allocateRelay picks a live one, skips a silent one, and its path relays', async () => {
    const cloudDir = join(dir, 'cloud');
    await initCloud({ dir: cloudDir, advertise: ['127.0.0.1'] });
    // Slow heartbeats: the loads set below stay as written for the test's duration.
    const common = { dir: cloudDir, logger: silentLogger, host: '127.0.0.1', relayHeartbeatMs: 60_000 };
    const main = await startCloud({ ...common, roles: ['as', 'nms', 'trs'], ports: { as: 0, nms: 0, trs: 0 } });
    const second = await startCloud({ ...common, roles: ['trs'], ports: { trs: 0 } });
    const client = new RelayClient({ relayKey: await loadRelayKey(main.store), host: '127.0.0.1', retransmitMs: [100, 200] });
    await client.start();
    // A registered TRS that went silent without removing its row (it looks live for up to 3 heartbeats).
    const silent = dgram.createSocket('udp4');
    let silentGot = 0;
    silent.on('message', () => silentGot++);
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()));
    const ends: RelayEnd[] = [];
    try {
      assert.ok(main.trs && second.trs);
      assert.notEqual(main.ports.trs, second.ports.trs);
      assert.deepEqual(main.trs.advertised, [{ address: '127.0.0.1', port: main.ports.trs }]);
      const rows = await listRelays(main.store);
      assert.deepEqual(rows.map((r) => r.id).sort(), [main.trs.id, second.trs.id].sort());
      assert.ok(rows.every((r) => r.live));

      await main.store.upsertRelayServer({ id: 'trs-silent', endpoints: [{ address: '127.0.0.1', port: silent.address().port }], load: 0, startedAt: Date.now(), heartbeatAt: Date.now() });
      const rowOf = async (id: string): Promise<RelayServerRecord> => (await main.store.listRelayServers()).find((r) => r.id === id)!;
      await main.store.upsertRelayServer({ ...(await rowOf(main.trs.id)), load: 1000 });
      await main.store.upsertRelayServer({ ...(await rowOf(second.trs.id)), load: 1 });
      const pathId = randomBytes(8).readBigUInt64BE() | 1n;
      const alloc = await allocateRelay({ store: main.store, client }, { pathId, nodeA: 1, nodeB: 2, expiresAt: Date.now() + 60_000 });
      assert.equal(alloc.relayId, second.trs.id, 'the silent one (load 0) was tried first, then the next least-loaded');
      assert.equal(silentGot, 2, 'the silent TRS got the request and its retransmission');
      assert.deepEqual(alloc.relay, [{ address: '127.0.0.1', port: second.ports.trs }]);
      assert.equal(alloc.tempKey.length, 32);
      assert.equal(second.trs.load, 1);

      const a = await RelayEnd.open('127.0.0.1', { nodeId: 1, pathId, tempKey: alloc.tempKey, relay: alloc.relay[0]! });
      const b = await RelayEnd.open('127.0.0.1', { nodeId: 2, pathId, tempKey: alloc.tempKey, relay: alloc.relay[0]! });
      ends.push(a, b);
      await a.bind();
      await b.bind();
      const c = a.capsule(randomBytes(48));
      a.send(c);
      assert.deepEqual(await b.next(), c);

      // cloud stats: the main process's socket has its TRS; the TRS-only process has its own socket.
      const m = (await controlGet(cloudControlPath(cloudDir), '/metrics')) as { trs: TrsMetrics; nms: unknown };
      assert.equal(m.trs.id, main.trs.id);
      assert.ok(m.nms);
      const socks = trsControlPaths(cloudDir);
      assert.deepEqual(socks, [join(cloudDir, `trs-${second.ports.trs}.sock`)]);
      const t = (await controlGet(socks[0]!, '/metrics')) as { trs: TrsMetrics; nms: unknown };
      assert.equal(t.nms, null);
      assert.equal(t.trs.id, second.trs.id);
      assert.equal(t.trs.paths, 1);
      assert.equal(t.trs.bound, 1);
      assert.equal(t.trs.counters['forwarded'], 1);
      assert.equal(t.trs.counters['bind.ok'], 2);
    } finally {
      for (const e of ends) await e.close();
      silent.close();
      await client.stop();
      await second.stop();
    }
    assert.deepEqual((await main.store.listRelayServers()).map((r) => r.id).sort(), [main.trs.id, 'trs-silent'].sort(), 'a clean stop removes the row');
    await main.stop();
  });

  test('allocateRelay with no live TRS fails with ERR_NO_RELAY; with only silent ones, ERR_RELAY_UNAVAILABLE', () =>
    withStore(async (s) => {
      const client = new RelayClient({ relayKey: await loadRelayKey(s), host: '127.0.0.1', retransmitMs: [50] });
      await client.start();
      const silent = dgram.createSocket('udp4');
      await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()));
      try {
        const req = { pathId: 5n, nodeA: 1, nodeB: 2, expiresAt: Date.now() + 1000 };
        await assert.rejects(allocateRelay({ store: s, client }, req), (e: unknown) => e instanceof RelayError && e.code === 'ERR_NO_RELAY');
        await s.upsertRelayServer(row('stale', 0, Date.now() - 3600_000));
        await assert.rejects(allocateRelay({ store: s, client }, req), { code: 'ERR_NO_RELAY' });
        await s.upsertRelayServer({ ...row('mute', 0, Date.now()), endpoints: [{ address: '127.0.0.1', port: silent.address().port }] });
        await assert.rejects(allocateRelay({ store: s, client }, req), (e: unknown) => e instanceof RelayError && e.code === 'ERR_RELAY_UNAVAILABLE' && (e.cause as RelayError).code === 'ERR_RELAY_TIMEOUT');
      } finally {
        silent.close();
        await client.stop();
      }
      await assert.rejects(client.request(row('x', 0, 0), { pathId: 1n, nodeA: 1, nodeB: 2, expiresAt: 0 }, randomBytes(32)), { code: 'ERR_RELAY_CLOSED' });
    }));

  test('`cloud start --roles trs` as separate processes: both register, `cloud stats` and `cloud relays` show them, SIGTERM unregisters', async () => {
    const cloudDir = join(dir, 'cli');
    await initCloud({ dir: cloudDir, advertise: ['127.0.0.1'] });
    const start = (): ChildProcess =>
      spawn(process.execPath, [CLI, 'cloud', 'start', '--dir', cloudDir, '--roles', 'trs', '--trs-port', '0', '--trs-advertise', '127.0.0.1'], {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, CYPHONIC_LOG_LEVEL: 'warn' },
      });
    const procs = [start(), start()];
    let stderr = '';
    for (const p of procs) p.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = procs.map((p) => new Promise<number | null>((r) => p.on('close', (code) => r(code))));
    const store = await openStore(join(cloudDir, 'cyphonic.db'));
    try {
      const rows = await until('two TRS rows', async () => {
        const r = await store.listRelayServers();
        return r.length === 2 && r;
      });
      assert.ok(rows.every((r) => r.endpoints.length === 1 && r.endpoints[0]!.address === '127.0.0.1' && r.endpoints[0]!.port > 0));
      await until('two control sockets', async () => trsControlPaths(cloudDir).length === 2);
      const stats = await cli(['cloud', 'stats', '--dir', cloudDir]);
      assert.equal(stats.code, 0, stats.stderr);
      const parsed = JSON.parse(stats.stdout) as { nms: unknown; trsProcesses: Record<string, TrsMetrics> };
      assert.equal(parsed.nms, null);
      const shown = Object.values(parsed.trsProcesses).map((t) => t.id).sort();
      assert.deepEqual(shown, rows.map((r) => r.id).sort());
      const relays = await cli(['cloud', 'relays', '--dir', cloudDir, '--json']);
      assert.equal(relays.code, 0, relays.stderr);
      const listed = JSON.parse(relays.stdout) as { id: string; live: boolean }[];
      assert.deepEqual(listed.map((r) => r.id).sort(), shown);
      assert.ok(listed.every((r) => r.live));
      for (const p of procs) p.kill('SIGTERM');
      assert.deepEqual(await Promise.all(exited), [0, 0], stderr);
      assert.deepEqual(await store.listRelayServers(), []);
      const bad = await cli(['cloud', 'start', '--dir', cloudDir, '--roles', 'trs', '--trs-port', 'x']);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /--trs-port/);
    } finally {
      for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
      await store.close();
    }
  });
});
