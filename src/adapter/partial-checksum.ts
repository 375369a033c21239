// Completes the UDP/TCP/ICMPv6 checksum of a frame whose sender left it to checksum offload (CHECKSUM_PARTIAL):
// frames from a local veth peer reach the packet socket with only the pseudo-header sum in the checksum field
// (tp_status TP_STATUS_CSUMNOTREADY). A NIC on a real wire always delivers finished checksums.
//
// The one's-complement sum of the L4 segment — with the field still holding the pseudo-header sum — is exactly the
// checksum the offload engine would have written (complemented). Only plain IPv4 and IPv6 without extension headers
// are completed; anything else is left alone (and the classifier's checksum check then drops it as malformed).

const TP_STATUS_CSUMNOTREADY = 8;

export function checksumNotReady(tpStatus: number): boolean {
  return (tpStatus & TP_STATUS_CSUMNOTREADY) !== 0;
}

/** Finishes the checksum in place; false when the frame is not one it knows how to complete. */
export function completePartialChecksum(f: Uint8Array): boolean {
  if (f.length < 14) return false;
  let off = 12;
  let type = (f[off]! << 8) | f[off + 1]!;
  if (type === 0x8100) {
    off += 4;
    if (f.length < off + 2) return false;
    type = (f[off]! << 8) | f[off + 1]!;
  }
  const ip = off + 2;
  let l4: number;
  let end: number;
  let proto: number;
  if (type === 0x0800) {
    if (f.length < ip + 20) return false;
    const ihl = (f[ip]! & 0x0f) * 4;
    end = ip + ((f[ip + 2]! << 8) | f[ip + 3]!);
    proto = f[ip + 9]!;
    l4 = ip + ihl;
    if ((((f[ip + 6]! & 0x1f) << 8) | f[ip + 7]!) !== 0) return false; // a non-first fragment has no L4 header
  } else if (type === 0x86dd) {
    if (f.length < ip + 40) return false;
    end = ip + 40 + ((f[ip + 4]! << 8) | f[ip + 5]!);
    proto = f[ip + 6]!;
    l4 = ip + 40;
  } else return false;
  if (end > f.length || l4 >= end) return false;
  const field = proto === 17 ? 6 : proto === 6 ? 16 : proto === 58 && type === 0x86dd ? 2 : -1;
  if (field < 0 || l4 + field + 2 > end) return false;
  let sum = 0;
  for (let i = l4; i + 1 < end; i += 2) sum += (f[i]! << 8) | f[i + 1]!;
  if ((end - l4) & 1) sum += f[end - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  let c = ~sum & 0xffff;
  if (c === 0 && proto === 17) c = 0xffff;
  f[l4 + field] = c >> 8;
  f[l4 + field + 1] = c & 0xff;
  return true;
}
