// Sealed frames: ChannelKeys' one-extract derivation gives the RFC 5869 keys (the same as hkdf()), and frames sealed
// with the native keys open with node:crypto ones and back (one after another too), and a tampered frame is refused.

import assert from 'node:assert/strict';
import { hkdfSync, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { ChannelKeys, INFO_DOWN, INFO_UP, openFrame, sealFrame } from '../../../src/channel/sealed.js';
import { AeadKey, hkdf } from '../../../src/crypto/index.js';
import { MessageType } from '../../../src/protocol/constants.js';
import { splitFrame } from '../../../src/protocol/header.js';
import { CryptoError } from '../../../src/util/errors.js';
import { loadNativeAddon } from '../../../src/native/addon.js';

describe('sealed frames', () => {
  for (const salt of [undefined, Buffer.from('a salt of some length'), randomBytes(64)]) {
    test(`ChannelKeys derive the RFC 5869 keys (salt ${salt ? salt.length : 'none'})`, () => {
      const secret = randomBytes(32);
      const labels = salt ? { salt, up: 'test up', down: 'test down' } : {};
      const keys = new ChannelKeys(secret, labels);
      const up = new AeadKey(hkdf(secret, salt ?? Buffer.alloc(0), salt ? 'test up' : INFO_UP, 32));
      const down = new AeadKey(hkdf(secret, salt ?? Buffer.alloc(0), salt ? 'test down' : INFO_DOWN, 32));
      const body = randomBytes(77);
      const fields = { type: MessageType.Keepalive, txid: 7, seq: 123_456_789n, id: 42n };
      for (const [ours, ref] of [[keys.up, up], [keys.down, down]] as const) {
        const a = sealFrame(ours, fields, body);
        assert.deepEqual(a, sealFrame(ref, fields, body), 'same bytes as the node:crypto key');
        const f = splitFrame(a);
        assert.deepEqual(openFrame(ref, f.header, f.headerBytes, f.body), body);
        assert.deepEqual(openFrame(ours, f.header, f.headerBytes, f.body), body);
        const bad = Buffer.from(a);
        bad[bad.length - 1]! ^= 1;
        const g = splitFrame(bad);
        assert.throws(() => openFrame(ours, g.header, g.headerBytes, g.body), CryptoError);
      }
    });
  }

  test("the cloud's keys (one context each) open up and seal down with the same bytes, and refuse the other way", () => {
    const secret = randomBytes(32);
    const both = new ChannelKeys(secret);
    const cloud = new ChannelKeys(secret, {}, 'cloud');
    const body = randomBytes(50);
    const fields = { type: MessageType.RegistrationRequest, txid: 3, seq: 987_654_321n, id: 9n };
    const up = splitFrame(sealFrame(both.up, fields, body));
    assert.deepEqual(openFrame(cloud.up, up.header, up.headerBytes, up.body), body);
    assert.deepEqual(sealFrame(cloud.down, fields, body), sealFrame(both.down, fields, body));
    assert.throws(() => sealFrame(cloud.up, fields, body), (e: unknown) => e instanceof CryptoError && e.code === 'ERR_AEAD_DIRECTION');
    const down = splitFrame(sealFrame(both.down, fields, body));
    assert.throws(() => openFrame(cloud.down, down.header, down.headerBytes, down.body), (e: unknown) => e instanceof CryptoError && e.code === 'ERR_AEAD_DIRECTION');
  });

  test('frames one after another (one reused nonce buffer, bodies sealed in place) match node:crypto frame for frame', () => {
    const secret = randomBytes(32);
    const native = new ChannelKeys(secret);
    const cloud = new ChannelKeys(secret, {}, 'cloud');
    const ref = new AeadKey(hkdf(secret, Buffer.alloc(0), INFO_DOWN, 32));
    const refUp = new AeadKey(hkdf(secret, Buffer.alloc(0), INFO_UP, 32));
    const frames: { frame: Buffer; body: Buffer }[] = [];
    for (let i = 0; i < 40; i++) {
      const body = Buffer.alloc(i * 3, i); // small bodies are V8 on-heap arrays, as the encoder's are
      const fields = { type: MessageType.KeepaliveAck, txid: i, seq: 1_000_000n + BigInt(i * 7), id: 5n };
      const a = sealFrame(i % 2 ? cloud.down : native.down, fields, body);
      assert.deepEqual(a, sealFrame(ref, fields, body), `frame ${i}`);
      assert.deepEqual(body, Buffer.alloc(i * 3, i), 'the body is left as it was');
      frames.push({ frame: sealFrame(refUp, fields, body), body });
    }
    // Opened out of order, each with its own sequence number in the nonce.
    for (let i = frames.length - 1; i >= 0; i--) {
      const f = splitFrame(frames[i]!.frame);
      assert.deepEqual(openFrame(i % 2 ? cloud.up : native.up, f.header, f.headerBytes, f.body), frames[i]!.body);
    }
    const f0 = splitFrame(frames[3]!.frame);
    assert.throws(() => openFrame(cloud.up, { ...f0.header, seq: f0.header.seq + 1n }, f0.headerBytes, f0.body), CryptoError);
  });

  test('the native HKDF pair is RFC 5869 HKDF-SHA-256 and refuses what it cannot take', { skip: loadNativeAddon()?.hkdfSha256Pair ? false : 'no addon' }, () => {
    const pair = loadNativeAddon()!.hkdfSha256Pair!;
    for (const salt of [Buffer.alloc(0), randomBytes(1), randomBytes(32), randomBytes(64)]) {
      for (const len of [0, 1, 32, 100]) {
        const secret = randomBytes(len);
        const out = Buffer.alloc(64);
        pair(secret, salt, Buffer.from('info a'), Buffer.from(''), out);
        // Against node's own HKDF (kdf.ts hkdf() is native itself where the addon is loaded).
        assert.deepEqual(out.subarray(0, 32), Buffer.from(hkdfSync('sha256', secret, salt, Buffer.from('info a'), 32)));
        assert.deepEqual(out.subarray(32), Buffer.from(hkdfSync('sha256', secret, salt, Buffer.alloc(0), 32)));
      }
    }
    assert.throws(() => pair(randomBytes(32), randomBytes(65), Buffer.alloc(1), Buffer.alloc(1), Buffer.alloc(64)), /salt/);
    assert.throws(() => pair(randomBytes(32), Buffer.alloc(0), Buffer.alloc(256), Buffer.alloc(1), Buffer.alloc(64)), /info/);
    assert.throws(() => pair(randomBytes(32), Buffer.alloc(0), Buffer.alloc(1), Buffer.alloc(1), Buffer.alloc(63)), /out/);
  });
});
