// The replay guard of sealed signaling (channel/sequence.ts): each sequence number accepted once, a floor that rises
// as old numbers are forgotten, stale and future times refused; checked against a plain model of the same rules.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { ReplayGuard, SEQ_MAX_SKEW_MS, SeqCounter } from '../../../src/channel/sequence.js';

/** The rules written the obvious way (a Set; what the guard held before it kept its numbers in a typed array). */
class ModelGuard {
  private readonly seen = new Set<bigint>();
  floor: bigint;
  max: bigint;
  constructor(
    floor: bigint,
    private readonly capacity: number,
  ) {
    this.floor = floor;
    this.max = floor;
  }
  replayed(seq: bigint): boolean {
    return seq <= this.floor || this.seen.has(seq);
  }
  accept(seq: bigint): void {
    this.seen.add(seq);
    if (seq > this.max) this.max = seq;
    if (this.seen.size > this.capacity) {
      const sorted = [...this.seen].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      const drop = sorted.slice(0, sorted.length >> 1);
      for (const s of drop) this.seen.delete(s);
      this.floor = drop[drop.length - 1]!;
    }
  }
  get size(): number {
    return this.seen.size;
  }
}

const NOW = 1_800_000_000_000;
const at = (ms: number, counter = 0): bigint => (BigInt(ms) << 16n) | BigInt(counter);

describe('ReplayGuard', () => {
  test('accepts a number once, refuses it and everything at or below the floor after', () => {
    const g = new ReplayGuard(at(NOW - 1000), () => NOW);
    assert.equal(g.check(at(NOW - 1000)), 'replay', 'the floor itself');
    assert.equal(g.check(at(NOW - 2000)), 'replay', 'below the floor');
    assert.equal(g.check(at(NOW)), null);
    g.accept(at(NOW));
    assert.equal(g.check(at(NOW)), 'replay');
    assert.equal(g.check(at(NOW, 1)), null, 'the next counter value');
    assert.equal(g.highest, at(NOW));
  });

  test('refuses stale and future times, and numbers no u64 holds', () => {
    const g = new ReplayGuard(0n, () => NOW);
    assert.equal(g.check(at(NOW - SEQ_MAX_SKEW_MS - 1)), 'stale');
    assert.equal(g.check(at(NOW + SEQ_MAX_SKEW_MS + 1)), 'future');
    assert.equal(g.check(at(NOW - SEQ_MAX_SKEW_MS)), null);
    assert.equal(g.check(1n << 64n), 'replay');
    assert.equal(g.check(-1n), 'replay');
    g.accept(1n << 64n);
    g.accept(-5n);
    assert.equal(g.size, 0, 'out-of-range numbers are not recorded');
    assert.equal(g.highest, 0n);
  });

  test('a late number is accepted in place, a repeated one is not recorded twice', () => {
    const g = new ReplayGuard(0n, () => NOW);
    for (const c of [5, 1, 3, 9, 3, 7, 1]) if (g.check(at(NOW, c)) === null) g.accept(at(NOW, c));
    assert.equal(g.size, 5);
    for (const c of [1, 3, 5, 7, 9]) assert.equal(g.check(at(NOW, c)), 'replay', `counter ${c}`);
    for (const c of [2, 4, 6, 8, 10]) assert.equal(g.check(at(NOW, c)), null, `counter ${c}`);
    assert.equal(g.highest, at(NOW, 9));
    g.accept(at(NOW, 3)); // accepted again without a check: still one entry
    g.accept(at(NOW, 9));
    assert.equal(g.size, 5);
  });

  test('over capacity the lower half is forgotten and the floor rises to it', () => {
    const g = new ReplayGuard(0n, () => NOW, 8);
    for (let c = 1; c <= 9; c++) g.accept(at(NOW, c));
    // Nine held: the lowest four go, the floor is the fourth.
    assert.equal(g.size, 5);
    for (let c = 1; c <= 4; c++) assert.equal(g.check(at(NOW, c)), 'replay');
    assert.equal(g.check(at(NOW, 10)), null);
  });

  test('matches the model over random traffic: in order, late, repeated, at several capacities', () => {
    for (const capacity of [1, 2, 7, 64, 256]) {
      const g = new ReplayGuard(at(NOW - 60_000), () => NOW, capacity);
      const m = new ModelGuard(at(NOW - 60_000), capacity);
      let next = NOW - 50_000;
      const sent: bigint[] = [];
      for (let i = 0; i < 4000; i++) {
        let seq: bigint;
        const r = randomInt(100);
        if (r < 70 || sent.length === 0) {
          next += randomInt(3);
          seq = at(next, randomInt(4));
          sent.push(seq);
        } else {
          seq = sent[Math.max(0, sent.length - 1 - randomInt(Math.min(sent.length, 2 * capacity + 8)))]!; // late or repeated
        }
        const refused = g.check(seq) === 'replay';
        assert.equal(refused, m.replayed(seq), `capacity ${capacity}, step ${i}: ${seq}`);
        if (!refused) {
          g.accept(seq);
          m.accept(seq);
        }
        assert.equal(g.size, m.size);
        assert.equal(g.highest, m.max);
      }
    }
  });
});

describe('ReplayGuard over time', () => {
  test('forgets what the clock makes stale, keeps refusing it, and never forgets a number still in the window', () => {
    // A node's keepalives every 20 s for an hour, some late and some repeated, the clock moving with them: the list
    // stays at what arrived within the skew window, and the guard refuses exactly what a guard remembering everything
    // (plus the stale and future rules) refuses.
    let now = NOW;
    const g = new ReplayGuard(at(NOW - 1000), () => now);
    const all = new Set<bigint>();
    const refusedByModel = (seq: bigint): boolean => {
      const t = Number(seq >> 16n);
      return seq <= at(NOW - 1000) || all.has(seq) || t < now - SEQ_MAX_SKEW_MS || t > now + SEQ_MAX_SKEW_MS;
    };
    const sent: bigint[] = [];
    let largest = 0;
    for (let i = 0; i < 180; i++) {
      now += 20_000;
      const fresh = at(now + randomInt(-2000, 2000), randomInt(8));
      const tries = [fresh, ...Array.from({ length: 3 }, () => (sent.length === 0 ? fresh : sent[sent.length - 1 - randomInt(Math.min(sent.length, 12))]!))];
      sent.push(fresh);
      for (const seq of tries) {
        const refused = g.check(seq) !== null;
        assert.equal(refused, refusedByModel(seq), `step ${i}: ${seq}`);
        if (!refused) {
          g.accept(seq);
          all.add(seq);
        }
      }
      largest = Math.max(largest, g.size);
    }
    assert.ok(largest <= 16, `at most what arrives within the skew window is remembered (${largest})`);
    for (const seq of sent) assert.notEqual(g.check(seq), null, 'every number sent is refused now, stale or replayed');
  });

  test('a guard that saw one number holds no list, and a second one (late or not) starts it', () => {
    const g = new ReplayGuard(0n, () => NOW);
    g.accept(at(NOW, 5));
    assert.equal((g as unknown as { seen: unknown }).seen, null);
    assert.equal(g.size, 1);
    assert.equal(g.check(at(NOW, 5)), 'replay');
    assert.equal(g.check(at(NOW, 4)), null, 'a late number is still acceptable');
    g.accept(at(NOW, 5));
    assert.equal(g.size, 1, 'the same number again is not recorded');
    g.accept(at(NOW, 4));
    assert.equal(g.size, 2);
    for (const c of [4, 5]) assert.equal(g.check(at(NOW, c)), 'replay');
    assert.equal(g.highest, at(NOW, 5));
  });
});

describe('SeqCounter', () => {
  test('strictly increasing, tied to the clock, never below a raised floor', () => {
    let now = NOW;
    const c = new SeqCounter(() => now);
    const a = c.next();
    const b = c.next();
    assert.equal(a, at(NOW));
    assert.equal(b, a + 1n);
    now -= 5000; // the clock steps back
    assert.ok(c.next() > b);
    c.raise(at(NOW + 10_000));
    assert.equal(c.next(), at(NOW + 10_000) + 1n);
  });
});
