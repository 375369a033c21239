// Unit tests for plain frames and the FrameReader stream deframer used on the AS TLS connection.
// Also shows that the header codec supports sealing as specified (header bytes as AES-GCM AAD).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { DecodeError } from '../../../src/util/errors.js';
import { AEAD_TAG_LEN, HEADER_LEN, MAX_BODY_LEN, MessageType, PROTOCOL_VERSION, Status } from '../../../src/protocol/constants.js';
import { type Frame, FrameReader, decodeFrame, encodeFrame } from '../../../src/protocol/frame.js';
import { type Header, encodeHeader, splitFrame } from '../../../src/protocol/header.js';
import { decodeBody, decodeMessage, encodeBody, encodeMessage } from '../../../src/protocol/messages.js';
import { prng } from '../../harness/prng.js';

const SEED = Number(process.env['CYPHONIC_SEED'] ?? 0xf4a3e);

function frame(i: number, bodyLen: number): Buffer {
  const body = Buffer.alloc(bodyLen);
  for (let j = 0; j < bodyLen; j++) body[j] = (i + j) & 0xff;
  return encodeFrame({ type: MessageType.Capsule, status: Status.Ok, txid: i, seq: BigInt(i), id: 3n }, body);
}

function same(frames: Frame[], raw: Buffer[]): void {
  assert.equal(frames.length, raw.length);
  frames.forEach((f, i) => assert.deepEqual(Buffer.concat([encodeHeader(f.header), f.body]), raw[i]));
}

test('encodeFrame sets version and length; decodeFrame round-trips', () => {
  const body = Buffer.from('hello');
  const f = encodeFrame({ type: MessageType.Nack, status: Status.Replay, txid: 9, seq: 10n, id: 11n }, body);
  assert.equal(f.length, HEADER_LEN + 5);
  const d = decodeFrame(f);
  assert.deepEqual(d.header, { version: PROTOCOL_VERSION, type: MessageType.Nack, status: Status.Replay, txid: 9, seq: 10n, id: 11n, length: 5 });
  assert.deepEqual(d.body, body);
  assert.equal(d.body.buffer, f.buffer);
  assert.throws(() => encodeFrame({ type: MessageType.Capsule, status: 0, txid: 0, seq: 0n, id: 0n }, Buffer.alloc(MAX_BODY_LEN + 1)), RangeError);
  assert.equal(encodeFrame({ type: MessageType.Capsule, status: 0, txid: 0, seq: 0n, id: 0n }, Buffer.alloc(MAX_BODY_LEN)).length, HEADER_LEN + MAX_BODY_LEN);
});

test('decodeFrame requires the exact datagram length', () => {
  const f = frame(1, 10);
  assert.throws(() => decodeFrame(f.subarray(0, f.length - 1)), DecodeError);
  assert.throws(() => decodeFrame(Buffer.concat([f, Buffer.alloc(1)])), DecodeError);
  for (let n = 0; n < f.length; n++) assert.throws(() => decodeFrame(f.subarray(0, n)), DecodeError);
});

test('FrameReader: several frames in one chunk, then byte by byte', () => {
  const raw = [frame(1, 0), frame(2, 5), frame(3, 300)];
  const all = Buffer.concat(raw);
  same(new FrameReader().push(all), raw);

  const r = new FrameReader();
  const got: Frame[] = [];
  for (const byte of all) got.push(...r.push(Buffer.from([byte])));
  same(got, raw);
  assert.equal(r.buffered, 0);
});

test('FrameReader: random chunking of a long stream yields the same frames', () => {
  const rnd = prng(SEED);
  const raw = Array.from({ length: 200 }, (_, i) => frame(i, Math.floor(rnd() * (rnd() < 0.05 ? 70000 : 200)) % (MAX_BODY_LEN + 1)));
  const stream = Buffer.concat(raw);
  for (let round = 0; round < 5; round++) {
    const r = new FrameReader();
    const got: Frame[] = [];
    for (let off = 0; off < stream.length; ) {
      const n = 1 + Math.floor(rnd() * (rnd() < 0.5 ? 40 : 9000));
      got.push(...r.push(stream.subarray(off, off + n)));
      off += n;
    }
    same(got, raw);
    assert.equal(r.buffered, 0);
  }
});

test('FrameReader: buffered counts a partial frame; empty chunks are fine', () => {
  const f = frame(1, 100);
  const r = new FrameReader();
  assert.deepEqual(r.push(Buffer.alloc(0)), []);
  assert.deepEqual(r.push(f.subarray(0, 50)), []);
  assert.equal(r.buffered, 50);
  const out = r.push(f.subarray(50));
  assert.equal(out.length, 1);
  assert.equal(r.buffered, 0);
});

test('FrameReader: bodies do not alias the pushed chunks', () => {
  const f = frame(1, 8);
  const chunk = Buffer.from(f);
  const [got] = new FrameReader().push(chunk);
  chunk.fill(0);
  assert.deepEqual(got!.body, f.subarray(HEADER_LEN));
});

test('FrameReader: a bad header throws DecodeError and poisons the reader', () => {
  const good = frame(1, 4);
  const bad = Buffer.from(frame(2, 4));
  bad[0] = 9;
  const r = new FrameReader();
  assert.throws(
    () => r.push(Buffer.concat([good, bad])),
    (err: unknown) => err instanceof DecodeError && err.code === 'ERR_VERSION',
  );
  assert.throws(() => r.push(good), DecodeError);

  const t = Buffer.from(good);
  t[1] = 0x99;
  assert.throws(() => new FrameReader().push(t), (err: unknown) => err instanceof DecodeError && err.code === 'ERR_DECODE_TYPE');
  const z = Buffer.from(good);
  z[27] = 1;
  assert.throws(() => new FrameReader().push(z), (err: unknown) => err instanceof DecodeError && err.code === 'ERR_DECODE_HEADER');
});

test('FrameReader: oversize frames are refused as soon as the header arrives', () => {
  const r = new FrameReader({ maxBodyLen: 1024 });
  const big = frame(1, 2000);
  assert.throws(
    () => r.push(big.subarray(0, HEADER_LEN)),
    (err: unknown) => err instanceof DecodeError && err.code === 'ERR_FRAME_TOO_LARGE',
  );
  assert.equal(new FrameReader({ maxBodyLen: 1024 }).push(frame(1, 1024)).length, 1);
});

test('FrameReader: 5000 random streams yield frames or DecodeError only', () => {
  const rnd = prng(SEED + 1);
  for (let i = 0; i < 5000; i++) {
    const r = new FrameReader();
    const parts: Buffer[] = [];
    const n = Math.floor(rnd() * 4);
    for (let k = 0; k < n; k++) parts.push(frame(k, Math.floor(rnd() * 40)));
    const noise = Buffer.alloc(Math.floor(rnd() * 60));
    for (let j = 0; j < noise.length; j++) noise[j] = Math.floor(rnd() * 256);
    if (noise.length > 1 && rnd() < 0.5) noise[0] = PROTOCOL_VERSION;
    parts.splice(Math.floor(rnd() * (parts.length + 1)), 0, noise);
    const stream = Buffer.concat(parts);
    try {
      for (let off = 0; off < stream.length; ) {
        const len = 1 + Math.floor(rnd() * 50);
        for (const f of r.push(stream.subarray(off, off + len))) assert.equal(f.body.length, f.header.length);
        off += len;
      }
    } catch (err) {
      assert.ok(err instanceof DecodeError, `seed ${SEED + 1} iteration ${i}: ${String(err)}`);
    }
  }
});

test('FrameReader frames feed decodeMessage', () => {
  const f = encodeMessage({ type: MessageType.LoginRequest, status: 0, txid: 5, seq: 0n, id: 0n }, { clientVersion: 1 });
  const [got] = new FrameReader().push(f);
  const m = decodeMessage(got!);
  assert.equal(m.type, MessageType.LoginRequest);
  assert.deepEqual(m.body, { clientVersion: 1 });
});

test('sealed frames: header bytes work as AES-256-GCM associated data', () => {
  // Mirrors docs/PROTOCOL.md "Sealing"; the real implementation lives in the crypto layer.
  const commonKey = randomBytes(32);
  const k = Buffer.from(hkdfSync('sha256', commonKey, Buffer.alloc(0), 'cyphonic v1 node->cloud', 32));
  const plain = encodeBody(MessageType.RegistrationRequest, {
    endpoints: [{ address: '10.0.0.5', port: 30000 }],
    reRegistration: true,
  });
  const seq = (BigInt(Date.now()) << 16n) | 1n;
  const header: Header = {
    version: PROTOCOL_VERSION,
    type: MessageType.RegistrationRequest,
    status: 0,
    txid: 77,
    seq,
    id: 7n,
    length: plain.length + AEAD_TAG_LEN,
  };
  const aad = encodeHeader(header);
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(seq, 4);
  const c = createCipheriv('aes-256-gcm', k, nonce);
  c.setAAD(aad);
  const wire = Buffer.concat([aad, c.update(plain), c.final(), c.getAuthTag()]);

  const { header: h, headerBytes, body } = splitFrame(wire);
  assert.deepEqual(h, header);
  const n2 = Buffer.alloc(12);
  n2.writeBigUInt64BE(h.seq, 4);
  const d = createDecipheriv('aes-256-gcm', k, n2);
  d.setAAD(headerBytes);
  d.setAuthTag(body.subarray(body.length - AEAD_TAG_LEN));
  const opened = Buffer.concat([d.update(body.subarray(0, body.length - AEAD_TAG_LEN)), d.final()]);
  assert.deepEqual(decodeBody(h.type as MessageType.RegistrationRequest, opened), {
    endpoints: [{ address: '10.0.0.5', port: 30000 }],
    reRegistration: true,
  });
});
