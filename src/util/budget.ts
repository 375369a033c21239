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

/** Rows of Budgets' columns at first (they double as keys come, until there is a row for each of its `maxKeys`). */
const MIN_ROWS = 16;

/**
 * One bucket per key, all with the same rate; at most `maxKeys` tracked (all forgotten when full: bounded memory).
 * The buckets are rows of two number columns, a key maps to its row: a key seen for the first time adds a map entry
 * and no object (the NMS tracks one per node that selects routes, for as long as it runs).
 */
export class Budgets<K> {
  private readonly rows = new Map<K, number>();
  private tokens = new Float64Array(MIN_ROWS);
  private last = new Float64Array(MIN_ROWS);

  constructor(
    private readonly rate: { perSec: number; burst: number },
    private readonly maxKeys: number,
  ) {}

  take(key: K, now: number): boolean {
    let r = this.rows.get(key);
    if (r === undefined) {
      if (this.rows.size >= this.maxKeys) this.rows.clear(); // rows are handed out in order, so all go at once
      r = this.rows.size;
      if (r === this.tokens.length) this.grow();
      this.rows.set(key, r);
      this.tokens[r] = this.rate.burst;
      this.last[r] = now;
    }
    // The same arithmetic as Budget.take.
    if (now > this.last[r]!) {
      this.tokens[r] = Math.min(this.rate.burst, this.tokens[r]! + ((now - this.last[r]!) * this.rate.perSec) / 1000);
      this.last[r] = now;
    }
    if (this.tokens[r]! < 1) return false;
    this.tokens[r]! -= 1;
    return true;
  }

  private grow(): void {
    const n = this.tokens.length * 2;
    const tokens = new Float64Array(n);
    const last = new Float64Array(n);
    tokens.set(this.tokens);
    last.set(this.last);
    this.tokens = tokens;
    this.last = last;
  }
}
