// Sealed frames: ChannelKeys' one-extract derivation gives the RFC 5869 keys (the same as hkdf()), and frames sealed
// with the native keys open with node:crypto ones and back, and a tampered frame is refused.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { ChannelKeys, INFO_DOWN, INFO_UP, openFrame, sealFrame } from '../../../src/channel/sealed.js';
import { AeadKey, hkdf } from '../../../src/crypto/index.js';
import { MessageType } from '../../../src/protocol/constants.js';
import { splitFrame } from '../../../src/protocol/header.js';
import { CryptoError } from '../../../src/util/errors.js';

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
});
