// DNS wire codec for the overlay resolver: defensive query decoding, response/query encoding (RFC 1035, 3596, 6891).
// Pure functions; every malformed input raises DecodeError('ERR_DNS_DECODE'), never any other exception.

import { isIPv4, isIPv6 } from 'node:net';
import { randomInt } from 'node:crypto';
import { DecodeError } from '../../util/errors.js';
import { formatIp } from '../../protocol/ip.js';

export const DNS_HEADER_LEN = 12;
export const TYPE_A = 1;
export const TYPE_AAAA = 28;
export const TYPE_OPT = 41;
export const CLASS_IN = 1;
/** Largest UDP payload we advertise in our own OPT record (the DNS-flag-day value). */
export const OUR_UDP_SIZE = 1232;
/** Plain-DNS UDP limit, and the floor for any EDNS0 size (RFC 6891 §6.2.5). */
export const MIN_UDP_SIZE = 512;

const MAX_NAME_WIRE = 255;
const MAX_LABEL = 63;
const MAX_POINTER_HOPS = 128;
const ERR = 'ERR_DNS_DECODE';

export interface DnsFlags {
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  ad: boolean;
  cd: boolean;
  /** The 4-bit header RCODE (without any EDNS0 extension). */
  rcode: number;
}

export interface DnsHeader {
  id: number;
  flags: DnsFlags;
  qdcount: number;
  ancount: number;
  nscount: number;
  arcount: number;
}

/** What the query's EDNS0 OPT pseudo-record said (null on DnsQuery when it had none). */
export interface DnsEdns {
  /** Requestor's UDP payload size, raised to 512 when it advertised less. */
  udpSize: number;
  version: number;
  /** The DO bit; RFC 3225 says to copy it into the response's OPT. */
  dnssecOk: boolean;
}

export interface DnsQuery {
  id: number;
  flags: DnsFlags;
  /**
   * The question name normalised: ASCII lowercase, no trailing dot, '' for the root. Bytes that are
   * not printable ASCII, and '.' or '\' inside a label, appear in RFC 4343 escaped form (`\DDD`, `\.`).
   */
  name: string;
  qtype: number;
  qclass: number;
  /**
   * The question section as it is echoed in responses: the name uncompressed in the client's
   * original letter case (0x20 randomisation survives), then QTYPE and QCLASS.
   */
  question: Uint8Array;
  edns: DnsEdns | null;
}

export type Rcode = 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED' | 'BADVERS';

export const RCODES: Readonly<Record<Rcode, number>> = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  BADVERS: 16, // extended: only expressible with an OPT record
};

export interface DnsAnswer {
  type: 'A' | 'AAAA';
  address: string;
  ttl: number;
}

export interface DnsResponseSpec {
  rcode: Rcode;
  answers: DnsAnswer[];
  authoritative?: boolean;
}

export interface DecodedAnswer extends DnsAnswer {
  name: string;
}

export interface DnsResponse {
  id: number;
  flags: DnsFlags;
  /** Header RCODE (4 bits); see `edns` for the upper bits when an OPT record is present. */
  rcode: number;
  question: { name: string; qtype: number; qclass: number } | null;
  /** A and AAAA records of class IN in the answer section, in order; other records are skipped. */
  answers: DecodedAnswer[];
}

function fail(msg: string): never {
  throw new DecodeError(msg, ERR);
}

function u16(buf: Uint8Array, off: number): number {
  if (off + 2 > buf.length) fail('truncated');
  return (buf[off]! << 8) | buf[off + 1]!;
}

function u32(buf: Uint8Array, off: number): number {
  if (off + 4 > buf.length) fail('truncated');
  return ((buf[off]! << 24) >>> 0) + ((buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!);
}

function flagsFrom(w: number): DnsFlags {
  return {
    qr: (w & 0x8000) !== 0,
    opcode: (w >> 11) & 0xf,
    aa: (w & 0x0400) !== 0,
    tc: (w & 0x0200) !== 0,
    rd: (w & 0x0100) !== 0,
    ra: (w & 0x0080) !== 0,
    ad: (w & 0x0020) !== 0,
    cd: (w & 0x0010) !== 0,
    rcode: w & 0xf,
  };
}

/** Reads the 12-byte header; throws DecodeError if fewer bytes are given. */
export function decodeHeader(buf: Uint8Array): DnsHeader {
  if (buf.length < DNS_HEADER_LEN) fail('truncated header');
  return {
    id: u16(buf, 0),
    flags: flagsFrom(u16(buf, 2)),
    qdcount: u16(buf, 4),
    ancount: u16(buf, 6),
    nscount: u16(buf, 8),
    arcount: u16(buf, 10),
  };
}

/** The header if the buffer holds one, else null (never throws). */
export function peekHeader(buf: Uint8Array): DnsHeader | null {
  return buf.length >= DNS_HEADER_LEN ? decodeHeader(buf) : null;
}

interface ReadName {
  /** Raw label bytes, in order, original case. */
  labels: Uint8Array[];
  /** Offset just past the name at its original position (after the first pointer, if any). */
  end: number;
}

/**
 * Reads a possibly compressed name. Pointers must point strictly before every position already
 * visited for this name, which makes loops impossible; hops are also capped at 128 and the
 * uncompressed wire length at 255 bytes.
 */
function readName(buf: Uint8Array, start: number, wantLabels: boolean): ReadName {
  const labels: Uint8Array[] = [];
  let pos = start;
  let end = -1;
  let floor = start;
  let hops = 0;
  let wire = 1; // the terminating zero octet
  for (;;) {
    if (pos >= buf.length) fail('truncated name');
    const len = buf[pos]!;
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 2 > buf.length) fail('truncated pointer');
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      if (++hops > MAX_POINTER_HOPS) fail('too many compression pointers');
      if (target >= floor) fail('compression pointer does not point backwards');
      if (end < 0) end = pos + 2;
      floor = target;
      pos = target;
      continue;
    }
    if (kind !== 0) fail('reserved label type');
    if (len === 0) {
      if (end < 0) end = pos + 1;
      return { labels, end };
    }
    if (len > MAX_LABEL) fail('label too long');
    if (pos + 1 + len > buf.length) fail('truncated label');
    wire += 1 + len;
    if (wire > MAX_NAME_WIRE) fail('name too long');
    if (wantLabels) labels.push(buf.subarray(pos + 1, pos + 1 + len));
    pos += 1 + len;
  }
}

/** RFC 4343 presentation of labels, lowercased, without trailing dot. */
function presentName(labels: readonly Uint8Array[]): string {
  const parts: string[] = [];
  for (const label of labels) {
    let s = '';
    for (const b of label) {
      if (b >= 0x41 && b <= 0x5a) s += String.fromCharCode(b + 0x20);
      else if (b === 0x2e || b === 0x5c) s += '\\' + String.fromCharCode(b);
      else if (b > 0x20 && b < 0x7f) s += String.fromCharCode(b);
      else s += '\\' + String(b).padStart(3, '0');
    }
    parts.push(s);
  }
  return parts.join('.');
}

function labelsToWire(labels: readonly Uint8Array[]): Uint8Array {
  let n = 1;
  for (const l of labels) n += 1 + l.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const l of labels) {
    out[o++] = l.length;
    out.set(l, o);
    o += l.length;
  }
  out[o] = 0;
  return out;
}

/** Skips one resource record; returns its type, class, ttl, rdata span and the offset after it. */
function readRecord(buf: Uint8Array, off: number, wantName: boolean) {
  const name = readName(buf, off, wantName);
  let p = name.end;
  const type = u16(buf, p);
  const klass = u16(buf, p + 2);
  const ttl = u32(buf, p + 4);
  const rdlen = u16(buf, p + 8);
  p += 10;
  if (p + rdlen > buf.length) fail('truncated rdata');
  return { labels: name.labels, type, klass, ttl, rdata: p, rdlen, next: p + rdlen };
}

/**
 * Decodes a query. Policy: exactly one question, QR clear, any opcode (the caller decides what it
 * implements). The answer and authority sections are skipped (validated only as far as walking
 * them) and the additional section is walked only when ARCOUNT > 0, to find an EDNS0 OPT record;
 * two OPT records, or an OPT not owned by the root, are malformed. Bytes after the last section
 * that had to be walked are ignored, trailing garbage included: being lenient there costs
 * nothing, since nothing past that point is ever read or echoed.
 */
export function decodeQuery(buf: Uint8Array): DnsQuery {
  const h = decodeHeader(buf);
  if (h.flags.qr) fail('QR bit set: not a query');
  if (h.qdcount !== 1) fail(`qdcount ${h.qdcount} != 1`);
  const qn = readName(buf, DNS_HEADER_LEN, true);
  const qtype = u16(buf, qn.end);
  const qclass = u16(buf, qn.end + 2);
  let p = qn.end + 4;
  const nameWire = labelsToWire(qn.labels);
  const question = new Uint8Array(nameWire.length + 4);
  question.set(nameWire, 0);
  question.set(buf.subarray(qn.end, qn.end + 4), nameWire.length);

  let edns: DnsEdns | null = null;
  if (h.arcount > 0) {
    const skip = h.ancount + h.nscount;
    for (let i = 0; i < skip; i++) p = readRecord(buf, p, false).next;
    for (let i = 0; i < h.arcount; i++) {
      const rr = readRecord(buf, p, true);
      p = rr.next;
      if (rr.type !== TYPE_OPT) continue;
      if (edns) fail('more than one OPT record');
      if (rr.labels.length !== 0) fail('OPT record not owned by the root');
      edns = {
        udpSize: Math.max(MIN_UDP_SIZE, rr.klass),
        version: (rr.ttl >>> 16) & 0xff,
        dnssecOk: (rr.ttl & 0x8000) !== 0,
      };
    }
  }
  return { id: h.id, flags: h.flags, name: presentName(qn.labels), qtype, qclass, question, edns };
}

/** Normalises a presentation name: lowercase, no trailing dot. */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** Wire form of a plain (unescaped) text name; throws RangeError on an empty or oversized label. */
export function encodeName(name: string): Uint8Array {
  const text = name.endsWith('.') ? name.slice(0, -1) : name;
  if (text === '') return new Uint8Array([0]);
  const labels = text.split('.').map((l) => Buffer.from(l, 'utf8'));
  for (const l of labels) {
    if (l.length === 0 || l.length > MAX_LABEL) throw new RangeError(`bad label in name: ${JSON.stringify(name)}`);
  }
  const wire = labelsToWire(labels);
  if (wire.length > MAX_NAME_WIRE) throw new RangeError(`name too long: ${name.length} chars`);
  return wire;
}

function typeCode(type: 'A' | 'AAAA' | number): number {
  if (type === 'A') return TYPE_A;
  if (type === 'AAAA') return TYPE_AAAA;
  if (!Number.isInteger(type) || type < 0 || type > 0xffff) throw new RangeError(`bad qtype ${type}`);
  return type;
}

export interface EncodeQueryOptions {
  /** @default true */
  rd?: boolean;
  /** Adds an EDNS0 OPT record advertising this UDP payload size. @default none */
  udpSize?: number;
  /** @default 1 (IN) */
  qclass?: number;
}

/** Builds a standard query with one question (tests, clients, health checks). The id is random by default. */
export function encodeQuery(
  name: string,
  type: 'A' | 'AAAA' | number,
  id: number = randomInt(0, 0x10000),
  opts: EncodeQueryOptions = {},
): Buffer {
  const wire = encodeName(name);
  const opt = opts.udpSize !== undefined ? 11 : 0;
  const out = Buffer.alloc(DNS_HEADER_LEN + wire.length + 4 + opt);
  out.writeUInt16BE(id & 0xffff, 0);
  out.writeUInt16BE(opts.rd === false ? 0 : 0x0100, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(opt ? 1 : 0, 10);
  out.set(wire, DNS_HEADER_LEN);
  let p = DNS_HEADER_LEN + wire.length;
  out.writeUInt16BE(typeCode(type), p);
  out.writeUInt16BE(opts.qclass ?? CLASS_IN, p + 2);
  p += 4;
  if (opt) writeOpt(out, p, opts.udpSize!, 0, false);
  return out;
}

function writeOpt(out: Buffer, p: number, udpSize: number, extRcode: number, dnssecOk: boolean): void {
  out[p] = 0; // root owner
  out.writeUInt16BE(TYPE_OPT, p + 1);
  out.writeUInt16BE(udpSize & 0xffff, p + 3);
  out[p + 5] = extRcode & 0xff;
  out[p + 6] = 0; // version 0
  out.writeUInt16BE(dnssecOk ? 0x8000 : 0, p + 7);
  out.writeUInt16BE(0, p + 9); // no options
}

/** IPv4/IPv6 text to network bytes; throws TypeError on anything else. */
export function addressBytes(address: string): Uint8Array {
  if (isIPv4(address)) return Uint8Array.from(address.split('.').map(Number));
  const text = address.split('%')[0]!;
  if (!isIPv6(text)) throw new TypeError(`not an IP address: ${address}`);
  let groups: number[];
  let tail: number[] = [];
  let body = text;
  const lastColon = body.lastIndexOf(':');
  if (body.includes('.', lastColon)) {
    const v4 = Uint8Array.from(body.slice(lastColon + 1).split('.').map(Number));
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
    body = body.slice(0, lastColon + 1);
    if (body.endsWith(':') && !body.endsWith('::')) body = body.slice(0, -1);
  }
  const hex = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const dbl = body.indexOf('::');
  if (dbl >= 0) {
    const head = hex(body.slice(0, dbl));
    const rest = [...hex(body.slice(dbl + 2)), ...tail];
    groups = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  } else {
    groups = [...hex(body), ...tail];
  }
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** Network bytes to text (dotted quad, or IPv6 as Node prints it): the protocol layer's formatter. */
export function formatAddress(b: Uint8Array): string {
  if (b.length !== 4 && b.length !== 16) throw new TypeError(`bad address length ${b.length}`);
  return formatIp(b);
}

/** The largest response the client accepts over UDP. */
export function clientUdpLimit(q: Pick<DnsQuery, 'edns'>): number {
  return q.edns ? Math.max(MIN_UDP_SIZE, q.edns.udpSize) : MIN_UDP_SIZE;
}

/**
 * Builds the response to `q`: id and question echoed, RD copied, RA set, AA when authoritative,
 * each answer owned by a compression pointer to the question name. If the query carried OPT the
 * response carries one too (our UDP size, DO copied, extended RCODE for BADVERS). If the result
 * would exceed the client's UDP size the answers are dropped and TC set.
 */
export function encodeResponse(q: DnsQuery, r: DnsResponseSpec): Buffer {
  const code = RCODES[r.rcode];
  if (code === undefined) throw new TypeError(`unknown rcode ${String(r.rcode)}`);
  if (code > 15 && !q.edns) throw new TypeError(`${r.rcode} needs an EDNS0 query`);
  const rdatas = r.answers.map((a) => {
    const bytes = addressBytes(a.address);
    if (bytes.length !== (a.type === 'A' ? 4 : 16)) throw new TypeError(`${a.address} is not a valid ${a.type} address`);
    if (!Number.isInteger(a.ttl) || a.ttl < 0 || a.ttl > 0x7fffffff) throw new RangeError(`bad ttl ${a.ttl}`);
    return bytes;
  });
  const optLen = q.edns ? 11 : 0;
  const fixed = DNS_HEADER_LEN + q.question.length + optLen;
  let size = fixed;
  for (const d of rdatas) size += 12 + d.length;
  const tc = size > clientUdpLimit(q);
  const answers = tc ? [] : r.answers;
  const out = Buffer.alloc(tc ? fixed : size);
  out.writeUInt16BE(q.id & 0xffff, 0);
  let w = 0x8000 | ((q.flags.opcode & 0xf) << 11) | 0x0080 | (code & 0xf);
  if (r.authoritative) w |= 0x0400;
  if (tc) w |= 0x0200;
  if (q.flags.rd) w |= 0x0100;
  out.writeUInt16BE(w, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(answers.length, 6);
  out.writeUInt16BE(optLen ? 1 : 0, 10);
  out.set(q.question, DNS_HEADER_LEN);
  let p = DNS_HEADER_LEN + q.question.length;
  answers.forEach((a, i) => {
    const d = rdatas[i]!;
    out.writeUInt16BE(0xc000 | DNS_HEADER_LEN, p);
    out.writeUInt16BE(a.type === 'A' ? TYPE_A : TYPE_AAAA, p + 2);
    out.writeUInt16BE(CLASS_IN, p + 4);
    out.writeUInt32BE(a.ttl, p + 6);
    out.writeUInt16BE(d.length, p + 10);
    out.set(d, p + 12);
    p += 12 + d.length;
  });
  if (q.edns) writeOpt(out, p, OUR_UDP_SIZE, code >> 4, q.edns.dnssecOk);
  return out;
}

/**
 * A header-only response (QDCOUNT 0) for a query whose question could not be read (FORMERR) or
 * whose opcode is not implemented (NOTIMP): id, opcode and RD echoed, RA set.
 */
export function encodeHeaderOnlyResponse(h: Pick<DnsHeader, 'id' | 'flags'>, rcode: Rcode): Buffer {
  const code = RCODES[rcode];
  if (code === undefined || code > 15) throw new TypeError(`rcode ${rcode} needs a question`);
  const out = Buffer.alloc(DNS_HEADER_LEN);
  out.writeUInt16BE(h.id & 0xffff, 0);
  out.writeUInt16BE(0x8000 | ((h.flags.opcode & 0xf) << 11) | (h.flags.rd ? 0x0100 : 0) | 0x0080 | code, 2);
  return out;
}

/**
 * Minimal response decoder (tests, clients, health checks): header, the question if there is
 * one, and the A/AAAA records of class IN in the answer section. Throws DecodeError on malformed input.
 */
export function decodeResponse(buf: Uint8Array): DnsResponse {
  const h = decodeHeader(buf);
  if (!h.flags.qr) fail('QR bit clear: not a response');
  if (h.qdcount > 1) fail(`qdcount ${h.qdcount} > 1`);
  let p = DNS_HEADER_LEN;
  let question: DnsResponse['question'] = null;
  if (h.qdcount === 1) {
    const qn = readName(buf, p, true);
    question = { name: presentName(qn.labels), qtype: u16(buf, qn.end), qclass: u16(buf, qn.end + 2) };
    p = qn.end + 4;
  }
  const answers: DecodedAnswer[] = [];
  for (let i = 0; i < h.ancount; i++) {
    const rr = readRecord(buf, p, true);
    p = rr.next;
    if (rr.klass !== CLASS_IN || (rr.type !== TYPE_A && rr.type !== TYPE_AAAA)) continue;
    const want = rr.type === TYPE_A ? 4 : 16;
    if (rr.rdlen !== want) fail(`bad rdlength ${rr.rdlen} for ${rr.type === TYPE_A ? 'A' : 'AAAA'}`);
    answers.push({
      name: presentName(rr.labels),
      type: rr.type === TYPE_A ? 'A' : 'AAAA',
      address: formatAddress(buf.subarray(rr.rdata, rr.rdata + rr.rdlen)),
      ttl: rr.ttl,
    });
  }
  return { id: h.id, flags: h.flags, rcode: h.flags.rcode, question, answers };
}
