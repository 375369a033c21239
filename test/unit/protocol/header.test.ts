// Unit tests for the 28-byte frame header codec and the protocol constants.
// Covers layout, range validation, every rejection path, truncations and seeded random-buffer fuzzing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DecodeError } from '../../../src/util/errors.js';
import {
  HEADER_LEN,
  MAX_BODY_LEN,
  MessageType,
  PROTOCOL_VERSION,
  STATUS_CODES,
  Status,
  isMessageType,
  messageTypeName,
  statusFromCode,
  statusName,
} from '../../../src/protocol/constants.js';
import {
  type Header,
  decodeHeader,
  decodeHeaderPrefix,
  encodeHeader,
  peekHeader,
  splitFrame,
} from '../../../src/protocol/header.js';
import { prng } from '../../harness/prng.js';

const SEED = Number(process.env['CYPHONIC_SEED'] ?? 0x5eed);

function isDecodeError(code?: string): (err: unknown) => boolean {
  return (err) => err instanceof DecodeError && (code === undefined || err.code === code);
}

const sample: Header = {
  version: PROTOCOL_VERSION,
  type: MessageType.RegistrationRequest,
  status: Status.NotRegistered,
  txid: 0xdeadbeef,
  seq: 0x0102030405060708n,
  id: 0x1112131415161718n,
  length: 3,
};

function frameOf(h: Header, body = Buffer.alloc(h.length, 0xaa)): Buffer {
  return Buffer.concat([encodeHeader(h), body]);
}

test('HEADER_LEN is 28 and constants are consistent', () => {
  assert.equal(HEADER_LEN, 28);
  assert.equal(PROTOCOL_VERSION, 1);
  assert.equal(MAX_BODY_LEN, 0xffff);
});

test('encodeHeader writes the documented byte layout', () => {
  const b = encodeHeader(sample);
  assert.equal(b.length, HEADER_LEN);
  assert.equal(
    b.toString('hex'),
    '01' + '10' + '0009' + 'deadbeef' + '0102030405060708' + '1112131415161718' + '0003' + '0000',
  );
});

test('header round-trips, including extreme values', () => {
  const cases: Header[] = [
    sample,
    { version: 1, type: MessageType.Ack, status: 0, txid: 0, seq: 0n, id: 0n, length: 0 },
    {
      version: 1,
      type: MessageType.Nack,
      status: 0xffff,
      txid: 0xffffffff,
      seq: (1n << 64n) - 1n,
      id: (1n << 64n) - 1n,
      length: MAX_BODY_LEN,
    },
  ];
  for (const h of cases) {
    const f = frameOf(h);
    assert.deepEqual(decodeHeader(f), h);
    assert.deepEqual(decodeHeaderPrefix(f), h);
    assert.deepEqual(peekHeader(f.subarray(0, HEADER_LEN)), h);
  }
});

test('encodeHeader writes into a caller buffer at an offset', () => {
  const out = Buffer.alloc(40, 0xee);
  const ret = encodeHeader(sample, out, 5);
  assert.equal(ret, out);
  assert.equal(out[4], 0xee);
  assert.equal(out[5 + HEADER_LEN], 0xee);
  assert.deepEqual(peekHeader(out.subarray(5)), sample);
  assert.throws(() => encodeHeader(sample, Buffer.alloc(HEADER_LEN), 1), RangeError);
  assert.throws(() => encodeHeader(sample, Buffer.alloc(HEADER_LEN - 1)), RangeError);
  assert.throws(() => encodeHeader(sample, out, -1), RangeError);
});

test('encodeHeader rejects out-of-range fields with RangeError', () => {
  const bad: Array<Partial<Record<keyof Header, unknown>>> = [
    { version: 256 },
    { version: -1 },
    { type: 0x99 },
    { type: 1.5 },
    { status: 0x10000 },
    { txid: 0x100000000 },
    { txid: -1 },
    { txid: Number.NaN },
    { seq: -1n },
    { seq: 1n << 64n },
    { seq: 1 },
    { id: 1n << 64n },
    { id: -5n },
    { length: MAX_BODY_LEN + 1 },
    { length: -1 },
  ];
  for (const patch of bad) {
    assert.throws(() => encodeHeader({ ...sample, ...patch } as Header), RangeError, JSON.stringify(Object.keys(patch)));
  }
});

test('decodeHeader rejects short, wrong version, unknown type, reserved bits, wrong length', () => {
  const f = frameOf(sample);
  assert.throws(() => decodeHeader(f.subarray(0, HEADER_LEN - 1)), isDecodeError('ERR_DECODE_HEADER'));
  assert.throws(() => decodeHeader(Buffer.alloc(0)), isDecodeError('ERR_DECODE_HEADER'));

  const v = Buffer.from(f);
  v[0] = 2;
  assert.throws(() => decodeHeader(v), isDecodeError('ERR_VERSION'));
  v[0] = 0;
  assert.throws(() => decodeHeader(v), isDecodeError('ERR_VERSION'));

  const t = Buffer.from(f);
  t[1] = 0x99;
  assert.throws(() => decodeHeader(t), isDecodeError('ERR_DECODE_TYPE'));
  t[1] = 0;
  assert.throws(() => decodeHeader(t), isDecodeError('ERR_DECODE_TYPE'));

  for (const i of [26, 27]) {
    const r = Buffer.from(f);
    r[i] = 1;
    assert.throws(() => decodeHeader(r), isDecodeError('ERR_DECODE_HEADER'));
  }

  assert.throws(() => decodeHeader(Buffer.concat([f, Buffer.from([0])])), isDecodeError('ERR_DECODE_HEADER'));
  assert.throws(() => decodeHeader(f.subarray(0, f.length - 1)), isDecodeError('ERR_DECODE_HEADER'));
});

test('decodeHeaderPrefix allows trailing bytes but not a short body', () => {
  const f = frameOf(sample);
  const more = Buffer.concat([f, Buffer.from('next frame')]);
  assert.deepEqual(decodeHeaderPrefix(more), sample);
  assert.throws(() => decodeHeaderPrefix(f.subarray(0, f.length - 1)), isDecodeError('ERR_DECODE_HEADER'));
});

test('every truncation of a valid frame is rejected', () => {
  const f = frameOf({ ...sample, length: 10 });
  for (let n = 0; n < f.length; n++) {
    assert.throws(() => decodeHeader(f.subarray(0, n)), isDecodeError(), `length ${n}`);
    assert.throws(() => decodeHeaderPrefix(f.subarray(0, n)), isDecodeError(), `prefix length ${n}`);
  }
});

test('splitFrame returns zero-copy views; headerBytes are the AAD', () => {
  const f = frameOf(sample, Buffer.from([1, 2, 3]));
  const { header, headerBytes, body } = splitFrame(f);
  assert.deepEqual(header, sample);
  assert.equal(headerBytes.buffer, f.buffer);
  assert.equal(body.buffer, f.buffer);
  assert.equal(headerBytes.byteOffset, f.byteOffset);
  assert.equal(body.byteOffset, f.byteOffset + HEADER_LEN);
  assert.deepEqual(headerBytes, encodeHeader(sample));
  assert.deepEqual([...body], [1, 2, 3]);
});

test('decoders accept a plain Uint8Array', () => {
  const f = frameOf(sample);
  const u = new Uint8Array(f.length + 4).subarray(2, 2 + f.length);
  u.set(f);
  assert.deepEqual(decodeHeader(u), sample);
  const s = splitFrame(u);
  assert.ok(Buffer.isBuffer(s.body));
  assert.equal(s.body.length, 3);
});

test('5000 random buffers decode to a header or throw DecodeError', () => {
  const rnd = prng(SEED);
  for (let i = 0; i < 5000; i++) {
    const len = Math.floor(rnd() * 48);
    const b = Buffer.alloc(len);
    for (let j = 0; j < len; j++) b[j] = Math.floor(rnd() * 256);
    // Make a share of them get past the version/type checks.
    if (len > 1 && rnd() < 0.5) {
      b[0] = PROTOCOL_VERSION;
      b[1] = MessageType.Keepalive;
    }
    if (len >= HEADER_LEN && rnd() < 0.3) {
      b.writeUInt16BE(0, 26);
      b.writeUInt16BE(len - HEADER_LEN, 24);
    }
    try {
      const h = decodeHeader(b);
      assert.equal(h.length, len - HEADER_LEN);
      assert.deepEqual(encodeHeader(h), b.subarray(0, HEADER_LEN));
    } catch (err) {
      assert.ok(err instanceof DecodeError, `seed ${SEED} iteration ${i}: ${String(err)}`);
    }
  }
});

test('5000 bit/byte mutations of a valid frame decode or throw DecodeError', () => {
  const rnd = prng(SEED + 1);
  const f = frameOf({ ...sample, length: 4 });
  for (let i = 0; i < 5000; i++) {
    const m = Buffer.from(f);
    const pos = Math.floor(rnd() * m.length);
    if (rnd() < 0.5) m[pos] = m[pos]! ^ (1 << Math.floor(rnd() * 8));
    else m[pos] = Math.floor(rnd() * 256);
    try {
      const h = decodeHeader(m);
      assert.deepEqual(encodeHeader(h), m.subarray(0, HEADER_LEN));
    } catch (err) {
      assert.ok(err instanceof DecodeError, `seed ${SEED} iteration ${i}: ${String(err)}`);
    }
  }
});

test('status codes: complete, stable strings, reverse lookup', () => {
  const values = Object.values(Status).filter((v): v is number => typeof v === 'number');
  assert.equal(values.length, 15);
  for (const s of values) {
    assert.match(STATUS_CODES[s as Status], /^(OK|ERR_[A-Z_]+)$/);
    assert.equal(statusName(s), STATUS_CODES[s as Status]);
    assert.equal(statusFromCode(statusName(s)), s);
  }
  assert.equal(statusName(Status.TokenUsed), 'ERR_TOKEN_USED');
  assert.equal(statusName(Status.Ok), 'OK');
  assert.equal(statusName(999), 'ERR_STATUS_999');
  assert.equal(statusFromCode('ERR_NOPE'), undefined);
  assert.equal(new Set(Object.values(STATUS_CODES)).size, values.length);
});

test('message types: lookup helpers', () => {
  assert.ok(isMessageType(0x40));
  assert.ok(!isMessageType(0x41));
  assert.ok(!isMessageType(0));
  assert.equal(messageTypeName(MessageType.RouteDirectionInitiator), 'RouteDirectionInitiator');
  assert.equal(messageTypeName(0x99), 'type 0x99');
});
