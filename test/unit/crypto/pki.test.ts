// Unit tests for the PKI: root -> intermediate -> node/server certificates, verifyChain and its error codes,
// certificate accessors, and a real mutual-TLS 1.3 handshake on 127.0.0.1 with the issued material.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import {
  AS_SERVER_PURPOSE,
  certInfo,
  commonNameOf,
  createCsr,
  createIntermediateCa,
  createRootCa,
  fingerprint,
  generateKeyPair,
  issueNodeCertificate,
  issueServerCertificate,
  loadPrivateKey,
  nodeIdOf,
  publicKeyFromCert,
  serialOf,
  splitPemChain,
  toDer,
  toPem,
  verifyChain,
  type CaMaterial,
} from '../../../src/crypto/index.js';
import { keyDers } from '../../../src/crypto/keys.js';
import { SIGNING_ALGORITHM, importWebKeyPair, x509 } from '../../../src/crypto/x509lib.js';
import { CertificateError } from '../../../src/util/errors.js';
import { certCode } from '../../harness/cert-errors.js';

const DAY = 86_400_000;

interface NodeMaterial {
  keyPem: string;
  certPem: string;
  certDer: Buffer;
  serial: string;
  notAfter: Date;
}

async function makeNode(ca: CaMaterial, name: string, extra: { validDays?: number; now?: Date } = {}): Promise<NodeMaterial> {
  const { privateKeyPem } = await generateKeyPair();
  const csr = await createCsr(privateKeyPem, 'csr-subject-is-ignored');
  const issued = await issueNodeCertificate(ca, csr, { name, fqdn: `${name}.cyphonic.internal`, nodeId: 42, ...extra });
  return { keyPem: privateKeyPem, ...issued };
}

describe('PKI issuance and verifyChain', () => {
  let root: CaMaterial;
  let inter: CaMaterial;
  let node: NodeMaterial;
  let otherRoot: CaMaterial;
  let otherInter: CaMaterial;

  before(async () => {
    root = await createRootCa({ commonName: 'cyphonic root' });
    inter = await createIntermediateCa(root, { commonName: 'cyphonic AS' });
    node = await makeNode(inter, 'alpha');
    otherRoot = await createRootCa({ commonName: 'cyphonic root' }); // same name, different key
    otherInter = await createIntermediateCa(otherRoot, { commonName: 'cyphonic AS' });
  });

  it('builds CA certificates with the right constraints and lifetimes', () => {
    const r = new X509Certificate(root.certPem);
    const i = new X509Certificate(inter.certPem);
    assert.equal(r.ca, true);
    assert.equal(i.ca, true);
    assert.equal(i.checkIssued(r), true);
    assert.equal(i.verify(r.publicKey), true);
    const rInfo = certInfo(root.certPem);
    const iInfo = certInfo(inter.certPem);
    assert.ok(Math.abs(rInfo.notAfter.getTime() - Date.now() - 3650 * DAY) < 60_000);
    assert.ok(Math.abs(iInfo.notAfter.getTime() - Date.now() - 1825 * DAY) < 60_000);
    assert.equal(iInfo.isCa, true);
    assert.match(root.keyPem, /^-----BEGIN PRIVATE KEY-----/);
  });

  it('issues a node certificate from a CSR that verifies up to the root', () => {
    const res = verifyChain(node.certDer, [inter.certPem], [root.certPem]);
    assert.equal(res.commonName, 'alpha');
    assert.equal(res.serial, node.serial);
    assert.equal(res.notAfter.getTime(), node.notAfter.getTime());
    assert.equal(res.fingerprint, fingerprint(node.certPem));
    // PEM/DER inputs are interchangeable.
    assert.deepEqual(verifyChain(node.certPem, [toDer(inter.certPem)], [toDer(root.certPem)]), res);
  });

  it('puts the requested identity in the certificate, not the CSR subject', () => {
    const x = new X509Certificate(node.certDer);
    assert.equal(commonNameOf(node.certDer), 'alpha');
    assert.equal(nodeIdOf(node.certPem), 42);
    assert.equal(x.subjectAltName, 'DNS:alpha.cyphonic.internal');
    assert.equal(x.ca, false);
    assert.deepEqual([...(x.keyUsage ?? [])].sort(), ['1.3.6.1.5.5.7.3.2'], 'clientAuth only: a node certificate is no TLS server certificate');
    assert.equal(x.checkPrivateKey(loadPrivateKey(node.keyPem)), true);
    assert.equal(publicKeyFromCert(node.certPem).export({ format: 'jwk' }).x, x.publicKey.export({ format: 'jwk' }).x);
    assert.ok(!x.subject.includes('csr-subject-is-ignored'));
  });

  it('uses random positive 16-byte serials printed like node prints them', async () => {
    assert.match(node.serial, /^[0-9a-f]{32}$/);
    assert.equal(node.serial, new X509Certificate(node.certDer).serialNumber.toLowerCase());
    assert.equal(serialOf(node.certPem), node.serial);
    assert.equal(serialOf(node.certDer), node.serial);
    const second = await makeNode(inter, 'beta');
    assert.notEqual(second.serial, node.serial);
  });

  it('fingerprint is SHA-256 of the DER in lowercase hex', () => {
    const fp = fingerprint(node.certPem);
    assert.match(fp, /^[0-9a-f]{64}$/);
    assert.equal(fp, new X509Certificate(node.certDer).fingerprint256.replace(/:/g, '').toLowerCase());
    assert.equal(fingerprint(node.certDer), fp);
  });

  it('converts between PEM and DER and splits PEM chains', () => {
    assert.deepEqual(toDer(toPem(node.certDer)), node.certDer);
    assert.equal(toPem(node.certDer), node.certPem);
    const bundle = `subject=alpha\n${node.certPem}\n${inter.certPem}\r\n${root.certPem}`;
    assert.deepEqual(splitPemChain(bundle), [node.certPem, inter.certPem, root.certPem]);
    assert.deepEqual(splitPemChain(''), []);
    assert.deepEqual(toDer(Buffer.from(inter.certPem)), toDer(inter.certPem));
  });

  it('the AS server certificate verifies and carries its SANs', async () => {
    const server = await issueServerCertificate(inter, {
      commonName: 'as.cyphonic',
      ipAddresses: ['127.0.0.1', '::1'],
      dnsNames: ['as.cyphonic.internal'],
    });
    const res = verifyChain(server.certPem, [inter.certPem], [root.certPem]);
    assert.equal(res.commonName, 'as.cyphonic');
    const x = new X509Certificate(server.certPem);
    assert.equal(x.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(x.checkHost('as.cyphonic.internal'), 'as.cyphonic.internal');
    assert.deepEqual(x.keyUsage, ['1.3.6.1.5.5.7.3.1', AS_SERVER_PURPOSE]);
    assert.equal(x.ca, false);
  });

  it('rejects a certificate from another root with ERR_CERT_UNTRUSTED', async () => {
    const foreign = await makeNode(otherInter, 'mallory');
    assert.throws(() => verifyChain(foreign.certPem, [otherInter.certPem], [root.certPem]), certCode('ERR_CERT_UNTRUSTED'));
    assert.throws(() => verifyChain(foreign.certPem, [otherInter.certPem, inter.certPem], [root.certPem]), certCode('ERR_CERT_UNTRUSTED'));
    assert.throws(() => verifyChain(node.certPem, [otherInter.certPem], [root.certPem]), certCode('ERR_CERT_UNTRUSTED'));
    assert.throws(() => verifyChain(node.certPem, [], [root.certPem]), certCode('ERR_CERT_UNTRUSTED'));
    assert.throws(() => verifyChain(node.certPem, [inter.certPem], [otherRoot.certPem]), certCode('ERR_CERT_UNTRUSTED'));
    assert.throws(() => verifyChain(node.certPem, [inter.certPem], []), certCode('ERR_CERT_UNTRUSTED'));
    // Any trusted root will do; the right one is found among several.
    assert.equal(verifyChain(node.certPem, [otherInter.certPem, inter.certPem], [otherRoot.certPem, root.certPem]).commonName, 'alpha');
  });

  it('rejects expired and not-yet-valid certificates with ERR_CERT_EXPIRED', async () => {
    const past = new Date(Date.now() - 10 * DAY);
    const oldRoot = await createRootCa({ commonName: 'old root', now: new Date(past.getTime() - DAY) });
    const oldInter = await createIntermediateCa(oldRoot, { commonName: 'old AS', now: new Date(past.getTime() - DAY) });
    const expired = await makeNode(oldInter, 'old', { now: past, validDays: 1 });
    assert.ok(expired.notAfter.getTime() < Date.now());
    assert.throws(() => verifyChain(expired.certPem, [oldInter.certPem], [oldRoot.certPem]), certCode('ERR_CERT_EXPIRED'));
    const atIssue = { now: new Date(past.getTime() + 3_600_000) };
    assert.equal(verifyChain(expired.certPem, [oldInter.certPem], [oldRoot.certPem], atIssue).commonName, 'old');
    // A leaf issued with validDays small, checked with a later clock.
    const short = await makeNode(inter, 'short', { validDays: 1 / 24 });
    verifyChain(short.certPem, [inter.certPem], [root.certPem]);
    assert.throws(() => verifyChain(short.certPem, [inter.certPem], [root.certPem], { now: new Date(Date.now() + 2 * 3_600_000) }), certCode('ERR_CERT_EXPIRED'));
    // Later than the leaf's lifetime but within the CA's, and before anything was issued.
    assert.throws(() => verifyChain(node.certPem, [inter.certPem], [root.certPem], { now: new Date(Date.now() + 100 * DAY) }), certCode('ERR_CERT_EXPIRED'));
    assert.throws(() => verifyChain(node.certPem, [inter.certPem], [root.certPem], { now: new Date('2001-01-01T00:00:00Z') }), certCode('ERR_CERT_EXPIRED'));
    // An expired intermediate fails the whole chain.
    assert.throws(() => verifyChain(node.certPem, [inter.certPem], [root.certPem], { now: new Date(Date.now() + 3000 * DAY) }), certCode('ERR_CERT_EXPIRED'));
  });

  it('caps issued lifetimes at the issuing CA\'s notAfter', async () => {
    const long = await makeNode(inter, 'forever', { validDays: 100_000 });
    assert.equal(long.notAfter.getTime(), certInfo(inter.certPem).notAfter.getTime());
  });

  it('rejects revoked leaves and revoked intermediates with ERR_CERT_REVOKED', () => {
    const revoked = new Set([node.serial]);
    assert.throws(
      () => verifyChain(node.certPem, [inter.certPem], [root.certPem], { isRevoked: (s) => revoked.has(s) }),
      certCode('ERR_CERT_REVOKED'),
    );
    const interSerial = serialOf(inter.certPem);
    assert.throws(
      () => verifyChain(node.certPem, [inter.certPem], [root.certPem], { isRevoked: (s) => s === interSerial }),
      certCode('ERR_CERT_REVOKED'),
    );
    const seen: string[] = [];
    verifyChain(node.certPem, [inter.certPem], [root.certPem], { isRevoked: (s) => (seen.push(s), false) });
    assert.deepEqual(seen, [node.serial, interSerial]);
  });

  it('rejects garbage with ERR_CERT_MALFORMED', () => {
    const der = node.certDer;
    const inputs: Array<string | Buffer> = [
      randomBytes(300),
      Buffer.alloc(0),
      der.subarray(0, der.length - 1),
      Buffer.concat([der, Buffer.from([0])]),
      'not a certificate',
      '-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n',
      '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n',
      toPem(randomBytes(200)),
    ];
    for (const input of inputs) {
      assert.throws(() => verifyChain(input, [inter.certPem], [root.certPem]), certCode('ERR_CERT_MALFORMED'));
    }
    assert.throws(() => verifyChain(node.certPem, [randomBytes(50)], [root.certPem]), certCode('ERR_CERT_MALFORMED'));
    assert.throws(() => verifyChain(node.certPem, [inter.certPem], ['garbage']), certCode('ERR_CERT_MALFORMED'));
    assert.throws(() => serialOf(randomBytes(10)), certCode('ERR_CERT_MALFORMED'));
    assert.throws(() => commonNameOf('x'), certCode('ERR_CERT_MALFORMED'));
  });

  it('never throws anything but CertificateError for mutated certificates', () => {
    for (let i = 0; i < 400; i++) {
      const bad = Buffer.from(node.certDer);
      const pos = Math.floor(Math.random() * bad.length);
      bad[pos] = (bad[pos]! + 1 + Math.floor(Math.random() * 255)) & 0xff;
      assert.throws(() => verifyChain(bad, [inter.certPem], [root.certPem]), (err: unknown) => err instanceof CertificateError);
    }
  });

  it('rejects a node certificate used as an issuer', async () => {
    // At issuance: a non-CA cannot issue.
    const { privateKeyPem } = await generateKeyPair();
    const csr = await createCsr(privateKeyPem, 'x');
    await assert.rejects(
      issueNodeCertificate({ certPem: node.certPem, keyPem: node.keyPem }, csr, { name: 'evil', fqdn: 'evil.x', nodeId: 1 }),
      certCode('ERR_CERT_NOT_CA'),
    );
    // At verification: a certificate correctly signed by a node's key does not chain.
    const nodeKeys = keyDers(node.keyPem);
    const webKeys = await importWebKeyPair(nodeKeys.pkcs8, nodeKeys.spki);
    const victim = keyDers(privateKeyPem);
    const victimPublic = (await importWebKeyPair(victim.pkcs8, victim.spki)).publicKey;
    const forged = await x509.X509CertificateGenerator.create({
      subject: [{ CN: ['evil'] }],
      issuer: new x509.X509Certificate(node.certDer).subjectName,
      notBefore: new Date(Date.now() - DAY),
      notAfter: new Date(Date.now() + DAY),
      publicKey: victimPublic as never,
      signingKey: webKeys.privateKey as never,
      signingAlgorithm: SIGNING_ALGORITHM,
    });
    const forgedDer = Buffer.from(forged.rawData);
    assert.equal(new X509Certificate(forgedDer).verify(new X509Certificate(node.certDer).publicKey), true);
    assert.throws(() => verifyChain(forgedDer, [node.certPem, inter.certPem], [root.certPem]), certCode('ERR_CERT_NOT_CA'));
  });

  it('bounds the work done on hostile intermediates', async () => {
    const junkInters = await Promise.all(Array.from({ length: 8 }, () => createIntermediateCa(otherRoot, { commonName: 'cyphonic AS' })));
    const t0 = Date.now();
    assert.throws(
      () => verifyChain(node.certPem, junkInters.map((c) => c.certPem), [root.certPem]),
      certCode('ERR_CERT_UNTRUSTED'),
    );
    assert.ok(Date.now() - t0 < 1000);
    const nine = [...junkInters.map((c) => c.certPem), inter.certPem];
    assert.throws(() => verifyChain(node.certPem, nine, [root.certPem]), certCode('ERR_CERT_MALFORMED'));
    // Self-signed certificates offered as intermediates are never anchors.
    assert.throws(() => verifyChain(node.certPem, [inter.certPem, root.certPem], [otherRoot.certPem]), certCode('ERR_CERT_UNTRUSTED'));
    // A root given as the leaf is its own anchor.
    assert.equal(verifyChain(root.certPem, [], [root.certPem]).commonName, 'cyphonic root');
  });

  it('enforces the intermediate\'s pathLen 0', async () => {
    const sub = await createIntermediateCa(inter, { commonName: 'sub CA' });
    const leaf = await makeNode(sub, 'deep');
    assert.throws(() => verifyChain(leaf.certPem, [sub.certPem, inter.certPem], [root.certPem]), certCode('ERR_CERT_NOT_CA'));
  });

  it('refuses a CA whose private key does not match and a tampered CSR', async () => {
    const { privateKeyPem } = await generateKeyPair();
    const csr = await createCsr(privateKeyPem, 'x');
    await assert.rejects(
      issueNodeCertificate({ certPem: inter.certPem, keyPem: otherInter.keyPem }, csr, { name: 'n', fqdn: 'n.x', nodeId: 1 }),
      certCode('ERR_CA_KEY_MISMATCH'),
    );
    const tampered = Buffer.from(csr);
    tampered[tampered.length - 5] = tampered[tampered.length - 5]! ^ 0x01;
    await assert.rejects(issueNodeCertificate(inter, tampered, { name: 'n', fqdn: 'n.x', nodeId: 1 }), certCode('ERR_CSR_INVALID'));
    await assert.rejects(issueNodeCertificate(inter, csr, { name: '', fqdn: 'n.x', nodeId: 1 }), certCode('ERR_CERT_PARAMS'));
    await assert.rejects(issueNodeCertificate(inter, csr, { name: 'n', fqdn: 'bad name!', nodeId: 1 }), certCode('ERR_CERT_PARAMS'));
    await assert.rejects(issueNodeCertificate(inter, csr, { name: 'n', fqdn: 'n.x', nodeId: -1 }), certCode('ERR_CERT_PARAMS'));
  });
});

describe('mutual TLS 1.3 on loopback with issued certificates', () => {
  it('server [server cert, intermediate] and client [node cert, intermediate] authenticate each other', async () => {
    const root = await createRootCa({ commonName: 'tls root' });
    const inter = await createIntermediateCa(root, { commonName: 'tls AS' });
    const server = await issueServerCertificate(inter, { commonName: 'as', ipAddresses: ['127.0.0.1'], dnsNames: [] });
    const client = await makeNode(inter, 'gamma');

    const srv = tls.createServer({
      key: server.keyPem,
      cert: server.certPem + inter.certPem,
      ca: root.certPem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
    });
    const serverSide = new Promise<{ cn: string; chainDer: Buffer[]; authorized: boolean; protocol: string | null }>((resolve, reject) => {
      srv.once('secureConnection', (sock: tls.TLSSocket) => {
        const peer = sock.getPeerCertificate(true);
        const chainDer: Buffer[] = [peer.raw];
        if (peer.issuerCertificate && peer.issuerCertificate !== peer) chainDer.push(peer.issuerCertificate.raw);
        resolve({ cn: commonNameOf(peer.raw), chainDer, authorized: sock.authorized, protocol: sock.getProtocol() });
        sock.end('hello from AS');
      });
      srv.once('tlsClientError', reject);
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const { port } = srv.address() as AddressInfo;
    try {
      const sock = tls.connect({
        host: '127.0.0.1',
        port,
        key: client.keyPem,
        cert: client.certPem + inter.certPem,
        ca: root.certPem,
        minVersion: 'TLSv1.3',
      });
      await once(sock, 'secureConnect');
      assert.equal(sock.authorized, true);
      assert.equal(sock.getProtocol(), 'TLSv1.3');
      assert.equal(commonNameOf(sock.getPeerCertificate().raw), 'as');
      const chunks: Buffer[] = [];
      sock.on('data', (d: Buffer) => chunks.push(d));
      await once(sock, 'end');
      assert.equal(Buffer.concat(chunks).toString(), 'hello from AS');
      sock.destroy();

      const seen = await serverSide;
      assert.equal(seen.authorized, true);
      assert.equal(seen.protocol, 'TLSv1.3');
      assert.equal(seen.cn, 'gamma');
      // The AS re-checks the presented client certificate with verifyChain (e.g. for revocation).
      const [leafDer, ...rest] = seen.chainDer;
      const res = verifyChain(leafDer!, rest, [root.certPem], { isRevoked: () => false });
      assert.equal(res.serial, client.serial);
    } finally {
      srv.close();
    }
  });

  it('a client certificate from another CA is refused by the server', async () => {
    const root = await createRootCa({ commonName: 'tls root 2' });
    const inter = await createIntermediateCa(root, { commonName: 'tls AS 2' });
    const server = await issueServerCertificate(inter, { commonName: 'as', ipAddresses: ['127.0.0.1'], dnsNames: [] });
    const strangerRoot = await createRootCa({ commonName: 'stranger' });
    const stranger = await makeNode(strangerRoot, 'stranger');
    const srv = tls.createServer({ key: server.keyPem, cert: server.certPem + inter.certPem, ca: root.certPem, requestCert: true, rejectUnauthorized: true });
    srv.on('tlsClientError', () => {});
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const { port } = srv.address() as AddressInfo;
    try {
      const sock = tls.connect({ host: '127.0.0.1', port, key: stranger.keyPem, cert: stranger.certPem, ca: root.certPem });
      const outcome = await new Promise<string>((resolve) => {
        sock.once('error', (e: Error) => resolve(`error: ${e.message}`));
        sock.once('close', () => resolve('closed'));
        sock.on('data', () => resolve('data'));
      });
      assert.notEqual(outcome, 'data');
      sock.destroy();
    } finally {
      srv.close();
    }
  });
});
