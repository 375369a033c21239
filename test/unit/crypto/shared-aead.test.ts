// Unit tests for FastAeadKey's start on the thread's shared context (`promoteAfter`, FastAeadKey.pair) and the native
// aeadSealKey/aeadOpenKey/aeadSharedWipe behind it: the same bytes as AeadKey before and after a key gets its own
// context, with other keys interleaved on the shared one; tampering and bad arguments refused on both paths; the
// key's bytes and the shared context's schedule wiped on destroy and on promotion; ChannelKeys' cloud side.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { ChannelKeys, CLOUD_KEY_PROMOTE_AFTER, openFrame, sealFrame } from '../../../src/channel/sealed.js';
import { AEAD_TAG_LEN, AeadKey, nonceFromSeq } from '../../../src/crypto/aead.js';
import { FastAeadKey } from '../../../src/crypto/fast-aead.js';
import { MessageType } from '../../../src/protocol/constants.js';
import { splitFrame } from '../../../src/protocol/header.js';
import { loadNativeAddon, nativeLoadError } from '../../../src/native/addon.js';
import { CryptoError } from '../../../src/util/errors.js';

const addon = loadNativeAddon();
const nativeOnly = addon?.aeadSealKey ? {} : { skip: `native addon unavailable: ${nativeLoadError()}` };

const isCode = (code: string) => (err: unknown) => {
  assert.ok(err instanceof CryptoError, `expected CryptoError, got ${String(err)}`);
  assert.equal(err.code, code);
  return true;
};

/**
 * Runs `fn` while recording every Buffer range filled with 0: its bytes before, and the range itself (keys on the
 * shared context sit in ranges of larger buffers).
 */
function watchWipes(fn: () => void): { before: Buffer; buf: Buffer }[] {
  const seen: { before: Buffer; buf: Buffer }[] = [];
  const orig = Buffer.prototype.fill;
  Buffer.prototype.fill = function (this: Buffer, ...args: unknown[]) {
    if (args[0] === 0) {
      const start = typeof args[1] === 'number' ? args[1] : 0;
      const end = typeof args[2] === 'number' ? args[2] : this.length;
      const buf = this.subarray(start, end);
      seen.push({ before: Buffer.from(buf), buf });
    }
    return orig.apply(this, args as Parameters<Buffer['fill']>);
  } as Buffer['fill'];
  try {
    fn();
  } finally {
    Buffer.prototype.fill = orig;
  }
  return seen;
}

describe('FastAeadKey on the shared context', nativeOnly, () => {
  it('seals and opens as AeadKey before and after its promotion, with other keys interleaved', () => {
    const key = randomBytes(32);
    const fast = new FastAeadKey(key, 'both', 3);
    const slow = new AeadKey(key);
    const other = new FastAeadKey(randomBytes(32), 'both', Infinity);
    const otherSlow = new AeadKey(Buffer.from(key.map((b) => b ^ 0xff)));
    const third = new FastAeadKey(Buffer.from(key.map((b) => b ^ 0xff)), 'seal', Infinity);
    assert.equal(fast.isShared, true);
    assert.equal(fast.isNative, true);
    for (let i = 0; i < 8; i++) {
      const nonce = nonceFromSeq(BigInt(i), 3);
      const pt = randomBytes(randomInt(0, 300));
      const aad = randomBytes(i * 3);
      if (i % 2 === 0) {
        assert.deepEqual(fast.seal(nonce, pt, aad), slow.seal(nonce, pt, aad), `seal ${i}`);
      } else {
        assert.deepEqual(fast.open(nonce, slow.seal(nonce, pt, aad), aad), pt, `open ${i}`);
      }
      // The shared contexts now hold another key: the next operation of `fast` must re-key them.
      other.seal(nonce, pt, aad);
      assert.deepEqual(third.seal(nonce, pt, aad), otherSlow.seal(nonce, pt, aad));
      assert.equal(fast.isShared, i < 3, `three operations shared, its own context from the 4th (after ${i + 1})`);
    }
    assert.equal(other.isShared, true, 'Infinity: never promoted');
  });

  it('counts a fractional promoteAfter up to the next whole operation', () => {
    const key = randomBytes(32);
    const fast = new FastAeadKey(key, 'seal', 2.5);
    const nonce = nonceFromSeq(3n);
    const shared: boolean[] = [];
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(fast.seal(nonce, Buffer.from('p'), Buffer.alloc(0)), new AeadKey(key).seal(nonce, Buffer.from('p'), Buffer.alloc(0)));
      shared.push(fast.isShared);
    }
    assert.deepEqual(shared, [true, true, true, false, false], 'three operations on the shared context, its own from the fourth');
  });

  it('refuses tampered frames on the shared path and after promotion', () => {
    const key = randomBytes(32);
    const slow = new AeadKey(key);
    const fast = new FastAeadKey(key, 'open', 4);
    const nonce = nonceFromSeq(77n);
    const aad = Buffer.from('header bytes');
    const sealed = slow.seal(nonce, randomBytes(100), aad);
    const out = Buffer.alloc(200);
    for (const shared of [true, false]) {
      const bad = Buffer.from(sealed);
      bad[bad.length - 1]! ^= 0x80;
      out.fill(0xaa);
      assert.equal(fast.openInto(nonce, bad, aad, out, 0), -1, `wrong tag (shared: ${shared})`);
      assert.ok(out.subarray(0, 100).every((x) => x === 0), 'unauthenticated output wiped');
      assert.throws(() => fast.open(nonceFromSeq(78n), sealed, aad), isCode('ERR_AEAD'), 'wrong nonce');
      assert.equal(fast.openInto(nonce, sealed.subarray(0, 15), aad, out, 0), -1, 'shorter than a tag');
      assert.equal(fast.openInto(nonce, sealed, aad, out, 0), 100, 'the right frame opens');
      assert.equal(fast.isShared, shared, 'four operations on the shared context, then its own');
    }
  });

  it('keeps the argument and direction errors of a key with its own context', () => {
    const pt = randomBytes(64);
    const nonce = nonceFromSeq(9n);
    const out = Buffer.alloc(64 + AEAD_TAG_LEN);
    const [opener, sealer] = FastAeadKey.pair(randomBytes(32), 'open', randomBytes(32), 'seal', Infinity);
    assert.throws(() => opener.sealInto(nonce, pt, null, out, 0), isCode('ERR_AEAD_DIRECTION'));
    assert.throws(() => sealer.openInto(nonce, out, null, pt, 0), isCode('ERR_AEAD_DIRECTION'));
    const big = Buffer.alloc(200);
    const bad: [string, () => unknown][] = [
      ['short nonce', () => sealer.sealInto(Buffer.alloc(11), pt, null, out, 0)],
      ['long nonce', () => opener.openInto(Buffer.alloc(13), out, null, pt, 0)],
      ['out too small', () => sealer.sealInto(nonce, pt, null, out.subarray(1), 0)],
      ['offset beyond out', () => sealer.sealInto(nonce, pt, null, out, out.length + 1)],
      ['negative offset', () => sealer.sealInto(nonce, pt, null, out, -1)],
      ['open out too small', () => opener.openInto(nonce, out, null, Buffer.alloc(63), 0)],
      ['plaintext not bytes', () => sealer.sealInto(nonce, 'abc' as unknown as Buffer, null, out, 0)],
      ['partial overlap (seal)', () => sealer.sealInto(nonce, big.subarray(0, 64), null, big, 1)],
      ['partial overlap (open)', () => opener.openInto(nonce, big.subarray(10, 90), null, big, 0)],
    ];
    for (const [what, fn] of bad) assert.throws(fn, isCode('ERR_AEAD_ARG'), what);
    assert.equal(sealer.sealInto(nonce, pt, null, out, 0), 80, 'still usable');
    assert.throws(() => new FastAeadKey(randomBytes(31), 'seal', 4), isCode('ERR_AEAD_KEY'));
    assert.throws(() => FastAeadKey.pair(randomBytes(32), 'open', randomBytes(33), 'seal', 4), isCode('ERR_AEAD_KEY'));
  });

  it("wipes its bytes and the shared schedule it left when destroyed or promoted, and not the caller's key", () => {
    const wipes: number[] = [];
    const origWipe = addon!.aeadSharedWipe!;
    addon!.aeadSharedWipe = (which) => {
      wipes.push(which);
      origWipe(which);
    };
    try {
      const nonce = nonceFromSeq(1n);
      const empty = Buffer.alloc(0);
      const key = randomBytes(32);
      const copy = Buffer.from(key);
      const a = new FastAeadKey(key, 'both', 5);
      a.seal(nonce, Buffer.from('x'), empty); // a: the last key on the sealing context
      const k2 = randomBytes(32);
      const b = new FastAeadKey(k2, 'both', 5);
      b.open(nonce, new AeadKey(k2).seal(nonce, Buffer.from('y'), empty), empty); // b: the last on the opening one
      const destroyA = watchWipes(() => a.destroy());
      assert.ok(destroyA.some((w) => w.before.includes(copy) && w.buf.every((x) => x === 0)), "a's bytes wiped");
      assert.deepEqual(wipes, [1], 'the sealing context re-keyed, not the opening one');
      assert.deepEqual(key, copy, "the caller's Buffer is the caller's");
      assert.throws(() => a.seal(nonce, empty, empty), isCode('ERR_CLOSED'));

      const k3 = randomBytes(32);
      const c = new FastAeadKey(k3, 'both', 1);
      c.open(nonce, new AeadKey(k3).seal(nonce, Buffer.from('z'), empty), empty); // c now last on the opening context
      const destroyB = watchWipes(() => b.destroy());
      assert.ok(destroyB.some((w) => w.before.includes(k2)), "b's bytes wiped");
      assert.deepEqual(wipes, [1], 'b no longer left anything in the shared contexts');

      const promoted = watchWipes(() => assert.deepEqual(c.seal(nonce, Buffer.from('w'), empty), new AeadKey(k3).seal(nonce, Buffer.from('w'), empty)));
      assert.equal(c.isShared, false);
      assert.ok(promoted.some((w) => w.before.includes(k3)), "c's bytes wiped once it has its own context");
      assert.deepEqual(wipes, [1, 2], 'and the opening context it had used re-keyed');
      c.destroy();
      assert.deepEqual(wipes, [1, 2]);
    } finally {
      addon!.aeadSharedWipe = origWipe;
    }
  });

  it('a pair keeps its bytes together: destroying one key leaves the other working', () => {
    const k1 = randomBytes(32);
    const k2 = randomBytes(32);
    const [up, down] = FastAeadKey.pair(k1, 'open', k2, 'seal', Infinity);
    const nonce = nonceFromSeq(5n);
    const body = randomBytes(40);
    const wiped = watchWipes(() => up.destroy());
    assert.ok(wiped.some((w) => w.before.equals(k1) && w.buf.length === 32), "up's half wiped");
    assert.deepEqual(down.seal(nonce, body, Buffer.alloc(0)), new AeadKey(k2).seal(nonce, body, Buffer.alloc(0)));
    assert.throws(() => up.open(nonce, Buffer.alloc(16), Buffer.alloc(0)), isCode('ERR_CLOSED'));
  });

  it('matches AeadKey on 3000 random inputs over several keys sharing the context', () => {
    const keys = Array.from({ length: 5 }, () => randomBytes(32));
    const fast = keys.map((k, i) => new FastAeadKey(k, 'both', i === 0 ? Infinity : 100 * i));
    const slow = keys.map((k) => new AeadKey(k));
    const out = Buffer.alloc(600 + AEAD_TAG_LEN + 64);
    const back = Buffer.alloc(600 + 64);
    for (let i = 0; i < 3000; i++) {
      const k = randomInt(0, keys.length);
      const nonce = randomBytes(12);
      const pt = randomBytes(randomInt(0, 600));
      const aad = randomBytes(randomInt(0, 40));
      const off = randomInt(0, 64);
      const expect: Buffer = slow[k]!.seal(nonce, pt, aad);
      assert.equal(fast[k]!.sealInto(nonce, pt, aad, out, off), expect.length);
      assert.ok(out.subarray(off, off + expect.length).equals(expect), `mismatch at ${i}`);
      const wrong = (k + 1) % keys.length;
      assert.equal(fast[wrong]!.openInto(nonce, expect, aad, back, off), -1, 'another key does not open it');
      assert.equal(fast[k]!.openInto(nonce, expect, aad, back, off), pt.length);
      assert.ok(back.subarray(off, off + pt.length).equals(pt));
    }
    assert.deepEqual(fast.map((f) => f.isShared), [true, false, false, false, false]);
  });
});

describe('ChannelKeys, cloud side', () => {
  it("opens the node's up frames and seals down frames the node opens, operation after operation", () => {
    const secret = randomBytes(32);
    const node = new ChannelKeys(secret);
    const cloud = new ChannelKeys(secret, {}, 'cloud');
    const ROUNDS = 6;
    for (let i = 0; i < ROUNDS; i++) {
      const fields = { type: MessageType.Keepalive, txid: i, seq: 1000n + BigInt(i), id: 9n };
      const body = randomBytes(30 + i);
      const up = splitFrame(sealFrame(node.up, fields, body));
      assert.deepEqual(openFrame(cloud.up, up.header, up.headerBytes, up.body), body);
      const down = sealFrame(cloud.down, fields, body);
      assert.deepEqual(down, sealFrame(node.down, fields, body));
      const bad = Buffer.from(up.body);
      bad[0]! ^= 1;
      assert.throws(() => openFrame(cloud.up, up.header, up.headerBytes, bad), isCode('ERR_AEAD'));
    }
    if (addon?.aeadSealKey) {
      const shared = CLOUD_KEY_PROMOTE_AFTER >= ROUNDS;
      assert.equal(cloud.up.isShared, shared, `after ${ROUNDS} opens, on the shared context iff CLOUD_KEY_PROMOTE_AFTER >= ${ROUNDS}`);
      assert.equal(cloud.down.isShared, shared);
    }
    cloud.destroy();
    const f = splitFrame(sealFrame(node.up, { type: MessageType.Keepalive, txid: 1, seq: 5n, id: 9n }, Buffer.alloc(3)));
    assert.throws(() => openFrame(cloud.up, f.header, f.headerBytes, f.body), isCode('ERR_CLOSED'));
    assert.throws(() => sealFrame(cloud.down, { type: MessageType.Keepalive, txid: 1, seq: 5n, id: 9n }, Buffer.alloc(3)), isCode('ERR_CLOSED'));
  });
});

describe('native keyed AEAD entry points', nativeOnly, () => {
  it('reject a key that is not 32 bytes, malformed calls and a bad wipe selector without crashing', () => {
    const a = addon!;
    const nonce = Buffer.alloc(12);
    const out = Buffer.alloc(64);
    for (const key of [Buffer.alloc(31), Buffer.alloc(33), Buffer.alloc(0)]) {
      assert.throws(() => a.aeadSealKey!(key, nonce, out, out.subarray(0, 3), out, 20), RangeError);
      assert.throws(() => a.aeadOpenKey!(key, nonce, out, out.subarray(0, 20), out, 30), RangeError);
    }
    for (const key of [undefined, null, {}, 'k'.repeat(32), 5]) {
      assert.throws(() => a.aeadSealKey!(key as never, nonce, out, out.subarray(0, 3), out, 20), TypeError);
    }
    assert.throws(() => (a.aeadSealKey as (...x: unknown[]) => unknown)(Buffer.alloc(32), nonce), TypeError);
    for (const which of [0, 4, -1, 1.5]) assert.throws(() => a.aeadSharedWipe!(which as 1), RangeError);
    const key = randomBytes(32);
    a.aeadSharedWipe!(3);
    assert.equal(a.aeadSealKey!(key, nonce, new Uint8Array(0), Buffer.from('abc'), out, 0), 19);
    a.aeadSharedWipe!(3);
    assert.deepEqual(out.subarray(0, 19), new AeadKey(key).seal(nonce, Buffer.from('abc'), Buffer.alloc(0)));
    assert.equal(a.aeadOpenKey!(key, nonce, new Uint8Array(0), out.subarray(0, 19), out, 40), 3);
    assert.deepEqual(out.subarray(40, 43), Buffer.from('abc'));
  });

  it('take the key at keyOffset in a larger buffer, and refuse an offset that leaves fewer than 32 bytes', () => {
    const a = addon!;
    const nonce = randomBytes(12);
    const many = randomBytes(32 * 5 + 7);
    const out = Buffer.alloc(64);
    for (const at of [0, 7, 32, 100, many.length - 32]) {
      const key = many.subarray(at, at + 32);
      const expect = new AeadKey(Buffer.from(key)).seal(nonce, Buffer.from('hello'), Buffer.from('aad'));
      assert.equal(a.aeadSealKey!(many, nonce, Buffer.from('aad'), Buffer.from('hello'), out, 0, at), 21, `offset ${at}`);
      assert.deepEqual(out.subarray(0, 21), expect);
      assert.equal(a.aeadOpenKey!(many, nonce, Buffer.from('aad'), expect, out, 30, at), 5);
      assert.deepEqual(out.subarray(30, 35), Buffer.from('hello'));
      if (at !== 0) assert.equal(a.aeadOpenKey!(many, nonce, Buffer.from('aad'), expect, out, 30, at - 1), -1, 'one byte off: another key');
    }
    for (const at of [many.length - 31, many.length, many.length + 1, 2 ** 40]) {
      assert.throws(() => a.aeadSealKey!(many, nonce, out, out.subarray(0, 3), out, 20, at), RangeError, `offset ${at}`);
      assert.throws(() => a.aeadOpenKey!(many, nonce, out, out.subarray(0, 20), out, 30, at), RangeError, `offset ${at}`);
    }
    for (const at of [-1, 1.5, Number.NaN, '0', null]) {
      assert.throws(() => a.aeadSealKey!(many, nonce, out, out.subarray(0, 3), out, 20, at as number), `offset ${String(at)}`);
    }
  });
});

describe('keys on the shared context share slabs', nativeOnly, () => {
  it('a unit freed by destroy or promotion is reused, and no key ever sees another key\'s bytes', () => {
    // 2 500 pairs and 2 500 singles take five 64 KiB slabs of units. Every other key is destroyed: one key of each
    // pair (its unit stays, the other key still uses it) and half of the singles (their units are freed). Then 2 500
    // more pairs and singles take the freed units and new ones, and the kept singles get their own contexts (freeing
    // their units) at their second operation. Every key still alive must seal and open as AeadKey with its own bytes.
    const nonce = nonceFromSeq(42n);
    const pt = Buffer.from('unit test');
    const aad = Buffer.alloc(0);
    type Live = { fast: FastAeadKey; slow: AeadKey };
    const live: Live[] = [];
    const make = (): void => {
      const k1 = randomBytes(32);
      const k2 = randomBytes(32);
      const [x, y] = FastAeadKey.pair(k1, 'both', k2, 'both', Infinity);
      live.push({ fast: x, slow: new AeadKey(k1) }, { fast: y, slow: new AeadKey(k2) });
      const k3 = randomBytes(32);
      live.push({ fast: new FastAeadKey(k3, 'both', 1), slow: new AeadKey(k3) });
    };
    for (let i = 0; i < 2500; i++) make();
    const kept: Live[] = [];
    live.forEach((l, i) => {
      if (i % 2 === 0) l.fast.destroy();
      else kept.push(l);
    });
    // Singles kept run once on the shared context (promoteAfter 1) and get their own context at the next operation.
    for (const l of kept) assert.deepEqual(l.fast.seal(nonce, pt, aad), l.slow.seal(nonce, pt, aad));
    live.length = 0;
    for (let i = 0; i < 2500; i++) make();
    for (const l of [...kept, ...live]) {
      assert.deepEqual(l.fast.seal(nonce, pt, aad), l.slow.seal(nonce, pt, aad));
      assert.deepEqual(l.fast.open(nonce, l.slow.seal(nonce, pt, aad), aad), pt);
    }
  });
});
