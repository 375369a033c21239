// Internet checksum (RFC 1071), the IPv4 header checksum, and the pseudo-headers that the UDP and
// ICMPv6 checksums cover (RFC 768 over IPv4, RFC 8200 §8.1 over IPv6). Pure functions over bytes.
//
// To compute a checksum, zero its field and call the function; to verify one, call it over the data
// with the field in place: a correct packet gives 0.

export const IPV4_PSEUDO_LEN = 12;
export const IPV6_PSEUDO_LEN = 40;

/** One's-complement sum of 16-bit big-endian words; an odd last byte is padded with zero. */
function addWords(sum: number, data: Uint8Array, start: number, end: number): number {
  const even = start + ((end - start) & ~1);
  for (let i = start; i < even; i += 2) sum += (data[i]! << 8) | data[i + 1]!;
  if (even < end) sum += data[even]! << 8;
  // Fold often enough that the sum stays a small integer (at most ~2^31 for 64 KiB of data).
  return (sum & 0xffff) + (sum >>> 16);
}

function finish(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * The Internet checksum over the concatenation of `parts`. Every part but the last must have an
 * even length (pseudo-headers and headers always do); otherwise the words would straddle parts.
 */
export function internetChecksum(...parts: Uint8Array[]): number {
  let sum = 0;
  parts.forEach((p, i) => {
    if (i < parts.length - 1 && p.length % 2 !== 0) throw new RangeError('only the last checksummed part may have an odd length');
    sum = addWords(sum, p, 0, p.length);
  });
  return finish(sum);
}

/** The checksum an IPv4 header must carry: bytes 10–11 (the checksum field) are skipped. */
export function ipv4HeaderChecksum(header: Uint8Array): number {
  if (header.length < 20) throw new RangeError(`IPv4 header of ${header.length} bytes`);
  return finish(addWords(addWords(0, header, 0, 10), header, 12, header.length));
}

/** The 12-byte IPv4 pseudo-header: source, destination, zero, protocol, transport length. */
export function pseudoHeader4(src: Uint8Array, dst: Uint8Array, protocol: number, length: number): Uint8Array {
  if (src.length !== 4 || dst.length !== 4) throw new RangeError('IPv4 pseudo-header needs 4-byte addresses');
  if (length > 0xffff) throw new RangeError(`transport length ${length} does not fit IPv4`);
  const out = new Uint8Array(IPV4_PSEUDO_LEN);
  out.set(src, 0);
  out.set(dst, 4);
  out[9] = protocol;
  out[10] = length >>> 8;
  out[11] = length & 0xff;
  return out;
}

/** The 40-byte IPv6 pseudo-header: source, destination, 32-bit upper-layer length, zeros, next header. */
export function pseudoHeader6(src: Uint8Array, dst: Uint8Array, nextHeader: number, length: number): Uint8Array {
  if (src.length !== 16 || dst.length !== 16) throw new RangeError('IPv6 pseudo-header needs 16-byte addresses');
  const out = new Uint8Array(IPV6_PSEUDO_LEN);
  out.set(src, 0);
  out.set(dst, 16);
  new DataView(out.buffer).setUint32(32, length);
  out[39] = nextHeader;
  return out;
}

/**
 * Checksum of a UDP datagram or ICMPv6 message with its pseudo-header; the family follows the
 * address length (4 or 16 bytes).
 */
export function transportChecksum(src: Uint8Array, dst: Uint8Array, protocol: number, segment: Uint8Array): number {
  const v4 = src.length === 4 && dst.length === 4;
  if (!v4 && (src.length !== 16 || dst.length !== 16)) throw new RangeError('addresses must both be 4 or both 16 bytes');
  if (v4 && segment.length > 0xffff) throw new RangeError(`transport length ${segment.length} does not fit IPv4`);
  // The pseudo-header's words, summed without building it: both layouts add up to
  // src + dst + length (as 16-bit words) + protocol.
  let sum = addWords(addWords(0, src, 0, src.length), dst, 0, dst.length);
  sum += (segment.length >>> 16) + (segment.length & 0xffff) + protocol;
  return finish(addWords(sum, segment, 0, segment.length));
}
