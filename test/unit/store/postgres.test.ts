// Runs the Store compliance suite against PostgreSQL (a throwaway cluster, one fresh database per test) plus what
// only a networked store has: several instances (separate connection pools) racing on one database, and clear
// errors for a wrong password, an unreachable server or a missing database at open.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { adminNodes, createEnrollment, initCloud } from '../../../src/cloud/cloud.js';
import { loadCloudConfig } from '../../../src/config/cloud.js';
import { openPostgresStore, openStore, StoreError } from '../../../src/store/index.js';
import type { Store } from '../../../src/store/index.js';
import { PostgresCluster, postgresSkip } from '../../harness/postgres.js';
import { POOLS, runStoreCompliance } from './compliance.js';

const skip = postgresSkip();
let cluster: Promise<PostgresCluster> | null = null;
/** Started on first use, so a skipped run starts nothing. */
function pgCluster(): Promise<PostgresCluster> {
  cluster ??= PostgresCluster.start();
  return cluster;
}
after(async () => {
  if (cluster) await (await cluster).stop();
});

async function freshUrl(): Promise<string> {
  return (await pgCluster()).createDatabase();
}

runStoreCompliance('postgres', async () => openPostgresStore(await freshUrl()), { skip });

async function both<T>(url: string, fn: (a: Store, b: Store) => Promise<T>): Promise<T> {
  const [a, b] = await Promise.all([openStore(url), openStore(url)]);
  try {
    return await fn(a, b);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

describe('postgres store specifics', { skip }, () => {
  test('two instances migrate one new database at once, then share it', async () => {
    const url = await freshUrl();
    await both(url, async (a, b) => {
      await a.setMeta('k', 'from-a');
      assert.equal(await b.getMeta('k'), 'from-a');
    });
  });

  test('two instances racing: one token winner, distinct addresses, one setMetaIfAbsent value', async () => {
    const url = await freshUrl();
    await both(url, async (a, b) => {
      await a.createEnrollmentToken({ name: 'laptop', tokenHash: 'race', expiresAt: 10_000, createdAt: 1_000 });
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).consumeEnrollmentToken('race', 2_000)));
      assert.equal(results.filter((r) => r.ok).length, 1);
      const nodes = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).createNode({ name: `n${i}`, kind: 'node' }, POOLS)));
      assert.equal(new Set(nodes.map((n) => n.vip4)).size, 30);
      assert.equal(new Set(nodes.map((n) => n.vip6)).size, 30);
      assert.equal(new Set(nodes.map((n) => n.id)).size, 30);
      const got = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).setMetaIfAbsent('seed', `v${i}`)));
      assert.equal(new Set(got).size, 1);
      // The same name from both instances at once: one node, one ERR_NAME_TAKEN (or the unique key's duplicate).
      const dup = await Promise.allSettled([a.createNode({ name: 'same', kind: 'node' }, POOLS), b.createNode({ name: 'same', kind: 'node' }, POOLS)]);
      assert.equal(dup.filter((r) => r.status === 'fulfilled').length, 1);
      const lost = dup.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.equal((lost.reason as StoreError).code, 'ERR_NAME_TAKEN');
    });
  });

  test('a wrong password is ERR_STORE_AUTH and the message does not show it', async () => {
    const c = await pgCluster();
    const wrong = 'not-the-password-123';
    await assert.rejects(openStore(c.url('postgres', wrong)), (err: unknown) => {
      assert.ok(err instanceof StoreError);
      assert.equal(err.code, 'ERR_STORE_AUTH');
      assert.ok(!err.message.includes(wrong), err.message);
      assert.match(err.message, /password authentication failed/);
      return true;
    });
  });

  test('an unreachable server is ERR_STORE_UNAVAILABLE; a missing database is ERR_STORE_URL', async () => {
    const c = await pgCluster();
    // Port 1 on loopback: nothing listens (connection refused at once).
    await assert.rejects(openStore(`postgres://postgres:x@127.0.0.1:1/postgres`), { code: 'ERR_STORE_UNAVAILABLE' });
    await assert.rejects(openStore(c.url('no_such_db')), (err: unknown) => {
      assert.ok(err instanceof StoreError);
      assert.equal(err.code, 'ERR_STORE_URL');
      assert.ok(!err.message.includes(c.password));
      return true;
    });
    await assert.rejects(openStore('postgres://postgres@127.0.0.1:5432'), { code: 'ERR_STORE_URL' });
  });

  test('an outage: calls fail with ERR_STORE_UNAVAILABLE, then the pool and the subscription recover by themselves', async () => {
    const own = await PostgresCluster.start();
    try {
      const s = await openStore(own.url());
      const got: string[] = [];
      const stop = await s.subscribe((p) => got.push(p));
      await s.setMeta('k', 'before');
      own.pause();
      await assert.rejects(s.getMeta('k'), (err: unknown) => err instanceof StoreError && err.code === 'ERR_STORE_UNAVAILABLE');
      await assert.rejects(s.publish('lost'), { code: 'ERR_STORE_UNAVAILABLE' });
      own.resume();
      let value: string | null = null;
      for (let i = 0; i < 50 && value === null; i++) {
        value = await s.getMeta('k').catch(() => null);
        if (value === null) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(value, 'before');
      // The LISTEN connection comes back on its own (RELISTEN_MS): a message published now arrives.
      for (let i = 0; i < 60 && !got.includes('after'); i++) {
        await s.publish('after');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(got.includes('after'), `subscription resumed: ${JSON.stringify(got)}`);
      await stop();
      await s.close();
    } finally {
      await own.stop();
    }
  });

  test('cloud init --db records the PostgreSQL URL; admin commands on DIR use it', async () => {
    const url = await freshUrl();
    const dir = mkdtempSync(join(tmpdir(), 'cyphonic-pg-cloud-'));
    try {
      const cfg = await initCloud({ dir: join(dir, 'c'), advertise: ['198.51.100.7'], db: url });
      assert.equal(cfg.db, url);
      assert.equal(loadCloudConfig(join(dir, 'c', 'cloud.json')).db, url);
      const token = await createEnrollment(join(dir, 'c'), 'laptop');
      assert.ok(token.length > 0);
      const s = await openStore(url);
      assert.equal(await s.getMeta('domain'), 'cyphonic.internal');
      await s.close();
      assert.deepEqual(await adminNodes(join(dir, 'c')), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('data outlives the connection: close, reopen, read', async () => {
    const url = await freshUrl();
    const a = await openStore(url);
    const n = await a.createNode({ name: 'keep', kind: 'node' }, POOLS);
    await a.close();
    const b = await openStore(url);
    assert.deepEqual(await b.getNodeByName('keep'), n);
    await b.close();
  });
});
