// Unit tests for the anti-replay window (src/crypto/replay-window.ts), including a randomized cross-check
// against a naive model that remembers every accepted counter.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { REPLAY_WINDOW_SIZE, ReplayVerdict, ReplayWindow } from '../../../src/crypto/replay-window.js';

const W = BigInt(REPLAY_WINDOW_SIZE);
const U64_MAX = (1n << 64n) - 1n;

/** The specification: accept a counter once, unless it is WINDOW or more below the highest accepted. */
class Model {
  readonly seen = new Set<bigint>();
  max = -1n;
  check(c: bigint): boolean {
    if (this.max < 0n || c > this.max) return true;
    return this.max - c < W && !this.seen.has(c);
  }
  update(c: bigint): boolean {
    if (!this.check(c)) return false;
    this.seen.add(c);
    if (c > this.max) this.max = c;
    return true;
  }
}

/** Small deterministic PRNG (xorshift32) so failures reproduce. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

describe('ReplayWindow', () => {
  it('has a window of at least 2048 counters', () => {
    assert.ok(REPLAY_WINDOW_SIZE >= 2048);
  });

  it('accepts counter 0 first, then refuses it again', () => {
    const w = new ReplayWindow();
    assert.equal(w.highest, -1n);
    assert.equal(w.check(0n), true);
    assert.equal(w.update(0n), true);
    assert.equal(w.check(0n), false);
    assert.equal(w.update(0), false);
    assert.equal(w.highest, 0n);
  });

  it('accepts in-order counters and refuses duplicates', () => {
    const w = new ReplayWindow();
    for (let i = 0; i < 10_000; i++) assert.equal(w.update(i), true, `counter ${i}`);
    for (let i = 10_000 - REPLAY_WINDOW_SIZE; i < 10_000; i++) {
      assert.equal(w.check(i), false);
      assert.equal(w.verdict(i), ReplayVerdict.Duplicate);
    }
    assert.equal(w.verdict(10_000 - REPLAY_WINDOW_SIZE - 1), ReplayVerdict.TooOld);
    assert.equal(w.highest, 9_999n);
  });

  it('accepts reordering within the window, once', () => {
    const w = new ReplayWindow();
    assert.equal(w.update(5000n), true);
    assert.equal(w.update(5000n - W + 1n), true, 'oldest counter still inside the window');
    assert.equal(w.update(5000n - W), false, 'exactly WINDOW below is too old');
    assert.equal(w.verdict(5000n - W), ReplayVerdict.TooOld);
    for (let c = 4999n; c > 4000n; c -= 3n) assert.equal(w.update(c), true);
    for (let c = 4999n; c > 4000n; c -= 3n) assert.equal(w.update(c), false);
    assert.equal(w.update(4998n), true);
    assert.equal(w.update(5001n), true);
    assert.equal(w.update(4998n), false);
    assert.equal(w.highest, 5001n);
  });

  it('check() never changes state', () => {
    const w = new ReplayWindow();
    w.update(100n);
    for (let i = 0; i < 3; i++) {
      assert.equal(w.check(200n), true);
      assert.equal(w.check(50n), true);
      assert.equal(w.check(100n), false);
    }
    assert.equal(w.highest, 100n);
    assert.equal(w.update(50n), true);
  });

  it('handles huge jumps, up to the top of the u64 range', () => {
    const w = new ReplayWindow();
    w.update(10n);
    w.update(12n);
    assert.equal(w.update(1n << 40n), true);
    assert.equal(w.check(12n), false, 'far below the window now');
    assert.equal(w.check((1n << 40n) - 1n), true);
    assert.equal(w.update((1n << 40n) - 1n), true);
    assert.equal(w.update(U64_MAX - 5n), true);
    assert.equal(w.check((1n << 40n) + 1n), false);
    // Nothing of the old bitmap leaks into the new position.
    for (let c = U64_MAX - 5n - W + 1n; c < U64_MAX - 5n; c += 97n) assert.equal(w.check(c), true, `counter ${c}`);
    assert.equal(w.update(U64_MAX), true);
    assert.equal(w.update(U64_MAX), false);
    assert.equal(w.update(U64_MAX - 5n), false);
    assert.equal(w.update(U64_MAX - 4n), true);
    assert.equal(w.highest, U64_MAX);
  });

  it('jumps by exactly one block and by the ring size clear the right bits', () => {
    const w = new ReplayWindow();
    for (let c = 0; c < 64; c++) w.update(c);
    w.update(64 + 32 * 128); // one full ring ahead: every block recycled
    for (let c = 64 + 33; c < 64 + 32 * 128; c += 31) assert.equal(w.check(c), true, `counter ${c}`);
    w.update(64 + 32 * 129); // one more block
    assert.equal(w.check(64 + 32 * 128), false);
    assert.equal(w.check(64 + 32 * 128 + 1), true);
  });

  it('number, bigint and (hi, lo) forms agree across the 2^32 boundary', () => {
    const w = new ReplayWindow();
    const base = 2 ** 32 - 40;
    for (let c = base; c < base + 80; c += 2) assert.equal(w.update(c), true);
    for (let c = base; c < base + 80; c++) {
      const expected = (c - base) % 2 === 1;
      assert.equal(w.check(c), expected);
      assert.equal(w.check(BigInt(c)), expected);
      assert.equal(w.checkParts(Math.floor(c / 2 ** 32), c >>> 0) === ReplayVerdict.Ok, expected);
    }
    assert.equal(w.highest, BigInt(base + 78));
  });

  it('rejects out-of-range inputs', () => {
    const w = new ReplayWindow();
    assert.throws(() => w.update(-1n), RangeError);
    assert.throws(() => w.update(1n << 64n), RangeError);
    assert.throws(() => w.update(-1), RangeError);
    assert.throws(() => w.check(1.5), RangeError);
    assert.throws(() => w.check(2 ** 53), RangeError);
  });

  it('reset() forgets everything', () => {
    const w = new ReplayWindow();
    w.update(1_000_000n);
    w.reset();
    assert.equal(w.highest, -1n);
    assert.equal(w.update(3n), true);
    assert.equal(w.update(1_000_000n), true);
  });

  it('matches a naive set model over 100k random operations', () => {
    const rand = rng(0xc0ffee);
    const w = new ReplayWindow();
    const m = new Model();
    let base = 0n;
    for (let i = 0; i < 100_000; i++) {
      const r = rand();
      if (r < 0.001) base += BigInt(Math.floor(rand() * 2 ** 40)); // rare huge jump
      else if (r < 0.3) base += BigInt(Math.floor(rand() * 64)); // traffic moving forward
      let c = base + BigInt(Math.floor(rand() * 1.5 * REPLAY_WINDOW_SIZE)) - BigInt(Math.floor(1.4 * REPLAY_WINDOW_SIZE));
      if (c < 0n) c = 0n;
      if (c > U64_MAX) c = U64_MAX;
      const op = rand();
      if (op < 0.3) {
        assert.equal(w.check(c), m.check(c), `op ${i}: check(${c})`);
      } else if (op < 0.6 && c < 2n ** 53n) {
        assert.equal(w.update(Number(c)), m.update(c), `op ${i}: update(${c}) as number`);
      } else {
        assert.equal(w.update(c), m.update(c), `op ${i}: update(${c})`);
      }
    }
    assert.equal(w.highest, m.max);
  });
});
