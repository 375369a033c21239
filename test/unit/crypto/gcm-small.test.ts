// The addon's short-message AES-256-GCM (native/gcm_small.c: AES-NI + PCLMULQDQ, used up to 512 bytes; OpenSSL
// above): byte-for-byte what node:crypto produces on both sides of the threshold, opens node:crypto's output,
// rejects every tampered byte without leaving plaintext behind, and works in place.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { loadNativeAddon, nativeLoadError } from '../../../src/crypto/fast-aead.js';

const native = loadNativeAddon();
const opts = native ? {} : { skip: `native addon unavailable: ${nativeLoadError()}` };

function reference(key: Buffer, iv: Buffer, aad: Buffer, pt: Buffer): Buffer {
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad);
  return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
}

describe('short-message AES-256-GCM', opts, () => {
  it('seals every length 0..600 exactly as node:crypto does, and opens its output', () => {
    const n = native!;
    for (let len = 0; len <= 600; len++) {
      const key = randomBytes(32);
      const iv = randomBytes(12);
      const aad = randomBytes(len % 3 === 0 ? 28 : len % 37);
      const pt = randomBytes(len);
      const want = reference(key, iv, aad, pt);
      const h = n.aeadCreate(key);
      const out = Buffer.alloc(len + 16 + 5);
      assert.equal(n.aeadSeal(h, iv, aad, pt, out, 5), len + 16);
      assert.ok(out.subarray(5).equals(want), `seal differs at length ${len}`);
      const back = Buffer.alloc(len);
      assert.equal(n.aeadOpen(h, iv, aad, want, back, 0), len, `open refused length ${len}`);
      assert.ok(back.equals(pt));
      n.aeadDestroy(h);
    }
  });

  it('rejects a flipped bit anywhere (ciphertext, tag, aad, nonce) and zeroes the output', () => {
    const n = native!;
    const key = randomBytes(32);
    const h = n.aeadCreate(key);
    const iv = randomBytes(12);
    const aad = randomBytes(28);
    const pt = randomBytes(84);
    const sealed = reference(key, iv, aad, pt);
    const out = Buffer.alloc(84);
    for (let i = 0; i < sealed.length; i++) {
      const bad = Buffer.from(sealed);
      bad[i]! ^= 1 << (i % 8);
      out.fill(0xaa);
      assert.equal(n.aeadOpen(h, iv, aad, bad, out, 0), -1, `tampered byte ${i} accepted`);
      assert.ok(out.every((b) => b === 0), 'no plaintext left behind');
    }
    for (let i = 0; i < aad.length; i++) {
      const badAad = Buffer.from(aad);
      badAad[i]! ^= 0x80;
      assert.equal(n.aeadOpen(h, iv, badAad, sealed, out, 0), -1, `tampered aad byte ${i} accepted`);
    }
    const badIv = Buffer.from(iv);
    badIv[11]! ^= 1;
    assert.equal(n.aeadOpen(h, badIv, aad, sealed, out, 0), -1, 'other nonce accepted');
    assert.equal(n.aeadOpen(h, iv, aad, sealed, out, 0), 84, 'the untouched capsule still opens');
    assert.ok(out.equals(pt));
  });

  it('seals and opens in place', () => {
    const n = native!;
    const key = randomBytes(32);
    const h = n.aeadCreate(key);
    const iv = randomBytes(12);
    const aad = randomBytes(28);
    const pt = randomBytes(100);
    const buf = Buffer.alloc(116);
    pt.copy(buf);
    assert.equal(n.aeadSeal(h, iv, aad, buf.subarray(0, 100), buf, 0), 116);
    assert.ok(buf.equals(reference(key, iv, aad, pt)));
    assert.equal(n.aeadOpen(h, iv, aad, buf, buf, 0), 100);
    assert.ok(buf.subarray(0, 100).equals(pt));
  });
});
