// Unit tests for the data channel (src/crypto/data-session.ts): capsule format, round trip, tampering,
// replay and path checks with their counters, rekey limits, and the previous-session overlap of SessionSet.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { AeadKey } from '../../../src/crypto/aead.js';
import {
  DataSession,
  MAX_CAPSULE_PAYLOAD,
  MAX_NEXT_SESSIONS,
  PREVIOUS_SESSION_GRACE_MS,
  REJECT_AFTER_MESSAGES,
  REJECT_AFTER_MS,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_MS,
  SessionSet,
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

function sessions(pathId = PATH, at = T0): { a: DataSession; b: DataSession } {
  const { a, b } = pair(pathId, at);
  return { a: new DataSession(a), b: new DataSession(b) };
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
    const s = new DataSession(keys.a);
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
    const a = new DataSession(keys.a, counting);
    const b = new DataSession(keys.b); // default AEAD interoperates
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
    const c = new DataSession(keys.a, withInto);
    const d = new DataSession(keys.b, withInto);
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

describe('SessionSet (rekey overlap)', () => {
  it('keeps traffic flowing across a rekey in both directions', () => {
    let now = T0;
    const clock = () => now;
    const setA = new SessionSet(clock); // alpha: initiator of both sessions
    const setB = new SessionSet(clock);
    const one = sessions();
    setA.install(one.a);
    setB.install(one.b); // nothing installed yet: current at once, even as responder
    assert.equal(setB.current, one.b);
    assert.deepEqual(setB.open(setA.seal(Buffer.from('s1'))), Buffer.from('s1'));
    assert.deepEqual(setA.open(setB.seal(Buffer.from('s1 back'))), Buffer.from('s1 back'));

    now += 1000;
    const two = sessions(PATH, now);
    // Bravo answers the rekey: the new session waits in `next`, bravo keeps sealing under the old one.
    setB.install(two.b);
    assert.equal(setB.current, one.b);
    assert.equal(setB.next, two.b);
    assert.equal(setB.sending, one.b);
    const fromBOld = setB.seal(Buffer.from('b still on s1'));
    assert.deepEqual(setB.open(setA.seal(Buffer.from('a still on s1'))), Buffer.from('a still on s1'));

    // Alpha completes the handshake: as initiator it switches at once and sends a keepalive under s2.
    setA.install(two.a);
    assert.equal(setA.sending, two.a);
    assert.equal(setA.previous, one.a);
    assert.deepEqual(setA.open(fromBOld), Buffer.from('b still on s1'), 'previous session still opens');
    assert.equal(two.a.counters.badTag, 0, 'a frame opened by the previous session is not counted as a drop');
    assert.deepEqual(setB.open(setA.seal(Buffer.alloc(0))), Buffer.alloc(0));
    // Bravo saw the new session in use: promoted, old one gone, sending switches.
    assert.equal(setB.current, two.b);
    assert.equal(setB.next, null);
    assert.equal(setB.previous, null);
    assert.deepEqual(setA.open(setB.seal(Buffer.from('b on s2'))), Buffer.from('b on s2'));
    assert.equal(setA.previous, null, 'first capsule under the new session retires the previous one');
    // Frames of the retired session are dropped now, on both sides.
    assert.equal(setB.open(one.a.seal(Buffer.from('late'))), null);
    assert.equal(setA.open(one.b.seal(Buffer.from('late'))), null);
    assert.equal(two.b.counters.badTag, 1);
    assert.equal(two.a.counters.badTag, 1);
  });

  it('retires the previous session after the grace period', () => {
    let now = T0;
    const set = new SessionSet(() => now);
    const one = sessions();
    const two = sessions(PATH, T0 + 5);
    set.install(one.a);
    set.install(two.a);
    const old = one.b.seal(Buffer.from('old'));
    const old2 = one.b.seal(Buffer.from('old2'));
    assert.deepEqual(set.open(old), Buffer.from('old'));
    now += PREVIOUS_SESSION_GRACE_MS - 1;
    assert.ok(set.previous);
    now += 1;
    assert.equal(set.open(old2), null);
    assert.equal(set.previous, null);
  });

  it('a retransmitted handshake: whichever response the initiator accepted becomes current at the responder', () => {
    for (const accepted of [0, 1, 2]) {
      const setB = new SessionSet(() => T0);
      const one = sessions();
      setB.install(one.b);
      const answers = [sessions(), sessions(), sessions()]; // three requests answered, responses in flight
      for (const s of answers) setB.install(s.b);
      assert.equal(setB.sending, one.b);
      const initiatorSide = answers[accepted]!.a;
      assert.deepEqual(setB.open(initiatorSide.seal(Buffer.from('hello'))), Buffer.from('hello'));
      assert.equal(setB.current, answers[accepted]!.b);
      assert.equal(setB.next, null);
    }
    // Only the newest MAX_NEXT_SESSIONS are kept.
    const setB = new SessionSet(() => T0);
    setB.install(sessions().b);
    const answers = Array.from({ length: MAX_NEXT_SESSIONS + 1 }, () => sessions());
    for (const s of answers) setB.install(s.b);
    assert.equal(setB.open(answers[0]!.a.seal(Buffer.from('x'))), null);
    assert.ok(setB.open(answers[1]!.a.seal(Buffer.from('x'))));
  });

  it('counts a drop once, on the session that recognised it', () => {
    const set = new SessionSet(() => T0);
    const one = sessions();
    const two = sessions();
    set.install(one.a);
    const f = one.b.seal(Buffer.from('x'));
    assert.ok(set.open(f));
    set.install(two.a);
    // Counter 0 is new to the current session (bad tag there) but a replay for the previous one.
    assert.equal(set.open(f), null);
    assert.equal(one.a.counters.replayed, 1);
    assert.equal(two.a.counters.badTag, 0);
    // A current-session frame whose counter the previous session already saw still opens.
    assert.deepEqual(set.open(two.b.seal(Buffer.from('y'))), Buffer.from('y'));
    assert.equal(set.open(Buffer.alloc(10)), null);
    assert.equal(two.a.counters.malformed, 1);
  });

  it('refuses sessions of another path and sealing before any install', () => {
    const set = new SessionSet(() => T0);
    assert.equal(set.open(Buffer.alloc(50)), null);
    assert.throws(() => set.seal(Buffer.from('x')), (e: unknown) => e instanceof CryptoError && e.code === 'ERR_NO_SESSION');
    set.install(sessions().a);
    assert.throws(() => set.install(sessions(PATH + 1n).a), (e: unknown) => e instanceof CryptoError && e.code === 'ERR_SESSION_PARAMS');
  });
});
