// The certificate route selection hands out for each node (its newest one that was valid when read from the store),
// kept in one byte slab instead of a Buffer and a record per node.
//
// Why: route selection puts each end's certificate into the other end's Route Direction, and a first contact reads
// them from the store and keeps them for the next selection. As a Buffer per certificate (with its ArrayBuffer) in
// a list of records, each node first seen left ~0.25 kB of small objects, which the young-generation GC copies twice
// on their way to the old generation (PERFORMANCE.md, "Thirteenth round"). Here the bytes are copied into a slab that
// is used as a ring (oldest entries overwritten first), and an entry is a row of number columns; a node maps to its
// row in one Map of small integers. What `get` hands out is a copy, so an entry overwritten later never changes a
// certificate already given out.
//
// Only the newest certificate valid at the read is kept: older ones expire before it or were issued before it, and a
// node's certificates change only with the store's certificate revision, on which the caller clears the cache. When
// the kept one expires, `get` misses and the caller reads the store again (an older one may still be valid).

/** Bytes of slab at first; it doubles up to the cache's bound before it starts overwriting. */
const MIN_SLAB = 64 * 1024;

export class CertCache {
  /** Node → its row. */
  private readonly rows = new Map<number, number>();
  private readonly rowNode: Uint32Array;
  private readonly rowOff: Int32Array;
  private readonly rowLen: Int32Array;
  private readonly rowNotAfter: Float64Array;
  /** Oldest row, and rows in use (a ring of `maxNodes`). */
  private head = 0;
  private count = 0;
  private slab: Buffer;
  /** Where the next certificate's bytes go. */
  private write = 0;

  /** `maxNodes` entries at most, in at most `maxBytes` of slab (the oldest go first when either is reached). */
  constructor(
    private readonly maxNodes: number,
    private readonly maxBytes: number,
  ) {
    if (!(Number.isInteger(maxNodes) && maxNodes >= 1 && Number.isInteger(maxBytes) && maxBytes >= 1)) throw new RangeError('a certificate cache needs room for one entry');
    this.rowNode = new Uint32Array(maxNodes);
    this.rowOff = new Int32Array(maxNodes);
    this.rowLen = new Int32Array(maxNodes);
    this.rowNotAfter = new Float64Array(maxNodes);
    this.slab = Buffer.alloc(Math.min(MIN_SLAB, maxBytes));
  }

  /** Entries held. */
  get size(): number {
    return this.count;
  }

  /** A copy of the node's kept certificate if it is still valid at `now`, else null (not kept, or expired). */
  get(nodeId: number, now: number): Buffer | null {
    const row = this.rows.get(nodeId);
    if (row === undefined || !(this.rowNotAfter[row]! > now)) return null;
    const off = this.rowOff[row]!;
    return Buffer.from(this.slab.subarray(off, off + this.rowLen[row]!));
  }

  /** Keeps a copy of `der` as the node's certificate, valid until `notAfter` (replacing what was kept for it). */
  put(nodeId: number, der: Uint8Array, notAfter: number): void {
    if (nodeId >>> 0 !== nodeId) throw new RangeError(`node ids are 32-bit unsigned integers (${nodeId})`);
    this.rows.delete(nodeId); // a row it had stays in the ring until it comes round (see evictHead)
    const len = der.length;
    if (len > this.maxBytes) return; // never fits: not kept
    if (this.count === this.maxNodes) this.evictHead();
    this.makeRoom(len);
    const row = (this.head + this.count) % this.maxNodes;
    this.slab.set(der, this.write);
    this.rowNode[row] = nodeId;
    this.rowOff[row] = this.write;
    this.rowLen[row] = len;
    this.rowNotAfter[row] = notAfter;
    this.write += len;
    this.count++;
    this.rows.set(nodeId, row);
  }

  /** Forgets everything (the slab is kept for reuse). */
  clear(): void {
    this.rows.clear();
    this.head = 0;
    this.count = 0;
    this.write = 0;
  }

  /**
   * Frees `len` bytes at the write position. Live bytes, oldest first, are those at or after the write position
   * (written on the ring's previous lap) and then those before it (this lap): this lap's writes evicted whatever they
   * overlapped. So a write evicts from the oldest while the oldest lies ahead of it within `len`; a write that does
   * not fit before the slab's end grows the slab (up to maxBytes) or starts the next lap at 0, evicting the rest of
   * the previous lap first.
   */
  private makeRoom(len: number): void {
    if (this.write + len > this.slab.length && this.slab.length < this.maxBytes) {
      let size = this.slab.length;
      while (size < this.write + len && size < this.maxBytes) size = Math.min(size * 2, this.maxBytes);
      const bigger = Buffer.alloc(size);
      this.slab.copy(bigger);
      this.slab = bigger;
    }
    if (this.write + len > this.slab.length) {
      while (this.count > 0 && this.rowOff[this.head]! >= this.write) this.evictHead();
      this.write = 0;
    }
    while (this.count > 0 && this.rowOff[this.head]! >= this.write && this.rowOff[this.head]! < this.write + len) this.evictHead();
  }

  private evictHead(): void {
    const row = this.head;
    const node = this.rowNode[row]!;
    if (this.rows.get(node) === row) this.rows.delete(node); // not if the node has a newer row
    this.head = (this.head + 1) % this.maxNodes;
    this.count--;
    if (this.count === 0) this.write = 0;
  }
}
