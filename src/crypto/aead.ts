// AES-256-GCM authenticated encryption for the data plane, with deterministic sequence-number nonces.
// AeadKey is stateless across calls: the caller owns nonce uniqueness (see nonceFromSeq).
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import { CryptoError } from '../util/errors.js';
import { writeU64BE } from '../util/u64.js';

export const AEAD_KEY_LEN = 32;
export const AEAD_NONCE_LEN = 12;
export const AEAD_TAG_LEN = 16;

const ALGORITHM = 'aes-256-gcm';
const MAX_SEQ = (1n << 64n) - 1n;

/** An AES-256-GCM key. seal() returns ciphertext || 16-byte tag; open() verifies and decrypts. */
export class AeadKey {
  readonly #key: KeyObject;

  constructor(key: Buffer) {
    if (!Buffer.isBuffer(key) || key.length !== AEAD_KEY_LEN) {
      throw new CryptoError(`AEAD key must be ${AEAD_KEY_LEN} bytes`, 'ERR_AEAD_KEY');
    }
    this.#key = createSecretKey(Buffer.from(key));
  }

  seal(nonce: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
    if (nonce.length !== AEAD_NONCE_LEN) {
      throw new CryptoError(`AEAD nonce must be ${AEAD_NONCE_LEN} bytes`, 'ERR_AEAD_NONCE');
    }
    const cipher = createCipheriv(ALGORITHM, this.#key, nonce, { authTagLength: AEAD_TAG_LEN });
    cipher.setAAD(aad);
    const body = cipher.update(plaintext);
    const last = cipher.final();
    return Buffer.concat([body, last, cipher.getAuthTag()]);
  }

  open(nonce: Buffer, sealed: Buffer, aad: Buffer): Buffer {
    if (nonce.length !== AEAD_NONCE_LEN) throw new CryptoError('AEAD: bad nonce length', 'ERR_AEAD');
    if (sealed.length < AEAD_TAG_LEN) throw new CryptoError('AEAD: input shorter than the tag', 'ERR_AEAD');
    const split = sealed.length - AEAD_TAG_LEN;
    try {
      const decipher = createDecipheriv(ALGORITHM, this.#key, nonce, { authTagLength: AEAD_TAG_LEN });
      decipher.setAuthTag(sealed.subarray(split));
      decipher.setAAD(aad);
      const body = decipher.update(sealed.subarray(0, split));
      const last = decipher.final();
      return last.length === 0 ? body : Buffer.concat([body, last]);
    } catch {
      throw new CryptoError('AEAD: authentication failed', 'ERR_AEAD');
    }
  }
}

/** 12-byte nonce: `prefix` as u32 BE || `seq` as u64 BE. */
export function nonceFromSeq(seq: bigint, prefix = 0): Buffer {
  return writeNonce(Buffer.alloc(AEAD_NONCE_LEN), seq, prefix);
}

/** nonceFromSeq written into `out` (12 bytes), which it returns: for a caller that reuses one nonce buffer. */
export function writeNonce(out: Buffer, seq: bigint, prefix = 0): Buffer {
  if (seq < 0n || seq > MAX_SEQ) throw new CryptoError('nonce sequence out of range', 'ERR_NONCE');
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 0xffffffff) {
    throw new CryptoError('nonce prefix out of range', 'ERR_NONCE');
  }
  out.writeUInt32BE(prefix, 0);
  writeU64BE(out, seq, 4);
  return out;
}
