// Mobility: what a node does when its addresses change, and how its peers learn where it went. The End Key
// session, the virtual addresses and the TCP connections above them stay; only the UDP endpoint changes.
//
//   address watcher ─► moved(families) ─┬─► daemon: re-register with the NMS (one round trip, Common Key still valid)
//                                       └─► per established peer:
//                                            peer endpoint of a family we still have? ─no─► reselect (NMS route)
//                                            │yes
//                                            EndpointUpdate {nodeId, time, our endpoints}, sealed from the End Key
//                                            ─► retransmitted (UPDATE_RETRANSMIT_MS, each wait plus 1.25 path RTTs)
//                                               until its EndpointUpdateAck (acks measure the path's RTT)
//                                            ─► no ack after RESELECT_AFTER_SENDS sends (the peer moved too, or a NAT is
//                                               in between now) ─► reselect (the update keeps being retransmitted)
//
//   peer: EndpointUpdate ─► path known? seq fresh (replay guard)? opens under the path's keys? sender = path's peer?
//         ─► data plane sends to the datagram's source from now on ─► EndpointUpdateAck (sealed the other way)
//         anything else ─► counted (mobility.refused.*) and ignored: the endpoint does not change.
//
// Keys: both directions derive from the sender's data key (A.send = B.recv), HKDF with the path id as salt and
// their own labels, so an update cannot be confused with a capsule or with an update of another path.

import { ChannelKeys, openFrame, sealFrame } from '../channel/sealed.js';
import { ReplayGuard, SeqCounter } from '../channel/sequence.js';
import type { SessionKeys } from '../crypto/handshake.js';
import { MessageType } from '../protocol/constants.js';
import { endpointsEqual, formatEndpoint, type Endpoint } from '../protocol/endpoint.js';
import { splitFrame } from '../protocol/header.js';
import { decodeBody, encodeBody } from '../protocol/messages.js';
import { Counters } from '../util/counters.js';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

/** HKDF info of the key sealing EndpointUpdate (ikm: the sender's data send key, salt: path id u64 BE). */
export const INFO_ENDPOINT_UPDATE = 'cyphonic v1 endpoint update';
/** HKDF info of the key sealing EndpointUpdateAck (same ikm and salt as the update it answers). */
export const INFO_ENDPOINT_ACK = 'cyphonic v1 endpoint update ack';
/** Tunable: waits after each EndpointUpdate send (ms). A peer on a working path answers in one RTT (well under a
 *  millisecond on a LAN, tens of ms across the Internet; the last wait still covers a 240 ms RTT). Updates are
 *  ~100 bytes, so early retransmissions cost nothing. */
export const UPDATE_RETRANSMIT_MS = [30, 60, 120, 240] as const;
/** Each wait also covers this many round trips of the path (its smoothed RTT from earlier acks, else the handshake's
 *  time): at a 600 ms satellite RTT an ack cannot come within 30 + 60 ms, and a needless route selection and
 *  handshake would follow every move. On a LAN it adds well under a millisecond. */
export const RETRANSMIT_RTTS = 1.25;
/** Tunable: after this many unanswered sends, route selection runs again (while the update keeps being
 *  retransmitted): 30 + 60 = 90 ms is what "both ends moved at once" costs before the NMS reunites them. A
 *  needless re-selection (an update lost twice on a working path) only costs a new handshake. */
export const RESELECT_AFTER_SENDS = 2;
/** Tunable: a new path's first update (our endpoints, so the peer can follow a later change of family) waits this
 *  long, so the peer has installed the session it opens under (the responder's TunnelResponse may still be on its way). */
export const ANNOUNCE_DELAY_MS = 200;
/** Most paths whose replay state is kept. */
const MAX_GUARDS = 1024;

/** An established peer, as mobility sees it. */
export interface MobilityPeer {
  nodeId: number;
  name: string;
  pathId: bigint;
  /** Session keys of the path, newest first (the previous ones still open updates across a rekey). */
  keys: SessionKeys[];
  /** Where the data plane sends to this peer now. */
  endpoint: Endpoint | null;
  /** The peer's other known endpoints (Route Direction, then its own updates). */
  candidates: Endpoint[];
  /** Through a TRS: the TRS follows our end by its RelayBind, so a NAT rebinding needs no update to the peer. */
  relayed?: boolean;
  /** How long the path's handshake took (ms, about one round trip), until acked updates measured the path. */
  rttHintMs?: number | null;
}

/** What mobility needs from the peer manager (declared here, implemented by PeerManager). */
export interface PeerDirectory {
  establishedPeers(): MobilityPeer[];
  peerOfPath(pathId: bigint): MobilityPeer | null;
  /** Sends this peer's traffic to `endpoint` from now on (data plane too); `candidates` replace the known ones. */
  setEndpoint(pathId: bigint, endpoint: Endpoint, candidates?: Endpoint[]): void;
  /** Asks the NMS for a new route to the peer (a new path and handshake; virtual addresses unchanged). */
  reselect(nodeId: number, reason: string): void;
}

export interface MobilityComponents {
  nodeId: () => number;
  peers: PeerDirectory;
  send: (datagram: Buffer, to: Endpoint) => void;
  /** Our endpoints now (addresses with our data port), sent along in updates. */
  localEndpoints: () => Endpoint[];
  logger: Logger;
  now?: () => number;
  /** @default UPDATE_RETRANSMIT_MS */
  retransmitMs?: readonly number[];
  /** Our end of every path changed: the data plane learns each peer's path MTU again (relayed paths too). */
  relearnPathMtu?: () => void;
}

/** Address families this host can send from now. */
export interface Families {
  v4: boolean;
  v6: boolean;
}

const familyOf = (e: Endpoint): 4 | 6 => (e.address.includes(':') ? 6 : 4);
const canReach = (f: Families, e: Endpoint): boolean => (familyOf(e) === 6 ? f.v6 : f.v4);

/** The endpoint to keep talking to a peer at after a move, or null when no known one has a family we still have. */
export function chooseEndpoint(f: Families, current: Endpoint | null, candidates: Endpoint[]): Endpoint | null {
  if (current && canReach(f, current)) return current;
  return candidates.find((e) => canReach(f, e)) ?? null;
}

function salt(pathId: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(pathId);
  return b;
}

interface Pending {
  pathId: bigint;
  /** Sequence number of each send → when it went out (performance.now()): every send has its own, so an ack
   *  times exactly one (no retransmission ambiguity). */
  seqs: Map<bigint, number>;
  /** Sent because we moved (its ack is a handover), not to announce a new path. */
  move: boolean;
  done: (acked: boolean) => void;
}

export class MobilityManager {
  readonly counters = new Counters();
  private readonly seq = new SeqCounter();
  /** path id → smoothed round trip of acked updates (ms), bounded like the replay guards. */
  private readonly srtt = new Map<bigint, number>();
  private readonly derived = new WeakMap<Buffer, ChannelKeys>();
  private readonly updateGuards = new Map<bigint, ReplayGuard>();
  private readonly ackGuards = new Map<bigint, ReplayGuard>();
  private readonly pending = new Map<bigint, Pending>();
  /** Paths we told our endpoints to (once per path). */
  private readonly announced = new Set<bigint>();
  /** Bumped by every move: updates of an older move stop retransmitting. */
  private generation = 0;
  private closed = false;
  /** performance.now() of the last move and of the first ack after it (handover figures for status/bench). */
  lastMove: { at: number; firstAckMs: number | null } | null = null;

  constructor(private readonly c: MobilityComponents) {}

  close(): void {
    this.closed = true;
    this.generation++;
    for (const p of this.pending.values()) p.done(false);
    this.pending.clear();
  }

  /** Our addresses changed (`at`: performance.now() of the first netlink event). Tells every established peer. */
  moved(families: Families, at = performance.now()): void {
    if (this.closed) return;
    const gen = ++this.generation;
    this.lastMove = { at, firstAckMs: null };
    if (!families.v4 && !families.v6) {
      this.counters.inc('offline'); // between networks: wait for the next change
      return;
    }
    this.counters.inc('moves');
    this.c.relearnPathMtu?.();
    for (const peer of this.c.peers.establishedPeers()) {
      const target = chooseEndpoint(families, peer.endpoint, peer.candidates);
      if (!target) {
        this.counters.inc('reselect.family');
        this.c.logger.info('no endpoint of a usable family for peer; new route selection', { peer: peer.name });
        this.c.peers.reselect(peer.nodeId, 'family');
        continue;
      }
      if (!peer.endpoint || !endpointsEqual(target, peer.endpoint)) this.c.peers.setEndpoint(peer.pathId, target);
      void this.announce(peer, target, gen);
    }
  }

  /**
   * Our NAT gave us a new public port while our own addresses stayed (seen when the NMS observed us somewhere new).
   * A peer on a direct or punched path still sends to the old mapping, which the NAT no longer forwards: an
   * EndpointUpdate from the new mapping moves it (it answers to the update's source). Through a NAT on the peer's
   * side too (a punched path) the update is filtered and goes unanswered, and the path is selected again (the NMS
   * coordinates a new punch). Relayed paths are repaired by the TRS rebind instead.
   */
  natRebound(): void {
    if (this.closed) return;
    const gen = ++this.generation;
    this.counters.inc('nat-rebound');
    for (const peer of this.c.peers.establishedPeers()) {
      if (peer.relayed || !peer.endpoint) continue;
      void this.announce(peer, peer.endpoint, gen);
    }
  }

  /**
   * A new path is up: tell the peer our endpoints (an EndpointUpdate without a move), so that after a later move
   * to another address family it can be reached at one of them even if the NMS only gave each end the endpoints
   * usable at the time. Not acknowledged (e.g. through a TRS) → nothing more happens.
   */
  established(pathId: bigint): void {
    if (this.closed || this.announced.has(pathId)) return;
    if (this.announced.size >= MAX_GUARDS) this.announced.clear();
    this.announced.add(pathId);
    const t = setTimeout(() => {
      const peer = this.c.peers.peerOfPath(pathId);
      if (!peer?.endpoint || this.closed) return;
      this.counters.inc('announce');
      void this.announce(peer, peer.endpoint, this.generation, false);
    }, ANNOUNCE_DELAY_MS);
    t.unref();
  }

  /** Sends EndpointUpdates to one peer until one is acknowledged, a newer move starts, or the schedule ends. */
  private async announce(peer: MobilityPeer, to: Endpoint, gen: number, reselectOnSilence = true): Promise<void> {
    const old = this.pending.get(peer.pathId);
    old?.done(false);
    let resolve!: (acked: boolean) => void;
    const acked = new Promise<boolean>((r) => (resolve = r));
    const entry: Pending = { pathId: peer.pathId, seqs: new Map(), move: reselectOnSilence, done: (a) => resolve(a) };
    this.pending.set(peer.pathId, entry);
    const schedule = this.c.retransmitMs ?? UPDATE_RETRANSMIT_MS;
    let ok = false;
    let reselected = false;
    const reselect = (): void => {
      if (!reselectOnSilence || reselected || gen !== this.generation || this.closed) return;
      reselected = true;
      this.counters.inc('reselect.no-ack');
      this.c.logger.info('endpoint update not acknowledged; new route selection', { peer: peer.name, udpAddr: formatEndpoint(to) });
      this.c.peers.reselect(peer.nodeId, 'no-ack');
    };
    try {
      for (let i = 0; i < schedule.length; i++) {
        if (gen !== this.generation || this.closed) return;
        const keys = peer.keys[i % peer.keys.length];
        if (!keys) return;
        const seq = this.seq.next();
        entry.seqs.set(seq, performance.now());
        const body = encodeBody(MessageType.EndpointUpdate, { nodeId: this.c.nodeId(), timestamp: BigInt((this.c.now ?? Date.now)()), endpoints: this.c.localEndpoints().slice(0, 16) });
        const frame = sealFrame(this.keysFor(keys.send, peer.pathId).up, { type: MessageType.EndpointUpdate, txid: 0, seq, id: peer.pathId }, body);
        this.c.send(frame, to);
        this.counters.inc(i === 0 ? 'update.sent' : 'update.retransmit');
        let t: NodeJS.Timeout | undefined;
        const wait = schedule[i]! + Math.round(RETRANSMIT_RTTS * (this.srtt.get(peer.pathId) ?? peer.rttHintMs ?? 0));
        const got = await Promise.race([acked, new Promise<null>((r) => (t = setTimeout(() => r(null), wait)))]);
        clearTimeout(t);
        if (got === false) return; // superseded by a newer announcement to this peer
        if (got !== null) {
          ok = got;
          break;
        }
        if (i + 1 >= RESELECT_AFTER_SENDS) reselect();
      }
    } finally {
      if (this.pending.get(peer.pathId) === entry) this.pending.delete(peer.pathId);
    }
    if (!ok) reselect();
  }

  /** EndpointUpdate / EndpointUpdateAck datagrams; false for anything else. */
  onDatagram(msg: Buffer, from: Endpoint): boolean {
    if (msg.length < 2 || (msg[1] !== MessageType.EndpointUpdate && msg[1] !== MessageType.EndpointUpdateAck)) return false;
    let f;
    try {
      f = splitFrame(msg);
    } catch {
      this.counters.inc('refused.malformed');
      return true;
    }
    const peer = this.c.peers.peerOfPath(f.header.id);
    if (!peer) {
      this.counters.inc('refused.unknown-path');
      return true;
    }
    const isUpdate = f.header.type === MessageType.EndpointUpdate;
    const guard = this.guard(isUpdate ? this.updateGuards : this.ackGuards, peer.pathId);
    const why = guard.check(f.header.seq);
    if (why) {
      this.counters.inc(`refused.${why}`);
      return true;
    }
    // Updates open under the peer's send key (our recv), acks under our send key; newest session first.
    let plain: Buffer | null = null;
    let used: SessionKeys | null = null;
    for (const k of peer.keys) {
      const ck = this.keysFor(isUpdate ? k.recv : k.send, peer.pathId);
      try {
        plain = openFrame(isUpdate ? ck.up : ck.down, f.header, f.headerBytes, f.body);
        used = k;
        break;
      } catch {
        /* next session */
      }
    }
    if (!plain || !used) {
      this.counters.inc('refused.auth');
      return true;
    }
    try {
      if (isUpdate) {
        const body = decodeBody(MessageType.EndpointUpdate, plain);
        if (body.nodeId !== peer.nodeId) {
          this.counters.inc('refused.node');
          return true;
        }
        guard.accept(f.header.seq);
        const moved = !peer.endpoint || !endpointsEqual(peer.endpoint, from);
        this.c.peers.setEndpoint(peer.pathId, from, [from, ...body.endpoints.filter((e) => !endpointsEqual(e, from))].slice(0, 16));
        this.counters.inc('update.accepted');
        if (moved) this.c.logger.info('peer moved', { peer: peer.name, udpAddr: formatEndpoint(from) });
        const ack = encodeBody(MessageType.EndpointUpdateAck, { nodeId: this.c.nodeId(), acked: f.header.seq, observed: from });
        this.c.send(sealFrame(this.keysFor(used.recv, peer.pathId).down, { type: MessageType.EndpointUpdateAck, txid: 0, seq: this.seq.next(), id: peer.pathId }, ack), from);
      } else {
        const body = decodeBody(MessageType.EndpointUpdateAck, plain);
        const p = this.pending.get(peer.pathId);
        const sentAt = p?.seqs.get(body.acked);
        if (body.nodeId !== peer.nodeId || !p || sentAt === undefined) {
          this.counters.inc('refused.unexpected-ack');
          return true;
        }
        guard.accept(f.header.seq);
        this.sampleRtt(peer.pathId, performance.now() - sentAt);
        this.counters.inc('update.acked');
        if (p.move && this.lastMove && this.lastMove.firstAckMs === null) this.lastMove.firstAckMs = +(performance.now() - this.lastMove.at).toFixed(3);
        p.done(true);
      }
    } catch (err) {
      this.counters.inc('refused.malformed');
      this.c.logger.debug('endpoint update refused', { udpAddr: formatEndpoint(from), err: describeError(err) });
    }
    return true;
  }

  /** The path's smoothed round trip (ms) from acked updates (RFC 6298's 1/8 gain), or undefined before any. */
  rttOf(pathId: bigint): number | undefined {
    return this.srtt.get(pathId);
  }

  private sampleRtt(pathId: bigint, ms: number): void {
    const old = this.srtt.get(pathId);
    this.srtt.delete(pathId); // Map order: most recently measured last
    if (this.srtt.size >= MAX_GUARDS) this.srtt.delete(this.srtt.keys().next().value!);
    this.srtt.set(pathId, old === undefined ? ms : old + (ms - old) / 8);
  }

  private keysFor(secret: Buffer, pathId: bigint): ChannelKeys {
    let k = this.derived.get(secret);
    if (!k) {
      k = new ChannelKeys(secret, { salt: salt(pathId), up: INFO_ENDPOINT_UPDATE, down: INFO_ENDPOINT_ACK });
      this.derived.set(secret, k);
    }
    return k;
  }

  private guard(map: Map<bigint, ReplayGuard>, pathId: bigint): ReplayGuard {
    let g = map.get(pathId);
    if (!g) {
      // Bounded: the oldest path's state goes first (updates only count for paths the peer manager still knows).
      if (map.size >= MAX_GUARDS) map.delete(map.keys().next().value!);
      g = new ReplayGuard(0n, this.c.now ?? Date.now);
      map.set(pathId, g);
    }
    return g;
  }
}
