// Relay binding: how a node proves to a TRS that it is one end of a relayed path (RelayBind 0x26), and the answer (RelayBindAck 0x27).
// Pure helpers, no I/O or state: keys per end and direction from the path's Temp Key; the receiver keeps replay state.

/*
 *   node (end A or B)                                   TRS
 *     │── RelayBind   id = path id, seq = sender counter ──►│ opens with end A's or end B's bind key,
 *     │   sealed body {nodeId, timestamp}                   │ checks nodeId, |timestamp − now| ≤ 120 s,
 *     │                                                     │ seq > last accepted seq of that end,
 *     │                                                     │ records the datagram's source as the end's endpoint
 *     │◄─ RelayBindAck same txid, TRS seq ──────────────────│
 *         sealed body {nodeId, timestamp, observed, peerBound}
 *
 * Keys (ChannelKeys with these labels): ikm = Temp Key, salt = the end's node id (u64 BE),
 *   bind (node → TRS): info "cyphonic v1 relay bind node->trs"
 *   ack  (TRS → node): info "cyphonic v1 relay bind trs->node"
 * The node id in the salt gives the two ends different keys, so their sequence numbers (both clock-based)
 * can never make a (key, nonce) pair repeat; the direction in the info does the same for bind vs ack.
 */

import { ChannelKeys, openFrame, sealFrame } from './sealed.js';
import { MessageType, Status } from '../protocol/constants.js';
import type { Endpoint } from '../protocol/endpoint.js';
import { splitFrame } from '../protocol/header.js';
import { decodeBody, encodeBody } from '../protocol/messages.js';
import { CryptoError, DecodeError } from '../util/errors.js';

/** Spec: how far a bind's timestamp may be from the TRS's clock, either way (same as sealed signaling). */
export const RELAY_BIND_MAX_SKEW_MS = 120_000;
export const INFO_RELAY_BIND = 'cyphonic v1 relay bind node->trs';
export const INFO_RELAY_BIND_ACK = 'cyphonic v1 relay bind trs->node';

function nodeIdSalt(nodeId: number): Buffer {
  if (!Number.isSafeInteger(nodeId) || nodeId < 1) throw new RangeError(`relay bind: bad node id ${String(nodeId)}`);
  const salt = Buffer.alloc(8);
  salt.writeBigUInt64BE(BigInt(nodeId));
  return salt;
}

/** The keys of one end of a relayed path: `up` seals its RelayBind, `down` the TRS's RelayBindAck. */
export class RelayBindKeys extends ChannelKeys {
  constructor(
    tempKey: Buffer,
    readonly nodeId: number,
  ) {
    super(tempKey, { salt: nodeIdSalt(nodeId), up: INFO_RELAY_BIND, down: INFO_RELAY_BIND_ACK });
  }
}

export interface OpenedRelayBind {
  pathId: bigint;
  txid: number;
  /** The sender's sequence number (the TRS accepts only increasing ones per end). */
  seq: bigint;
  nodeId: number;
  /** Sender's clock, unix ms. */
  timestamp: number;
}

export interface OpenedRelayBindAck extends OpenedRelayBind {
  /** The source address and port the TRS saw the bind from. */
  observed: Endpoint;
  /** The other end is bound too. */
  peerBound: boolean;
}

export interface RelayBindAckFields {
  /** The bind's txid, echoed. */
  txid: number;
  /** The TRS's sequence number for this key (never reused). */
  seq: bigint;
  /** TRS clock, unix ms. */
  now: number;
  observed: Endpoint;
  peerBound: boolean;
}

function keysFor(tempKey: Buffer | RelayBindKeys, nodeId: number): RelayBindKeys {
  if (tempKey instanceof RelayBindKeys) {
    if (tempKey.nodeId !== nodeId) throw new RangeError(`relay bind: keys are for node ${tempKey.nodeId}, not ${nodeId}`);
    return tempKey;
  }
  return new RelayBindKeys(tempKey, nodeId);
}

/**
 * A RelayBind datagram from `nodeId` for `pathId`, sealed with the key derived from `tempKey` (or precomputed keys).
 * `seq` must grow with every bind this node sends on this path (a SeqCounter does); `now` is the node's clock.
 */
export function sealRelayBind(pathId: bigint, tempKey: Buffer | RelayBindKeys, nodeId: number, seq: bigint, now: number, txid = 0): Buffer {
  const keys = keysFor(tempKey, nodeId);
  const body = encodeBody(MessageType.RelayBind, { nodeId, timestamp: BigInt(Math.max(0, Math.floor(now))) });
  return sealFrame(keys.up, { type: MessageType.RelayBind, txid, seq, id: pathId }, body);
}

/** Checks the frame around a sealed relay-bind body; returns the opened plaintext. */
function openSealed(datagram: Buffer, type: MessageType, open: (k: RelayBindKeys) => ChannelKeys['up'], keys: RelayBindKeys) {
  const { header, headerBytes, body } = splitFrame(datagram);
  if (header.type !== type) throw new DecodeError(`expected ${MessageType[type]}, got type 0x${header.type.toString(16)}`, 'ERR_DECODE_TYPE');
  if (header.status !== Status.Ok) throw new DecodeError(`${MessageType[type]} with status ${header.status}`, 'ERR_DECODE_HEADER');
  const plain = openFrame(open(keys), header, headerBytes, body);
  return { header, plain };
}

function checkNode(got: number, keys: RelayBindKeys): void {
  // Cannot happen without the end's key, which only that end (and the TRS, NMS) hold: still, never trust a body blindly.
  if (got !== keys.nodeId) throw new CryptoError(`relay bind names node ${got}, sealed for node ${keys.nodeId}`, 'ERR_RELAY_BIND_NODE');
}

/**
 * Opens a RelayBind with one end's keys. Throws DecodeError (not a whole RelayBind frame, status ≠ 0, bad body)
 * or CryptoError (ERR_AEAD: not sealed with these keys; ERR_RELAY_BIND_NODE: body names another node).
 * Freshness (relayBindFresh) and replay (seq) are the caller's to check.
 */
export function openRelayBind(datagram: Buffer, keys: RelayBindKeys): OpenedRelayBind {
  const { header, plain } = openSealed(datagram, MessageType.RelayBind, (k) => k.up, keys);
  const b = decodeBody(MessageType.RelayBind, plain);
  checkNode(b.nodeId, keys);
  return { pathId: header.id, txid: header.txid, seq: header.seq, nodeId: b.nodeId, timestamp: Number(b.timestamp) };
}

/** The TRS's answer to an accepted bind, sealed with the end's ack key. */
export function sealRelayBindAck(pathId: bigint, keys: RelayBindKeys, f: RelayBindAckFields): Buffer {
  const body = encodeBody(MessageType.RelayBindAck, {
    nodeId: keys.nodeId,
    timestamp: BigInt(Math.max(0, Math.floor(f.now))),
    observed: f.observed,
    peerBound: f.peerBound,
  });
  return sealFrame(keys.down, { type: MessageType.RelayBindAck, txid: f.txid, seq: f.seq, id: pathId }, body);
}

/** Opens a RelayBindAck (node side); same errors as openRelayBind. Matching txid, freshness and replay are the caller's. */
export function openRelayBindAck(datagram: Buffer, keys: RelayBindKeys): OpenedRelayBindAck {
  const { header, plain } = openSealed(datagram, MessageType.RelayBindAck, (k) => k.down, keys);
  const b = decodeBody(MessageType.RelayBindAck, plain);
  checkNode(b.nodeId, keys);
  return {
    pathId: header.id,
    txid: header.txid,
    seq: header.seq,
    nodeId: b.nodeId,
    timestamp: Number(b.timestamp),
    observed: b.observed,
    peerBound: b.peerBound,
  };
}

/** True when a bind made at `timestamp` is acceptable at `now` (within ±RELAY_BIND_MAX_SKEW_MS). */
export function relayBindFresh(timestamp: number, now: number, maxSkewMs = RELAY_BIND_MAX_SKEW_MS): boolean {
  return Math.abs(timestamp - now) <= maxSkewMs;
}
