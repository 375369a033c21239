// Sliding anti-replay window over 64-bit message counters (RFC 6479 style): a ring of 32-bit bitmap blocks.
// Counters are handled as (hi, lo) u32 halves internally so the per-packet path allocates nothing and uses no BigInt.

/** Bitmap blocks in the ring (power of two). One block is always "in front" of the window, as in RFC 6479. */
const BLOCKS = 128;
const BLOCK_MASK = BLOCKS - 1;
const BLOCK_BITS = 32;
const TWO_32 = 0x1_0000_0000;
/** lo >>> 5 gives 27 bits; the 64-bit block index is hi * 2^27 + (lo >>> 5). */
const HI_BLOCK_FACTOR = 2 ** 27;

/**
 * Counters this far (or farther) below the highest accepted one are refused as too old:
 * (BLOCKS − 1) × 32 = 4064. A counter c is acceptable when c > highest, or highest − c < REPLAY_WINDOW_SIZE
 * and c was not accepted before.
 */
export const REPLAY_WINDOW_SIZE = (BLOCKS - 1) * BLOCK_BITS;

/** Why check*() refused a counter (0 = acceptable). */
export enum ReplayVerdict {
  Ok = 0,
  Duplicate = 1,
  TooOld = 2,
}

/**
 * Anti-replay window. Call check() before spending work on a packet, and update() only once the packet
 * authenticated (AEAD tag verified) so forged packets can never move the window.
 *
 * Three ways to pass a counter, same semantics:
 *  - `bigint` in [0, 2^64) — the general API (check/update);
 *  - `number` — fast path for safe integers (< 2^53), no BigInt arithmetic (check/update accept it too);
 *  - `(hi, lo)` u32 halves — checkParts/updateParts, what a receiver reading the header with two readUInt32BE calls uses.
 * Advancing is O(1) amortised: at most BLOCKS words are cleared per update, however far the counter jumps.
 */
export class ReplayWindow {
  readonly #bitmap = new Uint32Array(BLOCKS);
  #started = false;
  #hi = 0;
  #lo = 0;

  /** Highest accepted counter, or -1n before the first update. Not for the hot path (allocates a BigInt). */
  get highest(): bigint {
    return this.#started ? (BigInt(this.#hi) << 32n) | BigInt(this.#lo) : -1n;
  }

  /** True when `counter` would be accepted now; does not change the window. */
  check(counter: bigint | number): boolean {
    return this.verdict(counter) === ReplayVerdict.Ok;
  }

  /** Accepts and records `counter`; false when it is a duplicate or too old. Call only after the tag verified. */
  update(counter: bigint | number): boolean {
    if (typeof counter === 'number') {
      checkNumber(counter);
      return this.updateParts(Math.floor(counter / TWO_32), counter >>> 0);
    }
    checkBigint(counter);
    return this.updateParts(Number(counter >> 32n), Number(counter & 0xffff_ffffn));
  }

  /** Why `counter` would be refused (ReplayVerdict.Ok when it would be accepted). */
  verdict(counter: bigint | number): ReplayVerdict {
    if (typeof counter === 'number') {
      checkNumber(counter);
      return this.checkParts(Math.floor(counter / TWO_32), counter >>> 0);
    }
    checkBigint(counter);
    return this.checkParts(Number(counter >> 32n), Number(counter & 0xffff_ffffn));
  }

  /** check() on the counter hi * 2^32 + lo (both u32, unchecked: callers read them with readUInt32BE). */
  checkParts(hi: number, lo: number): ReplayVerdict {
    if (!this.#started) return ReplayVerdict.Ok;
    if (hi > this.#hi || (hi === this.#hi && lo > this.#lo)) return ReplayVerdict.Ok;
    // counter <= highest. The difference is exact while it is < 2^53, and only compared against a small bound.
    const behind = (this.#hi - hi) * TWO_32 + (this.#lo - lo);
    if (behind >= REPLAY_WINDOW_SIZE) return ReplayVerdict.TooOld;
    const word = this.#bitmap[(lo >>> 5) & BLOCK_MASK]!;
    return (word >>> (lo & 31)) & 1 ? ReplayVerdict.Duplicate : ReplayVerdict.Ok;
  }

  /** update() on the counter hi * 2^32 + lo (both u32). */
  updateParts(hi: number, lo: number): boolean {
    if (!this.#started || hi > this.#hi || (hi === this.#hi && lo > this.#lo)) {
      if (this.#started) {
        // Clear every block between the old highest's block (exclusive) and the new one (inclusive), at most BLOCKS.
        const oldBlock = this.#lo >>> 5;
        let advance = (hi - this.#hi) * HI_BLOCK_FACTOR + ((lo >>> 5) - oldBlock);
        if (advance > BLOCKS) advance = BLOCKS;
        for (let i = 1; i <= advance; i++) this.#bitmap[(oldBlock + i) & BLOCK_MASK] = 0;
      }
      this.#started = true;
      this.#hi = hi;
      this.#lo = lo;
    } else if (this.checkParts(hi, lo) !== ReplayVerdict.Ok) {
      return false;
    }
    const index = (lo >>> 5) & BLOCK_MASK;
    this.#bitmap[index] = this.#bitmap[index]! | (1 << (lo & 31));
    return true;
  }

  /** Forgets everything: the next counter (any value) is accepted. */
  reset(): void {
    this.#bitmap.fill(0);
    this.#started = false;
    this.#hi = 0;
    this.#lo = 0;
  }
}

function checkNumber(n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`replay counter must be a safe non-negative integer: ${n}`);
}

function checkBigint(n: bigint): void {
  if (typeof n !== 'bigint' || n < 0n || n >> 64n !== 0n) throw new RangeError(`replay counter must be in [0, 2^64): ${String(n)}`);
}
