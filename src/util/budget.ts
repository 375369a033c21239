// Token buckets: a rate (tokens per second) with a burst, refilled from a caller-supplied clock so tests can freeze
// or step time. Used wherever a sender must not spend more than its share (TRS binds and control frames, NMS route
// selections per node).

/** One bucket: `take` spends a token if one is there. */
export class Budget {
  private tokens: number;
  private last: number;

  constructor(
    private readonly perSec: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  take(now: number): boolean {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.perSec) / 1000);
      this.last = now;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** One bucket per key, all with the same rate; at most `maxKeys` tracked (all forgotten when full: bounded memory). */
export class Budgets<K> {
  private readonly map = new Map<K, Budget>();

  constructor(
    private readonly rate: { perSec: number; burst: number },
    private readonly maxKeys: number,
  ) {}

  take(key: K, now: number): boolean {
    let b = this.map.get(key);
    if (!b) {
      if (this.map.size >= this.maxKeys) this.map.clear();
      b = new Budget(this.rate.perSec, this.rate.burst, now);
      this.map.set(key, b);
    }
    return b.take(now);
  }
}
