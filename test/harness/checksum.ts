// RFC 1071 Internet checksum arithmetic in plain JavaScript, independent of the addon, for tests that check what
// the C code computed (offload segmentation, the adapter's fast path, the engine's USO path).

/** Adds `b` as big-endian 16-bit words to `s` (an odd last byte is padded with zero). */
export function sum16(b: Uint8Array, s = 0): number {
  for (let i = 0; i + 1 < b.length; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (b.length % 2) s += b[b.length - 1]! << 8;
  return s;
}

/** Folds the carries of a sum into 16 bits. */
export function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}
