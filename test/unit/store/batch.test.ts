// Group commit (src/store/batch.ts): writes made together share a batch and settle only after it; a failed batch
// is retried write by write unless the store is gone; and, with a real SQLite file, a process killed with SIGKILL
// right after acknowledgements loses none of the acknowledged registrations.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GroupCommit, TurnReads, batchErrorPerItem } from '../../../src/store/batch.js';
import { StoreError } from '../../../src/store/errors.js';
import { openStore } from '../../../src/store/index.js';

describe('group commit', () => {
  test('writes made together are one batch, and none settles before the batch committed', async () => {
    const batches: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const gc = new GroupCommit<number, number>({
      many: async (xs) => {
        batches.push(xs);
        await gate;
        return xs.map((x) => x * 2);
      },
      one: async (x) => x * 2,
    });
    const settled: number[] = [];
    const ps = [1, 2, 3, 4].map((x) => gc.write(x).then((r) => void settled.push(r)));
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(batches, [[1, 2, 3, 4]]);
    assert.deepEqual(settled, [], 'nothing acknowledged before the commit');
    release();
    await Promise.all(ps);
    assert.deepEqual(settled, [2, 4, 6, 8]);
    assert.equal(gc.batches, 1);
  });

  test('a failed batch: one write at a time when it may be one write, all at once when the store is gone', async () => {
    const one = new GroupCommit<number, number>({
      many: async () => {
        throw new StoreError('ERR_STORE_REFERENCE', 'some row');
      },
      one: async (x) => {
        if (x === 2) throw new StoreError('ERR_STORE_REFERENCE', 'node 2 does not exist');
        return x;
      },
      perItem: batchErrorPerItem,
    });
    const r = await Promise.allSettled([1, 2, 3].map((x) => one.write(x)));
    assert.deepEqual(r.map((x) => x.status), ['fulfilled', 'rejected', 'fulfilled']);
    let singles = 0;
    const down = new GroupCommit<number, number>({
      many: async () => {
        throw new StoreError('ERR_STORE_UNAVAILABLE', 'database unreachable');
      },
      one: async (x) => {
        singles++;
        return x;
      },
      perItem: batchErrorPerItem,
    });
    const d = await Promise.allSettled([1, 2, 3].map((x) => down.write(x)));
    assert.deepEqual(d.map((x) => x.status), ['rejected', 'rejected', 'rejected']);
    assert.equal(singles, 0, 'no write retried one by one against a store that is gone');
  });

  test('SIGKILL after acknowledgements: every acknowledged registration is in the SQLite file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cyp-batch-'));
    try {
      const path = join(dir, 'c.db');
      const s = await openStore(path);
      const ids: number[] = [];
      for (let i = 0; i < 300; i++) ids.push((await s.createNode({ name: `k${i}`, kind: 'node' }, { v4: '100.64.0.0/10', v6: 'fd00:1::/48' })).id);
      await s.close();
      const child = spawn(process.execPath, [fileURLToPath(new URL('./batch-writer.js', import.meta.url)), path, ids.join(',')], { stdio: ['ignore', 'pipe', 'inherit'] });
      const acked = new Set<number>();
      let buf = '';
      await new Promise<void>((resolve) => {
        child.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          const lines = buf.split('\n');
          buf = lines.pop()!;
          for (const l of lines) if (/^\d+$/.test(l)) acked.add(Number(l));
          if (acked.size >= 100 && child.exitCode === null && !child.killed) child.kill('SIGKILL');
        });
        child.on('exit', () => resolve());
      });
      assert.ok(acked.size >= 100, `acknowledged ${acked.size}`);
      const after = await openStore(path);
      const have = new Set((await after.listRegistrations()).map((r) => r.nodeId));
      await after.close();
      for (const id of acked) assert.ok(have.has(id), `acknowledged registration of node ${id} survived the kill`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('TurnReads', () => {
  const make = (opts: { failMany?: boolean; bad?: number } = {}) => {
    const calls: string[] = [];
    let closed = false;
    const one = (n: number): number => {
      calls.push(`one ${n}`);
      if (n === opts.bad) throw new Error(`bad ${n}`);
      return n * 10;
    };
    const r = new TurnReads<number, number>({
      one,
      many: (ns) => {
        calls.push(`many ${ns.join(',')}`);
        if (opts.failMany) throw new Error('batch failed');
        return ns.map((n) => n * 10);
      },
      closed: () => closed,
      closedError: () => new StoreError('ERR_STORE_CLOSED', 'closed'),
      translate: (err) => new StoreError('ERR_STORE_INVALID', (err as Error).message),
    });
    return { r, calls, close: () => (closed = true) };
  };

  test('the first read of a turn runs at once, the others of that turn together after the turn; then at once again', async () => {
    const { r, calls } = make();
    const got = [r.read(1), r.read(2), r.read(3)];
    assert.deepEqual(calls, ['one 1'], 'the first read before the caller even awaits');
    assert.deepEqual(await Promise.all(got), [10, 20, 30]);
    assert.deepEqual(calls, ['one 1', 'many 2,3']);
    await new Promise((res) => setImmediate(res));
    assert.equal(await r.read(4), 40);
    assert.deepEqual(calls, ['one 1', 'many 2,3', 'one 4']);
  });

  test('a failed batch is read one by one (each its own error); a closed store fails the waiting reads', async () => {
    const { r, calls } = make({ failMany: true, bad: 3 });
    const got = await Promise.allSettled([r.read(1), r.read(2), r.read(3), r.read(4)]);
    assert.deepEqual(got.map((g) => (g.status === 'fulfilled' ? g.value : (g.reason as StoreError).code)), [10, 20, 'ERR_STORE_INVALID', 40]);
    assert.deepEqual(calls, ['one 1', 'many 2,3,4', 'one 2', 'one 3', 'one 4']);
    const c = make();
    const first = c.r.read(1);
    const waiting = c.r.read(2);
    c.close();
    assert.equal(await first, 10);
    await assert.rejects(waiting, { code: 'ERR_STORE_CLOSED' });
    await assert.rejects(c.r.read(3), { code: 'ERR_STORE_CLOSED' });
  });
});
