// ARP for IPv4 over Ethernet (RFC 826): decode requests and replies, encode packets.
// Anything but htype 1 / ptype 0x0800 / hlen 6 / plen 4 with opcode 1 or 2 throws DecodeError('ERR_ARP_DECODE').
//
//  0        2        4    5    6        8               14       18              24       28
// +--------+--------+----+----+--------+---------------+--------+---------------+--------+
// | htype  | ptype  |hlen|plen| opcode | sender MAC    | sender | target MAC    | target |
// | = 1    | =0x0800| =6 | =4 | 1 or 2 |               | IPv4   |               | IPv4   |
// +--------+--------+----+----+--------+---------------+--------+---------------+--------+
// Bytes after the 28 (Ethernet padding to the 46-byte minimum payload) are ignored.

import { formatMac, macBytes } from './ethernet.js';
import { LAN_ERR, fail, ip4Bytes, ipText, need, u16 } from './wire.js';

export const ARP_LEN = 28;
export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;
const HTYPE_ETHERNET = 1;
const PTYPE_IPV4 = 0x0800;
const ERR = LAN_ERR.arp;

export interface ArpPacket {
  op: typeof ARP_REQUEST | typeof ARP_REPLY;
  senderMac: string;
  senderIp: string;
  targetMac: string;
  targetIp: string;
}

export function decodeArp(buf: Uint8Array): ArpPacket {
  need(buf, 0, ARP_LEN, ERR, 'ARP packet');
  if (u16(buf, 0) !== HTYPE_ETHERNET) fail(ERR, `hardware type ${u16(buf, 0)} is not Ethernet`);
  if (u16(buf, 2) !== PTYPE_IPV4) fail(ERR, `protocol type 0x${u16(buf, 2).toString(16)} is not IPv4`);
  if (buf[4] !== 6 || buf[5] !== 4) fail(ERR, `address lengths ${buf[4]}/${buf[5]}, expected 6/4`);
  const op = u16(buf, 6);
  if (op !== ARP_REQUEST && op !== ARP_REPLY) fail(ERR, `opcode ${op}`);
  return {
    op,
    senderMac: formatMac(buf, 8),
    senderIp: ipText(buf, 14, 4),
    targetMac: formatMac(buf, 18),
    targetIp: ipText(buf, 24, 4),
  };
}

/** The 28-byte packet; RangeError on a bad opcode or address. */
export function encodeArp(p: ArpPacket): Buffer {
  if (p.op !== ARP_REQUEST && p.op !== ARP_REPLY) throw new RangeError(`bad ARP opcode ${String(p.op)}`);
  const out = Buffer.alloc(ARP_LEN);
  out.writeUInt16BE(HTYPE_ETHERNET, 0);
  out.writeUInt16BE(PTYPE_IPV4, 2);
  out[4] = 6;
  out[5] = 4;
  out.writeUInt16BE(p.op, 6);
  out.set(macBytes(p.senderMac), 8);
  out.set(ip4Bytes(p.senderIp), 14);
  out.set(macBytes(p.targetMac), 18);
  out.set(ip4Bytes(p.targetIp), 24);
  return out;
}

/** Gratuitous ARP (an announcement): sender and target IP are the same. */
export function isGratuitousArp(p: ArpPacket): boolean {
  return p.senderIp === p.targetIp;
}

/** ARP probe (RFC 5227): a request from 0.0.0.0 asking whether the target is in use. */
export function isArpProbe(p: ArpPacket): boolean {
  return p.op === ARP_REQUEST && p.senderIp === '0.0.0.0';
}
