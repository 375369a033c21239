// Unit tests for the symmetric and key-agreement primitives of src/crypto:
// AES-256-GCM (AeadKey, nonceFromSeq), HKDF, X25519, ECDSA sign/verify and hashing helpers.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, hkdfSync, randomBytes } from 'node:crypto';
import { loadNativeAddon } from '../../../src/native/addon.js';
import {
  AEAD_KEY_LEN,
  AEAD_NONCE_LEN,
  AEAD_TAG_LEN,
  AeadKey,
  createRootCa,
  generateEphemeral,
  generateKeyPair,
  hkdf,
  loadPrivateKey,
  nonceFromSeq,
  randomKey,
  sha256Hex,
  sharedSecret,
  sign,
  timingSafeEqualHex,
  verify,
} from '../../../src/crypto/index.js';
import { CryptoError } from '../../../src/util/errors.js';

const isCode = (code: string) => (err: unknown) => {
  assert.ok(err instanceof CryptoError, `expected CryptoError, got ${String(err)}`);
  assert.equal(err.code, code);
  return true;
};

function flipBit(buf: Buffer, bit: number): Buffer {
  const out = Buffer.from(buf);
  out[bit >> 3] = out[bit >> 3]! ^ (1 << (bit & 7));
  return out;
}

describe('AeadKey (AES-256-GCM)', () => {
  const key = new AeadKey(randomKey(AEAD_KEY_LEN));
  const nonce = nonceFromSeq(1n, 7);
  const aad = Buffer.from('header');
  const plaintext = Buffer.from('the quick brown fox jumps over the lazy dog');

  it('matches the GCM specification test case 16 (AES-256, 96-bit IV, AAD)', () => {
    const k = new AeadKey(Buffer.from('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308', 'hex'));
    const iv = Buffer.from('cafebabefacedbaddecaf888', 'hex');
    const pt = Buffer.from(
      'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39',
      'hex',
    );
    const ad = Buffer.from('feedfacedeadbeeffeedfacedeadbeefabaddad2', 'hex');
    const sealed = k.seal(iv, pt, ad);
    assert.equal(
      sealed.toString('hex'),
      '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662' +
        '76fc6ece0f4e1768cddf8853bb2d551b',
    );
    assert.deepEqual(k.open(iv, sealed, ad), pt);
  });

  it('round-trips, including empty and large plaintexts', () => {
    for (const pt of [plaintext, Buffer.alloc(0), randomBytes(70_000)]) {
      const sealed = key.seal(nonce, pt, aad);
      assert.equal(sealed.length, pt.length + AEAD_TAG_LEN);
      assert.deepEqual(key.open(nonce, sealed, aad), pt);
    }
  });

  it('keeps no state between calls (same inputs, same output; open is repeatable)', () => {
    const a = key.seal(nonce, plaintext, aad);
    key.seal(nonceFromSeq(2n), Buffer.from('other'), Buffer.alloc(0));
    const b = key.seal(nonce, plaintext, aad);
    assert.deepEqual(a, b);
    assert.deepEqual(key.open(nonce, a, aad), plaintext);
    assert.deepEqual(key.open(nonce, a, aad), plaintext);
  });

  it('rejects a flipped bit anywhere in the ciphertext or the tag', () => {
    const sealed = key.seal(nonce, plaintext, aad);
    for (let bit = 0; bit < sealed.length * 8; bit++) {
      assert.throws(() => key.open(nonce, flipBit(sealed, bit), aad), isCode('ERR_AEAD'));
    }
  });

  it('rejects a flipped bit in the AAD, a different nonce, a different key', () => {
    const sealed = key.seal(nonce, plaintext, aad);
    for (let bit = 0; bit < aad.length * 8; bit++) {
      assert.throws(() => key.open(nonce, sealed, flipBit(aad, bit)), isCode('ERR_AEAD'));
    }
    assert.throws(() => key.open(nonceFromSeq(2n, 7), sealed, aad), isCode('ERR_AEAD'));
    assert.throws(() => key.open(nonceFromSeq(1n, 8), sealed, aad), isCode('ERR_AEAD'));
    assert.throws(() => new AeadKey(randomKey()).open(nonce, sealed, aad), isCode('ERR_AEAD'));
  });

  it('rejects inputs shorter than a tag, truncated tags and bad nonce lengths', () => {
    const sealed = key.seal(nonce, plaintext, aad);
    for (const len of [0, 1, AEAD_TAG_LEN - 1]) {
      assert.throws(() => key.open(nonce, sealed.subarray(0, len), aad), isCode('ERR_AEAD'));
    }
    assert.throws(() => key.open(nonce, sealed.subarray(0, sealed.length - 1), aad), isCode('ERR_AEAD'));
    assert.throws(() => key.open(Buffer.alloc(11), sealed, aad), isCode('ERR_AEAD'));
    assert.throws(() => key.seal(Buffer.alloc(16), plaintext, aad), isCode('ERR_AEAD_NONCE'));
  });

  it('requires a 32-byte key', () => {
    for (const len of [0, 16, 31, 33]) assert.throws(() => new AeadKey(Buffer.alloc(len)), isCode('ERR_AEAD_KEY'));
  });
});

describe('nonceFromSeq', () => {
  it('lays out prefix u32 BE || seq u64 BE', () => {
    assert.equal(AEAD_NONCE_LEN, 12);
    assert.equal(nonceFromSeq(0n).toString('hex'), '000000000000000000000000');
    assert.equal(nonceFromSeq(0x0102030405060708n, 0xa0b0c0d0).toString('hex'), 'a0b0c0d00102030405060708');
    assert.equal(nonceFromSeq((1n << 64n) - 1n, 0xffffffff).toString('hex'), 'ff'.repeat(12));
  });

  it('rejects out-of-range values', () => {
    assert.throws(() => nonceFromSeq(-1n), isCode('ERR_NONCE'));
    assert.throws(() => nonceFromSeq(1n << 64n), isCode('ERR_NONCE'));
    assert.throws(() => nonceFromSeq(0n, -1), isCode('ERR_NONCE'));
    assert.throws(() => nonceFromSeq(0n, 2 ** 32), isCode('ERR_NONCE'));
    assert.throws(() => nonceFromSeq(0n, 1.5), isCode('ERR_NONCE'));
  });
});

describe('hkdf / randomKey', () => {
  it('matches RFC 5869 test case 3 (SHA-256, empty salt and info)', () => {
    const okm = hkdf(Buffer.alloc(22, 0x0b), Buffer.alloc(0), '', 42);
    assert.equal(
      okm.toString('hex'),
      '8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8',
    );
  });

  it('separates outputs by info and salt', () => {
    const ikm = randomKey();
    const a = hkdf(ikm, Buffer.from('s'), 'cyphonic tx', 32);
    assert.notDeepEqual(a, hkdf(ikm, Buffer.from('s'), 'cyphonic rx', 32));
    assert.notDeepEqual(a, hkdf(ikm, Buffer.from('t'), 'cyphonic tx', 32));
    assert.deepEqual(a, hkdf(ikm, Buffer.from('s'), 'cyphonic tx', 32));
  });

  it('rejects impossible lengths', () => {
    for (const len of [0, -1, 8161, 1.5]) assert.throws(() => hkdf(randomKey(), Buffer.alloc(0), 'x', len), isCode('ERR_KDF'));
  });

  it('the addon\'s HKDF matches RFC 5869 test case 1 (SHA-256, salt and info, 42 bytes: two blocks)', { skip: loadNativeAddon()?.hkdfSha256 ? false : 'no addon' }, () => {
    const out = Buffer.alloc(42);
    loadNativeAddon()!.hkdfSha256!(Buffer.alloc(22, 0x0b), Buffer.from('000102030405060708090a0b0c', 'hex'), Buffer.from('f0f1f2f3f4f5f6f7f8f9', 'hex'), out);
    assert.equal(out.toString('hex'), '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865');
  });

  it('gives the bytes of node\'s hkdfSync for every salt, info and length, on the addon and beyond its limits', () => {
    const native = loadNativeAddon()?.hkdfSha256;
    const cases: [number, number, number, number][] = [];
    for (const saltLen of [0, 1, 8, 32, 64, 65, 100]) for (const infoLen of [0, 1, 180, 255, 256]) for (const len of [1, 31, 32, 33, 64, 65, 97, 8160]) cases.push([32, saltLen, infoLen, len]);
    cases.push([0, 32, 10, 32], [1, 0, 0, 32], [200, 64, 255, 64]);
    for (const [ikmLen, saltLen, infoLen, len] of cases) {
      const ikm = randomBytes(ikmLen);
      const salt = randomBytes(saltLen);
      const info = 'i'.repeat(infoLen);
      const want = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from(info), len));
      assert.deepEqual(hkdf(ikm, salt, info, len), want, `ikm ${ikmLen} salt ${saltLen} info ${infoLen} len ${len}`);
      if (native && saltLen <= 64 && infoLen <= 255) {
        const out = Buffer.alloc(len);
        native(ikm, salt, Buffer.from(info), out);
        assert.deepEqual(out, want, `native: ikm ${ikmLen} salt ${saltLen} info ${infoLen} len ${len}`);
      }
    }
  });

  it('the addon\'s HKDF refuses what it cannot take', { skip: loadNativeAddon()?.hkdfSha256 ? false : 'no addon' }, () => {
    const native = loadNativeAddon()!.hkdfSha256!;
    assert.throws(() => native(randomBytes(32), randomBytes(65), Buffer.alloc(1), Buffer.alloc(32)), /salt/);
    assert.throws(() => native(randomBytes(32), Buffer.alloc(0), Buffer.alloc(256), Buffer.alloc(32)), /info/);
    assert.throws(() => native(randomBytes(32), Buffer.alloc(0), Buffer.alloc(1), Buffer.alloc(0)), /out/);
    assert.throws(() => native(randomBytes(32), Buffer.alloc(0), Buffer.alloc(1), Buffer.alloc(8161)), /out/);
  });

  it('randomKey returns fresh bytes of the asked length', () => {
    assert.equal(randomKey().length, 32);
    assert.equal(randomKey(12).length, 12);
    assert.notDeepEqual(randomKey(), randomKey());
  });
});

describe('X25519', () => {
  it('both sides derive the same secret', () => {
    const a = generateEphemeral();
    const b = generateEphemeral();
    assert.equal(a.publicKey.length, 32);
    const s1 = sharedSecret(a.privateKey, b.publicKey);
    const s2 = sharedSecret(b.privateKey, a.publicKey);
    assert.equal(s1.length, 32);
    assert.deepEqual(s1, s2);
    assert.notDeepEqual(s1, sharedSecret(a.privateKey, generateEphemeral().publicKey));
  });

  it('matches RFC 7748 section 6.1', () => {
    const alicePriv = createPrivateKey({
      key: {
        kty: 'OKP',
        crv: 'X25519',
        d: Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex').toString('base64url'),
        x: Buffer.from('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', 'hex').toString('base64url'),
      },
      format: 'jwk',
    });
    const bobPub = Buffer.from('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f', 'hex');
    assert.equal(
      sharedSecret(alicePriv, bobPub).toString('hex'),
      '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
    );
  });

  it('rejects bad lengths, low-order points and non-X25519 keys', async () => {
    const a = generateEphemeral();
    for (const len of [0, 31, 33, 65]) assert.throws(() => sharedSecret(a.privateKey, Buffer.alloc(len, 9)), isCode('ERR_X25519'));
    assert.throws(() => sharedSecret(a.privateKey, Buffer.alloc(32)), isCode('ERR_X25519'));
    const one = Buffer.alloc(32);
    one[0] = 1;
    assert.throws(() => sharedSecret(a.privateKey, one), isCode('ERR_X25519'));
    const ec = loadPrivateKey((await generateKeyPair()).privateKeyPem);
    assert.throws(() => sharedSecret(ec, generateEphemeral().publicKey), isCode('ERR_X25519'));
  });
});

describe('sign / verify (ECDSA P-256 SHA-256)', () => {
  it('verifies with the public key PEM, a KeyObject, the private key and a certificate', async () => {
    const { privateKeyPem, publicKeyPem } = await generateKeyPair();
    assert.match(privateKeyPem, /^-----BEGIN PRIVATE KEY-----/);
    const data = Buffer.from('signed message');
    const sig = sign(privateKeyPem, data);
    assert.equal(verify(publicKeyPem, data, sig), true);
    const keyObj = loadPrivateKey(privateKeyPem);
    assert.equal(verify(keyObj, data, sign(keyObj, data)), true);
    assert.equal(verify(keyObj, data, sig), true);

    const ca = await createRootCa({ commonName: 'sign-test' });
    const caSig = sign(ca.keyPem, data);
    assert.equal(verify(ca.certPem, data, caSig), true);
    assert.equal(verify(ca.certPem, data, sig), false);
  });

  it('returns false, never throws, for wrong data or garbage signatures', async () => {
    const { privateKeyPem, publicKeyPem } = await generateKeyPair();
    const data = Buffer.from('payload');
    const sig = sign(privateKeyPem, data);
    assert.equal(verify(publicKeyPem, Buffer.from('payloaD'), sig), false);
    const garbage = [Buffer.alloc(0), Buffer.alloc(1), randomBytes(64), randomBytes(72), sig.subarray(0, sig.length - 1), Buffer.concat([sig, Buffer.alloc(1)])];
    for (let bit = 0; bit < sig.length * 8; bit += 3) garbage.push(flipBit(sig, bit));
    for (const g of garbage) assert.equal(verify(publicKeyPem, data, g), false);
  });

  it('rejects unusable keys with ERR_KEY_INVALID', () => {
    assert.throws(() => sign('not a key', Buffer.from('x')), isCode('ERR_KEY_INVALID'));
    assert.throws(() => verify('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n', Buffer.from('x'), Buffer.alloc(70)), isCode('ERR_KEY_INVALID'));
  });
});

describe('hash helpers', () => {
  it('sha256Hex matches FIPS 180-2 "abc"', () => {
    assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(sha256Hex(Buffer.from('abc')), sha256Hex('abc'));
  });

  it('timingSafeEqualHex compares hex case-insensitively and rejects junk', () => {
    assert.equal(timingSafeEqualHex('00abCD', '00ABcd'), true);
    assert.equal(timingSafeEqualHex('', ''), true);
    assert.equal(timingSafeEqualHex('00ab', '00ac'), false);
    assert.equal(timingSafeEqualHex('00ab', '00ab00'), false);
    assert.equal(timingSafeEqualHex('zz', 'zz'), false);
  });
});
