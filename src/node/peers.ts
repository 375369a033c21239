// Peers of this node: route selection through the NMS, tunnel establishment with each peer, and the sessions
// installed in the data plane. Both ways in: a DNS query or first packet (we initiate), or a Route Direction
// pushed by the NMS (we respond).
//
//   initiator: resolve(name) / miss(vip) ─► DirectionRequest ─► RouteDirection ─► TunnelRequest ─► TunnelResponse ─► install
//   responder: pushed RouteDirection ─► check the certificate, expect the path ─► Confirmation ─► TunnelRequest ─► answer, install

import { SeqCounter } from '../channel/sequence.js';
import { HandshakeReplayCache, PathHandshake, preverifyPeerCertificate, type LocalIdentity, type SessionKeys, type TrustAnchors } from '../crypto/handshake.js';
import { REKEY_AFTER_MS } from '../crypto/data-session.js';
import { MessageType } from '../protocol/constants.js';
import { formatEndpoint, type Endpoint } from '../protocol/endpoint.js';
import { splitFrame } from '../protocol/header.js';
import type { RouteDirection } from '../protocol/messages.js';
import { Counters } from '../util/counters.js';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { MobilityPeer, PeerDirectory } from './mobility.js';

/** Tunable: waits between TunnelRequest retransmissions (ms); the tunnel attempt fails after the last. */
export const TUNNEL_RETRANSMIT_MS = [150, 300, 600, 1200] as const;
/** Tunable: how many of the peer's endpoints a TunnelRequest is sent to at once. */
const MAX_PROBE_ENDPOINTS = 4;

/** What the peer manager needs from the NMS client. */
export interface RouteSource {
  direction(target: { targetFqdn?: string; targetVip?: string }): Promise<RouteDirection>;
  confirm(pathId: bigint, accepted: boolean): Promise<void>;
}

/** What it needs from the data plane. */
export interface SessionSink {
  send(datagram: Buffer, to: Endpoint): void;
  install(route: { slot: number; vip4: string | null; vip6: string | null; endpoint: Endpoint }, keys: SessionKeys, receiveOnly?: boolean): Promise<void>;
  peerStats(slot: number): { rxBytes: number; txBytes: number };
  /** Mobility: send this peer's capsules to a new endpoint, same session. */
  setEndpoint?(slot: number, endpoint: Endpoint): void;
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
  lastHandshake: string | null;
  state: 'connecting' | 'established';
  /** Our last route selection for this peer (Direction Request → Route Direction), ms; null if the peer asked. */
  routeSelectionMs: number | null;
  /** Our last tunnel establishment (first Tunnel Request → session installed), ms. */
  tunnelMs: number | null;
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
  connecting: Promise<void> | null;
  routeSelectionMs: number | null;
  tunnelMs: number | null;
}

export interface PeerManagerComponents {
  local: () => LocalIdentity;
  anchors: () => TrustAnchors;
  routes: () => RouteSource | null;
  sink: () => SessionSink | null;
  logger: Logger;
  now?: () => number;
  /** Initiators re-handshake after this long. @default REKEY_AFTER_MS */
  rekeyAfterMs?: number;
  /** Mobility: a path's session was established (mobility tells the peer our endpoints over it). */
  onEstablished?: (pathId: bigint) => void;
}

/** Tunable: two paths to one peer established closer together than this count as a simultaneous initiation. */
const SIMULTANEOUS_MS = 2000;

export class PeerManager implements PeerDirectory {
  readonly counters = new Counters();
  private readonly peers = new Map<number, Peer>();
  private readonly byPath = new Map<bigint, { peer: Peer; path: Path }>();
  private readonly replay = new HandshakeReplayCache();
  private readonly seq = new SeqCounter();
  private readonly inflight = new Map<string, Promise<Peer | null>>();
  private nextSlot = 0;
  private txid = 1;
  private rekeyTimer: NodeJS.Timeout | null = null;

  constructor(private readonly c: PeerManagerComponents) {
    this.rekeyTimer = setInterval(() => this.rekeyDue(), Math.min(5000, Math.max(250, (c.rekeyAfterMs ?? REKEY_AFTER_MS) / 4)));
    this.rekeyTimer.unref();
  }

  close(): void {
    if (this.rekeyTimer) clearInterval(this.rekeyTimer);
  }

  /** DNS: the virtual addresses of `name` (a label under our domain); starts route selection and the tunnel. */
  async resolve(fqdn: string): Promise<{ vip4: string; vip6: string } | null> {
    const known = [...this.peers.values()].find((p) => p.fqdn === fqdn);
    if (known) {
      if (!known.active && !known.connecting) void this.connect({ targetFqdn: fqdn });
      return { vip4: known.vip4, vip6: known.vip6 };
    }
    const peer = await this.connect({ targetFqdn: fqdn });
    return peer ? { vip4: peer.vip4, vip6: peer.vip6 } : null;
  }

  /** First packet to a virtual address without a session. */
  miss(vip: string): void {
    const known = [...this.peers.values()].find((p) => p.vip4 === vip || p.vip6 === vip);
    if (known && (known.active || known.connecting)) return;
    void this.connect({ targetVip: vip });
  }

  /**
   * Route selection, then (without waiting) tunnel establishment. Resolves once the route is known, so a DNS
   * answer is not held up by the handshake; concurrent calls for the same target share one selection.
   */
  private connect(target: { targetFqdn?: string; targetVip?: string }): Promise<Peer | null> {
    const key = target.targetFqdn ?? target.targetVip!;
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.selectRoute(target).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private async selectRoute(target: { targetFqdn?: string; targetVip?: string }): Promise<Peer | null> {
    const routes = this.c.routes();
    if (!routes) return null;
    const t0 = performance.now();
    let rd: RouteDirection;
    try {
      rd = await routes.direction(target);
    } catch (err) {
      this.counters.inc('route.failed');
      this.c.logger.info('route selection failed', { peer: target.targetFqdn ?? target.targetVip, err: describeError(err) });
      return null;
    }
    this.counters.inc('route.ok');
    const peer = this.adopt(rd);
    if (!peer) return null;
    const path = this.addPath(peer, rd);
    peer.routeSelectionMs = +(performance.now() - t0).toFixed(3);
    this.c.logger.debug('route selected', { peer: peer.name, path: 'direct', ms: peer.routeSelectionMs });
    peer.connecting = this.initiate(peer, path).finally(() => (peer.connecting = null));
    return peer;
  }

  /** A Route Direction pushed by the NMS: we are the responder. */
  async onRouteDirection(rd: RouteDirection): Promise<void> {
    const routes = this.c.routes();
    const peer = this.adopt(rd);
    if (!peer || !routes) {
      if (routes) await routes.confirm(rd.pathId, false).catch(() => {});
      return;
    }
    this.addPath(peer, rd);
    this.counters.inc('route.pushed');
    await routes.confirm(rd.pathId, true).catch((err: unknown) => this.c.logger.warn('confirmation failed', { peer: peer.name, err: describeError(err) }));
  }

  /** Tunnel Request / Response datagrams. Returns false for anything else. */
  onDatagram(msg: Buffer, from: Endpoint): boolean {
    let f;
    try {
      f = splitFrame(msg);
    } catch {
      return false;
    }
    if (f.header.type !== MessageType.TunnelRequest && f.header.type !== MessageType.TunnelResponse) return false;
    const entry = this.byPath.get(f.header.id);
    if (!entry) {
      this.counters.inc('handshake.unknown-path');
      return true;
    }
    const { peer, path } = entry;
    try {
      if (f.header.type === MessageType.TunnelRequest) {
        const answered = path.hs.onRequest(msg, this.seq.next());
        if (!answered) return true; // our own simultaneous request wins
        // Answer only once our data plane can open the initiator's first capsule.
        void this.established(peer, path, answered.keys, from).then(() => this.c.sink()?.send(answered.response, from));
      } else {
        const keys = path.hs.onResponse(msg);
        if (keys) void this.established(peer, path, keys, from);
      }
    } catch (err) {
      this.counters.inc('handshake.refused');
      // The same request sent to several of our addresses arrives more than once: not worth a warning.
      const replay = (err as { code?: string }).code === 'ERR_HANDSHAKE_REPLAY';
      this.c.logger[replay ? 'debug' : 'warn']('tunnel handshake refused', { peer: peer.name, udpAddr: formatEndpoint(from), err: describeError(err) });
    }
    return true;
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
        path: 'direct' as const,
        relay: null,
        endpoint: p.active?.endpoint ? formatEndpoint(p.active.endpoint) : null,
        rxBytes: st.rxBytes,
        txBytes: st.txBytes,
        lastHandshake: p.lastHandshake ? new Date(p.lastHandshake).toISOString() : null,
        state: p.active ? ('established' as const) : ('connecting' as const),
        routeSelectionMs: p.routeSelectionMs,
        tunnelMs: p.tunnelMs,
      };
    });
  }

  /** The peer named by a Route Direction, after checking its certificate says who the NMS says it is. */
  private adopt(rd: RouteDirection): Peer | null {
    try {
      // Verified once here (and remembered for the handshake that follows, which carries the same certificate).
      const { name, nodeId } = preverifyPeerCertificate(this.c.anchors(), rd.peerCertificate, (this.c.now ?? Date.now)());
      if (name !== rd.peerName || nodeId !== rd.peerNodeId) throw new Error(`certificate names ${name} (node ${nodeId}), not ${rd.peerName} (node ${rd.peerNodeId})`);
    } catch (err) {
      this.counters.inc('route.bad-certificate');
      this.c.logger.warn('route refused: peer certificate', { peer: rd.peerName, err: describeError(err) });
      return null;
    }
    let peer = this.peers.get(rd.peerNodeId);
    if (!peer) {
      peer = {
        nodeId: rd.peerNodeId,
        name: rd.peerName,
        fqdn: rd.peerFqdn,
        vip4: rd.peerVip4,
        vip6: rd.peerVip6,
        slot: this.nextSlot++,
        paths: new Map(),
        active: null,
        lastHandshake: null,
        connecting: null,
        routeSelectionMs: null,
        tunnelMs: null,
      };
      this.peers.set(peer.nodeId, peer);
    }
    return peer;
  }

  private addPath(peer: Peer, rd: RouteDirection): Path {
    const existing = peer.paths.get(rd.pathId);
    if (existing) return existing;
    const hs = new PathHandshake(this.c.local(), this.c.anchors(), { pathId: rd.pathId, tunnelKey: rd.tunnelKey, ...(rd.tempKey ? { tempKey: rd.tempKey } : {}) }, { nodeId: rd.peerNodeId, name: rd.peerName }, this.replay);
    const path: Path = { id: rd.pathId, rd, hs, endpoint: null, keys: null, prevKeys: null, candidates: null, handshakeStart: null };
    peer.paths.set(rd.pathId, path);
    this.byPath.set(rd.pathId, { peer, path });
    return path;
  }

  /** Sends TunnelRequests to the peer's endpoints until a response establishes the session. */
  private async initiate(peer: Peer, path: Path): Promise<void> {
    const sink = this.c.sink();
    if (!sink) return;
    // Where the peer was last seen first (it may have moved since the Route Direction), then what the NMS said.
    const known = [...(path.endpoint ? [path.endpoint] : []), ...(path.candidates ?? []), ...path.rd.peerEndpoints];
    const targets = known.filter((e, i) => known.findIndex((x) => x.address === e.address && x.port === e.port) === i).slice(0, MAX_PROBE_ENDPOINTS);
    path.handshakeStart = performance.now();
    for (const wait of TUNNEL_RETRANSMIT_MS) {
      if (path.keys && path.hs.state === 'established') return;
      this.txid = (this.txid % 0x7fffffff) + 1;
      const frame = path.hs.initiate(this.seq.next(), this.txid);
      for (const t of targets) sink.send(frame, t);
      this.counters.inc('handshake.sent');
      await new Promise((r) => setTimeout(r, wait));
      if (path.hs.state === 'established') return;
    }
    this.counters.inc('handshake.timeout');
    this.c.logger.warn('tunnel establishment timed out', { peer: peer.name });
  }

  private async established(peer: Peer, path: Path, keys: SessionKeys, from: Endpoint): Promise<void> {
    if (path.keys && path.keys !== keys) path.prevKeys = path.keys;
    path.keys = keys;
    path.endpoint = from;
    peer.lastHandshake = keys.establishedAt;
    // Two paths to one peer (both sides asked at once): both ends send on the one initiated by the lower node id.
    const current = peer.active;
    if (!current || current === path || this.preferred(path, current) === path) peer.active = path;
    this.counters.inc('handshake.ok');
    this.c.onEstablished?.(path.id);
    // The losing path's session still opens what the peer sends on it until the peer switches over.
    const installed = this.c.sink()?.install({ slot: peer.slot, vip4: peer.vip4, vip6: peer.vip6, endpoint: from }, keys, peer.active !== path);
    this.c.logger.info('tunnel established', { peer: peer.name, path: 'direct', udpAddr: formatEndpoint(from), initiator: keys.initiator });
    await installed;
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
    const ta = a.keys?.establishedAt ?? 0;
    const tb = b.keys?.establishedAt ?? 0;
    if (Math.abs(ta - tb) > SIMULTANEOUS_MS) return ta > tb ? a : b;
    const initiatorOf = (p: Path): number => (p.keys?.initiator ? this.c.local().nodeId : p.rd.peerNodeId);
    const ia = initiatorOf(a);
    const ib = initiatorOf(b);
    if (ia !== ib) return ia < ib ? a : b;
    return a.id < b.id ? a : b;
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
    const keys = [path.keys, path.prevKeys].filter((k): k is SessionKeys => !!k);
    if (keys.length === 0) return null;
    return { nodeId: peer.nodeId, name: peer.name, pathId: path.id, keys, endpoint: path.endpoint, candidates: path.candidates ?? path.rd.peerEndpoints };
  }

  /** Initiators refresh their sessions before the time limit (the responder's keys follow its answer). */
  private rekeyDue(): void {
    const now = (this.c.now ?? Date.now)();
    for (const peer of this.peers.values()) {
      const path = peer.active;
      if (!path?.keys || !path.keys.initiator || peer.connecting) continue;
      if (now - path.keys.establishedAt < (this.c.rekeyAfterMs ?? REKEY_AFTER_MS)) continue;
      this.counters.inc('rekey');
      path.prevKeys = path.keys;
      path.keys = null;
      peer.connecting = this.initiate(peer, path).finally(() => (peer.connecting = null));
    }
  }
}
