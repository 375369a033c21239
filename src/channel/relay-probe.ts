// Relay probes: how a node that has no relayed path measures a TRS (`node netcheck`) without giving strangers a
// reflector. Pure helpers, no I/O or state: the NMS issues tickets, the node seals probes, the TRS answers.

/*
 *   node ── RelayTicketRequest (Common Key) ──► NMS    NMS: for each live TRS (store heartbeats), a ticket
 *        ◄── RelayTicketResponse {tickets} ───────┘        {relayId, endpoints, ticketId, secret}
 *   node ── RelayProbe   id = ticketId, seq ─────► TRS  sealed body {nodeId, timestamp, pad}, ≥ RELAY_PROBE_MIN_LEN
 *        ◄── RelayProbeAck same id and txid ──────┘    sealed body {timestamp, observed}, ≤ the probe's length
 *
 * ticketId (u64) = notAfter (unix seconds, u32) << 32 | 32 random bits. The TRS reads notAfter from the header and
 * drops a probe whose ticket has ended, or ends further ahead than RELAY_TICKET_MAX_MS, before any crypto.
 * secret    = HKDF-SHA-256(ikm = relay key, salt = ticketId (u64 BE) ‖ UTF-8 TRS id, info "cyphonic v1 relay probe ticket")
 * keys      = ChannelKeys(secret, salt = ticketId, up "cyphonic v1 relay probe node->trs", down "… trs->node")
 * Only holders of the relay key (NMS, TRS) can make a secret; the TRS id in the salt makes a ticket good at one TRS
 * only, and the random half of the ticket id gives every ticket its own keys, so the node's and the TRS's clock-based
 * sequence numbers never repeat a (key, nonce) pair.
 */

import { createHmac, randomInt } from 'node:crypto';
import { ChannelKeys, openFrame, sealFrame } from './sealed.js';
import { AEAD_TAG_LEN, HEADER_LEN, MessageType, Status } from '../protocol/constants.js';
import type { Endpoint } from '../protocol/endpoint.js';
import { splitFrame } from '../protocol/header.js';
import { decodeBody, encodeBody } from '../protocol/messages.js';
import { DecodeError } from '../util/errors.js';

export const INFO_RELAY_PROBE_TICKET = 'cyphonic v1 relay probe ticket';
export const INFO_RELAY_PROBE = 'cyphonic v1 relay probe node->trs';
export const INFO_RELAY_PROBE_ACK = 'cyphonic v1 relay probe trs->node';
/** Tunable: how long a ticket the NMS issues stays good. */
export const RELAY_TICKET_LIFETIME_MS = 5 * 60_000;
/** Spec: a TRS refuses tickets that end further ahead than this (a forged far-future ticket id costs nothing). */
export const RELAY_TICKET_MAX_MS = 10 * 60_000;
/**
 * Spec: the shortest RelayProbe a TRS answers. The largest RelayProbeAck (an IPv6 observed endpoint) is
 * HEADER_LEN + 11 (timestamp) + 22 (endpoint) + AEAD_TAG_LEN = 77 bytes, so an answer is never larger than its probe.
 */
export const RELAY_PROBE_MIN_LEN = 96;
/** Spec: the longest RelayProbe a TRS opens (it pads to the minimum; more is waste the TRS will not decrypt). */
export const RELAY_PROBE_MAX_LEN = 160;
/** Largest RelayProbeAck body a TRS can send (sealed), for the size claim above. */
export const RELAY_PROBE_ACK_MAX_LEN = HEADER_LEN + 11 + 22 + AEAD_TAG_LEN;

/** A new ticket id ending `lifetimeMs` from `now` (rounded up to the second). */
export function newTicketId(now: number, lifetimeMs = RELAY_TICKET_LIFETIME_MS): bigint {
  const notAfter = Math.ceil((now + lifetimeMs) / 1000);
  if (notAfter < 1 || notAfter > 0xffffffff) throw new RangeError(`ticket end ${notAfter} does not fit 32 bits`);
  return (BigInt(notAfter) << 32n) | BigInt(randomInt(1, 0x7fffffff));
}

/** When a ticket ends (unix ms). */
export function ticketNotAfter(ticketId: bigint): number {
  return Number(ticketId >> 32n) * 1000;
}

/** True when a probe under `ticketId` may be opened at `now`: not ended, and not ending implausibly far ahead. */
export function ticketUsable(ticketId: bigint, now: number, maxMs = RELAY_TICKET_MAX_MS): boolean {
  const end = ticketNotAfter(ticketId);
  return end > now && end - now <= maxMs;
}

/** The ticket secret for `ticketId` at the TRS `relayId` (NMS: to hand out; TRS: to check probes). */
export function ticketSecret(relayKey: Buffer, ticketId: bigint, relayId: string): Buffer {
  const id = Buffer.from(relayId, 'utf8');
  const salt = Buffer.alloc(8 + id.length);
  salt.writeBigUInt64BE(ticketId, 0);
  id.copy(salt, 8);
  const prk = createHmac('sha256', salt).update(relayKey).digest();
  const out = createHmac('sha256', prk).update(INFO_RELAY_PROBE_TICKET, 'utf8').update(Buffer.from([1])).digest();
  prk.fill(0);
  return out;
}

/** The probe keys of one ticket: `up` seals RelayProbe, `down` RelayProbeAck. */
export class RelayProbeKeys extends ChannelKeys {
  constructor(
    secret: Buffer,
    readonly ticketId: bigint,
  ) {
    const salt = Buffer.alloc(8);
    salt.writeBigUInt64BE(ticketId);
    super(secret, { salt, up: INFO_RELAY_PROBE, down: INFO_RELAY_PROBE_ACK });
  }
}

/** A RelayProbe from `nodeId` under a ticket, padded to RELAY_PROBE_MIN_LEN. */
export function sealRelayProbe(keys: RelayProbeKeys, f: { nodeId: number; seq: bigint; now: number; txid: number }): Buffer {
  const body = { nodeId: f.nodeId, timestamp: BigInt(Math.max(0, Math.floor(f.now))) };
  const bare = HEADER_LEN + encodeBody(MessageType.RelayProbe, body).length + 3 + AEAD_TAG_LEN;
  const pad = Buffer.alloc(Math.max(0, RELAY_PROBE_MIN_LEN - bare));
  return sealFrame(keys.up, { type: MessageType.RelayProbe, txid: f.txid, seq: f.seq, id: keys.ticketId }, encodeBody(MessageType.RelayProbe, { ...body, pad }));
}

export interface OpenedRelayProbe {
  ticketId: bigint;
  txid: number;
  seq: bigint;
  nodeId: number;
  timestamp: number;
}

/**
 * Opens a RelayProbe. Throws DecodeError (not a whole RelayProbe frame, status ≠ 0, bad body) or CryptoError
 * (ERR_AEAD: not sealed with this ticket's key). Ticket expiry, freshness, replay and size are the caller's to check.
 */
export function openRelayProbe(datagram: Buffer, keys: RelayProbeKeys): OpenedRelayProbe {
  const { header, headerBytes, body } = splitFrame(datagram);
  if (header.type !== MessageType.RelayProbe) throw new DecodeError(`expected RelayProbe, got type 0x${header.type.toString(16)}`, 'ERR_DECODE_TYPE');
  if (header.status !== Status.Ok) throw new DecodeError(`RelayProbe with status ${header.status}`, 'ERR_DECODE_HEADER');
  const b = decodeBody(MessageType.RelayProbe, openFrame(keys.up, header, headerBytes, body));
  return { ticketId: header.id, txid: header.txid, seq: header.seq, nodeId: b.nodeId, timestamp: Number(b.timestamp) };
}

/** The TRS's answer to an accepted probe. */
export function sealRelayProbeAck(keys: RelayProbeKeys, f: { txid: number; seq: bigint; now: number; observed: Endpoint }): Buffer {
  const body = encodeBody(MessageType.RelayProbeAck, { timestamp: BigInt(Math.max(0, Math.floor(f.now))), observed: f.observed });
  return sealFrame(keys.down, { type: MessageType.RelayProbeAck, txid: f.txid, seq: f.seq, id: keys.ticketId }, body);
}

/** Opens a RelayProbeAck (node side); same errors as openRelayProbe. */
export function openRelayProbeAck(datagram: Buffer, keys: RelayProbeKeys): { txid: number; seq: bigint; timestamp: number; observed: Endpoint } {
  const { header, headerBytes, body } = splitFrame(datagram);
  if (header.type !== MessageType.RelayProbeAck) throw new DecodeError(`expected RelayProbeAck, got type 0x${header.type.toString(16)}`, 'ERR_DECODE_TYPE');
  if (header.status !== Status.Ok || header.id !== keys.ticketId) throw new DecodeError('RelayProbeAck with a bad status or ticket id', 'ERR_DECODE_HEADER');
  const b = decodeBody(MessageType.RelayProbeAck, openFrame(keys.down, header, headerBytes, body));
  return { txid: header.txid, seq: header.seq, timestamp: Number(b.timestamp), observed: b.observed };
}
