// Detached ECDSA P-256 / SHA-256 signatures (DER-encoded) over arbitrary bytes.
// verify() accepts a certificate, an SPKI public key or a KeyObject, and returns false on any bad signature.
import { createPublicKey, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { CryptoError } from '../util/errors.js';
import { assertP256, loadPrivateKey, loadPublicKey } from './keys.js';
import { parseCert } from './pem.js';

const PUBLIC_KEY_PEM = /^\s*-----BEGIN PUBLIC KEY-----/;

/** ECDSA P-256 SHA-256 signature (DER) of `data`. */
export function sign(privateKey: string | KeyObject, data: Buffer): Buffer {
  const key = typeof privateKey === 'string' ? loadPrivateKey(privateKey) : privateKey;
  if (key.type !== 'private') throw new CryptoError('signing needs a private key', 'ERR_KEY_INVALID');
  assertP256(key);
  return nodeSign('sha256', data, { key, dsaEncoding: 'der' });
}

function toPublicKey(certOrKey: string | Buffer | KeyObject): KeyObject {
  if (typeof certOrKey === 'string') {
    return PUBLIC_KEY_PEM.test(certOrKey) ? loadPublicKey(certOrKey) : parseCert(certOrKey).publicKey;
  }
  if (Buffer.isBuffer(certOrKey)) {
    try {
      return parseCert(certOrKey).publicKey;
    } catch {
      return loadPublicKey(certOrKey); // SPKI DER
    }
  }
  return certOrKey.type === 'public' ? certOrKey : createPublicKey(certOrKey);
}

/**
 * Checks an ECDSA P-256 SHA-256 DER signature. Returns false for a wrong or garbage signature;
 * throws CryptoError('ERR_KEY_INVALID') / CertificateError only when the key itself is unusable.
 */
export function verify(certOrKey: string | Buffer | KeyObject, data: Buffer, signature: Buffer): boolean {
  const key = toPublicKey(certOrKey);
  assertP256(key);
  try {
    return nodeVerify('sha256', data, { key, dsaEncoding: 'der' }, signature);
  } catch {
    return false;
  }
}
