// Tunnel Request / Tunnel Response between the two ends of an NMS-issued path: certificate-signed ephemeral
// X25519, sealed under the path's Tunnel Key, yielding a forward-secret End Key (two directional data keys).
// Specification: docs/PROTOCOL.md, "Tunnel establishment and data".

import { createHash, type KeyObject } from 'node:crypto';
import { HEADER_LEN, MAX_SEALED_PLAINTEXT_LEN, MessageType, PROTOCOL_VERSION, AEAD_TAG_LEN } from '../protocol/constants.js';
import { encodeHeader, splitFrame, type Header } from '../protocol/header.js';
import { KEY_LEN, MAX_CERT_LEN, MAX_CHAIN_LEN, SCHEMAS, type TunnelHandshake } from '../protocol/messages.js';
import { decodeTlv, encodeTlv, type Schema } from '../protocol/tlv.js';
import { CryptoError, CyphonicError, DecodeError } from '../util/errors.js';
import { nonceFromSeq } from './aead.js';
import { FastAeadKey } from './fast-aead.js';
import { hkdf } from './kdf.js';
import { loadPrivateKey } from './keys.js';
import { sign, verify } from './sign.js';
import { MAX_INTERMEDIATES, nodeIdOfParsed, verifyChainParsed } from './verify.js';
import { generateEphemeral, sharedSecret } from './x25519.js';

// ───────────────────────────── public types ─────────────────────────────

/** This node: its id, certificate, the intermediates it was issued under (sent to the peer), and its key. */
export interface LocalIdentity {
  nodeId: number;
  certDer: Buffer;
  /** Intermediate CA certificates (DER) sent along so the peer can build the path; may be empty. */
  chainDer: Buffer[];
  /** PKCS#8 PEM of the P-256 key of certDer. */
  privateKeyPem: string;
}

/** What a peer certificate must chain to, and the revocation check applied to the leaf and its intermediates. */
export interface TrustAnchors {
  rootsDer: Buffer[];
  intermediatesDer: Buffer[];
  /** Called with the lowercase hex serial of every certificate on the path except the root. */
  isRevoked: (serial: string) => boolean;
  /** Clock (unix ms) for timestamps and certificate validity; default Date.now. */
  now?: () => number;
}

/** The path as directed by the NMS. tempKey only for relayed paths. */
export interface PathKeys {
  pathId: bigint;
  tunnelKey: Buffer;
  tempKey?: Buffer;
}

/** The peer the NMS named in RouteDirection (peerNodeId / peerName); its certificate must say the same. */
export interface ExpectedPeer {
  nodeId: number;
  name: string;
}

/** Result of a handshake: the two directional data keys of one session, from this node's point of view. */
export interface SessionKeys {
  /** 32-byte key sealing this node's capsules. */
  send: Buffer;
  /** 32-byte key opening the peer's capsules. */
  recv: Buffer;
  /** True on the side that sent the TunnelRequest that produced this session. */
  initiator: boolean;
  pathId: bigint;
  peerNodeId: number;
  peerCertDer: Buffer;
  /** Unix ms at which this side derived the keys. */
  establishedAt: number;
  /** Unix ms at which the session stops sealing (set by whoever installs it); default establishedAt + REJECT_AFTER_MS. */
  expiresAt?: number;
}

// ───────────────────────────── constants ─────────────────────────────

/** Tunable: how far a handshake timestamp may lag our clock (clock skew + path latency + retransmits). */
export const HANDSHAKE_MAX_SKEW_MS = 120_000;
/**
 * Tunable: how far a handshake timestamp may run ahead of our clock. Tighter than the lag: only clock skew puts a
 * timestamp in the future (NTP keeps honest clocks within seconds), and every second allowed ahead is a second a
 * forged-ahead timestamp could hold up a replay floor.
 */
export const HANDSHAKE_MAX_AHEAD_MS = 30_000;
/** HKDF info of the key sealing TunnelRequest (salt: sender node id, u64 BE). */
export const INFO_TUNNEL_I2R = 'cyphonic v1 tunnel initiator->responder';
/** HKDF info of the key sealing TunnelResponse (salt: sender node id, u64 BE). */
export const INFO_TUNNEL_R2I = 'cyphonic v1 tunnel responder->initiator';
/** Prefix of the HKDF info of the End Key (see endKeyInfo). */
export const INFO_END_KEY = 'cyphonic v1 end key';
/** Domain-separation labels of the two signed transcripts. */
const LABEL_REQUEST = 'cyphonic v1 tunnel request';
const LABEL_RESPONSE = 'cyphonic v1 tunnel response';
/**
 * Tunable: outstanding requests (retransmissions with fresh ephemerals) one initiator remembers. The one place this
 * number lives: an initiator sends at most this many requests per attempt (src/node/peers.ts schedules), and a
 * responder's data plane keeps this many answered, unconfirmed sessions per path (installLimits in
 * data-session.ts → the engine), so whichever response the initiator completes with has a session at the responder.
 */
export const MAX_PENDING_REQUESTS = 4;
/** Extension tag carrying the sender's intermediates (forward-compatible: older decoders skip it). */
export const TAG_CHAIN = 7;

const U64_MAX = (1n << 64n) - 1n;
const SKEW = BigInt(HANDSHAKE_MAX_SKEW_MS);
const AHEAD = BigInt(HANDSHAKE_MAX_AHEAD_MS);

/** TunnelRequest and TunnelResponse share one schema (tag 7 `chain` carries the sender's intermediates). */
type WireHandshake = TunnelHandshake;
const WIRE_SCHEMA: Schema<WireHandshake> = SCHEMAS[MessageType.TunnelRequest];

// ───────────────────────────── helpers ─────────────────────────────

function fail(code: string, message: string): CryptoError {
  return new CryptoError(message, code);
}

function u64(n: bigint | number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** Runs `fn`; anything that is not already a typed cyphonic error becomes a DecodeError (hostile input). */
function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CyphonicError) throw err;
    throw new DecodeError(`tunnel handshake: malformed input (${err instanceof Error ? err.message : String(err)})`, 'ERR_HANDSHAKE_MALFORMED');
  }
}

function checkNodeId(what: string, id: unknown): void {
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) throw fail('ERR_HANDSHAKE_PARAMS', `${what} must be a safe non-negative integer`);
}

function checkPath(path: PathKeys): void {
  if (typeof path.pathId !== 'bigint' || path.pathId < 0n || path.pathId > U64_MAX) throw fail('ERR_HANDSHAKE_PARAMS', 'pathId must be a u64 bigint');
  if (!Buffer.isBuffer(path.tunnelKey) || path.tunnelKey.length !== KEY_LEN) throw fail('ERR_KEY_LENGTH', `tunnel key must be ${KEY_LEN} bytes`);
  if (path.tempKey !== undefined && (!Buffer.isBuffer(path.tempKey) || path.tempKey.length !== KEY_LEN)) {
    throw fail('ERR_KEY_LENGTH', `temp key must be ${KEY_LEN} bytes`);
  }
}

/** Validated, preprocessed inputs shared by both roles. */
interface Context {
  local: LocalIdentity;
  signingKey: KeyObject;
  anchors: TrustAnchors;
  path: PathKeys;
  peer: ExpectedPeer;
  now: () => number;
}

function makeContext(local: LocalIdentity, anchors: TrustAnchors, path: PathKeys, peer: ExpectedPeer): Context {
  checkNodeId('local nodeId', local.nodeId);
  checkNodeId('expected peer nodeId', peer.nodeId);
  if (local.nodeId === peer.nodeId) throw fail('ERR_HANDSHAKE_PARAMS', 'a node cannot open a tunnel to itself');
  if (typeof peer.name !== 'string' || peer.name.length === 0) throw fail('ERR_HANDSHAKE_PARAMS', 'expected peer name missing');
  checkPath(path);
  if (!Buffer.isBuffer(local.certDer) || local.certDer.length > MAX_CERT_LEN) throw fail('ERR_HANDSHAKE_PARAMS', 'local certificate missing or too large');
  if (!Array.isArray(local.chainDer) || local.chainDer.length > MAX_CHAIN_LEN) throw fail('ERR_HANDSHAKE_PARAMS', `local chain must hold at most ${MAX_CHAIN_LEN} certificates`);
  return { local, signingKey: signingKeyOf(local), anchors, path, peer, now: anchors.now ?? Date.now };
}

/**
 * Parses `local`'s signing key now and keeps it for the handshakes made with this identity object, so the first of
 * them does not pay for the PEM (a node calls it at start: crypto/warm.ts warms the code with throwaway keys only).
 */
export function warmSigningKey(local: LocalIdentity): void {
  signingKeyOf(local);
}

/** Parsed signing keys per identity object (PEM parsing costs ~0.5 ms, more than the rest of a response). */
const signingKeys = new WeakMap<LocalIdentity, { pem: string; key: KeyObject }>();

function signingKeyOf(local: LocalIdentity): KeyObject {
  const hit = signingKeys.get(local);
  if (hit && hit.pem === local.privateKeyPem) return hit.key;
  const key = loadPrivateKey(local.privateKeyPem);
  signingKeys.set(local, { pem: local.privateKeyPem, key });
  return key;
}

/**
 * AEAD key sealing handshake messages of one sender in one direction: HKDF(tunnelKey, salt = u64 senderId, info).
 * Native (FastAeadKey: AES-256-GCM fetched once; AeadKey where the addon is missing): a handshake runs in a thread
 * that slept, and there a new key and one seal cost 81–137 µs native against 209–325 µs through node:crypto in one
 * bench/cold-path run (PERFORMANCE.md, "Why a fresh responder's steps cost several times their warm price"). Used
 * once, then destroyed.
 */
function handshakeKey(path: PathKeys, senderNodeId: number, info: string, use: 'seal' | 'open'): FastAeadKey {
  const bytes = hkdf(path.tunnelKey, u64(senderNodeId), info, KEY_LEN);
  const key = new FastAeadKey(bytes, use); // its own context: after a sleep no dearer than the shared one (bench/cold-path)
  bytes.fill(0);
  return key;
}

/** Signed bytes: label, 0, pathId, initiator id, responder id, initiator ephemeral and time [, responder ephemeral and time]. */
function transcript(
  label: string,
  pathId: bigint,
  initiatorId: number,
  responderId: number,
  initiatorEphemeral: Buffer,
  initiatorTime: bigint,
  responder?: { ephemeral: Buffer; time: bigint },
): Buffer {
  const parts = [Buffer.from(label, 'utf8'), Buffer.alloc(1), u64(pathId), u64(initiatorId), u64(responderId), initiatorEphemeral, u64(initiatorTime)];
  if (responder) parts.push(responder.ephemeral, u64(responder.time));
  return Buffer.concat(parts);
}

/** HKDF info of the End Key: binds the path, both node ids and both ephemeral public keys. */
export function endKeyInfo(pathId: bigint, initiatorId: number, responderId: number, initiatorEphemeral: Buffer, responderEphemeral: Buffer): string {
  return (
    `${INFO_END_KEY} path=${pathId.toString(16).padStart(16, '0')} i=${initiatorId} r=${responderId}` +
    ` ei=${initiatorEphemeral.toString('hex')} er=${responderEphemeral.toString('hex')}`
  );
}

/** HKDF salt of the End Key: the Tunnel Key, or SHA-256(tunnelKey ‖ tempKey) on relayed paths that have a Temp Key. */
export function endKeySalt(path: PathKeys): Buffer {
  if (!path.tempKey) return path.tunnelKey;
  return createHash('sha256').update(path.tunnelKey).update(path.tempKey).digest();
}

/**
 * The End Key: HKDF-SHA256(ikm = X25519 shared secret, salt = endKeySalt, info = endKeyInfo) → 64 bytes,
 * the first 32 seal initiator→responder capsules, the last 32 responder→initiator ones.
 */
export function deriveEndKeys(
  shared: Buffer,
  path: PathKeys,
  initiatorId: number,
  responderId: number,
  initiatorEphemeral: Buffer,
  responderEphemeral: Buffer,
): { i2r: Buffer; r2i: Buffer } {
  const okm = hkdf(shared, endKeySalt(path), endKeyInfo(path.pathId, initiatorId, responderId, initiatorEphemeral, responderEphemeral), 64);
  return { i2r: okm.subarray(0, 32), r2i: okm.subarray(32, 64) };
}

/** Seals a handshake frame with `key` and destroys the key (each is used for one frame). */
function sealHandshake(key: FastAeadKey, type: MessageType, txid: number, seq: bigint, pathId: bigint, body: Buffer): Buffer {
  try {
    if (body.length > MAX_SEALED_PLAINTEXT_LEN) throw fail('ERR_HANDSHAKE_PARAMS', 'handshake body too large');
    const out = Buffer.allocUnsafe(HEADER_LEN + body.length + AEAD_TAG_LEN);
    try {
      encodeHeader({ version: PROTOCOL_VERSION, type, status: 0, txid, seq, id: pathId, length: body.length + AEAD_TAG_LEN }, out, 0);
    } catch (err) {
      throw fail('ERR_HANDSHAKE_PARAMS', `handshake header: ${(err as Error).message}`);
    }
    key.sealInto(nonceFromSeq(seq), body, out.subarray(0, HEADER_LEN), out, HEADER_LEN);
    return out;
  } finally {
    key.destroy();
  }
}

/** Splits and authenticates a handshake frame of `type` on our path; returns its header and decoded body. */
function openHandshake(frame: Uint8Array, type: MessageType, path: PathKeys, key: () => FastAeadKey): { header: Header; body: WireHandshake } {
  const { header, headerBytes, body } = splitFrame(frame);
  if (header.type !== type) throw new DecodeError(`expected ${MessageType[type]}, got ${MessageType[header.type]}`, 'ERR_DECODE_TYPE');
  if (header.status !== 0) throw new DecodeError(`${MessageType[type]} with non-zero status ${header.status}`, 'ERR_DECODE_HEADER');
  if (header.id !== path.pathId) throw fail('ERR_HANDSHAKE_PATH', `frame for path ${header.id.toString(16)}, expected ${path.pathId.toString(16)}`);
  let plain: Buffer;
  let k: FastAeadKey | null = null;
  try {
    k = key();
    plain = k.open(nonceFromSeq(header.seq), body, headerBytes);
  } catch {
    throw fail('ERR_HANDSHAKE_AUTH', `${MessageType[type]} does not authenticate under the tunnel key`);
  } finally {
    k?.destroy();
  }
  const decoded = decodeTlv(WIRE_SCHEMA, plain);
  if (decoded.pathId !== path.pathId) throw fail('ERR_HANDSHAKE_PATH', 'handshake body names another path');
  return { header, body: decoded };
}

function checkTime(timestamp: bigint, now: number, what: string): void {
  const delta = timestamp - BigInt(now);
  if (delta > AHEAD) {
    throw fail('ERR_HANDSHAKE_STALE', `${what} timestamp is ahead of our clock by more than ${HANDSHAKE_MAX_AHEAD_MS} ms (check both clocks' time sync)`);
  }
  if (delta < -SKEW) throw fail('ERR_HANDSHAKE_STALE', `${what} timestamp is behind our clock by more than ${HANDSHAKE_MAX_SKEW_MS} ms`);
}

/** A peer certificate that already chained to these anchors: what the handshake needs from it again. */
interface VerifiedPeer {
  serial: string;
  notBefore: number;
  notAfter: number;
  nodeId: number | null;
  name: string;
  key: KeyObject;
}

/** Verified peer certificates per trust-anchor object (DER base64 → facts): a chain check per peer, not per handshake. */
const verifiedPeers = new WeakMap<TrustAnchors, Map<string, VerifiedPeer>>();
/** Tunable: certificates remembered per anchor set. */
const VERIFIED_PEERS_MAX = 4096;

/** Peer certificate: chains to our roots, not revoked, names the expected node; returns its public key. */
function verifyPeer(ctx: Context, body: WireHandshake, now: number): KeyObject {
  if (body.nodeId !== ctx.peer.nodeId) throw fail('ERR_HANDSHAKE_PEER', `handshake from node ${body.nodeId}, expected node ${ctx.peer.nodeId}`);
  let cache = verifiedPeers.get(ctx.anchors);
  if (!cache) verifiedPeers.set(ctx.anchors, (cache = new Map()));
  const id = body.certificate.toString('base64');
  let v = cache.get(id);
  // Validity and revocation are checked on every handshake; only the signature path is remembered.
  if (v && (now < v.notBefore || now > v.notAfter || ctx.anchors.isRevoked(v.serial))) v = undefined;
  if (!v) {
    v = verifyPeerChain(ctx, body, now);
    if (cache.size >= VERIFIED_PEERS_MAX) cache.clear();
    cache.set(id, v);
  }
  if (v.nodeId !== ctx.peer.nodeId || v.name !== ctx.peer.name) {
    throw fail(
      'ERR_HANDSHAKE_PEER',
      `peer certificate is for ${JSON.stringify(v.name)} (node ${String(v.nodeId)}), expected ${JSON.stringify(ctx.peer.name)} (node ${ctx.peer.nodeId})`,
    );
  }
  return v.key;
}

/**
 * Checks a peer certificate against `anchors` ahead of the handshake (e.g. when the NMS's Route Direction brings
 * it) and remembers the result, so the handshake itself does not repeat the chain check. Returns its name and
 * node id; throws CertificateError like the handshake would.
 */
export function preverifyPeerCertificate(anchors: TrustAnchors, certDer: Buffer, now = Date.now()): { name: string; nodeId: number | null } {
  let cache = verifiedPeers.get(anchors);
  if (!cache) verifiedPeers.set(anchors, (cache = new Map()));
  const id = certDer.toString('base64');
  let v = cache.get(id);
  if (v && (now < v.notBefore || now > v.notAfter || anchors.isRevoked(v.serial))) v = undefined;
  if (!v) {
    const ctx = { anchors } as Context;
    v = verifyPeerChain(ctx, { certificate: certDer, chain: [] } as unknown as WireHandshake, now);
    if (cache.size >= VERIFIED_PEERS_MAX) cache.clear();
    cache.set(id, v);
  }
  return { name: v.name, nodeId: v.nodeId };
}

function verifyPeerChain(ctx: Pick<Context, 'anchors'>, body: WireHandshake, now: number): VerifiedPeer {
  const known = [...ctx.anchors.intermediatesDer, ...ctx.anchors.rootsDer];
  const extra = body.chain.filter((c) => !known.some((k) => k.equals(c)));
  const room = Math.max(0, MAX_INTERMEDIATES - ctx.anchors.intermediatesDer.length);
  const { verified, leaf } = verifyChainParsed(body.certificate, [...ctx.anchors.intermediatesDer, ...extra.slice(0, room)], ctx.anchors.rootsDer, {
    now: new Date(now),
    isRevoked: ctx.anchors.isRevoked,
  });
  return {
    serial: verified.serial,
    notBefore: leaf.fields.notBefore.getTime(),
    notAfter: verified.notAfter.getTime(),
    nodeId: nodeIdOfParsed(leaf) ?? null,
    name: verified.commonName,
    key: leaf.publicKey,
  };
}

// ───────────────────────────── replay cache ─────────────────────────────

/**
 * Responder memory of accepted (pathId, initiator ephemeral) pairs. Each entry is kept `windowMs` after it was
 * accepted; since a request is only accepted within HANDSHAKE_MAX_SKEW_MS behind and HANDSHAKE_MAX_AHEAD_MS ahead of our clock, windowMs ≥ 2 × skew means
 * a copy of a forgotten request is always refused as stale. When `capacity` live entries are held, the oldest is
 * evicted and its request timestamp becomes a floor: requests not newer than it are refused as replays
 * (fail closed under a flood, at worst refusing honest peers whose clocks lag).
 */
export class HandshakeReplayCache {
  readonly #entries = new Map<string, { expires: number; timestamp: bigint }>();
  #floor = -1n;
  #evicted = 0;

  /** `onEvict`: called for each entry evicted to make room (each raises the floor; worth a counter). */
  constructor(
    readonly capacity = 4096,
    readonly windowMs = 240_000,
    private readonly onEvict?: () => void,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('replay cache capacity must be a positive integer');
    if (!(windowMs >= 2 * HANDSHAKE_MAX_SKEW_MS)) throw new RangeError(`replay cache window must be ≥ ${2 * HANDSHAKE_MAX_SKEW_MS} ms`);
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Entries evicted before their window ended (the cache was full). */
  get evicted(): number {
    return this.#evicted;
  }

  static key(pathId: bigint, ephemeral: Buffer): string {
    return `${pathId.toString(16)}:${ephemeral.toString('hex')}`;
  }

  /** True when (pathId, ephemeral, timestamp) would be refused as a replay. */
  seen(pathId: bigint, ephemeral: Buffer, timestamp: bigint, now: number): boolean {
    this.#expire(now);
    return timestamp <= this.#floor || this.#entries.has(HandshakeReplayCache.key(pathId, ephemeral));
  }

  /** Records an accepted request; false (nothing recorded) when it is a replay. */
  accept(pathId: bigint, ephemeral: Buffer, timestamp: bigint, now: number): boolean {
    if (this.seen(pathId, ephemeral, timestamp, now)) return false;
    while (this.#entries.size >= this.capacity) {
      const [oldest, entry] = this.#entries.entries().next().value as [string, { expires: number; timestamp: bigint }];
      this.#entries.delete(oldest);
      if (entry.timestamp > this.#floor) this.#floor = entry.timestamp;
      this.#evicted++;
      this.onEvict?.();
    }
    this.#entries.set(HandshakeReplayCache.key(pathId, ephemeral), { expires: now + this.windowMs, timestamp });
    return true;
  }

  #expire(now: number): void {
    for (const [key, entry] of this.#entries) {
      if (entry.expires > now) break; // insertion order ≈ expiry order
      this.#entries.delete(key);
    }
  }
}

// ───────────────────────────── initiator ─────────────────────────────

interface Pending {
  privateKey: KeyObject;
  ephemeral: Buffer;
  timestamp: bigint;
  sentAt: number;
}

/**
 * The side that sends TunnelRequest. request() may be called again to retransmit: each call uses a fresh
 * ephemeral key and must use a fresh `seq` (it is the AEAD nonce under this node's request key) and `txid`
 * (the response echoes it and is matched by it). The first valid response wins; the others are then refused.
 */
export class HandshakeInitiator {
  readonly #ctx: Context;
  readonly #pending = new Map<number, Pending>();

  constructor(local: LocalIdentity, anchors: TrustAnchors, path: PathKeys, expectedPeer: ExpectedPeer) {
    this.#ctx = makeContext(local, anchors, path, expectedPeer);
  }

  /** Requests awaiting a response. */
  get pending(): number {
    return this.#pending.size;
  }

  /** A full sealed TunnelRequest frame (header id = path id, status 0). */
  request(seq: bigint, txid: number): Buffer {
    const ctx = this.#ctx;
    const now = ctx.now();
    const { publicKey, privateKey } = generateEphemeral();
    const timestamp = BigInt(now);
    const signature = sign(
      ctx.signingKey,
      transcript(LABEL_REQUEST, ctx.path.pathId, ctx.local.nodeId, ctx.peer.nodeId, publicKey, timestamp),
    );
    const body = encodeTlv(WIRE_SCHEMA, {
      pathId: ctx.path.pathId,
      nodeId: ctx.local.nodeId,
      ephemeral: publicKey,
      timestamp,
      certificate: ctx.local.certDer,
      signature,
      chain: ctx.local.chainDer,
    });
    const frame = sealHandshake(handshakeKey(ctx.path, ctx.local.nodeId, INFO_TUNNEL_I2R, 'seal'), MessageType.TunnelRequest, txid, seq, ctx.path.pathId, body);
    this.#pending.delete(txid);
    this.#pending.set(txid, { privateKey, ephemeral: publicKey, timestamp, sentAt: now });
    while (this.#pending.size > MAX_PENDING_REQUESTS) this.#pending.delete(this.#pending.keys().next().value as number);
    return frame;
  }

  /**
   * Verifies a TunnelResponse and derives the session keys. Throws DecodeError (malformed),
   * CryptoError (ERR_HANDSHAKE_AUTH / _PATH / _PEER / _STALE / _SIGNATURE / _UNEXPECTED, ERR_X25519)
   * or CertificateError (ERR_CERT_*). A failed response leaves the pending requests untouched.
   */
  handleResponse(frame: Buffer): SessionKeys {
    return guard(() => {
      const ctx = this.#ctx;
      const now = ctx.now();
      const { header, body } = openHandshake(frame, MessageType.TunnelResponse, ctx.path, () =>
        handshakeKey(ctx.path, ctx.peer.nodeId, INFO_TUNNEL_R2I, 'open'),
      );
      const pending = this.#pending.get(header.txid);
      if (!pending) throw fail('ERR_HANDSHAKE_UNEXPECTED', `no outstanding TunnelRequest with txid ${header.txid}`);
      checkTime(body.timestamp, now, 'TunnelResponse');
      if (now - pending.sentAt > HANDSHAKE_MAX_SKEW_MS) throw fail('ERR_HANDSHAKE_STALE', 'response to a request older than the skew window');
      const peerKey = verifyPeer(ctx, body, now);
      const signed = transcript(LABEL_RESPONSE, ctx.path.pathId, ctx.local.nodeId, ctx.peer.nodeId, pending.ephemeral, pending.timestamp, {
        ephemeral: body.ephemeral,
        time: body.timestamp,
      });
      if (!verify(peerKey, signed, body.signature)) throw fail('ERR_HANDSHAKE_SIGNATURE', 'TunnelResponse signature does not verify');
      const shared = sharedSecret(pending.privateKey, body.ephemeral);
      const { i2r, r2i } = deriveEndKeys(shared, ctx.path, ctx.local.nodeId, ctx.peer.nodeId, pending.ephemeral, body.ephemeral);
      this.#pending.clear();
      return {
        send: i2r,
        recv: r2i,
        initiator: true,
        pathId: ctx.path.pathId,
        peerNodeId: ctx.peer.nodeId,
        peerCertDer: body.certificate,
        establishedAt: now,
      };
    });
  }

  /** Forgets every outstanding request (e.g. after losing a simultaneous initiation). */
  abandon(): void {
    this.#pending.clear();
  }
}

// ───────────────────────────── responder ─────────────────────────────

/**
 * Verifies a TunnelRequest from `expectedPeer` on `path` and answers it. `seq` is the AEAD nonce of the response
 * under this node's response key (fresh per response). The response echoes the request's txid.
 * Throws DecodeError (malformed), CryptoError (ERR_HANDSHAKE_AUTH / _PATH / _PEER / _STALE / _SIGNATURE /
 * _REPLAY, ERR_X25519) or CertificateError (ERR_CERT_*); nothing else, whatever the bytes.
 */
export function respondToRequest(
  frame: Buffer,
  local: LocalIdentity,
  anchors: TrustAnchors,
  path: PathKeys,
  expectedPeer: ExpectedPeer,
  replayCache: HandshakeReplayCache,
  seq: bigint,
): { response: Buffer; keys: SessionKeys } {
  const ctx = makeContext(local, anchors, path, expectedPeer);
  return guard(() => {
    const now = ctx.now();
    const { header, body } = openHandshake(frame, MessageType.TunnelRequest, ctx.path, () =>
      handshakeKey(ctx.path, ctx.peer.nodeId, INFO_TUNNEL_I2R, 'open'),
    );
    checkTime(body.timestamp, now, 'TunnelRequest');
    if (replayCache.seen(ctx.path.pathId, body.ephemeral, body.timestamp, now)) {
      throw fail('ERR_HANDSHAKE_REPLAY', 'TunnelRequest already answered (replay)');
    }
    const peerKey = verifyPeer(ctx, body, now);
    const signed = transcript(LABEL_REQUEST, ctx.path.pathId, ctx.peer.nodeId, ctx.local.nodeId, body.ephemeral, body.timestamp);
    if (!verify(peerKey, signed, body.signature)) throw fail('ERR_HANDSHAKE_SIGNATURE', 'TunnelRequest signature does not verify');

    const mine = generateEphemeral();
    const shared = sharedSecret(mine.privateKey, body.ephemeral);
    if (!replayCache.accept(ctx.path.pathId, body.ephemeral, body.timestamp, now)) {
      throw fail('ERR_HANDSHAKE_REPLAY', 'TunnelRequest already answered (replay)');
    }
    const timestamp = BigInt(now);
    const signature = sign(
      ctx.signingKey,
      transcript(LABEL_RESPONSE, ctx.path.pathId, ctx.peer.nodeId, ctx.local.nodeId, body.ephemeral, body.timestamp, {
        ephemeral: mine.publicKey,
        time: timestamp,
      }),
    );
    const responseBody = encodeTlv(WIRE_SCHEMA, {
      pathId: ctx.path.pathId,
      nodeId: ctx.local.nodeId,
      ephemeral: mine.publicKey,
      timestamp,
      certificate: ctx.local.certDer,
      signature,
      chain: ctx.local.chainDer,
    });
    const response = sealHandshake(
      handshakeKey(ctx.path, ctx.local.nodeId, INFO_TUNNEL_R2I, 'seal'),
      MessageType.TunnelResponse,
      header.txid,
      seq,
      ctx.path.pathId,
      responseBody,
    );
    const { i2r, r2i } = deriveEndKeys(shared, ctx.path, ctx.peer.nodeId, ctx.local.nodeId, body.ephemeral, mine.publicKey);
    return {
      response,
      keys: {
        send: r2i,
        recv: i2r,
        initiator: false,
        pathId: ctx.path.pathId,
        peerNodeId: ctx.peer.nodeId,
        peerCertDer: body.certificate,
        establishedAt: now,
      },
    };
  });
}

// ───────────────────────────── simultaneous initiation ─────────────────────────────

/**
 * Tie-break when both ends sent a TunnelRequest on the same path: the request of the node with the lower node id
 * wins. 'keep-mine': ignore the peer's request and keep waiting for the response to ours;
 * 'answer-theirs': abandon our initiation and answer the peer's request.
 */
export function resolveSimultaneous(localNodeId: number, peerNodeId: number): 'keep-mine' | 'answer-theirs' {
  if (localNodeId === peerNodeId) throw new RangeError('simultaneous initiation needs two distinct node ids');
  return localNodeId < peerNodeId ? 'keep-mine' : 'answer-theirs';
}

export type PathHandshakeState = 'idle' | 'initiating' | 'established';

/**
 * Per-path handshake state machine applying resolveSimultaneous, so that two ends initiating at the same time
 * end up with exactly one session:
 *   idle/established + request      → answer it (a new session: first tunnel, rekey or peer restart);
 *   initiating + request            → lower node id wins: ignore it (keep-mine), or abandon ours and answer;
 *   initiating + response           → established;
 *   idle/established + response     → ignored (an abandoned or completed initiation).
 * Errors of authentication/verification propagate; they never change the state.
 */
export class PathHandshake {
  #state: PathHandshakeState = 'idle';
  #initiator: HandshakeInitiator | null = null;

  constructor(
    private readonly local: LocalIdentity,
    private readonly anchors: TrustAnchors,
    private readonly path: PathKeys,
    private readonly expectedPeer: ExpectedPeer,
    private readonly replayCache: HandshakeReplayCache,
  ) {}

  get state(): PathHandshakeState {
    return this.#state;
  }

  /** Starts (or retransmits) our own initiation; returns the TunnelRequest frame to send. */
  initiate(seq: bigint, txid: number): Buffer {
    this.#initiator ??= new HandshakeInitiator(this.local, this.anchors, this.path, this.expectedPeer);
    const frame = this.#initiator.request(seq, txid);
    this.#state = 'initiating';
    return frame;
  }

  /** Handles a TunnelRequest; null when it is ignored because our own request wins the tie-break. */
  onRequest(frame: Buffer, seq: bigint): { response: Buffer; keys: SessionKeys } | null {
    if (this.#state === 'initiating' && resolveSimultaneous(this.local.nodeId, this.expectedPeer.nodeId) === 'keep-mine') {
      return null;
    }
    const answered = respondToRequest(frame, this.local, this.anchors, this.path, this.expectedPeer, this.replayCache, seq);
    this.#initiator?.abandon();
    this.#initiator = null;
    this.#state = 'established';
    return answered;
  }

  /** Handles a TunnelResponse; null when we are not initiating (abandoned or already established). */
  onResponse(frame: Buffer): SessionKeys | null {
    if (this.#state !== 'initiating' || !this.#initiator) return null;
    const keys = this.#initiator.handleResponse(frame);
    this.#initiator = null;
    this.#state = 'established';
    return keys;
  }
}
