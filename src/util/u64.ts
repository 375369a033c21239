// Unsigned 64-bit big-endian integers in Buffers without garbage: Buffer's writeBigUInt64BE/readBigUInt64BE split the
// bigint with bigint arithmetic (a few short-lived bigints per call, ~200 B of heap), which on the NMS's route
// selection was ~1 kB of every selection's garbage (header seq and id, AEAD nonces, path ids). These go through one
// 8-byte scratch array instead: the only bigint made is the one read.

const U64_MAX = (1n << 64n) - 1n;
const scratch = new BigUint64Array(1);
const bytes = new Uint8Array(scratch.buffer);
/** Index in `bytes` of the most significant byte (the platform's byte order). */
const MSB = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 7 : 0;
const STEP = MSB === 7 ? -1 : 1;

function checkOffset(buf: Uint8Array, offset: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + 8 > buf.length) {
    throw new RangeError(`8 bytes do not fit at offset ${offset} of a ${buf.length}-byte buffer`);
  }
}

/** Writes `v` at `offset`, big-endian; a RangeError (nothing written) for a value outside 0..2^64-1, as Buffer's own. */
export function writeU64BE(buf: Uint8Array, v: bigint, offset: number): void {
  checkOffset(buf, offset);
  // A typed array would take the value mod 2^64: a header's seq or id must not wrap silently.
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) throw new RangeError(`not a u64: ${String(v)}`);
  scratch[0] = v;
  for (let i = 0, j = MSB; i < 8; i++, j += STEP) buf[offset + i] = bytes[j]!;
}

/** The big-endian u64 at `offset`. */
export function readU64BE(buf: Uint8Array, offset: number): bigint {
  checkOffset(buf, offset);
  for (let i = 0, j = MSB; i < 8; i++, j += STEP) bytes[j] = buf[offset + i]!;
  return scratch[0]!;
}
