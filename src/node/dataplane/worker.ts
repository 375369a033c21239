// The data-plane hot path: ONE worker thread carries both directions, in a synchronous loop (no event loop turns):
//
//        ┌──────────────────────────────────────────────────────────────────────────────────────────┐
//        │  outside: recvmmsg (non-blocking) ─► capsule? open by path id (AEAD + replay window)     │
//        │                                     ─► TUN writes per batch                              │
//        │                                     └─ anything else (signaling, handshakes) ─► main     │
//        │  inside:  TUN read (non-blocking) ─► route by destination virtual IP ─► seal with the    │
//        │           peer's End Key into one buffer ─► sendmmsg per run of packets to one peer      │
//        │  both empty? ─► waitAny(TUN, UDP, wake eventfd): sleep (optional bounded spin: SPIN_US)  │
//        └──────────────────────────────────────────────────────────────────────────────────────────┘
//
// Why one thread and this order (latency): a TUN write runs the receiving stack synchronously, so an ICMP echo
// reply or a TCP ACK is usually queued on the TUN before tunWriteMany returns; the inside step that follows in the
// same turn seals and sends it while the thread is still warm — no sleep, no wake-up, no second thread. A worker
// that slept pays tens of µs for every cold step (bench/cold-path.ts), so a ping now crosses two cold wake-ups
// (one per node) instead of four. Under load, each turn is one batch each way, as with two threads.
//
// Offloads (on unless the node runs with --no-offload, and only where the kernel accepts them):
//   - the TUN has IFF_VNET_HDR + TSO: one read brings a TCP segment of up to 64 KiB, which vnetSegment cuts into
//     MTU-sized packets with their own headers and checksums; each is sealed as its own capsule, as without TSO;
//   - sends use UDP GSO: each run of equal-sized capsules to one peer is one send, split by the kernel (or, over
//     veth and bridges, delivered whole to a GRO socket);
//   - the socket has UDP_GRO: one receive brings up to 64 capsules; after opening, runs of one TCP flow are merged
//     back into one GSO packet per TUN write (tunWriteMany).
// Without them (older kernels, or the fallback switch) the same loop moves one packet per slot.
//
// Control messages from the main thread (install a session, stop) are polled with receiveMessageOnPort between
// batches; the main thread signals an eventfd that waitAny also sleeps on, so an idle worker sees a new session
// within microseconds, not at its next poll timeout.

import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { DataSession, type AeadFactory } from '../../crypto/data-session.js';
import { FastAeadKey, loadNativeAddon, type NativeAddon } from '../../crypto/fast-aead.js';
import type { SessionKeys } from '../../crypto/handshake.js';
import { HEADER_LEN, MessageType, PROTOCOL_VERSION } from '../../protocol/constants.js';
import { HEADER_OFFSETS } from '../../protocol/header.js';
import { GLOBAL, SLOT, StatsView } from './stats.js';
import { dst4, dst6, formatKey, key4, key6 } from './packet.js';

export interface WorkerInit {
  tunFd: number;
  udpFd: number;
  mtu: number;
  stats: SharedArrayBuffer;
  /** eventfd the main thread signals after posting a control message, so a blocked read returns at once. */
  wakeFd: number;
  /** The TUN carries virtio_net_hdr (and may deliver TSO segments): read through vnetSegment, write with headroom. */
  vnet: boolean;
  /** Send runs of equal-sized capsules as UDP GSO sends. */
  gso: boolean;
  /** The socket has UDP_GRO: receive buffers may hold many datagrams. */
  gro: boolean;
  /** Bounded spin (µs) before sleeping after a turn that moved packets; 0 = sleep at once. See SPIN_US. */
  spinUs: number;
}

/** A peer as the workers see it. `endpoint.addr` is 4 or 16 raw bytes. */
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
  | { op: 'install'; peer: WirePeer; keys: SessionKeys; receiveOnly: boolean }
  /** Send on the session installed last for `slot` now (a new path replaced one that may be dead). */
  | { op: 'promote'; slot: number }
  /** Mobility: the peer moved (or we did and must use another of its addresses); same session. */
  | { op: 'endpoint'; slot: number; endpoint: WirePeer['endpoint'] }
  | { op: 'stop' };

export type FromWorker =
  | { op: 'datagram'; data: Uint8Array; family: 4 | 6; addr: Uint8Array; port: number }
  | { op: 'miss'; dst: string }
  | { op: 'installed'; pathId: bigint }
  | { op: 'stopped' }
  | { op: 'error'; message: string };

/**
 * Tunable: after a turn that moved packets, look again without sleeping for up to this many µs before blocking.
 * A reply that comes back within it finds the thread awake. Bounded: at most one spin per burst of activity,
 * never while idle. Off: on the 2-vCPU test VM neither 50 nor 200 µs paid (bench/rtt.ts) — the caches go cold
 * during a busy wait too, and a spinning thread takes a CPU from the peer it waits for. DataPlaneInit.spinUs.
 */
export const SPIN_US = 0;
/** Tunable: poll timeout of the blocking wait (ms); control messages also wake it through the eventfd. */
const POLL_MS = 250;
/** Tunable: control messages are polled at least every this many packets. */
const POLL_EVERY = 256;
/** Tunable: at most one route-selection request per unknown destination per this many ms. */
const MISS_INTERVAL_MS = 1000;
/** Tunable: packets held per destination while its route and tunnel are being set up (then sent in order). */
const MISS_QUEUE_PACKETS = 16;
/** Tunable: how long held packets stay useful (ms); older ones are dropped when the session arrives. */
const MISS_QUEUE_MS = 3000;
/** Tunable: packets per batch (read from the TUN, or datagrams per recvmmsg). The addon caps it at 64. */
const BATCH = 64;
/** Tunable: TUN reads per batch with offload (each up to 64 KiB). */
const VNET_BATCH = 8;
/** Largest packet a vnet TUN read returns: virtio_net_hdr + a 64 KiB IP packet (+ slack; the addon's maximum). */
const VNET_SLOT = 65536 + 256;
/** Packets one TSO segment may be cut into (gso_size down to 65535/160 ≈ 410 bytes; smaller ones are dropped). */
const SEG_SLOTS = 160;
/** Capsules sent per udpSendMany call (the addon's maximum). */
const SEND_MAX = 256;
/** Bytes in front of each packet written to a vnet TUN (its virtio_net_hdr). */
const VNET_HDR_LEN = 10;
/** Tunable: receive slot per datagram: capsules (MTU + 44) and signaling (certificates: a few KiB). */
const UDP_SLOT = 4096;
/** Receive layout with UDP_GRO: buffers of a whole GRO packet, up to 64 datagrams each. */
const GRO_SLOT = 65536;
const GRO_BUFFERS = 16;
/** Tunable: capsules kept per path in the receive direction (current + previous across a rekey). */
const RECV_GENERATIONS = 2;

const fastAead: AeadFactory = (key) => new FastAeadKey(key);

/** Message types the main thread handles (NMS replies and pushes, tunnel handshakes); anything else is dropped here. */
const TO_MAIN = new Set<number>([
  MessageType.RegistrationResponse,
  MessageType.KeepaliveAck,
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
]);

/** Buffers arrive from postMessage as plain Uint8Arrays: give the session real Buffers back. */
function sessionFrom(k: SessionKeys): DataSession {
  return new DataSession({ ...k, send: Buffer.from(k.send), recv: Buffer.from(k.recv), peerCertDer: Buffer.from(k.peerCertDer) }, fastAead);
}

/**
 * Tunable: seal+open rounds run on a throw-away session pair when the worker starts, so that V8 has optimized the
 * session code (DataSession, the AEAD wrapper, the replay window) before the first real packet. Optimized code is
 * a fraction of the interpreter's instruction footprint, and on a machine whose caches and TLBs are cold after
 * every idle gap (bench/cold-path.ts), footprint is latency: ~100 µs less per ping. Costs ~0.1 s of CPU at start.
 */
const WARMUP_ROUNDS = 20_000;
/**
 * Tunable: V8's tier-up budget (--interrupt-budget, bytecode executed before a function is considered for
 * optimization; V8's default is ~66 000). The loop's own closures run once per packet, and at ping rates they
 * would stay in the interpreter for a long time: lower, they are optimized after a few dozen packets. The flag is
 * process-wide (the main thread optimizes sooner too) and only changes when code is optimized, never what it does.
 * Measured with bench/rtt.ts: ~100 µs less added RTT.
 */
const TIER_UP_BUDGET = 2000;
/** Tunable: warm-up rounds per idle turn of the loop (a few ms), so control messages never wait for all of it. */
const WARMUP_CHUNK = 1000;

/** The warm-up as steps run while the loop is idle; each returns whether rounds remain. Never throws. */
function warmUp(): () => boolean {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  const base = { pathId: 0xfeedn, peerNodeId: 0, peerCertDer: Buffer.alloc(0), establishedAt: 0 };
  const a = new DataSession({ ...base, initiator: true, send: k1, recv: k2 }, fastAead);
  const b = new DataSession({ ...base, initiator: false, send: k2, recv: k1 }, fastAead);
  const pkt = Buffer.alloc(84);
  pkt[0] = 0x45;
  const sealed = Buffer.allocUnsafe(256);
  const plain = Buffer.allocUnsafe(256);
  let left = WARMUP_ROUNDS;
  return () => {
    try {
      for (const end = Math.max(0, left - WARMUP_CHUNK); left > end; left--) {
        const n = a.sealInto(pkt, sealed, 0);
        if (b.tryOpenInto(sealed.subarray(0, n), plain, 0) !== pkt.length || dst4(plain, pkt.length) < 0) left = 0;
      }
    } catch {
      left = 0; // only a cost saving: give up quietly
    }
    return left > 0;
  };
}

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

/** One direction of the loop: `install` takes its part of a session, `pump` moves one batch without blocking. */
interface Path {
  install(msg: Extract<ToWorker, { op: 'install' }>): void;
  /** Reads and handles whatever is queued (one batch); returns how many packets or datagrams it took. */
  pump(): number;
}

function run(): void {
  const init = workerData as WorkerInit;
  const port = parentPort!;
  const native = loadNativeAddon();
  if (!native) throw new Error('native addon unavailable');
  const stats = new StatsView(init.stats);
  native.setNonblocking(init.tunFd);
  setFlagsFromString(`--interrupt-budget=${TIER_UP_BUDGET}`);
  let warming: (() => boolean) | null = warmUp();
  const send = inside(init, native, stats, port);
  const recv = outside(init, native, stats, port, (slot) => send.promote(slot));
  let running = true;
  const control = (): void =>
    drain(port, (msg) => {
      if (msg.op === 'stop') running = false;
      else if (msg.op === 'promote') send.promote(msg.slot);
      else if (msg.op === 'endpoint') send.endpoint(msg.slot, msg.endpoint);
      else if (msg.op === 'install') {
        recv.install(msg); // receive side first: an answer to what we send under the new keys can be opened
        send.install(msg);
        port.postMessage({ op: 'installed', pathId: msg.keys.pathId } satisfies FromWorker);
      }
    });

  let sincePoll = 0;
  let active = false;
  while (running) {
    // One poll says which queue has something (at once when busy; it sleeps only when both are empty).
    const bits = native.waitAny(init.tunFd, init.udpFd, init.wakeFd, warming ? 0 : POLL_MS, active ? init.spinUs : 0);
    // Receive first; then always the send step: the TUN writes of the receive step may have queued replies (ICMP,
    // TCP ACKs) that it takes at once, in this turn.
    const moved = ((bits & 2) !== 0 ? recv.pump() : 0) + ((bits & 3) !== 0 ? send.pump() : 0);
    active = moved > 0;
    sincePoll += moved;
    if ((bits & 7) === 0 || (bits & 4) !== 0 || sincePoll >= POLL_EVERY) {
      sincePoll = 0;
      control();
    }
    if (warming && bits === 0 && !warming()) warming = null; // warm-up runs only in idle turns
  }
  port.postMessage({ op: 'stopped' } satisfies FromWorker);
}

interface InsidePeer {
  wire: WirePeer;
  session: DataSession | null;
  /** A responder's new session after a rekey: used for sending once the initiator is seen using it. */
  pending: DataSession | null;
  statsTx: number;
}

/** The send path (TUN → capsules → UDP). `promote` switches a peer to its pending session after a rekey. */
function inside(init: WorkerInit, native: NativeAddon, stats: StatsView, port: NonNullable<typeof parentPort>): Path & { promote(slot: number): void; endpoint(slot: number, to: WirePeer['endpoint']): void } {
  const by4 = new Map<number, InsidePeer>();
  const by6 = new Map<string, InsidePeer>();
  const bySlot = new Map<number, InsidePeer>();
  const lastMiss = new Map<number | string, number>();
  /** Packets to destinations without a session yet, flushed by the install that brings the session. */
  const held = new Map<number | string, { since: number; packets: Buffer[] }>();
  const flush = (k: number | string, p: InsidePeer): void => {
    const q = held.get(k);
    if (!q) return;
    held.delete(k);
    if (Date.now() - q.since > MISS_QUEUE_MS) return;
    for (const pkt of q.packets) send(p, pkt);
  };
  const slot = init.mtu + 64;
  const readSlot = init.vnet ? VNET_SLOT : slot;
  const readBatch = init.vnet ? VNET_BATCH : BATCH;
  const inBuf = Buffer.allocUnsafe(readSlot * readBatch);
  const inLens = new Uint32Array(readBatch);
  /** TSO segments cut into packets (vnet only). */
  const segBuf = Buffer.allocUnsafe(init.vnet ? slot * SEG_SLOTS : 0);
  const segLens = new Uint32Array(init.vnet ? SEG_SLOTS : 0);
  const frameRoom = slot + 64;
  const outMax = init.vnet ? SEND_MAX : BATCH;
  const outBuf = Buffer.allocUnsafe(frameRoom * outMax);
  const outOffs = new Uint32Array(outMax);
  const outLens = new Uint32Array(outMax);
  const one = Buffer.allocUnsafe(frameRoom);
  const a = stats.a;
  const gMiss = stats.global(GLOBAL.miss);
  const gSendErr = stats.global(GLOBAL.udpSendErrors);
  const gTsoDropped = stats.global(GLOBAL.tsoDropped);

  const install = (msg: Extract<ToWorker, { op: 'install' }>): void => {
    if (msg.receiveOnly) return;
    let p = bySlot.get(msg.peer.slot);
    if (!p) {
      p = { wire: msg.peer, session: null, pending: null, statsTx: stats.slot(msg.peer.slot, SLOT.txBytes) };
      bySlot.set(msg.peer.slot, p);
    }
    p.wire = msg.peer;
    const fresh = sessionFrom(msg.keys);
    if (p.session && !msg.keys.initiator && p.session.pathId === msg.keys.pathId) {
      // Rekey, responder side: the initiator may not have our answer yet; keep sending on the old keys until
      // the receive path sees it use the new ones (then promote). A session of another path (the peer
      // restarted, or a new route after a move) replaces the old one at once: nothing would promote it.
      p.pending = fresh;
    } else {
      p.session = fresh;
      p.pending = null;
      // Announce the new session at once so the peer may switch to it (an empty capsule).
      send(p, Buffer.alloc(0));
    }
    if (msg.peer.vip4) {
      by4.set(key4(msg.peer.vip4), p);
      flush(key4(msg.peer.vip4), p);
    }
    if (msg.peer.vip6) {
      by6.set(key6(msg.peer.vip6), p);
      flush(key6(msg.peer.vip6), p);
    }
  };

  /** Mobility: the peer moved (or we did and must use another of its addresses); same session. */
  const endpoint = (slot: number, to: WirePeer['endpoint']): void => {
    const p = bySlot.get(slot);
    if (p) p.wire = { ...p.wire, endpoint: to };
  };

  const promote = (slot: number): void => {
    const p = bySlot.get(slot);
    if (p?.pending) {
      p.session = p.pending;
      p.pending = null;
    }
  };

  /** One capsule outside a batch (session announcements, held packets). */
  const send = (p: InsidePeer, packet: Buffer): void => {
    const len = p.session!.sealInto(packet, one, 0);
    const n = native.udpSend(init.udpFd, one, 0, len, p.wire.endpoint.addr, p.wire.endpoint.port);
    if (n < 0) a[gSendErr]!++;
    else {
      a[p.statsTx] = a[p.statsTx]! + packet.length;
      a[p.statsTx + 2]!++;
    }
  };

  // The batch being built: consecutive capsules for one peer, sent with one sendmmsg.
  let batchPeer: InsidePeer | null = null;
  let nb = 0;
  let used = 0;
  let batchBytes = 0;
  const flushBatch = (): void => {
    const p = batchPeer;
    if (p && nb > 0) {
      const n = native.udpSendMany(init.udpFd, outBuf, outOffs, outLens, nb, p.wire.endpoint.addr, p.wire.endpoint.port, init.gso);
      if (n < nb) a[gSendErr] = a[gSendErr]! + (nb - Math.max(0, n));
      a[p.statsTx] = a[p.statsTx]! + batchBytes;
      a[p.statsTx + 2] = a[p.statsTx + 2]! + Math.max(0, n);
    }
    batchPeer = null;
    nb = 0;
    used = 0;
    batchBytes = 0;
  };

  const miss = (k: number | string, packet: Buffer): void => {
    a[gMiss]!++;
    const now = Date.now();
    let q = held.get(k);
    if (q && now - q.since > MISS_QUEUE_MS) q = undefined;
    if (!q) {
      if (held.size >= 256) held.clear(); // bounded: many unknown destinations just lose their first packets
      q = { since: now, packets: [] };
      held.set(k, q);
    }
    if (q.packets.length < MISS_QUEUE_PACKETS) q.packets.push(Buffer.from(packet));
    if ((lastMiss.get(k) ?? 0) + MISS_INTERVAL_MS > now) return;
    lastMiss.set(k, now);
    if (lastMiss.size > 4096) lastMiss.clear();
    port.postMessage({ op: 'miss', dst: formatKey(k) } satisfies FromWorker);
  };

  /** Routes one plain IP packet to its peer's batch (or holds it while the route is set up). */
  const route = (pkt: Buffer, n: number): void => {
    let p: InsidePeer | undefined;
    const k4 = dst4(pkt, n);
    let key: number | string = k4;
    if (k4 >= 0) p = by4.get(k4);
    else {
      const k6 = dst6(pkt, n);
      if (k6 === null) return; // not IP: nothing to route
      key = k6;
      p = by6.get(k6);
    }
    if (!p || !p.session) {
      miss(key, pkt);
      return;
    }
    if (p !== batchPeer || nb === outMax) {
      flushBatch();
      batchPeer = p;
    }
    try {
      const len = p.session.sealInto(pkt, outBuf, used);
      outOffs[nb] = used;
      outLens[nb] = len;
      nb++;
      used += len;
      batchBytes += n;
    } catch {
      a[gSendErr]!++; // session exhausted: the main thread rekeys on time well before this
    }
  };

  const pump = (): number => {
    const count = native.tunReadMany(init.tunFd, inBuf, readSlot, inLens, 0);
    for (let i = 0; i < count; i++) {
      const n = inLens[i]!;
      if (!init.vnet) {
        route(inBuf.subarray(i * slot, i * slot + n), n);
        continue;
      }
      const at = i * readSlot;
      if (inBuf[at] === 0 && inBuf[at + 1] === 0 && n > VNET_HDR_LEN && n - VNET_HDR_LEN <= slot) {
        // No GSO, no checksum to complete (flags and gso_type 0): the packet follows the header as it is.
        route(inBuf.subarray(at + VNET_HDR_LEN, at + n), n - VNET_HDR_LEN);
        continue;
      }
      const segs = native.vnetSegment(inBuf, at, n, segBuf, slot, segLens);
      if (segs <= 0) {
        a[gTsoDropped]!++;
        continue;
      }
      for (let j = 0; j < segs; j++) route(segBuf.subarray(j * slot, j * slot + segLens[j]!), segLens[j]!);
    }
    flushBatch();
    return count;
  };

  return { install, promote, endpoint, pump };
}

/** The receive path (UDP → capsules opened → TUN; other frames → main thread). */
function outside(init: WorkerInit, native: NativeAddon, stats: StatsView, port: NonNullable<typeof parentPort>, promote: (slot: number) => void): Path {
  /** Receive sessions by path id, newest first, with the peer slot they count to. */
  const paths = new Map<bigint, { slot: number; sessions: DataSession[]; awaiting: DataSession | null }>();
  const recvSlot = init.gro ? GRO_SLOT : UDP_SLOT;
  const recvBuffers = init.gro ? GRO_BUFFERS : BATCH;
  const maxDatagrams = init.gro ? GRO_BUFFERS * 64 : BATCH;
  const buf = Buffer.allocUnsafe(recvSlot * recvBuffers);
  const offs = new Uint32Array(maxDatagrams);
  const lens = new Uint32Array(maxDatagrams);
  const metas = new Uint8Array(20 * maxDatagrams);
  // Opened packets of one receive batch, each with room for a virtio_net_hdr in front, written with tunWriteMany.
  const head = init.vnet ? VNET_HDR_LEN : 0;
  const tunBuf = Buffer.allocUnsafe(maxDatagrams * (init.mtu + 64 + head) + GRO_SLOT);
  const tunOffs = new Uint32Array(maxDatagrams);
  const tunLens = new Uint32Array(maxDatagrams);
  const scratch = Buffer.allocUnsafe(init.vnet ? GRO_SLOT + 64 : 1);
  let nt = 0;
  let tunUsed = 0;
  const a = stats.a;
  const g = (f: number): number => stats.global(f);

  const install = (msg: Extract<ToWorker, { op: 'install' }>): void => {
    const entry = paths.get(msg.keys.pathId) ?? { slot: msg.peer.slot, sessions: [], awaiting: null };
    entry.slot = msg.peer.slot;
    const fresh = sessionFrom(msg.keys);
    // A responder's new session (a rekey, or a new path after the peer restarted): the send path keeps the slot's
    // current session until the initiator is seen using this one, then switches. (A first session is sent on at once.)
    entry.awaiting = !msg.keys.initiator && !msg.receiveOnly ? fresh : null;
    entry.sessions.unshift(fresh);
    entry.sessions.length = Math.min(entry.sessions.length, RECV_GENERATIONS);
    paths.set(msg.keys.pathId, entry);
  };

  const flushTun = (): void => {
    if (nt === 0) return;
    const w = native.tunWriteMany(init.tunFd, tunBuf, tunOffs, tunLens, nt, init.vnet, scratch);
    if (w < nt) a[g(GLOBAL.tunWriteErrors)] = a[g(GLOBAL.tunWriteErrors)]! + (nt - w);
    nt = 0;
    tunUsed = 0;
  };

  /** Datagram i of the batch: `frame`, its source at metas[m..m+20) (read only for frames that go to the main thread). */
  const one = (frame: Buffer, m: number): void => {
    const n = frame.length;
    if (n >= HEADER_LEN && frame[1] === MessageType.Capsule) {
      const entry = paths.get(frame.readBigUInt64BE(HEADER_OFFSETS.id));
      if (!entry) {
        a[g(GLOBAL.unknownPath)]!++;
        return;
      }
      if (nt === tunOffs.length || tunUsed + head + n > tunBuf.length) flushTun();
      const at = tunUsed + head;
      let r: number | string = 'badTag';
      for (const s of entry.sessions) {
        r = s.tryOpenInto(frame, tunBuf, at);
        if (typeof r === 'string') continue;
        if (s === entry.awaiting) {
          entry.awaiting = null;
          promote(entry.slot);
        }
        break;
      }
      if (typeof r === 'string') {
        a[g(GLOBAL[r as keyof typeof GLOBAL] ?? GLOBAL.malformed)]!++;
        return;
      }
      if (r === 0) {
        a[g(GLOBAL.keepaliveCapsules)]!++;
        return;
      }
      tunOffs[nt] = at;
      tunLens[nt] = r;
      nt++;
      tunUsed = at + r;
      const base = stats.slot(entry.slot, SLOT.rxBytes);
      a[base] = a[base]! + r;
      a[base + 2]!++;
      return;
    }
    if (n < HEADER_LEN || frame[HEADER_OFFSETS.version] !== PROTOCOL_VERSION || !TO_MAIN.has(frame[HEADER_OFFSETS.type]!)) {
      a[g(GLOBAL.malformed)]!++; // garbage costs a counter here, not a message to the main thread
      return;
    }
    const fam = metas[m] === 6 ? 6 : 4;
    port.postMessage({
      op: 'datagram',
      data: Uint8Array.prototype.slice.call(frame, 0, n),
      family: fam,
      addr: metas.slice(m + 4, m + (fam === 4 ? 8 : 20)),
      port: (metas[m + 2]! << 8) | metas[m + 3]!,
    } satisfies FromWorker);
  };

  const pump = (): number => {
    const count = native.udpRecvMany(init.udpFd, buf, recvSlot, offs, lens, metas, 0, undefined, init.gro);
    for (let i = 0; i < count; i++) {
      const n = lens[i]!;
      if (n === 0) {
        a[g(GLOBAL.malformed)]!++; // truncated: larger than any datagram we send
        continue;
      }
      one(buf.subarray(offs[i]!, offs[i]! + n), i * 20);
    }
    flushTun();
    return Math.max(0, count);
  };

  return { install, pump };
}

try {
  run();
} catch (err) {
  parentPort?.postMessage({ op: 'error', message: err instanceof Error ? err.message : String(err) } satisfies FromWorker);
}
