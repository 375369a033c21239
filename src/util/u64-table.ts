// An open-addressing hash table from u64 keys (bigint) to values, for entries that come and go many times a second
// in a long-lived process (the NMS's pushes waiting for their confirmation, by path id).
//
// Why not a Map: a Map's ordered table is replaced every few inserts and deletes (it shrinks when it empties, and
// rehashes away its deleted entries), and V8 makes the new table in the generation of the one it replaces. So once a
// long-lived Map's table has reached the old generation, every table it drops is old-generation garbage that stays
// until the next full GC (PERFORMANCE.md, "Tenth round"). This table's storage is two arrays, allocated only when it
// grows (a lookup's BigInt arithmetic on the key leaves only short-lived young-generation garbage).
// Keys are expected to be uniform in their low 32 bits (random path ids), which is what the slot is taken from;
// linear probing, at most half full, deletion by backward shift (no tombstones).

/** Smallest capacity (a power of two). */
const MIN_CAPACITY = 16;

export class U64Table<V> {
  private keys: (bigint | undefined)[];
  private vals: (V | undefined)[];
  private mask: number;
  private count = 0;

  constructor(capacity = MIN_CAPACITY) {
    let c = MIN_CAPACITY;
    while (c < capacity) c *= 2;
    this.keys = new Array<bigint | undefined>(c).fill(undefined);
    this.vals = new Array<V | undefined>(c).fill(undefined);
    this.mask = c - 1;
  }

  get size(): number {
    return this.count;
  }

  get(key: bigint): V | undefined {
    const i = this.find(key);
    return i < 0 ? undefined : this.vals[i];
  }

  set(key: bigint, value: V): void {
    const i = this.find(key);
    if (i >= 0) {
      this.vals[i] = value;
      return;
    }
    if ((this.count + 1) * 2 > this.keys.length) this.grow();
    this.place(key, value);
    this.count++;
  }

  delete(key: bigint): boolean {
    let hole = this.find(key);
    if (hole < 0) return false;
    // Backward shift: every entry after the hole, up to the next empty slot, that may sit in the hole (its home slot
    // is not cyclically between the hole and where it sits) moves into it, and its old slot becomes the hole.
    for (let j = (hole + 1) & this.mask; ; j = (j + 1) & this.mask) {
      const k = this.keys[j];
      if (k === undefined) break;
      if (((j - this.home(k)) & this.mask) >= ((j - hole) & this.mask)) {
        this.keys[hole] = k;
        this.vals[hole] = this.vals[j];
        hole = j;
      }
    }
    this.keys[hole] = undefined;
    this.vals[hole] = undefined;
    this.count--;
    return true;
  }

  private home(key: bigint): number {
    return Number(BigInt.asUintN(32, key)) & this.mask;
  }

  /** The slot holding `key`, or -1 (the table is never full, so an empty slot ends every probe). */
  private find(key: bigint): number {
    for (let i = this.home(key); ; i = (i + 1) & this.mask) {
      const k = this.keys[i];
      if (k === undefined) return -1;
      if (k === key) return i;
    }
  }

  private place(key: bigint, value: V): void {
    let i = this.home(key);
    while (this.keys[i] !== undefined) i = (i + 1) & this.mask;
    this.keys[i] = key;
    this.vals[i] = value;
  }

  private grow(): void {
    const keys = this.keys;
    const vals = this.vals;
    const c = keys.length * 2;
    this.keys = new Array<bigint | undefined>(c).fill(undefined);
    this.vals = new Array<V | undefined>(c).fill(undefined);
    this.mask = c - 1;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== undefined) this.place(keys[i]!, vals[i] as V);
  }
}
