// Data channel of one established tunnel: Capsule frames sealed with the End Key derived by the handshake,
// a 64-bit per-direction counter as nonce, the replay window, and rekey/expiry limits. See docs/PROTOCOL.md.
// DataSession is the TypeScript reference of one session: the native engine (native/dataplane.c) seals and opens
// the same bytes and applies the same limits (test/unit/node/session-conformance.test.ts runs both).

import { AEAD_TAG_LEN, HEADER_LEN, MAX_SEALED_PLAINTEXT_LEN, MessageType, PROTOCOL_VERSION } from '../protocol/constants.js';
import { CryptoError } from '../util/errors.js';
import { AeadKey } from './aead.js';
import { MAX_PENDING_REQUESTS, type SessionKeys } from './handshake.js';
import { ReplayVerdict, ReplayWindow } from './replay-window.js';
import { HEADER_OFFSETS } from '../protocol/header.js';

// ───────────────────────────── tunables ─────────────────────────────
// A session is replaced (new handshake) before it reaches either the counter or the time limit.

/** Start a new handshake after this many sealed capsules: far below the nonce space, so a rekey always has room. */
export const REKEY_AFTER_MESSAGES = 2n ** 60n;
/** Never seal past this counter: the nonce must not wrap; 2^13 below 2^64 leaves room for packets in flight. */
export const REJECT_AFTER_MESSAGES = 2n ** 64n - 2n ** 13n;
/** Start a new handshake after this long: bounds how much traffic one End Key protects (forward secrecy window). */
export const REKEY_AFTER_MS = 120_000;
/** Refuse to seal with a session after this long: REKEY_AFTER_MS plus time for a handshake to complete with retries. */
export const REJECT_AFTER_MS = 180_000;
/**
 * A session still opens capsules this long after it stopped sealing: the two ends derive the keys up to one
 * handshake round trip apart (the responder first), so the end that derived them later may seal a little past the
 * other end's limit. Then it opens nothing either.
 */
export const REJECT_OPEN_GRACE_MS = 5_000;

/**
 * What the engine's dpInstall needs besides the keys: how long from `now` the session seals (until keys.expiresAt,
 * else establishedAt + REJECT_AFTER_MS) and opens (REJECT_OPEN_GRACE_MS longer), and how many unconfirmed
 * responder sessions a path keeps: one per request the initiator may hold outstanding (MAX_PENDING_REQUESTS),
 * since it completes with whichever response arrives first.
 */
export function installLimits(keys: Pick<SessionKeys, 'establishedAt' | 'expiresAt'>, now: number): { sealForMs: number; openForMs: number; candidates: number } {
  const sealForMs = Math.max(0, Math.min(2 ** 40, Math.round(sealUntil(keys) - now)));
  return { sealForMs, openForMs: sealForMs + REJECT_OPEN_GRACE_MS, candidates: MAX_PENDING_REQUESTS };
}

/** Unix ms at which a session stops sealing. */
export function sealUntil(keys: Pick<SessionKeys, 'establishedAt' | 'expiresAt'>): number {
  return keys.expiresAt ?? keys.establishedAt + REJECT_AFTER_MS;
}

/** Largest IP packet one capsule can carry (the u16 body length minus the tag). */
export const MAX_CAPSULE_PAYLOAD = MAX_SEALED_PLAINTEXT_LEN;

/**
 * The counter is kept as a JS number: sealing stops at 2^53 (Number.MAX_SAFE_INTEGER + 1) if that comes before
 * REJECT_AFTER_MESSAGES, which it does; at 10 Mpps that is 28 years, far beyond REJECT_AFTER_MS.
 */
const SEND_LIMIT = Math.min(Number(REJECT_AFTER_MESSAGES), Number.MAX_SAFE_INTEGER + 1);
const REKEY_LIMIT = Number(REKEY_AFTER_MESSAGES);
const TWO_32 = 0x1_0000_0000;

// The 64-bit fields are read as two 32-bit halves on the hot path (no BigInt per packet).
const OFF_SEQ_HI = HEADER_OFFSETS.seq;
const OFF_SEQ_LO = HEADER_OFFSETS.seq + 4;
const OFF_ID_HI = HEADER_OFFSETS.id;
const OFF_ID_LO = HEADER_OFFSETS.id + 4;
const OFF_LENGTH = HEADER_OFFSETS.length;
const OFF_RESERVED = HEADER_OFFSETS.reserved;

// ───────────────────────────── types ─────────────────────────────

/**
 * An AEAD instance for one key (AES-256-GCM by default). Nonces are 12 bytes; seal returns ciphertext ‖ 16-byte
 * tag; open throws on a bad tag. The nonce and aad buffers are reused by the caller after the call returns,
 * so an implementation must not keep references to them.
 */
export interface Aead {
  seal(nonce: Buffer, plaintext: Buffer, aad: Buffer): Buffer;
  open(nonce: Buffer, sealed: Buffer, aad: Buffer): Buffer;
  /** Optional allocation-free variant: writes ciphertext ‖ tag at out[outOffset..], returns its length. Used when present. */
  sealInto?(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array | null, out: Uint8Array, outOffset?: number): number;
  /** Optional: writes the plaintext at out[outOffset..] and returns its length, or -1 when authentication fails. */
  openInto?(nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array | null, out: Uint8Array, outOffset?: number): number;
}
export type AeadFactory = (key: Buffer) => Aead;

const defaultAead: AeadFactory = (key) => new AeadKey(key);

/** Why a capsule was dropped. */
export type DropReason = 'malformed' | 'wrongPath' | 'replayed' | 'tooOld' | 'badTag' | 'expired';

export interface DataSessionCounters {
  /** Capsules sealed. */
  sent: number;
  /** Capsules opened and accepted. */
  received: number;
  /** Not a whole capsule frame of this protocol version (short, wrong type, bad length/reserved). */
  malformed: number;
  /** Header id is not this session's path id. */
  wrongPath: number;
  /** Counter already accepted. */
  replayed: number;
  /** Counter below the replay window. */
  tooOld: number;
  /** AEAD authentication failed (forged, corrupted, or sealed under another key). */
  badTag: number;
  /** Authenticated, but the session is past its open limit (sealUntil + REJECT_OPEN_GRACE_MS). */
  expired: number;
}

// ───────────────────────────── session ─────────────────────────────

/**
 * One session of a path: seals this node's capsules with `keys.send` and opens the peer's with `keys.recv`.
 * Capsule = header(type Capsule, status 0, txid 0, seq = counter, id = path id, length) ‖ AEAD(packet) ‖ tag,
 * nonce = 0^4 ‖ counter (u64 BE), AAD = the 28 header bytes. The send counter starts at 0.
 */
export class DataSession {
  readonly pathId: bigint;
  readonly initiator: boolean;
  readonly peerNodeId: number;
  readonly establishedAt: number;
  readonly counters: DataSessionCounters = { sent: 0, received: 0, malformed: 0, wrongPath: 0, replayed: 0, tooOld: 0, badTag: 0, expired: 0 };
  /** Unix ms: seals before this, opens before openUntil. */
  readonly sealUntil: number;
  readonly openUntil: number;

  readonly #send: Aead;
  readonly #recv: Aead;
  readonly #window = new ReplayWindow();
  readonly #idHi: number;
  readonly #idLo: number;
  /** Header template for sealing: only seq and length change per packet. */
  readonly #header = Buffer.alloc(HEADER_LEN);
  readonly #sendNonce = Buffer.alloc(12);
  readonly #recvNonce = Buffer.alloc(12);
  #next = 0;
  #receivedAny = false;
  readonly #now: () => number;

  /**
   * `now`: the clock the limits are checked against (unix ms; default Date.now); `openGraceMs`: how long after it
   * stops sealing the session still opens.
   */
  constructor(keys: SessionKeys, aead: AeadFactory = defaultAead, now: () => number = Date.now, openGraceMs = REJECT_OPEN_GRACE_MS) {
    if (!Buffer.isBuffer(keys.send) || keys.send.length !== 32 || !Buffer.isBuffer(keys.recv) || keys.recv.length !== 32) {
      throw new CryptoError('session keys must be 32 bytes each', 'ERR_KEY_LENGTH');
    }
    if (typeof keys.pathId !== 'bigint' || keys.pathId < 0n || keys.pathId >> 64n !== 0n) {
      throw new CryptoError('session path id must be a u64', 'ERR_SESSION_PARAMS');
    }
    this.pathId = keys.pathId;
    this.initiator = keys.initiator;
    this.peerNodeId = keys.peerNodeId;
    this.establishedAt = keys.establishedAt;
    this.sealUntil = sealUntil(keys);
    this.openUntil = this.sealUntil + openGraceMs;
    this.#now = now;
    this.#send = aead(keys.send);
    this.#recv = aead(keys.recv);
    this.#idHi = Number(keys.pathId >> 32n);
    this.#idLo = Number(keys.pathId & 0xffff_ffffn);
    const h = this.#header;
    h.writeUInt8(PROTOCOL_VERSION, 0);
    h.writeUInt8(MessageType.Capsule, 1);
    h.writeBigUInt64BE(keys.pathId, OFF_ID_HI);
  }

  /** Next counter seal() will use. */
  get sendCounter(): number {
    return this.#next;
  }

  /** True once a capsule from the peer authenticated under this session. */
  get receivedAny(): boolean {
    return this.#receivedAny;
  }

  /** Seals one IP packet into a capsule frame. Throws CryptoError ERR_SESSION_EXHAUSTED / ERR_SESSION_EXPIRED / ERR_CAPSULE_SIZE. */
  seal(packet: Buffer): Buffer {
    const out = Buffer.allocUnsafe(HEADER_LEN + packet.length + AEAD_TAG_LEN);
    this.sealInto(packet, out, 0);
    return out;
  }

  /**
   * Seals `packet` as a capsule frame written at out[offset..]; returns the frame length (header + ciphertext +
   * tag). The hot path's allocation-free variant of seal(); `out` must have room for packet + 44 bytes.
   */
  sealInto(packet: Uint8Array, out: Buffer, offset: number): number {
    if (packet.length > MAX_CAPSULE_PAYLOAD) throw new CryptoError(`packet of ${packet.length} bytes does not fit a capsule`, 'ERR_CAPSULE_SIZE');
    const total = HEADER_LEN + packet.length + AEAD_TAG_LEN;
    if (offset < 0 || offset + total > out.length) throw new CryptoError('output buffer too small for the capsule', 'ERR_CAPSULE_SIZE');
    const n = this.#next;
    if (n >= SEND_LIMIT) throw new CryptoError('session counter exhausted; a new handshake is required', 'ERR_SESSION_EXHAUSTED');
    if (this.#now() >= this.sealUntil) throw new CryptoError('session past its age limit; a new handshake is required', 'ERR_SESSION_EXPIRED');
    this.#next = n + 1;
    const hi = Math.floor(n / TWO_32);
    const lo = n >>> 0;
    const h = this.#header;
    h.writeUInt32BE(hi, OFF_SEQ_HI);
    h.writeUInt32BE(lo, OFF_SEQ_LO);
    h.writeUInt16BE(packet.length + AEAD_TAG_LEN, OFF_LENGTH);
    const nonce = this.#sendNonce;
    nonce.writeUInt32BE(hi, 4);
    nonce.writeUInt32BE(lo, 8);
    if (this.#send.sealInto) {
      this.#send.sealInto(nonce, packet, h, out, offset + HEADER_LEN);
    } else {
      this.#send.seal(nonce, Buffer.from(packet.buffer, packet.byteOffset, packet.length), h).copy(out, offset + HEADER_LEN);
    }
    h.copy(out, offset);
    this.counters.sent++;
    return total;
  }

  /** Opens a capsule frame; null when it is dropped (the reason is counted in `counters`). */
  open(frame: Buffer): Buffer | null {
    const r = this.tryOpen(frame);
    if (typeof r === 'string') {
      this.countDrop(r);
      return null;
    }
    return r;
  }

  /**
   * open() without counting drops: the packet, or why it was dropped. The replay window only moves for
   * capsules that authenticated. Never throws on hostile input.
   */
  tryOpen(frame: Buffer): Buffer | DropReason {
    if (!Buffer.isBuffer(frame) || frame.length < HEADER_LEN + AEAD_TAG_LEN) return 'malformed';
    const packet = Buffer.allocUnsafe(frame.length - HEADER_LEN - AEAD_TAG_LEN);
    const r = this.tryOpenInto(frame, packet, 0);
    return typeof r === 'number' ? packet : r;
  }

  /**
   * tryOpen() writing the packet at out[offset..] instead of allocating: its length, or why it was dropped.
   * `out` needs room for frame.length - 44 bytes.
   */
  tryOpenInto(frame: Buffer, out: Buffer, offset: number): number | DropReason {
    if (!Buffer.isBuffer(frame) || frame.length < HEADER_LEN + AEAD_TAG_LEN) return 'malformed';
    if (
      frame[0] !== PROTOCOL_VERSION ||
      frame[1] !== MessageType.Capsule ||
      frame.readUInt16BE(OFF_RESERVED) !== 0 ||
      frame.readUInt16BE(OFF_LENGTH) !== frame.length - HEADER_LEN
    ) {
      return 'malformed';
    }
    if (frame.readUInt32BE(OFF_ID_HI) !== this.#idHi || frame.readUInt32BE(OFF_ID_LO) !== this.#idLo) return 'wrongPath';
    const len = frame.length - HEADER_LEN - AEAD_TAG_LEN;
    if (offset < 0 || offset + len > out.length) return 'malformed';
    const hi = frame.readUInt32BE(OFF_SEQ_HI);
    const lo = frame.readUInt32BE(OFF_SEQ_LO);
    const verdict = this.#window.checkParts(hi, lo);
    if (verdict === ReplayVerdict.Duplicate) return 'replayed';
    if (verdict === ReplayVerdict.TooOld) return 'tooOld';
    const nonce = this.#recvNonce;
    nonce.writeUInt32BE(hi, 4);
    nonce.writeUInt32BE(lo, 8);
    const recv = this.#recv;
    try {
      if (recv.openInto) {
        if (recv.openInto(nonce, frame.subarray(HEADER_LEN), frame.subarray(0, HEADER_LEN), out, offset) < 0) return 'badTag';
      } else {
        recv.open(nonce, frame.subarray(HEADER_LEN), frame.subarray(0, HEADER_LEN)).copy(out, offset);
      }
    } catch {
      return 'badTag';
    }
    if (!this.#window.updateParts(hi, lo)) return 'replayed';
    if (this.#now() >= this.openUntil) {
      out.fill(0, offset, offset + len);
      return 'expired';
    }
    this.#receivedAny = true;
    this.counters.received++;
    return len;
  }

  /** Counts a drop reported by tryOpen(). */
  countDrop(reason: DropReason): void {
    this.counters[reason]++;
  }

  /** True when a new handshake should be started (counter or age threshold). Either end may start it. */
  needsRekey(now: number): boolean {
    return this.#next >= REKEY_LIMIT || now - this.establishedAt >= REKEY_AFTER_MS;
  }

  /** True when the session must no longer seal (counter or age limit). */
  expired(now: number): boolean {
    return this.#next >= SEND_LIMIT || now >= this.sealUntil;
  }
}
