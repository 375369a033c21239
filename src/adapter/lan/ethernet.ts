// Ethernet II frames on the adapter's LAN: decode/encode (destination, source, EtherType, payload,
// one optional 802.1Q tag), and MAC address text helpers. Pure functions; malformed frames throw DecodeError('ERR_ETH_DECODE').
//
//   0                   6                   12      14
//  +-------------------+-------------------+-------+---------------------------------+
//  | destination MAC   | source MAC        | type  | payload (46+ bytes on the wire) |
//  +-------------------+-------------------+-------+---------------------------------+
//  With a tag: type = 0x8100, then TCI (PCP 3 bits | DEI 1 | VID 12), then the inner type.
//
// A single 802.1Q tag is decoded and reported (`vlan`), so the classifier can drop tagged frames
// explicitly; stacked tags (QinQ) are refused. EtherType values below 0x0600 (802.3 length
// frames: STP, LLC) are returned as they are; the classifier drops them.

import { LAN_ERR, fail, memoParser, need, u16 } from './wire.js';

export const ETH_HEADER_LEN = 14;
export const ETH_VLAN_TAG_LEN = 4;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_QINQ = 0x88a8;
export const BROADCAST_MAC = 'ff:ff:ff:ff:ff:ff';
export const ZERO_MAC = '00:00:00:00:00:00';

const ERR = LAN_ERR.ethernet;

export interface VlanTag {
  pcp: number;
  dei: boolean;
  vid: number;
}

export interface EthernetFrame {
  /** MAC text, lowercase, colon-separated. */
  dst: string;
  src: string;
  ethertype: number;
  /** The 802.1Q tag when the frame carried one. */
  vlan: VlanTag | null;
  /** Everything after the header, link padding included (a view into the input, not a copy). */
  payload: Uint8Array;
}

export interface EthernetFrameSpec {
  dst: string;
  src: string;
  ethertype: number;
  payload: Uint8Array;
  vlan?: VlanTag | null;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** 6 bytes as 'aa:bb:cc:dd:ee:ff'. */
export function formatMac(b: Uint8Array, off = 0): string {
  if (off + 6 > b.length) throw new RangeError('MAC address needs 6 bytes');
  return `${HEX[b[off]!]}:${HEX[b[off + 1]!]}:${HEX[b[off + 2]!]}:${HEX[b[off + 3]!]}:${HEX[b[off + 4]!]}:${HEX[b[off + 5]!]}`;
}

/** 'aa:bb:cc:dd:ee:ff' or 'AA-BB-CC-DD-EE-FF' to 6 bytes; undefined when it is not a MAC. */
export function parseMac(text: string): Buffer | undefined {
  if (typeof text !== 'string' || !/^[0-9a-fA-F]{2}([:-])([0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}$/.test(text)) return undefined;
  return Buffer.from(text.replace(/[:-]/g, ''), 'hex');
}

/** Canonical text of a MAC (lowercase, colons); undefined when invalid. */
export function normalizeMac(text: string): string | undefined {
  const b = parseMac(text);
  return b ? formatMac(b) : undefined;
}

/** MAC text to bytes for encoders: RangeError when invalid (shared bytes: copy, never modify). */
export const macBytes = memoParser('a MAC address', parseMac);

/** Group bit set: broadcast and multicast MACs. */
export function isMulticastMac(mac: string): boolean {
  return (parseInt(mac.slice(0, 2), 16) & 1) === 1;
}

/** Decodes an Ethernet II frame with at most one 802.1Q tag. */
export function decodeEthernet(buf: Uint8Array): EthernetFrame {
  need(buf, 0, ETH_HEADER_LEN, ERR, 'Ethernet header');
  let type = u16(buf, 12);
  let off = ETH_HEADER_LEN;
  let vlan: VlanTag | null = null;
  if (type === ETHERTYPE_QINQ) fail(ERR, '802.1ad (QinQ) frames are not supported');
  if (type === ETHERTYPE_VLAN) {
    need(buf, off, ETH_VLAN_TAG_LEN, ERR, '802.1Q tag');
    const tci = u16(buf, off);
    vlan = { pcp: tci >>> 13, dei: (tci & 0x1000) !== 0, vid: tci & 0x0fff };
    type = u16(buf, off + 2);
    off += ETH_VLAN_TAG_LEN;
    if (type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ) fail(ERR, 'stacked VLAN tags are not supported');
  }
  return { dst: formatMac(buf, 0), src: formatMac(buf, 6), ethertype: type, vlan, payload: buf.subarray(off) };
}

/** Builds a frame (no padding: the NIC or the kernel pads short frames). RangeError on bad fields. */
export function encodeEthernet(f: EthernetFrameSpec): Buffer {
  if (!Number.isInteger(f.ethertype) || f.ethertype < 0 || f.ethertype > 0xffff) throw new RangeError(`bad EtherType ${f.ethertype}`);
  const tag = f.vlan ? ETH_VLAN_TAG_LEN : 0;
  const out = Buffer.alloc(ETH_HEADER_LEN + tag + f.payload.length);
  out.set(macBytes(f.dst), 0);
  out.set(macBytes(f.src), 6);
  if (f.vlan) {
    const { pcp, dei, vid } = f.vlan;
    if (!Number.isInteger(pcp) || pcp < 0 || pcp > 7 || !Number.isInteger(vid) || vid < 0 || vid > 0xfff) {
      throw new RangeError('bad 802.1Q tag');
    }
    out.writeUInt16BE(ETHERTYPE_VLAN, 12);
    out.writeUInt16BE((pcp << 13) | (dei ? 0x1000 : 0) | vid, 14);
  }
  out.writeUInt16BE(f.ethertype, 12 + tag);
  out.set(f.payload, ETH_HEADER_LEN + tag);
  return out;
}
