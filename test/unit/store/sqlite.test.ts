// Runs the Store compliance suite against SQLite (in memory and on disk) plus SQLite-specific tests:
// persistence across reopen, crash safety under SIGKILL, several processes sharing one file, URL parsing.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { MIGRATIONS, openSqliteStore, openStore, StoreError } from '../../../src/store/index.js';
import type { NodeRecord, NodeSessionRecord, Store } from '../../../src/store/index.js';
import { POOLS, runStoreCompliance } from './compliance.js';

const dir = mkdtempSync(join(tmpdir(), 'cyphonic-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let fileCounter = 0;
const freshPath = (): string => join(dir, `db-${process.pid}-${++fileCounter}.sqlite`);

/** The compiled store entry point, as imported by child processes (with -e, process.argv[1] is the first argument). */
const STORE_MODULE = new URL('../../../src/store/index.js', import.meta.url).href;

runStoreCompliance('sqlite :memory:', () => openSqliteStore(':memory:'));
runStoreCompliance('sqlite file', () => openSqliteStore(freshPath()));
runStoreCompliance('openStore sqlite:PATH', () => openStore(`sqlite:${freshPath()}`));

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs an inline ESM script in a child node; `STORE` in the script is the store module URL.
 * With killOn, the child is SIGKILLed as soon as that line appears on its stdout.
 */
function runChild(script: string, args: string[], killOn?: string): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, '--', STORE_MODULE, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (killOn !== undefined && stdout.split('\n').includes(killOn)) child.kill('SIGKILL');
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

async function withStore<T>(path: string, fn: (s: Store) => Promise<T>): Promise<T> {
  const s = await openSqliteStore(path);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

describe('sqlite store specifics', () => {
  test('file settings: WAL journal, mode 0600, migrations recorded once', async () => {
    const path = freshPath();
    await withStore(path, async (s) => {
      await s.migrate();
    });
    await withStore(path, async (s) => {
      await s.migrate();
    });
    const raw = new Database(path, { readonly: true });
    try {
      assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
      const rows = raw.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all();
      assert.deepEqual(
        rows,
        MIGRATIONS.map((m) => ({ version: m.version, name: m.name })),
      );
    } finally {
      raw.close();
    }
    if (process.platform !== 'win32') assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  test('creates a missing parent directory', async () => {
    const path = join(dir, 'nested', 'deeper', 'store.sqlite');
    await withStore(path, async (s) => {
      await s.setMeta('k', 'v');
    });
    assert.ok(statSync(path).isFile());
  });

  test('a database from a newer build is refused', async () => {
    const path = freshPath();
    await withStore(path, async () => {});
    const raw = new Database(path);
    raw.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, ?, 0)').run('future');
    raw.close();
    await assert.rejects(openSqliteStore(path), { code: 'ERR_STORE_SCHEMA' });
  });

  test('migrations carry both dialects with consecutive versions', () => {
    MIGRATIONS.forEach((m, i) => {
      assert.equal(m.version, i + 1);
      assert.ok(/CREATE TABLE|ALTER TABLE/.test(m.sqlite));
      assert.ok(/CREATE TABLE|ALTER TABLE/.test(m.postgres));
      assert.ok(!/AUTOINCREMENT|BLOB/.test(m.postgres), 'postgres DDL must not use SQLite types');
    });
  });

  test('getNodeSession and getCommonKey calls of one turn (read together) each see what another connection wrote before they were made', async () => {
    const path = freshPath();
    await withStore(path, async (s) => {
      const nodes = [];
      for (const name of ['a', 'b', 'c']) {
        const n = await s.createNode({ name, kind: 'node' }, POOLS);
        await s.putCommonKey({ nodeId: n.id, key: Buffer.alloc(32, 1), expiresAt: 1000, createdAt: 1 });
        nodes.push(n);
      }
      const [a, b, c] = nodes as [NodeRecord, NodeRecord, NodeRecord];
      // Another process (`cloud revoke`, a re-login at another instance) writes the file: no notice reaches this store.
      const other = new Database(path);
      try {
        const turn = (): Promise<(NodeSessionRecord | null)[]> => Promise.all([s.getNodeSession(a.id), s.getNodeSession(b.id), s.getNodeSession(c.id), s.getNodeSession(b.id)]);
        const before = await turn();
        assert.deepEqual(before.map((r) => r?.key.expiresAt), [1000, 1000, 1000, 1000]);
        other.prepare('UPDATE common_keys SET key = ?, expires_at = 5 WHERE node_id = ?').run(Buffer.alloc(32, 2), b.id);
        other.prepare('DELETE FROM common_keys WHERE node_id = ?').run(c.id);
        const after = await turn();
        assert.equal(after[0]?.key.expiresAt, 1000);
        assert.deepEqual([after[1]?.key.key, after[1]?.key.expiresAt], [Buffer.alloc(32, 2), 5], 'the first read of the batch sees the new key');
        assert.equal(after[2], null, 'a deleted key is not served from an earlier read');
        assert.deepEqual([after[3]?.key.key, after[3]?.key.expiresAt], [Buffer.alloc(32, 2), 5]);
        const keys = await Promise.all([s.getCommonKey(a.id), s.getCommonKey(b.id), s.getCommonKey(c.id)]);
        assert.deepEqual(keys.map((k) => k?.expiresAt ?? null), [1000, 5, null], 'getCommonKey, read the same way');
        other.prepare('UPDATE common_keys SET expires_at = 9 WHERE node_id = ?').run(a.id);
        const again = await Promise.all([s.getCommonKey(b.id), s.getCommonKey(a.id)]);
        assert.deepEqual(again.map((k) => k?.expiresAt ?? null), [5, 9]);
      } finally {
        other.close();
      }
    });
  });

  test('getNodeSession calls still queued when the store closes are answered first', async () => {
    const s = await openSqliteStore(freshPath());
    const a = await s.createNode({ name: 'a', kind: 'node' }, POOLS);
    await s.putCommonKey({ nodeId: a.id, key: Buffer.alloc(32, 1), expiresAt: 1000, createdAt: 1 });
    const reads = [s.getNodeSession(a.id), s.getNodeSession(a.id), s.getNodeSession(a.id + 1)];
    await s.close();
    assert.deepEqual((await Promise.all(reads)).map((r) => r?.node.name ?? null), ['a', 'a', null]);
    await assert.rejects(s.getNodeSession(a.id), { code: 'ERR_STORE_CLOSED' });
  });

  test('persistence: write, close, reopen', async () => {
    const path = freshPath();
    const written = await withStore(path, async (s) => {
      await s.setMeta('ca', 'pem');
      await s.createEnrollmentToken({ name: 'n1', tokenHash: 'tok', expiresAt: 10_000, createdAt: 1 });
      await s.createEnrollmentToken({ name: 'n2', tokenHash: 'tok2', expiresAt: 10_000, createdAt: 1 });
      assert.equal((await s.consumeEnrollmentToken('tok', 5)).ok, true);
      const a = await s.createNode({ name: 'n1', kind: 'node' }, POOLS);
      const b = await s.createNode({ name: 'n2', kind: 'adapter' }, POOLS);
      await s.addCertificate({ serial: 'aa', nodeId: a.id, der: Buffer.from('der'), notAfter: 9, createdAt: 1 });
      await s.revokeCertificate('aa', 'superseded', 7);
      await s.putCommonKey({ nodeId: a.id, key: Buffer.alloc(32, 7), expiresAt: 99, createdAt: 1 });
      await s.upsertRegistration({
        nodeId: b.id,
        reported: [{ address: '10.0.0.2', port: 1 }],
        observed: { address: '203.0.113.1', port: 2 },
        nat: false,
        keepaliveSec: 30,
        registeredAt: 3,
        lastSeen: 4,
        lastSeq: 2n ** 60n,
      });
      return { a, b };
    });
    await withStore(path, async (s) => {
      assert.equal(await s.getMeta('ca'), 'pem');
      assert.deepEqual(await s.consumeEnrollmentToken('tok', 6), { ok: false, reason: 'used' });
      assert.deepEqual(await s.consumeEnrollmentToken('tok2', 6), { ok: true, name: 'n2' });
      assert.deepEqual(await s.listNodes(), [written.a, written.b]);
      assert.equal(await s.isRevoked('aa'), true);
      assert.deepEqual((await s.getCommonKey(written.a.id))?.key, Buffer.alloc(32, 7));
      assert.equal((await s.getRegistration(written.b.id))?.lastSeq, 2n ** 60n);
      // allocation continues after the stored nodes
      const c = await s.createNode({ name: 'n3', kind: 'node' }, POOLS);
      assert.equal(c.vip4, '100.64.0.3');
      assert.equal(c.vip6, 'fd12:3456:789a::3');
    });
  });

  test('kill -9 right after commits: data survives, migrate stays idempotent', async () => {
    const path = freshPath();
    const script = `
      const { openStore } = await import(process.argv[1]);
      const store = await openStore('sqlite:' + process.argv[2]);
      const pools = { v4: '100.64.0.0/10', v6: 'fd12:3456:789a::/48' };
      for (let i = 0; i < 20; i++) {
        const n = await store.createNode({ name: 'k' + i, kind: 'node' }, pools);
        await store.upsertRegistration({ nodeId: n.id, reported: [], observed: { address: '192.0.2.1', port: 1000 + i },
          nat: true, keepaliveSec: 20, registeredAt: 1, lastSeen: 2, lastSeq: 2n ** 62n + BigInt(i) });
      }
      await store.setMeta('child', 'was here');
      process.stdout.write('done\\n');
      setInterval(() => {}, 1000); // stay alive until killed, never closing the store
    `;
    const r = await runChild(script, [path], 'done');
    assert.equal(r.signal, 'SIGKILL', `child did not get killed: code ${r.code} ${r.stderr}`);
    await withStore(path, async (s) => {
      await s.migrate();
      await s.migrate();
      assert.equal(await s.getMeta('child'), 'was here');
      const nodes = await s.listNodes();
      assert.equal(nodes.length, 20);
      assert.equal(new Set(nodes.map((n) => n.vip4)).size, 20);
      const regs = await s.listRegistrations();
      assert.equal(regs.length, 20);
      assert.equal(regs[19]?.lastSeq, 2n ** 62n + 19n);
      assert.equal(regs[19]?.observed.port, 1019);
    });
    const raw = new Database(path, { readonly: true });
    try {
      const count = raw.prepare('SELECT COUNT(*) AS c FROM schema_migrations').get() as { c: number };
      assert.equal(count.c, MIGRATIONS.length);
    } finally {
      raw.close();
    }
  });

  test('several processes share one file: unique addresses, one token winner', async () => {
    const path = freshPath();
    await withStore(path, (s) => s.createEnrollmentToken({ name: 'shared', tokenHash: 'race', expiresAt: 1e15, createdAt: 1 }));
    const script = `
      const { openStore } = await import(process.argv[1]);
      const [, , path, tag] = process.argv;
      const store = await openStore(path);
      const pools = { v4: '100.64.0.0/10', v6: 'fd12:3456:789a::/48' };
      const token = await store.consumeEnrollmentToken('race', Date.now());
      for (let i = 0; i < 25; i++) await store.createNode({ name: tag + '-' + i, kind: 'node' }, pools);
      await store.close();
      process.stdout.write(JSON.stringify(token) + '\\n');
    `;
    const results = await Promise.all(['p0', 'p1', 'p2', 'p3'].map((tag) => runChild(script, [path, tag])));
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const tokens = results.map((r) => JSON.parse(r.stdout.trim()) as { ok: boolean });
    assert.equal(tokens.filter((t) => t.ok).length, 1);
    await withStore(path, async (s) => {
      const nodes = await s.listNodes();
      assert.equal(nodes.length, 100);
      assert.equal(new Set(nodes.map((n) => n.vip4)).size, 100);
      assert.equal(new Set(nodes.map((n) => n.vip6)).size, 100);
    });
  });
  test('several processes racing setMetaIfAbsent all read the same value', async () => {
    const path = freshPath();
    await withStore(path, async () => {});
    const script = `
      const { openStore } = await import(process.argv[1]);
      const [, , path, tag] = process.argv;
      const store = await openStore(path);
      const v = await store.setMetaIfAbsent('relay.key', tag);
      await store.close();
      process.stdout.write(v + '\\n');
    `;
    const results = await Promise.all(['p0', 'p1', 'p2', 'p3'].map((tag) => runChild(script, [path, tag])));
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const values = new Set(results.map((r) => r.stdout.trim()));
    assert.equal(values.size, 1);
    await withStore(path, async (s) => assert.equal(await s.getMeta('relay.key'), [...values][0]));
  });
});

describe('openStore URLs', () => {
  test('plain path and sqlite:PATH and :memory:', async () => {
    const path = freshPath();
    const a = await openStore(path);
    await a.setMeta('x', '1');
    await a.close();
    const b = await openStore(`sqlite:${path}`);
    assert.equal(await b.getMeta('x'), '1');
    await b.close();
    const m = await openStore(':memory:');
    assert.equal(await m.getMeta('x'), null);
    await m.close();
  });

  test('unknown schemes and empty URLs are refused', async () => {
    await assert.rejects(openStore('mysql://h/db'), { code: 'ERR_STORE_UNSUPPORTED' });
    await assert.rejects(openStore(''), { code: 'ERR_STORE_URL' });
    await assert.rejects(openStore('sqlite:'), { code: 'ERR_STORE_URL' });
  });

  test('an unopenable path is a StoreError', async () => {
    // A regular file where a directory should be (avoid /proc: recursive mkdirSync spins there on Node 20).
    const plain = freshPath();
    writeFileSync(plain, 'not a directory');
    await assert.rejects(openStore(join(plain, 'store.sqlite')), (err: unknown) => err instanceof StoreError);
  });
});
