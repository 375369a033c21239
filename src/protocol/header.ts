// Fixed 28-byte big-endian frame header shared by every cyphonic message (plain and sealed).
// Sealed frames use the encoded header bytes as AEAD associated data, so this codec never looks at the body.

import { DecodeError } from '../util/errors.js';
import { HEADER_LEN, MAX_BODY_LEN, MessageType, PROTOCOL_VERSION, isMessageType } from './constants.js';
import { readU64BE, writeU64BE } from '../util/u64.js';

/*
 * Header layout (HEADER_LEN = 28 bytes, all integers big-endian):
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |  version (u8) |   type (u8)   |          status (u16)         |  bytes 0-3
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    transaction id (u32)                       |  bytes 4-7
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                                                               |  bytes 8-15
 *  +                        sequence (u64)                         +  AEAD nonce counter
 *  |                                                               |  for sealed messages
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                                                               |  bytes 16-23
 *  +                    node-or-path id (u64)                      +  node id: node<->cloud
 *  |                                                               |  path id: node<->node/TRS
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |        body length (u16)      |     reserved (u16, zero)      |  bytes 24-27
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * body length = bytes following the header (for sealed frames: ciphertext + 16-byte tag).
 */

/** Byte offsets of the header fields (the diagram above), for code that reads frames in place (the data plane). */
export const HEADER_OFFSETS = {
  version: 0,
  type: 1,
  status: 2,
  txid: 4,
  seq: 8,
  id: 16,
  length: 24,
  reserved: 26,
} as const;

const OFF_VERSION = HEADER_OFFSETS.version;
const OFF_TYPE = HEADER_OFFSETS.type;
const OFF_STATUS = HEADER_OFFSETS.status;
const OFF_TXID = HEADER_OFFSETS.txid;
const OFF_SEQ = HEADER_OFFSETS.seq;
const OFF_ID = HEADER_OFFSETS.id;
const OFF_LENGTH = HEADER_OFFSETS.length;
const OFF_RESERVED = HEADER_OFFSETS.reserved;

const U64_MAX = (1n << 64n) - 1n;

export interface Header {
  version: number;
  type: MessageType;
  /** Status (u16); unknown values are carried through, see statusName(). */
  status: number;
  txid: number;
  seq: bigint;
  id: bigint;
  /** Number of body bytes following the header (sealed: ciphertext + tag). */
  length: number;
}

function checkUint(name: string, v: unknown, max: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new RangeError(`header ${name} out of range: ${String(v)}`);
  }
}

function checkU64(name: string, v: unknown): void {
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) {
    throw new RangeError(`header ${name} must be a bigint in [0, 2^64): ${String(v)}`);
  }
}

/**
 * Write `h` as HEADER_LEN bytes into `out` at `offset` (or into a fresh buffer) and return the buffer written to.
 * Throws RangeError for out-of-range fields or an unknown message type.
 */
export function encodeHeader(h: Header, out?: Buffer, offset = 0): Buffer {
  checkUint('version', h.version, 0xff);
  checkUint('type', h.type, 0xff);
  if (!isMessageType(h.type)) throw new RangeError(`header type unknown: ${h.type}`);
  checkUint('status', h.status, 0xffff);
  checkUint('txid', h.txid, 0xffffffff);
  checkU64('seq', h.seq);
  checkU64('id', h.id);
  checkUint('length', h.length, MAX_BODY_LEN);
  const buf = out ?? Buffer.alloc(HEADER_LEN);
  if (!Number.isInteger(offset) || offset < 0 || offset + HEADER_LEN > buf.length) {
    throw new RangeError(`header does not fit at offset ${offset} of a ${buf.length}-byte buffer`);
  }
  buf.writeUInt8(h.version, offset + OFF_VERSION);
  buf.writeUInt8(h.type, offset + OFF_TYPE);
  buf.writeUInt16BE(h.status, offset + OFF_STATUS);
  buf.writeUInt32BE(h.txid, offset + OFF_TXID);
  writeU64BE(buf, h.seq, offset + OFF_SEQ);
  writeU64BE(buf, h.id, offset + OFF_ID);
  buf.writeUInt16BE(h.length, offset + OFF_LENGTH);
  buf.writeUInt16BE(0, offset + OFF_RESERVED);
  return buf;
}

function asBuffer(buf: Uint8Array): Buffer {
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Parse and validate the first HEADER_LEN bytes; does not look at what follows. */
function parseHeader(b: Buffer): Header {
  if (b.length < HEADER_LEN) {
    throw new DecodeError(`frame too short for header: ${b.length} < ${HEADER_LEN}`, 'ERR_DECODE_HEADER');
  }
  const version = b.readUInt8(OFF_VERSION);
  if (version !== PROTOCOL_VERSION) {
    throw new DecodeError(`unsupported protocol version ${version} (want ${PROTOCOL_VERSION})`, 'ERR_VERSION');
  }
  const type = b.readUInt8(OFF_TYPE);
  if (!isMessageType(type)) {
    throw new DecodeError(`unknown message type 0x${type.toString(16).padStart(2, '0')}`, 'ERR_DECODE_TYPE');
  }
  if (b.readUInt16BE(OFF_RESERVED) !== 0) throw new DecodeError('header reserved bytes not zero', 'ERR_DECODE_HEADER');
  return {
    version,
    type,
    status: b.readUInt16BE(OFF_STATUS),
    txid: b.readUInt32BE(OFF_TXID),
    seq: readU64BE(b, OFF_SEQ),
    id: readU64BE(b, OFF_ID),
    length: b.readUInt16BE(OFF_LENGTH),
  };
}

/**
 * Decode the header of one whole datagram: `buf` must be exactly header + body
 * (length field == buf.length - HEADER_LEN). Throws DecodeError
 * (ERR_DECODE_HEADER, ERR_VERSION, ERR_DECODE_TYPE).
 */
export function decodeHeader(buf: Uint8Array): Header {
  const h = parseHeader(asBuffer(buf));
  if (h.length !== buf.length - HEADER_LEN) {
    throw new DecodeError(
      `header length ${h.length} does not match body of ${buf.length - HEADER_LEN} bytes`,
      'ERR_DECODE_HEADER',
    );
  }
  return h;
}

/**
 * Decode the header at the start of a stream buffer: only requires the whole frame
 * (HEADER_LEN + length bytes) to be present; extra bytes after it are the next frame.
 */
export function decodeHeaderPrefix(buf: Uint8Array): Header {
  const h = parseHeader(asBuffer(buf));
  if (buf.length < HEADER_LEN + h.length) {
    throw new DecodeError(
      `frame truncated: need ${HEADER_LEN + h.length} bytes, have ${buf.length}`,
      'ERR_DECODE_HEADER',
    );
  }
  return h;
}

/**
 * Validate the header at the start of `buf` without requiring the body to be present
 * (for stream readers that want to reject bad headers before buffering a body).
 */
export function peekHeader(buf: Uint8Array): Header {
  return parseHeader(asBuffer(buf));
}

/** Split one whole datagram into header, raw header bytes (AEAD AAD) and body — zero-copy subarrays. */
export function splitFrame(buf: Uint8Array): { header: Header; headerBytes: Buffer; body: Buffer } {
  const b = asBuffer(buf);
  const header = decodeHeader(b);
  return { header, headerBytes: b.subarray(0, HEADER_LEN), body: b.subarray(HEADER_LEN) };
}
