// Tunnel Relay Service domain logic: relayed paths by path id, RelayRequest from the NMS, RelayBind from nodes, forwarding.
// Input is one datagram and its source as the socket reported it; output goes through the injected send(). No I/O here.

/*
 * One datagram (handle), in this order — every "drop" is counted by reason and never answered:
 *
 *   shorter than 28 B, version ≠ 1, length field ≠ datagram − 28, reserved ≠ 0 ........ drop malformed
 *   type 0x30 / 0x31 / 0x40 (TunnelRequest, TunnelResponse, Capsule) — the hot path:
 *       path = paths.get(header id) ........................................... else drop unknownPath
 *       source == end A's bound address+port → to B;  == end B's → to A ........ else drop notAnEnd
 *       the other end bound ...................................................... else drop unbound
 *       path not past its deadline ............................................... else drop expired
 *       send the datagram unchanged (the TRS cannot read it: capsules are sealed with the End Key)
 *   type 0x26 RelayBind:  known path → budget → opens with end A's or B's key → seq newer than that end's last
 *       → timestamp within ±120 s → the end is bound to the source (a new source moves it) → sealed RelayBindAck
 *   type 0x24 RelayRequest:  budget → replay guard → opens with the control key for (path id, our id)
 *       → neither end revoked → create (or refresh) the path → sealed RelayResponse {our endpoints}; a bad request
 *       gets a sealed Nack
 *   type 0x28 RelayRevoke (`cloud revoke`, from the NMS): opens like a RelayRequest (header id = a random nonce id)
 *       → every path with a listed node at either end is dropped, and the nodes are held revoked for
 *       RELAY_REVOKE_HOLD_MS (RelayRequests naming them get a CertRevoked Nack, binds on their paths are dropped)
 *       → sealed Ack
 *   type 0x29 RelayProbe (`node netcheck`, src/channel/relay-probe.ts): RELAY_PROBE_MIN_LEN ≤ length ≤ MAX, status 0
 *       → ticket (header id) not ended and ending ≤ 10 min ahead → per-source budget → budget in all → opens with the
 *       ticket's key (derived from the relay key, the ticket id and our id) → timestamp within ±120 s → seq newer than
 *       the ticket's last → sealed RelayProbeAck {observed}, never longer than the probe
 *   anything else ................................................................. drop type
 *
 * The hot path is a bigint Map lookup and two string compares: no decoding, no allocation beyond the
 * datagram node:dgram hands us. Binds and control requests cost AES-GCM (and HKDF) work, so they draw on
 * token buckets (binds: per path and in all): a flood of forged ones is dropped as rateLimited and cannot
 * starve forwarding. Binds for an unknown path id are dropped before any crypto.
 * Not an open reflector: it sends only to addresses that proved the path's Temp Key (binds) or a probe ticket
 * (probes: answers no larger than the probe, at most RELAY_PROBE_SOURCE_RATE per source), and answers only requests
 * that authenticated.
 */

import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { openFrame, sealFrame } from '../../channel/sealed.js';
import { ReplayGuard, SeqCounter } from '../../channel/sequence.js';
import { RELAY_PROBE_MAX_LEN, RELAY_PROBE_MIN_LEN, RelayProbeKeys, openRelayProbe, sealRelayProbeAck, ticketSecret, ticketUsable, type OpenedRelayProbe } from '../../channel/relay-probe.js';
import { RelayBindKeys, openRelayBind, relayBindFresh, sealRelayBindAck, RELAY_BIND_MAX_SKEW_MS, type OpenedRelayBind } from '../../channel/relay-bind.js';
import { HEADER_LEN, MessageType, PROTOCOL_VERSION, Status, STATUS_CODES } from '../../protocol/constants.js';
import { isValidPort, type Endpoint } from '../../protocol/endpoint.js';
import { HEADER_OFFSETS, splitFrame, type Header } from '../../protocol/header.js';
import { decodeBody, encodeBody, MAX_ENDPOINTS, MAX_RELAY_ID_LEN, type RelayRequest } from '../../protocol/messages.js';
import { unmapV4 } from '../../util/addr.js';
import { Budget, Budgets } from '../../util/budget.js';
import { Counters } from '../../util/counters.js';
import { CryptoError, DecodeError, describeError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import { relayControlKeys } from './control.js';

// ─────────────────────────── tunables ───────────────────────────

/** A path with no forwarded packet and no bind for this long is forgotten (ends rebind every ≤ 25 s to keep NAT state anyway). */
export const RELAY_IDLE_MS = 180_000;
/** Upper bound on a RelayRequest's expiry (a Common Key's default lifetime); later expiries are clamped. */
export const RELAY_MAX_LIFETIME_MS = 24 * 3600_000;
/** Paths one TRS holds at most (bounds memory: ~1 KB each with its keys); more requests get a NoRoute Nack. */
export const RELAY_MAX_PATHS = 65_536;
/** How often expired and idle paths are swept. */
export const RELAY_SWEEP_MS = 1_000;
/** RelayBind work (up to two AES-GCM opens, ~35 µs) allowed per second in all, and burst: binds every 25 s from 25 000 paths. */
export const RELAY_BIND_RATE = { perSec: 2_000, burst: 4_000 } as const;
/** RelayBind attempts allowed per path: a bind and its retransmissions from both ends, with room to spare. */
export const RELAY_PATH_BIND_RATE = { perSec: 8, burst: 16 } as const;
/**
 * How long a RelayRevoke keeps a node out of this TRS (new paths refused, binds dropped). It covers a route selection
 * in flight when the revocation arrived; after it the NMS's own refusal (a revoked node cannot log in or register)
 * is what keeps the node off relays, and a node re-enrolled under the same id may be relayed again.
 */
export const RELAY_REVOKE_HOLD_MS = 60_000;
/** Revoked node ids a TRS holds at once (the oldest hold is dropped first past this). */
export const RELAY_MAX_REVOKED = 65_536;
/**
 * RelayProbe work allowed per second in all, and burst: netcheck is rare. One probe costs a ticket-secret HKDF, a
 * ChannelKeys derivation and an AES-GCM open (≈ 0.2 ms measured on a loaded 2-core host), so ≤ ~10 % of a core.
 */
export const RELAY_PROBE_RATE = { perSec: 500, burst: 1_000 } as const;
/** RelayProbes answered per source address: a netcheck sends one per TRS endpoint and retries twice. */
export const RELAY_PROBE_SOURCE_RATE = { perSec: 4, burst: 8 } as const;
/** Tunable: probe sources with a budget of their own (all forgotten when full: bounded memory). */
const PROBE_SOURCES = 16_384;
/** Tunable: tickets whose last probe seq is remembered (oldest forgotten first; a ticket lives ≤ 10 min). */
const PROBE_TICKETS = 16_384;
/** RelayRequest work (HKDF + AES-GCM) allowed per second, and burst. */
export const RELAY_CONTROL_RATE = { perSec: 1_000, burst: 2_000 } as const;

/** Why a datagram was dropped (counted as `dropped.<reason>`). */
export const DROP_REASONS = [
  'malformed',
  'type',
  'unknownPath',
  'notAnEnd',
  'unbound',
  'expired',
  'rateLimited',
  'badBind',
  'foreignNode',
  'replayedBind',
  'staleBind',
  'badControl',
  'replayedControl',
  'staleControl',
  'revoked',
  'badProbe',
  'staleProbe',
  'replayedProbe',
  'probeRateLimited',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export interface TrsInit {
  /** This process's id (its relay_servers row). @default 'trs-' + 12 random hex digits */
  id?: string;
  /** Endpoints advertised in RelayResponse (may also be set later with advertise()). */
  endpoints?: Endpoint[];
  /** @default RELAY_IDLE_MS */
  idleMs?: number;
  /** @default RELAY_MAX_LIFETIME_MS */
  maxLifetimeMs?: number;
  /** @default RELAY_MAX_PATHS */
  maxPaths?: number;
  /** @default RELAY_BIND_MAX_SKEW_MS */
  bindMaxSkewMs?: number;
  /** @default RELAY_BIND_RATE */
  bindRate?: { perSec: number; burst: number };
  /** @default RELAY_PATH_BIND_RATE */
  pathBindRate?: { perSec: number; burst: number };
  /** @default RELAY_PROBE_RATE */
  probeRate?: { perSec: number; burst: number };
  /** @default RELAY_PROBE_SOURCE_RATE */
  probeSourceRate?: { perSec: number; burst: number };
  /** @default RELAY_CONTROL_RATE */
  controlRate?: { perSec: number; burst: number };
  /** @default RELAY_SWEEP_MS */
  sweepMs?: number;
  /** @default RELAY_REVOKE_HOLD_MS */
  revokeHoldMs?: number;
}

export interface TrsComponents {
  /** The cloud's relay key (control.ts loadRelayKey). */
  relayKey: Buffer;
  logger: Logger;
  /** Sends a datagram from the TRS socket; `address` is in the socket's form (as handle() received it). */
  send: (datagram: Buffer, port: number, address: string) => void;
  now?: () => number;
}

interface End {
  nodeId: number;
  keys: RelayBindKeys;
  /** Bound source exactly as the socket reports it (e.g. '::ffff:198.51.100.7' on a dual-stack socket), or null. */
  address: string | null;
  port: number;
  /** Highest accepted bind sequence number of this end. */
  lastSeq: bigint;
}

interface Path {
  id: bigint;
  tempKey: Buffer;
  a: End;
  b: End;
  expiresAt: number;
  lastActive: number;
  packets: number;
  bytes: number;
  /** Someone who saw this path id can send forged binds for it: they burn this budget, not every path's. */
  binds: Budget;
}

/** Token bucket: `take` is true while the budget lasts. */

/** Tunable: authenticated control sources with a budget of their own (NMS instances; a handful in practice). */
const CONTROL_SOURCES = 256;

const OFF_ID = HEADER_OFFSETS.id;
const OFF_LENGTH = HEADER_OFFSETS.length;
const OFF_RESERVED = HEADER_OFFSETS.reserved;

function hexId(id: bigint): string {
  return id.toString(16).padStart(16, '0');
}

export interface TrsStatus {
  id: string;
  endpoints: Endpoint[];
  paths: number;
  /** Paths whose two ends are bound. */
  bound: number;
}

export class TrsService {
  readonly id: string;
  /** Dropped datagrams by reason: plain fields, because the hot path increments them. */
  readonly dropped: Record<DropReason, number>;
  /** Everything else that is not per-datagram hot (binds, allocations, expiries). */
  readonly counters = new Counters();
  rx = 0;
  forwarded = 0;
  forwardedBytes = 0;

  private readonly paths = new Map<bigint, Path>();
  /** Revoked node id → until (unix ms): RelayRevoke from the NMS. Insertion order = oldest first. */
  private readonly revoked = new Map<number, number>();
  private endpoints: Endpoint[];
  private readonly now: () => number;
  private readonly seq: SeqCounter;
  private readonly guard: ReplayGuard;
  private readonly bindBudget: Budget;
  /** Per authenticated source address (an NMS instance); bounded: cleared when CONTROL_SOURCES are tracked. */
  private readonly controlBudgets: Budgets<string>;
  private readonly probeBudget: Budget;
  /** Per source address (socket form), before any crypto: a flood from one source is dropped as probeRateLimited. */
  private readonly probeSources: Budgets<string>;
  /** Ticket id → highest accepted probe seq (insertion order = oldest first; bounded by PROBE_TICKETS). */
  private readonly probeSeqs = new Map<bigint, bigint>();
  private readonly idleMs: number;
  private readonly maxLifetimeMs: number;
  private readonly maxPaths: number;
  private readonly bindMaxSkewMs: number;
  private readonly pathBindRate: { perSec: number; burst: number };
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly init: TrsInit,
    private readonly c: TrsComponents,
  ) {
    this.id = init.id ?? `trs-${randomBytes(6).toString('hex')}`;
    if (this.id === '' || Buffer.byteLength(this.id) > MAX_RELAY_ID_LEN) throw new RangeError(`TRS id must be 1..${MAX_RELAY_ID_LEN} bytes`);
    this.now = c.now ?? Date.now;
    this.seq = new SeqCounter(this.now);
    this.guard = new ReplayGuard(0n, this.now, 4096);
    const t = this.now();
    const br = init.bindRate ?? RELAY_BIND_RATE;
    const cr = init.controlRate ?? RELAY_CONTROL_RATE;
    this.bindBudget = new Budget(br.perSec, br.burst, t);
    this.controlBudgets = new Budgets(cr, CONTROL_SOURCES);
    const pr = init.probeRate ?? RELAY_PROBE_RATE;
    this.probeBudget = new Budget(pr.perSec, pr.burst, t);
    this.probeSources = new Budgets(init.probeSourceRate ?? RELAY_PROBE_SOURCE_RATE, PROBE_SOURCES);
    this.idleMs = init.idleMs ?? RELAY_IDLE_MS;
    this.maxLifetimeMs = init.maxLifetimeMs ?? RELAY_MAX_LIFETIME_MS;
    this.maxPaths = init.maxPaths ?? RELAY_MAX_PATHS;
    this.bindMaxSkewMs = init.bindMaxSkewMs ?? RELAY_BIND_MAX_SKEW_MS;
    this.pathBindRate = init.pathBindRate ?? RELAY_PATH_BIND_RATE;
    this.endpoints = [];
    this.advertise(init.endpoints ?? []);
    this.dropped = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
  }

  /** Sets the endpoints handed out in RelayResponse (at most MAX_ENDPOINTS). Throws RangeError for a bad one. */
  advertise(endpoints: Endpoint[]): void {
    for (const e of endpoints) {
      if (isIP(e.address) === 0 || !isValidPort(e.port)) throw new RangeError(`TRS endpoint ${e.address}:${e.port} is not an IP address and port`);
    }
    this.endpoints = endpoints.slice(0, MAX_ENDPOINTS).map((e) => ({ address: unmapV4(e.address), port: e.port }));
  }

  get advertised(): Endpoint[] {
    return this.endpoints.map((e) => ({ ...e }));
  }

  /** Active paths: the load reported in the heartbeat. */
  get load(): number {
    return this.paths.size;
  }

  /** Starts the expiry sweep. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sweep(), this.init.sweepMs ?? RELAY_SWEEP_MS);
    this.timer.unref();
  }

  /** Stops the sweep and forgets every path. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.paths.clear();
  }

  /** Handles one datagram from `address`:`port` (socket form). Never throws. */
  handle(msg: Buffer, address: string, port: number): void {
    this.rx++;
    if (
      msg.length < HEADER_LEN ||
      msg[0] !== PROTOCOL_VERSION ||
      msg.readUInt16BE(OFF_LENGTH) !== msg.length - HEADER_LEN ||
      msg.readUInt16BE(OFF_RESERVED) !== 0
    ) {
      this.dropped.malformed++;
      return;
    }
    switch (msg[1]) {
      case MessageType.Capsule:
      case MessageType.TunnelRequest:
      case MessageType.TunnelResponse:
        this.forward(msg, address, port);
        return;
      case MessageType.RelayBind:
        this.guarded(() => this.bind(msg, address, port));
        return;
      case MessageType.RelayRequest:
      case MessageType.RelayRevoke:
        this.guarded(() => this.control(msg, address, port));
        return;
      case MessageType.RelayProbe:
        this.guarded(() => this.probe(msg, address, port));
        return;
      default:
        this.dropped.type++;
    }
  }

  /** The forwarding hot path (see the diagram at the top). */
  private forward(msg: Buffer, address: string, port: number): void {
    const path = this.paths.get(msg.readBigUInt64BE(OFF_ID));
    if (path === undefined) {
      this.dropped.unknownPath++;
      return;
    }
    let to: End;
    if (path.a.port === port && path.a.address === address) to = path.b;
    else if (path.b.port === port && path.b.address === address) to = path.a;
    else {
      this.dropped.notAnEnd++;
      return;
    }
    if (to.address === null) {
      this.dropped.unbound++;
      return;
    }
    const now = this.now();
    if (now >= path.expiresAt) {
      this.dropped.expired++;
      this.forget(path, 'deadline');
      return;
    }
    path.lastActive = now;
    path.packets++;
    path.bytes += msg.length;
    this.forwarded++;
    this.forwardedBytes += msg.length;
    this.c.send(msg, to.port, to.address);
  }

  private bind(msg: Buffer, address: string, port: number): void {
    const path = this.paths.get(msg.readBigUInt64BE(OFF_ID));
    if (path === undefined) return this.drop('unknownPath');
    const now = this.now();
    if (now >= path.expiresAt) {
      this.forget(path, 'deadline');
      return this.drop('expired');
    }
    if (this.revoked.size > 0 && (this.isRevoked(path.a.nodeId, now) || this.isRevoked(path.b.nodeId, now))) {
      this.paths.delete(path.id);
      return this.drop('revoked');
    }
    if (!path.binds.take(now) || !this.bindBudget.take(now)) return this.drop('rateLimited');
    // Try the end already bound at this source first: one AES-GCM open for the usual refresh.
    const first = path.b.address === address && path.b.port === port ? path.b : path.a;
    let end: End | null = null;
    let bind: OpenedRelayBind | null = null;
    for (const e of first === path.a ? [path.a, path.b] : [path.b, path.a]) {
      try {
        bind = openRelayBind(msg, e.keys);
        end = e;
        break;
      } catch (err) {
        if (err instanceof CryptoError && err.code === 'ERR_RELAY_BIND_NODE') return this.drop('foreignNode');
        if (!(err instanceof CryptoError)) return this.drop('badBind'); // DecodeError: status ≠ 0 or a bad body
      }
    }
    if (end === null || bind === null) return this.drop('badBind');
    if (bind.seq <= end.lastSeq) return this.drop('replayedBind');
    if (!relayBindFresh(bind.timestamp, now, this.bindMaxSkewMs)) return this.drop('staleBind');
    end.lastSeq = bind.seq;
    const wasUnbound = end.address === null;
    const moved = !wasUnbound && (end.address !== address || end.port !== port);
    end.address = address;
    end.port = port;
    path.lastActive = now;
    const other = end === path.a ? path.b : path.a;
    this.counters.inc(moved ? 'bind.moved' : wasUnbound ? 'bind.ok' : 'bind.refresh');
    if (moved || wasUnbound) {
      this.c.logger.info(moved ? 'relay end moved' : 'relay end bound', { path: hexId(path.id), nodeId: end.nodeId, udpAddr: `${unmapV4(address)}:${port}` });
    }
    const ack = sealRelayBindAck(path.id, end.keys, {
      txid: bind.txid,
      seq: this.seq.next(),
      now,
      observed: { address: unmapV4(address).replace(/%.*$/, ''), port }, // no zone id ('fe80::1%eth0') on the wire
      peerBound: other.address !== null,
    });
    this.c.send(ack, port, address);
  }

  /**
   * RelayProbe (`node netcheck`): every check that costs nothing comes before the budgets, the budgets before any
   * crypto, and the answer is sealed only for a probe that opened under a ticket the cloud issued for this TRS.
   */
  private probe(msg: Buffer, address: string, port: number): void {
    if (msg.length < RELAY_PROBE_MIN_LEN || msg.length > RELAY_PROBE_MAX_LEN || msg.readUInt16BE(HEADER_OFFSETS.status) !== Status.Ok) return this.drop('badProbe');
    const ticketId = msg.readBigUInt64BE(OFF_ID);
    const now = this.now();
    if (!ticketUsable(ticketId, now)) return this.drop('staleProbe');
    if (!this.probeSources.take(address, now) || !this.probeBudget.take(now)) return this.drop('probeRateLimited');
    const keys = new RelayProbeKeys(ticketSecret(this.c.relayKey, ticketId, this.id), ticketId);
    let p: OpenedRelayProbe;
    try {
      p = openRelayProbe(msg, keys);
    } catch (err) {
      if (!(err instanceof CryptoError) && !(err instanceof DecodeError)) throw err;
      return this.drop('badProbe');
    }
    if (!relayBindFresh(p.timestamp, now, this.bindMaxSkewMs)) return this.drop('staleProbe');
    const last = this.probeSeqs.get(ticketId);
    if (last !== undefined && p.seq <= last) return this.drop('replayedProbe');
    this.probeSeqs.delete(ticketId);
    this.probeSeqs.set(ticketId, p.seq);
    if (this.probeSeqs.size > PROBE_TICKETS) this.probeSeqs.delete(this.probeSeqs.keys().next().value!);
    const ack = sealRelayProbeAck(keys, { txid: p.txid, seq: this.seq.next(), now, observed: { address: unmapV4(address).replace(/%.*$/, ''), port } });
    if (ack.length > msg.length) {
      this.counters.inc('probe.oversize'); // cannot happen (RELAY_PROBE_MIN_LEN): the size claim is enforced, not assumed
      return;
    }
    this.counters.inc('probe.ok');
    this.c.send(ack, port, address);
  }

  /**
   * RelayRequests and RelayRevokes from the NMS. Authenticated first (AES-GCM under the relay key, cheap), budgeted after, per source:
   * forged frames cost only their own open and can never spend the budget the NMS's real requests live on.
   */
  private control(msg: Buffer, address: string, port: number): void {
    const now = this.now();
    let f: { header: Header; headerBytes: Buffer; body: Buffer };
    try {
      f = splitFrame(msg);
    } catch {
      return this.drop('malformed');
    }
    const { header } = f;
    if (header.status !== Status.Ok || header.id === 0n) return this.drop('badControl');
    const why = this.guard.check(header.seq);
    if (why === 'replay') return this.drop('replayedControl');
    if (why) return this.drop('staleControl');
    const keys = relayControlKeys(this.c.relayKey, header.id, this.id);
    let plain: Buffer;
    try {
      plain = openFrame(keys.up, header, f.headerBytes, f.body);
    } catch {
      return this.drop('badControl');
    }
    this.guard.accept(header.seq);
    if (!this.controlBudgets.take(address, now)) return this.drop('rateLimited');
    const reply = (type: MessageType, body: Buffer, status: number = Status.Ok): void => {
      this.c.send(sealFrame(keys.down, { type, status, txid: header.txid, seq: this.seq.next(), id: header.id }, body), port, address);
    };
    const nack = (status: Status, reason: string): void => {
      this.counters.inc(`relay.refused.${STATUS_CODES[status]}`);
      reply(MessageType.Nack, encodeBody(MessageType.Nack, { reason: `${STATUS_CODES[status]}: ${reason}` }), status);
    };
    if (header.type === MessageType.RelayRevoke) {
      let ids: number[];
      try {
        ids = decodeBody(MessageType.RelayRevoke, plain).nodeIds;
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        return nack(Status.BadRequest, err.message);
      }
      this.revoke(ids, now);
      reply(MessageType.Ack, encodeBody(MessageType.Ack, {}));
      return;
    }
    let req: RelayRequest;
    try {
      req = decodeBody(MessageType.RelayRequest, plain);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      return nack(Status.BadRequest, err.message);
    }
    if (req.pathId !== header.id) return nack(Status.BadRequest, 'body pathId differs from the header id');
    if (this.isRevoked(req.nodeA, now) || this.isRevoked(req.nodeB, now)) return nack(Status.CertRevoked, 'an end of the path was revoked');
    const expiresAt = Math.min(Number(req.expiresAt), now + this.maxLifetimeMs);
    if (expiresAt <= now) return nack(Status.BadRequest, 'expiry is in the past');
    if (this.endpoints.length === 0) return nack(Status.Internal, 'this TRS has no advertised endpoint');
    const existing = this.paths.get(req.pathId);
    if (existing) {
      // A retransmitted request (its answer was lost) or a refresh: same ends and key. Anything else is a conflict.
      if (existing.a.nodeId !== req.nodeA || existing.b.nodeId !== req.nodeB || !existing.tempKey.equals(req.tempKey)) {
        return nack(Status.BadRequest, 'path id already relays another pair');
      }
      existing.expiresAt = Math.max(existing.expiresAt, expiresAt);
      this.counters.inc('relay.refreshed');
    } else {
      if (this.paths.size >= this.maxPaths) return nack(Status.NoRoute, 'relay at capacity');
      const end = (nodeId: number): End => ({ nodeId, keys: new RelayBindKeys(req.tempKey, nodeId), address: null, port: 0, lastSeq: 0n });
      this.paths.set(req.pathId, {
        id: req.pathId,
        tempKey: Buffer.from(req.tempKey),
        a: end(req.nodeA),
        b: end(req.nodeB),
        expiresAt,
        lastActive: now,
        packets: 0,
        bytes: 0,
        binds: new Budget(this.pathBindRate.perSec, this.pathBindRate.burst, now),
      });
      this.counters.inc('relay.allocated');
      this.c.logger.info('relay allocated', { path: hexId(req.pathId), nodeA: req.nodeA, nodeB: req.nodeB, expiresAt: new Date(expiresAt).toISOString() });
    }
    reply(MessageType.RelayResponse, encodeBody(MessageType.RelayResponse, { pathId: req.pathId, relay: this.endpoints, relayId: this.id }));
  }

  /** Drops every path with one of `nodeIds` at an end and holds the nodes revoked (RelayRevoke). */
  revoke(nodeIds: readonly number[], now = this.now()): void {
    const until = now + (this.init.revokeHoldMs ?? RELAY_REVOKE_HOLD_MS);
    const set = new Set(nodeIds);
    for (const id of set) {
      this.revoked.delete(id); // re-inserted last: the map stays ordered by age
      this.revoked.set(id, until);
      if (this.revoked.size > RELAY_MAX_REVOKED) this.revoked.delete(this.revoked.keys().next().value!);
    }
    let dropped = 0;
    for (const p of this.paths.values()) {
      if (set.has(p.a.nodeId) || set.has(p.b.nodeId)) {
        this.paths.delete(p.id);
        dropped++;
        this.c.logger.info('relay path dropped: an end was revoked', { path: hexId(p.id), nodeA: p.a.nodeId, nodeB: p.b.nodeId, packets: p.packets, bytes: p.bytes });
      }
    }
    this.counters.inc('revoke.received');
    this.counters.inc('paths.revoked', dropped);
  }

  private isRevoked(nodeId: number, now: number): boolean {
    const until = this.revoked.get(nodeId);
    return until !== undefined && now < until;
  }

  /** Forgets paths past their deadline or idle for longer than idleMs, and revocation holds that ended. */
  sweep(now = this.now()): void {
    for (const [id, until] of this.revoked) if (now >= until) this.revoked.delete(id);
    for (const id of this.probeSeqs.keys()) if (!ticketUsable(id, now)) this.probeSeqs.delete(id);
    for (const p of this.paths.values()) {
      if (now >= p.expiresAt) this.forget(p, 'deadline');
      else if (now - p.lastActive >= this.idleMs) this.forget(p, 'idle');
    }
  }

  private forget(p: Path, why: 'deadline' | 'idle'): void {
    this.paths.delete(p.id);
    this.counters.inc(`paths.expired.${why}`);
    this.c.logger.info('relay path expired', { path: hexId(p.id), why, packets: p.packets, bytes: p.bytes });
  }

  private guarded(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.counters.inc('internal');
      this.c.logger.error('TRS request failed', { err: describeError(err) });
    }
  }

  private drop(reason: DropReason): void {
    this.dropped[reason]++;
  }

  status(): TrsStatus {
    let bound = 0;
    for (const p of this.paths.values()) if (p.a.address !== null && p.b.address !== null) bound++;
    return { id: this.id, endpoints: this.advertised, paths: this.paths.size, bound };
  }

  /** Datagrams and bytes relayed on one path so far, or null if this TRS does not hold it (the console's node page). */
  pathStats(id: bigint): { packets: number; bytes: number; lastActive: number } | null {
    const p = this.paths.get(id);
    return p ? { packets: p.packets, bytes: p.bytes, lastActive: p.lastActive } : null;
  }

  /** Every counter, flat and sorted (`cloud stats`). */
  metrics(): Record<string, number> {
    const out: Record<string, number> = { rx: this.rx, forwarded: this.forwarded, 'forwarded.bytes': this.forwardedBytes, paths: this.paths.size };
    for (const r of DROP_REASONS) out[`dropped.${r}`] = this.dropped[r];
    Object.assign(out, this.counters.toJSON());
    return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
  }
}
