// Sequence numbers for sealed signaling: (unix ms << 16 | counter), so they grow across restarts,
// and a replay guard that rejects repeats, anything at or below a persisted floor, and stale or future times.

/** Tunable: how far a sealed message's time may be from ours, either way (clock skew + retransmits). */
export const SEQ_MAX_SKEW_MS = 120_000;
const COUNTER_BITS = 16n;

/** Time (unix ms) a sequence number was made at. */
export function seqTime(seq: bigint): number {
  return Number(seq >> COUNTER_BITS);
}

/** Hands out strictly increasing sequence numbers tied to the wall clock. */
export class SeqCounter {
  private last = 0n;
  constructor(private readonly now: () => number = Date.now) {}
  next(): bigint {
    const base = BigInt(this.now()) << COUNTER_BITS;
    this.last = base > this.last ? base : this.last + 1n;
    return this.last;
  }

  /** The last number handed out (0 before the first). */
  get current(): bigint {
    return this.last;
  }

  /** Never hand out `seq` or anything below it (a floor restored after a restart). */
  raise(seq: bigint): void {
    if (seq > this.last) this.last = seq;
  }
}

/**
 * Sequence numbers double as AES-GCM nonces, so a sender whose clock steps back across a restart must not hand out
 * a number it used before under the same key. `reserve` returns the value to persist: everything up to it may be
 * handed out before the next reservation; after a restart, `raise(saved)` continues above it. It reaches `aheadMs`
 * into the future, less than SEQ_MAX_SKEW_MS, so receivers still accept what we send right after a restart.
 */
export function reservationFor(counter: SeqCounter, nowMs: number, aheadMs: number): bigint {
  const upTo = BigInt(nowMs + aheadMs) << COUNTER_BITS;
  return upTo > counter.current ? upTo : counter.current + (BigInt(aheadMs) << COUNTER_BITS);
}

const U64_LIMIT = 1n << 64n;
/** First size of a guard's list; it doubles up to capacity + 1 (most peers send a few messages, some thousands). */
const FIRST_SLOTS = 8;

/**
 * Accepts each sequence number once; remembers a bounded recent set above a floor.
 *
 * The set is a sorted BigUint64Array (8 bytes a number) rather than a Set of bigints (~45 bytes a number): the NMS
 * holds one guard per registered node (PERFORMANCE.md). Numbers arrive almost always in order, so an accept is an
 * append; a late one is inserted in place. Two things keep the list short:
 *  - time: a number made more than SEQ_MAX_SKEW_MS before now is refused as stale anyway, so when the list is full,
 *    such numbers are forgotten first and the floor rises to the highest of them (a node's keepalives then keep only
 *    the last two minutes' numbers, not `capacity` of them: at a 5 s keepalive ~0.6 kB per guard instead of ~4.5 kB,
 *    PERFORMANCE.md "Eleventh round");
 *  - count: when it holds more than `capacity` (a flood within the skew window), its lower half is forgotten and the
 *    floor rises to the highest forgotten number.
 * Until a second number is accepted there is no list: the one number is `max` (a node that registered and has not
 * spoken since costs no array).
 */
export class ReplayGuard {
  /** Accepted numbers above the floor, ascending: seen[0..count). Null while count <= 1: the one number is `max`. */
  private seen: BigUint64Array | null = null;
  private count = 0;
  private floor: bigint;
  private max: bigint;
  constructor(
    floor = 0n,
    private readonly now: () => number = Date.now,
    private readonly capacity = 256,
  ) {
    this.floor = floor;
    this.max = floor;
  }

  /** Highest sequence accepted so far (persist it; pass it back as `floor` after a restart). */
  get highest(): bigint {
    return this.max;
  }

  /** Why `seq` would be refused, or null when it is acceptable. Does not record it. */
  check(seq: bigint): 'replay' | 'stale' | 'future' | null {
    if (seq <= this.floor || seq >= U64_LIMIT || this.indexOf(seq) >= 0) return 'replay';
    const t = seqTime(seq);
    const now = this.now();
    if (t < now - SEQ_MAX_SKEW_MS) return 'stale';
    if (t > now + SEQ_MAX_SKEW_MS) return 'future';
    return null;
  }

  /** Records an accepted sequence number (call after the message authenticated). */
  accept(seq: bigint): void {
    if (seq < 0n || seq >= U64_LIMIT) return; // never a sequence number on the wire (u64); check() refuses it
    let seen = this.seen;
    if (seen === null) {
      // While count is 0, max is the floor; with one number, it is max.
      if (this.count === 0 && seq > this.max) {
        this.max = seq;
        this.count = 1;
        return;
      }
      if (this.count === 1 && seq === this.max) return;
      seen = this.seen = new BigUint64Array(FIRST_SLOTS);
      if (this.count === 1) seen[0] = this.max;
    }
    if (seq > this.max) this.max = seq;
    let at = this.lowerBound(seq);
    if (at < this.count && seen[at] === seq) return;
    if (this.count === seen.length) {
      at -= this.forgetStale();
      if (at < 0) return; // seq is below a forgotten number, so at or below the floor: refused from now on anyway
    }
    if (this.count === seen.length) {
      const grown = new BigUint64Array(Math.min(seen.length * 2, this.capacity + 1));
      grown.set(seen);
      seen = this.seen = grown;
    }
    if (at < this.count) seen.copyWithin(at + 1, at, this.count);
    seen[at] = seq;
    this.count++;
    if (this.count > this.capacity) {
      const drop = this.count >> 1;
      this.floor = seen[drop - 1]!;
      seen.copyWithin(0, drop, this.count);
      this.count -= drop;
    }
  }

  /**
   * Forgets the numbers check() would refuse as stale now (made more than SEQ_MAX_SKEW_MS ago) and raises the floor
   * to the highest of them. Returns how many it forgot.
   */
  private forgetStale(): number {
    const cutoff = BigInt(Math.floor(this.now() - SEQ_MAX_SKEW_MS)) << COUNTER_BITS;
    const n = this.lowerBound(cutoff);
    if (n === 0) return 0;
    const seen = this.seen!;
    if (seen[n - 1]! > this.floor) this.floor = seen[n - 1]!;
    seen.copyWithin(0, n, this.count);
    this.count -= n;
    return n;
  }

  /** How many numbers above the floor it remembers now (at most `capacity`). */
  get size(): number {
    return this.count;
  }

  /** First index whose number is ≥ `seq` (count when none). */
  private lowerBound(seq: bigint): number {
    const seen = this.seen;
    if (seen === null) return this.count === 1 && this.max < seq ? 1 : 0;
    let lo = 0;
    let hi = this.count;
    // The common case: a number above every one remembered.
    if (hi === 0 || seen[hi - 1]! < seq) return hi;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (seen[mid]! < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private indexOf(seq: bigint): number {
    if (this.seen === null) return this.count === 1 && this.max === seq ? 0 : -1;
    const at = this.lowerBound(seq);
    return at < this.count && this.seen[at] === seq ? at : -1;
  }
}
