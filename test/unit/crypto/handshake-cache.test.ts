// The remembered peer-certificate checks and parses of the handshake: a certificate verified ahead of time is not verified
// again, but revocation, expiry and identity are still checked on every use. The responder's replay cache is
// bounded and counts what it evicts.

import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCsr, createIntermediateCa, createRootCa, generateKeyPair, issueNodeCertificate, toDer } from '../../../src/crypto/index.js';
import { HandshakeInitiator, HandshakeReplayCache, preverifyPeerCertificate, respondToRequest, warmSigningKey, type LocalIdentity, type TrustAnchors } from '../../../src/crypto/handshake.js';
import { randomBytes } from 'node:crypto';
import { parseCert } from '../../../src/crypto/pem.js';
import { CertificateError } from '../../../src/util/errors.js';

let anchors: TrustAnchors;
let inter: Awaited<ReturnType<typeof createIntermediateCa>>;
let cert: Buffer;
let serial: string;
const revoked = new Set<string>();

before(async () => {
  const root = await createRootCa({ commonName: 'root' });
  inter = await createIntermediateCa(root, { commonName: 'as' });
  const { privateKeyPem } = await generateKeyPair();
  const issued = await issueNodeCertificate(inter, await createCsr(privateKeyPem, 'beta'), { name: 'beta', fqdn: 'beta.cyphonic.internal', nodeId: 7 });
  cert = issued.certDer;
  serial = issued.serial;
  anchors = { rootsDer: [toDer(root.certPem)], intermediatesDer: [toDer(inter.certPem)], isRevoked: (s) => revoked.has(s) };
});

test('a verified certificate yields its name and node id, from the cache the second time', () => {
  assert.deepEqual(preverifyPeerCertificate(anchors, cert), { name: 'beta', nodeId: 7 });
  assert.deepEqual(preverifyPeerCertificate(anchors, cert), { name: 'beta', nodeId: 7 });
});

test('revocation after caching is still seen', () => {
  revoked.add(serial);
  try {
    assert.throws(() => preverifyPeerCertificate(anchors, cert), (e: unknown) => e instanceof CertificateError && e.code === 'ERR_CERT_REVOKED');
  } finally {
    revoked.delete(serial);
  }
});

test('a cached certificate is refused once expired', () => {
  assert.throws(() => preverifyPeerCertificate(anchors, cert, Date.now() + 10 * 365 * 86_400_000), (e: unknown) => e instanceof CertificateError && e.code === 'ERR_CERT_EXPIRED');
});

test('other anchors (another CA) do not share the cache', async () => {
  const other = await createRootCa({ commonName: 'other root' });
  const foreign: TrustAnchors = { rootsDer: [toDer(other.certPem)], intermediatesDer: [], isRevoked: () => false };
  assert.throws(() => preverifyPeerCertificate(foreign, cert), (e: unknown) => e instanceof CertificateError && e.code === 'ERR_CERT_UNTRUSTED');
});

test('the replay cache holds at most its capacity, counts evictions, and refuses what is not newer than the evicted', () => {
  let evictions = 0;
  const cache = new HandshakeReplayCache(3, 240_000, () => evictions++);
  const now = 1_000_000;
  const eph = (i: number): Buffer => Buffer.alloc(32, i);
  for (let i = 1; i <= 5; i++) assert.equal(cache.accept(1n, eph(i), BigInt(now + i), now), true);
  assert.equal(cache.size, 3);
  assert.equal(cache.evicted, 2);
  assert.equal(evictions, 2);
  assert.equal(cache.accept(1n, eph(9), BigInt(now + 2), now), false, 'not newer than an evicted request: refused');
  assert.equal(cache.accept(1n, eph(5), BigInt(now + 5), now), false, 'a replay');
  assert.equal(cache.accept(1n, eph(6), BigInt(now + 6), now), true);
});

test('a certificate is parsed once per distinct bytes: the same bytes share one parse, changed bytes never do', () => {
  const copy = Buffer.from(cert);
  const first = parseCert(copy);
  assert.equal(parseCert(Buffer.from(cert)), first, 'the same bytes: the parse is shared');
  // The caller's buffer reused for something else (a receive buffer): what was parsed keeps the original bytes.
  copy.fill(0);
  assert.deepEqual(first.der, cert);
  assert.equal(parseCert(cert), first);
  // One byte changed in the signature: parsed on its own, and the chain check refuses it.
  const forged = Buffer.from(cert);
  forged[forged.length - 3]! ^= 0x01;
  assert.notEqual(parseCert(forged), first);
  assert.throws(() => preverifyPeerCertificate(anchors, forged), (e: unknown) => e instanceof CertificateError);
  // Garbage is refused every time, never remembered as anything.
  for (let i = 0; i < 2; i++) assert.throws(() => parseCert(Buffer.from('30030201ff', 'hex')), (e: unknown) => e instanceof CertificateError && e.code === 'ERR_CERT_MALFORMED');
});

test('a signing key warmed at start is the one a handshake signs with, and a renewed key replaces it', async () => {
  const node = async (name: string, nodeId: number): Promise<{ privateKeyPem: string; certDer: Buffer }> => {
    const { privateKeyPem } = await generateKeyPair();
    const issued = await issueNodeCertificate(inter, await createCsr(privateKeyPem, name), { name, fqdn: `${name}.cyphonic.internal`, nodeId });
    return { privateKeyPem, certDer: issued.certDer };
  };
  const chain = [anchors.intermediatesDer[0]!];
  const a = await node('alpha', 21);
  const first = await node('bravo', 22);
  const renewed = await node('bravo', 22); // a renewal: a new key and certificate for the same node
  const alpha: LocalIdentity = { nodeId: 21, certDer: a.certDer, chainDer: chain, privateKeyPem: a.privateKeyPem };
  // One identity object whose key and certificate change in place, as the node's view does after a renewal.
  const bravo: LocalIdentity = { nodeId: 22, certDer: first.certDer, chainDer: chain, privateKeyPem: first.privateKeyPem };
  warmSigningKey(bravo);
  let id = 100n;
  const answer = (): void => {
    const path = { pathId: ++id, tunnelKey: randomBytes(32) };
    const init = new HandshakeInitiator(alpha, anchors, path, { nodeId: 22, name: 'bravo' });
    const { response, keys } = respondToRequest(init.request(1n, 1), bravo, anchors, path, { nodeId: 21, name: 'alpha' }, new HandshakeReplayCache(), 1n);
    // The initiator checks the response's signature against the certificate it carries: the key must match it.
    assert.ok(init.handleResponse(response).send.equals(keys.recv));
  };
  answer();
  bravo.privateKeyPem = renewed.privateKeyPem;
  bravo.certDer = renewed.certDer;
  answer();
  assert.throws(() => warmSigningKey({ ...alpha, privateKeyPem: '-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n' }));
});
