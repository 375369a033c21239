// HKDF-SHA-256 key derivation and random key generation.
// Session keys for the data plane are derived here from X25519 shared secrets.
import { hkdfSync, randomBytes } from 'node:crypto';
import { loadNativeAddon } from '../native/addon.js';
import { CryptoError } from '../util/errors.js';

/**
 * The addon's HKDF (same bytes): SHA-256 fetched once and one digest context per thread, where hkdfSync sets up
 * OpenSSL's KDF afresh each call. Warm both cost microseconds; a call after the thread slept, as a handshake's is,
 * cost 118–129 µs native against 191–314 µs through hkdfSync in one bench/cold-path run (PERFORMANCE.md).
 */
const nativeHkdf = loadNativeAddon()?.hkdfSha256 ?? null;

/** HKDF-SHA-256 (RFC 5869) of `ikm` with `salt` and UTF-8 `info`; `length` in 1..8160 bytes. */
export function hkdf(ikm: Buffer, salt: Buffer, info: string, length: number): Buffer {
  if (!Number.isInteger(length) || length < 1 || length > 255 * 32) {
    throw new CryptoError(`hkdf: invalid output length ${length}`, 'ERR_KDF');
  }
  const infoBytes = Buffer.from(info, 'utf8');
  try {
    if (nativeHkdf && salt.length <= 64 && infoBytes.length <= 255) {
      const out = Buffer.alloc(length);
      nativeHkdf(ikm, salt, infoBytes, out);
      return out;
    }
    return Buffer.from(hkdfSync('sha256', ikm, salt, infoBytes, length));
  } catch (err) {
    throw new CryptoError(`hkdf failed: ${(err as Error).message}`, 'ERR_KDF');
  }
}

/** `len` bytes from the CSPRNG (default 32, an AES-256 key). */
export function randomKey(len = 32): Buffer {
  if (!Number.isInteger(len) || len < 1) throw new CryptoError(`randomKey: invalid length ${len}`, 'ERR_KDF');
  return randomBytes(len);
}
