// Minimal IPv4 / IPv6 with UDP and ICMPv6 inside, as the adapter's LAN side needs them: decode to
// classify packets and read DHCP/NDP, encode to build replies. Lengths and checksums are verified.
//
// IPv4 (RFC 791): version/IHL, TOS, total length, id, flags/fragment offset, TTL, protocol,
// header checksum, source, destination, options. IPv6 (RFC 8200): version/class/flow, payload
// length, next header, hop limit, source, destination; Hop-by-Hop, Routing and Destination
// Options headers are walked to find the upper layer, a Fragment header marks the packet as a
// fragment. Link padding after the IP length is stripped. Errors: DecodeError 'ERR_IP_DECODE'
// (structure) or 'ERR_IP_CHECKSUM' (IPv4 header, UDP or ICMPv6 checksum).

import { internetChecksum, ipv4HeaderChecksum, transportChecksum } from './checksum.js';
import { formatMac, macBytes } from './ethernet.js';
import { LAN_ERR, fail, ip4Bytes, ip6Bytes, ipText, need, u16 } from './wire.js';
import { formatIp6 } from '../../protocol/ip.js';

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;
const EXT_HOP_BY_HOP = 0;
const EXT_ROUTING = 43;
const EXT_FRAGMENT = 44;
const EXT_DEST_OPTS = 60;
/** Tunable: a longer chain of extension headers is refused (real packets carry one or two). */
const MAX_EXT_HEADERS = 8;

export const IPV4_HEADER_LEN = 20;
export const IPV6_HEADER_LEN = 40;
export const UDP_HEADER_LEN = 8;
export const ICMPV6_HEADER_LEN = 4;
/** Default TTL / hop limit of packets we originate (other than NDP, which must use 255). */
export const DEFAULT_TTL = 64;

const ERR = LAN_ERR.ip;
const ERR_SUM = LAN_ERR.checksum;

export interface Ipv4Packet {
  version: 4;
  src: string;
  dst: string;
  protocol: number;
  ttl: number;
  tos: number;
  id: number;
  dontFragment: boolean;
  /** More-fragments flag set or a non-zero offset: this is (part of) a fragmented datagram. */
  fragment: boolean;
  /** Fragment offset in bytes. */
  fragmentOffset: number;
  headerLength: number;
  /** The whole packet without link padding (a view into the input). */
  packet: Uint8Array;
  /** The bytes after the header (a view). */
  payload: Uint8Array;
}

export interface Ipv6Packet {
  version: 6;
  src: string;
  dst: string;
  /** Next Header field of the fixed header. */
  nextHeader: number;
  /** The upper-layer protocol after Hop-by-Hop, Routing, Destination Options and Fragment headers. */
  protocol: number;
  hopLimit: number;
  trafficClass: number;
  flowLabel: number;
  /** A Fragment header was present. */
  fragment: boolean;
  packet: Uint8Array;
  /** The upper-layer bytes (a view). */
  payload: Uint8Array;
}

export type IpPacket = Ipv4Packet | Ipv6Packet;

export interface UdpDatagram {
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
}

export interface Icmpv6Message {
  type: number;
  code: number;
  /** The message after type, code and checksum (a view). */
  body: Uint8Array;
}

export function decodeIpv4(buf: Uint8Array): Ipv4Packet {
  need(buf, 0, IPV4_HEADER_LEN, ERR, 'IPv4 header');
  if (buf[0]! >> 4 !== 4) fail(ERR, `IP version ${buf[0]! >> 4} in an IPv4 packet`);
  const ihl = (buf[0]! & 0x0f) * 4;
  if (ihl < IPV4_HEADER_LEN) fail(ERR, `IPv4 header length ${ihl}`);
  const total = u16(buf, 2);
  if (total < ihl) fail(ERR, `IPv4 total length ${total} < header length ${ihl}`);
  need(buf, 0, total, ERR, 'IPv4 packet');
  const packet = buf.subarray(0, total);
  if (internetChecksum(packet.subarray(0, ihl)) !== 0) fail(ERR_SUM, 'bad IPv4 header checksum');
  const frag = u16(buf, 6);
  const fragmentOffset = (frag & 0x1fff) * 8;
  return {
    version: 4,
    src: ipText(buf, 12, 4),
    dst: ipText(buf, 16, 4),
    protocol: buf[9]!,
    ttl: buf[8]!,
    tos: buf[1]!,
    id: u16(buf, 4),
    dontFragment: (frag & 0x4000) !== 0,
    fragment: (frag & 0x2000) !== 0 || fragmentOffset !== 0,
    fragmentOffset,
    headerLength: ihl,
    packet,
    payload: packet.subarray(ihl),
  };
}

export function decodeIpv6(buf: Uint8Array): Ipv6Packet {
  need(buf, 0, IPV6_HEADER_LEN, ERR, 'IPv6 header');
  if (buf[0]! >> 4 !== 6) fail(ERR, `IP version ${buf[0]! >> 4} in an IPv6 packet`);
  const payloadLength = u16(buf, 4);
  need(buf, IPV6_HEADER_LEN, payloadLength, ERR, 'IPv6 payload');
  const packet = buf.subarray(0, IPV6_HEADER_LEN + payloadLength);
  const nextHeader = buf[6]!;
  let protocol = nextHeader;
  let p = IPV6_HEADER_LEN;
  let fragment = false;
  for (let n = 0; ; n++) {
    if (protocol !== EXT_HOP_BY_HOP && protocol !== EXT_ROUTING && protocol !== EXT_DEST_OPTS && protocol !== EXT_FRAGMENT) break;
    if (n === MAX_EXT_HEADERS) fail(ERR, `more than ${MAX_EXT_HEADERS} extension headers`);
    if (protocol === EXT_HOP_BY_HOP && n !== 0) fail(ERR, 'Hop-by-Hop Options header not first');
    need(packet, p, 8, ERR, 'IPv6 extension header');
    const len = protocol === EXT_FRAGMENT ? 8 : (packet[p + 1]! + 1) * 8;
    need(packet, p, len, ERR, 'IPv6 extension header');
    if (protocol === EXT_FRAGMENT) fragment = true;
    protocol = packet[p]!;
    p += len;
  }
  return {
    version: 6,
    src: ipText(buf, 8, 16),
    dst: ipText(buf, 24, 16),
    nextHeader,
    protocol,
    hopLimit: buf[7]!,
    trafficClass: ((buf[0]! & 0x0f) << 4) | (buf[1]! >> 4),
    flowLabel: ((buf[1]! & 0x0f) << 16) | u16(buf, 2),
    fragment,
    packet,
    payload: packet.subarray(p),
  };
}

/** Decodes by the version nibble (the caller has already matched the EtherType). */
export function decodeIp(buf: Uint8Array): IpPacket {
  need(buf, 0, 1, ERR, 'IP header');
  const v = buf[0]! >> 4;
  if (v === 4) return decodeIpv4(buf);
  if (v === 6) return decodeIpv6(buf);
  return fail(ERR, `IP version ${v}`);
}

function addressBytes(ip: IpPacket): { src: Uint8Array; dst: Uint8Array } {
  return ip.version === 4
    ? { src: ip.packet.subarray(12, 16), dst: ip.packet.subarray(16, 20) }
    : { src: ip.packet.subarray(8, 24), dst: ip.packet.subarray(24, 40) };
}

/** The UDP datagram inside `ip`; verifies its length and checksum (optional over IPv4 only). */
export function decodeUdp(ip: IpPacket): UdpDatagram {
  if (ip.protocol !== PROTO_UDP) fail(ERR, `protocol ${ip.protocol} is not UDP`);
  if (ip.fragment) fail(ERR, 'fragmented UDP datagram');
  const seg = ip.payload;
  need(seg, 0, UDP_HEADER_LEN, ERR, 'UDP header');
  const length = u16(seg, 4);
  if (length < UDP_HEADER_LEN) fail(ERR, `UDP length ${length}`);
  need(seg, 0, length, ERR, 'UDP datagram');
  const datagram = seg.subarray(0, length);
  const sum = u16(seg, 6);
  if (sum === 0 && ip.version === 6) fail(ERR_SUM, 'zero UDP checksum over IPv6');
  if (sum !== 0) {
    const { src, dst } = addressBytes(ip);
    if (transportChecksum(src, dst, PROTO_UDP, datagram) !== 0) fail(ERR_SUM, 'bad UDP checksum');
  }
  return { srcPort: u16(seg, 0), dstPort: u16(seg, 2), payload: datagram.subarray(UDP_HEADER_LEN) };
}

/** The ICMPv6 message inside `ip`; verifies its checksum. */
export function decodeIcmpv6(ip: Ipv6Packet): Icmpv6Message {
  if (ip.protocol !== PROTO_ICMPV6) fail(ERR, `next header ${ip.protocol} is not ICMPv6`);
  if (ip.fragment) fail(ERR, 'fragmented ICMPv6 message');
  need(ip.payload, 0, ICMPV6_HEADER_LEN, ERR, 'ICMPv6 header');
  const { src, dst } = addressBytes(ip);
  if (transportChecksum(src, dst, PROTO_ICMPV6, ip.payload) !== 0) fail(ERR_SUM, 'bad ICMPv6 checksum');
  return { type: ip.payload[0]!, code: ip.payload[1]!, body: ip.payload.subarray(ICMPV6_HEADER_LEN) };
}

/** TCP or UDP ports without verifying anything else (classification of forwarded packets); null when unreadable. */
export function peekPorts(ip: IpPacket): { srcPort: number; dstPort: number } | null {
  if ((ip.protocol !== PROTO_TCP && ip.protocol !== PROTO_UDP) || ip.payload.length < 4) return null;
  if (ip.version === 4 ? ip.fragmentOffset !== 0 : ip.fragment) return null;
  return { srcPort: u16(ip.payload, 0), dstPort: u16(ip.payload, 2) };
}

function byte(name: string, v: number, max = 0xff): number {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`bad ${name} ${v}`);
  return v;
}

export interface Ipv4Spec {
  src: string;
  dst: string;
  protocol: number;
  payload: Uint8Array;
  /** @default 64 */
  ttl?: number;
  /** @default 0 */
  tos?: number;
  /** @default 0 */
  id?: number;
  /** @default true */
  dontFragment?: boolean;
}

export function encodeIpv4(s: Ipv4Spec): Buffer {
  const total = IPV4_HEADER_LEN + s.payload.length;
  if (total > 0xffff) throw new RangeError(`IPv4 packet of ${total} bytes`);
  const out = Buffer.alloc(total);
  out[0] = 0x45;
  out[1] = byte('tos', s.tos ?? 0);
  out.writeUInt16BE(total, 2);
  out.writeUInt16BE(byte('id', s.id ?? 0, 0xffff), 4);
  out.writeUInt16BE(s.dontFragment === false ? 0 : 0x4000, 6);
  out[8] = byte('ttl', s.ttl ?? DEFAULT_TTL);
  out[9] = byte('protocol', s.protocol);
  out.set(ip4Bytes(s.src), 12);
  out.set(ip4Bytes(s.dst), 16);
  out.writeUInt16BE(ipv4HeaderChecksum(out.subarray(0, IPV4_HEADER_LEN)), 10);
  out.set(s.payload, IPV4_HEADER_LEN);
  return out;
}

export interface Ipv6Spec {
  src: string;
  dst: string;
  nextHeader: number;
  payload: Uint8Array;
  /** @default 64 */
  hopLimit?: number;
  /** @default 0 */
  trafficClass?: number;
  /** @default 0 */
  flowLabel?: number;
}

export function encodeIpv6(s: Ipv6Spec): Buffer {
  if (s.payload.length > 0xffff) throw new RangeError(`IPv6 payload of ${s.payload.length} bytes (no jumbograms)`);
  const out = Buffer.alloc(IPV6_HEADER_LEN + s.payload.length);
  const tc = byte('traffic class', s.trafficClass ?? 0);
  const flow = byte('flow label', s.flowLabel ?? 0, 0xfffff);
  out.writeUInt32BE(((6 << 28) | (tc << 20) | flow) >>> 0, 0);
  out.writeUInt16BE(s.payload.length, 4);
  out[6] = byte('next header', s.nextHeader);
  out[7] = byte('hop limit', s.hopLimit ?? DEFAULT_TTL);
  out.set(ip6Bytes(s.src), 8);
  out.set(ip6Bytes(s.dst), 24);
  out.set(s.payload, IPV6_HEADER_LEN);
  return out;
}

export interface UdpSpec {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
  /** TTL or hop limit. @default 64 */
  ttl?: number;
}

/** A whole IPv4 or IPv6 packet (family from `src`) carrying one UDP datagram with its checksum. */
export function buildUdp(s: UdpSpec): Buffer {
  const v6 = s.src.includes(':');
  const srcB = v6 ? ip6Bytes(s.src) : ip4Bytes(s.src);
  const dstB = v6 ? ip6Bytes(s.dst) : ip4Bytes(s.dst);
  const seg = Buffer.alloc(UDP_HEADER_LEN + s.payload.length);
  if (seg.length > 0xffff) throw new RangeError(`UDP datagram of ${seg.length} bytes`);
  seg.writeUInt16BE(byte('source port', s.srcPort, 0xffff), 0);
  seg.writeUInt16BE(byte('destination port', s.dstPort, 0xffff), 2);
  seg.writeUInt16BE(seg.length, 4);
  seg.set(s.payload, UDP_HEADER_LEN);
  // A computed 0 is sent as 0xffff: 0 means "no checksum" (RFC 768), which IPv6 forbids.
  seg.writeUInt16BE(transportChecksum(srcB, dstB, PROTO_UDP, seg) || 0xffff, 6);
  return v6
    ? encodeIpv6({ src: s.src, dst: s.dst, nextHeader: PROTO_UDP, payload: seg, hopLimit: s.ttl ?? DEFAULT_TTL })
    : encodeIpv4({ src: s.src, dst: s.dst, protocol: PROTO_UDP, payload: seg, ttl: s.ttl ?? DEFAULT_TTL });
}

export interface Icmpv6Spec {
  src: string;
  dst: string;
  type: number;
  code?: number;
  /** The message after type, code and checksum. */
  body: Uint8Array;
  /** @default 255 (what Neighbor Discovery requires) */
  hopLimit?: number;
}

/** A whole IPv6 packet carrying one ICMPv6 message with its checksum. */
export function buildIcmpv6(s: Icmpv6Spec): Buffer {
  const msg = Buffer.alloc(ICMPV6_HEADER_LEN + s.body.length);
  msg[0] = byte('ICMPv6 type', s.type);
  msg[1] = byte('ICMPv6 code', s.code ?? 0);
  msg.set(s.body, ICMPV6_HEADER_LEN);
  msg.writeUInt16BE(transportChecksum(ip6Bytes(s.src), ip6Bytes(s.dst), PROTO_ICMPV6, msg), 2);
  return encodeIpv6({ src: s.src, dst: s.dst, nextHeader: PROTO_ICMPV6, payload: msg, hopLimit: s.hopLimit ?? 255 });
}

// ───────────────────────────── IPv6 address helpers ─────────────────────────────

/** fe80::/64 address from a MAC by modified EUI-64 (RFC 4291 appendix A). */
export function linkLocalFromMac(mac: string): string {
  const m = macBytes(mac);
  const b = Buffer.alloc(16);
  b[0] = 0xfe;
  b[1] = 0x80;
  b.set([m[0]! ^ 0x02, m[1]!, m[2]!, 0xff, 0xfe, m[3]!, m[4]!, m[5]!], 8);
  return formatIp6(b);
}

/** The solicited-node multicast address ff02::1:ffXX:XXXX of an IPv6 address (RFC 4291 §2.7.1). */
export function solicitedNodeAddress(address: string): string {
  const a = ip6Bytes(address);
  const b = Buffer.from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, a[13]!, a[14]!, a[15]!]);
  return formatIp6(b);
}

/** The Ethernet address an IPv6 multicast group maps to: 33:33 + its last 32 bits (RFC 2464 §7). */
export function multicastMac(address: string): string {
  const a = ip6Bytes(address);
  return formatMac(Buffer.from([0x33, 0x33, a[12]!, a[13]!, a[14]!, a[15]!]));
}

export function isMulticast6(address: string): boolean {
  return /^ff[0-9a-f]{2}:/i.test(address);
}

export function isLinkLocal6(address: string): boolean {
  return /^fe[89ab][0-9a-f]:/i.test(address);
}

export const UNSPECIFIED6 = '::';
export const ALL_NODES6 = 'ff02::1';
export const ALL_ROUTERS6 = 'ff02::2';
