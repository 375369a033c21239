// The data-plane worker: ONE thread carries both directions for the node. It drives the native engine
// (native/dataplane.c), which does the per-packet work in C, one turn at a time:
//
//        ┌──────────────────────────────────────────────────────────────────────────────────────────┐
//        │  dpTurn:  wait ─► receive step (UDP → open → TUN) ─► send step (TUN → seal → UDP), in C, │
//        │           turn after turn until there is something for this thread                       │
//        │           events out: packets to destinations without a session, frames for the main     │
//        │           thread (signaling, handshakes, mobility)                                       │
//        │  here:    events ─► held packets + 'miss' / 'datagram' messages to the main thread       │
//        │           control messages ─► dpInstall / dpPromote / dpEndpoint (+ held packets: dpSend)│
//        └──────────────────────────────────────────────────────────────────────────────────────────┘
//
// Why C for the packets and one thread (latency): between pings the thread sleeps and its caches go cold; the same
// steps cost ~150 µs more per round trip in JavaScript than in C on the test VM (bench/rtt.ts). A TUN write runs
// the receiving stack synchronously, so an echo reply or a TCP ACK is usually queued before the write returns; the
// send step that follows in the same turn takes it with no further wake-up. Under load each turn is one batch
// each way.
//
// What stays here, in TypeScript, is every decision: which sessions exist (installed by the main thread after its
// handshakes), when a responder's rekey takes over (the engine promotes it when the initiator is first seen using
// it, as promised by install), holding the first packets to a destination until its route and tunnel exist, and
// which frame types the main thread gets (TO_MAIN).
//
// Offloads (on unless the node runs with --no-offload, and only where the kernel accepts them):
//   - the TUN has IFF_VNET_HDR + TSO: one read brings a TCP segment of up to 64 KiB, cut into MTU-sized packets
//     with their own headers and checksums; each is sealed as its own capsule, as without TSO; with USO (6.2+) a
//     UDP GSO sender's super-frame arrives the same way and is cut into its datagrams;
//   - sends use UDP GSO: each run of equal-sized capsules to one peer is one send, split by the kernel (or, over
//     veth and bridges, delivered whole to a GRO socket);
//   - the socket has UDP_GRO: one receive brings up to 64 capsules; after opening, runs of one TCP flow (and with
//     USO, runs of equal-sized datagrams of one UDP flow) are merged back into one GSO packet per TUN write.
// Without them (older kernels, or the fallback switch) the same engine moves one packet per slot.
//
// Control messages from the main thread are polled with receiveMessageOnPort each time dpTurn returns; the main
// thread signals an eventfd that the engine's wait also sleeps on (dpTurn returns when it fires), so a worker sees
// a new session within microseconds, busy or idle.

import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { loadNativeAddon } from '../../native/addon.js';
import { installLimits } from '../../crypto/data-session.js';
import type { SessionKeys } from '../../crypto/handshake.js';
import { MessageType } from '../../protocol/constants.js';
import { formatIp, parseIp } from '../../protocol/ip.js';
import { BASE_V4, BASE_V6, PathMtuSearch } from './pmtu.js';
import { engineStatIndex, GLOBAL, MAX_PEER_SLOTS, StatsView } from './stats.js';

export interface WorkerInit {
  tunFd: number;
  udpFd: number;
  mtu: number;
  stats: SharedArrayBuffer;
  /** eventfd the main thread signals after posting a control message, so a blocked read returns at once. */
  wakeFd: number;
  /** The TUN carries virtio_net_hdr (and may deliver TSO segments, which the engine cuts into packets). */
  vnet: boolean;
  /** Send runs of equal-sized capsules as UDP GSO sends. */
  gso: boolean;
  /** The socket has UDP_GRO: receive buffers may hold many datagrams. */
  gro: boolean;
  /** The TUN took USO: UDP super-frames are read (and cut), runs of one UDP flow written as one USO packet. */
  uso: boolean;
  /** Counters of the policy filter (filter.ts FILTER_STATS). */
  filterStats: SharedArrayBuffer;
}

/** A peer as the worker sees it. `endpoint.addr` is 4 or 16 raw bytes. */
export interface WirePeer {
  slot: number;
  vip4: string | null;
  vip6: string | null;
  endpoint: { addr: Uint8Array; port: number };
}

/**
 * Control messages. `install` puts a session in the receive path, then (unless receiveOnly) in the send path, and
 * answers `installed`: whatever we send under new keys can draw an answer we can open.
 */
export type ToWorker =
  | { op: 'install'; peer: WirePeer; keys: SessionKeys; receiveOnly: boolean; reply?: { data: Uint8Array; to: WirePeer['endpoint'] } }
  /** Send on the session installed last for `slot` now (a new path replaced one that may be dead). */
  | { op: 'promote'; slot: number }
  /** Mobility: the peer moved (or we did and must use another of its addresses); same session. */
  | { op: 'endpoint'; slot: number; endpoint: WirePeer['endpoint'] }
  /** The peer in `slot` is forgotten (the slot will serve another peer). */
  | { op: 'remove'; slot: number }
  /** We moved: learn every peer's path MTU again. */
  | { op: 'relearn' }
  /** The policy: what the peer in `slot` may open to us (filter.ts encodeRules; null = everything). */
  | { op: 'filter'; slot: number; rules: Uint8Array | null }
  | { op: 'stop' };

export type FromWorker =
  | { op: 'datagram'; data: Uint8Array; family: 4 | 6; addr: Uint8Array; port: number }
  | { op: 'miss'; dst: string }
  | { op: 'installed'; pathId: bigint }
  | { op: 'stopped' }
  | { op: 'error'; message: string };

/** Tunable: poll timeout of the blocking wait (ms); control messages also wake it through the eventfd. */
const POLL_MS = 250;
/** Tunable: at most one route-selection request per unknown destination per this many ms. */
const MISS_INTERVAL_MS = 1000;
/** Tunable: packets held per destination while its route and tunnel are being set up (then sent in order). */
const MISS_QUEUE_PACKETS = 16;
/** Tunable: how long held packets stay useful (ms); older ones are dropped when the session arrives. */
const MISS_QUEUE_MS = 3000;
/** Tunable: destinations with held packets at once; past it, all held packets are dropped (bounded memory). */
const MISS_QUEUE_DESTINATIONS = 256;
/** Bytes of events one turn may report (a full TUN batch of misses plus frames for the main thread). */
const EVENT_BYTES = 1 << 20;
/** Event record layout (native/dataplane.c): kind, 0, length u16 BE, 20 bytes of meta, then the data. */
const EVENT_HEAD = 24;
const EVENT_MISS = 1;
const EVENT_DATAGRAM = 2;
const EVENT_PROBE_ACK = 3;
/** Tunable: how often the worker advances the path MTU searches and re-reads the kernel's path MTUs (ms). */
const PMTU_TICK_MS = 100;
/** Tunable: the kernel's path MTU toward each peer is re-read at least this often (ms). */
const PMTU_KERNEL_MS = 1000;
/** Outer bytes a capsule adds to an inner packet besides the outer IP header: UDP 8 + header 28 + tag 16. */
const CAPSULE_OVERHEAD = 52;

/** The endpoint is IPv4 (4 bytes, or IPv4-mapped on the dual-stack socket). */
function isV4(addr: Uint8Array): boolean {
  if (addr.length === 4) return true;
  for (let i = 0; i < 10; i++) if (addr[i] !== 0) return false;
  return addr[10] === 0xff && addr[11] === 0xff;
}

/** Path MTU discovery of each peer slot with a session (pmtu.ts drives the search; the engine sends and answers). */
class PathMtus {
  readonly #slots = new Map<number, { search: PathMtuSearch; endpoint: string; kernel: number; readAt: number; plp: number; tx: number }>();
  #lastTick = 0;
  #ids = 1;

  constructor(
    private readonly native: NonNullable<ReturnType<typeof loadNativeAddon>>,
    private readonly engine: ReturnType<NonNullable<ReturnType<typeof loadNativeAddon>>['dpCreate']>,
    private readonly mtu: number,
    private readonly stats: StatsView,
  ) {}

  /** A session for `slot`, or (moved) the peer's new endpoint: a new path, or a move, starts a new search. */
  path(slot: number, endpoint: WirePeer['endpoint'], now: number, moved = false): void {
    const key = `${Buffer.from(endpoint.addr).toString('hex')}:${endpoint.port}`;
    const cur = this.#slots.get(slot);
    if (cur && cur.endpoint === key && !moved) return;
    const v4 = isV4(endpoint.addr);
    const max = this.mtu + (v4 ? 20 : 40) + CAPSULE_OVERHEAD;
    const search = new PathMtuSearch(max, v4 ? BASE_V4 : BASE_V6, now, (this.#ids += 0x10000));
    this.#slots.set(slot, { search, endpoint: key, kernel: 0, readAt: 0, plp: -1, tx: 0 });
  }

  /** Our end moved: every search starts over (the kernel's MTUs are re-read at the next tick). */
  relearn(now: number): void {
    for (const s of this.#slots.values()) {
      s.search.restart(now);
      s.readAt = 0;
    }
  }

  /** The slot's peer is gone (its slot will serve another): no more probes for it. */
  forget(slot: number): void {
    this.#slots.delete(slot);
  }

  ack(slot: number, id: number, size: number, now: number): void {
    this.#slots.get(slot)?.search.ack(id, size, now);
  }

  tick(now: number): void {
    if (now - this.#lastTick < PMTU_TICK_MS) return;
    this.#lastTick = now;
    for (const [slot, s] of this.#slots) {
      if (s.plp !== s.search.plpmtu || now - s.readAt >= PMTU_KERNEL_MS) {
        s.kernel = this.native.dpPmtu(this.engine, slot, s.search.plpmtu);
        s.plp = s.search.plpmtu;
        s.readAt = now;
      }
      const before = s.search.blackHoles;
      // Busy: more sent since the last confirmation than probes and acks alone would make.
      const tx = this.stats.peer(slot).txPackets;
      const probe = s.search.tick(now, s.kernel, tx - s.tx > 3);
      if (probe && s.search.phase === 'confirm') s.tx = tx + 1;
      if (s.search.blackHoles > before) this.stats.a[this.stats.global(GLOBAL.pmtuBlackHoles)]! += 1;
      if (probe) {
        if (this.native.dpProbe(this.engine, slot, probe.size, probe.id)) this.stats.a[this.stats.global(GLOBAL.pmtuProbes)]! += 1;
        else s.search.restart(now + PMTU_KERNEL_MS); // no session to probe with (expired, slot idle): nothing learned
      }
      if (s.plp !== s.search.plpmtu) {
        s.kernel = this.native.dpPmtu(this.engine, slot, s.search.plpmtu);
        s.plp = s.search.plpmtu;
      }
    }
  }
}

/** Message types the main thread handles (NMS replies and pushes, tunnel handshakes); anything else is dropped in C. */
const TO_MAIN = [
  MessageType.RegistrationResponse,
  MessageType.KeepaliveAck,
  MessageType.PolicyUpdate,
  MessageType.DirectoryPage,
  MessageType.DirectoryNotice,
  MessageType.RouteDirectionResponder,
  MessageType.RouteDirectionInitiator,
  MessageType.TunnelRequest,
  MessageType.TunnelResponse,
  MessageType.RelayBindAck,
  MessageType.Ack,
  MessageType.Nack,
  // Mobility (node/mobility.ts): endpoint updates from a peer that moved, and their acks.
  MessageType.EndpointUpdate,
  MessageType.EndpointUpdateAck,
  // Path probes before a full TunnelRequest goes to an unverified endpoint (channel/path-probe.ts).
  MessageType.PathProbe,
  MessageType.PathProbeAck,
  // `node netcheck`: the NMS's probe tickets and the TRS's answers to our probes (node/relay-probe.ts).
  MessageType.RelayTicketResponse,
  MessageType.RelayProbeAck,
];

/** Applies control messages one by one; a bad one is reported and skipped, never fatal to the loop. */
function drain(port: NonNullable<typeof parentPort>, apply: (msg: ToWorker) => void): void {
  for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) {
    try {
      apply(m.message as ToWorker);
    } catch (err) {
      port.postMessage({ op: 'error', message: `control message refused: ${err instanceof Error ? err.message : String(err)}` } satisfies FromWorker);
    }
  }
}

/** Canonical text of an address given as text (the held-packet key; the engine reports raw bytes, formatted alike). */
function addressKey(text: string): string {
  const raw = parseIp(text);
  if (!raw) throw new TypeError(`not an IP address: ${text}`);
  return formatIp(raw);
}

/** Packets to destinations without a session yet, kept until the install that brings one (bounded). */
class HeldPackets {
  readonly #held = new Map<string, { since: number; packets: Buffer[] }>();
  readonly #lastMiss = new Map<string, number>();

  /** Keeps a copy of `packet`; true when the main thread should be asked for a route (rate-limited per destination). */
  hold(dst: string, packet: Uint8Array, now: number): boolean {
    let q = this.#held.get(dst);
    if (q && now - q.since > MISS_QUEUE_MS) q = undefined;
    if (!q) {
      if (this.#held.size >= MISS_QUEUE_DESTINATIONS) this.#held.clear();
      q = { since: now, packets: [] };
      this.#held.set(dst, q);
    }
    if (q.packets.length < MISS_QUEUE_PACKETS) q.packets.push(Buffer.from(packet));
    if ((this.#lastMiss.get(dst) ?? 0) + MISS_INTERVAL_MS > now) return false;
    if (this.#lastMiss.size > 4096) this.#lastMiss.clear();
    this.#lastMiss.set(dst, now);
    return true;
  }

  /** The packets held for `dst` that are still fresh (and forgets them). */
  take(dst: string, now: number): Buffer[] {
    const q = this.#held.get(dst);
    if (!q) return [];
    this.#held.delete(dst);
    return now - q.since > MISS_QUEUE_MS ? [] : q.packets;
  }
}

function run(): void {
  const init = workerData as WorkerInit;
  const port = parentPort!;
  const native = loadNativeAddon();
  if (!native) throw new Error('native addon unavailable');
  native.setNonblocking(init.tunFd);
  const toMain = new Uint8Array(256);
  for (const t of TO_MAIN) toMain[t] = 1;
  const stats = new StatsView(init.stats);
  const filter = native.filterCreate(MAX_PEER_SLOTS, new Float64Array(init.filterStats));
  const engine = native.dpCreate({
    tunFd: init.tunFd,
    udpFd: init.udpFd,
    wakeFd: init.wakeFd,
    mtu: init.mtu,
    vnet: init.vnet,
    gso: init.gso,
    gro: init.gro,
    uso: init.uso,
    maxSlots: MAX_PEER_SLOTS,
    stats: stats.a,
    statIndex: engineStatIndex(),
    toMain,
    filter,
  });
  const held = new HeldPackets();
  const pmtus = new PathMtus(native, engine, init.mtu, stats);
  const events = Buffer.allocUnsafe(EVENT_BYTES);
  const pathId = Buffer.alloc(8);

  const install = (msg: Extract<ToWorker, { op: 'install' }>): void => {
    const { peer, keys } = msg;
    pathId.writeBigUInt64BE(keys.pathId);
    const vip4 = (peer.vip4 ? parseIp(peer.vip4) : null) ?? null;
    const vip6 = (peer.vip6 ? parseIp(peer.vip6) : null) ?? null;
    const now = Date.now();
    native.dpInstall(engine, peer.slot, pathId, keys.send, keys.recv, keys.initiator, msg.receiveOnly, vip4, vip6, peer.endpoint.addr, peer.endpoint.port, installLimits(keys, now));
    if (msg.receiveOnly) return;
    pmtus.path(peer.slot, peer.endpoint, now);
    for (const vip of [peer.vip4, peer.vip6]) {
      if (vip) for (const pkt of held.take(addressKey(vip), now)) native.dpSend(engine, peer.slot, pkt);
    }
  };

  let running = true;
  const control = (): void =>
    drain(port, (msg) => {
      if (msg.op === 'stop') running = false;
      else if (msg.op === 'promote') native.dpPromote(engine, msg.slot);
      else if (msg.op === 'relearn') pmtus.relearn(Date.now());
      else if (msg.op === 'endpoint') {
        native.dpEndpoint(engine, msg.slot, msg.endpoint.addr, msg.endpoint.port);
        pmtus.path(msg.slot, msg.endpoint, Date.now(), true); // a move: the path MTU is learned again
      } else if (msg.op === 'remove') {
        native.dpRemove(engine, msg.slot);
        native.filterForget(filter, msg.slot);
        pmtus.forget(msg.slot);
      } else if (msg.op === 'filter') native.filterSet(filter, msg.slot, msg.rules);
      else if (msg.op === 'install') {
        install(msg);
        // A responder's TunnelResponse leaves from here, the moment its session can open the first capsule (one
        // thread hop sooner than from the main thread).
        if (msg.reply) native.udpSend(init.udpFd, Buffer.from(msg.reply.data.buffer, msg.reply.data.byteOffset, msg.reply.data.byteLength), 0, msg.reply.data.byteLength, msg.reply.to.addr, msg.reply.to.port);
        port.postMessage({ op: 'installed', pathId: msg.keys.pathId } satisfies FromWorker);
      }
    });

  const onEvents = (count: number): void => {
    const now = Date.now();
    for (let at = 0, i = 0; i < count; i++) {
      const kind = events[at]!;
      const len = events.readUInt16BE(at + 2);
      const meta = at + 4;
      const data = events.subarray(at + EVENT_HEAD, at + EVENT_HEAD + len);
      at += EVENT_HEAD + len;
      if (kind === EVENT_PROBE_ACK) {
        if (len >= 10) pmtus.ack(events.readUInt16BE(meta), data.readUInt32BE(4), data.readUInt16BE(8), now);
        continue;
      }
      const fam = events[meta] === 6 ? 6 : 4;
      const addr = events.subarray(meta + 4, meta + (fam === 4 ? 8 : 20));
      if (kind === EVENT_MISS) {
        const dst = formatIp(addr);
        if (held.hold(dst, data, now)) port.postMessage({ op: 'miss', dst } satisfies FromWorker);
      } else if (kind === EVENT_DATAGRAM) {
        port.postMessage({
          op: 'datagram',
          data: Uint8Array.prototype.slice.call(data),
          family: fam,
          addr: Uint8Array.prototype.slice.call(addr),
          port: events.readUInt16BE(meta + 2),
        } satisfies FromWorker);
      }
    }
  };

  try {
    while (running) {
      // Returns when there is something for this thread: events, a control message (eventfd), or a quiet POLL_MS.
      const r = native.dpTurn(engine, POLL_MS, events);
      const evCount = Math.floor(r / 16);
      if (evCount > 0) onEvents(evCount);
      control();
      pmtus.tick(Date.now());
    }
  } finally {
    native.dpDestroy(engine);
  }
  port.postMessage({ op: 'stopped' } satisfies FromWorker);
}

try {
  run();
} catch (err) {
  parentPort?.postMessage({ op: 'error', message: err instanceof Error ? err.message : String(err) } satisfies FromWorker);
}
