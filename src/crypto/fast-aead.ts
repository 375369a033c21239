// AES-256-GCM for the data-plane hot path: FastAeadKey reuses one OpenSSL context per key via the native addon
// (native/cyphonic_native.c) and falls back to AeadKey (node:crypto) when the addon is unavailable. A key made with
// `promoteAfter` starts without a context of its own: its first operations run on the thread's one shared context,
// re-keyed per call (the NMS uses a node's keys once or twice at registration), and it gets its own context after
// that many (keepalives use them again and again).
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

/** The addon's keyed-per-call entry points (absent from a stale build: keys then get their contexts at once). */
const keyed = native?.aeadSealKey && native.aeadOpenKey && native.aeadSharedWipe ? native : null;
/**
 * The key whose schedule is left in this thread's shared sealing / opening context (the last one to use it), by its
 * position among the units' bytes (-1: none): when that key is destroyed or gets its own context, the shared one is
 * re-keyed with zeros (aeadSharedWipe).
 */
let lastSealer = -1;
let lastOpener = -1;

/*
 * The bytes of keys on the shared context live in 64-byte units (a pair's two keys, or one key) cut from 64 KiB
 * slabs outside V8's heap, not in Buffers of their own: the NMS keeps one pair per registered node, and a Buffer per
 * key (a view, its ArrayBuffer, a slice of Node's pool kept alive by it) was ~0.4 kB and five objects per node for
 * the young-generation GC to copy twice (PERFORMANCE.md, "Eleventh round"). A key holds its unit's KeyUnit and the
 * position of its 32 bytes: position = unit * UNIT_BYTES + 0 or 32; the slab is slabs[position >>> SLAB_SHIFT].
 */
const UNIT_BYTES = 64;
const SLAB_SHIFT = 16;
const SLAB_BYTES = 1 << SLAB_SHIFT;
const slabs: Buffer[] = [];
/** Units free for reuse (wiped). */
const freeUnits: number[] = [];

function takeUnit(): number {
  if (freeUnits.length === 0) {
    const first = (slabs.length * SLAB_BYTES) / UNIT_BYTES;
    slabs.push(Buffer.alloc(SLAB_BYTES));
    for (let u = first + SLAB_BYTES / UNIT_BYTES - 1; u >= first; u--) freeUnits.push(u);
  }
  return freeUnits.pop()!;
}

/** Wipes a unit and makes it free: when every key in it was destroyed or promoted, or all were dropped (GC). */
function releaseUnit(unit: number): void {
  const pos = unit * UNIT_BYTES;
  slabs[pos >>> SLAB_SHIFT]!.fill(0, pos & (SLAB_BYTES - 1), (pos & (SLAB_BYTES - 1)) + UNIT_BYTES);
  freeUnits.push(unit);
}

/** A unit and how many of the keys in it still use their bytes: the GC target that frees the unit. */
interface KeyUnit {
  unit: number;
  live: number;
}
const releaseAtGc = new FinalizationRegistry<number>(releaseUnit);

function newUnit(live: number): KeyUnit {
  const holder: KeyUnit = { unit: takeUnit(), live };
  releaseAtGc.register(holder, holder.unit, holder);
  return holder;
}

/** Set by FastAeadKey.pair around its two constructor calls: the pair's unit and where the next key's bytes are. */
let adopting: { holder: KeyUnit; pos: number } | null = null;

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
  /** The unit holding the key's bytes (a copy) while it runs on the shared context; null once it has its own. */
  #holder: KeyUnit | null = null;
  /** Where in the units the key's bytes are (while #holder is set). */
  #pos = 0;
  /** Operations left on the shared context before it gets its own; -1: never (a small integer, not Infinity). */
  #sharedLeft = 0;
  #destroyed = false;
  readonly #use: FastAeadUse;

  /**
   * `use`: 'seal' or 'open' for a key used one way only (the native side then sets up one OpenSSL context, not two);
   * the other operation throws CryptoError ERR_AEAD_DIRECTION. @default 'both'
   * `promoteAfter`: with the addon, run the first `promoteAfter` operations on the thread's shared context (each
   * re-keys it: ~0.15 µs more than a warm own context, no more than a cold one) and only then set up its own
   * (~5 µs and ~1.2 kB each); the output is the same either way. Infinity: never. @default 0 (own context at once)
   */
  constructor(key: Buffer, use: FastAeadUse = 'both', promoteAfter = 0) {
    if (!Buffer.isBuffer(key) || key.length !== AEAD_KEY_LEN) {
      throw new CryptoError(`AEAD key must be ${AEAD_KEY_LEN} bytes`, 'ERR_AEAD_KEY');
    }
    this.#use = use;
    if (keyed && promoteAfter > 0) {
      if (adopting) {
        this.#holder = adopting.holder;
        this.#pos = adopting.pos;
      } else {
        this.#holder = newUnit(1);
        this.#pos = this.#holder.unit * UNIT_BYTES;
        key.copy(slabs[this.#pos >>> SLAB_SHIFT]!, this.#pos & (SLAB_BYTES - 1));
      }
      this.#sharedLeft = promoteAfter === Infinity ? -1 : Math.min(Math.ceil(promoteAfter), 0x3fff_ffff);
    } else if (native) {
      this.#handle = this.#create(key);
    } else {
      this.#fallback = new AeadKey(key);
    }
  }

  /**
   * Two keys at once, as `new FastAeadKey(a, useA, promoteAfter)` and `new FastAeadKey(b, useB, promoteAfter)`,
   * whose bytes on the shared context are kept (and wiped at GC) together: cheaper for a pair that lives and dies
   * together (ChannelKeys).
   */
  static pair(a: Buffer, useA: FastAeadUse, b: Buffer, useB: FastAeadUse, promoteAfter: number): [FastAeadKey, FastAeadKey] {
    const ok = (k: Buffer): boolean => Buffer.isBuffer(k) && k.length === AEAD_KEY_LEN;
    if (!keyed || !(promoteAfter > 0) || !ok(a) || !ok(b)) {
      return [new FastAeadKey(a, useA, promoteAfter), new FastAeadKey(b, useB, promoteAfter)];
    }
    const holder = newUnit(2);
    const pos = holder.unit * UNIT_BYTES;
    const slab = slabs[pos >>> SLAB_SHIFT]!;
    a.copy(slab, pos & (SLAB_BYTES - 1));
    b.copy(slab, (pos & (SLAB_BYTES - 1)) + AEAD_KEY_LEN);
    try {
      adopting = { holder, pos };
      const first = new FastAeadKey(a, useA, promoteAfter);
      adopting = { holder, pos: pos + AEAD_KEY_LEN };
      return [first, new FastAeadKey(b, useB, promoteAfter)];
    } finally {
      adopting = null;
    }
  }

  #create(key: Buffer): NativeAeadHandle {
    const use = this.#use;
    return use === 'both' ? native!.aeadCreate(key) : native!.aeadCreate(key, use === 'seal' ? 1 : 2);
  }

  /** True if this key is backed by the native addon. */
  get isNative(): boolean {
    return this.#handle !== null || this.#holder !== null;
  }

  /** True while this key runs on the thread's shared context (no context of its own yet). */
  get isShared(): boolean {
    return this.#holder !== null;
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
    if (h === null && this.#holder !== null) {
      if (this.#sharedLeft !== 0) {
        if (this.#sharedLeft > 0) this.#sharedLeft--;
        const pos = this.#pos;
        lastSealer = pos;
        try {
          return keyed!.aeadSealKey!(slabs[pos >>> SLAB_SHIFT]!, nonce, aad ?? EMPTY, plaintext, out, outOffset, pos & (SLAB_BYTES - 1));
        } catch (err) {
          throw argError(err);
        }
      }
      return this.#promote().sealInto(nonce, plaintext, aad, out, outOffset);
    }
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
    if (h === null && this.#holder !== null) {
      if (this.#sharedLeft !== 0) {
        if (this.#sharedLeft > 0) this.#sharedLeft--;
        const pos = this.#pos;
        lastOpener = pos;
        try {
          return keyed!.aeadOpenKey!(slabs[pos >>> SLAB_SHIFT]!, nonce, aad ?? EMPTY, sealed, out, outOffset, pos & (SLAB_BYTES - 1));
        } catch (err) {
          throw argError(err);
        }
      }
      return this.#promote().openInto(nonce, sealed, aad, out, outOffset);
    }
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

  /**
   * Wipes and frees the native context, or the key's bytes and what it left in the shared context, now (otherwise the
   * GC does it). Idempotent.
   */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (this.#handle !== null) native!.aeadDestroy(this.#handle);
    this.#handle = null;
    this.#fallback = null;
    this.#dropKey();
  }

  /** Gives this key its own context (after its operations on the shared one) and wipes its bytes. */
  #promote(): this {
    const at = this.#pos & (SLAB_BYTES - 1);
    this.#handle = this.#create(slabs[this.#pos >>> SLAB_SHIFT]!.subarray(at, at + AEAD_KEY_LEN));
    this.#dropKey();
    return this;
  }

  /** Wipes the key's bytes (its unit's, once no key uses it) and, if the shared contexts last ran with it, their key schedule. */
  #dropKey(): void {
    const holder = this.#holder;
    if (holder === null) return;
    const pos = this.#pos;
    this.#holder = null;
    if (--holder.live === 0) {
      releaseAtGc.unregister(holder);
      releaseUnit(holder.unit);
    } else {
      const at = pos & (SLAB_BYTES - 1);
      slabs[pos >>> SLAB_SHIFT]!.fill(0, at, at + AEAD_KEY_LEN);
    }
    const which = (lastSealer === pos ? 1 : 0) | (lastOpener === pos ? 2 : 0);
    if (lastSealer === pos) lastSealer = -1;
    if (lastOpener === pos) lastOpener = -1;
    if (which !== 0) keyed!.aeadSharedWipe!(which as 1 | 2 | 3);
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
