// Sealed frames: node↔NMS signaling keyed by the Common Key, and the channels built the same way (NMS↔TRS, relay binds).
// Per-direction AES-256-GCM keys from HKDF; nonce = 0^4 || seq; the header bytes are the associated data.

import { AeadKey, hkdf, nonceFromSeq } from '../crypto/index.js';
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

/**
 * The two directional keys derived from one 32-byte secret. For the Common Key (no labels) `up` seals
 * node→cloud and `down` cloud→node; other channels (NMS↔TRS, relay binds) pass their own salt and infos.
 */
export class ChannelKeys {
  readonly up: AeadKey;
  readonly down: AeadKey;
  constructor(commonKey: Buffer, labels: ChannelLabels = {}) {
    if (commonKey.length !== 32) throw new CryptoError('common key must be 32 bytes', 'ERR_KEY_LENGTH');
    const salt = labels.salt ?? NO_SALT;
    this.up = new AeadKey(hkdf(commonKey, salt, labels.up ?? INFO_UP, 32));
    this.down = new AeadKey(hkdf(commonKey, salt, labels.down ?? INFO_DOWN, 32));
  }
}

export interface SealFields {
  type: MessageType;
  status?: number;
  txid: number;
  seq: bigint;
  id: bigint;
}

/** Header + AEAD(body) + tag, with the encoded header as associated data. */
export function sealFrame(key: AeadKey, f: SealFields, body: Buffer): Buffer {
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
  const sealed = key.seal(nonceFromSeq(f.seq), body, headerBytes);
  sealed.copy(out, HEADER_LEN);
  return out;
}

/** Opens the body of a frame whose header was already decoded; throws CryptoError on a bad tag. */
export function openFrame(key: AeadKey, header: Header, headerBytes: Buffer, sealedBody: Buffer): Buffer {
  return key.open(nonceFromSeq(header.seq), sealedBody, headerBytes);
}
