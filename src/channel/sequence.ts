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

/** Accepts each sequence number once; remembers a bounded recent set above a floor. */
export class ReplayGuard {
  private readonly seen = new Set<bigint>();
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
    if (seq <= this.floor || this.seen.has(seq)) return 'replay';
    const t = seqTime(seq);
    const now = this.now();
    if (t < now - SEQ_MAX_SKEW_MS) return 'stale';
    if (t > now + SEQ_MAX_SKEW_MS) return 'future';
    return null;
  }

  /** Records an accepted sequence number (call after the message authenticated). */
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
}
