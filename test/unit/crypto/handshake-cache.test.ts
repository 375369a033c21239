// The remembered peer-certificate checks of the handshake: a certificate verified ahead of time is not verified
// again, but revocation, expiry and identity are still checked on every use.

import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCsr, createIntermediateCa, createRootCa, generateKeyPair, issueNodeCertificate, toDer } from '../../../src/crypto/index.js';
import { preverifyPeerCertificate, type TrustAnchors } from '../../../src/crypto/handshake.js';
import { CertificateError } from '../../../src/util/errors.js';

let anchors: TrustAnchors;
let cert: Buffer;
let serial: string;
const revoked = new Set<string>();

before(async () => {
  const root = await createRootCa({ commonName: 'root' });
  const inter = await createIntermediateCa(root, { commonName: 'as' });
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
