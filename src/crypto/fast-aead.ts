// AES-256-GCM for the data-plane hot path: FastAeadKey reuses one OpenSSL context per key via the native addon
// (native/cyphonic_native.c) and falls back to AeadKey (node:crypto) when the addon is unavailable.
//
// The addon itself is loaded by src/native/addon.ts.
import { loadNativeAddon, type NativeAeadHandle } from '../native/addon.js';
import { CryptoError } from '../util/errors.js';
import { AEAD_KEY_LEN, AEAD_NONCE_LEN, AEAD_TAG_LEN, AeadKey } from './aead.js';

const native = loadNativeAddon();

/** True when FastAeadKey runs on the native addon; false means it is a thin wrapper over AeadKey. */
export const FAST_AEAD_NATIVE: boolean = native !== null;

const EMPTY = Buffer.alloc(0);

/** Which operations a FastAeadKey is for. */
export type FastAeadUse = 'both' | 'seal' | 'open';

function argError(err: unknown): CryptoError {
  const msg = err instanceof Error ? err.message : String(err);
  return new CryptoError(`AEAD: ${msg}`, 'ERR_AEAD_ARG');
}

/**
 * AES-256-GCM key with the semantics of AeadKey (byte-for-byte identical output: ciphertext || 16-byte tag)
 * plus allocation-free sealInto/openInto. The caller owns nonce uniqueness, as with AeadKey.
 *
 * Errors: seal/open throw exactly like AeadKey (CryptoError ERR_AEAD_KEY / ERR_AEAD_NONCE / ERR_AEAD).
 * sealInto/openInto throw CryptoError `ERR_AEAD_ARG` for bad arguments (nonce not 12 bytes, `out` too small,
 * input and output partially overlapping; exact in-place is allowed); openInto returns -1 (never throws) when
 * authentication fails, including input shorter than the tag. Any method throws CryptoError `ERR_CLOSED`
 * after destroy().
 */
export class FastAeadKey {
  #handle: NativeAeadHandle | null = null;
  #fallback: AeadKey | null = null;
  #destroyed = false;
  readonly #use: FastAeadUse;

  /**
   * `use`: 'seal' or 'open' for a key used one way only (the native side then sets up one OpenSSL context, not two);
   * the other operation throws CryptoError ERR_AEAD_DIRECTION. @default 'both'
   */
  constructor(key: Buffer, use: FastAeadUse = 'both') {
    if (!Buffer.isBuffer(key) || key.length !== AEAD_KEY_LEN) {
      throw new CryptoError(`AEAD key must be ${AEAD_KEY_LEN} bytes`, 'ERR_AEAD_KEY');
    }
    this.#use = use;
    if (native) this.#handle = use === 'both' ? native.aeadCreate(key) : native.aeadCreate(key, use === 'seal' ? 1 : 2);
    else this.#fallback = new AeadKey(key);
  }

  /** True if this key is backed by the native addon. */
  get isNative(): boolean {
    return this.#handle !== null;
  }

  /** Returns ciphertext || tag in a new Buffer (same as AeadKey.seal). */
  seal(nonce: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
    if (nonce.length !== AEAD_NONCE_LEN) {
      throw new CryptoError(`AEAD nonce must be ${AEAD_NONCE_LEN} bytes`, 'ERR_AEAD_NONCE');
    }
    const out = Buffer.allocUnsafe(plaintext.length + AEAD_TAG_LEN);
    this.sealInto(nonce, plaintext, aad, out, 0);
    return out;
  }

  /** Verifies and decrypts into a new Buffer; throws CryptoError ERR_AEAD on failure (same as AeadKey.open). */
  open(nonce: Buffer, sealed: Buffer, aad: Buffer): Buffer {
    if (nonce.length !== AEAD_NONCE_LEN) throw new CryptoError('AEAD: bad nonce length', 'ERR_AEAD');
    if (sealed.length < AEAD_TAG_LEN) throw new CryptoError('AEAD: input shorter than the tag', 'ERR_AEAD');
    const out = Buffer.allocUnsafe(sealed.length - AEAD_TAG_LEN);
    if (this.openInto(nonce, sealed, aad, out, 0) < 0) throw new CryptoError('AEAD: authentication failed', 'ERR_AEAD');
    return out;
  }

  /** Writes ciphertext || tag at out[outOffset..] and returns the byte count (plaintext.length + 16). */
  sealInto(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array | null, out: Uint8Array, outOffset = 0): number {
    const h = this.#live();
    if (this.#use === 'open') throw new CryptoError('AEAD: this key only opens', 'ERR_AEAD_DIRECTION');
    if (h !== null) {
      try {
        return native!.aeadSeal(h, nonce, aad ?? EMPTY, plaintext, out, outOffset);
      } catch (err) {
        throw argError(err);
      }
    }
    checkOut(nonce, out, outOffset, plaintext.length + AEAD_TAG_LEN);
    const sealed = this.#fallback!.seal(asBuffer(nonce), asBuffer(plaintext), asBuffer(aad ?? EMPTY));
    out.set(sealed, outOffset);
    return sealed.length;
  }

  /** Verifies `sealed` (ciphertext || tag), writes the plaintext at out[outOffset..], returns its length or -1. */
  openInto(nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array | null, out: Uint8Array, outOffset = 0): number {
    const h = this.#live();
    if (this.#use === 'seal') throw new CryptoError('AEAD: this key only seals', 'ERR_AEAD_DIRECTION');
    if (h !== null) {
      try {
        return native!.aeadOpen(h, nonce, aad ?? EMPTY, sealed, out, outOffset);
      } catch (err) {
        throw argError(err);
      }
    }
    if (sealed.length < AEAD_TAG_LEN) {
      checkOut(nonce, out, outOffset, 0);
      return -1;
    }
    checkOut(nonce, out, outOffset, sealed.length - AEAD_TAG_LEN);
    let plain: Buffer;
    try {
      plain = this.#fallback!.open(asBuffer(nonce), asBuffer(sealed), asBuffer(aad ?? EMPTY));
    } catch {
      out.fill(0, outOffset, outOffset + sealed.length - AEAD_TAG_LEN); // as the native open leaves it
      return -1;
    }
    out.set(plain, outOffset);
    return plain.length;
  }

  /** Wipes and frees the native context now (otherwise the GC does it). Idempotent. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (this.#handle !== null) native!.aeadDestroy(this.#handle);
    this.#handle = null;
    this.#fallback = null;
  }

  #live(): NativeAeadHandle | null {
    if (this.#destroyed) throw new CryptoError('AEAD key was destroyed', 'ERR_CLOSED');
    return this.#handle;
  }
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** Fallback-path argument checks mirroring the native ones. */
function checkOut(nonce: Uint8Array, out: Uint8Array, outOffset: number, need: number): void {
  if (nonce.length !== AEAD_NONCE_LEN) throw new CryptoError('AEAD: nonce must be 12 bytes', 'ERR_AEAD_ARG');
  if (!Number.isSafeInteger(outOffset) || outOffset < 0 || outOffset > out.length) {
    throw new CryptoError('AEAD: outOffset out of range', 'ERR_AEAD_ARG');
  }
  if (out.length - outOffset < need) throw new CryptoError('AEAD: out too small', 'ERR_AEAD_ARG');
}
