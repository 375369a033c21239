// ICMPv6 Neighbor Discovery (RFC 4861) messages the adapter reads and writes: Router Solicitation,
// Router Advertisement, Neighbor Solicitation, Neighbor Advertisement, with the options source/target
// link-layer address, prefix information, MTU, RDNSS (25) and DNSSL (31) (RFC 8106).
//
//  RS  133: reserved (4)                                                       | options
//  RA  134: cur hop limit (1) | M O H Prf … (1) | router lifetime (2) | reachable (4) | retrans (4) | options
//  NS  135: reserved (4) | target (16)                                         | options
//  NA  136: R S O reserved (4) | target (16)                                   | options
//  option:  type (1) | length in units of 8 bytes (1, never 0) | value
//
// `decodeNdp` applies RFC 4861's validity checks (§6.1.1, §6.1.2, §7.1.1, §7.1.2) and throws
// DecodeError('ERR_NDP_DECODE') for an invalid message: hop limit not 255, code not 0, too short,
// an option of length 0 or running past the end, a multicast target, an RA from a non-link-local
// source, a link-layer address option with the unspecified source, a DAD probe not sent to the
// solicited-node group, a solicited NA to a multicast destination. A bad checksum throws
// 'ERR_IP_CHECKSUM' (from ip.ts). Unknown options are skipped, as the RFC requires.

import { formatMac, macBytes } from './ethernet.js';
import { decodeIcmpv6, isLinkLocal6, isMulticast6, solicitedNodeAddress, UNSPECIFIED6 } from './ip.js';
import type { Ipv6Packet } from './ip.js';
import { LAN_ERR, decodeNameList, encodeNameList, fail, ip6Bytes, ipText, need, u16, u32, u32Bytes as u32b } from './wire.js';

export const ICMP6_RS = 133;
export const ICMP6_RA = 134;
export const ICMP6_NS = 135;
export const ICMP6_NA = 136;
export const ND_HOP_LIMIT = 255;

export const NdOpt = {
  SOURCE_LL: 1,
  TARGET_LL: 2,
  PREFIX_INFO: 3,
  MTU: 5,
  RDNSS: 25,
  DNSSL: 31,
} as const;

const ERR = LAN_ERR.ndp;

export interface PrefixInfo {
  prefix: string;
  prefixLength: number;
  /** L: the prefix is on-link. */
  onLink: boolean;
  /** A: hosts may form addresses from it (SLAAC). */
  autonomous: boolean;
  validLifetime: number;
  preferredLifetime: number;
}

export interface Rdnss {
  lifetime: number;
  servers: string[];
}

export interface Dnssl {
  lifetime: number;
  domains: string[];
}

export interface NdOptions {
  sourceLinkAddr?: string;
  targetLinkAddr?: string;
  mtu?: number;
  prefixes: PrefixInfo[];
  rdnss: Rdnss[];
  dnssl: Dnssl[];
}

export interface RouterSolicitation {
  type: 'rs';
  options: NdOptions;
}

export interface RouterAdvertisement {
  type: 'ra';
  curHopLimit: number;
  /** M: addresses come from stateful DHCPv6. */
  managed: boolean;
  /** O: other configuration (DNS) comes from DHCPv6. */
  other: boolean;
  /** Seconds; 0 = not a default router. */
  routerLifetime: number;
  /** Milliseconds. */
  reachableTime: number;
  retransTimer: number;
  options: NdOptions;
}

export interface NeighborSolicitation {
  type: 'ns';
  target: string;
  options: NdOptions;
}

export interface NeighborAdvertisement {
  type: 'na';
  router: boolean;
  solicited: boolean;
  override: boolean;
  target: string;
  options: NdOptions;
}

export type NdMessage = RouterSolicitation | RouterAdvertisement | NeighborSolicitation | NeighborAdvertisement;

/** Options with nothing set (the lists empty). */
export const emptyNdOptions = (): NdOptions => ({ prefixes: [], rdnss: [], dnssl: [] });

function readOptions(area: Uint8Array): NdOptions {
  const o = emptyNdOptions();
  let p = 0;
  while (p < area.length) {
    need(area, p, 2, ERR, 'option header');
    const type = area[p]!;
    const len = area[p + 1]! * 8;
    if (len === 0) fail(ERR, `option ${type} with length 0`);
    need(area, p, len, ERR, `option ${type}`);
    const v = area.subarray(p, p + len);
    switch (type) {
      case NdOpt.SOURCE_LL:
      case NdOpt.TARGET_LL: {
        if (len !== 8) fail(ERR, `link-layer address option of ${len} bytes on Ethernet`);
        const which = type === NdOpt.SOURCE_LL ? 'sourceLinkAddr' : 'targetLinkAddr';
        if (o[which] !== undefined) fail(ERR, `option ${type} twice`);
        o[which] = formatMac(v, 2);
        break;
      }
      case NdOpt.MTU:
        if (len !== 8) fail(ERR, `MTU option of ${len} bytes`);
        if (o.mtu !== undefined) fail(ERR, 'MTU option twice');
        o.mtu = u32(v, 4);
        break;
      case NdOpt.PREFIX_INFO:
        if (len !== 32) fail(ERR, `prefix information option of ${len} bytes`);
        if (v[2]! > 128) fail(ERR, `prefix length ${v[2]}`);
        o.prefixes.push({
          prefixLength: v[2]!,
          onLink: (v[3]! & 0x80) !== 0,
          autonomous: (v[3]! & 0x40) !== 0,
          validLifetime: u32(v, 4),
          preferredLifetime: u32(v, 8),
          prefix: ipText(v, 16, 16),
        });
        break;
      case NdOpt.RDNSS: {
        if (len < 24 || (len - 8) % 16 !== 0) fail(ERR, `RDNSS option of ${len} bytes`);
        const servers: string[] = [];
        for (let i = 8; i < len; i += 16) servers.push(ipText(v, i, 16));
        o.rdnss.push({ lifetime: u32(v, 4), servers });
        break;
      }
      case NdOpt.DNSSL: {
        if (len < 16) fail(ERR, `DNSSL option of ${len} bytes`);
        const domains = decodeNameList(v.subarray(8), ERR, true);
        if (domains.length === 0) fail(ERR, 'DNSSL option without a domain');
        o.dnssl.push({ lifetime: u32(v, 4), domains });
        break;
      }
      default: // RFC 4861 §4.6: unknown options are ignored
    }
    p += len;
  }
  return o;
}

/** Decodes and validates an RS, RA, NS or NA in `ip` (an IPv6 packet whose upper layer is ICMPv6). */
export function decodeNdp(ip: Ipv6Packet): NdMessage {
  const icmp = decodeIcmpv6(ip);
  const b = icmp.body;
  if (icmp.type < ICMP6_RS || icmp.type > ICMP6_NA) fail(ERR, `ICMPv6 type ${icmp.type} is not RS/RA/NS/NA`);
  if (ip.hopLimit !== ND_HOP_LIMIT) fail(ERR, `hop limit ${ip.hopLimit}, must be 255 (off-link sender)`);
  if (icmp.code !== 0) fail(ERR, `ICMPv6 code ${icmp.code}`);
  const unspecified = ip.src === UNSPECIFIED6;
  switch (icmp.type) {
    case ICMP6_RS: {
      need(b, 0, 4, ERR, 'Router Solicitation');
      const options = readOptions(b.subarray(4));
      if (unspecified && options.sourceLinkAddr) fail(ERR, 'source link-layer address with the unspecified source');
      return { type: 'rs', options };
    }
    case ICMP6_RA: {
      need(b, 0, 12, ERR, 'Router Advertisement');
      if (!isLinkLocal6(ip.src)) fail(ERR, 'Router Advertisement from a non-link-local source');
      return {
        type: 'ra',
        curHopLimit: b[0]!,
        managed: (b[1]! & 0x80) !== 0,
        other: (b[1]! & 0x40) !== 0,
        routerLifetime: u16(b, 2),
        reachableTime: u32(b, 4),
        retransTimer: u32(b, 8),
        options: readOptions(b.subarray(12)),
      };
    }
    case ICMP6_NS: {
      need(b, 0, 20, ERR, 'Neighbor Solicitation');
      const target = ipText(b, 4, 16);
      if (isMulticast6(target)) fail(ERR, 'multicast target');
      const options = readOptions(b.subarray(20));
      if (unspecified) {
        if (ip.dst !== solicitedNodeAddress(target)) fail(ERR, 'DAD probe not sent to the solicited-node address');
        if (options.sourceLinkAddr) fail(ERR, 'source link-layer address with the unspecified source');
      }
      return { type: 'ns', target, options };
    }
    default: {
      need(b, 0, 20, ERR, 'Neighbor Advertisement');
      const target = ipText(b, 4, 16);
      if (isMulticast6(target)) fail(ERR, 'multicast target');
      const solicited = (b[0]! & 0x40) !== 0;
      if (solicited && isMulticast6(ip.dst)) fail(ERR, 'solicited advertisement to a multicast address');
      return { type: 'na', router: (b[0]! & 0x80) !== 0, solicited, override: (b[0]! & 0x20) !== 0, target, options: readOptions(b.subarray(20)) };
    }
  }
}

// ───────────────────────────── encoding ─────────────────────────────

function option(type: number, value: Uint8Array): Buffer {
  const total = Math.ceil((2 + value.length) / 8) * 8;
  if (total / 8 > 255) throw new RangeError(`option ${type} too long`);
  const out = Buffer.alloc(total);
  out[0] = type;
  out[1] = total / 8;
  out.set(value, 2);
  return out;
}

function encodeOptions(o: Partial<NdOptions>): Buffer {
  const parts: Buffer[] = [];
  if (o.sourceLinkAddr !== undefined) parts.push(option(NdOpt.SOURCE_LL, macBytes(o.sourceLinkAddr)));
  if (o.targetLinkAddr !== undefined) parts.push(option(NdOpt.TARGET_LL, macBytes(o.targetLinkAddr)));
  if (o.mtu !== undefined) parts.push(option(NdOpt.MTU, Buffer.concat([Buffer.alloc(2), u32b('MTU', o.mtu)])));
  for (const p of o.prefixes ?? []) {
    if (!Number.isInteger(p.prefixLength) || p.prefixLength < 0 || p.prefixLength > 128) throw new RangeError(`bad prefix length ${p.prefixLength}`);
    const flags = (p.onLink ? 0x80 : 0) | (p.autonomous ? 0x40 : 0);
    const v = Buffer.concat([
      Buffer.from([p.prefixLength, flags]),
      u32b('valid lifetime', p.validLifetime),
      u32b('preferred lifetime', p.preferredLifetime),
      Buffer.alloc(4),
      ip6Bytes(p.prefix),
    ]);
    parts.push(option(NdOpt.PREFIX_INFO, v));
  }
  for (const r of o.rdnss ?? []) {
    if (r.servers.length === 0) throw new RangeError('RDNSS without servers');
    parts.push(option(NdOpt.RDNSS, Buffer.concat([Buffer.alloc(2), u32b('RDNSS lifetime', r.lifetime), ...r.servers.map(ip6Bytes)])));
  }
  for (const d of o.dnssl ?? []) {
    if (d.domains.length === 0) throw new RangeError('DNSSL without domains');
    parts.push(option(NdOpt.DNSSL, Buffer.concat([Buffer.alloc(2), u32b('DNSSL lifetime', d.lifetime), encodeNameList(d.domains)])));
  }
  return Buffer.concat(parts);
}

/** The ICMPv6 type and the bytes after type/code/checksum for `m` (ip.ts's buildIcmpv6 adds the rest). RangeError on bad fields. */
export function encodeNdp(m: NdMessage): { type: number; body: Buffer } {
  const opts = encodeOptions(m.options);
  switch (m.type) {
    case 'rs':
      return { type: ICMP6_RS, body: Buffer.concat([Buffer.alloc(4), opts]) };
    case 'ra': {
      const h = Buffer.alloc(12);
      if (!Number.isInteger(m.curHopLimit) || m.curHopLimit < 0 || m.curHopLimit > 255) throw new RangeError('bad hop limit');
      if (!Number.isInteger(m.routerLifetime) || m.routerLifetime < 0 || m.routerLifetime > 0xffff) throw new RangeError('bad router lifetime');
      h[0] = m.curHopLimit;
      h[1] = (m.managed ? 0x80 : 0) | (m.other ? 0x40 : 0);
      h.writeUInt16BE(m.routerLifetime, 2);
      h.set(u32b('reachable time', m.reachableTime), 4);
      h.set(u32b('retrans timer', m.retransTimer), 8);
      return { type: ICMP6_RA, body: Buffer.concat([h, opts]) };
    }
    case 'ns':
      return { type: ICMP6_NS, body: Buffer.concat([Buffer.alloc(4), ip6Bytes(m.target), opts]) };
    case 'na': {
      const flags = Buffer.from([(m.router ? 0x80 : 0) | (m.solicited ? 0x40 : 0) | (m.override ? 0x20 : 0), 0, 0, 0]);
      return { type: ICMP6_NA, body: Buffer.concat([flags, ip6Bytes(m.target), opts]) };
    }
  }
}

