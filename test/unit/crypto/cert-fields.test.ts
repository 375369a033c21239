// Unit tests for checking a certificate on its DER fields (der.ts, verify.ts) instead of OpenSSL's parse: the
// answers match node's X509Certificate (serial, key, subjectAltName), the check needs no X509Certificate for a
// certificate cyphonic issued, and the attacks on that path fail: a changed signature, signed bytes or algorithm, an
// issuer that is not the named key or may not sign certificates, duplicate or malformed extensions, and a name
// encoding only OpenSSL can read.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, randomBytes } from 'node:crypto';
import {
  createCsr,
  createIntermediateCa,
  createRootCa,
  generateKeyPair,
  issueNodeCertificate,
  serialOf,
  subjectAltNames,
  subjectAltNamesRaw,
  type CaMaterial,
} from '../../../src/crypto/index.js';
import { keyDers } from '../../../src/crypto/keys.js';
import { parseCert } from '../../../src/crypto/pem.js';
import { verifyChain, verifyChainParsed } from '../../../src/crypto/verify.js';
import { SIGNING_ALGORITHM, importWebKeyPair, x509 } from '../../../src/crypto/x509lib.js';
import { CertificateError } from '../../../src/util/errors.js';
import { certCode } from '../../harness/cert-errors.js';

const DAY = 86_400_000;

/** DER of one TLV with a short or long length. */
function tlv(tag: number, value: Buffer): Buffer {
  const n = value.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, value]);
}

/** A Name of one commonName in the given string type (0x0c UTF8String, 0x13 PrintableString). */
function cnName(cn: string, stringTag: number): Buffer {
  const atv = tlv(0x30, Buffer.concat([Buffer.from('0603550403', 'hex'), tlv(stringTag, Buffer.from(cn, 'latin1'))]));
  return tlv(0x30, tlv(0x31, atv));
}

interface Forge {
  signer: CaMaterial | { keyPem: string };
  issuer: Buffer | x509.Name;
  subject?: string;
  serial?: string;
  extensions?: x509.Extension[];
  publicKeyPem?: string;
}

/** A certificate signed by `signer`'s key with whatever fields a test wants (an attacker holding that key). */
async function forge(f: Forge): Promise<Buffer> {
  const signer = keyDers(f.signer.keyPem);
  const signing = await importWebKeyPair(signer.pkcs8, signer.spki);
  const subjectKey = f.publicKeyPem ?? (await generateKeyPair()).privateKeyPem;
  const sk = keyDers(subjectKey);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: f.serial ?? randomBytes(16).toString('hex').replace(/^[89a-f]/, '1'),
    subject: f.subject ?? 'CN=mallory',
    issuer: Buffer.isBuffer(f.issuer) ? new x509.Name(f.issuer) : f.issuer,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + DAY),
    publicKey: (await importWebKeyPair(sk.pkcs8, sk.spki)).publicKey as never,
    signingKey: signing.privateKey as never,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: f.extensions ?? [],
  });
  return Buffer.from(cert.rawData);
}

function subjectOf(pem: string): x509.Name {
  return new x509.X509Certificate(pem).subjectName;
}

describe('certificates checked on their DER fields', () => {
  let root: CaMaterial;
  let inter: CaMaterial;
  let interKeyId: string;

  before(async () => {
    root = await createRootCa({ commonName: 'fields root' });
    inter = await createIntermediateCa(root, { commonName: 'fields AS' });
    interKeyId = Buffer.from(new x509.X509Certificate(inter.certPem).getExtension(x509.SubjectKeyIdentifierExtension)!.keyId, 'hex').toString('hex');
  });

  async function issued(name: string, vips: string[] = ['100.64.0.7', 'fd00:abcd::7']): Promise<Buffer> {
    const { privateKeyPem } = await generateKeyPair();
    const csr = await createCsr(privateKeyPem, 'x');
    return (await issueNodeCertificate(inter, csr, { name, fqdn: `${name}.cyphonic.internal`, nodeId: 9, vips })).certDer;
  }

  it('a node certificate verifies without an OpenSSL parse of it, and its fields read as node reads them', async () => {
    const der = await issued('fields-a');
    const { verified, leaf } = verifyChainParsed(der, [inter.certPem], [root.certPem]);
    assert.equal(leaf.x509Built, false, 'the leaf was checked on its DER fields');
    const node = new X509Certificate(der);
    assert.equal(verified.serial, node.serialNumber.toLowerCase());
    assert.equal(verified.commonName, 'fields-a');
    assert.deepEqual(leaf.publicKey.export({ format: 'der', type: 'spki' }), node.publicKey.export({ format: 'der', type: 'spki' }));
    assert.deepEqual(subjectAltNames(der), { dns: ['fields-a.cyphonic.internal'], ips: ['100.64.0.7', 'fd00:abcd::7'] });
    assert.equal(node.subjectAltName, 'DNS:fields-a.cyphonic.internal, IP Address:100.64.0.7, IP Address:FD00:ABCD:0:0:0:0:0:7');
    assert.deepEqual(subjectAltNamesRaw(der).ips.map((b) => b.length), [4, 16]);
  });

  it('a public key off the curve is refused when read, as malformed', async () => {
    const der = Buffer.from(await issued('fields-k'));
    const spki = parseCert(der).fields.spki;
    const at = der.indexOf(spki) + spki.length - 1;
    der[at] = der[at]! ^ 0x01; // the last byte of the point's y
    assert.throws(() => parseCert(der).publicKey, certCode('ERR_CERT_MALFORMED'));
    assert.throws(() => verifyChain(der, [inter.certPem], [root.certPem]), certCode('ERR_CERT_UNTRUSTED'));
  });

  it('serial numbers print exactly as node prints them, leading zero octets and high bits included', async () => {
    const serials = ['01', '7f', '0080', '00ff', '0a0b0c', '1000', '00c0ffee', randomBytes(16).toString('hex').replace(/^[89a-f]/, '4')];
    for (const serial of serials) {
      const der = await forge({ signer: inter, issuer: subjectOf(inter.certPem), serial });
      assert.equal(serialOf(der), new X509Certificate(der).serialNumber.toLowerCase(), `serial ${serial}`);
    }
  });

  it('a changed signature, changed signed bytes or a changed outer algorithm do not verify', async () => {
    const der = await issued('fields-b');
    const sig = Buffer.from(der);
    sig[sig.length - 3] = sig[sig.length - 3]! ^ 0x01;
    assert.throws(() => verifyChain(sig, [inter.certPem], [root.certPem]), certCode('ERR_CERT_UNTRUSTED'));

    const at = der.indexOf(Buffer.from('fields-b'));
    const renamed = Buffer.from(der);
    renamed[at + 7] = 0x63; // fields-c, under fields-b's signature
    assert.throws(() => verifyChain(renamed, [inter.certPem], [root.certPem]), certCode('ERR_CERT_UNTRUSTED'));

    // ecdsa-with-SHA256 → ecdsa-with-SHA384 in the algorithm beside the signature only (the signed bytes unchanged).
    const alg = Buffer.from('300a06082a8648ce3d040302', 'hex');
    const outer = der.lastIndexOf(alg);
    assert.ok(outer > der.indexOf(alg), 'two algorithm identifiers');
    const swapped = Buffer.from(der);
    swapped[outer + alg.length - 1] = 0x03;
    assert.throws(() => verifyChain(swapped, [inter.certPem], [root.certPem]), certCode('ERR_CERT_UNTRUSTED'));
  });

  it('a certificate signed by the intermediate\'s key but naming another authority key does not chain', async () => {
    const good = await forge({ signer: inter, issuer: subjectOf(inter.certPem), extensions: [new x509.AuthorityKeyIdentifierExtension(interKeyId)] });
    assert.equal(verifyChain(good, [inter.certPem], [root.certPem]).commonName, 'mallory');
    const other = await forge({ signer: inter, issuer: subjectOf(inter.certPem), extensions: [new x509.AuthorityKeyIdentifierExtension('00112233445566778899')] });
    assert.throws(() => verifyChain(other, [inter.certPem], [root.certPem]), certCode('ERR_CERT_NOT_CA'));
  });

  it('a CA certificate whose keyUsage lacks keyCertSign issues nothing that chains', async () => {
    const { privateKeyPem } = await generateKeyPair();
    const noSign = await forge({
      signer: root,
      issuer: subjectOf(root.certPem),
      subject: 'CN=no keyCertSign',
      publicKeyPem: privateKeyPem,
      extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
    });
    const leaf = await forge({ signer: { keyPem: privateKeyPem }, issuer: new x509.X509Certificate(noSign).subjectName });
    assert.throws(() => verifyChain(leaf, [noSign], [root.certPem]), certCode('ERR_CERT_NOT_CA'));
  });

  it('duplicate or malformed subjectAltName extensions are refused as malformed', async () => {
    const san = (names: Buffer[]) => new x509.Extension('2.5.29.17', false, tlv(0x30, Buffer.concat(names)));
    const dns = (s: string) => tlv(0x82, Buffer.from(s, 'latin1'));
    const issuer = subjectOf(inter.certPem);
    const twice = await forge({ signer: inter, issuer, extensions: [san([dns('a.x')]), san([dns('b.x')])] });
    assert.throws(() => verifyChain(twice, [inter.certPem], [root.certPem]), certCode('ERR_CERT_MALFORMED'));
    const nul = await forge({ signer: inter, issuer, extensions: [san([dns('evil\u0000.good.x')])] });
    assert.throws(() => subjectAltNames(nul), certCode('ERR_CERT_MALFORMED'));
    const fiveBytes = await forge({ signer: inter, issuer, extensions: [san([tlv(0x87, Buffer.from([10, 0, 0, 1, 0]))])] });
    assert.throws(() => subjectAltNamesRaw(fiveBytes), certCode('ERR_CERT_MALFORMED'));
    const empty = await forge({ signer: inter, issuer, extensions: [san([])] });
    assert.throws(() => verifyChain(empty, [inter.certPem], [root.certPem]), certCode('ERR_CERT_MALFORMED'));
    // Other name forms are skipped, not misread as names (an rfc822Name that spells a DNS name).
    const mail = await forge({ signer: inter, issuer, extensions: [san([tlv(0x81, Buffer.from('peer.cyphonic.internal')), dns('m.x')])] });
    assert.deepEqual(subjectAltNames(mail), { dns: ['m.x'], ips: [] });
  });

  it('an issuer name in another string type is the same name; a name only OpenSSL can read is compared by OpenSSL', async () => {
    const interCert = new x509.X509Certificate(inter.certPem);
    const own = Buffer.from(interCert.subjectName.toArrayBuffer());
    const cnTag = own[own.indexOf(Buffer.from('0603550403', 'hex')) + 5]!;
    const otherTag = cnTag === 0x13 ? 0x0c : 0x13;
    const retyped = await forge({ signer: inter, issuer: cnName('fields AS', otherTag) });
    assert.ok(!parseCert(retyped).fields.issuerDer.equals(own), 'the issuer name is encoded differently');
    assert.equal(verifyChain(retyped, [inter.certPem], [root.certPem]).commonName, 'mallory');
    assert.equal(parseCert(retyped).x509Built, false);

    // The intermediate's name plus an attribute in UniversalString (which der.ts does not decode): not its name.
    const universal = tlv(0x30, tlv(0x31, tlv(0x30, Buffer.concat([Buffer.from('060355040a', 'hex'), tlv(0x1c, Buffer.from('\0\0\0x', 'latin1'))]))));
    const extended = tlv(0x30, Buffer.concat([own.subarray(2), universal.subarray(2)]));
    const odd = await forge({ signer: inter, issuer: extended });
    assert.equal(parseCert(odd).fields.issuerKey, null);
    assert.throws(() => verifyChain(odd, [inter.certPem], [root.certPem]), certCode('ERR_CERT_UNTRUSTED'));
  });

  it('mutated node certificates give only CertificateError, and none verifies', async () => {
    const der = await issued('fields-m');
    for (let i = 0; i < 300; i++) {
      const bad = Buffer.from(der);
      const pos = Math.floor(Math.random() * bad.length);
      bad[pos] = (bad[pos]! + 1 + Math.floor(Math.random() * 255)) & 0xff;
      assert.throws(() => verifyChain(bad, [inter.certPem], [root.certPem]), (err: unknown) => err instanceof CertificateError);
      try {
        subjectAltNames(bad);
      } catch (err) {
        assert.ok(err instanceof CertificateError, String(err));
      }
    }
  });
});
