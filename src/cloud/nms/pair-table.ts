// The last path the NMS selected between a node and each of its peers (route selection remembers both ends of
// every path; the console lists a node's, the policy pusher asks whom a change concerns), kept in flat arrays.
//
// Why not a Map of Maps of records: every first contact between two nodes would leave two records (and, for a node
// seen for the first time, a Map) that live for as long as the pair is remembered. The young-generation GC copies
// each of them twice on its way to the old generation, and those copies were most of the NMS's first-contact
// scavenges (PERFORMANCE.md, "Thirteenth round"). Here a pair is a row of typed arrays (a path id, a kind, a time,
// an order) and three reference columns that hold shared or constant values (the relay's id and endpoint, the
// planner's reason); rows are reused through a free list and the arrays are replaced only when the table grows.
//
// Rows are found by (node, peer) through an open-addressing index (linear probing, at most half full, deletion by
// backward shift); a node's rows form a circular doubly linked list, most recently selected first, so the least
// recently selected peer (the one dropped when a node has `perNode` of them) is the head's predecessor. Each node's
// head row sits in one Map of small integers (one entry per node, no object per node); its count is a column, valid
// at the head row.

import type { Endpoint } from '../../protocol/endpoint.js';
import type { PathKind } from './paths.js';

/**
 * The last path selected between a node and one peer (the console's node page; in memory, this instance only): a
 * copy, made when asked for.
 */
export interface SelectedPath {
  peer: number;
  pathId: bigint;
  kind: PathKind;
  /** The node started the selection (else the peer did). */
  initiator: boolean;
  /** Relayed: the TRS that relays it and its endpoint given to this node. */
  relayId: string | null;
  relay: Endpoint | null;
  why: string;
  at: number;
  /** This instance's count of selections when the pair was last selected: the higher, the more recent. */
  order: number;
}

/** Whom a policy change concerns: the nodes with remembered paths and their peers (PolicyPusher). */
export interface PairIndex {
  /** Every node with at least one remembered peer. */
  nodes(): Iterable<number>;
  /** The node's remembered peers (empty if none). */
  peersOf(node: number): number[];
}

const KINDS: readonly PathKind[] = ['direct', 'punched', 'relayed'];
const KIND_CODE: Readonly<Record<PathKind, number>> = { direct: 0, punched: 1, relayed: 2 };

/** Rows the table starts with (a power of two; it doubles when full). */
const MIN_ROWS = 64;
/** Rows at most (row numbers stay small integers, which a Map holds without a heap number each). */
const MAX_ROWS = 2 ** 30;

export class PairTable implements PairIndex {
  // Row columns.
  private nodeOf: Uint32Array;
  private peerOf: Uint32Array;
  private pathIds: BigUint64Array;
  private kinds: Uint8Array;
  private initiators: Uint8Array;
  private ats: Float64Array;
  private orders: Float64Array;
  private relayIds: (string | null)[];
  private relays: (Endpoint | null)[];
  private whys: (string | null)[];
  /** A node's list (circular; most recent first); a free row's `next` is the next free row (-1: none). */
  private next: Int32Array;
  private prev: Int32Array;
  /** At a node's head row: how many rows the node has. */
  private counts: Int32Array;
  private free = -1;
  /** Rows handed out so far (rows at and past it were never used). */
  private used = 0;
  /** (node, peer) → row + 1 (0: empty slot); twice as many slots as rows. */
  private slots: Int32Array;
  /** Node → its head row (its most recently selected peer's). */
  private readonly heads = new Map<number, number>();
  private rows = 0;
  /** Selections remembered so far (SelectedPath.order). */
  private selections = 0;

  /** `perNode`: peers remembered per node (its least recently selected goes when one more comes). */
  constructor(private readonly perNode: number) {
    if (!(Number.isInteger(perNode) && perNode >= 1)) throw new RangeError('peers per node must be a positive integer');
    this.nodeOf = new Uint32Array(MIN_ROWS);
    this.peerOf = new Uint32Array(MIN_ROWS);
    this.pathIds = new BigUint64Array(MIN_ROWS);
    this.kinds = new Uint8Array(MIN_ROWS);
    this.initiators = new Uint8Array(MIN_ROWS);
    this.ats = new Float64Array(MIN_ROWS);
    this.orders = new Float64Array(MIN_ROWS);
    this.relayIds = new Array<string | null>(MIN_ROWS).fill(null);
    this.relays = new Array<Endpoint | null>(MIN_ROWS).fill(null);
    this.whys = new Array<string | null>(MIN_ROWS).fill(null);
    this.next = new Int32Array(MIN_ROWS);
    this.prev = new Int32Array(MIN_ROWS);
    this.counts = new Int32Array(MIN_ROWS);
    this.slots = new Int32Array(MIN_ROWS * 2);
  }

  /** Pairs remembered (both ends of a path count, each at its node). */
  get size(): number {
    return this.rows;
  }

  /**
   * Records the path selected between `node` and `peer` as the node's newest (a pair selected again is updated in
   * place; a node with `perNode` peers first drops its least recently selected one).
   */
  remember(node: number, peer: number, pathId: bigint, kind: PathKind, initiator: boolean, relayId: string | null, relay: Endpoint | null, why: string, at: number): void {
    if (node >>> 0 !== node || peer >>> 0 !== peer) throw new RangeError(`node ids are 32-bit unsigned integers (${node}, ${peer})`);
    const order = ++this.selections;
    let row = this.find(node, peer);
    if (row < 0) {
      const head = this.heads.get(node);
      if (head !== undefined && this.counts[head]! >= this.perNode) this.drop(this.prev[head]!);
      row = this.take();
      this.nodeOf[row] = node;
      this.peerOf[row] = peer;
      this.index(row);
      this.link(node, row);
      this.rows++;
    } else this.toFront(node, row);
    this.pathIds[row] = pathId;
    this.kinds[row] = KIND_CODE[kind];
    this.initiators[row] = initiator ? 1 : 0;
    this.relayIds[row] = relayId;
    this.relays[row] = relay;
    this.whys[row] = why;
    this.ats[row] = at;
    this.orders[row] = order;
  }

  /** The node's remembered paths, newest first (copies). */
  list(node: number): SelectedPath[] {
    return this.rowsOf(node).map((row) => this.record(row));
  }

  nodes(): IterableIterator<number> {
    return this.heads.keys();
  }

  peersOf(node: number): number[] {
    return this.rowsOf(node).map((row) => this.peerOf[row]!);
  }

  /** The node's rows, newest first. */
  private rowsOf(node: number): number[] {
    const out: number[] = [];
    const head = this.heads.get(node);
    if (head === undefined) return out;
    let row = head;
    do {
      out.push(row);
      row = this.next[row]!;
    } while (row !== head);
    return out;
  }

  private record(row: number): SelectedPath {
    return {
      peer: this.peerOf[row]!,
      pathId: this.pathIds[row]!,
      kind: KINDS[this.kinds[row]!]!,
      initiator: this.initiators[row] === 1,
      relayId: this.relayIds[row]!,
      relay: this.relays[row]!,
      why: this.whys[row]!,
      at: this.ats[row]!,
      order: this.orders[row]!,
    };
  }

  /** Forgets a row: out of the index, its node's list and its reference columns; onto the free list. */
  private drop(row: number): void {
    this.unindex(row);
    this.unlink(this.nodeOf[row]!, row);
    this.relayIds[row] = null;
    this.relays[row] = null;
    this.whys[row] = null;
    this.next[row] = this.free;
    this.free = row;
    this.rows--;
  }

  /** A free row (grows the table when none is left). */
  private take(): number {
    if (this.free >= 0) {
      const row = this.free;
      this.free = this.next[row]!;
      return row;
    }
    if (this.used === this.nodeOf.length) this.grow();
    return this.used++;
  }

  // --- a node's list ---

  /** Puts a new `row` at the front of `node`'s list. */
  private link(node: number, row: number): void {
    const head = this.heads.get(node);
    if (head === undefined) {
      this.next[row] = row;
      this.prev[row] = row;
      this.counts[row] = 1;
    } else {
      this.insertBefore(row, head);
      this.counts[row] = this.counts[head]! + 1;
    }
    this.heads.set(node, row);
  }

  private unlink(node: number, row: number): void {
    const head = this.heads.get(node)!;
    const count = this.counts[head]!;
    if (count === 1) {
      this.heads.delete(node);
      return;
    }
    const nextRow = this.next[row]!;
    this.next[this.prev[row]!] = nextRow;
    this.prev[nextRow] = this.prev[row]!;
    const newHead = head === row ? nextRow : head;
    this.counts[newHead] = count - 1;
    if (newHead !== head) this.heads.set(node, newHead);
  }

  /** Moves an existing row of `node` to the front of its list. */
  private toFront(node: number, row: number): void {
    const head = this.heads.get(node)!;
    if (head === row) return;
    this.next[this.prev[row]!] = this.next[row]!;
    this.prev[this.next[row]!] = this.prev[row]!;
    this.insertBefore(row, head);
    this.counts[row] = this.counts[head]!;
    this.heads.set(node, row);
  }

  /** Links `row` in just before `at` (the circle's end, when `at` is the head). */
  private insertBefore(row: number, at: number): void {
    const last = this.prev[at]!;
    this.next[last] = row;
    this.prev[row] = last;
    this.next[row] = at;
    this.prev[at] = row;
  }

  // --- the (node, peer) index ---

  /** The pair's first slot: a multiplicative mix of both ids, its high bits folded down (ids may share low bits). */
  private home(node: number, peer: number): number {
    let h = Math.imul(node ^ Math.imul(peer, 0x9e3779b1), 0x85ebca6b);
    h ^= h >>> 15;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h & (this.slots.length - 1);
  }

  private find(node: number, peer: number): number {
    const mask = this.slots.length - 1;
    for (let i = this.home(node, peer); ; i = (i + 1) & mask) {
      const s = this.slots[i]!;
      if (s === 0) return -1;
      if (this.nodeOf[s - 1] === node && this.peerOf[s - 1] === peer) return s - 1;
    }
  }

  private index(row: number): void {
    const mask = this.slots.length - 1;
    let i = this.home(this.nodeOf[row]!, this.peerOf[row]!);
    while (this.slots[i] !== 0) i = (i + 1) & mask;
    this.slots[i] = row + 1;
  }

  private unindex(row: number): void {
    const mask = this.slots.length - 1;
    let hole = this.home(this.nodeOf[row]!, this.peerOf[row]!);
    while (this.slots[hole] !== row + 1) hole = (hole + 1) & mask;
    // Backward shift: an entry after the hole (up to the next empty slot) whose home is not cyclically between the
    // hole and where it sits moves into the hole, and its old slot becomes the hole.
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const s = this.slots[j]!;
      if (s === 0) break;
      const home = this.home(this.nodeOf[s - 1]!, this.peerOf[s - 1]!);
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        this.slots[hole] = s;
        hole = j;
      }
    }
    this.slots[hole] = 0;
  }

  /** Doubles every column and rebuilds the index. */
  private grow(): void {
    const n = this.nodeOf.length * 2;
    if (n > MAX_ROWS) throw new RangeError('pair table full');
    const widen = <T extends Uint32Array | BigUint64Array | Uint8Array | Float64Array | Int32Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a as never);
      return b;
    };
    this.nodeOf = widen(this.nodeOf, (k) => new Uint32Array(k));
    this.peerOf = widen(this.peerOf, (k) => new Uint32Array(k));
    this.pathIds = widen(this.pathIds, (k) => new BigUint64Array(k));
    this.kinds = widen(this.kinds, (k) => new Uint8Array(k));
    this.initiators = widen(this.initiators, (k) => new Uint8Array(k));
    this.ats = widen(this.ats, (k) => new Float64Array(k));
    this.orders = widen(this.orders, (k) => new Float64Array(k));
    this.next = widen(this.next, (k) => new Int32Array(k));
    this.prev = widen(this.prev, (k) => new Int32Array(k));
    this.counts = widen(this.counts, (k) => new Int32Array(k));
    for (const col of [this.relayIds, this.relays, this.whys] as unknown[][]) {
      const old = col.length;
      col.length = n;
      col.fill(null, old);
    }
    this.slots = new Int32Array(n * 2);
    for (const node of this.heads.keys()) for (const row of this.rowsOf(node)) this.index(row);
  }
}
