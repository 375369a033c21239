// Token buckets (src/util/budget.ts): Budgets, whose buckets are rows of number columns, against one Budget object
// per key; the bound forgets every key at once.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Budget, Budgets } from '../../../src/util/budget.js';

test('Budgets answers as one Budget per key would, over keys coming and going and time moving unevenly', () => {
  const rate = { perSec: 7, burst: 3 };
  const budgets = new Budgets<string>(rate, 1000);
  const model = new Map<string, Budget>();
  let x = 12345;
  const rand = (): number => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x / 2 ** 32;
  };
  let now = 1_000_000;
  let refused = 0;
  for (let i = 0; i < 20_000; i++) {
    now += rand() < 0.3 ? Math.floor(rand() * 40) : 0;
    if (rand() < 0.05) now -= 50; // a clock that steps back takes nothing and gives nothing
    const key = `k${Math.floor(rand() * 20)}`;
    let b = model.get(key);
    if (!b) model.set(key, (b = new Budget(rate.perSec, rate.burst, now)));
    const want = b.take(now);
    assert.equal(budgets.take(key, now), want, `take ${i} of ${key} at ${now}`);
    if (!want) refused++;
  }
  assert.ok(refused > 1000 && refused < 19_000, `both answers were exercised (${refused} refused)`);
});

test('Budgets: a key spends its burst, refills at its rate, and other keys are apart', () => {
  const b = new Budgets<number>({ perSec: 10, burst: 2 }, 100);
  assert.deepEqual([b.take(1, 0), b.take(1, 0), b.take(1, 0)], [true, true, false]);
  assert.equal(b.take(2, 0), true, 'another key has its own bucket');
  assert.equal(b.take(1, 50), false, 'half a token after 50 ms');
  assert.equal(b.take(1, 100), true, 'one token after 100 ms');
  assert.equal(b.take(1, 100), false);
});

test('Budgets past maxKeys forgets every key at once, so a forgotten key starts with a full burst', () => {
  const b = new Budgets<number>({ perSec: 0, burst: 1 }, 4);
  for (let k = 0; k < 4; k++) assert.equal(b.take(k, 0), true);
  for (let k = 0; k < 4; k++) assert.equal(b.take(k, 0), false, `key ${k} spent`);
  assert.equal(b.take(99, 0), true, 'the fifth key: the table was cleared for it');
  assert.equal(b.take(0, 0), true, 'key 0 was forgotten with the rest');
  assert.equal(b.take(99, 0), false, 'the fifth key is tracked after the clear');
  // Past the first columns' size: rows keep their own values when the columns grow.
  const big = new Budgets<number>({ perSec: 0, burst: 1 }, 1000);
  for (let k = 0; k < 100; k++) big.take(k, 0);
  for (let k = 0; k < 100; k++) assert.equal(big.take(k, 0), false, `key ${k} kept its spent bucket across growth`);
});
