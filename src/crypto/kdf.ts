// HKDF-SHA-256 key derivation and random key generation.
// Session keys for the data plane are derived here from X25519 shared secrets.
import { hkdfSync, randomBytes } from 'node:crypto';
import { CryptoError } from '../util/errors.js';

/** HKDF-SHA-256 (RFC 5869) of `ikm` with `salt` and UTF-8 `info`; `length` in 1..8160 bytes. */
export function hkdf(ikm: Buffer, salt: Buffer, info: string, length: number): Buffer {
  if (!Number.isInteger(length) || length < 1 || length > 255 * 32) {
    throw new CryptoError(`hkdf: invalid output length ${length}`, 'ERR_KDF');
  }
  try {
    return Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from(info, 'utf8'), length));
  } catch (err) {
    throw new CryptoError(`hkdf failed: ${(err as Error).message}`, 'ERR_KDF');
  }
}

/** `len` bytes from the CSPRNG (default 32, an AES-256 key). */
export function randomKey(len = 32): Buffer {
  if (!Number.isInteger(len) || len < 1) throw new CryptoError(`randomKey: invalid length ${len}`, 'ERR_KDF');
  return randomBytes(len);
}
