// Peers of this node: route selection through the NMS, tunnel establishment with each peer, and the sessions
// installed in the data plane. Both ways in: a DNS query or first packet (we initiate), or a Route Direction
// pushed by the NMS (we respond).
//
//   initiator: resolve(name) / miss(vip) ─► DirectionRequest ─► RouteDirection ─► TunnelRequest ─► TunnelResponse ─► install
//   responder: pushed RouteDirection ─► check the certificate, expect the path ─► Confirmation ─► TunnelRequest ─► answer, install

import { SeqCounter } from '../channel/sequence.js';
import { openPathProbe, openPathProbeAck, pathProbeKeys, sealPathProbe, sealPathProbeAck } from '../channel/path-probe.js';
import type { ChannelKeys } from '../channel/sealed.js';
import { HandshakeReplayCache, MAX_PENDING_REQUESTS, PathHandshake, preverifyPeerCertificate, warmSigningKey, type LocalIdentity, type SessionKeys, type TrustAnchors } from '../crypto/handshake.js';
import { REJECT_AFTER_MS, REKEY_AFTER_MS, sealUntil } from '../crypto/data-session.js';
import { MAX_PEER_SLOTS } from './dataplane/stats.js';
import { Budgets } from '../util/budget.js';
import { serialOf, subjectAltNamesRaw } from '../crypto/index.js';
import { formatIp, parseIp } from '../protocol/ip.js';
import { MessageType, PathType } from '../protocol/constants.js';
import { endpointKey, formatEndpoint, type Endpoint } from '../protocol/endpoint.js';
import { splitFrame } from '../protocol/header.js';
import type { PeerReport, PolicyEntry, RouteDirection } from '../protocol/messages.js';
import { Counters } from '../util/counters.js';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { MobilityPeer, PeerDirectory } from './mobility.js';
import { RevocationList } from './revocations.js';
import { trace } from '../util/trace.js';

/** Tunable: waits between TunnelRequest retransmissions (ms); the tunnel attempt fails after the last. */
export const TUNNEL_RETRANSMIT_MS = [150, 300, 600, 1200] as const;
/** Tunable: longest wait between rekey attempts on a path whose rekeys keep timing out (ms). */
export const REKEY_RETRY_MAX_MS = 60_000;
/** Tunable: TunnelRequest waits on punched paths (ms): ~1.5 s in all, then the initiator asks for a relay. */
export const PUNCH_RETRANSMIT_MS = [150, 300, 450, 600] as const;
// Each attempt sends at most MAX_PENDING_REQUESTS requests: the initiator remembers that many, and the responder's
// data plane keeps a session for each of that many answers (handshake.ts).
for (const schedule of [TUNNEL_RETRANSMIT_MS, PUNCH_RETRANSMIT_MS]) {
  if (schedule.length > MAX_PENDING_REQUESTS) throw new Error('a TunnelRequest schedule is longer than MAX_PENDING_REQUESTS');
}
/** How long one handshake attempt retransmits (ms): the answers of one handshake are this close together. */
const RETRANSMIT_SPAN_MS = Math.max(...[TUNNEL_RETRANSMIT_MS, PUNCH_RETRANSMIT_MS].map((s) => s.reduce((a, b) => a + b, 0)));
/** Tunable: route selections running at once (distinct targets); more are refused and counted (route.busy). */
const MAX_INFLIGHT_ROUTES = 256;
/** Tunable: paths remembered per peer; the oldest one that carries nothing is forgotten (path.evicted). */
const MAX_PATHS_PER_PEER = 8;
/**
 * Tunable: TunnelRequests one path may have verified and answered per second (burst). An initiator sends at most
 * MAX_PENDING_REQUESTS per attempt and rekeys every few minutes; a peer flooding its path is cut off here, before the
 * signature check and X25519 work, and costs other peers nothing (`handshake.rate-limited`).
 */
const HANDSHAKE_RATE = { perSec: 5, burst: 20 } as const;
/** Tunable: paths with a handshake budget tracked at once (bounded memory). */
const HANDSHAKE_BUDGET_PATHS = 8192;
/** Tunable: PathProbes one path answers per second (burst): a replayed probe draws at most this many acks. */
const PROBE_ACK_RATE = { perSec: 10, burst: 20 } as const;
/** Tunable: probes of ours awaiting an ack, per path (the oldest is forgotten). */
const MAX_OUTSTANDING_PROBES = 16;
/** Tunable: accepted requests remembered per path (a handful per rekey fits; each path has its own floor). */
const PATH_REPLAY_ENTRIES = 64;
/**
 * Tunable: TunnelRequests held for paths we have not heard of yet. The NMS answers the initiator of a direct path
 * beside its push to us, so the initiator's first request can arrive before the push: it is held (copied, unopened)
 * and handled when the push comes. Anyone can send such datagrams, so the holding is bounded: this many paths (the
 * oldest is forgotten), EARLY_PER_PATH requests each, for EARLY_HOLD_MS; a request lost here is retransmitted.
 */
const EARLY_PATHS = 32;
const EARLY_PER_PATH = 2;
const EARLY_HOLD_MS = 2000;
/** Largest datagram held (a TunnelRequest with a certificate chain is ~1.2 kB; wider ones are not ours). */
const EARLY_MAX_BYTES = 4096;
/** Tunable: how many of the peer's endpoints a TunnelRequest is sent to at once. */
const MAX_PROBE_ENDPOINTS = 4;
/** Tunable: a relayed path that replaced a failed punch tries the punch again after this long, then twice as long… */
export const PUNCH_RETRY_MS = 30_000;
/** Tunable: … up to this long between punch retries. */
const PUNCH_RETRY_MAX_MS = 600_000;
/** Tunable: relayed paths are watched this often for a dead TRS (we send, nothing comes back). */
const RELAY_WATCH_MS = 500;
/**
 * Tunable: a peer whose traffic stood still this long may give its data-plane slot to a new peer when every slot is
 * taken (the least recently used goes first). A peer in use is never evicted: the new one is refused instead.
 */
export const PEER_EVICT_IDLE_MS = 120_000;
/** Traffic (each way) below this between two looks is keepalive noise (ours or the peer's, and its answer), not use. */
const IDLE_NOISE_BYTES = 256;
/**
 * Tunable: sending on a direct or punched path while nothing came back for this long makes us ask the peer with
 * PathProbes whether it still holds the path (a peer that restarted, or evicted us to free a slot, drops what we
 * send and would otherwise be cut off until our session expires, minutes later). WireGuard gives up after 15 s too.
 */
export const SILENT_PATH_MS = 15_000;
/** Tunable: PathProbes sent to a silent path's peer (one per wait) before we ask the NMS for a new route. */
const SILENT_PROBES = 3;
/** Tunable: the wait after each of them: this, plus 1.25 handshake times (about round trips) of the path. */
const SILENT_PROBE_WAIT_MS = 1000;
/** Tunable: sending without receiving anything for this long on a relayed path makes us check the TRS. */
const RELAY_SILENT_MS = 1000;
/** Tunable: an idle path through a NAT gets a keepalive this often (Linux drops unreplied UDP state after 30 s,
 *  replied after 120 s; home routers often sooner). */
export const PATH_KEEPALIVE_MS = 20_000;

/** What a route request asks for besides its target (relay fallback and TRS failover). */
export interface RouteTarget {
  targetFqdn?: string;
  targetVip?: string;
  relayOnly?: boolean;
  avoidRelay?: Endpoint;
  noRelay?: boolean;
}

/** What the peer manager needs from the NMS client. */
export interface RouteSource {
  direction(target: RouteTarget): Promise<RouteDirection>;
  confirm(pathId: bigint, accepted: boolean): Promise<void>;
}

/** What it needs from the data plane. */
export interface SessionSink {
  send(datagram: Buffer, to: Endpoint): void;
  install(route: { slot: number; vip4: string | null; vip6: string | null; endpoint: Endpoint }, keys: SessionKeys, receiveOnly?: boolean, reply?: { datagram: Buffer; to: Endpoint }): Promise<void>;
  /** install() sends its `reply` itself once the session is in (else the caller sends it after install resolves). */
  readonly installSends?: boolean;
  peerStats(slot: number): { rxBytes: number; txBytes: number; pmtu?: number };
  /** Send on the session installed last for `slot` now (a new path replaced the old one). */
  promote?(slot: number): void;
  /** Sends one small packet through the tunnel to the peer (sealed like any data): keeps NAT mappings on the way open. */
  keepalive?(peer: { vip4: string; vip6: string }): void;
  /** Mobility: send this peer's capsules to a new endpoint, same session. */
  setEndpoint?(slot: number, endpoint: Endpoint): void;
  /** Forget the peer in `slot` (sessions, routes, counters): the slot will serve another peer. */
  remove?(slot: number): void;
  /** The policy: the ports the peer in `slot` may open flows to us on (null: everything). */
  setFilter?(slot: number, allowIn: string | null): void;
  /** The peer in `slot` was revoked: nothing from it or to it passes any more. */
  blockPeer?(slot: number): void;
}

/** What it needs to use relayed paths (src/node/relay.ts RelayBinder). */
export interface PathRelay {
  bind(pathId: bigint, tempKey: Buffer, relay: Endpoint, opts?: { waitPeer?: boolean }): Promise<{ peerBound: boolean } | null>;
  check(pathId: bigint): Promise<boolean>;
  forget(pathId: bigint): void;
}

export interface PeerStatus {
  name: string;
  fqdn: string;
  vip4: string;
  vip6: string;
  path: 'direct' | 'punched' | 'relayed';
  relay: string | null;
  endpoint: string | null;
  rxBytes: number;
  txBytes: number;
  /** Largest inner packet the tunnel carries whole to this peer now (path MTU less the tunnel's overhead); null without a data plane. */
  pmtu: number | null;
  lastHandshake: string | null;
  state: 'connecting' | 'established';
  /** Our last route selection for this peer (Direction Request → Route Direction), ms; null if the peer asked. */
  routeSelectionMs: number | null;
  /** Our last tunnel establishment (first Tunnel Request → session installed), ms. */
  tunnelMs: number | null;
  /** The ports this peer may open new flows to us on, as the NMS said ("*" = all); null: no policy information. */
  allowed: string[] | null;
  /** Present (true) once the NMS said the peer was revoked: its tunnel carries nothing any more. */
  revoked?: boolean;
  /** Serial (lowercase hex) of the certificate the peer presented in the last handshake (a renewed one shows here). */
  certSerial: string | null;
}

interface Path {
  id: bigint;
  rd: RouteDirection;
  hs: PathHandshake;
  endpoint: Endpoint | null;
  keys: SessionKeys | null;
  /** Mobility: the keys before the last rekey (still open endpoint updates sent under them). */
  prevKeys: SessionKeys | null;
  /** Mobility: the peer's endpoints as its last endpoint update listed them (else the Route Direction's). */
  candidates: Endpoint[] | null;
  /** performance.now() when we sent the first Tunnel Request of the current handshake. */
  handshakeStart: number | null;
  /** Where the peer's own TunnelRequest came from while ours was winning the tie-break (its NAT's mapping toward us). */
  learned: Endpoint | null;
  /** Its TRS stopped answering: never preferred again. */
  dead: boolean;
  /** Rekeys in a row that timed out, and when the next may start (back-off; see rekeyDue). */
  rekeyFailures: number;
  rekeyRetryAt: number;
  /** Sessions we answered on this path, newest last (≤ MAX_PENDING_REQUESTS): the data plane may be using any. */
  answered: SessionKeys[];
  /**
   * Probing unverified endpoints (channel/path-probe.ts): the keys (ours and the peer's), our probes awaiting an ack
   * (seq → endpoint probed), endpoints the peer answered at, and the TunnelRequest being sent (for an endpoint that
   * answers mid-attempt).
   */
  probe: { mine: ChannelKeys; theirs: ChannelKeys; outstanding: Map<bigint, Endpoint>; verified: Set<string>; request: Buffer | null; answered: (() => void) | null } | null;
}

interface Peer {
  nodeId: number;
  name: string;
  fqdn: string;
  vip4: string;
  vip6: string;
  slot: number;
  paths: Map<bigint, Path>;
  /** The path whose session carries our traffic. */
  active: Path | null;
  lastHandshake: number | null;
  /** Serial (lowercase hex) of the certificate the peer presented in its last handshake. */
  certSerial: string | null;
  connecting: Promise<void> | null;
  routeSelectionMs: number | null;
  tunnelMs: number | null;
  /** Relay watch: traffic counters at the last look, and when rx last grew. */
  watch: { rx: number; tx: number; rxAt: number; checking: boolean };
  /** Silent-path watch: traffic counters at the last look, since when we send without hearing back (null: we
   *  heard something since our last send), and whether probes are out. */
  silence: { rx: number; tx: number; since: number | null; checking: boolean };
  /** Path keepalive: traffic counters at the last look, and when either last moved. */
  idle: { rx: number; tx: number; at: number };
  /** Slot reuse: traffic counters at the last look, and when traffic beyond keepalive noise last moved. */
  use: { rx: number; tx: number; at: number };
  /** A punch failed and a relay carries the traffic: when to try punching again, and the wait after that. */
  punchRetry: { at: number; waitMs: number; running: boolean } | null;
  /** The policy's `allowIn` of the newest Route Direction or PolicyUpdate (what the peer may open to us); null: none given. */
  allowIn: string | null;
  /** A PolicyUpdate said no rule connects us any more: our DNS stops answering for it (the NMS decides again). */
  blocked: boolean;
  /** A PolicyUpdate said its certificates were revoked: its tunnel carries nothing and its handshakes are refused. */
  revoked: boolean;
}

export interface PeerManagerComponents {
  local: () => LocalIdentity;
  anchors: () => TrustAnchors;
  routes: () => RouteSource | null;
  sink: () => SessionSink | null;
  logger: Logger;
  now?: () => number;
  /** Either end re-handshakes after its session is this old. @default REKEY_AFTER_MS */
  rekeyAfterMs?: number;
  /** Hard age limit of a session: the data plane stops sealing with it then (and opening a little later).
   *  @default REJECT_AFTER_MS */
  rejectAfterMs?: number;
  /** Relayed paths; without it they are refused. */
  relay?: PathRelay;
  /** True while our registration says we are behind NAT (then we also send on direct paths pushed to us). */
  behindNat?: () => boolean;
  /** Idle paths through a NAT get a keepalive this often. @default PATH_KEEPALIVE_MS */
  pathKeepaliveMs?: number;
  /** @default SILENT_PATH_MS */
  silentPathMs?: number;
  /** First wait before a relayed path that replaced a failed punch tries the punch again. @default PUNCH_RETRY_MS */
  punchRetryMs?: number;
  /** Mobility: a path's session was established (mobility tells the peer our endpoints over it). */
  onEstablished?: (pathId: bigint) => void;
  /** The peers the NMS listed for us (node/directory.ts): a listed name is answered at once, route selection beside it. */
  directory?: { lookup(fqdn: string): { vip4: string; vip6: string } | null; forget?(fqdn: string): void };
  /** The revocation list (persisted by the lifecycle in the state directory); absent: a new one in memory. */
  revocations?: RevocationList;
}

/** Tunable: two paths to one peer established closer together than this count as a simultaneous initiation. */
const SIMULTANEOUS_MS = 2000;

/**
 * The name and virtual addresses a Route Direction gives a peer must be the ones its certificate carries (the AS
 * puts the FQDN in a dNSName and each virtual address in an iPAddress SAN): the NMS cannot make us route another
 * node's addresses to this peer. Certificates issued before the AS added address SANs carry none; their addresses
 * are taken from the NMS as before (they renew into checked ones).
 */
function checkPeerAddresses(rd: Pick<RouteDirection, 'peerCertificate' | 'peerFqdn' | 'peerVip4' | 'peerVip6'>): void {
  const san = subjectAltNamesRaw(rd.peerCertificate);
  if (!san.dns.includes(rd.peerFqdn.toLowerCase().replace(/\.$/, ''))) throw new Error(`certificate is for ${san.dns.join(', ') || 'no name'}, not ${rd.peerFqdn}`);
  if (san.ips.length === 0) return;
  for (const v of [rd.peerVip4, rd.peerVip6]) {
    if (!v) continue;
    const raw = parseIp(v);
    if (!raw || !san.ips.some((h) => h.equals(raw))) throw new Error(`certificate does not carry ${v} (it holds ${san.ips.map((b) => formatIp(b)).join(', ')})`);
  }
}

/** Two spellings of one IP address. */
function sameAddress(a: string, b: string): boolean {
  const x = parseIp(a);
  const y = parseIp(b);
  return x !== null && x !== undefined && y !== null && y !== undefined && x.equals(y);
}

export { MAX_REVOKED_SERIALS_HELD } from './revocations.js';

export class PeerManager implements PeerDirectory {
  readonly counters = new Counters();
  private readonly peers = new Map<number, Peer>();
  /**
   * The revocation list (revocations.ts): serials of certificates the NMS said were revoked. The handshake's trust
   * anchors consult it (lifecycle.ts: isRevoked), so a certificate on it is refused in every TunnelRequest/Response
   * and Route Direction, whatever the slot's state. Kept in the state directory when the lifecycle gives a file.
   */
  private readonly revokedSerials: RevocationList;
  /** Our identity for the paths' handshakes: always the current certificate (see the constructor). */
  private readonly localView: LocalIdentity;
  private readonly byPath = new Map<bigint, { peer: Peer; path: Path }>();
  /** TunnelRequests for paths not pushed to us yet, by path id (holdEarly). */
  private readonly early = new Map<bigint, { until: number; frames: { msg: Buffer; from: Endpoint }[] }>();
  /** TunnelRequests each path may have verified (signature, X25519, answer), before any of that work. */
  private readonly handshakeBudget = new Budgets<bigint>(HANDSHAKE_RATE, HANDSHAKE_BUDGET_PATHS);
  /** PathProbes each path may answer. */
  private readonly probeBudget = new Budgets<bigint>(PROBE_ACK_RATE, HANDSHAKE_BUDGET_PATHS);
  private readonly seq = new SeqCounter();
  private readonly inflight = new Map<string, Promise<Peer | null>>();
  private nextSlot = 0;
  /** Slots of evicted peers, free for new ones. */
  private readonly freeSlots: number[] = [];
  private txid = 1;
  private rekeyTimer: NodeJS.Timeout | null = null;
  private watchTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly c: PeerManagerComponents) {
    this.revokedSerials = c.revocations ?? new RevocationList();
    // Paths live longer than a certificate: each handshake reads our identity as it is now (a renewal replaced it).
    this.localView = {
      get nodeId() {
        return c.local().nodeId;
      },
      get certDer() {
        return c.local().certDer;
      },
      get chainDer() {
        return c.local().chainDer;
      },
      get privateKeyPem() {
        return c.local().privateKeyPem;
      },
    };
    this.rekeyTimer = setInterval(() => this.rekeyDue(), this.rekeyTickMs());
    this.rekeyTimer.unref();
    this.watchTimer = setInterval(() => this.watchRelays(), RELAY_WATCH_MS);
    this.watchTimer.unref();
  }

  /**
   * At start: our signing key parsed for the handshakes to come (the first one answered would pay ~1 ms for it), and
   * the address check of a pushed route run once on our own certificate, so the first real push runs compiled code
   * (each responder of bench/first-contact is a fresh process: cold, the check cost 0.8 ms of CPU there).
   */
  warmUp(): void {
    warmSigningKey(this.localView);
    try {
      const own = this.localView.certDer;
      const san = subjectAltNamesRaw(own);
      const v4 = san.ips.find((b) => b.length === 4);
      const v6 = san.ips.find((b) => b.length === 16);
      checkPeerAddresses({ peerCertificate: own, peerFqdn: san.dns[0] ?? '', peerVip4: v4 ? formatIp(v4) : '', peerVip6: v6 ? formatIp(v6) : '' });
    } catch {
      // Our own certificate not matching itself is certificate renewal's business, not the warm-up's.
    }
  }

  /** A handshake follow-up failed (an install or a send that threw): counted and logged, never unhandled. */
  private failed(what: string, err: unknown): void {
    this.counters.inc(`handshake.${what}-failed`);
    this.c.logger.warn(`tunnel handshake ${what} failed`, { err: describeError(err) });
  }

  close(): void {
    this.closed = true;
    if (this.rekeyTimer) clearInterval(this.rekeyTimer);
    if (this.watchTimer) clearInterval(this.watchTimer);
  }

  /** DNS: the virtual addresses of `name` (a label under our domain); starts route selection and the tunnel. */
  async resolve(fqdn: string): Promise<{ vip4: string; vip6: string } | null> {
    const known = [...this.peers.values()].find((p) => p.fqdn === fqdn && !p.blocked);
    if (known) {
      if (!known.active && !known.connecting) void this.connect({ targetFqdn: fqdn });
      return { vip4: known.vip4, vip6: known.vip6 };
    }
    // Listed in the directory (and not a peer the policy or a revocation closed): answered now, the route and the
    // tunnel are set up beside the answer, usually before the application's first packet.
    const listed = [...this.peers.values()].some((p) => p.fqdn === fqdn) ? null : this.c.directory?.lookup(fqdn);
    if (listed) {
      this.counters.inc('dns.from-directory');
      // Started right after the answer has gone out (the answer is sent in this turn's microtasks; setImmediate runs
      // after them): sealing and sending the Direction Request first would delay the answer by about a millisecond.
      setImmediate(() => void this.connect({ targetFqdn: fqdn }));
      return { vip4: listed.vip4, vip6: listed.vip6 };
    }
    const peer = await this.connect({ targetFqdn: fqdn });
    return peer ? { vip4: peer.vip4, vip6: peer.vip6 } : null;
  }

  /**
   * A packet to a virtual address the data plane has no session for: the first one, or the active session reached
   * its age limit (the engine stops sealing with it). Then a new handshake on the same path, now: the packets wait
   * in the data plane until it is installed.
   */
  miss(vip: string): void {
    const known = [...this.peers.values()].find((p) => p.vip4 === vip || p.vip6 === vip);
    if (known?.connecting) return;
    if (known?.active) {
      if (!this.pastLimit(known.active)) return;
      this.counters.inc('rekey.expired');
      this.rekey(known, known.active);
      return;
    }
    void this.connect({ targetVip: vip });
  }

  /** The hard age limit (ms). */
  private rejectAfterMs(): number {
    return this.c.rejectAfterMs ?? REJECT_AFTER_MS;
  }

  /**
   * True when the path's session is (about to be) past the limit: a miss then means the engine refused it. As
   * responder the data plane may be using any session answered in the last handshake (the initiator completes with
   * whichever response reaches it first), so the earliest of those counts.
   */
  private pastLimit(path: Path): boolean {
    const keys = path.keys ?? path.prevKeys;
    if (!keys) return true;
    let until = sealUntil(keys);
    for (const k of path.answered) if (k.establishedAt >= keys.establishedAt - RETRANSMIT_SPAN_MS) until = Math.min(until, sealUntil(k));
    const margin = Math.min(1000, this.rejectAfterMs() / 4);
    return (this.c.now ?? Date.now)() >= until - margin;
  }

  /**
   * Route selection, then (without waiting) tunnel establishment. Resolves once the route is known, so a DNS
   * answer is not held up by the handshake; concurrent calls for the same target share one selection.
   */
  private connect(target: RouteTarget): Promise<Peer | null> {
    const key = target.targetFqdn ?? target.targetVip!;
    const running = this.inflight.get(key);
    if (running) return running;
    if (this.inflight.size >= MAX_INFLIGHT_ROUTES) {
      this.counters.inc('route.busy');
      return Promise.resolve(null);
    }
    const p = this.selectRoute(target).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private async selectRoute(target: RouteTarget): Promise<Peer | null> {
    const routes = this.c.routes();
    if (!routes) return null;
    const t0 = performance.now();
    const asked = target.targetFqdn ?? target.targetVip!;
    trace('route.ask', asked);
    let rd: RouteDirection;
    try {
      rd = await routes.direction(target);
      trace('route.got', rd.pathId, asked);
    } catch (err) {
      this.counters.inc('route.failed');
      this.c.logger.info('route selection failed', { peer: target.targetFqdn ?? target.targetVip, err: describeError(err) });
      return null;
    }
    this.counters.inc('route.ok');
    const peer = this.adopt(rd);
    if (!peer) return null;
    const path = this.addPath(peer, rd);
    trace('path.added', rd.pathId);
    peer.routeSelectionMs = +(performance.now() - t0).toFixed(3);
    this.c.logger.debug('route selected', { peer: peer.name, path: pathName(rd), ms: peer.routeSelectionMs });
    peer.connecting = this.open(peer, path).finally(() => (peer.connecting = null));
    return peer;
  }

  /** Our side of a path the NMS gave us as initiator: bind to the TRS if relayed, handshake; a failed punch falls back to a relay. */
  private async open(peer: Peer, path: Path): Promise<void> {
    if (path.rd.pathType === PathType.Relayed) {
      if (!(await this.bindRelay(peer, path, true))) return;
    }
    const punched = path.rd.pathType === PathType.Punched;
    const ok = await this.initiate(peer, path, punched ? PUNCH_RETRANSMIT_MS : TUNNEL_RETRANSMIT_MS);
    if (!ok && punched && !peer.active) {
      this.counters.inc('punch.failed');
      this.c.logger.info('hole punch failed; asking for a relay', { peer: peer.name });
      const first = this.c.punchRetryMs ?? PUNCH_RETRY_MS;
      peer.punchRetry = { at: Date.now() + first, waitMs: first, running: false };
      void this.connect({ targetFqdn: peer.fqdn, relayOnly: true });
    }
  }

  /**
   * A relayed path that replaced a failed punch tries the punch again (a fresh path id; never another relay). When
   * it succeeds the punched path's session replaces the relayed one at both ends (the newer path wins), so the
   * traffic moves without breaking the session; when it fails the wait doubles.
   */
  private async retryPunch(peer: Peer): Promise<void> {
    const retry = peer.punchRetry!;
    const routes = this.c.routes();
    if (!routes) return;
    retry.running = true;
    let ok = false;
    try {
      const rd = await routes.direction({ targetFqdn: peer.fqdn, noRelay: true });
      if (this.adopt(rd) === peer) {
        const path = this.addPath(peer, rd);
        this.counters.inc('punch.retry');
        ok = await this.initiate(peer, path, rd.pathType === PathType.Punched ? PUNCH_RETRANSMIT_MS : TUNNEL_RETRANSMIT_MS);
        if (!ok && peer.active !== path) {
          // Forget the failed attempt (a late answer then counts as an unknown path).
          peer.paths.delete(path.id);
          this.byPath.delete(path.id);
        }
      }
    } catch (err) {
      this.c.logger.debug('punch retry: no route', { peer: peer.name, err: describeError(err) });
    } finally {
      retry.running = false;
    }
    if (ok) {
      peer.punchRetry = null;
      this.counters.inc('punch.upgraded');
      this.c.logger.info('moved from the relay to a punched path', { peer: peer.name });
    } else {
      retry.waitMs = Math.min(retry.waitMs * 2, PUNCH_RETRY_MAX_MS);
      retry.at = Date.now() + retry.waitMs;
    }
  }

  /** Binds our data socket to the path's TRS; false (and counted) when it is unusable. */
  private async bindRelay(peer: Peer, path: Path, waitPeer: boolean): Promise<boolean> {
    const relay = this.c.relay;
    if (!relay || !path.rd.relay || !path.rd.tempKey) {
      this.counters.inc('relay.unusable');
      this.c.logger.warn('relayed path without relay, Temp Key or binder', { peer: peer.name });
      return false;
    }
    const ack = await relay.bind(path.id, path.rd.tempKey, path.rd.relay, { waitPeer });
    if (!ack) {
      this.counters.inc('relay.bind-failed');
      return false;
    }
    this.counters.inc('relay.bound');
    return true;
  }

  /** Holds a TunnelRequest for a path not pushed to us yet (see EARLY_PATHS). */
  private holdEarly(pathId: bigint, msg: Buffer, from: Endpoint): void {
    const now = (this.c.now ?? Date.now)();
    // Expired holds go, then the oldest while full (maps keep insertion order, which is expiry order here).
    for (const [id, held] of this.early) {
      if (held.until > now && (this.early.size < EARLY_PATHS || this.early.has(pathId))) break;
      this.early.delete(id);
      this.counters.inc('handshake.early-dropped');
    }
    let held = this.early.get(pathId);
    if (!held) this.early.set(pathId, (held = { until: now + EARLY_HOLD_MS, frames: [] }));
    if (held.frames.length >= EARLY_PER_PATH) return this.counters.inc('handshake.early-dropped');
    held.frames.push({ msg: Buffer.from(msg), from: { ...from } });
    trace('hs.request.held', pathId);
    this.counters.inc('handshake.early-held');
  }

  /** The requests held for a path that has just been pushed to us, handled now as if they arrived now. */
  private releaseEarly(pathId: bigint): void {
    const held = this.early.get(pathId);
    if (!held) return;
    this.early.delete(pathId);
    if (held.until <= (this.c.now ?? Date.now)()) return this.counters.inc('handshake.early-dropped');
    for (const f of held.frames) {
      this.counters.inc('handshake.early-released');
      this.onDatagram(f.msg, f.from);
    }
  }

  /** A Route Direction pushed by the NMS: we are the responder. */
  async onRouteDirection(rd: RouteDirection): Promise<void> {
    trace('route.pushed', rd.pathId);
    const routes = this.c.routes();
    const peer = this.adopt(rd);
    if (!peer || !routes) {
      this.early.delete(rd.pathId);
      if (routes) await routes.confirm(rd.pathId, false).catch(() => {});
      return;
    }
    const path = this.addPath(peer, rd);
    this.counters.inc('route.pushed');
    // Relayed: bound before we confirm, so the initiator's first TunnelRequest finds both ends bound at the TRS.
    if (rd.pathType === PathType.Relayed && !(await this.bindRelay(peer, path, false))) {
      await routes.confirm(rd.pathId, false).catch(() => {});
      return;
    }
    trace('route.confirm', rd.pathId);
    this.releaseEarly(rd.pathId);
    await routes.confirm(rd.pathId, true).catch((err: unknown) => this.c.logger.warn('confirmation failed', { peer: peer.name, err: describeError(err) }));
    // Punched, or direct while we are behind NAT: we send too, so our NAT lets the initiator's packets in.
    const sends = rd.pathType === PathType.Punched || (rd.pathType === PathType.Direct && this.c.behindNat?.() === true);
    if (sends && path.hs.state === 'idle') {
      this.counters.inc('punch.responder');
      const run = this.initiate(peer, path, PUNCH_RETRANSMIT_MS);
      if (!peer.connecting) peer.connecting = run.then(() => {}).finally(() => (peer.connecting = null));
    }
  }

  /** Tunnel Request / Response datagrams. Returns false for anything else. */
  onDatagram(msg: Buffer, from: Endpoint): boolean {
    let f;
    try {
      f = splitFrame(msg);
    } catch {
      return false;
    }
    if (f.header.type === MessageType.PathProbe || f.header.type === MessageType.PathProbeAck) {
      this.onProbe(f.header.type, f.header.id, msg, from);
      return true;
    }
    if (f.header.type !== MessageType.TunnelRequest && f.header.type !== MessageType.TunnelResponse) return false;
    const entry = this.byPath.get(f.header.id);
    if (!entry) {
      if (f.header.type === MessageType.TunnelRequest && msg.length <= EARLY_MAX_BYTES) this.holdEarly(f.header.id, msg, from);
      else this.counters.inc('handshake.unknown-path');
      return true;
    }
    const { peer, path } = entry;
    if (peer.revoked) {
      this.counters.inc('handshake.refused-revoked');
      return true;
    }
    try {
      if (f.header.type === MessageType.TunnelRequest) {
        if (!this.handshakeBudget.take(path.id, Date.now())) {
          this.counters.inc('handshake.rate-limited');
          return true;
        }
        trace('hs.request.in', path.id);
        const answered = path.hs.onRequest(msg, this.seq.next());
        trace('hs.request.opened', path.id);
        if (!answered) {
          // Our own simultaneous request wins: send it where theirs came from too (their NAT's mapping toward us).
          if (path.rd.pathType !== PathType.Relayed) path.learned = from;
          return true;
        }
        // Answer only once our data plane can open the initiator's first capsule (the engine sends it as soon as
        // it installed the session, where it can).
        const sink = this.c.sink();
        const reply = { datagram: answered.response, to: from };
        const bySink = sink?.installSends === true;
        this.established(peer, path, answered.keys, from, bySink ? reply : undefined)
          .then(() => {
            if (!bySink) this.c.sink()?.send(answered.response, from);
          })
          .catch((err: unknown) => this.failed('answer', err));
      } else {
        trace('hs.response.in', path.id);
        const keys = path.hs.onResponse(msg);
        trace('hs.response.opened', path.id);
        if (keys) this.established(peer, path, keys, from).catch((err: unknown) => this.failed('establish', err));
      }
    } catch (err) {
      this.counters.inc('handshake.refused');
      // The same request sent to several of our addresses arrives more than once: not worth a warning.
      const replay = (err as { code?: string }).code === 'ERR_HANDSHAKE_REPLAY';
      this.c.logger[replay ? 'debug' : 'warn']('tunnel handshake refused', { peer: peer.name, udpAddr: formatEndpoint(from), err: describeError(err) });
    }
    return true;
  }

  /**
   * A PolicyUpdate pushed by the NMS (the policy or a tag changed): each listed peer's filter takes its new `allowIn`
   * at once. Sessions stay as they are (no handshake): a peer still allowed keeps its tunnel; one no rule connects
   * any more gets an empty list both ways (its new flows are dropped at both ends) and no DNS answer.
   */
  applyPolicy(entries: readonly PolicyEntry[]): void {
    // The serials first, all at once: written to the state directory before any tunnel is closed, so what took effect
    // is never lost to a crash. A failed write still closes the tunnels (the list then holds them in memory).
    try {
      const added = this.revokedSerials.add(entries.flatMap((e) => (e.revoked ? (e.revokedSerials ?? []) : [])));
      if (added.length > 0) this.counters.inc('revocation.serials', added.length);
    } catch (err) {
      this.counters.inc('revocation.save-failed');
      this.c.logger.warn('revocation list not saved (held in memory)', { err: describeError(err) });
    }
    for (const e of entries) {
      const peer = this.peers.get(e.peerNodeId);
      if (!peer) {
        this.counters.inc('policy.unknown-peer');
        continue;
      }
      try {
        if (e.revoked) {
          if (!peer.revoked) this.c.sink()?.blockPeer?.(peer.slot);
          peer.revoked = true;
          peer.blocked = true;
          this.counters.inc('policy.revoked');
          this.c.logger.info('peer revoked: tunnel closed', { peer: peer.name });
          continue;
        }
        if (peer.revoked) continue; // a revocation is final for this certificate; a re-enrolled node comes back by a new Route Direction
        if (e.allowIn !== peer.allowIn) this.c.sink()?.setFilter?.(peer.slot, e.allowIn);
        peer.allowIn = e.allowIn;
        peer.blocked = !e.connected;
        this.counters.inc('policy.applied');
      } catch (err) {
        this.counters.inc('policy.bad');
        this.c.logger.warn('policy update refused', { peer: peer.name, err: describeError(err) });
      }
    }
  }

  status(): PeerStatus[] {
    const sink = this.c.sink();
    return [...this.peers.values()].map((p) => {
      const st = sink?.peerStats(p.slot) ?? { rxBytes: 0, txBytes: 0 };
      return {
        name: p.name,
        fqdn: p.fqdn,
        vip4: p.vip4,
        vip6: p.vip6,
        path: p.active ? pathName(p.active.rd) : 'direct',
        relay: p.active?.rd.pathType === PathType.Relayed && p.active.rd.relay ? formatEndpoint(p.active.rd.relay) : null,
        endpoint: p.active?.endpoint ? formatEndpoint(p.active.endpoint) : null,
        rxBytes: st.rxBytes,
        txBytes: st.txBytes,
        pmtu: st.pmtu || null,
        lastHandshake: p.lastHandshake ? new Date(p.lastHandshake).toISOString() : null,
        certSerial: p.certSerial,
        state: p.active ? ('established' as const) : ('connecting' as const),
        routeSelectionMs: p.routeSelectionMs,
        tunnelMs: p.tunnelMs,
        allowed: p.revoked ? [] : p.allowIn === null ? null : p.allowIn === '' ? [] : p.allowIn.split(','),
        ...(p.revoked ? { revoked: true } : {}),
      };
    });
  }

  /**
   * What the established tunnels carry, for the cloud's view (Keepalive.peers): at most `max` peers, the busiest
   * first. `rttOf` gives a path's measured round trip (mobility's acked updates); otherwise the last handshake's time.
   */
  reports(max: number, rttOf: (pathId: bigint) => number | undefined): PeerReport[] {
    const sink = this.c.sink();
    if (!sink) return [];
    const out: (PeerReport & { total: bigint })[] = [];
    for (const p of this.peers.values()) {
      if (!p.active || p.revoked) continue;
      const st = sink.peerStats(p.slot);
      const rtt = rttOf(p.active.id) ?? p.tunnelMs ?? undefined;
      const tx = BigInt(Math.max(0, Math.trunc(st.txBytes)));
      const rx = BigInt(Math.max(0, Math.trunc(st.rxBytes)));
      out.push({ peerNodeId: p.nodeId, pathType: p.active.rd.pathType, txBytes: tx, rxBytes: rx, total: tx + rx, ...(rtt !== undefined ? { rttMs: Math.min(0xffffffff, Math.max(0, Math.round(rtt))) } : {}) });
    }
    out.sort((a, b) => (b.total > a.total ? 1 : b.total < a.total ? -1 : 0));
    return out.slice(0, max).map(({ total: _t, ...r }) => r);
  }

  /** True if the NMS listed this certificate serial (lowercase hex) as revoked: the handshake refuses it. */
  isRevokedSerial(serial: string): boolean {
    return this.revokedSerials.has(serial);
  }

  /** The peer named by a Route Direction, after checking its certificate says who the NMS says it is. */
  private adopt(rd: RouteDirection): Peer | null {
    try {
      // Verified once here (and remembered for the handshake that follows, which carries the same certificate).
      const { name, nodeId } = preverifyPeerCertificate(this.c.anchors(), rd.peerCertificate, (this.c.now ?? Date.now)());
      if (name !== rd.peerName || nodeId !== rd.peerNodeId) throw new Error(`certificate names ${name} (node ${nodeId}), not ${rd.peerName} (node ${rd.peerNodeId})`);
      checkPeerAddresses(rd);
      trace('cert.checked', rd.pathId);
    } catch (err) {
      this.counters.inc('route.bad-certificate');
      this.c.logger.warn('route refused: peer certificate', { peer: rd.peerName, err: describeError(err) });
      return null;
    }
    let peer = this.peers.get(rd.peerNodeId);
    if (!peer) {
      const slot = this.freeSlot();
      if (slot === null) {
        this.counters.inc('peer.full');
        this.c.logger.warn('route refused: every data-plane slot serves a peer in use', { peer: rd.peerName, max: MAX_PEER_SLOTS });
        return null;
      }
      const now = (this.c.now ?? Date.now)();
      peer = {
        nodeId: rd.peerNodeId,
        name: rd.peerName,
        fqdn: rd.peerFqdn,
        vip4: rd.peerVip4,
        vip6: rd.peerVip6,
        slot,
        paths: new Map(),
        active: null,
        lastHandshake: null,
        certSerial: null,
        connecting: null,
        routeSelectionMs: null,
        tunnelMs: null,
        watch: { rx: 0, tx: 0, rxAt: 0, checking: false },
        silence: { rx: 0, tx: 0, since: null, checking: false },
        idle: { rx: 0, tx: 0, at: Date.now() },
        use: { rx: 0, tx: 0, at: now },
        punchRetry: null,
        allowIn: null,
        blocked: false,
        revoked: false,
      };
      this.peers.set(peer.nodeId, peer);
    }
    // The directory answered this name from the NMS's word alone; the certificate (checked above) has the last word.
    const listed = this.c.directory?.lookup(peer.fqdn);
    if (listed && !(sameAddress(listed.vip4, peer.vip4) && sameAddress(listed.vip6, peer.vip6))) {
      this.counters.inc('directory.mismatch');
      this.c.directory?.forget?.(peer.fqdn);
      this.c.logger.warn('directory entry differs from the peer\'s certificate: forgotten', { peer: peer.name, listed: `${listed.vip4} ${listed.vip6}` });
    }
    trace('peer.adopted', rd.pathId);
    // The policy for this peer, as the newest Route Direction says (set before any session of it is installed).
    peer.blocked = false;
    const allowIn = rd.allowIn ?? null;
    if (allowIn !== peer.allowIn || peer.paths.size === 0 || peer.revoked) {
      try {
        this.c.sink()?.setFilter?.(peer.slot, allowIn);
        peer.allowIn = allowIn;
        peer.revoked = false; // the NMS hands out a route only with a valid certificate (re-enrolled)
      } catch (err) {
        this.counters.inc('route.bad-policy');
        this.c.logger.warn('route refused: policy text', { peer: rd.peerName, err: describeError(err) });
        return null;
      }
    }
    return peer;
  }

  /**
   * A data-plane slot for a new peer: a never-used one, one an evicted peer left, or — every slot taken — the slot of
   * the least recently used peer idle for PEER_EVICT_IDLE_MS (evicted now); null when every peer is in use.
   */
  private freeSlot(): number | null {
    if (this.nextSlot < MAX_PEER_SLOTS) return this.nextSlot++;
    const reused = this.freeSlots.pop();
    if (reused !== undefined) return reused;
    const now = (this.c.now ?? Date.now)();
    let lru: Peer | null = null;
    for (const peer of this.peers.values()) {
      this.noteUse(peer, now);
      if (peer.connecting || now - peer.use.at < PEER_EVICT_IDLE_MS) continue;
      if (!lru || peer.use.at < lru.use.at) lru = peer;
    }
    if (!lru) return null;
    this.evict(lru);
    return this.freeSlots.pop() ?? null;
  }

  /** Records whether the peer's traffic moved beyond keepalive noise since the last look. */
  private noteUse(peer: Peer, now: number): void {
    const st = this.c.sink()?.peerStats(peer.slot);
    if (!st) return;
    const u = peer.use;
    if (st.rxBytes - u.rx > IDLE_NOISE_BYTES || st.txBytes - u.tx > IDLE_NOISE_BYTES) u.at = now;
    u.rx = st.rxBytes;
    u.tx = st.txBytes;
  }

  /** Forgets a peer: its paths, relay bindings and data-plane slot (sessions, routes, counters); the slot is free. */
  private evict(peer: Peer): void {
    this.peers.delete(peer.nodeId);
    for (const path of peer.paths.values()) {
      this.byPath.delete(path.id);
      if (path.rd.pathType === PathType.Relayed) this.c.relay?.forget(path.id);
    }
    peer.paths.clear();
    peer.active = null;
    this.c.sink()?.remove?.(peer.slot);
    this.freeSlots.push(peer.slot);
    this.counters.inc('peer.evicted');
    this.c.logger.info('idle peer forgotten to free a data-plane slot', { peer: peer.name, slot: peer.slot });
  }

  private addPath(peer: Peer, rd: RouteDirection): Path {
    const existing = peer.paths.get(rd.pathId);
    if (existing) return existing;
    // A replay cache of its own per path: a peer flooding its path (even with timestamps far ahead) raises only that
    // path's floor, never another peer's.
    const replay = new HandshakeReplayCache(PATH_REPLAY_ENTRIES, undefined, () => this.counters.inc('handshake.replay-evicted'));
    const hs = new PathHandshake(this.localView, this.c.anchors(), { pathId: rd.pathId, tunnelKey: rd.tunnelKey, ...(rd.tempKey ? { tempKey: rd.tempKey } : {}) }, { nodeId: rd.peerNodeId, name: rd.peerName }, replay);
    const path: Path = { id: rd.pathId, rd, hs, endpoint: null, keys: null, prevKeys: null, candidates: null, handshakeStart: null, learned: null, dead: false, rekeyFailures: 0, rekeyRetryAt: 0, answered: [], probe: null };
    peer.paths.set(rd.pathId, path);
    this.byPath.set(rd.pathId, { peer, path });
    // Bounded: forget the oldest path that carries nothing and is not being set up (maps keep insertion order).
    for (const old of peer.paths.values()) {
      if (peer.paths.size <= MAX_PATHS_PER_PEER) break;
      if (old === path || old === peer.active || old.hs.state === 'initiating') continue;
      peer.paths.delete(old.id);
      this.byPath.delete(old.id);
      if (old.rd.pathType === PathType.Relayed) this.c.relay?.forget(old.id);
      this.counters.inc('path.evicted');
    }
    return path;
  }

  /**
   * Where a Tunnel Request goes on a direct or punched path: the peer's NAT mapping toward us (learned from its own
   * request), where it was last seen (it may have moved since the Route Direction), the endpoints its last update
   * listed, then what the NMS said; no duplicates, at most MAX_PROBE_ENDPOINTS.
   */
  private probeTargets(path: Path): Endpoint[] {
    const known = [...(path.learned ? [path.learned] : []), ...(path.endpoint ? [path.endpoint] : []), ...(path.candidates ?? []), ...path.rd.peerEndpoints];
    return known.filter((e, i) => known.findIndex((x) => x.address === e.address && x.port === e.port) === i).slice(0, MAX_PROBE_ENDPOINTS);
  }

  /**
   * Sends TunnelRequests to the peer's endpoints (the TRS on a relayed path) until a response establishes the
   * session; true when it did.
   */
  private async initiate(peer: Peer, path: Path, schedule: readonly number[] = TUNNEL_RETRANSMIT_MS): Promise<boolean> {
    const sink = this.c.sink();
    if (!sink) return false;
    const relayed = path.rd.pathType === PathType.Relayed && path.rd.relay;
    path.handshakeStart = performance.now();
    for (const wait of schedule) {
      if (path.keys && path.hs.state === 'established') return true;
      const targets = relayed ? [path.rd.relay!] : this.probeTargets(path);
      this.txid = (this.txid % 0x7fffffff) + 1;
      const frame = path.hs.initiate(this.seq.next(), this.txid);
      trace('hs.request', path.id);
      // The full request (certificate and chain) only where the peer was seen or answered a probe; elsewhere a probe.
      for (const t of targets) {
        if (relayed || this.reachable(path, t)) sink.send(frame, t);
        else this.probe(peer, path, t, sink);
      }
      if (path.probe) path.probe.request = frame;
      this.counters.inc('handshake.sent');
      await new Promise((r) => setTimeout(r, wait));
      if (path.hs.state === 'established') return true;
    }
    this.counters.inc('handshake.timeout');
    this.c.logger.warn('tunnel establishment timed out', { peer: peer.name, path: pathName(path.rd) });
    return false;
  }

  /**
   * Whether a full TunnelRequest may go to `to`: the peer was seen there (its own request came from there, or its
   * traffic), it is the first endpoint the NMS gave (the one the NMS saw the peer at, or its LAN endpoint behind our
   * shared NAT), or it answered a PathProbe. Anything else — a second reported address, one from an endpoint update —
   * could be a third party's: it gets a probe first.
   */
  private reachable(path: Path, to: Endpoint): boolean {
    const k = endpointKey(to);
    const seen = [path.learned, path.endpoint, path.rd.peerEndpoints[0]];
    return seen.some((e) => e && endpointKey(e) === k) || path.probe?.verified.has(k) === true;
  }

  private probeKeys(peer: Peer, path: Path): NonNullable<Path['probe']> {
    path.probe ??= {
      mine: pathProbeKeys(path.rd.tunnelKey, this.c.local().nodeId),
      theirs: pathProbeKeys(path.rd.tunnelKey, peer.nodeId),
      outstanding: new Map(),
      verified: new Set(),
      request: null,
      answered: null,
    };
    return path.probe;
  }

  /** A PathProbe to `to`: 44 bytes instead of a TunnelRequest, until the peer answers from there. */
  private probe(peer: Peer, path: Path, to: Endpoint, sink: SessionSink): void {
    const p = this.probeKeys(peer, path);
    const seq = this.seq.next();
    p.outstanding.set(seq, to);
    if (p.outstanding.size > MAX_OUTSTANDING_PROBES) p.outstanding.delete(p.outstanding.keys().next().value as bigint);
    sink.send(sealPathProbe(p.mine, path.id, seq), to);
    this.counters.inc('probe.sent');
  }

  /** A PathProbe (answered, budgeted per path) or a PathProbeAck (the endpoint probed is the peer's: send it the request). */
  private onProbe(type: MessageType, pathId: bigint, msg: Buffer, from: Endpoint): void {
    const entry = this.byPath.get(pathId);
    const sink = this.c.sink();
    if (!entry || !sink) {
      this.counters.inc('probe.unknown-path');
      return;
    }
    const { peer, path } = entry;
    const p = this.probeKeys(peer, path);
    if (type === MessageType.PathProbe) {
      const seq = openPathProbe(p.theirs, msg);
      if (seq === null) return this.counters.inc('probe.refused');
      if (!this.probeBudget.take(path.id, (this.c.now ?? Date.now)())) return this.counters.inc('probe.rate-limited');
      sink.send(sealPathProbeAck(p.mine, path.id, this.seq.next(), seq), from);
      this.counters.inc('probe.answered');
      return;
    }
    const probed = openPathProbeAck(p.theirs, msg);
    const to = probed === null ? undefined : p.outstanding.get(probed);
    if (!to || endpointKey(to) !== endpointKey(from)) return this.counters.inc('probe.refused');
    p.outstanding.delete(probed!);
    p.verified.add(endpointKey(to));
    this.counters.inc('probe.verified');
    p.answered?.();
    if (path.hs.state === 'initiating' && p.request) sink.send(p.request, to);
  }

  private async established(peer: Peer, path: Path, keys: SessionKeys, from: Endpoint, reply?: { datagram: Buffer; to: Endpoint }): Promise<void> {
    keys.expiresAt = keys.establishedAt + this.rejectAfterMs();
    if (keys.initiator) path.answered = [];
    else {
      path.answered.push(keys);
      if (path.answered.length > MAX_PENDING_REQUESTS) path.answered.shift();
    }
    if (path.keys && path.keys !== keys) path.prevKeys = path.keys;
    path.keys = keys;
    path.endpoint = from;
    peer.lastHandshake = keys.establishedAt;
    peer.certSerial = serialOf(keys.peerCertDer);
    // Two paths to one peer (both sides asked at once): both ends send on the one initiated by the lower node id.
    const current = peer.active;
    if (!current || current === path || this.preferred(path, current) === path) peer.active = path;
    if (current && current !== path && peer.active === path && current.rd.pathType === PathType.Relayed) {
      // The old relayed path carries nothing new: stop refreshing its binding once stragglers have arrived.
      setTimeout(() => this.c.relay?.forget(current.id), 5000).unref();
    }
    peer.watch = { rx: 0, tx: 0, rxAt: Date.now(), checking: false };
    this.counters.inc('handshake.ok');
    this.c.onEstablished?.(path.id);
    // The losing path's session still opens what the peer sends on it until the peer switches over.
    if (!keys.initiator) trace('hs.response', path.id);
    const installed = this.c.sink()?.install({ slot: peer.slot, vip4: peer.vip4, vip6: peer.vip6, endpoint: from }, keys, peer.active !== path, reply);
    this.c.logger.info('tunnel established', { peer: peer.name, path: pathName(path.rd), udpAddr: formatEndpoint(from), initiator: keys.initiator });
    await installed;
    trace('hs.installed', path.id);
    // A new path replaced another one (TRS failover, a fresh route): as responder our data plane would keep
    // sending on the old path's session until the peer used the new one, and the old path may be dead.
    if (!keys.initiator && current && current !== path && peer.active === path) this.c.sink()?.promote?.(peer.slot);
    if (path.handshakeStart !== null) {
      peer.tunnelMs = +(performance.now() - path.handshakeStart).toFixed(3);
      path.handshakeStart = null;
    }
  }

  /**
   * Which of two established paths to one peer carries traffic. A clearly newer one wins (the peer restarted or
   * the old one was replaced); two made at about the same time (both ends asked at once) are decided the same way
   * on both ends: the path initiated by the lower node id.
   */
  private preferred(a: Path, b: Path): Path {
    if (a.dead !== b.dead) return a.dead ? b : a;
    const ta = a.keys?.establishedAt ?? 0;
    const tb = b.keys?.establishedAt ?? 0;
    if (Math.abs(ta - tb) > SIMULTANEOUS_MS) return ta > tb ? a : b;
    // Made at about the same time, one through a TRS: the one that is not (a punch retry that came up quickly).
    const ra = a.rd.pathType === PathType.Relayed;
    if (ra !== (b.rd.pathType === PathType.Relayed)) return ra ? b : a;
    // The path's initiator (as the NMS directed it): not the session's, which either end's rekey changes.
    const initiatorOf = (p: Path): number => (p.rd.initiator ? this.c.local().nodeId : p.rd.peerNodeId);
    const ia = initiatorOf(a);
    const ib = initiatorOf(b);
    if (ia !== ib) return ia < ib ? a : b;
    return a.id < b.id ? a : b;
  }

  /**
   * Relayed paths: sending while nothing comes back for RELAY_SILENT_MS makes us check the TRS with a bind. That
   * bind also repairs a binding our NAT broke (it rebound us to a new public port: the TRS moves our end to where
   * the bind came from). No answer, on a path we initiated → the TRS is dead and we ask the NMS for a relay
   * elsewhere (avoiding this one); the new path's session replaces the old one and TCP above sees a short stall.
   */
  private watchRelays(): void {
    const sink = this.c.sink();
    if (sink) this.keepIdlePathsOpen(sink);
    if (sink) this.watchSilence(sink);
    const t = (this.c.now ?? Date.now)();
    for (const peer of this.peers.values()) this.noteUse(peer, t);
    for (const peer of this.peers.values()) {
      const r = peer.punchRetry;
      if (r && !r.running && Date.now() >= r.at && peer.active?.rd.pathType === PathType.Relayed && !peer.connecting) void this.retryPunch(peer);
    }
    const relay = this.c.relay;
    if (!sink || !relay) return;
    const now = Date.now();
    for (const peer of this.peers.values()) {
      const path = peer.active;
      if (!path || path.dead || path.rd.pathType !== PathType.Relayed || peer.watch.checking) continue;
      const st = sink.peerStats(peer.slot);
      const w = peer.watch;
      const sent = st.txBytes > w.tx;
      if (st.rxBytes > w.rx || w.rxAt === 0) w.rxAt = now;
      w.rx = st.rxBytes;
      w.tx = st.txBytes;
      if (!sent || now - w.rxAt < RELAY_SILENT_MS) continue;
      w.checking = true;
      this.counters.inc('relay.check');
      void relay.check(path.id).then((alive) => {
        w.checking = false;
        w.rxAt = Date.now();
        if (alive || path.dead || peer.active !== path || !path.rd.initiator) return;
        path.dead = true;
        this.counters.inc('relay.failover');
        this.c.logger.warn('relay stopped answering; asking for another', { peer: peer.name, relay: path.rd.relay ? formatEndpoint(path.rd.relay) : null });
        relay.forget(path.id);
        void this.connect({ targetFqdn: peer.fqdn, relayOnly: true, ...(path.rd.relay ? { avoidRelay: path.rd.relay } : {}) });
      });
    }
  }

  /**
   * Direct and punched paths: when we have sent for silentPathMs and heard nothing back, PathProbes ask the peer
   * whether it still holds the path (only a holder of its Tunnel Key can answer; the data plane's policy filters do
   * not see them). An answer means it is alive and just quiet (a one-way stream): the watch starts over. No answer
   * to SILENT_PROBES probes means it forgot the path (it restarted, or evicted us to free a slot): a new route
   * selection, whose Route Direction reaches it through the NMS, replaces the path. Relayed paths have the TRS
   * watch above.
   */
  private watchSilence(sink: SessionSink): void {
    const now = Date.now();
    const limit = this.c.silentPathMs ?? SILENT_PATH_MS;
    for (const peer of this.peers.values()) {
      const path = peer.active;
      const s = peer.silence;
      // (keys is null while a rekey runs and after one that failed: a peer that forgot the path fails our rekeys too)
      if (!path || !(path.keys ?? path.prevKeys) || path.dead || path.rd.pathType === PathType.Relayed || s.checking || peer.connecting || peer.revoked) continue;
      const st = sink.peerStats(peer.slot);
      if (st.rxBytes !== s.rx) s.since = null;
      else if (st.txBytes !== s.tx && s.since === null) s.since = now;
      s.rx = st.rxBytes;
      s.tx = st.txBytes;
      if (s.since === null || now - s.since < limit || !path.endpoint) continue;
      s.checking = true;
      this.counters.inc('path.silent-check');
      void this.stillThere(peer, path, path.endpoint, sink).then((alive) => {
        s.checking = false;
        s.since = null;
        if (alive || peer.active !== path || path.dead) return;
        this.counters.inc('path.silent');
        this.c.logger.warn('peer stopped answering on its path; asking for a new route', { peer: peer.name, udpAddr: formatEndpoint(path.endpoint!) });
        this.reselect(peer.nodeId, 'silent');
      });
    }
  }

  /** Up to SILENT_PROBES PathProbes to `to`, each given its wait: true as soon as one is answered. */
  private async stillThere(peer: Peer, path: Path, to: Endpoint, sink: SessionSink): Promise<boolean> {
    const p = this.probeKeys(peer, path);
    const waitMs = SILENT_PROBE_WAIT_MS + Math.round(1.25 * (peer.tunnelMs ?? 0));
    let answered = false;
    try {
      for (let i = 0; i < SILENT_PROBES && !answered && !this.closed; i++) {
        this.probe(peer, path, to, sink);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, waitMs);
          p.answered = () => {
            answered = true;
            clearTimeout(t);
            resolve();
          };
        });
      }
    } finally {
      p.answered = null;
    }
    return answered;
  }

  /**
   * Keepalives on paths through a NAT (punched, or direct while we are behind one): when nothing moved either way
   * for pathKeepaliveMs, one small packet through the tunnel; the peer's answer (its kernel's) refreshes the way
   * back. Relayed paths need none: their TRS binds are refreshed every ≤ 25 s.
   */
  private keepIdlePathsOpen(sink: SessionSink): void {
    if (!sink.keepalive) return;
    const now = Date.now();
    const every = this.c.pathKeepaliveMs ?? PATH_KEEPALIVE_MS;
    const natted = this.c.behindNat?.() === true;
    for (const peer of this.peers.values()) {
      const path = peer.active;
      if (!path?.keys || path.rd.pathType === PathType.Relayed || (!natted && path.rd.pathType !== PathType.Punched)) continue;
      const st = sink.peerStats(peer.slot);
      const i = peer.idle;
      if (st.rxBytes !== i.rx || st.txBytes !== i.tx) {
        i.rx = st.rxBytes;
        i.tx = st.txBytes;
        i.at = now;
        continue;
      }
      if (now - i.at < every) continue;
      i.at = now;
      this.counters.inc('keepalive.sent');
      sink.keepalive({ vip4: peer.vip4, vip6: peer.vip6 });
    }
  }

  // ───── PeerDirectory (mobility.ts): established peers, endpoint changes, route re-selection ─────

  establishedPeers(): MobilityPeer[] {
    const out: MobilityPeer[] = [];
    for (const peer of this.peers.values()) {
      const m = peer.active && this.mobilityView(peer, peer.active);
      if (m) out.push(m);
    }
    return out;
  }

  peerOfPath(pathId: bigint): MobilityPeer | null {
    const e = this.byPath.get(pathId);
    return e ? this.mobilityView(e.peer, e.path) : null;
  }

  setEndpoint(pathId: bigint, endpoint: Endpoint, candidates?: Endpoint[]): void {
    const e = this.byPath.get(pathId);
    if (!e) return;
    e.path.endpoint = endpoint;
    if (candidates) e.path.candidates = candidates;
    // A relayed path keeps sending to its TRS (the TRS follows a moved end by its RelayBind).
    if (e.path.rd.pathType === PathType.Relayed) return;
    if (e.peer.active === e.path) this.c.sink()?.setEndpoint?.(e.peer.slot, endpoint);
    this.counters.inc('endpoint.changed');
  }

  reselect(nodeId: number, reason: string): void {
    const peer = this.peers.get(nodeId);
    if (!peer) return;
    this.counters.inc(`reselect.${reason}`);
    void this.connect({ targetVip: peer.vip4 });
  }

  private mobilityView(peer: Peer, path: Path): MobilityPeer | null {
    // Newest first; then the other sessions answered in the last handshake (the initiator may hold any of them).
    const keys = [path.keys, path.prevKeys, ...[...path.answered].reverse()].filter((k, i, all): k is SessionKeys => !!k && all.indexOf(k) === i);
    if (keys.length === 0) return null;
    // Through a TRS the only way to the peer is the relay endpoint of our family: a move to the other family finds no
    // usable candidate (→ new route selection), and an update sent there is not forwarded (no ack → re-selection,
    // which also lets a move out of a NAT leave the relay).
    const rttHintMs = peer.tunnelMs;
    if (path.rd.pathType === PathType.Relayed && path.rd.relay) return { nodeId: peer.nodeId, name: peer.name, pathId: path.id, keys, endpoint: path.rd.relay, candidates: [path.rd.relay], relayed: true, rttHintMs };
    return { nodeId: peer.nodeId, name: peer.name, pathId: path.id, keys, endpoint: path.endpoint, candidates: path.candidates ?? path.rd.peerEndpoints, relayed: false, rttHintMs };
  }

  /**
   * Either end starts a new handshake on the active path once its session is rekeyAfterMs old (both at once: the
   * simultaneous-initiation tie-break leaves one session). One that times out (peer unreachable for a while) leaves
   * the previous session carrying traffic and is tried again at the next tick, backing off (the tick doubling per
   * failure, at most REKEY_RETRY_MAX_MS) but never past the hard limit: a retry is due by then. If the limit comes
   * first anyway (rekeyAfterMs ≥ rejectAfterMs, or the peer was unreachable), the engine refuses the old session
   * and the next packet's miss starts the handshake at once.
   */
  private rekeyDue(): void {
    const now = (this.c.now ?? Date.now)();
    for (const peer of this.peers.values()) {
      const path = peer.active;
      const keys = path?.keys ?? path?.prevKeys; // keys is null while a rekey runs and after one that failed
      if (!path || !keys || peer.connecting) continue;
      if (now - keys.establishedAt < (this.c.rekeyAfterMs ?? REKEY_AFTER_MS) || now < path.rekeyRetryAt) continue;
      this.rekey(peer, path);
    }
  }

  /** A new handshake on `path` (same Tunnel Key), as whichever end we are; the old session carries traffic meanwhile. */
  private rekey(peer: Peer, path: Path): void {
    this.counters.inc('rekey');
    if (path.keys) {
      path.prevKeys = path.keys;
      path.keys = null;
    }
    peer.connecting = this.initiate(peer, path)
      .then((ok) => {
        if (ok) {
          path.rekeyFailures = 0;
          path.rekeyRetryAt = 0;
          this.counters.inc('rekey.ok');
          return;
        }
        this.counters.inc('rekey.failed');
        path.rekeyFailures++;
        const now = (this.c.now ?? Date.now)();
        const backoff = Math.min(REKEY_RETRY_MAX_MS, this.rekeyTickMs() * 2 ** (path.rekeyFailures - 1));
        const old = path.keys ?? path.prevKeys;
        const limit = old ? sealUntil(old) - Math.min(1000, this.rejectAfterMs() / 4) : Infinity;
        path.rekeyRetryAt = Math.max(now, Math.min(now + backoff, limit));
      })
      .finally(() => (peer.connecting = null));
  }

  /** How often rekeyDue looks (ms). */
  private rekeyTickMs(): number {
    return Math.min(5000, Math.max(250, (this.c.rekeyAfterMs ?? REKEY_AFTER_MS) / 4));
  }
}

function pathName(rd: RouteDirection): 'direct' | 'punched' | 'relayed' {
  return rd.pathType === PathType.Relayed ? 'relayed' : rd.pathType === PathType.Punched ? 'punched' : 'direct';
}
