// Unit tests for the tunnel handshake (src/crypto/handshake.ts): key agreement with and without a Temp Key,
// tunnel-key and signature authentication, certificate checks, timestamps, replay, simultaneous initiation.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  AeadKey,
  createCsr,
  createIntermediateCa,
  createRootCa,
  generateKeyPair,
  hkdf,
  issueNodeCertificate,
  toDer,
  type CaMaterial,
} from '../../../src/crypto/index.js';
import {
  HANDSHAKE_MAX_SKEW_MS,
  HANDSHAKE_MAX_AHEAD_MS,
  HandshakeInitiator,
  HandshakeReplayCache,
  INFO_TUNNEL_I2R,
  PathHandshake,
  deriveEndKeys,
  endKeyInfo,
  endKeySalt,
  resolveSimultaneous,
  respondToRequest,
  type ExpectedPeer,
  type LocalIdentity,
  type PathKeys,
  type SessionKeys,
  type TrustAnchors,
} from '../../../src/crypto/handshake.js';
import { DataSession } from '../../../src/crypto/data-session.js';
import { sealFrame } from '../../../src/channel/sealed.js';
import { HEADER_LEN, MessageType, decodeBody, encodeBody, splitFrame } from '../../../src/protocol/index.js';
import { CertificateError, CryptoError, CyphonicError, DecodeError } from '../../../src/util/errors.js';

interface Node {
  id: LocalIdentity;
  peer: ExpectedPeer;
  serial: string;
}

interface Pki {
  root: CaMaterial;
  inter: CaMaterial;
  rootDer: Buffer;
  interDer: Buffer;
  alpha: Node;
  bravo: Node;
  revoked: Node;
  impostor: Node; // same CA, claims bravo's node id under another name
  foreign: Node; // another CA, bravo's name and id
}

async function makeNode(ca: CaMaterial, chain: Buffer[], name: string, nodeId: number): Promise<Node> {
  const { privateKeyPem } = await generateKeyPair();
  const csr = await createCsr(privateKeyPem, name);
  const issued = await issueNodeCertificate(ca, csr, { name, fqdn: `${name}.cyphonic.internal`, nodeId });
  return { id: { nodeId, certDer: issued.certDer, chainDer: chain, privateKeyPem }, peer: { nodeId, name }, serial: issued.serial };
}

let cached: Promise<Pki> | undefined;
/** PKI material shared by every test of this file (key generation dominates the run time). */
function pki(): Promise<Pki> {
  cached ??= (async () => {
    const root = await createRootCa({ commonName: 'cyphonic test root' });
    const inter = await createIntermediateCa(root, { commonName: 'cyphonic test AS' });
    const interDer = toDer(inter.certPem);
    const otherRoot = await createRootCa({ commonName: 'cyphonic test root' });
    const otherInter = await createIntermediateCa(otherRoot, { commonName: 'cyphonic test AS' });
    return {
      root,
      inter,
      rootDer: toDer(root.certPem),
      interDer,
      alpha: await makeNode(inter, [interDer], 'alpha', 101),
      bravo: await makeNode(inter, [interDer], 'bravo', 202),
      revoked: await makeNode(inter, [interDer], 'charlie', 303),
      impostor: await makeNode(inter, [interDer], 'impostor', 202),
      foreign: await makeNode(otherInter, [toDer(otherInter.certPem)], 'bravo', 202),
    };
  })();
  return cached;
}

const clock = { t: Date.now() };

function anchors(p: Pki, opts: { now?: () => number; revoked?: string[]; withIntermediate?: boolean } = {}): TrustAnchors {
  const revoked = new Set([p.revoked.serial, ...(opts.revoked ?? [])]);
  return {
    rootsDer: [p.rootDer],
    intermediatesDer: opts.withIntermediate === false ? [] : [p.interDer],
    isRevoked: (s) => revoked.has(s),
    now: opts.now ?? (() => clock.t),
  };
}

function newPath(tempKey = false): PathKeys {
  return { pathId: 0x0123_4567_89ab_cdefn, tunnelKey: randomBytes(32), ...(tempKey ? { tempKey: randomBytes(32) } : {}) };
}

const code = (cls: new (...args: never[]) => CyphonicError, c: string) => (err: unknown) => {
  assert.ok(err instanceof cls, `expected ${cls.name}(${c}), got ${String(err)}`);
  assert.equal((err as CyphonicError).code, c, (err as Error).message);
  return true;
};

/** Runs a full handshake alpha -> bravo and returns both sides' keys. */
function handshake(p: Pki, path: PathKeys, cache = new HandshakeReplayCache()): { i: SessionKeys; r: SessionKeys } {
  const init = new HandshakeInitiator(p.alpha.id, anchors(p), path, p.bravo.peer);
  const req = init.request(1n, 7);
  const { response, keys } = respondToRequest(req, p.bravo.id, anchors(p), path, p.alpha.peer, cache, 1n);
  return { i: init.handleResponse(response), r: keys };
}

describe('tunnel handshake', () => {
  let p: Pki;
  before(async () => {
    p = await pki();
  });

  it('derives identical directional keys on both sides (no temp key)', () => {
    const path = newPath();
    const { i, r } = handshake(p, path);
    assert.equal(i.send.length, 32);
    assert.deepEqual(i.send, r.recv);
    assert.deepEqual(i.recv, r.send);
    assert.notDeepEqual(i.send, i.recv);
    assert.equal(i.initiator, true);
    assert.equal(r.initiator, false);
    assert.equal(i.pathId, path.pathId);
    assert.equal(i.peerNodeId, 202);
    assert.equal(r.peerNodeId, 101);
    assert.deepEqual(i.peerCertDer, p.bravo.id.certDer);
    assert.deepEqual(r.peerCertDer, p.alpha.id.certDer);
    assert.equal(i.establishedAt, clock.t);
    // Each handshake has fresh ephemerals: new keys every time.
    const again = handshake(p, path);
    assert.notDeepEqual(again.i.send, i.send);
  });

  it('frames are sealed TunnelRequest/TunnelResponse on the path id, response echoing the txid', () => {
    const path = newPath();
    const init = new HandshakeInitiator(p.alpha.id, anchors(p), path, p.bravo.peer);
    const req = init.request(99n, 0xdeadbeef);
    const h = splitFrame(req).header;
    assert.equal(h.type, MessageType.TunnelRequest);
    assert.equal(h.id, path.pathId);
    assert.equal(h.seq, 99n);
    assert.equal(h.txid, 0xdeadbeef);
    // The body is encrypted: the certificate does not appear in clear.
    assert.equal(req.indexOf(p.alpha.id.certDer.subarray(0, 64)), -1);
    const { response } = respondToRequest(req, p.bravo.id, anchors(p), path, p.alpha.peer, new HandshakeReplayCache(), 5n);
    const rh = splitFrame(response).header;
    assert.equal(rh.type, MessageType.TunnelResponse);
    assert.equal(rh.txid, 0xdeadbeef);
    assert.equal(rh.seq, 5n);
    assert.equal(init.pending, 1);
    init.handleResponse(response);
    assert.equal(init.pending, 0);
    // The same response cannot complete the handshake twice.
    assert.throws(() => init.handleResponse(response), code(CryptoError, 'ERR_HANDSHAKE_UNEXPECTED'));
  });

  it('verifies a peer whose intermediate is only known from the handshake (tag 7 chain)', () => {
    const path = newPath();
    const a = anchors(p, { withIntermediate: false });
    const init = new HandshakeInitiator(p.alpha.id, a, path, p.bravo.peer);
    const { response, keys } = respondToRequest(init.request(1n, 1), p.bravo.id, a, path, p.alpha.peer, new HandshakeReplayCache(), 1n);
    assert.deepEqual(init.handleResponse(response).send, keys.recv);
  });

  it('with a temp key: both agree, and the key differs from the one without it', () => {
    const path = newPath(true);
    const { i, r } = handshake(p, path);
    assert.deepEqual(i.send, r.recv);
    assert.deepEqual(i.recv, r.send);
    const shared = randomBytes(32);
    const ei = randomBytes(32);
    const er = randomBytes(32);
    const withTemp = deriveEndKeys(shared, path, 101, 202, ei, er);
    const withoutTemp = deriveEndKeys(shared, { pathId: path.pathId, tunnelKey: path.tunnelKey }, 101, 202, ei, er);
    assert.notDeepEqual(withTemp.i2r, withoutTemp.i2r);
    assert.notDeepEqual(withTemp.r2i, withoutTemp.r2i);
  });

  it('an observer holding tunnel key and temp key (NMS, relay) cannot compute the data keys', () => {
    const path = newPath(true);
    const init = new HandshakeInitiator(p.alpha.id, anchors(p), path, p.bravo.peer);
    const req = init.request(1n, 1);
    const { response, keys: rKeys } = respondToRequest(req, p.bravo.id, anchors(p), path, p.alpha.peer, new HandshakeReplayCache(), 1n);
    const iKeys = init.handleResponse(response);
    const capsule = new DataSession(iKeys).seal(Buffer.from('secret payload'));
    assert.deepEqual(new DataSession(rKeys).open(capsule), Buffer.from('secret payload'));

    // The observer can open both handshake messages (they are only sealed with the tunnel key)…
    const seen = [req, response].map((frame, k) => {
      const { header, headerBytes, body } = splitFrame(frame);
      const info = k === 0 ? INFO_TUNNEL_I2R : 'cyphonic v1 tunnel responder->initiator';
      const salt = Buffer.alloc(8);
      salt.writeBigUInt64BE(BigInt(k === 0 ? 101 : 202));
      const key = new AeadKey(hkdf(path.tunnelKey, salt, info, 32));
      const nonce = Buffer.alloc(12);
      nonce.writeBigUInt64BE(header.seq, 4);
      return decodeBody(MessageType.TunnelRequest, key.open(nonce, body, headerBytes));
    });
    const [ei, er] = [seen[0]!.ephemeral, seen[1]!.ephemeral];
    // …so it knows every public input; what it lacks is the X25519 secret. Try everything it can compute.
    const info = endKeyInfo(path.pathId, 101, 202, ei, er);
    const candidates: Buffer[] = [];
    for (const ikm of [path.tunnelKey, path.tempKey!, endKeySalt(path), Buffer.concat([ei, er]), Buffer.alloc(32)]) {
      for (const salt of [path.tunnelKey, path.tempKey!, endKeySalt(path), Buffer.alloc(0)]) {
        const okm = hkdf(ikm, salt, info, 64);
        candidates.push(okm.subarray(0, 32), okm.subarray(32));
        candidates.push(hkdf(ikm, salt, INFO_TUNNEL_I2R, 32));
      }
    }
    for (const guess of candidates) {
      const attempt = new DataSession({ ...rKeys, recv: guess });
      assert.equal(attempt.open(capsule), null);
      assert.equal(attempt.counters.badTag, 1);
    }
  });

  it('refuses a request sealed under another tunnel key (ERR_HANDSHAKE_AUTH)', () => {
    const path = newPath();
    const init = new HandshakeInitiator(p.alpha.id, anchors(p), path, p.bravo.peer);
    const req = init.request(1n, 1);
    const other = { ...path, tunnelKey: randomBytes(32) };
    assert.throws(
      () => respondToRequest(req, p.bravo.id, anchors(p), other, p.alpha.peer, new HandshakeReplayCache(), 1n),
      code(CryptoError, 'ERR_HANDSHAKE_AUTH'),
    );
    // And a response under the wrong key.
    const { response } = respondToRequest(req, p.bravo.id, anchors(p), path, p.alpha.peer, new HandshakeReplayCache(), 1n);
    const init2 = new HandshakeInitiator(p.alpha.id, anchors(p), other, p.bravo.peer);
    init2.request(1n, 1);
    assert.throws(() => init2.handleResponse(response), code(CryptoError, 'ERR_HANDSHAKE_AUTH'));
  });

  it('refuses every single-bit corruption of request and response, with typed errors only', () => {
    const path = newPath();
    const init = new HandshakeInitiator(p.alpha.id, anchors(p), path, p.bravo.peer);
    const req = init.request(1n, 1);
    const cache = new HandshakeReplayCache();
    for (let i = 0; i < req.length; i++) {
      const bad = Buffer.from(req);
      bad[i] = bad[i]! ^ (1 << i % 8);
      assert.throws(
        () => respondToRequest(bad, p.bravo.id, anchors(p), path, p.alpha.peer, cache, 1n),
        (err: unknown) => err instanceof DecodeError || (err instanceof CryptoError && /ERR_HANDSHAKE_(AUTH|PATH)/.test(err.code)),
        `byte ${i}`,
      );
    }
    assert.equal(cache.size, 0);
    const { response } = respondToRequest(req, p.bravo.id, anchors(p), path, p.alpha.peer, cache, 1n);
    for (let i = 0; i < response.length; i++) {
      const bad = Buffer.from(response);
      bad[i] = bad[i]! ^ 0x80;
      assert.throws(
        () => init.handleResponse(bad),
        (err: unknown) => err instanceof DecodeError || (err instanceof CryptoError && /ERR_HANDSHAKE_(AUTH|PATH)/.test(err.code)),
        `byte ${i}`,
      );
    }
    // Failed attempts leave the initiator waiting: the genuine response still completes it.
    assert.equal(init.handleResponse(response).pathId, path.pathId);
  });

  it('never throws anything but typed errors on truncated or random bytes', () => {
    const path = newPath();
    const init = new HandshakeInitiator(p.alpha.id, anchors(p), path, p.bravo.peer);
    const req = init.request(1n, 1);
    const inputs = [Buffer.alloc(0), randomBytes(27), req.subarray(0, HEADER_LEN), req.subarray(0, req.length - 1), Buffer.concat([req, Buffer.alloc(1)])];
    for (let k = 0; k < 200; k++) inputs.push(randomBytes(k * 7));
    for (let k = 0; k < 50; k++) {
      // Valid header, random body.
      const frame = Buffer.concat([req.subarray(0, HEADER_LEN), randomBytes(req.length - HEADER_LEN)]);
      inputs.push(frame);
    }
    for (const bytes of inputs) {
      assert.throws(
        () => respondToRequest(bytes, p.bravo.id, anchors(p), path, p.alpha.peer, new HandshakeReplayCache(), 1n),
        (err: unknown) => err instanceof CyphonicError,
      );
      assert.throws(() => init.handleResponse(bytes), (err: unknown) => err instanceof CyphonicError);
    }
  });

  it('refuses an authentic (tunnel-key sealed) request whose body is garbage', () => {
    // Someone holding the tunnel key (the NMS) can seal anything, but cannot sign as the peer.
    const path = newPath();
    const reqKey = new AeadKey(hkdf(path.tunnelKey, Buffer.from('0000000000000065', 'hex'), INFO_TUNNEL_I2R, 32));
    const fields = { type: MessageType.TunnelRequest, txid: 1, seq: 3n, id: path.pathId };
    const call = (frame: Buffer) => () =>
      respondToRequest(frame, p.bravo.id, anchors(p), path, p.alpha.peer, new HandshakeReplayCache(), 1n);
    assert.throws(call(sealFrame(reqKey, fields, randomBytes(100))), code(DecodeError, 'ERR_DECODE_BODY'));

    assert.throws(call(sealFrame(reqKey, fields, Buffer.alloc(0))), code(DecodeError, 'ERR_DECODE_BODY'));
  });

  it('detects substituted fields under a valid tunnel-key seal (ERR_HANDSHAKE_SIGNATURE / _PEER / _PATH)', () => {
    const path = newPath();
    const reqKey = new AeadKey(hkdf(path.tunnelKey, Buffer.from('0000000000000065', 'hex'), INFO_TUNNEL_I2R, 32));
    const fields = { type: MessageType.TunnelRequest, txid: 1, seq: 3n, id: path.pathId };
    const genuine = new HandshakeInitiator(p.alpha.id, anchors(p), path, p.bravo.peer).request(2n, 1);
    const { header, headerBytes, body } = splitFrame(genuine);
    const nonce = Buffer.alloc(12);
    nonce.writeBigUInt64BE(header.seq, 4);
    const decoded = decodeBody(MessageType.TunnelRequest, reqKey.open(nonce, body, headerBytes));
    const reseal = (changes: Partial<typeof decoded>) =>
      sealFrame(reqKey, fields, encodeBody(MessageType.TunnelRequest, { ...decoded, ...changes }));
    const call = (frame: Buffer) => () =>
      respondToRequest(frame, p.bravo.id, anchors(p), path, p.alpha.peer, new HandshakeReplayCache(), 1n);

    // Unchanged body re-sealed (intermediate dropped: the responder has it in its anchors): accepted.
    assert.equal(call(reseal({}))().keys.peerNodeId, 101);
    // Ephemeral swapped (man in the middle with the tunnel key): signature no longer matches.
    assert.throws(call(reseal({ ephemeral: randomBytes(32) })), code(CryptoError, 'ERR_HANDSHAKE_SIGNATURE'));
    assert.throws(call(reseal({ timestamp: decoded.timestamp + 1n })), code(CryptoError, 'ERR_HANDSHAKE_SIGNATURE'));
    const sig = Buffer.from(decoded.signature);
    sig[sig.length - 1] = sig[sig.length - 1]! ^ 1;
    assert.throws(call(reseal({ signature: sig })), code(CryptoError, 'ERR_HANDSHAKE_SIGNATURE'));
    assert.throws(call(reseal({ signature: randomBytes(70) })), code(CryptoError, 'ERR_HANDSHAKE_SIGNATURE'));
    // Another node's (valid) certificate with alpha's signature: identity check fails first.
    assert.throws(call(reseal({ certificate: p.bravo.id.certDer })), code(CryptoError, 'ERR_HANDSHAKE_PEER'));
    assert.throws(call(reseal({ nodeId: 999 })), code(CryptoError, 'ERR_HANDSHAKE_PEER'));
    assert.throws(call(reseal({ pathId: 1n })), code(CryptoError, 'ERR_HANDSHAKE_PATH'));
    assert.throws(call(reseal({ certificate: randomBytes(300) })), code(CertificateError, 'ERR_CERT_MALFORMED'));
  });

  it('refuses a peer certified by another CA (ERR_CERT_UNTRUSTED)', () => {
    const path = newPath();
    const init = new HandshakeInitiator(p.foreign.id, anchors(p), path, p.alpha.peer);
    const req = init.request(1n, 1);
    assert.throws(
      () => respondToRequest(req, p.alpha.id, anchors(p), path, p.foreign.peer, new HandshakeReplayCache(), 1n),
      code(CertificateError, 'ERR_CERT_UNTRUSTED'),
    );
    // And as a responder.
    const init2 = new HandshakeInitiator(p.alpha.id, anchors(p), path, p.bravo.peer);
    const { response } = respondToRequest(init2.request(1n, 1), p.foreign.id, anchors(p), path, p.alpha.peer, new HandshakeReplayCache(), 1n);
    assert.throws(() => init2.handleResponse(response), code(CertificateError, 'ERR_CERT_UNTRUSTED'));
  });

  it('refuses a revoked peer (ERR_CERT_REVOKED), either role', () => {
    const path = newPath();
    const init = new HandshakeInitiator(p.revoked.id, anchors(p), path, p.bravo.peer);
    assert.throws(
      () => respondToRequest(init.request(1n, 1), p.bravo.id, anchors(p), path, p.revoked.peer, new HandshakeReplayCache(), 1n),
      code(CertificateError, 'ERR_CERT_REVOKED'),
    );
    const init2 = new HandshakeInitiator(p.alpha.id, anchors(p, { revoked: [p.bravo.serial] }), path, p.bravo.peer);
    const { response } = respondToRequest(init2.request(1n, 1), p.bravo.id, anchors(p), path, p.alpha.peer, new HandshakeReplayCache(), 1n);
    assert.throws(() => init2.handleResponse(response), code(CertificateError, 'ERR_CERT_REVOKED'));
  });

  it('refuses a peer other than the one the NMS named (ERR_HANDSHAKE_PEER)', () => {
    const path = newPath();
    // Responder expects bravo; the impostor has bravo's node id but another name.
    const init = new HandshakeInitiator(p.impostor.id, anchors(p), path, p.alpha.peer);
    assert.throws(
      () => respondToRequest(init.request(1n, 1), p.alpha.id, anchors(p), path, p.bravo.peer, new HandshakeReplayCache(), 1n),
      code(CryptoError, 'ERR_HANDSHAKE_PEER'),
    );
    // Initiator expects bravo (id 202, name bravo) but told the responder the name is wrong.
    const init2 = new HandshakeInitiator(p.alpha.id, anchors(p), path, { nodeId: 202, name: 'not-bravo' });
    const { response } = respondToRequest(init2.request(1n, 1), p.bravo.id, anchors(p), path, p.alpha.peer, new HandshakeReplayCache(), 1n);
    assert.throws(() => init2.handleResponse(response), code(CryptoError, 'ERR_HANDSHAKE_PEER'));
    // A request from a node the responder does not expect at all does not even authenticate (per-sender key).
    const init3 = new HandshakeInitiator(p.revoked.id, anchors(p), path, p.bravo.peer);
    assert.throws(
      () => respondToRequest(init3.request(1n, 1), p.bravo.id, anchors(p), path, p.alpha.peer, new HandshakeReplayCache(), 1n),
      code(CryptoError, 'ERR_HANDSHAKE_AUTH'),
    );
  });

  it('refuses timestamps more than 120 s behind or 30 s ahead (ERR_HANDSHAKE_STALE)', () => {
    const path = newPath();
    // The responder's clock runs `offset` ahead of the request's: +: the request lags, -: it runs ahead.
    const respondAt = (offset: number) => {
      const init = new HandshakeInitiator(p.alpha.id, anchors(p), path, p.bravo.peer);
      const req = init.request(1n, 1);
      return respondToRequest(req, p.bravo.id, anchors(p, { now: () => clock.t + offset }), path, p.alpha.peer, new HandshakeReplayCache(), 1n);
    };
    for (const offset of [HANDSHAKE_MAX_SKEW_MS + 1, -(HANDSHAKE_MAX_AHEAD_MS + 1), -60_000, -(HANDSHAKE_MAX_SKEW_MS + 1)]) {
      assert.throws(() => respondAt(offset), code(CryptoError, 'ERR_HANDSHAKE_STALE'), `offset ${offset}`);
    }
    // Exactly at either limit is accepted.
    assert.ok(respondAt(HANDSHAKE_MAX_SKEW_MS).response);
    assert.ok(respondAt(-HANDSHAKE_MAX_AHEAD_MS).response);
    assert.ok(HANDSHAKE_MAX_AHEAD_MS <= 30_000, 'the future is tight');
  });

  it('refuses a response to a request older than the skew window', () => {
    const path = newPath();
    let t = clock.t;
    const a = anchors(p, { now: () => t });
    const init = new HandshakeInitiator(p.alpha.id, a, path, p.bravo.peer);
    const req = init.request(1n, 1);
    t += HANDSHAKE_MAX_SKEW_MS + 1;
    // The responder is just as late, so its own timestamp is current; the request is stale at the responder…
    assert.throws(
      () => respondToRequest(req, p.bravo.id, a, path, p.alpha.peer, new HandshakeReplayCache(), 1n),
      code(CryptoError, 'ERR_HANDSHAKE_STALE'),
    );
    // …and a response made in time but delivered late is stale at the initiator.
    t = clock.t;
    const init2 = new HandshakeInitiator(p.alpha.id, a, path, p.bravo.peer);
    const { response } = respondToRequest(init2.request(2n, 2), p.bravo.id, anchors(p), path, p.alpha.peer, new HandshakeReplayCache(), 1n);
    t += HANDSHAKE_MAX_SKEW_MS + 1;
    assert.throws(() => init2.handleResponse(response), code(CryptoError, 'ERR_HANDSHAKE_STALE'));
  });

  it('refuses a replayed request (ERR_HANDSHAKE_REPLAY), then as stale once forgotten', () => {
    const path = newPath();
    let t = clock.t;
    const a = anchors(p, { now: () => t });
    const cache = new HandshakeReplayCache();
    const req = new HandshakeInitiator(p.alpha.id, a, path, p.bravo.peer).request(1n, 1);
    respondToRequest(req, p.bravo.id, a, path, p.alpha.peer, cache, 1n);
    assert.throws(() => respondToRequest(req, p.bravo.id, a, path, p.alpha.peer, cache, 2n), code(CryptoError, 'ERR_HANDSHAKE_REPLAY'));
    t += 60_000;
    assert.throws(() => respondToRequest(req, p.bravo.id, a, path, p.alpha.peer, cache, 3n), code(CryptoError, 'ERR_HANDSHAKE_REPLAY'));
    t += 200_000; // entry expired, but the request is stale by then
    assert.throws(() => respondToRequest(req, p.bravo.id, a, path, p.alpha.peer, cache, 4n), code(CryptoError, 'ERR_HANDSHAKE_STALE'));
    assert.equal(cache.seen(path.pathId, Buffer.alloc(32), BigInt(t), t), false);
    assert.equal(cache.size, 0, 'expired entries are dropped');
  });

  it('replay cache: bounded, and fails closed on overflow', () => {
    assert.throws(() => new HandshakeReplayCache(10, 1000), RangeError);
    const cache = new HandshakeReplayCache(3);
    const eph = [0, 1, 2, 3].map(() => randomBytes(32));
    const now = 1_000_000;
    for (let k = 0; k < 3; k++) assert.equal(cache.accept(1n, eph[k]!, BigInt(now + k), now), true);
    assert.equal(cache.accept(1n, eph[0]!, BigInt(now), now), false, 'duplicate');
    // Full: accepting evicts the oldest live entry and raises the timestamp floor to its timestamp…
    assert.equal(cache.accept(2n, eph[0]!, BigInt(now + 3), now), true);
    assert.equal(cache.size, 3);
    // …so a replay of the evicted request is still refused.
    assert.equal(cache.seen(1n, eph[0]!, BigInt(now), now), true);
    assert.equal(cache.accept(1n, eph[3]!, BigInt(now + 10), now), true);
    assert.equal(cache.accept(9n, randomBytes(32), BigInt(now + 1), now), false, 'not newer than the floor');
    // Entries expire windowMs after acceptance.
    assert.equal(cache.seen(1n, randomBytes(32), BigInt(now + 5_000_000), now + 240_001), false);
    assert.equal(cache.size, 0);
  });

  it('simultaneous initiation resolves to one session', () => {
    assert.equal(resolveSimultaneous(101, 202), 'keep-mine');
    assert.equal(resolveSimultaneous(202, 101), 'answer-theirs');
    assert.throws(() => resolveSimultaneous(5, 5), RangeError);
    for (const order of ['a-first', 'b-first'] as const) {
      const path = newPath();
      const a = new PathHandshake(p.alpha.id, anchors(p), path, p.bravo.peer, new HandshakeReplayCache());
      const b = new PathHandshake(p.bravo.id, anchors(p), path, p.alpha.peer, new HandshakeReplayCache());
      const reqA = a.initiate(1n, 11);
      const reqB = b.initiate(1n, 22);
      assert.equal(a.state, 'initiating');
      let resp: { response: Buffer; keys: SessionKeys } | null;
      if (order === 'a-first') {
        assert.equal(a.onRequest(reqB, 2n), null); // alpha (lower id) keeps its own request
        resp = b.onRequest(reqA, 2n); // bravo abandons its own and answers
      } else {
        resp = b.onRequest(reqA, 2n);
        assert.equal(a.onRequest(reqB, 2n), null);
      }
      assert.ok(resp);
      assert.equal(b.state, 'established');
      const keysA = a.onResponse(resp.response);
      assert.ok(keysA);
      assert.equal(a.state, 'established');
      assert.deepEqual(keysA.send, resp.keys.recv);
      assert.deepEqual(keysA.recv, resp.keys.send);
      assert.equal(keysA.initiator, true);
      assert.equal(resp.keys.initiator, false);
      // Bravo's abandoned initiation can no longer complete.
      assert.equal(b.onResponse(resp.response), null);
    }
  });

  it('path state machine: a request while established is a rekey; failures do not change state', () => {
    const path = newPath();
    const a = new PathHandshake(p.alpha.id, anchors(p), path, p.bravo.peer, new HandshakeReplayCache());
    const b = new PathHandshake(p.bravo.id, anchors(p), path, p.alpha.peer, new HandshakeReplayCache());
    const first = b.onRequest(a.initiate(1n, 1), 1n)!;
    const k1 = a.onResponse(first.response)!;
    // Bravo (higher id) rekeys; alpha is established, so it answers.
    const req = b.initiate(2n, 2);
    assert.throws(() => a.onRequest(Buffer.from(req).fill(0, 40, 60), 2n), (e: unknown) => e instanceof CyphonicError);
    assert.equal(a.state, 'established');
    const second = a.onRequest(req, 2n)!;
    const k2 = b.onResponse(second.response)!;
    assert.deepEqual(k2.send, second.keys.recv);
    assert.notDeepEqual(k2.send, k1.recv);
    assert.equal(k2.initiator, true);
  });

  it('a retransmitted request (fresh ephemeral, new txid) is answered and matched by txid', () => {
    const path = newPath();
    const init = new HandshakeInitiator(p.alpha.id, anchors(p), path, p.bravo.peer);
    init.request(1n, 1); // lost
    const second = init.request(2n, 2);
    assert.equal(init.pending, 2);
    const { response, keys } = respondToRequest(second, p.bravo.id, anchors(p), path, p.alpha.peer, new HandshakeReplayCache(), 1n);
    assert.deepEqual(init.handleResponse(response).send, keys.recv);
  });

  it('validates its parameters', () => {
    const path = newPath();
    assert.throws(() => new HandshakeInitiator(p.alpha.id, anchors(p), { ...path, tunnelKey: randomBytes(16) }, p.bravo.peer), code(CryptoError, 'ERR_KEY_LENGTH'));
    assert.throws(() => new HandshakeInitiator(p.alpha.id, anchors(p), { ...path, tempKey: randomBytes(31) }, p.bravo.peer), code(CryptoError, 'ERR_KEY_LENGTH'));
    assert.throws(() => new HandshakeInitiator(p.alpha.id, anchors(p), path, p.alpha.peer), code(CryptoError, 'ERR_HANDSHAKE_PARAMS'));
    assert.throws(() => new HandshakeInitiator(p.alpha.id, anchors(p), { ...path, pathId: -1n }, p.bravo.peer), code(CryptoError, 'ERR_HANDSHAKE_PARAMS'));
    assert.throws(
      () => new HandshakeInitiator({ ...p.alpha.id, privateKeyPem: 'nope' }, anchors(p), path, p.bravo.peer),
      code(CryptoError, 'ERR_KEY_INVALID'),
    );
  });
});
