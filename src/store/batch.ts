// Group commit for the store's hot writes (registrations, keepalive touches): calls made while the event loop is busy
// (one poll of the NMS socket, or while the previous batch is still committing) become one transaction, and every
// caller's promise settles only after that transaction committed — an acknowledged write is never only in memory.
// A batch that fails is retried one write at a time, so one bad write (a deleted node) fails alone.
// TurnReads does the same for the point reads of a synchronous store (SQLite): the reads after the first of an
// event-loop turn are made together in one read transaction when the turn's I/O is done.

/** Tunable: writes in one transaction at most (bounds statement size and how long one commit holds the lock). */
export const GROUP_COMMIT_MAX = 512;

/** A failed batch is retried write by write unless the store itself is gone (unreachable, closed). */
export function batchErrorPerItem(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code !== 'ERR_STORE_UNAVAILABLE' && code !== 'ERR_STORE_CLOSED';
}

interface Pending<T, R> {
  item: T;
  resolve: (r: R) => void;
  reject: (err: unknown) => void;
}

export interface GroupCommitInit<T, R> {
  /** Writes all items in one transaction; returns one result per item, in order. */
  many: (items: T[]) => Promise<R[]>;
  /** Writes one item (the fallback after a failed batch, so the faulty write is told apart). */
  one: (item: T) => Promise<R>;
  /** Batches committing at once (PostgreSQL: keeps a connection busy while the next batch gathers). @default 1 */
  inFlight?: number;
  /** @default GROUP_COMMIT_MAX */
  max?: number;
  /**
   * Whether a failed batch may be the fault of one write (then each is retried alone); otherwise (the store is
   * unreachable or closed) every write in the batch fails with the batch's error at once. @default () => true
   */
  perItem?: (err: unknown) => boolean;
}

export class GroupCommit<T, R> {
  #queue: Pending<T, R>[] = [];
  #running = 0;
  #scheduled = false;
  readonly #max: number;
  readonly #inFlight: number;
  /** Batches committed and writes in them (for the bench and tests). */
  batches = 0;
  writes = 0;

  constructor(private readonly init: GroupCommitInit<T, R>) {
    this.#max = init.max ?? GROUP_COMMIT_MAX;
    this.#inFlight = init.inFlight ?? 1;
  }

  /** Queues a write; settles after the transaction holding it committed (or with its own error). */
  write(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (this.#queue.length >= this.#max && this.#running < this.#inFlight) this.#flush();
      else this.#schedule();
    });
  }

  /** Settles once every write queued so far has committed or failed (close() waits for it). */
  async drain(): Promise<void> {
    while (this.#queue.length > 0 || this.#running > 0) {
      if (this.#running < this.#inFlight) this.#flush();
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  /** Writes queued and not yet committed. */
  get pending(): number {
    return this.#queue.length;
  }

  #schedule(): void {
    if (this.#scheduled || this.#running >= this.#inFlight) return;
    this.#scheduled = true;
    // After the I/O callbacks of this loop iteration: everything that arrived in one socket poll is one batch.
    setImmediate(() => {
      this.#scheduled = false;
      if (this.#running < this.#inFlight) this.#flush();
    });
  }

  #flush(): void {
    if (this.#queue.length === 0) return;
    const batch = this.#queue.splice(0, this.#max);
    this.#running++;
    void this.#commit(batch).finally(() => {
      this.#running--;
      if (this.#queue.length > 0) this.#schedule();
    });
  }

  async #commit(batch: Pending<T, R>[]): Promise<void> {
    if (batch.length > 1) {
      let out: R[] | null = null;
      try {
        out = await this.init.many(batch.map((p) => p.item));
      } catch (err) {
        if (this.init.perItem && !this.init.perItem(err)) {
          for (const p of batch) p.reject(err);
          return;
        }
        out = null; // retried one by one below: the error may belong to one write, not to all
      }
      if (out) {
        this.batches++;
        this.writes += batch.length;
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve(out[i]!);
        return;
      }
    }
    for (const p of batch) {
      try {
        p.resolve(await this.init.one(p.item));
        this.batches++;
        this.writes++;
      } catch (err) {
        p.reject(err);
      }
    }
  }
}

export interface TurnReadsInit<T, R> {
  /** Reads one item (synchronously). */
  one: (item: T) => R;
  /** Reads several items in one read transaction (one snapshot); one result per item, in order. */
  many: (items: T[]) => R[];
  /** Whether the store is closed (then a read fails with closedError). */
  closed: () => boolean;
  closedError: () => unknown;
  /** The error a caller sees for an error thrown by one/many (the store's translation). */
  translate: (err: unknown) => unknown;
}

/**
 * Point reads of a synchronous store (SQLite) that come in bursts: the first read of an event-loop turn runs at once;
 * those asked after it in the same turn (a burst of messages from one socket poll) wait for setImmediate and run
 * together in `many`, one read transaction instead of one per statement. Each read is still made after its caller
 * asked, in the same turn: nothing is served from memory. If `many` throws, each is read alone (its own error).
 */
export class TurnReads<T, R> {
  #queue: Pending<T, R>[] = [];
  /** A read ran at once in this turn (cleared, and the queue read, by the setImmediate it armed). */
  #armed = false;

  constructor(private readonly init: TurnReadsInit<T, R>) {}

  read(item: T): Promise<R> {
    if (this.init.closed()) return Promise.reject(this.init.closedError());
    if (this.#armed) return new Promise<R>((resolve, reject) => this.#queue.push({ item, resolve, reject }));
    this.#armed = true;
    setImmediate(() => this.flush());
    try {
      return Promise.resolve(this.init.one(item));
    } catch (err) {
      return Promise.reject(this.init.translate(err));
    }
  }

  /** Reads what is queued now (close() calls it so no caller is left waiting). */
  flush(): void {
    this.#armed = false;
    const q = this.#queue;
    if (q.length === 0) return;
    this.#queue = [];
    let out: R[] | null = null;
    if (q.length > 1 && !this.init.closed()) {
      try {
        out = this.init.many(q.map((p) => p.item));
      } catch {
        out = null; // read one by one below: the error may belong to one read
      }
    }
    for (let i = 0; i < q.length; i++) {
      const p = q[i]!;
      if (out) {
        p.resolve(out[i]!);
        continue;
      }
      if (this.init.closed()) {
        p.reject(this.init.closedError());
        continue;
      }
      try {
        p.resolve(this.init.one(p.item));
      } catch (err) {
        p.reject(this.init.translate(err));
      }
    }
  }
}
