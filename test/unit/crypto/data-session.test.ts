// Unit tests for the data channel (src/crypto/data-session.ts): capsule format, round trip, tampering,
// replay and path checks with their counters, rekey limits, and the age limits (seal, then open). How sessions
// of a path replace each other is the engine's (test/unit/node/session-conformance.test.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { AeadKey } from '../../../src/crypto/aead.js';
import {
  DataSession,
  MAX_CAPSULE_PAYLOAD,
  REJECT_AFTER_MESSAGES,
  REJECT_AFTER_MS,
  REJECT_OPEN_GRACE_MS,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_MS,
  installLimits,
  type Aead,
} from '../../../src/crypto/data-session.js';
import type { SessionKeys } from '../../../src/crypto/handshake.js';
import { REPLAY_WINDOW_SIZE } from '../../../src/crypto/replay-window.js';
import { HEADER_LEN, MessageType, decodeMessage, splitFrame } from '../../../src/protocol/index.js';
import { CryptoError } from '../../../src/util/errors.js';

const PATH = 0xfeed_0000_0000_0001n;
const T0 = 1_700_000_000_000;

/** Matching key sets for the two ends of one session. */
function pair(pathId = PATH, at = T0): { a: SessionKeys; b: SessionKeys } {
  const i2r = randomBytes(32);
  const r2i = randomBytes(32);
  const common = { pathId, establishedAt: at, peerCertDer: Buffer.alloc(0) };
  return {
    a: { ...common, send: i2r, recv: r2i, initiator: true, peerNodeId: 2 },
    b: { ...common, send: r2i, recv: i2r, initiator: false, peerNodeId: 1 },
  };
}

/** Both ends of one session, on a clock stopped at T0 unless `clock` says otherwise. */
function sessions(pathId = PATH, at = T0, clock: () => number = () => T0): { a: DataSession; b: DataSession } {
  const { a, b } = pair(pathId, at);
  return { a: new DataSession(a, undefined, clock), b: new DataSession(b, undefined, clock) };
}

describe('DataSession', () => {
  it('documents sane limits', () => {
    assert.equal(REKEY_AFTER_MESSAGES, 2n ** 60n);
    assert.equal(REJECT_AFTER_MESSAGES, 2n ** 64n - 2n ** 13n);
    assert.ok(REKEY_AFTER_MS < REJECT_AFTER_MS);
  });

  it('round-trips packets both ways as Capsule frames on the path id', () => {
    const { a, b } = sessions();
    for (const size of [0, 1, 20, 1400, 9000, MAX_CAPSULE_PAYLOAD]) {
      const packet = randomBytes(size);
      const frame = a.seal(packet);
      assert.equal(frame.length, HEADER_LEN + size + 16);
      const { header } = splitFrame(frame);
      assert.equal(header.type, MessageType.Capsule);
      assert.equal(header.id, PATH);
      assert.equal(header.status, 0);
      assert.equal(header.txid, 0);
      assert.equal(decodeMessage(frame).type, MessageType.Capsule);
      assert.deepEqual(b.open(frame), packet);
      assert.deepEqual(a.open(b.seal(packet)), packet);
    }
    assert.equal(a.counters.sent, 6);
    assert.equal(b.counters.received, 6);
    assert.equal(a.sendCounter, 6);
  });

  it('uses the counter as header seq, from 0, nonce = 0^4 || seq, header as AAD', () => {
    const { a } = sessions();
    const keys = pair();
    const s = new DataSession(keys.a, undefined, () => T0);
    for (let i = 0; i < 3; i++) {
      const frame = s.seal(Buffer.from(`packet ${i}`));
      const { header, headerBytes, body } = splitFrame(frame);
      assert.equal(header.seq, BigInt(i));
      const nonce = Buffer.alloc(12);
      nonce.writeBigUInt64BE(header.seq, 4);
      assert.deepEqual(new AeadKey(keys.a.send).open(nonce, body, headerBytes), Buffer.from(`packet ${i}`));
    }
    assert.throws(() => a.seal(Buffer.alloc(MAX_CAPSULE_PAYLOAD + 1)), (e: unknown) => e instanceof CryptoError && e.code === 'ERR_CAPSULE_SIZE');
  });

  it('drops every single-byte tampering, and forgeries do not move the window', () => {
    const { a, b } = sessions();
    const packet = randomBytes(60);
    const frame = a.seal(packet);
    for (let i = 0; i < frame.length; i++) {
      const bad = Buffer.from(frame);
      bad[i] = bad[i]! ^ 0x01;
      assert.equal(b.open(bad), null, `byte ${i}`);
    }
    const c = b.counters;
    assert.equal(c.malformed + c.wrongPath + c.badTag + c.tooOld + c.replayed, frame.length);
    assert.equal(c.wrongPath, 8);
    assert.ok(c.badTag > 60);
    assert.equal(c.received, 0);
    // A forged seq far ahead did not advance the window: the genuine frame is still accepted.
    assert.deepEqual(b.open(frame), packet);
  });

  it('drops hostile and truncated input without throwing', () => {
    const { a, b } = sessions();
    const frame = a.seal(randomBytes(100));
    const inputs = [Buffer.alloc(0), frame.subarray(0, HEADER_LEN + 15), frame.subarray(0, frame.length - 1), Buffer.concat([frame, Buffer.alloc(1)])];
    for (let k = 0; k < 500; k++) inputs.push(randomBytes(k));
    for (const bytes of inputs) assert.equal(b.open(bytes), null);
    assert.equal(b.counters.received, 0);
    assert.ok(b.counters.malformed >= inputs.length - 1);
  });

  it('drops and counts replays and too-old counters', () => {
    const { a, b } = sessions();
    const frames = Array.from({ length: REPLAY_WINDOW_SIZE + 10 }, (_, i) => a.seal(Buffer.from([i & 0xff])));
    assert.ok(b.open(frames[5]!));
    assert.equal(b.open(frames[5]!), null);
    assert.equal(b.counters.replayed, 1);
    assert.ok(b.open(frames[frames.length - 1]!)); // counter WINDOW + 9
    assert.equal(b.open(frames[0]!), null); // WINDOW + 9 behind: too old
    assert.equal(b.counters.tooOld, 1);
    assert.ok(b.open(frames[20]!)); // still inside the window, out of order
    assert.equal(b.open(frames[20]!), null);
    assert.equal(b.counters.replayed, 2);
    assert.equal(b.counters.received, 3);
  });

  it('drops capsules of another path, and capsules under other keys', () => {
    const { a } = sessions(PATH);
    const { b: other } = sessions(PATH + 1n);
    assert.equal(other.open(a.seal(Buffer.from('x'))), null);
    assert.equal(other.counters.wrongPath, 1);
    const { b: sameIdOtherKeys } = sessions(PATH);
    assert.equal(sameIdOtherKeys.open(a.seal(Buffer.from('x'))), null);
    assert.equal(sameIdOtherKeys.counters.badTag, 1);
  });

  it('reports rekey and expiry by time', () => {
    const { a } = sessions();
    assert.equal(a.needsRekey(T0), false);
    assert.equal(a.needsRekey(T0 + REKEY_AFTER_MS - 1), false);
    assert.equal(a.needsRekey(T0 + REKEY_AFTER_MS), true);
    assert.equal(a.expired(T0 + REKEY_AFTER_MS), false);
    assert.equal(a.expired(T0 + REJECT_AFTER_MS), true);
  });

  it('an expired session seals nothing, then opens nothing (counted), a grace period later', () => {
    let now = T0;
    const { a, b } = sessions(PATH, T0, () => now);
    const early = a.seal(Buffer.from('sealed in time'));
    const late = a.seal(Buffer.from('arrives late'));
    now = T0 + REJECT_AFTER_MS;
    assert.throws(() => a.seal(Buffer.from('x')), (e: unknown) => e instanceof CryptoError && e.code === 'ERR_SESSION_EXPIRED');
    assert.equal(a.counters.sent, 2, 'nothing sealed past the limit');
    now = T0 + REJECT_AFTER_MS + REJECT_OPEN_GRACE_MS - 1;
    assert.deepEqual(b.open(early), Buffer.from('sealed in time'), 'still opens within the grace period');
    now += 1;
    assert.equal(b.open(late), null);
    assert.equal(b.counters.expired, 1);
    assert.equal(b.counters.badTag, 0);
    // The installer may set another limit (a node option); installLimits gives the engine the same numbers.
    const short = new DataSession({ ...pair().a, expiresAt: T0 + 50 }, undefined, () => T0 + 50);
    assert.equal(short.expired(T0 + 50), true);
    assert.throws(() => short.seal(Buffer.alloc(0)), (e: unknown) => e instanceof CryptoError && e.code === 'ERR_SESSION_EXPIRED');
    assert.deepEqual(installLimits({ establishedAt: T0, expiresAt: T0 + 50 }, T0 + 20), { sealForMs: 30, openForMs: 30 + REJECT_OPEN_GRACE_MS, candidates: 4 });
    assert.equal(installLimits({ establishedAt: T0 }, T0 + REJECT_AFTER_MS + 1).sealForMs, 0, 'never negative');
  });

  it('accepts an injected AEAD implementation', () => {
    let seals = 0;
    let opens = 0;
    const counting = (key: Buffer): Aead => {
      const inner = new AeadKey(key);
      return {
        seal: (n, p, ad) => (seals++, inner.seal(n, p, ad)),
        open: (n, c, ad) => (opens++, inner.open(n, c, ad)),
      };
    };
    const keys = pair();
    const a = new DataSession(keys.a, counting, () => T0);
    const b = new DataSession(keys.b, undefined, () => T0); // default AEAD interoperates
    assert.deepEqual(b.open(a.seal(Buffer.from('hi'))), Buffer.from('hi'));
    assert.deepEqual(a.open(b.seal(Buffer.from('yo'))), Buffer.from('yo'));
    assert.equal(seals, 1);
    assert.equal(opens, 1);
    // An AEAD with the allocation-free *Into variants is driven through them.
    let intos = 0;
    const withInto = (key: Buffer): Aead => {
      const inner = new AeadKey(key);
      return {
        seal: () => assert.fail('seal() used although sealInto() exists'),
        open: () => assert.fail('open() used although openInto() exists'),
        sealInto: (n, p, ad, out, off = 0) => {
          intos++;
          const sealed = inner.seal(Buffer.from(n), Buffer.from(p), Buffer.from(ad ?? []));
          out.set(sealed, off);
          return sealed.length;
        },
        openInto: (n, c, ad, out, off = 0) => {
          intos++;
          try {
            const plain = inner.open(Buffer.from(n), Buffer.from(c), Buffer.from(ad ?? []));
            out.set(plain, off);
            return plain.length;
          } catch {
            return -1;
          }
        },
      };
    };
    const c = new DataSession(keys.a, withInto, () => T0);
    const d = new DataSession(keys.b, withInto, () => T0);
    const frame = c.seal(Buffer.from('into'));
    assert.deepEqual(b.open(Buffer.from(frame)), null, 'counter 0 already used by a (replay)');
    assert.deepEqual(d.open(frame), Buffer.from('into'));
    assert.deepEqual(c.open(d.seal(Buffer.from('back'))), Buffer.from('back'));
    const bad = d.seal(Buffer.from('x'));
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 1;
    assert.equal(c.open(bad), null);
    assert.equal(c.counters.badTag, 1);
    assert.equal(intos, 6);
    assert.throws(() => new DataSession({ ...keys.a, send: randomBytes(16) }), (e: unknown) => e instanceof CryptoError && e.code === 'ERR_KEY_LENGTH');
  });
});
