// Unsigned 64-bit big-endian integers in Buffers without garbage: Buffer's writeBigUInt64BE/readBigUInt64BE split the
// bigint with bigint arithmetic (a few short-lived bigints per call, ~200 B of heap), which on the NMS's route
// selection was ~1 kB of every selection's garbage (header seq and id, AEAD nonces, path ids). These go through one
// 8-byte scratch array instead: the only bigint made is the one read.

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

/** Writes `v` (the caller checked 0 ≤ v < 2^64; anything else is taken mod 2^64) at `offset`, big-endian. */
export function writeU64BE(buf: Uint8Array, v: bigint, offset: number): void {
  checkOffset(buf, offset);
  scratch[0] = v;
  for (let i = 0, j = MSB; i < 8; i++, j += STEP) buf[offset + i] = bytes[j]!;
}

/** The big-endian u64 at `offset`. */
export function readU64BE(buf: Uint8Array, offset: number): bigint {
  checkOffset(buf, offset);
  for (let i = 0, j = MSB; i < 8; i++, j += STEP) bytes[j] = buf[offset + i]!;
  return scratch[0]!;
}
