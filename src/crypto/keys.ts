// ECDSA P-256 key pairs as PKCS#8 / SPKI PEM, and loading them back into node KeyObjects.
// Every long-lived key in cyphonic (CA, AS intermediate, AS TLS, nodes) goes through here.
import { createPrivateKey, createPublicKey, generateKeyPair as nodeGenerateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { CryptoError } from '../util/errors.js';
import { parseCert, type CertInput } from './pem.js';

const generateEc = promisify(nodeGenerateKeyPair);

/** A fresh P-256 key pair: private key as PKCS#8 PEM, public key as SPKI PEM. */
export async function generateKeyPair(): Promise<{ privateKeyPem: string; publicKeyPem: string }> {
  const { privateKey, publicKey } = await generateEc('ec', {
    namedCurve: 'P-256',
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

/** Throws unless `key` is a P-256 EC key. */
export function assertP256(key: KeyObject): void {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new CryptoError('key is not an ECDSA P-256 key', 'ERR_KEY_INVALID');
  }
}

/** Loads a PEM private key (PKCS#8 or SEC1) as a KeyObject; must be P-256. */
export function loadPrivateKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw new CryptoError('private key PEM cannot be parsed', 'ERR_KEY_INVALID');
  }
  assertP256(key);
  return key;
}

/** Loads an SPKI PEM or DER public key; must be P-256. */
export function loadPublicKey(key: string | Buffer): KeyObject {
  let obj: KeyObject;
  try {
    obj = typeof key === 'string' ? createPublicKey({ key, format: 'pem' }) : createPublicKey({ key, format: 'der', type: 'spki' });
  } catch {
    throw new CryptoError('public key cannot be parsed', 'ERR_KEY_INVALID');
  }
  assertP256(obj);
  return obj;
}

/** The subject public key of a certificate (PEM or DER). Throws CertificateError('ERR_CERT_MALFORMED'). */
export function publicKeyFromCert(cert: CertInput): KeyObject {
  return parseCert(cert).publicKey;
}

/** PKCS#8 DER and SPKI DER of a PEM private key (used to hand keys to WebCrypto). */
export function keyDers(privateKeyPem: string): { pkcs8: Buffer; spki: Buffer } {
  const key = loadPrivateKey(privateKeyPem);
  return {
    pkcs8: key.export({ format: 'der', type: 'pkcs8' }),
    spki: createPublicKey(key).export({ format: 'der', type: 'spki' }),
  };
}
