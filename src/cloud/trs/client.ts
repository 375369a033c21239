// NMS side of the NMS↔TRS channel: allocate a relayed path on a live TRS with a sealed RelayRequest, retransmitted with backoff.
// allocateRelay(...) is what route selection calls; RelayClient owns the UDP socket the requests and answers use.

/*
 *   NMS (RelayClient)                                              TRS
 *     │── RelayRequest {pathId, nodeA, nodeB, tempKey, expiresAt} ─►│  sealed: relayControlKeys(key, pathId, trsId).up
 *     │   retransmitted after 250, 500, 1000 ms (fresh seq, same txid), rotating over the TRS's endpoints
 *     │◄─ RelayResponse {pathId, relay endpoints, relayId} ────────│  sealed: .down   (or a sealed Nack: refused)
 *
 *     │── RelayRevoke {nodeIds} ──────────────────────────────────►│  sealed like a RelayRequest, header id = a random
 *     │◄─ Ack ─────────────────────────────────────────────────────│  nonzero u64 (`cloud revoke`: revokeAtRelays)
 *
 * allocateRelay tries live TRS rows least-loaded first (at most RELAY_MAX_CANDIDATES) and makes a fresh Temp Key
 * for every try, so two TRS never hold the same path with the same key (a late answer from a server we gave up on
 * leaves only an unbound path there, which expires when idle).
 */

import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { randomBytes, randomInt } from 'node:crypto';
import { newTicketId, ticketSecret } from '../../channel/relay-probe.js';
import { openFrame, sealFrame, type ChannelKeys } from '../../channel/sealed.js';
import { SeqCounter } from '../../channel/sequence.js';
import { randomKey } from '../../crypto/index.js';
import { MessageType, Status } from '../../protocol/constants.js';
import { formatEndpoint, type Endpoint } from '../../protocol/endpoint.js';
import { splitFrame } from '../../protocol/header.js';
import { decodeBody, encodeBody, MAX_ENDPOINTS, MAX_RELAY_REVOKE_IDS, MAX_RELAY_TICKETS, type RelayTicket } from '../../protocol/messages.js';
import type { RelayServerRecord, Store } from '../../store/types.js';
import { mapForDualStack } from '../../util/addr.js';
import { Counters } from '../../util/counters.js';
import { CyphonicError, requestErrorFromNack } from '../../util/errors.js';
import { relayControlKeys } from './control.js';
import { liveRelays } from './registry.js';

/** Tunable: waits between retransmissions of a RelayRequest to one TRS (ms); that TRS has failed after the last. */
export const RELAY_RETRANSMIT_MS = [250, 500, 1000] as const;
/** Tunable: how many TRS allocateRelay tries before giving up (bounds route selection at ~3 × 1.75 s). */
export const RELAY_MAX_CANDIDATES = 3;

/**
 * Why an allocation failed. Codes: ERR_NO_RELAY (no live TRS in the store), ERR_RELAY_TIMEOUT (a TRS did not answer),
 * ERR_RELAY_REFUSED (a TRS answered with a Nack; `status` says why), ERR_RELAY_UNAVAILABLE (every candidate failed),
 * ERR_RELAY_CLOSED (the client was stopped).
 */
export class RelayError extends CyphonicError {
  /** For ERR_RELAY_REFUSED: the Nack's Status. */
  readonly status: number | undefined;
  constructor(code: string, message: string, opts: { status?: number; cause?: unknown } = {}) {
    super(code, message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.status = opts.status;
  }
}

export interface RelayAllocationRequest {
  /** The path's id (the header id of every relayed datagram). */
  pathId: bigint;
  /** Node ids of the two ends (the ones the RouteDirections go to). */
  nodeA: number;
  nodeB: number;
  /** Unix ms: the TRS forgets the path then (it also forgets it after RELAY_IDLE_MS without traffic or binds). */
  expiresAt: number;
}

export interface RelayAllocation {
  pathId: bigint;
  /** The Temp Key this TRS holds for the path: put it in both RouteDirections (`tempKey`). */
  tempKey: Buffer;
  /** The TRS's endpoints (IPv4 and/or IPv6): give each end one of the family it can reach. */
  relay: Endpoint[];
  /** The TRS's id (its relay_servers row). */
  relayId: string;
}

export interface RelayClientInit {
  /** The cloud's relay key (control.ts loadRelayKey). */
  relayKey: Buffer;
  /** Local address of the client socket. @default '::' (dual-stack) */
  host?: string;
  /** @default RELAY_RETRANSMIT_MS */
  retransmitMs?: readonly number[];
}

interface Pending {
  pathId: bigint;
  serverId: string;
  keys: ChannelKeys;
  /** A RelayRevoke waits for an Ack (resolved with null); a RelayRequest for a RelayResponse. */
  revoke: boolean;
  resolve: (a: { relay: Endpoint[]; relayId: string } | null) => void;
  reject: (err: Error) => void;
}

/** One UDP socket for RelayRequests; start() before use, stop() when the NMS stops. */
export class RelayClient {
  readonly counters = new Counters();
  private sock: dgram.Socket | null = null;
  private dualStack = true;
  private readonly seq = new SeqCounter();
  private readonly pending = new Map<number, Pending>();
  private txid = randomInt(1, 0x7fffffff);

  constructor(private readonly init: RelayClientInit) {
    if (init.relayKey.length !== 32) throw new RangeError('relay key must be 32 bytes');
  }

  async start(): Promise<void> {
    if (this.sock) return;
    const host = this.init.host ?? '::';
    this.dualStack = host.includes(':');
    const sock = dgram.createSocket({ type: this.dualStack ? 'udp6' : 'udp4', ipv6Only: false });
    sock.on('message', (msg) => this.handle(msg));
    sock.on('error', () => this.counters.inc('socket-error'));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: host, port: 0 }, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    this.sock = sock;
  }

  async stop(): Promise<void> {
    const s = this.sock;
    this.sock = null;
    for (const p of this.pending.values()) p.reject(new RelayError('ERR_RELAY_CLOSED', 'relay client stopped'));
    this.pending.clear();
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  /**
   * Asks one TRS to relay `req.pathId` with `tempKey`. Resolves with its endpoints; rejects with RelayError
   * ERR_RELAY_TIMEOUT (no answer after the last retransmission) or ERR_RELAY_REFUSED (a Nack).
   */
  async request(server: Pick<RelayServerRecord, 'id' | 'endpoints'>, req: RelayAllocationRequest, tempKey: Buffer): Promise<RelayAllocation> {
    const sock = this.sock;
    if (!sock) throw new RelayError('ERR_RELAY_CLOSED', 'relay client is not started');
    const targets = server.endpoints.filter((e) => this.dualStack || isIP(e.address) === 4);
    if (targets.length === 0) throw new RelayError('ERR_RELAY_UNAVAILABLE', `TRS ${server.id} has no endpoint this client can reach`);
    const keys = relayControlKeys(this.init.relayKey, req.pathId, server.id);
    const plain = encodeBody(MessageType.RelayRequest, { pathId: req.pathId, nodeA: req.nodeA, nodeB: req.nodeB, tempKey, expiresAt: BigInt(req.expiresAt) });
    const txid = (this.txid = (this.txid % 0x7fffffff) + 1);
    const answer = new Promise<{ relay: Endpoint[]; relayId: string } | null>((resolve, reject) =>
      this.pending.set(txid, { pathId: req.pathId, serverId: server.id, keys, revoke: false, resolve, reject }),
    );
    answer.catch(() => {}); // raced below
    try {
      const schedule = this.init.retransmitMs ?? RELAY_RETRANSMIT_MS;
      for (let i = 0; i < schedule.length; i++) {
        const to = targets[i % targets.length]!;
        const frame = sealFrame(keys.up, { type: MessageType.RelayRequest, txid, seq: this.seq.next(), id: req.pathId }, plain);
        sock.send(frame, to.port, this.dualStack ? mapForDualStack(to.address) : to.address);
        this.counters.inc(i === 0 ? 'tx' : 'retransmit');
        let timer: NodeJS.Timeout | undefined;
        const got = await Promise.race([answer, new Promise<null>((r) => (timer = setTimeout(() => r(null), schedule[i])))]);
        clearTimeout(timer);
        if (got) return { pathId: req.pathId, tempKey, relay: got.relay, relayId: got.relayId };
      }
      throw new RelayError('ERR_RELAY_TIMEOUT', `no answer from TRS ${server.id} at ${targets.map(formatEndpoint).join(', ')}`);
    } finally {
      this.pending.delete(txid);
    }
  }

  /**
   * Tells one TRS that `nodeIds` were revoked (it drops their paths and refuses binds for them). Resolves once the TRS
   * acknowledged; rejects with RelayError ERR_RELAY_TIMEOUT (no Ack after the last retransmission) or ERR_RELAY_REFUSED.
   */
  async revoke(server: Pick<RelayServerRecord, 'id' | 'endpoints'>, nodeIds: number[]): Promise<void> {
    const sock = this.sock;
    if (!sock) throw new RelayError('ERR_RELAY_CLOSED', 'relay client is not started');
    if (nodeIds.length === 0 || nodeIds.length > MAX_RELAY_REVOKE_IDS) throw new RangeError(`1..${MAX_RELAY_REVOKE_IDS} node ids per RelayRevoke`);
    const targets = server.endpoints.filter((e) => this.dualStack || isIP(e.address) === 4);
    if (targets.length === 0) throw new RelayError('ERR_RELAY_UNAVAILABLE', `TRS ${server.id} has no endpoint this client can reach`);
    // A fresh random id per message: with the TRS id it salts the key, so (key, nonce) never repeats across senders.
    let id = 0n;
    while (id === 0n) id = randomBytes(8).readBigUInt64BE(0);
    const keys = relayControlKeys(this.init.relayKey, id, server.id);
    const plain = encodeBody(MessageType.RelayRevoke, { nodeIds });
    const txid = (this.txid = (this.txid % 0x7fffffff) + 1);
    const answer = new Promise<unknown>((resolve, reject) => this.pending.set(txid, { pathId: id, serverId: server.id, keys, revoke: true, resolve, reject }));
    answer.catch(() => {});
    try {
      const schedule = this.init.retransmitMs ?? RELAY_RETRANSMIT_MS;
      for (let i = 0; i < schedule.length; i++) {
        const to = targets[i % targets.length]!;
        sock.send(sealFrame(keys.up, { type: MessageType.RelayRevoke, txid, seq: this.seq.next(), id }, plain), to.port, this.dualStack ? mapForDualStack(to.address) : to.address);
        this.counters.inc(i === 0 ? 'revoke.tx' : 'revoke.retransmit');
        let timer: NodeJS.Timeout | undefined;
        const got = await Promise.race([answer.then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), schedule[i])))]);
        clearTimeout(timer);
        if (got) return;
      }
      throw new RelayError('ERR_RELAY_TIMEOUT', `no Ack for RelayRevoke from TRS ${server.id}`);
    } finally {
      this.pending.delete(txid);
    }
  }

  /** An answer from a TRS: authenticated with the pending request's keys, else dropped and counted. */
  private handle(msg: Buffer): void {
    let f;
    try {
      f = splitFrame(msg);
    } catch {
      this.counters.inc('refused.decode');
      return;
    }
    const p = this.pending.get(f.header.txid);
    if (!p || f.header.id !== p.pathId) {
      this.counters.inc('refused.unsolicited');
      return;
    }
    let plain: Buffer;
    try {
      plain = openFrame(p.keys.down, f.header, f.headerBytes, f.body);
    } catch {
      this.counters.inc('refused.auth');
      return;
    }
    try {
      if (f.header.type === MessageType.Nack) {
        const { reason } = decodeBody(MessageType.Nack, plain);
        const e = requestErrorFromNack(f.header.status, reason);
        this.counters.inc('nack');
        p.reject(new RelayError('ERR_RELAY_REFUSED', `TRS ${p.serverId} refused: ${e.code}: ${e.message}`, { status: f.header.status }));
      } else if (p.revoke) {
        if (f.header.type !== MessageType.Ack || f.header.status !== Status.Ok) {
          this.counters.inc('refused.type');
          return;
        }
        this.counters.inc('revoke.acked');
        p.resolve(null);
      } else if (f.header.type === MessageType.RelayResponse && f.header.status === Status.Ok) {
        const r = decodeBody(MessageType.RelayResponse, plain);
        if (r.pathId !== p.pathId || r.relayId !== p.serverId) {
          this.counters.inc('refused.body');
          return;
        }
        this.counters.inc('rx');
        p.resolve({ relay: r.relay, relayId: r.relayId });
      } else {
        this.counters.inc('refused.type');
      }
    } catch {
      this.counters.inc('refused.body');
    }
  }
}

export interface AllocateRelayDeps {
  store: Store;
  client: RelayClient;
  now?: () => number;
  /** @default RELAY_MAX_CANDIDATES */
  maxCandidates?: number;
  /** The TRS heartbeat interval (liveness). @default RELAY_HEARTBEAT_MS */
  heartbeatMs?: number;
  /** TRS to try last (a node reported one of their endpoints dead; a node cannot make a live TRS unusable). */
  avoid?: (server: RelayServerRecord) => boolean;
}

/**
 * Allocates a relayed path for route selection: tries live TRS least-loaded first, each with a fresh Temp Key,
 * and resolves with the first acceptance. Rejects with RelayError ERR_NO_RELAY (no live TRS) or
 * ERR_RELAY_UNAVAILABLE (every candidate timed out or refused; the last error is its `cause`).
 */
export async function allocateRelay(deps: AllocateRelayDeps, req: RelayAllocationRequest): Promise<RelayAllocation> {
  const now = (deps.now ?? Date.now)();
  const live = await liveRelays(deps.store, now, { heartbeatMs: deps.heartbeatMs });
  const avoided = live.filter((r) => deps.avoid?.(r) === true);
  const candidates = [...live.filter((r) => !avoided.includes(r)), ...avoided].slice(0, deps.maxCandidates ?? RELAY_MAX_CANDIDATES);
  if (candidates.length === 0) throw new RelayError('ERR_NO_RELAY', 'no live TRS is registered');
  let last: unknown;
  for (const server of candidates) {
    try {
      return await deps.client.request(server, req, randomKey(32));
    } catch (err) {
      if (err instanceof RelayError && err.code === 'ERR_RELAY_CLOSED') throw err;
      last = err;
    }
  }
  const why = last instanceof Error ? last.message : String(last);
  throw new RelayError('ERR_RELAY_UNAVAILABLE', `no TRS accepted the path (${candidates.length} tried): ${why}`, { cause: last });
}

/**
 * `cloud revoke` at the relays: tells every live TRS (from the store) that `nodeIds` were revoked, in messages of at
 * most MAX_RELAY_REVOKE_IDS ids, all TRS at once. Resolves with how many TRS acknowledged every message; a TRS that
 * does not answer is counted and logged by the caller (it still forgets the paths when they idle out).
 */
export async function revokeAtRelays(deps: Pick<AllocateRelayDeps, 'store' | 'client' | 'now' | 'heartbeatMs'>, nodeIds: number[]): Promise<{ acked: number; failed: number }> {
  if (nodeIds.length === 0) return { acked: 0, failed: 0 };
  const live = await liveRelays(deps.store, (deps.now ?? Date.now)(), { heartbeatMs: deps.heartbeatMs });
  const results = await Promise.allSettled(
    live.map(async (server) => {
      for (let i = 0; i < nodeIds.length; i += MAX_RELAY_REVOKE_IDS) await deps.client.revoke(server, nodeIds.slice(i, i + MAX_RELAY_REVOKE_IDS));
    }),
  );
  const failed = results.filter((r) => r.status === 'rejected').length;
  return { acked: results.length - failed, failed };
}

/**
 * `node netcheck`: a probe ticket for each live TRS (from the store's heartbeats; dead rows are never listed), least
 * loaded first, at most MAX_RELAY_TICKETS. The secret is good at that TRS only, for RELAY_TICKET_LIFETIME_MS.
 */
export async function relayTickets(deps: Pick<AllocateRelayDeps, 'store' | 'now' | 'heartbeatMs'> & { relayKey: Buffer }): Promise<RelayTicket[]> {
  const now = (deps.now ?? Date.now)();
  const live = await liveRelays(deps.store, now, { heartbeatMs: deps.heartbeatMs });
  return live.slice(0, MAX_RELAY_TICKETS).map((r) => {
    const ticketId = newTicketId(now);
    return { relayId: r.id, relay: r.endpoints.slice(0, MAX_ENDPOINTS), ticketId, secret: ticketSecret(deps.relayKey, ticketId, r.id) };
  });
}
