// U64Table (src/util/u64-table.ts) against a Map fed the same operations: keys that share a home slot, probe runs
// that wrap around the end of the array, deletions that must shift later entries back, growth; and that steady
// churn at a fixed size allocates no new arrays.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { U64Table } from '../../../src/util/u64-table.js';
import { prng } from '../../harness/prng.js';

/** Seeded u32s (test/harness/prng.ts), so a failure replays. */
function rng(seed: number): () => number {
  const r = prng(seed);
  return () => Math.floor(r() * 0x1_0000_0000);
}

/** Every key ever used answers as in the Map, and the sizes agree (so the table holds nothing else). */
function same(t: U64Table<number>, m: Map<bigint, number>, keys: bigint[]): void {
  assert.equal(t.size, m.size);
  for (const k of keys) assert.equal(t.get(k), m.get(k), `key ${k}`);
}

test('U64Table answers like a Map through random sets, overwrites and deletes, with colliding and wrapping keys', () => {
  const next = rng(0x5eed);
  // Few distinct low-32-bit values (so home slots collide), some near the top of the slot range (so probes wrap),
  // each with several high halves (the same home slot, different keys).
  const lows = [0, 1, 2, 15, 14, 13, 31, 30, 17, 0xffffffff, 0xfffffffe, 0x10];
  const keys: bigint[] = [];
  for (const lo of lows) for (let hi = 0; hi < 4; hi++) keys.push((BigInt(hi * 0x9e3779b1) << 32n) | BigInt(lo));
  const t = new U64Table<number>();
  const m = new Map<bigint, number>();
  for (let i = 0; i < 20_000; i++) {
    const k = keys[next() % keys.length]!;
    const op = next() % 3;
    if (op < 2) {
      t.set(k, i);
      m.set(k, i);
    } else {
      assert.equal(t.delete(k), m.delete(k));
    }
    if (i % 97 === 0) same(t, m, keys);
  }
  same(t, m, keys);
  for (const k of keys) assert.equal(t.delete(k), m.delete(k));
  assert.equal(t.size, 0);
});

test('U64Table grows past its first capacity and keeps every entry', () => {
  const next = rng(7);
  const t = new U64Table<number>();
  const m = new Map<bigint, number>();
  const keys: bigint[] = [];
  for (let i = 0; i < 5000; i++) {
    const k = (BigInt(next()) << 32n) | BigInt(next());
    keys.push(k);
    t.set(k, i);
    m.set(k, i);
  }
  same(t, m, keys);
  for (const k of keys.slice(0, 2500)) assert.ok(t.delete(k));
  for (const k of keys.slice(0, 2500)) m.delete(k);
  same(t, m, keys);
  assert.equal(t.get(12345n), undefined);
  assert.equal(t.delete(12345n), false);
});

test('U64Table: churn at a steady size reuses its arrays (a Map would take new tables)', () => {
  const t = new U64Table<object>();
  const next = rng(99);
  const v = {};
  const live: bigint[] = [];
  for (let i = 0; i < 4; i++) {
    const k = BigInt(next());
    live.push(k);
    t.set(k, v);
  }
  const arrays = () => [(t as unknown as { keys: unknown[] }).keys, (t as unknown as { vals: unknown[] }).vals];
  const [k0, v0] = arrays();
  for (let i = 0; i < 10_000; i++) {
    const k = BigInt(next());
    t.set(k, v);
    live.push(k);
    assert.ok(t.delete(live.shift()!));
  }
  const [k1, v1] = arrays();
  assert.equal(k1, k0);
  assert.equal(v1, v0);
  assert.equal(t.size, 4);
  for (const k of live) assert.equal(t.get(k), v);
});
