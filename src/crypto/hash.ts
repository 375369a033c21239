// SHA-256 hex digests and constant-time comparison of hex strings.
// Used for certificate fingerprints, token digests and anywhere secrets are compared.
import { createHash, timingSafeEqual } from 'node:crypto';

/** SHA-256 of `data` (strings are UTF-8), lowercase hex. */
export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

const HEX = /^[0-9a-fA-F]*$/;

/**
 * Constant-time equality of two hex strings (case-insensitive). Returns false for
 * non-hex input or different lengths; only the length may leak through timing.
 */
export function timingSafeEqualHex(a: string, b: string): boolean {
  if (typeof a !== 'string' || typeof b !== 'string') return false;
  if (a.length !== b.length || !HEX.test(a) || !HEX.test(b)) return false;
  return timingSafeEqual(Buffer.from(a.toLowerCase(), 'latin1'), Buffer.from(b.toLowerCase(), 'latin1'));
}
