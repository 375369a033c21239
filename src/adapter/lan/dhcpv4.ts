// DHCPv4 message codec (RFC 2131 message format, RFC 2132 options, RFC 3396 long options):
// decode what clients send, encode what the server answers. Malformed input throws DecodeError('ERR_DHCP_DECODE').
//
//  0               1               2               3
// +---------------+---------------+---------------+---------------+
// |  op (1 or 2)  | htype (1=Eth) |   hlen (6)    |     hops      |   0
// +---------------+---------------+---------------+---------------+
// |                          xid                                  |   4
// +-------------------------------+-------------------------------+
// |             secs              | flags (bit 15 = broadcast)    |   8
// +-------------------------------+-------------------------------+
// | ciaddr (12) | yiaddr (16) | siaddr (20) | giaddr (24)           |
// | chaddr (28, 16 bytes; the first 6 are the client MAC)         |
// | sname (44, 64 bytes) | file (108, 128 bytes)                  |
// | magic cookie 99.130.83.99 (236) | options (240…): code, len, value; 0 = pad, 255 = end
// +---------------------------------------------------------------+
//
// Decoding: options that occur several times are concatenated (RFC 3396) before their length is
// checked; option overload (52) is honoured (options, then file, then sname). A missing END
// option is tolerated when every option before it is complete. Only Ethernet (htype 1, hlen 6) is
// accepted: the adapter's LAN is Ethernet and the client is identified by its MAC.

import { formatMac, macBytes } from './ethernet.js';
import { LAN_ERR, fail, ip4Bytes, ipText, need, u16, u32, u32Bytes } from './wire.js';

export const DHCP4_SERVER_PORT = 67;
export const DHCP4_CLIENT_PORT = 68;
export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
export const DHCP4_MAGIC = 0x63825363;
/** Fixed fields plus the magic cookie. */
export const DHCP4_FIXED_LEN = 240;
/** Spec: the minimum BOOTP message some relays and clients insist on (RFC 1542 §2.1). */
export const DHCP4_MIN_LEN = 300;

/** Option 53 values (RFC 2132 §9.6). */
export const Dhcp4Type = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;

/** Option codes this codec knows by name (RFC 2132). */
export const Dhcp4Opt = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  INTERFACE_MTU: 26,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAM_REQUEST_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  CLIENT_ID: 61,
  END: 255,
} as const;

const ERR = LAN_ERR.dhcp4;
const SNAME_OFF = 44;
const SNAME_LEN = 64;
const FILE_OFF = 108;
const FILE_LEN = 128;

export interface Dhcp4RawOption {
  code: number;
  data: Uint8Array;
}

export interface Dhcp4Options {
  messageType?: number;
  subnetMask?: string;
  routers?: string[];
  dnsServers?: string[];
  hostname?: string;
  domainName?: string;
  /** Option 26: the MTU the client should use on this link. */
  interfaceMtu?: number;
  requestedIp?: string;
  /** Seconds. */
  leaseTime?: number;
  serverId?: string;
  paramRequestList?: number[];
  /** Error text (in a NAK, or a client's DECLINE). */
  message?: string;
  maxMessageSize?: number;
  renewalTime?: number;
  rebindingTime?: number;
  clientId?: Uint8Array;
  /** Every other option (concatenated per RFC 3396), in order of first appearance. */
  other: Dhcp4RawOption[];
}

export interface Dhcp4Message {
  op: typeof BOOTREQUEST | typeof BOOTREPLY;
  hops: number;
  xid: number;
  secs: number;
  /** The BROADCAST flag: the client cannot receive unicast before it is configured. */
  broadcast: boolean;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** Client hardware address (MAC text). */
  chaddr: string;
  /** Text up to the first NUL ('' when the field carries overloaded options). */
  sname: string;
  file: string;
  options: Dhcp4Options;
}

/** Reads code/len/value options from `area` into `acc`; returns whether END was seen. */
function readOptionArea(area: Uint8Array, acc: Map<number, Uint8Array[]>, where: string): boolean {
  let p = 0;
  while (p < area.length) {
    const code = area[p]!;
    if (code === Dhcp4Opt.PAD) {
      p += 1;
      continue;
    }
    if (code === Dhcp4Opt.END) return true;
    need(area, p, 2, ERR, `option ${code} in ${where}`);
    const len = area[p + 1]!;
    need(area, p + 2, len, ERR, `option ${code} in ${where}`);
    const list = acc.get(code);
    const value = area.subarray(p + 2, p + 2 + len);
    if (list) list.push(value);
    else acc.set(code, [value]);
    p += 2 + len;
  }
  return false;
}

function concat(parts: Uint8Array[]): Uint8Array {
  return parts.length === 1 ? Uint8Array.from(parts[0]!) : Uint8Array.from(Buffer.concat(parts));
}

function text(v: Uint8Array, code: number): string {
  if (v.length === 0) fail(ERR, `option ${code} is empty`);
  let end = v.length;
  while (end > 0 && v[end - 1] === 0) end--;
  if (end === 0) fail(ERR, `option ${code} holds only NUL bytes`);
  return Buffer.from(v.subarray(0, end)).toString('latin1');
}

function addr(v: Uint8Array, code: number): string {
  if (v.length !== 4) fail(ERR, `option ${code} has length ${v.length}, expected 4`);
  return ipText(v, 0, 4);
}

function addrs(v: Uint8Array, code: number): string[] {
  if (v.length === 0 || v.length % 4 !== 0) fail(ERR, `option ${code} has length ${v.length}, expected a multiple of 4`);
  const out: string[] = [];
  for (let i = 0; i < v.length; i += 4) out.push(ipText(v, i, 4));
  return out;
}

function seconds(v: Uint8Array, code: number): number {
  if (v.length !== 4) fail(ERR, `option ${code} has length ${v.length}, expected 4`);
  return u32(v, 0);
}

function typedOptions(acc: Map<number, Uint8Array[]>): Dhcp4Options {
  const o: Dhcp4Options = { other: [] };
  for (const [code, parts] of acc) {
    const v = concat(parts);
    switch (code) {
      case Dhcp4Opt.MESSAGE_TYPE:
        if (v.length !== 1) fail(ERR, `message type option of length ${v.length}`);
        o.messageType = v[0]!;
        break;
      case Dhcp4Opt.SUBNET_MASK:
        o.subnetMask = addr(v, code);
        break;
      case Dhcp4Opt.ROUTER:
        o.routers = addrs(v, code);
        break;
      case Dhcp4Opt.DNS:
        o.dnsServers = addrs(v, code);
        break;
      case Dhcp4Opt.HOSTNAME:
        o.hostname = text(v, code);
        break;
      case Dhcp4Opt.DOMAIN_NAME:
        o.domainName = text(v, code);
        break;
      case Dhcp4Opt.INTERFACE_MTU:
        if (v.length !== 2) fail(ERR, `interface MTU option of length ${v.length}`);
        if (u16(v, 0) < 68) fail(ERR, `interface MTU ${u16(v, 0)} < 68`);
        o.interfaceMtu = u16(v, 0);
        break;
      case Dhcp4Opt.REQUESTED_IP:
        o.requestedIp = addr(v, code);
        break;
      case Dhcp4Opt.LEASE_TIME:
        o.leaseTime = seconds(v, code);
        break;
      case Dhcp4Opt.SERVER_ID:
        o.serverId = addr(v, code);
        break;
      case Dhcp4Opt.PARAM_REQUEST_LIST:
        if (v.length === 0) fail(ERR, 'empty parameter request list');
        o.paramRequestList = [...v];
        break;
      case Dhcp4Opt.MESSAGE:
        o.message = text(v, code);
        break;
      case Dhcp4Opt.MAX_MESSAGE_SIZE:
        if (v.length !== 2) fail(ERR, `maximum message size option of length ${v.length}`);
        if (u16(v, 0) < 576) fail(ERR, `maximum message size ${u16(v, 0)} < 576`);
        o.maxMessageSize = u16(v, 0);
        break;
      case Dhcp4Opt.RENEWAL_TIME:
        o.renewalTime = seconds(v, code);
        break;
      case Dhcp4Opt.REBINDING_TIME:
        o.rebindingTime = seconds(v, code);
        break;
      case Dhcp4Opt.CLIENT_ID:
        if (v.length < 2) fail(ERR, `client identifier of length ${v.length}`);
        o.clientId = v;
        break;
      default:
        o.other.push({ code, data: v });
    }
  }
  return o;
}

function fieldText(buf: Uint8Array, off: number, len: number): string {
  const area = buf.subarray(off, off + len);
  const nul = area.indexOf(0);
  return Buffer.from(nul < 0 ? area : area.subarray(0, nul)).toString('latin1');
}

export function decodeDhcp4(buf: Uint8Array): Dhcp4Message {
  need(buf, 0, DHCP4_FIXED_LEN, ERR, 'DHCP message');
  const op = buf[0]!;
  if (op !== BOOTREQUEST && op !== BOOTREPLY) fail(ERR, `op ${op}`);
  if (buf[1] !== 1 || buf[2] !== 6) fail(ERR, `hardware type ${buf[1]} length ${buf[2]}: only Ethernet is served`);
  if (u32(buf, 236) !== DHCP4_MAGIC) fail(ERR, 'no DHCP magic cookie');
  const acc = new Map<number, Uint8Array[]>();
  readOptionArea(buf.subarray(DHCP4_FIXED_LEN), acc, 'options');
  let overload = 0;
  const ov = acc.get(Dhcp4Opt.OVERLOAD);
  if (ov) {
    const v = concat(ov);
    if (v.length !== 1 || v[0]! < 1 || v[0]! > 3) fail(ERR, 'bad option overload value');
    overload = v[0]!;
    acc.delete(Dhcp4Opt.OVERLOAD);
    if (overload & 1) readOptionArea(buf.subarray(FILE_OFF, FILE_OFF + FILE_LEN), acc, 'file');
    if (overload & 2) readOptionArea(buf.subarray(SNAME_OFF, SNAME_OFF + SNAME_LEN), acc, 'sname');
    if (acc.has(Dhcp4Opt.OVERLOAD)) fail(ERR, 'option overload inside an overloaded field');
  }
  return {
    op,
    hops: buf[3]!,
    xid: u32(buf, 4),
    secs: u16(buf, 8),
    broadcast: (u16(buf, 10) & 0x8000) !== 0,
    ciaddr: ipText(buf, 12, 4),
    yiaddr: ipText(buf, 16, 4),
    siaddr: ipText(buf, 20, 4),
    giaddr: ipText(buf, 24, 4),
    chaddr: formatMac(buf, 28),
    sname: overload & 2 ? '' : fieldText(buf, SNAME_OFF, SNAME_LEN),
    file: overload & 1 ? '' : fieldText(buf, FILE_OFF, FILE_LEN),
    options: typedOptions(acc),
  };
}

// ───────────────────────────── encoding ─────────────────────────────

function textBytes(name: string, s: string, max = Infinity): Buffer {
  const ok = typeof s === 'string' && s.length > 0 && s.length <= max && [...s].every((c) => c.charCodeAt(0) <= 0xff);
  if (!ok) throw new RangeError(`bad ${name} ${JSON.stringify(s)}`);
  return Buffer.from(s, 'latin1');
}

/** The options in encoding order (message type first, as clients expect). */
function optionList(o: Dhcp4Options): Dhcp4RawOption[] {
  const out: Dhcp4RawOption[] = [];
  const add = (code: number, data: Uint8Array | undefined): void => {
    if (data) out.push({ code, data });
  };
  const list = (v: string[] | undefined, name: string): Buffer | undefined => {
    if (v === undefined) return undefined;
    if (v.length === 0) throw new RangeError(`empty ${name} list`);
    return Buffer.concat(v.map(ip4Bytes));
  };
  if (o.messageType !== undefined) {
    if (!Number.isInteger(o.messageType) || o.messageType < 0 || o.messageType > 255) throw new RangeError('bad message type');
    add(Dhcp4Opt.MESSAGE_TYPE, Buffer.from([o.messageType]));
  }
  if (o.serverId !== undefined) add(Dhcp4Opt.SERVER_ID, ip4Bytes(o.serverId));
  if (o.leaseTime !== undefined) add(Dhcp4Opt.LEASE_TIME, u32Bytes('lease time', o.leaseTime));
  if (o.renewalTime !== undefined) add(Dhcp4Opt.RENEWAL_TIME, u32Bytes('renewal time', o.renewalTime));
  if (o.rebindingTime !== undefined) add(Dhcp4Opt.REBINDING_TIME, u32Bytes('rebinding time', o.rebindingTime));
  if (o.subnetMask !== undefined) add(Dhcp4Opt.SUBNET_MASK, ip4Bytes(o.subnetMask));
  add(Dhcp4Opt.ROUTER, list(o.routers, 'router'));
  add(Dhcp4Opt.DNS, list(o.dnsServers, 'DNS server'));
  if (o.hostname !== undefined) add(Dhcp4Opt.HOSTNAME, textBytes('hostname', o.hostname));
  if (o.domainName !== undefined) add(Dhcp4Opt.DOMAIN_NAME, textBytes('domain name', o.domainName));
  if (o.interfaceMtu !== undefined) {
    if (!Number.isInteger(o.interfaceMtu) || o.interfaceMtu < 68 || o.interfaceMtu > 0xffff) throw new RangeError('bad interface MTU');
    add(Dhcp4Opt.INTERFACE_MTU, Buffer.from([o.interfaceMtu >> 8, o.interfaceMtu & 0xff]));
  }
  if (o.requestedIp !== undefined) add(Dhcp4Opt.REQUESTED_IP, ip4Bytes(o.requestedIp));
  if (o.clientId !== undefined) {
    if (o.clientId.length < 2) throw new RangeError('client identifier shorter than 2 bytes');
    add(Dhcp4Opt.CLIENT_ID, o.clientId);
  }
  if (o.paramRequestList !== undefined) {
    if (o.paramRequestList.length === 0 || o.paramRequestList.some((c) => !Number.isInteger(c) || c < 0 || c > 255)) {
      throw new RangeError('bad parameter request list');
    }
    add(Dhcp4Opt.PARAM_REQUEST_LIST, Buffer.from(o.paramRequestList));
  }
  if (o.maxMessageSize !== undefined) {
    if (!Number.isInteger(o.maxMessageSize) || o.maxMessageSize < 576 || o.maxMessageSize > 0xffff) throw new RangeError('bad maximum message size');
    add(Dhcp4Opt.MAX_MESSAGE_SIZE, Buffer.from([o.maxMessageSize >> 8, o.maxMessageSize & 0xff]));
  }
  if (o.message !== undefined) add(Dhcp4Opt.MESSAGE, textBytes('message', o.message));
  for (const r of o.other) {
    if (!Number.isInteger(r.code) || r.code <= 0 || r.code >= 255 || r.code === Dhcp4Opt.OVERLOAD) throw new RangeError(`bad option code ${r.code}`);
    if (Object.values(Dhcp4Opt).includes(r.code as never)) throw new RangeError(`option ${r.code} has a typed field`);
    add(r.code, r.data);
  }
  return out;
}

/** Encodes a message; values over 255 bytes are split into several options (RFC 3396). RangeError on bad fields. */
export function encodeDhcp4(m: Dhcp4Message): Buffer {
  const parts: Buffer[] = [];
  for (const { code, data } of optionList(m.options)) {
    let off = 0;
    do {
      const n = Math.min(255, data.length - off);
      parts.push(Buffer.from([code, n]), Buffer.from(data.subarray(off, off + n)));
      off += n;
    } while (off < data.length);
  }
  parts.push(Buffer.from([Dhcp4Opt.END]));
  const opts = Buffer.concat(parts);
  const out = Buffer.alloc(Math.max(DHCP4_MIN_LEN, DHCP4_FIXED_LEN + opts.length));
  if (m.op !== BOOTREQUEST && m.op !== BOOTREPLY) throw new RangeError(`bad op ${String(m.op)}`);
  out[0] = m.op;
  out[1] = 1;
  out[2] = 6;
  if (!Number.isInteger(m.hops) || m.hops < 0 || m.hops > 255) throw new RangeError('bad hops');
  out[3] = m.hops;
  out.writeUInt32BE(u32Bytes('xid', m.xid).readUInt32BE(0), 4);
  if (!Number.isInteger(m.secs) || m.secs < 0 || m.secs > 0xffff) throw new RangeError('bad secs');
  out.writeUInt16BE(m.secs, 8);
  out.writeUInt16BE(m.broadcast ? 0x8000 : 0, 10);
  out.set(ip4Bytes(m.ciaddr), 12);
  out.set(ip4Bytes(m.yiaddr), 16);
  out.set(ip4Bytes(m.siaddr), 20);
  out.set(ip4Bytes(m.giaddr), 24);
  out.set(macBytes(m.chaddr), 28);
  if (m.sname) out.set(textBytes('sname', m.sname, SNAME_LEN), SNAME_OFF);
  if (m.file) out.set(textBytes('file', m.file, FILE_LEN), FILE_OFF);
  out.writeUInt32BE(DHCP4_MAGIC, 236);
  out.set(opts, DHCP4_FIXED_LEN);
  return out;
}
