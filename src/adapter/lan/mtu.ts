// What a router does at a link narrower than a packet, for the adapter's LAN ⇄ overlay hop. The overlay carries
// packets of at most the LAN MTU the adapter hands out (DHCPv4 option 26, RA MTU), but a device may ignore it
// (Windows ignores option 26; a static configuration; `accept_ra_mtu=0`) and send 1500-byte packets:
//
//   TCP SYN / SYN-ACK (either way) ── MSS option above mtu − headers ──► lowered, checksum redone (clampMss)
//   packet longer than mtu (fitMtu) ─┬─ IPv4 with DF ──► ICMP "fragmentation needed" with the MTU, to its source
//                                    ├─ IPv4 without DF ──► fragments of at most mtu bytes (RFC 791)
//                                    └─ IPv6 ──► ICMPv6 "packet too big" with the MTU, to its source (RFC 4443)
//
// No error is sent about an ICMP error, a non-first fragment, or to a multicast/unspecified source (RFC 1812 §4.3.2.7,
// RFC 4443 §2.4(e)). Pure: bytes in, bytes out.

import { internetChecksum, ipv4HeaderChecksum, transportChecksum } from './checksum.js';
import { buildIcmpv6, encodeIpv4, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP } from './ip.js';
import { ipText } from './wire.js';

const TCP_SYN = 0x02;
const TCP_OPT_MSS = 2;
/** IPv4 ICMP errors quote at most this much of the packet: the whole error fits 576 bytes (RFC 1812 §4.3.2.3). */
const ICMP4_QUOTE = 576 - 20 - 8;
/** ICMPv6 errors fit the IPv6 minimum MTU (RFC 4443 §2.4(c)). */
const ICMP6_QUOTE = 1280 - 40 - 8;

/** Where a packet that does not fit goes. */
export type MtuVerdict =
  | { kind: 'fits' }
  | { kind: 'too-big'; reply: Buffer }
  | { kind: 'fragments'; packets: Buffer[] }
  | { kind: 'drop'; reason: 'no-error-allowed' | 'malformed' };

/**
 * Lowers the MSS option of a TCP SYN (with or without ACK) in place to what `mtu` carries (mtu − IP header − 20)
 * and redoes the TCP checksum. Returns true when it changed the packet. Leaves alone anything it does not fully
 * understand (IPv6 extension headers, fragments, truncated options, a bad checksum).
 */
export function clampMss(p: Buffer, mtu: number): boolean {
  const v = p.length > 0 ? p[0]! >> 4 : 0;
  let ihl: number;
  let end: number;
  if (v === 4) {
    if (p.length < 20) return false;
    ihl = (p[0]! & 15) * 4;
    end = p.readUInt16BE(2);
    if (p[9] !== PROTO_TCP || (p.readUInt16BE(6) & 0x1fff) !== 0) return false;
  } else if (v === 6) {
    if (p.length < 40) return false;
    ihl = 40;
    end = 40 + p.readUInt16BE(4);
    if (p[6] !== PROTO_TCP) return false;
  } else return false;
  if (ihl < 20 || end > p.length || end < ihl + 20) return false;
  const tcp = ihl;
  if ((p[tcp + 13]! & TCP_SYN) === 0) return false;
  const optEnd = tcp + (p[tcp + 12]! >> 4) * 4;
  if (optEnd > end || optEnd < tcp + 20) return false;
  const limit = mtu - ihl - 20;
  for (let o = tcp + 20; o < optEnd; ) {
    const kind = p[o]!;
    if (kind === 0) break;
    if (kind === 1) {
      o++;
      continue;
    }
    if (o + 1 >= optEnd) return false;
    const len = p[o + 1]!;
    if (len < 2 || o + len > optEnd) return false;
    if (kind === TCP_OPT_MSS && len === 4) {
      if (p.readUInt16BE(o + 2) <= limit) return false;
      const src = v === 4 ? p.subarray(12, 16) : p.subarray(8, 24);
      const dst = v === 4 ? p.subarray(16, 20) : p.subarray(24, 40);
      const seg = p.subarray(tcp, end);
      if (!checksumOk(src, dst, seg)) return false;
      p.writeUInt16BE(limit, o + 2);
      p.writeUInt16BE(0, tcp + 16);
      p.writeUInt16BE(transportChecksum(src, dst, PROTO_TCP, seg), tcp + 16);
      return true;
    }
    o += len;
  }
  return false;
}

/** A segment carrying its checksum verifies as 0 (or 0xffff: the two zeros of one's complement). */
function checksumOk(src: Uint8Array, dst: Uint8Array, seg: Uint8Array): boolean {
  const c = transportChecksum(src, dst, PROTO_TCP, seg);
  return c === 0 || c === 0xffff;
}

/**
 * What to do with IP packet `p` on a hop of `mtu` bytes. `errorSource` is the address the ICMP error comes from
 * (the router's; the family of `p`); its destination is p's source.
 */
export function fitMtu(p: Buffer, mtu: number, errorSource: string): MtuVerdict {
  if (p.length <= mtu) return { kind: 'fits' };
  const v = p[0]! >> 4;
  if (v === 4) {
    if (p.length < 20) return { kind: 'drop', reason: 'malformed' };
    const ihl = (p[0]! & 15) * 4;
    const total = p.readUInt16BE(2);
    if (ihl < 20 || total > p.length || total < ihl) return { kind: 'drop', reason: 'malformed' };
    if (total <= mtu) return { kind: 'fits' };
    const frag = p.readUInt16BE(6);
    if ((frag & 0x4000) === 0) return { kind: 'fragments', packets: fragment4(p.subarray(0, total), ihl, mtu) };
    if ((frag & 0x1fff) !== 0 || isIcmpError4(p, ihl) || !unicast4(p)) return { kind: 'drop', reason: 'no-error-allowed' };
    const body = Buffer.alloc(8 + Math.min(total, ICMP4_QUOTE));
    body[0] = 3; // destination unreachable
    body[1] = 4; // fragmentation needed and DF set
    body.writeUInt16BE(mtu, 6); // next-hop MTU (RFC 1191)
    p.copy(body, 8, 0, body.length - 8);
    body.writeUInt16BE(internetChecksum(body), 2);
    return { kind: 'too-big', reply: encodeIpv4({ src: errorSource, dst: ipText(p, 12, 4), protocol: PROTO_ICMP, payload: body, dontFragment: false }) };
  }
  if (v === 6) {
    if (p.length < 40) return { kind: 'drop', reason: 'malformed' };
    const total = 40 + p.readUInt16BE(4);
    if (total > p.length) return { kind: 'drop', reason: 'malformed' };
    if (total <= mtu) return { kind: 'fits' };
    const src = p.subarray(8, 24);
    if (src[0] === 0xff || src.every((b) => b === 0) || isIcmpError6(p)) return { kind: 'drop', reason: 'no-error-allowed' };
    const body = Buffer.alloc(4 + Math.min(total, ICMP6_QUOTE));
    body.writeUInt32BE(mtu, 0);
    p.copy(body, 4, 0, body.length - 4);
    return { kind: 'too-big', reply: buildIcmpv6({ src: errorSource, dst: ipText(p, 8, 16), type: 2, code: 0, body, hopLimit: 64 }) };
  }
  return { kind: 'drop', reason: 'malformed' };
}

/** Splits an IPv4 packet (no DF) into fragments of at most `mtu` bytes; offsets add to the packet's own. */
export function fragment4(p: Buffer, ihl: number, mtu: number): Buffer[] {
  const per = Math.floor((mtu - ihl) / 8) * 8;
  if (per <= 0) return [];
  const payload = p.subarray(ihl);
  const flags = p.readUInt16BE(6);
  const baseOffset = flags & 0x1fff;
  const moreAfter = (flags & 0x2000) !== 0;
  const out: Buffer[] = [];
  for (let at = 0; at < payload.length; at += per) {
    const chunk = payload.subarray(at, Math.min(at + per, payload.length));
    const last = at + chunk.length >= payload.length;
    const f = Buffer.alloc(ihl + chunk.length);
    p.copy(f, 0, 0, ihl);
    f.writeUInt16BE(f.length, 2);
    f.writeUInt16BE((last && !moreAfter ? 0 : 0x2000) | (baseOffset + at / 8), 6);
    f.writeUInt16BE(0, 10);
    f.writeUInt16BE(ipv4HeaderChecksum(f.subarray(0, ihl)), 10);
    chunk.copy(f, ihl);
    out.push(f);
  }
  return out;
}

function isIcmpError4(p: Buffer, ihl: number): boolean {
  if (p[9] !== PROTO_ICMP || p.length < ihl + 1) return false;
  const t = p[ihl]!;
  return t === 3 || t === 4 || t === 5 || t === 11 || t === 12;
}

function isIcmpError6(p: Buffer): boolean {
  return p[6] === PROTO_ICMPV6 && p.length > 40 && p[40]! < 128;
}

function unicast4(p: Buffer): boolean {
  const a = p[12]!;
  return a !== 0 && a < 224 && !(p[12] === 255 && p[13] === 255 && p[14] === 255 && p[15] === 255);
}
