// Sealed frames: node↔NMS signaling keyed by the Common Key, and the channels built the same way (NMS↔TRS, relay binds).
// Per-direction AES-256-GCM keys from HKDF; nonce = 0^4 || seq; the header bytes are the associated data.

import { AEAD_NONCE_LEN, AeadKey, hkdf, nonceFromSeq } from '../crypto/index.js';
import { writeNonce } from '../crypto/aead.js';
import { FastAeadKey } from '../crypto/fast-aead.js';
import { loadNativeAddon } from '../native/addon.js';
import { encodeHeader, type Header } from '../protocol/header.js';
import { AEAD_TAG_LEN, HEADER_LEN, PROTOCOL_VERSION, type MessageType } from '../protocol/constants.js';
import { CryptoError } from '../util/errors.js';

const NO_SALT = Buffer.alloc(0);
export const INFO_UP = 'cyphonic v1 node->cloud';
export const INFO_DOWN = 'cyphonic v1 cloud->node';

/** HKDF inputs that tell one use of a 32-byte secret from another (defaults: the node↔NMS channel). */
export interface ChannelLabels {
  /** @default empty */
  salt?: Buffer;
  /** Info of the `up` key. @default INFO_UP */
  up?: string;
  /** Info of the `down` key. @default INFO_DOWN */
  down?: string;
}

/** A key frames are sealed and opened with: FastAeadKey (one OpenSSL context per key, native) or AeadKey. */
export type FrameKey = AeadKey | FastAeadKey;

/** The addon's HKDF pair: one extract for both keys, in one native call (hkdf() twice without the addon or beyond 64-byte salts). */
const hkdfPair = loadNativeAddon()?.hkdfSha256Pair ?? null;
/** Infos as bytes, by string (a handful of constant labels). */
const INFOS = new Map<string, Buffer>();
function infoBytes(info: string): Buffer {
  let b = INFOS.get(info);
  if (!b) {
    b = Buffer.from(info, 'utf8');
    if (INFOS.size < 64) INFOS.set(info, b);
  }
  return b;
}

/**
 * HKDF-SHA-256 (RFC 5869) of one 32-byte secret into two 32-byte keys: one extract, two single-block expands
 * (T(1) = HMAC(PRK, info || 0x01)) — the same bytes as two hkdf() calls at a third of the cost (registration
 * derives these once per node). An empty salt is HashLen zeros, as the RFC says.
 */
function deriveTwo(secret: Buffer, salt: Buffer, infoA: string, infoB: string): [Buffer, Buffer] {
  if (hkdfPair && salt.length <= 64) {
    const out = Buffer.allocUnsafe(64);
    hkdfPair(secret, salt, infoBytes(infoA), infoBytes(infoB), out);
    return [out.subarray(0, 32), out.subarray(32)];
  }
  return [hkdf(secret, salt, infoA, 32), hkdf(secret, salt, infoB, 32)];
}

/**
 * Tunable: operations a 'cloud' side key runs on the thread's shared, re-keyed-per-call context before it gets an
 * OpenSSL context of its own (FastAeadKey's `promoteAfter`). Never, measured on the NMS: a registration uses each of a
 * node's keys once, and with thousands of nodes an open + seal on the shared context (re-keyed, but hot in cache)
 * costs no more than on the node's own (cold) contexts, which would add ~5 µs each to set up and ~1.2 kB each to keep
 * (docs/PERFORMANCE.md, "Sixth round").
 */
export const CLOUD_KEY_PROMOTE_AFTER = Infinity;

/**
 * The two directional keys derived from one 32-byte secret. For the Common Key (no labels) `up` seals
 * node→cloud and `down` cloud→node; other channels (NMS↔TRS, relay binds) pass their own salt and infos.
 */
export class ChannelKeys {
  readonly up: FastAeadKey;
  readonly down: FastAeadKey;
  /**
   * `side`: 'cloud' for the end that only opens `up` and only seals `down` (the NMS: keys on the shared context
   * for their first CLOUD_KEY_PROMOTE_AFTER operations, then one OpenSSL context each, not two); 'both' keeps every
   * operation on both keys, each with its contexts from the start. @default 'both'
   */
  constructor(commonKey: Buffer, labels: ChannelLabels = {}, side: 'both' | 'cloud' = 'both') {
    if (commonKey.length !== 32) throw new CryptoError('common key must be 32 bytes', 'ERR_KEY_LENGTH');
    const [up, down] = deriveTwo(commonKey, labels.salt ?? NO_SALT, labels.up ?? INFO_UP, labels.down ?? INFO_DOWN);
    if (side === 'cloud') {
      [this.up, this.down] = FastAeadKey.pair(up, 'open', down, 'seal', CLOUD_KEY_PROMOTE_AFTER);
    } else {
      this.up = new FastAeadKey(up);
      this.down = new FastAeadKey(down);
    }
    up.fill(0);
    down.fill(0);
  }

  /** Wipes both keys now (their contexts, or their bytes and what they left in the shared contexts). */
  destroy(): void {
    this.up.destroy();
    this.down.destroy();
  }
}

export interface SealFields {
  type: MessageType;
  status?: number;
  txid: number;
  seq: bigint;
  id: bigint;
}

/**
 * The nonce handed to a FastAeadKey, reused (the addon reads it during the call and keeps nothing): a fresh 12-byte
 * Buffer is a V8 on-heap array, and the addon's look at one moves it off the heap first, ~1.5 µs a frame.
 */
const NATIVE_NONCE = Buffer.alloc(AEAD_NONCE_LEN);

/** Header + AEAD(body) + tag, with the encoded header as associated data. */
export function sealFrame(key: FrameKey, f: SealFields, body: Buffer): Buffer {
  const header: Header = {
    version: PROTOCOL_VERSION,
    type: f.type,
    status: f.status ?? 0,
    txid: f.txid,
    seq: f.seq,
    id: f.id,
    length: body.length + AEAD_TAG_LEN,
  };
  const out = Buffer.allocUnsafe(HEADER_LEN + header.length);
  encodeHeader(header, out, 0);
  const headerBytes = out.subarray(0, HEADER_LEN);
  if (key instanceof FastAeadKey) {
    // Sealed in place from `out`: a small body (the encoder's output) is on V8's heap too, like a fresh nonce.
    body.copy(out, HEADER_LEN);
    key.sealInto(writeNonce(NATIVE_NONCE, f.seq), out.subarray(HEADER_LEN, HEADER_LEN + body.length), headerBytes, out, HEADER_LEN);
    return out;
  }
  const sealed = key.seal(nonceFromSeq(f.seq), body, headerBytes);
  sealed.copy(out, HEADER_LEN);
  return out;
}

/** Opens the body of a frame whose header was already decoded; throws CryptoError on a bad tag. */
export function openFrame(key: FrameKey, header: Header, headerBytes: Buffer, sealedBody: Buffer): Buffer {
  return key.open(key instanceof FastAeadKey ? writeNonce(NATIVE_NONCE, header.seq) : nonceFromSeq(header.seq), sealedBody, headerBytes);
}
