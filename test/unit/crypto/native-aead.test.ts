// Unit tests for FastAeadKey (src/crypto/fast-aead.ts) and the native AES-256-GCM entry points behind it:
// byte-for-byte interop with AeadKey, tamper detection, argument validation (errors, never crashes), random inputs.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { AEAD_TAG_LEN, AeadKey, nonceFromSeq } from '../../../src/crypto/aead.js';
import { FAST_AEAD_NATIVE, FastAeadKey } from '../../../src/crypto/fast-aead.js';
import { loadNativeAddon, nativeLoadError } from '../../../src/native/addon.js';
import { CryptoError } from '../../../src/util/errors.js';

const isCode = (code: string) => (err: unknown) => {
  assert.ok(err instanceof CryptoError, `expected CryptoError, got ${String(err)}`);
  assert.equal(err.code, code);
  return true;
};

const nativeOnly = FAST_AEAD_NATIVE ? {} : { skip: `native addon unavailable: ${nativeLoadError()}` };

describe('FastAeadKey', () => {
  it('runs on the native addon (npm run build builds it)', () => {
    assert.equal(FAST_AEAD_NATIVE, true, nativeLoadError());
    assert.equal(new FastAeadKey(randomBytes(32)).isNative, true);
  });

  it('interoperates with AeadKey both ways, byte for byte', () => {
    const key = randomBytes(32);
    const fast = new FastAeadKey(key);
    const slow = new AeadKey(key);
    for (const len of [0, 1, 15, 16, 17, 64, 1400, 9000]) {
      const nonce = nonceFromSeq(BigInt(len), 7);
      const pt = randomBytes(len);
      const aad = randomBytes(len % 29);
      const a = fast.seal(nonce, pt, aad);
      const b = slow.seal(nonce, pt, aad);
      assert.deepEqual(a, b, `seal output differs at length ${len}`);
      assert.deepEqual(fast.open(nonce, b, aad), pt);
      assert.deepEqual(slow.open(nonce, a, aad), pt);
    }
  });

  it('sealInto/openInto write at an offset, in place, and with a null aad', () => {
    const key = randomBytes(32);
    const fast = new FastAeadKey(key);
    const slow = new AeadKey(key);
    const nonce = nonceFromSeq(42n);
    const pt = randomBytes(1400);
    const aad = Buffer.from('hdr');
    const out = Buffer.alloc(8 + 1400 + AEAD_TAG_LEN + 8, 0xee);
    assert.equal(fast.sealInto(nonce, pt, aad, out, 8), 1400 + AEAD_TAG_LEN);
    assert.deepEqual(out.subarray(8, 8 + 1416), slow.seal(nonce, pt, aad));
    assert.equal(out[7], 0xee);
    assert.equal(out[8 + 1416], 0xee, 'nothing written past the tag');

    const plain = Buffer.alloc(1400 + 3);
    assert.equal(fast.openInto(nonce, out.subarray(8, 8 + 1416), aad, plain, 3), 1400);
    assert.deepEqual(plain.subarray(3), pt);

    // In place: seal over the plaintext, then open over the sealed bytes.
    const buf = Buffer.alloc(1400 + AEAD_TAG_LEN);
    pt.copy(buf);
    fast.sealInto(nonce, buf.subarray(0, 1400), null, buf, 0);
    assert.deepEqual(buf, slow.seal(nonce, pt, Buffer.alloc(0)));
    assert.equal(fast.openInto(nonce, buf, null, buf, 0), 1400);
    assert.deepEqual(buf.subarray(0, 1400), pt);
  });

  it('detects tampering with ciphertext, tag, aad and nonce', () => {
    const fast = new FastAeadKey(randomBytes(32));
    const nonce = nonceFromSeq(1n);
    const aad = Buffer.from('associated');
    const sealed = fast.seal(nonce, randomBytes(100), aad);
    const out = Buffer.alloc(200);
    const flip = (b: Buffer, i: number) => {
      const c = Buffer.from(b);
      c[i]! ^= 0x01;
      return c;
    };
    const cases: [string, Buffer, Buffer, Buffer][] = [
      ['ciphertext', nonce, flip(sealed, 5), aad],
      ['tag', nonce, flip(sealed, sealed.length - 1), aad],
      ['aad', nonce, sealed, flip(aad, 0)],
      ['missing aad', nonce, sealed, Buffer.alloc(0)],
      ['nonce', flip(nonce, 11), sealed, aad],
      ['truncated', nonce, sealed.subarray(0, sealed.length - 1), aad],
    ];
    for (const [what, n, s, a] of cases) {
      out.fill(0xaa);
      assert.equal(fast.openInto(n, s, a, out, 0), -1, what);
      assert.ok(out.subarray(0, s.length - AEAD_TAG_LEN).every((x) => x === 0), `${what}: unauthenticated output wiped`);
      assert.throws(() => fast.open(n, s, a), isCode('ERR_AEAD'), what);
    }
    // Shorter than a tag: -1 from openInto, ERR_AEAD from open (as AeadKey).
    assert.equal(fast.openInto(nonce, sealed.subarray(0, 15), aad, out, 0), -1);
    assert.equal(fast.openInto(nonce, Buffer.alloc(0), aad, out, 0), -1);
    assert.throws(() => fast.open(nonce, sealed.subarray(0, 15), aad), isCode('ERR_AEAD'));
    // And the key still works afterwards.
    assert.equal(fast.openInto(nonce, sealed, aad, out, 0), 100);
  });

  it('rejects bad arguments with CryptoError, as AeadKey does', () => {
    assert.throws(() => new FastAeadKey(randomBytes(31)), isCode('ERR_AEAD_KEY'));
    assert.throws(() => new FastAeadKey(randomBytes(33)), isCode('ERR_AEAD_KEY'));
    assert.throws(() => new FastAeadKey('x'.repeat(32) as unknown as Buffer), isCode('ERR_AEAD_KEY'));
    const fast = new FastAeadKey(randomBytes(32));
    const pt = randomBytes(64);
    assert.throws(() => fast.seal(Buffer.alloc(11), pt, Buffer.alloc(0)), isCode('ERR_AEAD_NONCE'));
    assert.throws(() => fast.open(Buffer.alloc(13), Buffer.alloc(32), Buffer.alloc(0)), isCode('ERR_AEAD'));

    const nonce = nonceFromSeq(9n);
    const out = Buffer.alloc(64 + AEAD_TAG_LEN);
    const bad: [string, () => unknown][] = [
      ['short nonce', () => fast.sealInto(Buffer.alloc(11), pt, null, out, 0)],
      ['long nonce', () => fast.openInto(Buffer.alloc(13), out, null, pt, 0)],
      ['out too small', () => fast.sealInto(nonce, pt, null, out.subarray(1), 0)],
      ['offset leaves too little room', () => fast.sealInto(nonce, pt, null, out, 1)],
      ['offset beyond out', () => fast.sealInto(nonce, pt, null, out, out.length + 1)],
      ['negative offset', () => fast.sealInto(nonce, pt, null, out, -1)],
      ['fractional offset', () => fast.sealInto(nonce, pt, null, out, 0.5)],
      ['NaN offset', () => fast.sealInto(nonce, pt, null, out, NaN)],
      ['huge offset', () => fast.sealInto(nonce, pt, null, out, 2 ** 60)],
      ['open out too small', () => fast.openInto(nonce, out, null, Buffer.alloc(63), 0)],
    ];
    if (FAST_AEAD_NATIVE) {
      // Type confusion is caught by the addon; the node:crypto fallback has its own (different) errors.
      bad.push(['plaintext not bytes', () => fast.sealInto(nonce, 'abc' as unknown as Buffer, null, out, 0)]);
      bad.push(['out not bytes', () => fast.sealInto(nonce, pt, null, [] as unknown as Buffer, 0)]);
      bad.push(['aad not bytes', () => fast.sealInto(nonce, pt, 5 as unknown as Buffer, out, 0)]);
      bad.push(['Uint16Array', () => fast.sealInto(nonce, pt, null, new Uint16Array(64) as unknown as Buffer, 0)]);
      const big = Buffer.alloc(200);
      bad.push(['partial overlap (seal)', () => fast.sealInto(nonce, big.subarray(0, 64), null, big, 1)]);
      bad.push(['partial overlap (open)', () => fast.openInto(nonce, big.subarray(10, 90), null, big, 0)]);
    }
    for (const [what, fn] of bad) assert.throws(fn, isCode('ERR_AEAD_ARG'), what);
    // Still intact after all of that.
    assert.equal(fast.sealInto(nonce, pt, null, out, 0), 80);
  });

  it('throws ERR_CLOSED after destroy (idempotent)', () => {
    const fast = new FastAeadKey(randomBytes(32));
    fast.destroy();
    fast.destroy();
    assert.throws(() => fast.seal(nonceFromSeq(0n), Buffer.alloc(1), Buffer.alloc(0)), isCode('ERR_CLOSED'));
    assert.throws(() => fast.openInto(nonceFromSeq(0n), Buffer.alloc(16), null, Buffer.alloc(0)), isCode('ERR_CLOSED'));
  });

  it('matches AeadKey on 10k random inputs', () => {
    let key = randomBytes(32);
    let fast = new FastAeadKey(key);
    let slow = new AeadKey(key);
    const out = Buffer.alloc(2100 + AEAD_TAG_LEN + 64);
    const back = Buffer.alloc(2100 + 64);
    for (let i = 0; i < 10_000; i++) {
      if (i % 250 === 0) {
        key = randomBytes(32);
        fast = new FastAeadKey(key);
        slow = new AeadKey(key);
      }
      const nonce = randomBytes(12);
      const pt = randomBytes(randomInt(0, 2100));
      const aad = randomBytes(randomInt(0, 40));
      const off = randomInt(0, 64);
      const n = fast.sealInto(nonce, pt, aad, out, off);
      const expect: Buffer = slow.seal(nonce, pt, aad);
      assert.equal(n, expect.length);
      assert.ok(out.subarray(off, off + n).equals(expect), `mismatch at ${i}`);
      const m = fast.openInto(nonce, expect, aad, back, off);
      assert.equal(m, pt.length);
      assert.ok(back.subarray(off, off + m).equals(pt));
      if (i % 10 === 0) {
        const bad = Buffer.from(expect);
        bad[randomInt(0, bad.length)]! ^= 1 << randomInt(0, 8);
        assert.equal(fast.openInto(nonce, bad, aad, back, 0), -1);
      }
    }
  });
});

describe('native AEAD entry points', nativeOnly, () => {
  it('reject foreign handles and malformed calls without crashing', () => {
    const addon = loadNativeAddon()!;
    const nonce = Buffer.alloc(12);
    const out = Buffer.alloc(64);
    const junkHandles: unknown[] = [undefined, null, {}, 1, 'h', Buffer.alloc(32), () => 0];
    for (const h of junkHandles) {
      assert.throws(() => addon.aeadSeal(h as never, nonce, out, out, out, 0), TypeError);
      assert.throws(() => addon.aeadOpen(h as never, nonce, out, out, out, 0), TypeError);
    }
    assert.throws(() => addon.aeadCreate(Buffer.alloc(16)), RangeError);
    assert.throws(() => (addon.aeadCreate as (...a: unknown[]) => unknown)(), TypeError);
    const h = addon.aeadCreate(randomBytes(32));
    assert.throws(() => (addon.aeadSeal as (...a: unknown[]) => unknown)(h, nonce), TypeError);
    assert.equal(addon.aeadSeal(h, nonce, new Uint8Array(0), new Uint8Array(3), out, 0), 19);
    assert.equal(addon.aeadOpen(h, nonce, new Uint8Array(0), out.subarray(0, 19), out, 40), 3);
    addon.aeadDestroy(h);
    assert.throws(() => addon.aeadSeal(h, nonce, out, out, out, 0), (e: { code?: string }) => e.code === 'ERR_CLOSED');
  });
});
