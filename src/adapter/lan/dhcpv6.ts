// DHCPv6 message codec (RFC 8415 client/server messages; RFC 3646 DNS options): the options a
// stateful address server needs, DUIDs parsed. Malformed input throws DecodeError('ERR_DHCP6_DECODE').
//
//  0               1               2               3
// +---------------+-----------------------------------------------+
// |   msg-type    |              transaction-id (24 bits)         |
// +---------------+---------------+-------------------------------+
// |        option-code (16)       |        option-len (16)        |  repeated
// |                 option-data (option-len bytes)                |
// +---------------------------------------------------------------+
//
// IA_NA (3):  IAID (4) | T1 (4) | T2 (4) | IA options (IAADDR 5, STATUS_CODE 13, …)
// IAADDR (5): address (16) | preferred lifetime (4) | valid lifetime (4) | options (STATUS_CODE)
// DUID: type (2) then LLT 1: hw type (2), time (4), link-layer address | EN 2: enterprise (4), id
//       | LL 3: hw type (2), link-layer address | UUID 4: 16 bytes.
//
// Relay messages (12, 13) are refused: the adapter serves its own link only. A singleton option
// that appears twice, or two IA_NAs with one IAID, is malformed. Unknown options are kept as raw bytes.

import { formatMac, macBytes } from './ethernet.js';
import { LAN_ERR, decodeNameList, encodeNameList, fail, ip6Bytes, ipText, need, u16, u16Bytes as u16b, u32, u32Bytes as u32b } from './wire.js';

export const DHCP6_CLIENT_PORT = 546;
export const DHCP6_SERVER_PORT = 547;
/** All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1). */
export const ALL_DHCP_SERVERS6 = 'ff02::1:2';

export const Dhcp6Type = {
  SOLICIT: 1,
  ADVERTISE: 2,
  REQUEST: 3,
  CONFIRM: 4,
  RENEW: 5,
  REBIND: 6,
  REPLY: 7,
  RELEASE: 8,
  DECLINE: 9,
  RECONFIGURE: 10,
  INFORMATION_REQUEST: 11,
  RELAY_FORW: 12,
  RELAY_REPL: 13,
} as const;

export const Dhcp6Opt = {
  CLIENTID: 1,
  SERVERID: 2,
  IA_NA: 3,
  IAADDR: 5,
  ORO: 6,
  PREFERENCE: 7,
  ELAPSED_TIME: 8,
  STATUS_CODE: 13,
  RAPID_COMMIT: 14,
  DNS_SERVERS: 23,
  DOMAIN_LIST: 24,
} as const;

export const Dhcp6Status = {
  Success: 0,
  UnspecFail: 1,
  NoAddrsAvail: 2,
  NoBinding: 3,
  NotOnLink: 4,
  UseMulticast: 5,
} as const;

const ERR = LAN_ERR.dhcp6;
const DUID_MAX = 130;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export interface Duid {
  /** The DUID as sent, type code included: identity comparisons use these bytes. */
  raw: Uint8Array;
  type: number;
  kind: 'llt' | 'en' | 'll' | 'uuid' | 'unknown';
  hardwareType?: number;
  /** DUID-LLT: seconds since 2000-01-01 UTC. */
  time?: number;
  /** DUID-LLT / DUID-LL with hardware type 1 (Ethernet) and a 6-byte address: the MAC. */
  mac?: string;
  enterprise?: number;
  /** DUID-UUID as 32 hex digits. */
  uuid?: string;
}

export interface Dhcp6RawOption {
  code: number;
  data: Uint8Array;
}

export interface Dhcp6StatusCode {
  code: number;
  message: string;
}

export interface IaAddress {
  address: string;
  /** Seconds. */
  preferred: number;
  valid: number;
  status?: Dhcp6StatusCode;
  other: Dhcp6RawOption[];
}

export interface IaNa {
  iaid: number;
  t1: number;
  t2: number;
  addresses: IaAddress[];
  status?: Dhcp6StatusCode;
  other: Dhcp6RawOption[];
}

export interface Dhcp6Message {
  type: number;
  /** 24-bit transaction id. */
  txid: number;
  clientId?: Duid;
  serverId?: Duid;
  iaNa: IaNa[];
  /** Option Request Option: codes the client wants. */
  oro?: number[];
  /** Server preference 0–255; 255 makes the client take this server at once. */
  preference?: number;
  /** Hundredths of a second. */
  elapsedTime?: number;
  status?: Dhcp6StatusCode;
  rapidCommit: boolean;
  dnsServers?: string[];
  domainList?: string[];
  other: Dhcp6RawOption[];
}

/** Splits an option area into (code, data) pairs, checking every length. */
function options(area: Uint8Array, where: string): Dhcp6RawOption[] {
  const out: Dhcp6RawOption[] = [];
  let p = 0;
  while (p < area.length) {
    need(area, p, 4, ERR, `option header in ${where}`);
    const code = u16(area, p);
    const len = u16(area, p + 2);
    need(area, p + 4, len, ERR, `option ${code} in ${where}`);
    out.push({ code, data: area.subarray(p + 4, p + 4 + len) });
    p += 4 + len;
  }
  return out;
}

export function decodeDuid(v: Uint8Array): Duid {
  if (v.length < 3 || v.length > DUID_MAX) fail(ERR, `DUID of ${v.length} bytes`);
  const raw = Uint8Array.from(v);
  const type = u16(v, 0);
  const macOf = (hw: number, off: number): string | undefined => (hw === 1 && v.length - off === 6 ? formatMac(v, off) : undefined);
  const d: Duid = { raw, type, kind: 'unknown' };
  switch (type) {
    case 1: {
      need(v, 0, 8, ERR, 'DUID-LLT');
      d.kind = 'llt';
      d.hardwareType = u16(v, 2);
      d.time = u32(v, 4);
      const mac = macOf(d.hardwareType, 8);
      if (mac) d.mac = mac;
      break;
    }
    case 2:
      need(v, 0, 7, ERR, 'DUID-EN');
      d.kind = 'en';
      d.enterprise = u32(v, 2);
      break;
    case 3: {
      need(v, 0, 5, ERR, 'DUID-LL');
      d.kind = 'll';
      d.hardwareType = u16(v, 2);
      const mac = macOf(d.hardwareType, 4);
      if (mac) d.mac = mac;
      break;
    }
    case 4:
      if (v.length !== 18) fail(ERR, `DUID-UUID of ${v.length} bytes`);
      d.kind = 'uuid';
      d.uuid = Buffer.from(v.subarray(2)).toString('hex');
      break;
  }
  return d;
}

/** DUID-LL of an Ethernet MAC: the adapter's stable server identifier. */
export function duidLl(mac: string): Duid {
  return decodeDuid(Buffer.concat([Buffer.from([0, 3, 0, 1]), macBytes(mac)]));
}

function status(v: Uint8Array): Dhcp6StatusCode {
  need(v, 0, 2, ERR, 'status code');
  let message: string;
  try {
    message = utf8.decode(v.subarray(2));
  } catch {
    return fail(ERR, 'status message is not UTF-8');
  }
  return { code: u16(v, 0), message };
}

function once<T>(cur: T | undefined, code: number, where: string): void {
  if (cur !== undefined) fail(ERR, `option ${code} twice in ${where}`);
}

function iaAddress(v: Uint8Array): IaAddress {
  need(v, 0, 24, ERR, 'IAADDR');
  const a: IaAddress = { address: ipText(v, 0, 16), preferred: u32(v, 16), valid: u32(v, 20), other: [] };
  for (const o of options(v.subarray(24), 'IAADDR')) {
    if (o.code === Dhcp6Opt.STATUS_CODE) {
      once(a.status, o.code, 'IAADDR');
      a.status = status(o.data);
    } else a.other.push({ code: o.code, data: Uint8Array.from(o.data) });
  }
  return a;
}

function iaNa(v: Uint8Array): IaNa {
  need(v, 0, 12, ERR, 'IA_NA');
  const ia: IaNa = { iaid: u32(v, 0), t1: u32(v, 4), t2: u32(v, 8), addresses: [], other: [] };
  for (const o of options(v.subarray(12), 'IA_NA')) {
    if (o.code === Dhcp6Opt.IAADDR) ia.addresses.push(iaAddress(o.data));
    else if (o.code === Dhcp6Opt.STATUS_CODE) {
      once(ia.status, o.code, 'IA_NA');
      ia.status = status(o.data);
    } else ia.other.push({ code: o.code, data: Uint8Array.from(o.data) });
  }
  return ia;
}

export function decodeDhcp6(buf: Uint8Array): Dhcp6Message {
  need(buf, 0, 4, ERR, 'DHCPv6 header');
  const type = buf[0]!;
  if (type === 0) fail(ERR, 'message type 0');
  if (type === Dhcp6Type.RELAY_FORW || type === Dhcp6Type.RELAY_REPL) fail(ERR, 'relay messages are not served');
  const m: Dhcp6Message = { type, txid: (buf[1]! << 16) | u16(buf, 2), iaNa: [], rapidCommit: false, other: [] };
  for (const o of options(buf.subarray(4), 'message')) {
    const v = o.data;
    switch (o.code) {
      case Dhcp6Opt.CLIENTID:
        once(m.clientId, o.code, 'message');
        m.clientId = decodeDuid(v);
        break;
      case Dhcp6Opt.SERVERID:
        once(m.serverId, o.code, 'message');
        m.serverId = decodeDuid(v);
        break;
      case Dhcp6Opt.IA_NA: {
        const ia = iaNa(v);
        if (m.iaNa.some((x) => x.iaid === ia.iaid)) fail(ERR, `two IA_NA with IAID ${ia.iaid}`);
        m.iaNa.push(ia);
        break;
      }
      case Dhcp6Opt.ORO:
        once(m.oro, o.code, 'message');
        if (v.length % 2 !== 0) fail(ERR, `ORO of odd length ${v.length}`);
        m.oro = [];
        for (let i = 0; i < v.length; i += 2) m.oro.push(u16(v, i));
        break;
      case Dhcp6Opt.PREFERENCE:
        once(m.preference, o.code, 'message');
        if (v.length !== 1) fail(ERR, `preference of length ${v.length}`);
        m.preference = v[0]!;
        break;
      case Dhcp6Opt.ELAPSED_TIME:
        once(m.elapsedTime, o.code, 'message');
        if (v.length !== 2) fail(ERR, `elapsed time of length ${v.length}`);
        m.elapsedTime = u16(v, 0);
        break;
      case Dhcp6Opt.STATUS_CODE:
        once(m.status, o.code, 'message');
        m.status = status(v);
        break;
      case Dhcp6Opt.RAPID_COMMIT:
        if (m.rapidCommit) fail(ERR, 'rapid commit twice');
        if (v.length !== 0) fail(ERR, `rapid commit of length ${v.length}`);
        m.rapidCommit = true;
        break;
      case Dhcp6Opt.DNS_SERVERS:
        once(m.dnsServers, o.code, 'message');
        if (v.length % 16 !== 0) fail(ERR, `DNS servers option of length ${v.length}`);
        m.dnsServers = [];
        for (let i = 0; i < v.length; i += 16) m.dnsServers.push(ipText(v, i, 16));
        break;
      case Dhcp6Opt.DOMAIN_LIST:
        once(m.domainList, o.code, 'message');
        m.domainList = decodeNameList(v, ERR, false);
        break;
      default:
        m.other.push({ code: o.code, data: Uint8Array.from(v) });
    }
  }
  return m;
}

// ───────────────────────────── encoding ─────────────────────────────

function opt(code: number, ...data: Uint8Array[]): Buffer {
  const body = Buffer.concat(data);
  if (body.length > 0xffff) throw new RangeError(`option ${code} of ${body.length} bytes`);
  const h = Buffer.alloc(4);
  h.writeUInt16BE(code, 0);
  h.writeUInt16BE(body.length, 2);
  return Buffer.concat([h, body]);
}

function statusOpt(s: Dhcp6StatusCode): Buffer {
  return opt(Dhcp6Opt.STATUS_CODE, u16b('status code', s.code), Buffer.from(s.message, 'utf8'));
}

/** Raw options; codes that have a typed field where they appear (`typed`) are refused, so decoding gives the same message back. */
function rawOpts(list: readonly Dhcp6RawOption[], typed: readonly number[]): Buffer[] {
  return list.map((o) => {
    if (typed.includes(o.code)) throw new RangeError(`option ${o.code} has a typed field`);
    return opt(u16b('option code', o.code).readUInt16BE(0), o.data);
  });
}

const TOP_TYPED: readonly number[] = Object.values(Dhcp6Opt).filter((c) => c !== Dhcp6Opt.IAADDR);
const IA_TYPED: readonly number[] = [Dhcp6Opt.IAADDR, Dhcp6Opt.STATUS_CODE];
const ADDR_TYPED: readonly number[] = [Dhcp6Opt.STATUS_CODE];

function duidOpt(code: number, d: Duid): Buffer {
  if (d.raw.length < 3 || d.raw.length > DUID_MAX) throw new RangeError(`DUID of ${d.raw.length} bytes`);
  return opt(code, d.raw);
}

function iaNaOpt(ia: IaNa): Buffer {
  const addrs = ia.addresses.map((a) =>
    opt(
      Dhcp6Opt.IAADDR,
      ip6Bytes(a.address),
      u32b('preferred lifetime', a.preferred),
      u32b('valid lifetime', a.valid),
      ...(a.status ? [statusOpt(a.status)] : []),
      ...rawOpts(a.other, ADDR_TYPED),
    ),
  );
  return opt(
    Dhcp6Opt.IA_NA,
    u32b('IAID', ia.iaid),
    u32b('T1', ia.t1),
    u32b('T2', ia.t2),
    ...addrs,
    ...(ia.status ? [statusOpt(ia.status)] : []),
    ...rawOpts(ia.other, IA_TYPED),
  );
}

/** Encodes a client/server message; RangeError on bad fields. */
export function encodeDhcp6(m: Dhcp6Message): Buffer {
  if (!Number.isInteger(m.type) || m.type < 1 || m.type > 255 || m.type === Dhcp6Type.RELAY_FORW || m.type === Dhcp6Type.RELAY_REPL) {
    throw new RangeError(`bad message type ${m.type}`);
  }
  if (!Number.isInteger(m.txid) || m.txid < 0 || m.txid > 0xffffff) throw new RangeError(`bad transaction id ${m.txid}`);
  const parts: Buffer[] = [Buffer.from([m.type, m.txid >> 16, (m.txid >> 8) & 0xff, m.txid & 0xff])];
  if (m.clientId) parts.push(duidOpt(Dhcp6Opt.CLIENTID, m.clientId));
  if (m.serverId) parts.push(duidOpt(Dhcp6Opt.SERVERID, m.serverId));
  for (const ia of m.iaNa) parts.push(iaNaOpt(ia));
  if (m.oro) parts.push(opt(Dhcp6Opt.ORO, ...m.oro.map((c) => u16b('ORO code', c))));
  if (m.preference !== undefined) {
    if (!Number.isInteger(m.preference) || m.preference < 0 || m.preference > 255) throw new RangeError('bad preference');
    parts.push(opt(Dhcp6Opt.PREFERENCE, Buffer.from([m.preference])));
  }
  if (m.elapsedTime !== undefined) parts.push(opt(Dhcp6Opt.ELAPSED_TIME, u16b('elapsed time', m.elapsedTime)));
  if (m.status) parts.push(statusOpt(m.status));
  if (m.rapidCommit) parts.push(opt(Dhcp6Opt.RAPID_COMMIT));
  if (m.dnsServers) parts.push(opt(Dhcp6Opt.DNS_SERVERS, ...m.dnsServers.map(ip6Bytes)));
  if (m.domainList) parts.push(opt(Dhcp6Opt.DOMAIN_LIST, encodeNameList(m.domainList)));
  parts.push(...rawOpts(m.other, TOP_TYPED));
  return Buffer.concat(parts);
}
