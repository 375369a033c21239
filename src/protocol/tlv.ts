// Schema-driven TLV body codec: each field is tag u8, length u16 BE, value; schemas map tags to typed JS fields.
// Pure and deterministic: encoding follows schema order; decoding checks every length before reading.

import { DecodeError } from '../util/errors.js';
import { MAX_BODY_LEN, TLV_HEADER_LEN } from './constants.js';
import { type Endpoint, isValidPort } from './endpoint.js';
import { formatIp, formatIp4, formatIp6, parseIp4Into, parseIp6Into } from './ip.js';
import { readU64BE, writeU64BE } from '../util/u64.js';

export type FieldKind =
  | 'u8'
  | 'u16'
  | 'u32'
  | 'u64'
  | 'id'
  | 'bool'
  | 'bytes'
  | 'string'
  | 'ip4'
  | 'ip6'
  | 'ip'
  | 'endpoint';

/** One field of a message schema. `N` restricts `name` to the keys of the message's TS type. */
export interface FieldSpec<N extends string = string> {
  /** Wire tag, 1..255, unique within the schema. */
  tag: number;
  name: N;
  kind: FieldKind;
  /** May be absent (JS value undefined). */
  optional?: boolean;
  /** Zero or more TLVs with this tag, in order; JS value is an array (empty when absent). */
  repeated?: boolean;
  /** bytes/string: exact value length in bytes. */
  size?: number;
  /** bytes/string: maximum value length in bytes (default: the u16 limit). */
  maxSize?: number;
  /** repeated: maximum number of entries. */
  maxCount?: number;
}

/** A message schema: fields in encoding order. */
export type Schema<T = Record<string, unknown>> = readonly FieldSpec<Extract<keyof T, string>>[];

const BODY = 'ERR_DECODE_BODY';
const U64_MAX = (1n << 64n) - 1n;
const MAX_VALUE_LEN = 0xffff;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

interface CompiledSchema {
  byTag: Map<number, FieldSpec>;
}

const compiled = new WeakMap<Schema<never>, CompiledSchema>();

/** Validate a schema once (unique tags/names, sane sizes) and index it by tag. Throws TypeError on a bad schema. */
function compile(schema: Schema<never>): CompiledSchema {
  let c = compiled.get(schema);
  if (c) return c;
  const byTag = new Map<number, FieldSpec>();
  const names = new Set<string>();
  for (const f of schema as readonly FieldSpec[]) {
    if (!Number.isInteger(f.tag) || f.tag < 1 || f.tag > 255) throw new TypeError(`schema: bad tag ${f.tag}`);
    if (byTag.has(f.tag)) throw new TypeError(`schema: duplicate tag ${f.tag}`);
    if (names.has(f.name)) throw new TypeError(`schema: duplicate name ${f.name}`);
    if (f.optional && f.repeated) throw new TypeError(`schema: ${f.name} cannot be both optional and repeated`);
    if ((f.size !== undefined || f.maxSize !== undefined) && f.kind !== 'bytes' && f.kind !== 'string') {
      throw new TypeError(`schema: size limits only apply to bytes/string (${f.name})`);
    }
    byTag.set(f.tag, f);
    names.add(f.name);
  }
  c = { byTag };
  compiled.set(schema, c);
  return c;
}

// ───────────────────────────── encode ─────────────────────────────

/**
 * Output buffer: one scratch buffer shared by every encode (a body never exceeds MAX_BODY_LEN, checked after each
 * TLV), grown only for the last TLV that crosses it; values are written straight into it (no buffer per value), and
 * finish() copies the body out into a zero-filled buffer of its own exact size, so no stale memory can
 * leak through `.buffer`. Encoding is synchronous and not reentrant (no value encoder calls encodeTlv), so one
 * scratch serves all.
 */
class Writer {
  private static scratch = Buffer.alloc(MAX_BODY_LEN + TLV_HEADER_LEN + MAX_VALUE_LEN);
  buf = Writer.scratch;
  off = 0;

  /** Room for `n` more bytes. */
  ensure(n: number): void {
    if (this.off + n <= this.buf.length) return;
    const next = Buffer.alloc(this.off + n);
    this.buf.copy(next, 0, 0, this.off);
    this.buf = next;
  }

  /** The TLV header of a value of `len` bytes (the value is written next, at `off`, with room ensured). */
  head(tag: number, len: number): void {
    this.ensure(TLV_HEADER_LEN + len);
    this.buf[this.off] = tag;
    this.buf[this.off + 1] = len >>> 8;
    this.buf[this.off + 2] = len & 0xff;
    this.off += TLV_HEADER_LEN;
  }

  bytes(v: Uint8Array): void {
    this.buf.set(v, this.off);
    this.off += v.length;
  }

  get length(): number {
    return this.off;
  }

  finish(): Buffer {
    const out = Buffer.alloc(this.off);
    this.buf.copy(out, 0, 0, this.off);
    return out;
  }
}

function encErr(f: FieldSpec, why: string): RangeError {
  return new RangeError(`encode ${f.name}: ${why}`);
}

function writeUint(w: Writer, f: FieldSpec, v: unknown, bytes: 1 | 2 | 4, max: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw encErr(f, `not a u${bytes * 8}: ${String(v)}`);
  w.head(f.tag, bytes);
  w.buf.writeUIntBE(v, w.off, bytes);
  w.off += bytes;
}

function checkSize(f: FieldSpec, len: number): void {
  if (f.size !== undefined && len !== f.size) throw encErr(f, `must be exactly ${f.size} bytes, got ${len}`);
  const max = Math.min(f.maxSize ?? MAX_VALUE_LEN, MAX_VALUE_LEN);
  if (len > max) throw encErr(f, `too long: ${len} > ${max} bytes`);
}

/**
 * An IP address's bytes, 4 for IPv4 and 16 for IPv6, in a scratch array (copied out before the next call), or
 * undefined when invalid. `family` 0: either, as parseIp decides.
 */
function ipBytes(v: unknown, family: 4 | 6 | 0): Uint8Array | undefined {
  if (typeof v !== 'string') return undefined;
  if (family === 4 || (family === 0 && !v.includes(':'))) return parseIp4Into(v, IP4_SCRATCH, 0) ? IP4_SCRATCH : undefined;
  return parseIp6Into(v, IP6_SCRATCH, 0) ? IP6_SCRATCH : undefined;
}
const IP4_SCRATCH = new Uint8Array(4);
const IP6_SCRATCH = new Uint8Array(16);

/** Encode field `f` with JS value `v` as one TLV at the writer's end. Throws RangeError on invalid input. */
function writeValue(w: Writer, f: FieldSpec, v: unknown): void {
  switch (f.kind) {
    case 'u8':
      return writeUint(w, f, v, 1, 0xff);
    case 'u16':
      return writeUint(w, f, v, 2, 0xffff);
    case 'u32':
      return writeUint(w, f, v, 4, 0xffffffff);
    case 'u64': {
      if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) throw encErr(f, `not a u64 bigint: ${String(v)}`);
      w.head(f.tag, 8);
      writeU64BE(w.buf, v, w.off);
      w.off += 8;
      return;
    }
    case 'id': {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw encErr(f, `not a safe non-negative integer: ${String(v)}`);
      w.head(f.tag, 8);
      w.buf.writeUInt32BE(Math.floor(v / 0x1_0000_0000), w.off);
      w.buf.writeUInt32BE(v >>> 0, w.off + 4);
      w.off += 8;
      return;
    }
    case 'bool':
      if (typeof v !== 'boolean') throw encErr(f, `not a boolean: ${String(v)}`);
      w.head(f.tag, 1);
      w.buf[w.off++] = v ? 1 : 0;
      return;
    case 'bytes': {
      if (!(v instanceof Uint8Array)) throw encErr(f, 'not a Buffer/Uint8Array');
      checkSize(f, v.length);
      w.head(f.tag, v.length);
      w.bytes(v);
      return;
    }
    case 'string': {
      if (typeof v !== 'string') throw encErr(f, 'not a string');
      if (!isWellFormed(v)) throw encErr(f, 'string has lone surrogates');
      const len = Buffer.byteLength(v, 'utf8');
      checkSize(f, len);
      w.head(f.tag, len);
      w.off += w.buf.write(v, w.off, len, 'utf8');
      return;
    }
    case 'ip4':
    case 'ip6':
    case 'ip': {
      const b = ipBytes(v, f.kind === 'ip4' ? 4 : f.kind === 'ip6' ? 6 : 0);
      if (!b) throw encErr(f, `not an ${f.kind === 'ip4' ? 'IPv4' : f.kind === 'ip6' ? 'IPv6' : 'IP'} address: ${String(v)}`);
      w.head(f.tag, b.length);
      w.bytes(b);
      return;
    }
    case 'endpoint': {
      if (typeof v !== 'object' || v === null) throw encErr(f, 'not an endpoint object');
      const e = v as Partial<Endpoint>;
      const addr = ipBytes(e.address, 0);
      if (!addr) throw encErr(f, `bad endpoint address: ${String(e.address)}`);
      if (!isValidPort(e.port)) throw encErr(f, `bad endpoint port: ${String(e.port)}`);
      w.head(f.tag, 1 + addr.length + 2);
      w.buf[w.off] = addr.length === 4 ? 4 : 6;
      w.buf.set(addr, w.off + 1);
      w.buf.writeUInt16BE(e.port, w.off + 1 + addr.length);
      w.off += 1 + addr.length + 2;
      return;
    }
  }
}

/** String.prototype.isWellFormed (no lone surrogates: what survives a UTF-8 round trip unchanged) where the runtime has it. */
const isWellFormed: (s: string) => boolean =
  typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === 'function'
    ? (s) => (s as unknown as { isWellFormed(): boolean }).isWellFormed()
    : (s) => Buffer.from(s, 'utf8').toString('utf8') === s;

/**
 * Encode `value` with `schema`: fields in schema order, repeated entries in array order.
 * Throws RangeError when a value is missing, of the wrong type or out of range, or the body exceeds MAX_BODY_LEN.
 */
export function encodeTlv<T>(schema: Schema<T>, value: T): Buffer {
  return encodeTlvAfter(null, schema, value);
}

/**
 * encodeTlv with `prefix` (already encoded TLVs) before the fields, in one buffer: the same bytes as concatenating
 * the two, and the same MAX_BODY_LEN limit on the whole. Throws RangeError like encodeTlv.
 */
export function encodeTlvAfter<T>(prefix: Uint8Array | null, schema: Schema<T>, value: T): Buffer {
  return write(prefix, schema, value).finish();
}

/**
 * encodeTlv's bytes as a view of the encoders' shared scratch buffer, not a buffer of their own: valid only until the
 * next encode, for a caller that copies them at once (sealFrame). Saves a buffer and a copy per message.
 */
export function encodeTlvTransient<T>(schema: Schema<T>, value: T): Buffer {
  const w = write(null, schema, value);
  return w.buf.subarray(0, w.off);
}

function write<T>(prefix: Uint8Array | null, schema: Schema<T>, value: T): Writer {
  compile(schema as Schema<never>);
  if (typeof value !== 'object' || value === null) throw new RangeError('encode: body must be an object');
  const obj = value as Record<string, unknown>;
  const w = new Writer();
  if (prefix) {
    if (prefix.length > MAX_BODY_LEN) throw new RangeError(`encoded body exceeds ${MAX_BODY_LEN} bytes`);
    w.bytes(prefix);
  }
  for (const f of schema as readonly FieldSpec[]) {
    const v = obj[f.name];
    if (f.repeated) {
      const arr = v === undefined ? [] : v;
      if (!Array.isArray(arr)) throw encErr(f, 'repeated field must be an array');
      if (f.maxCount !== undefined && arr.length > f.maxCount) throw encErr(f, `more than ${f.maxCount} entries`);
      for (const item of arr) writeValue(w, f, item);
    } else if (v === undefined) {
      if (!f.optional) throw encErr(f, 'required field missing');
    } else {
      writeValue(w, f, v);
    }
    if (w.length > MAX_BODY_LEN) throw new RangeError(`encoded body exceeds ${MAX_BODY_LEN} bytes`);
  }
  return w;
}

// ───────────────────────────── decode ─────────────────────────────

function decErr(f: FieldSpec, why: string): DecodeError {
  return new DecodeError(`field ${f.name} (tag ${f.tag}): ${why}`, BODY);
}

function expectLen(f: FieldSpec, v: Buffer, len: number): void {
  if (v.length !== len) throw decErr(f, `expected ${len} bytes, got ${v.length}`);
}

function checkDecodedSize(f: FieldSpec, len: number): void {
  if (f.size !== undefined && len !== f.size) throw decErr(f, `expected exactly ${f.size} bytes, got ${len}`);
  if (f.maxSize !== undefined && len > f.maxSize) throw decErr(f, `too long: ${len} > ${f.maxSize} bytes`);
}

/** Decode one TLV value (already bounds-checked slice) of field `f`. Throws DecodeError. */
function decodeValue(f: FieldSpec, v: Buffer): unknown {
  switch (f.kind) {
    case 'u8':
      expectLen(f, v, 1);
      return v.readUInt8(0);
    case 'u16':
      expectLen(f, v, 2);
      return v.readUInt16BE(0);
    case 'u32':
      expectLen(f, v, 4);
      return v.readUInt32BE(0);
    case 'u64':
      expectLen(f, v, 8);
      return readU64BE(v, 0);
    case 'id': {
      expectLen(f, v, 8);
      const hi = v.readUInt32BE(0);
      if (hi > 0x1f_ffff) throw decErr(f, 'id exceeds Number.MAX_SAFE_INTEGER'); // 2^53 - 1 has 21 high bits
      return hi * 0x1_0000_0000 + v.readUInt32BE(4);
    }
    case 'bool': {
      expectLen(f, v, 1);
      const b = v.readUInt8(0);
      if (b > 1) throw decErr(f, `bool must be 0 or 1, got ${b}`);
      return b === 1;
    }
    case 'bytes':
      checkDecodedSize(f, v.length);
      return Buffer.from(v); // copy: callers may keep keys/certs after the frame buffer is reused
    case 'string': {
      checkDecodedSize(f, v.length);
      try {
        return utf8.decode(v);
      } catch {
        throw decErr(f, 'invalid UTF-8');
      }
    }
    case 'ip4':
      expectLen(f, v, 4);
      return formatIp4(v);
    case 'ip6':
      expectLen(f, v, 16);
      return formatIp6(v);
    case 'ip':
      if (v.length !== 4 && v.length !== 16) throw decErr(f, `IP address must be 4 or 16 bytes, got ${v.length}`);
      return formatIp(v);
    case 'endpoint': {
      if (v.length < 1) throw decErr(f, 'empty endpoint');
      const family = v.readUInt8(0);
      const addrLen = family === 4 ? 4 : family === 6 ? 16 : -1;
      if (addrLen < 0) throw decErr(f, `bad endpoint family ${family}`);
      expectLen(f, v, 1 + addrLen + 2);
      const port = v.readUInt16BE(1 + addrLen);
      if (port === 0) throw decErr(f, 'endpoint port 0');
      return { address: formatIp(v.subarray(1, 1 + addrLen)), port } satisfies Endpoint;
    }
  }
}

/**
 * Walk the TLVs of `bytes` without a schema, checking they are well formed.
 * Returns [tag, value] pairs (value is a zero-copy subarray). Throws DecodeError on a partial TLV.
 */
export function readTlvs(bytes: Uint8Array): Array<[tag: number, value: Buffer]> {
  const b = asBuffer(bytes);
  const out: Array<[number, Buffer]> = [];
  for (let off = 0, end; off < b.length; off = end) {
    end = tlvEnd(b, off);
    out.push([b[off]!, b.subarray(off + TLV_HEADER_LEN, end)]);
  }
  return out;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Where the TLV at `off` ends (its value is b[off + TLV_HEADER_LEN, end)); DecodeError if it is partial. */
function tlvEnd(b: Buffer, off: number): number {
  if (b.length - off < TLV_HEADER_LEN) throw new DecodeError(`truncated TLV header at offset ${off}`, BODY);
  const len = (b[off + 1]! << 8) | b[off + 2]!;
  const start = off + TLV_HEADER_LEN;
  if (b.length - start < len) throw new DecodeError(`TLV tag ${b[off]!} at offset ${off} claims ${len} bytes, ${b.length - start} left`, BODY);
  return start + len;
}

/**
 * Decode `bytes` with `schema`. Unknown tags are skipped (but must be well formed); a repeated
 * non-repeated tag, a missing required field, a bad value or a partial TLV throws DecodeError (ERR_DECODE_BODY).
 */
export function decodeTlv<T>(schema: Schema<T>, bytes: Uint8Array): T {
  const { byTag } = compile(schema as Schema<never>);
  const out: Record<string, unknown> = {};
  for (const f of schema as readonly FieldSpec[]) if (f.repeated) out[f.name] = [];
  // The TLVs walked in place (as readTlvs walks them, without its list of pairs); a non-repeated field was seen when
  // `out` has it (no decoded value is undefined).
  const b = asBuffer(bytes);
  for (let off = 0, end; off < b.length; off = end) {
    end = tlvEnd(b, off);
    const f = byTag.get(b[off]!);
    if (!f) continue; // unknown tag: forward compatibility
    const v = decodeValue(f, b.subarray(off + TLV_HEADER_LEN, end));
    if (f.repeated) {
      const arr = out[f.name] as unknown[];
      if (f.maxCount !== undefined && arr.length >= f.maxCount) throw decErr(f, `more than ${f.maxCount} entries`);
      arr.push(v);
    } else {
      if (Object.hasOwn(out, f.name)) throw decErr(f, 'duplicate tag');
      out[f.name] = v;
    }
  }
  for (const f of schema as readonly FieldSpec[]) {
    if (!f.repeated && !f.optional && !Object.hasOwn(out, f.name)) throw decErr(f, 'required field missing');
  }
  return out as T;
}
