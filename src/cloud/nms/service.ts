// Node Management Service domain logic: sealed registration, NAT detection, keepalive, replay protection.
// Input is one datagram and the address it came from; output is the sealed reply (or null: dropped and counted).

import { ChannelKeys, openFrame, sealFrame } from '../../channel/sealed.js';
import { ReplayGuard, reservationFor, SeqCounter } from '../../channel/sequence.js';
import { KEEPALIVE_NAT_SEC, KEEPALIVE_OPEN_SEC, MessageType, Status, STATUS_CODES } from '../../protocol/constants.js';
import { endpointsEqual, type Endpoint } from '../../protocol/endpoint.js';
import { splitFrame, type Header } from '../../protocol/header.js';
import { decodeBody, decodePeerReport, encodeBody, encodeBodyTransient, encodeRegistrationHead, encodeRegistrationResponse, encodeRelayTicket, MAX_RELAY_TICKETS, type DirectionRequest, type PeerReport, type PolicyUpdate, type RouteDirection } from '../../protocol/messages.js';
import { RouteSelector, type RelayAllocator, type SelectedPath } from './routes.js';
import { Directory, DIRECTORY_REBUILD_MS } from './directory.js';
import { POLICY_WATCH_MS, PolicyPusher } from './policy-push.js';
import { isLiveInstance } from '../instances.js';
import { StoreError } from '../../store/errors.js';
import type { CommonKeyRecord, NodeRecord, RegistrationRecord, Store } from '../../store/types.js';
import { Budgets } from '../../util/budget.js';
import { Counters } from '../../util/counters.js';
import { CryptoError, DecodeError, describeError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import { trace, tracing } from '../../util/trace.js';

export interface NmsInit {
  domain: string;
  /** Keepalive interval asked of nodes behind NAT. @default KEEPALIVE_NAT_SEC (5) */
  keepaliveNatSec?: number;
  /** Keepalive interval for reachable nodes (liveness only). @default KEEPALIVE_OPEN_SEC */
  keepaliveOpenSec?: number;
  /** UDP port of the mapping probe socket (told to nodes in RegistrationResponse); absent: no probe. */
  probePort?: number;
  /** Route selections one node may start. @default DIRECTION_RATE */
  directionRate?: { perSec: number; burst: number };
  /** Peers remembered per node for policy pushes and the console. @default MAX_PAIRS_PER_NODE */
  pairsPerNode?: number;
  /** Nodes whose last tunnel report is kept for the console. @default MAX_REPORTS */
  maxReports?: number;
  /**
   * Several instances share the store: this instance's id, recorded in the registrations it holds. A Route Direction
   * for a node registered at another instance goes to that instance (store.publish) which pushes it over the node's
   * registration path, and the node's Route Confirmation comes back the same way. Absent: one instance.
   */
  instanceId?: string;
}

/** Tunable: how long a Route Direction pushed for another instance waits for its confirmation to be forwarded (ms). */
export const FORWARDED_PUSH_MS = 10_000;
/** Tunable: how long the NMS trusts its copy of the live instance list (ms). */
const INSTANCE_CACHE_MS = 1_000;
/** Tunable: forwarded pushes remembered at once (bounded memory; the oldest is forgotten first). */
const FORWARDED_MAX = 10_000;

/** An instance message (JSON over store.publish): a push to do for another instance, or a confirmation for it. */
type InstanceMessage =
  | { t: 'push'; to: string; from: string; node: number; body: string }
  | { t: 'confirm'; to: string; node: number; path: string; ok: boolean };

function parseInstanceMessage(text: string): InstanceMessage | null {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (typeof o !== 'object' || o === null || typeof o['to'] !== 'string' || !Number.isSafeInteger(o['node']) || (o['node'] as number) < 1) return null;
  if (o['t'] === 'push' && typeof o['from'] === 'string' && typeof o['body'] === 'string') {
    return { t: 'push', to: o['to'], from: o['from'], node: o['node'] as number, body: o['body'] };
  }
  if (o['t'] === 'confirm' && typeof o['path'] === 'string' && /^\d{1,20}$/.test(o['path']) && typeof o['ok'] === 'boolean') {
    return { t: 'confirm', to: o['to'], node: o['node'] as number, path: o['path'], ok: o['ok'] };
  }
  return null;
}

/**
 * Tunable: route selections per node. A node asks once per new peer (and again on a path change or a failed punch),
 * so 20/s with a burst of 40 never bites a real node; a node flooding Direction Requests (each pushes a path to its
 * target and may allocate a TRS path) is refused past it and costs others nothing.
 */
export const DIRECTION_RATE = { perSec: 20, burst: 40 } as const;
/** Tunable: nodes whose last tunnel report (Keepalive.peers) is kept for the console (at most 32 records of ≤ 64 bytes
 *  each, kept encoded: ≤ ~45 MB in all); past it, one that stopped reporting is forgotten (forgetReport). */
const MAX_REPORTS = 20_000;
/** Tunable: a report younger than this (ms; several keepalive intervals) is of a node still reporting. */
const REPORT_LIVE_MS = 60_000;
/** Reports looked at per eviction for one that stopped (REPORT_LIVE_MS); all live: the first looked at goes. */
const REPORT_EVICT_LOOK = 8;
/** Stored reports grow in steps of this many bytes (a node whose report changes size a little keeps its buffer). */
const REPORT_STEP = 64;
/** Tunable: route selections of one node in progress at once. */
export const DIRECTIONS_IN_FLIGHT = 16;
/** Tunable: nodes with a route-selection budget tracked at once (bounded memory). */
const DIRECTION_BUDGETS = 200_000;

export interface NmsComponents {
  store: Store;
  logger: Logger;
  now?: () => number;
  /** Sends a datagram to a node (pushes of Route Directions). Without it, route selection is refused. */
  send?: (datagram: Buffer, to: Endpoint) => void;
  /** Relays paths that cannot be direct or punched (cloud.ts: RelayClient + allocateRelay). */
  relays?: RelayAllocator;
}

interface Session {
  nodeId: number;
  keyBytes: Buffer;
  keys: ChannelKeys;
  expiresAt: number;
  guard: ReplayGuard;
  /** Where the node was last registered or kept alive from (answering keepalives while the store is down). */
  observed?: Endpoint;
  /** The Common Key was read from the store for the message being handled (a registration need not read it again). */
  fresh: boolean;
  /** The node's record (name and addresses never change for an id), read once per node. */
  node?: NodeRecord;
  /** The node's fixed RegistrationResponse fields (id, addresses, FQDN), encoded at its first registration here. */
  regHead?: Buffer;
  /** Its route selections in progress (made at its first Direction Request; kept when the session is re-keyed). */
  directing?: DirectionSlots;
  /** The txid of the registration being handled (-1: none): a retransmission of it waits for its answer. */
  regPending: number;
  /** The txid of the last registration stored (-1: none): a late retransmission of it is answered without storing. */
  regDone: number;
}

/**
 * One node's route selections in progress: the txid of each (a retransmission waits for the first one's answer),
 * at most DIRECTIONS_IN_FLIGHT. The first sits in a field; the others, for a node that asks for several routes at
 * once, in an array made then and kept. So starting and ending a selection allocates nothing, and a node's first
 * selection adds one small object (what first contacts keep is what the NMS's scavenges copy; a Set or Map that fills
 * and empties once per selection would also take a new table each time: PERFORMANCE.md, "Tenth round").
 */
class DirectionSlots {
  /** The first slot's txid; -1: free. */
  private first = -1;
  /** The other slots' txids (-1: free), up to DIRECTIONS_IN_FLIGHT - 1 of them. */
  private more: number[] | null = null;
  /** Slots taken. */
  busy = 0;

  has(txid: number): boolean {
    return this.busy > 0 && (this.first === txid || (this.more !== null && this.more.includes(txid)));
  }

  /** Takes a slot for `txid`; false when DIRECTIONS_IN_FLIGHT are taken. */
  take(txid: number): boolean {
    if (this.first === -1) this.first = txid;
    else {
      const more = (this.more ??= []);
      const i = more.indexOf(-1);
      if (i >= 0) more[i] = txid;
      else if (more.length + 1 < DIRECTIONS_IN_FLIGHT) more.push(txid);
      else return false;
    }
    this.busy++;
    return true;
  }

  release(txid: number): void {
    if (this.first === txid) this.first = -1;
    else {
      const i = this.more === null ? -1 : this.more.indexOf(txid);
      if (i < 0) return;
      this.more![i] = -1;
    }
    this.busy--;
  }
}

/** A node's last tunnel report as it came: each encoded PeerReport after its 2-byte length, in the first `len` bytes. */
interface StoredReport {
  at: number;
  bytes: Buffer;
  len: number;
}

/** An empty body (Ack): encodes to no bytes. */
const EMPTY_BODY = Buffer.alloc(0);

/** Behind NAT when what we see is not one of the addresses the node says it has. */
function behindNat(reported: readonly Endpoint[], from: Endpoint): boolean {
  return !reported.some((e) => endpointsEqual(e, from));
}

/** The counter of each kind of path selected (names made once, not per selection). */
const ROUTE_COUNTER = { direct: 'route.direct', punched: 'route.punched', relayed: 'route.relayed' } as const;

/** The largest node id a frame may carry (ids are safe integers in the store); made once, not per datagram. */
const MAX_NODE_ID = BigInt(Number.MAX_SAFE_INTEGER);

/** Node→cloud message types the NMS accepts. */
const UPLINK = new Set<number>([MessageType.RegistrationRequest, MessageType.Keepalive, MessageType.DirectionRequest, MessageType.RouteConfirmation, MessageType.Ack, MessageType.DirectoryRequest, MessageType.RelayTicketRequest]);

/** Tunable: how far ahead the NMS reserves (and persists) sealing sequence numbers; below SEQ_MAX_SKEW_MS. */
export const SEQ_RESERVE_MS = 60_000;
const SEQ_META_KEY = 'nms.seq.reserved';
/**
 * Tunable: how often the NMS logs one `registrations` line (counts since the previous line; none when nothing
 * happened). Each registration alone is logged at debug level only: at thousands a second, a JSON line each was ~5 %
 * of a first registration's CPU.
 */
export const REGISTRATION_SUMMARY_MS = 60_000;
/** Tunable: how long after its RegistrationResponse a freshly registered node is sent the revocation list (ms). */
const REVOCATIONS_AFTER_MS = 10;

export class NmsService {
  readonly counters = new Counters();
  private readonly sessions = new Map<number, Session>();
  /** node id → what its tunnels carried at its last keepalive (Keepalive.peers); bounded (forgetReport). */
  private readonly reports = new Map<number, StoredReport>();
  private readonly seq: SeqCounter;
  private readonly now: () => number;
  private readonly routes: RouteSelector;
  private readonly directionBudgets: Budgets<number>;
  private pushTxid = 1;
  /** Route Directions pushed here for another instance: path id → the instance waiting for the confirmation. */
  private readonly forwarded = new Map<bigint, { instance: string; node: number; until: number }>();
  private unsubscribe: (() => Promise<void>) | null = null;
  /** Live instance ids (instanceLive), valid until liveUntil. */
  private live = new Set<string>();
  private liveUntil = 0;
  /** Sequence numbers up to this one are persisted as used (restoreSequence/reserveSequence). */
  private reservedUpTo = 0n;
  private seqTimer: NodeJS.Timeout | null = null;
  /** Live policy changes (policy-push.ts): started by watchPolicy(). */
  readonly policy: PolicyPusher;
  /** Each node's directory of reachable peers (directory.ts): refreshed by watchPolicy(), read on demand before. */
  readonly directory: Directory;
  private directoryTimer: NodeJS.Timeout | null = null;
  private directoryBuiltAt = 0;
  /** Fresh registrations waiting for the revocation list (sent REVOCATIONS_AFTER_MS after the answer, one shared timer). */
  private revocationQueue: { nodeId: number; to: Endpoint; at: number }[] = [];
  private revocationTimer: NodeJS.Timeout | null = null;
  private summaryTimer: NodeJS.Timeout | null = null;
  /** The counters the last `registrations` line was made from. */
  private summarized = { new: 0, re: 0, refused: 0, at: 0 };
  /** The mapping probe's port, told to nodes at registration (set once its socket is bound); 0: none. */
  probePort: number;

  constructor(
    private readonly init: NmsInit,
    private readonly c: NmsComponents,
  ) {
    this.now = c.now ?? Date.now;
    this.probePort = init.probePort ?? 0;
    this.directionBudgets = new Budgets(init.directionRate ?? DIRECTION_RATE, DIRECTION_BUDGETS);
    this.seq = new SeqCounter(this.now);
    this.routes = new RouteSelector({
      store: c.store,
      domain: init.domain,
      now: this.now,
      ...(init.pairsPerNode ? { pairsPerNode: init.pairsPerNode } : {}),
      push: (responderId, reg, body) => this.pushOrForward(responderId, reg, body),
      ...(c.relays ? { relays: c.relays } : {}),
      onUnconfirmed: (status, responder) => {
        this.counters.inc(`route.unconfirmed.${status}`);
        this.c.logger.info('route given but not confirmed', { peer: responder, status });
      },
    });
    this.policy = new PolicyPusher({
      store: c.store,
      logger: c.logger,
      counters: this.counters,
      pairs: this.routes.pairs,
      send: (nodeId, txid, body, to) => this.pushPolicy(nodeId, txid, body, to),
      ...(c.relays?.revoke ? { revokeAtRelays: (ids: number[]) => c.relays!.revoke!(ids) } : {}),
    });
    this.directory = new Directory(c.store, () => this.policy.revokedNodes());
  }

  /** What `nodeId`'s tunnels carried as it said in its last keepalive here (the console), or null. */
  peerReport(nodeId: number): { at: number; peers: PeerReport[] } | null {
    const r = this.reports.get(nodeId);
    if (!r) return null;
    const peers: PeerReport[] = [];
    for (let o = 0; o < r.len; ) {
      const n = r.bytes.readUInt16BE(o);
      peers.push(decodePeerReport(r.bytes.subarray(o + 2, o + 2 + n))); // decoded once already when it came
      o += 2 + n;
    }
    return { at: r.at, peers };
  }

  /**
   * Keeps an authenticated node's report of its tunnels; a malformed one is dropped whole (counted), never trusted in
   * part. Every keepalive of a node with tunnels brings one, and it lives until the next: kept decoded, it would be
   * copied out of the young generation and die in the old one, every few seconds for every such node. So its bytes
   * are kept as they came, in the node's own buffer, overwritten in place (PERFORMANCE.md, "Tenth round").
   */
  private notePeers(nodeId: number, raw: Buffer[] | undefined): void {
    if (!raw?.length) return;
    let len = 0;
    try {
      for (const b of raw) {
        decodePeerReport(b);
        len += 2 + b.length;
      }
    } catch {
      this.counters.inc('keepalive.bad-report');
      return;
    }
    let r = this.reports.get(nodeId);
    if (!r) {
      if (this.reports.size >= (this.init.maxReports ?? MAX_REPORTS)) this.forgetReport();
      r = { at: 0, bytes: Buffer.alloc(Math.ceil(len / REPORT_STEP) * REPORT_STEP), len: 0 };
      this.reports.set(nodeId, r);
    } else if (r.bytes.length < len) {
      r.bytes = Buffer.alloc(Math.ceil(len / REPORT_STEP) * REPORT_STEP);
    }
    let o = 0;
    for (const b of raw) {
      o = r.bytes.writeUInt16BE(b.length, o);
      o += b.copy(r.bytes, o);
    }
    r.len = len;
    r.at = this.now();
  }

  /**
   * Makes room for a new reporter: forgets the first report in the map's order that is no longer live (its node
   * stopped reporting, left or moved to another instance). A live one looked at on the way goes to the back (a second
   * chance, as a clock sweep gives), so the map's front holds the reports not refreshed since they were last passed
   * over. A report is refreshed in place and never moved then: a move per keepalive would make the map take new tables
   * as often (PERFORMANCE.md, "Tenth round"); moves happen only here, when the map is full. When all looked at are
   * live, more nodes report than are kept, and the next one at the front is forgotten.
   */
  private forgetReport(): void {
    const now = this.now();
    for (let i = 0; i < REPORT_EVICT_LOOK && this.reports.size > 0; i++) {
      const [id, r] = this.reports.entries().next().value!;
      this.reports.delete(id);
      if (now - r.at >= REPORT_LIVE_MS) return;
      this.reports.set(id, r);
    }
    const first = this.reports.keys().next();
    if (!first.done) this.reports.delete(first.value);
  }

  /** The last path this instance selected between `nodeId` and each of its peers, newest first (the console; copies). */
  selectedPaths(nodeId: number): SelectedPath[] {
    return this.routes.pairs.list(nodeId);
  }

  /** Pushes policy and tag changes to running nodes from now on (the store's revision is looked at every second). */
  watchPolicy(everyMs?: number): void {
    this.policy.start(everyMs);
    this.directoryTimer = setInterval(() => void this.watchDirectory(), everyMs ?? POLICY_WATCH_MS);
    this.directoryTimer.unref();
  }

  /**
   * Logs a `registrations` line every `everyMs` with the registrations (first and re-registrations) and the refused
   * messages since the previous one, and the sessions held; close() stops it.
   */
  logSummaries(everyMs = REGISTRATION_SUMMARY_MS): void {
    if (this.summaryTimer) clearInterval(this.summaryTimer);
    this.summarized = { new: this.counters.get('register.ok'), re: this.counters.get('register.re'), refused: this.counters.sum('refused.'), at: this.now() };
    this.summaryTimer = setInterval(() => this.logSummary(), everyMs);
    this.summaryTimer.unref();
  }

  /** One `registrations` line for what happened since the last one (nothing logged when nothing did). */
  logSummary(): void {
    const was = this.summarized;
    const now = { new: this.counters.get('register.ok'), re: this.counters.get('register.re'), refused: this.counters.sum('refused.'), at: this.now() };
    this.summarized = now;
    if (now.new === was.new && now.re === was.re && now.refused === was.refused) return;
    this.c.logger.info('registrations', { new: now.new - was.new, re: now.re - was.re, refused: now.refused - was.refused, sessions: this.sessions.size, sec: Math.round((now.at - was.at) / 1000) });
  }

  /**
   * After the policy watch (its revocation list decides who is listed): a new directory revision is announced to
   * every node with a session here, one DirectoryNotice each, not retransmitted (KeepaliveAck carries it too).
   */
  private async watchDirectory(): Promise<void> {
    // Rebuilt at most every DIRECTORY_REBUILD_MS: a burst of enrollments is one new revision, not one per node.
    if (this.now() - this.directoryBuiltAt < DIRECTORY_REBUILD_MS) return;
    try {
      await this.policy.check();
      if (!(await this.directory.refresh())) return;
      this.directoryBuiltAt = this.now();
      this.counters.inc('directory.changed');
      const rev = this.directory.rev!;
      const body = encodeBody(MessageType.DirectoryNotice, { rev });
      for (const s of this.sessions.values()) {
        if (!s.observed || !this.c.send) continue;
        this.pushTxid = (this.pushTxid % 0x7fffffff) + 1;
        this.c.send(sealFrame(s.keys.down, { type: MessageType.DirectoryNotice, txid: this.pushTxid, seq: this.nextSeq(), id: BigInt(s.nodeId) }, body), s.observed);
        this.counters.inc('directory.notice');
      }
    } catch (err) {
      this.counters.inc('directory.watch-failed');
      this.c.logger.warn('directory watch failed', { err: describeError(err) });
    }
  }

  /** `{ directoryRev }` for a KeepaliveAck when a revision is known (never a store read on the keepalive path). */
  private knownDirectoryRev(): { directoryRev?: string } {
    const rev = this.directory.rev;
    return rev === null ? {} : { directoryRev: rev };
  }

  /** `{ directoryRev }` for a RegistrationResponse; a store that fails here leaves it out rather than the registration. */
  private async directoryRevQuiet(): Promise<{ directoryRev?: string }> {
    try {
      const rev = await this.directoryRev();
      return rev === undefined ? {} : { directoryRev: rev };
    } catch {
      return {};
    }
  }

  /** The directory's revision for a reply, reading the store once if it was never read. */
  private async directoryRev(): Promise<string | undefined> {
    if (this.directory.rev === null) {
      await this.policy.check(); // its revocation list decides who is listed: read before the first snapshot
      await this.directory.refresh();
    }
    return this.directory.rev ?? undefined;
  }

  private pushPolicy(nodeId: number, txid: number, body: PolicyUpdate, to: Endpoint): boolean {
    const s = this.sessions.get(nodeId);
    if (!s || !this.c.send) return false;
    this.c.send(sealFrame(s.keys.down, { type: MessageType.PolicyUpdate, txid, seq: this.nextSeq(), id: BigInt(nodeId) }, encodeBody(MessageType.PolicyUpdate, body)), to);
    return true;
  }
  /**
   * Continues above every sequence number an earlier run of this NMS may have sealed with (they are AES-GCM nonces
   * under each node's Common Key, which survives our restart), and keeps a reservation ahead of use persisted in the
   * store. Call before the transport starts; close() stops the refresh.
   */
  async restoreSequence(): Promise<void> {
    const saved = await this.c.store.getMeta(SEQ_META_KEY);
    if (saved && /^\d+$/.test(saved)) this.seq.raise(BigInt(saved));
    await this.reserveSequence();
    this.seqTimer = setInterval(() => {
      this.reserveSequence().catch((err: unknown) => {
        this.counters.inc('seq.reserve-failed');
        this.c.logger.warn('sequence reservation not saved', { err: err instanceof Error ? err.message : String(err) });
      });
    }, SEQ_RESERVE_MS / 3);
    this.seqTimer.unref();
  }

  private async reserveSequence(): Promise<void> {
    const upTo = reservationFor(this.seq, this.now(), SEQ_RESERVE_MS);
    await this.c.store.setMeta(SEQ_META_KEY, upTo.toString());
    this.reservedUpTo = upTo;
  }

  close(): void {
    this.policy.stop();
    if (this.directoryTimer) clearInterval(this.directoryTimer);
    this.directoryTimer = null;
    if (this.seqTimer) clearInterval(this.seqTimer);
    this.seqTimer = null;
    if (this.revocationTimer) clearTimeout(this.revocationTimer);
    this.revocationTimer = null;
    this.revocationQueue = [];
    if (this.summaryTimer) clearInterval(this.summaryTimer);
    this.summaryTimer = null;
    const stop = this.unsubscribe;
    this.unsubscribe = null;
    void stop?.().catch(() => undefined);
  }

  /** Several instances: starts taking pushes and confirmations other instances send us. No-op without instanceId. */
  async listenToInstances(): Promise<void> {
    if (!this.init.instanceId || this.unsubscribe) return;
    this.unsubscribe = await this.c.store.subscribe((text) => {
      this.onInstanceMessage(text).catch((err: unknown) => {
        this.counters.inc('instance.failed');
        this.c.logger.warn('instance message failed', { err: describeError(err) });
      });
    });
  }

  private async onInstanceMessage(text: string): Promise<void> {
    const m = parseInstanceMessage(text);
    if (!m) {
      this.counters.inc('instance.bad-message');
      return;
    }
    if (m.to !== this.init.instanceId) return;
    if (m.t === 'confirm') {
      if (!this.routes.confirm(m.node, BigInt(m.path), m.ok)) this.counters.inc('route.late-confirmation');
      return;
    }
    let body: RouteDirection;
    try {
      body = decodeBody(MessageType.RouteDirectionResponder, Buffer.from(m.body, 'base64'));
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      this.counters.inc('instance.bad-message');
      return;
    }
    const reg = await this.c.store.getRegistration(m.node);
    if (!reg || reg.nms !== this.init.instanceId) {
      this.counters.inc('route.forward-not-here');
      return;
    }
    const now = this.now();
    for (const [k, f] of this.forwarded) if (f.until <= now || this.forwarded.size >= FORWARDED_MAX) this.forwarded.delete(k);
    else break;
    this.forwarded.set(body.pathId, { instance: m.from, node: m.node, until: now + FORWARDED_PUSH_MS });
    this.counters.inc('route.push-for-instance');
    this.push(m.node, reg.observed, body);
  }

  /**
   * Pushes a Route Direction ourselves, or has the instance that holds the responder's registration push it. A
   * registration naming an instance that is not live (this cloud restarted under a new id, or that instance died and
   * the node has not moved yet) is pushed from here, as a single instance would.
   */
  private pushOrForward(responderId: number, reg: RegistrationRecord, body: RouteDirection): void {
    const me = this.init.instanceId;
    const other = reg.nms;
    if (!me || !other || other === me) {
      this.push(responderId, reg.observed, body);
      return;
    }
    void this.instanceLive(other).then((live) => {
      if (!live) {
        this.counters.inc('route.push-for-dead-instance');
        this.push(responderId, reg.observed, body);
        return;
      }
      const msg: InstanceMessage = { t: 'push', to: other, from: me, node: responderId, body: encodeBody(MessageType.RouteDirectionResponder, body).toString('base64') };
      this.counters.inc('route.forward');
      return this.c.store.publish(JSON.stringify(msg));
    }).catch((err: unknown) => {
      this.counters.inc('route.forward-failed');
      this.c.logger.warn('route direction not forwarded', { to: other, err: describeError(err) });
    });
  }

  /** Whether instance `id` heartbeats (the store's list, cached for INSTANCE_CACHE_MS). */
  private async instanceLive(id: string): Promise<boolean> {
    const now = this.now();
    if (now >= this.liveUntil) {
      const rows = await this.c.store.listInstances();
      this.live = new Set(rows.filter((r) => isLiveInstance(r, now)).map((r) => r.id));
      this.liveUntil = now + INSTANCE_CACHE_MS;
    }
    return this.live.has(id);
  }

  /** A Route Confirmation for a push we did for another instance: send it there. */
  private forwardConfirmation(nodeId: number, pathId: bigint, accepted: boolean): boolean {
    const f = this.forwarded.get(pathId);
    if (!f || f.node !== nodeId || f.until <= this.now()) return false;
    this.forwarded.delete(pathId);
    const msg: InstanceMessage = { t: 'confirm', to: f.instance, node: nodeId, path: pathId.toString(), ok: accepted };
    this.c.store.publish(JSON.stringify(msg)).catch((err: unknown) => {
      this.counters.inc('route.forward-failed');
      this.c.logger.warn('route confirmation not forwarded', { to: f.instance, err: describeError(err) });
    });
    return true;
  }

  /** The next sealing sequence number; counted when it runs past what is persisted (a store that stopped saving). */
  private nextSeq(): bigint {
    const seq = this.seq.next();
    if (this.reservedUpTo !== 0n && seq > this.reservedUpTo) this.counters.inc('seq.unreserved');
    return seq;
  }


  /**
   * Handles one datagram; returns the reply to send back to `from`, or null. Never throws.
   * `via: 'probe'`: it came in on the mapping probe port, where only a Keepalive is accepted (see probe()).
   */
  async handle(datagram: Buffer, from: Endpoint, via: 'main' | 'probe' = 'main'): Promise<Buffer | null> {
    this.counters.inc('rx');
    let header: Header;
    let headerBytes: Buffer;
    let body: Buffer;
    try {
      ({ header, headerBytes, body } = splitFrame(datagram));
    } catch {
      return this.drop('decode');
    }
    if (!UPLINK.has(header.type) || (via === 'probe' && header.type !== MessageType.Keepalive)) return this.drop('type');
    if (header.id === 0n || header.id > MAX_NODE_ID) return this.drop('unknown-node');
    const nodeId = Number(header.id);
    try {
      const session = this.sessions.get(nodeId) ?? (await this.session(nodeId, false)); // no await for a known node
      if (!session) return this.drop('unknown-node');
      const why = session.guard.check(header.seq);
      if (why) return this.drop(why);
      let plain: Buffer;
      try {
        plain = openFrame(session.keys.up, header, headerBytes, body);
      } catch (err) {
        if (!(err instanceof CryptoError)) throw err;
        // The node may have logged in again since we cached its key: reload once.
        const fresh = await this.session(nodeId, true);
        if (!fresh || fresh.keyBytes.equals(session.keyBytes)) return this.drop('auth');
        try {
          plain = openFrame(fresh.keys.up, header, headerBytes, body);
        } catch {
          return this.drop('auth');
        }
        return await this.authenticated(fresh, header, plain, from, via);
      }
      return await this.authenticated(session, header, plain, from, via);
    } catch (err) {
      this.c.logger.error('NMS request failed', { err: describeError(err), nodeId });
      return this.drop('internal');
    }
  }

  private async authenticated(s: Session, header: Header, plain: Buffer, from: Endpoint, via: 'main' | 'probe'): Promise<Buffer | null> {
    s.guard.accept(header.seq);
    const fresh = s.fresh;
    s.fresh = false;
    if (s.expiresAt <= this.now()) {
      this.counters.inc('refused.expired-key');
      return this.nack(s, header, Status.CommonKeyExpired, 'Common Key expired: log in at the AS again');
    }
    try {
      switch (header.type) {
        case MessageType.RegistrationRequest:
          return await this.register(s, header, decodeBody(MessageType.RegistrationRequest, plain), from, fresh);
        case MessageType.Keepalive: {
          const ka = decodeBody(MessageType.Keepalive, plain);
          if (via === 'probe') return await this.probe(s, header, from);
          const reply = await this.keepalive(s, header, from);
          this.notePeers(s.nodeId, ka.peers);
          return reply;
        }
        case MessageType.RelayTicketRequest:
          decodeBody(MessageType.RelayTicketRequest, plain);
          return await this.relayTickets(s, header);
        case MessageType.DirectionRequest:
          return await this.direction(s, header, decodeBody(MessageType.DirectionRequest, plain));
        case MessageType.DirectoryRequest: {
          // Answered only to the address the node registered from: a page is ~20x a request, and an enrolled node
          // must not aim that at a third party by forging its source address.
          if (!s.observed || !endpointsEqual(s.observed, from)) return this.drop('directory-source');
          const req = decodeBody(MessageType.DirectoryRequest, plain);
          await this.directoryRev();
          const page = this.directory.page(s.nodeId, req.page);
          if (!page) return this.nack(s, header, Status.NoRoute, 'no directory yet');
          this.counters.inc('directory.page');
          return this.reply(s, header, MessageType.DirectoryPage, encodeBody(MessageType.DirectoryPage, page));
        }
        case MessageType.Ack:
          // A node acknowledging a push (PolicyUpdate); nothing is answered.
          if (!this.policy.acked(header.txid)) this.counters.inc('policy.late-ack');
          return null;
        case MessageType.RouteConfirmation: {
          const c = decodeBody(MessageType.RouteConfirmation, plain);
          trace('nms.confirmed', c.pathId);
          if (!this.routes.confirm(s.nodeId, c.pathId, c.accepted) && !this.forwardConfirmation(s.nodeId, c.pathId, c.accepted)) {
            this.counters.inc('route.late-confirmation');
          }
          return this.reply(s, header, MessageType.Ack, EMPTY_BODY);
        }
        default:
          return this.drop('type');
      }
    } catch (err) {
      if (err instanceof DecodeError) {
        this.counters.inc('refused.body');
        return this.nack(s, header, Status.BadRequest, err.message);
      }
      throw err;
    }
  }

  /**
   * A registration. A retransmitted one (same txid: the node resent it before our answer reached it) is not stored
   * twice: while the first is in progress it gets no answer of its own (the first one's will do); after it, from the
   * same address, it is answered again from memory (the first copy checked the Common Key moments before, and the
   * answer says nothing new). Storing it again would reset the NAT mapping the node's probe
   * may have recorded in between, and the node, whose request is already answered, would not probe again.
   */
  private async register(
    s: Session,
    header: Header,
    req: { endpoints: Endpoint[]; reRegistration: boolean },
    from: Endpoint,
    keyFresh: boolean,
  ): Promise<Buffer | null> {
    if (header.txid === s.regPending) {
      this.counters.inc('register.repeat');
      return null;
    }
    if (header.txid === s.regDone && s.regHead && s.observed && endpointsEqual(s.observed, from)) {
      this.counters.inc('register.repeat');
      return this.registered(s, s.regHead, header, behindNat(req.endpoints, from), from);
    }
    s.regPending = header.txid;
    try {
      // A registration re-reads the Common Key (an administrator may have revoked the node since we cached it), unless
      // it was read from the store for this very message (a node's first message here).
      let key: CommonKeyRecord | null = null;
      let node = s.node ?? null;
      if (!keyFresh || !node) [key, node] = await Promise.all([keyFresh ? null : this.c.store.getCommonKey(s.nodeId), this.nodeOf(s)]);
      if (!keyFresh && (!key || !key.key.equals(s.keyBytes) || key.expiresAt <= this.now())) {
        this.sessions.delete(s.nodeId);
        this.counters.inc('refused.expired-key');
        return this.nack(s, header, Status.CommonKeyExpired, 'Common Key no longer valid: log in at the AS again');
      }
      if (!node) return this.nack(s, header, Status.NotRegistered, 'node no longer exists');
      const nat = behindNat(req.endpoints, from);
      const keepaliveSec = this.keepaliveSec(nat);
      const now = this.now();
      await this.c.store.upsertRegistration({
        nodeId: s.nodeId,
        reported: req.endpoints,
        observed: from,
        nat,
        keepaliveSec,
        registeredAt: now,
        lastSeen: now,
        lastSeq: s.guard.highest,
        ...(this.init.instanceId ? { nms: this.init.instanceId } : {}),
      });
      s.observed = from;
      s.regDone = header.txid;
      this.counters.inc(req.reRegistration ? 'register.re' : 'register.ok');
      // A fresh registration (a started or restarted node) gets the current revocation list, after this answer.
      if (!req.reRegistration) this.queueRevocations(s.nodeId, from);
      // One line a registration at debug level only (a `registrations` summary at info: logSummaries).
      this.c.logger.debug('node registered', { node: node.name, udpAddr: `${from.address}:${from.port}`, nat, re: req.reRegistration });
      s.regHead ??= encodeRegistrationHead({ nodeId: node.id, vip4: node.vip4, vip6: node.vip6, fqdn: `${node.name}.${this.init.domain}` });
      return this.registered(s, s.regHead, header, nat, from);
    } finally {
      if (s.regPending === header.txid) s.regPending = -1;
    }
  }

  /** NATed nodes keep alive more often (their NAT's mapping must not expire). */
  private keepaliveSec(nat: boolean): number {
    return nat ? (this.init.keepaliveNatSec ?? KEEPALIVE_NAT_SEC) : (this.init.keepaliveOpenSec ?? KEEPALIVE_OPEN_SEC);
  }

  /** The RegistrationResponse to a registration stored from `from`; `head` is the node's fixed fields (s.regHead). */
  private async registered(s: Session, head: Buffer, header: Header, nat: boolean, from: Endpoint): Promise<Buffer> {
    const rev = this.directory.rev;
    return this.reply(s, header, MessageType.RegistrationResponse, encodeRegistrationResponse(head, {
      observed: from,
      nat,
      keepaliveSec: this.keepaliveSec(nat),
      ...(this.probePort ? { probePort: this.probePort } : {}),
      ...(rev !== null ? { directoryRev: rev } : await this.directoryRevQuiet()),
    }));
  }

  /** Sends the revocation list to a freshly registered node REVOCATIONS_AFTER_MS later: one timer for all of them. */
  private queueRevocations(nodeId: number, to: Endpoint): void {
    this.revocationQueue.push({ nodeId, to, at: performance.now() + REVOCATIONS_AFTER_MS }); // the timer's clock, not this.now (tests fake it)
    if (!this.revocationTimer) this.armRevocations(REVOCATIONS_AFTER_MS);
  }

  private armRevocations(ms: number): void {
    this.revocationTimer = setTimeout(() => {
      this.revocationTimer = null;
      const now = performance.now();
      const q = this.revocationQueue;
      let i = 0;
      while (i < q.length && q[i]!.at <= now) i++;
      const due = q.splice(0, i);
      for (const r of due) void this.policy.sendRevocations(r.nodeId, r.to);
      if (q.length > 0) this.armRevocations(Math.max(1, q[0]!.at - now));
    }, ms);
    this.revocationTimer.unref();
  }

  /**
   * A Keepalive on the probe port, sent once after registering: the same public address and port as the
   * registration means the node's NAT maps endpoint-independently (it kept the mapping for a new destination
   * port); another port means a mapping per destination (punching cannot work from there). Answered with what
   * we saw; the registration itself (observed endpoint, liveness) is left alone.
   */
  private async probe(s: Session, header: Header, from: Endpoint): Promise<Buffer> {
    const reg = await this.c.store.getRegistration(s.nodeId);
    if (!reg) return this.nack(s, header, Status.NotRegistered, 'not registered');
    if (reg.nat) {
      const mapping = endpointsEqual(reg.observed, from) ? 'independent' : 'dependent';
      await this.c.store.setRegistrationMapping(s.nodeId, mapping);
      this.counters.inc(`probe.${mapping}`);
    } else {
      this.counters.inc('probe.open');
    }
    return this.reply(s, header, MessageType.KeepaliveAck, encodeBody(MessageType.KeepaliveAck, { observed: from }));
  }

  private async keepalive(s: Session, header: Header, from: Endpoint): Promise<Buffer> {
    try {
      // The common case in one write: still registered here, at the address we last saw it at.
      if (s.observed && endpointsEqual(s.observed, from) && (await this.c.store.touchRegistrationIf(s.nodeId, this.now(), s.guard.highest, from, this.init.instanceId ?? null))) {
        this.counters.inc('keepalive.ok');
        return this.reply(s, header, MessageType.KeepaliveAck, encodeBody(MessageType.KeepaliveAck, { observed: from, ...this.knownDirectoryRev() }));
      }
      const reg = await this.c.store.getRegistration(s.nodeId);
      if (!reg) return this.nack(s, header, Status.NotRegistered, 'not registered');
      if (!endpointsEqual(reg.observed, from)) {
        // NAT rebinding or a move: the push path is now `from`. NAT state may change, so ask for a re-registration.
        this.counters.inc('keepalive.moved');
        return this.nack(s, header, Status.NotRegistered, 'observed address changed: register again');
      }
      const me = this.init.instanceId;
      if (me && reg.nms !== me) {
        // The node keeps alive here but its registration names another instance (ours before a restart, or one it
        // left): it is ours now, so Route Directions for it are pushed from here.
        await this.c.store.upsertRegistration({ ...reg, lastSeen: this.now(), lastSeq: s.guard.highest, observed: from, nms: me });
        this.counters.inc('keepalive.claimed');
      } else {
        await this.c.store.touchRegistration(s.nodeId, this.now(), s.guard.highest, from);
      }
    } catch (err) {
      // The store is unreachable: a node we know (its session and Common Key are cached, it was seen here at this
      // very address) is answered from memory, so it keeps its NAT mapping and does not churn; liveness and its
      // sequence floor are saved again with the first keepalive after the store is back.
      if (!(err instanceof StoreError && err.code === 'ERR_STORE_UNAVAILABLE') || !s.observed || !endpointsEqual(s.observed, from)) throw err;
      this.counters.inc('keepalive.store-down');
      return this.reply(s, header, MessageType.KeepaliveAck, encodeBody(MessageType.KeepaliveAck, { observed: from }));
    }
    s.observed = from;
    this.counters.inc('keepalive.ok');
    return this.reply(s, header, MessageType.KeepaliveAck, encodeBody(MessageType.KeepaliveAck, { observed: from, ...this.knownDirectoryRev() }));
  }

  /**
   * `node netcheck`: a probe ticket for each live TRS (RelayAllocator.tickets: the store's heartbeats), so a node with
   * no relayed path can still time every TRS. Drawn on the node's route-selection budget (it reads the store).
   */
  private async relayTickets(s: Session, header: Header): Promise<Buffer> {
    if (!this.directionBudgets.take(s.nodeId, this.now())) {
      this.counters.inc('tickets.rate-limited');
      return this.nack(s, header, Status.NoRoute, 'too many ticket requests: slow down');
    }
    const tickets = (await this.c.relays?.tickets?.(s.nodeId)) ?? [];
    this.counters.inc('tickets.issued', tickets.length);
    return this.reply(s, header, MessageType.RelayTicketResponse, encodeBody(MessageType.RelayTicketResponse, { tickets: tickets.slice(0, MAX_RELAY_TICKETS).map(encodeRelayTicket) }));
  }

  private async direction(s: Session, header: Header, req: DirectionRequest): Promise<Buffer | null> {
    if (tracing) trace('nms.request', `${s.nodeId}:${header.txid}`);
    const slots = (s.directing ??= new DirectionSlots());
    if (slots.has(header.txid)) return null; // a retransmission: the first one gets the answer
    if (!this.c.send) return this.nack(s, header, Status.NoRoute, 'route selection is disabled on this NMS');
    if (slots.busy >= DIRECTIONS_IN_FLIGHT || !this.directionBudgets.take(s.nodeId, this.now())) {
      this.counters.inc('route.refused.rate-limited');
      return this.nack(s, header, Status.NoRoute, 'too many route selections: slow down');
    }
    // The node's record is cached in its session after the first read: then one read here, not two.
    const [node, reg] = s.node ? [s.node, await this.c.store.getRegistration(s.nodeId)] : await Promise.all([this.nodeOf(s), this.c.store.getRegistration(s.nodeId)]);
    if (!node || !reg) return this.nack(s, header, Status.NotRegistered, 'register before asking for routes');
    // Looked at again: a retransmission, or other selections of the node, may have come in during the reads.
    if (slots.has(header.txid)) return null;
    if (!slots.take(header.txid)) {
      this.counters.inc('route.refused.rate-limited');
      return this.nack(s, header, Status.NoRoute, 'too many route selections: slow down');
    }
    const t0 = this.now();
    try {
      const out = await this.routes.select(node, reg, req);
      if (!out.ok) {
        this.counters.inc(`route.refused.${out.status}`);
        this.c.logger.info('route refused', { node: node.name, status: out.status, reason: out.reason });
        return this.nack(s, header, out.status === 'unknown-peer' || out.status === 'policy' ? Status.UnknownPeer : Status.NoRoute, out.reason);
      }
      this.counters.inc('route.ok');
      this.counters.inc(ROUTE_COUNTER[out.path]);
      this.c.logger.info('route selected', { node: node.name, peer: out.responder.name, path: out.path, why: out.why, ms: this.now() - t0 });
      if (tracing) trace('nms.answer', out.toInitiator.pathId, `${s.nodeId}:${header.txid}`);
      return this.reply(s, header, MessageType.RouteDirectionInitiator, encodeBodyTransient(MessageType.RouteDirectionInitiator, out.toInitiator));
    } finally {
      slots.release(header.txid);
    }
  }

  /** Seals a Route Direction for the responder with its own Common Key and sends it to its observed address. */
  private push(responderId: number, to: Endpoint, body: RouteDirection): void {
    const cached = this.sessions.get(responderId);
    if (cached) this.sendPush(cached, to, body); // the common case: no promise in between
    else void this.session(responderId, false).then((rs) => rs && this.sendPush(rs, to, body));
  }

  private sendPush(rs: Session, to: Endpoint, body: RouteDirection): void {
    if (!this.c.send) return;
    this.pushTxid = (this.pushTxid % 0x7fffffff) + 1;
    const frame = sealFrame(rs.keys.down, { type: MessageType.RouteDirectionResponder, txid: this.pushTxid, seq: this.nextSeq(), id: BigInt(rs.nodeId) }, encodeBodyTransient(MessageType.RouteDirectionResponder, body));
    this.counters.inc('route.push');
    trace('nms.push', body.pathId);
    this.c.send(frame, to);
  }

  /**
   * A session with every field set in one literal: all sessions share one shape, with no out-of-object property store
   * for a field set later (one object less per node). `from`: the session it replaces (re-keyed), whose node record,
   * RegistrationResponse head and selections in progress it keeps.
   */
  private newSession(nodeId: number, key: Buffer, expiresAt: number, floor: bigint, node: NodeRecord | undefined, from: Session | null): Session {
    const keys = new ChannelKeys(key, {}, 'cloud');
    const guard = new ReplayGuard(floor, this.now);
    // regPending/regDone are not carried over: a node that logged in again numbers its requests afresh.
    return { nodeId, keyBytes: key, keys, expiresAt, guard, observed: undefined, fresh: true, node, regHead: from?.regHead, directing: from?.directing, regPending: -1, regDone: -1 };
  }

  private async session(nodeId: number, reload: boolean): Promise<Session | null> {
    const cached = this.sessions.get(nodeId);
    if (cached && !reload) return cached;
    if (!cached) {
      // First contact: key, node and replay floor in one read.
      const first = await this.c.store.getNodeSession(nodeId);
      if (!first) return null;
      const raced = this.sessions.get(nodeId);
      if (raced && raced.keyBytes.equals(first.key.key)) return raced;
      const s = this.newSession(nodeId, first.key.key, first.key.expiresAt, first.lastSeq ?? 0n, first.node, null);
      this.sessions.set(nodeId, s);
      return s;
    }
    // A reload (the cached key did not open a frame): the node may have logged in again.
    const rec = await this.c.store.getCommonKey(nodeId);
    if (!rec) return null;
    if (cached.keyBytes.equals(rec.key)) return cached;
    const s = this.newSession(nodeId, rec.key, rec.expiresAt, cached.guard.highest, cached.node, cached);
    this.sessions.set(nodeId, s);
    return s;
  }

  /** The node's record, read from the store once per node (ids are never reused and a node's name and addresses never change). */
  private async nodeOf(s: Session): Promise<NodeRecord | null> {
    if (s.node) return s.node;
    const node = await this.c.store.getNodeById(s.nodeId);
    if (node) s.node = node;
    return node;
  }

  private reply(s: Session, req: Header, type: MessageType, body: Buffer, status: number = Status.Ok): Buffer {
    return sealFrame(s.keys.down, { type, status, txid: req.txid, seq: this.nextSeq(), id: BigInt(s.nodeId) }, body);
  }

  private nack(s: Session, req: Header, status: Status, reason: string): Buffer {
    return this.reply(s, req, MessageType.Nack, encodeBody(MessageType.Nack, { reason: `${STATUS_CODES[status]}: ${reason}` }), status);
  }

  private drop(reason: string): null {
    this.counters.inc(`refused.${reason}`);
    return null;
  }
}
