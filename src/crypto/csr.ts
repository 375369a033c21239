// PKCS#10 certificate signing requests: nodes build them (the private key never leaves the node),
// the AS parses them with a strict DER reader and checks the self-signature before issuing.
import { createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { CertificateError } from '../util/errors.js';
import {
  DerError,
  OID_ECDSA_SHA256,
  TAG_BIT_STRING,
  TAG_INTEGER,
  TAG_OID,
  TAG_SEQUENCE,
  children,
  commonNameFrom,
  decodeName,
  decodeOid,
  encodingOf,
  expectTlv,
  valueOf,
} from './der.js';
import { keyDers } from './keys.js';
import { SIGNING_ALGORITHM, importWebKeyPair, x509 } from './x509lib.js';

/** Upper bound on an accepted CSR; real ones are ~250 bytes. */
export const MAX_CSR_BYTES = 8 * 1024;

/** Builds a DER CSR with subject CN=`commonName`, signed by `privateKeyPem` (P-256). */
export async function createCsr(privateKeyPem: string, commonName: string): Promise<Buffer> {
  const { pkcs8, spki } = keyDers(privateKeyPem);
  const keys = await importWebKeyPair(pkcs8, spki);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [commonName] }],
    keys: keys as unknown as Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['keys'],
    signingAlgorithm: SIGNING_ALGORITHM,
  });
  return Buffer.from(csr.rawData);
}

/** What the CA learns from a verified CSR. */
export interface ParsedCsr {
  commonName: string;
  publicKeySpkiDer: Buffer;
}

function invalid(message: string): CertificateError {
  return new CertificateError(`CSR invalid: ${message}`, 'ERR_CSR_INVALID');
}

/** Internal: parse + verify, also returning the KeyObject. */
export function parseCsrSync(der: Buffer): ParsedCsr & { publicKey: KeyObject } {
  if (!Buffer.isBuffer(der) || der.length === 0 || der.length > MAX_CSR_BYTES) throw invalid('bad size');
  let tbsBytes: Buffer;
  let spkiDer: Buffer;
  let signature: Buffer;
  let commonName: string;
  try {
    const outer = expectTlv(der, 0, TAG_SEQUENCE);
    if (outer.end !== der.length) throw new DerError('trailing data');
    const top = children(der, outer);
    if (top.length !== 3) throw new DerError('CertificationRequest must have 3 parts');
    const [info, algId, sig] = top as [typeof outer, typeof outer, typeof outer];
    if (info.tag !== TAG_SEQUENCE || algId.tag !== TAG_SEQUENCE || sig.tag !== TAG_BIT_STRING) {
      throw new DerError('bad CertificationRequest');
    }
    const infoParts = children(der, info);
    if (infoParts.length !== 4) throw new DerError('CertificationRequestInfo must have 4 parts');
    const [version, subject, spki, attrs] = infoParts as [typeof outer, typeof outer, typeof outer, typeof outer];
    if (version.tag !== TAG_INTEGER || !valueOf(der, version).equals(Buffer.from([0]))) throw new DerError('bad version');
    if (subject.tag !== TAG_SEQUENCE || spki.tag !== TAG_SEQUENCE || attrs.tag !== 0xa0) {
      throw new DerError('bad CertificationRequestInfo');
    }
    commonName = commonNameFrom(decodeName(der, subject));
    const algParts = children(der, algId);
    if (algParts.length !== 1 || algParts[0]!.tag !== TAG_OID) throw new DerError('bad signature algorithm');
    if (decodeOid(valueOf(der, algParts[0]!)) !== OID_ECDSA_SHA256) throw new DerError('signature algorithm is not ecdsa-with-SHA256');
    const sigValue = valueOf(der, sig);
    if (sigValue.length < 2 || sigValue[0] !== 0) throw new DerError('bad signature BIT STRING');
    tbsBytes = encodingOf(der, info);
    spkiDer = Buffer.from(encodingOf(der, spki));
    signature = sigValue.subarray(1);
  } catch (err) {
    if (err instanceof DerError) throw invalid(err.message);
    throw err;
  }
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
  } catch {
    throw invalid('subject public key cannot be parsed');
  }
  if (publicKey.asymmetricKeyType !== 'ec' || publicKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw invalid('subject public key is not ECDSA P-256');
  }
  let ok = false;
  try {
    ok = nodeVerify('sha256', tbsBytes, { key: publicKey, dsaEncoding: 'der' }, signature);
  } catch {
    ok = false;
  }
  if (!ok) throw invalid('self-signature does not verify');
  // Re-export so the SPKI handed to the issuer is canonical, whatever the CSR encoded.
  const canonical = publicKey.export({ format: 'der', type: 'spki' });
  return { commonName, publicKeySpkiDer: canonical, publicKey };
}

/** Parses a DER CSR and verifies its self-signature. Throws CertificateError('ERR_CSR_INVALID'). */
export async function parseCsr(der: Buffer): Promise<ParsedCsr> {
  const { commonName, publicKeySpkiDer } = parseCsrSync(der);
  return { commonName, publicKeySpkiDer };
}
