// Counters shared between the data-plane worker and the main thread without messages: one Float64Array over a
// SharedArrayBuffer, per-peer slots then global drop counters. The native engine adds to them in place
// (engineStatIndex says where); the main thread only reads.

import type { DataPlaneEngineInit } from '../../native/addon.js';

/** Tunable: peers one node can hold tunnels to at once (slots in the shared table). */
export const MAX_PEER_SLOTS = 1024;
/** Per-slot values. */
export const SLOT = { rxBytes: 0, txBytes: 1, rxPackets: 2, txPackets: 3, pmtu: 4 } as const;
const SLOT_WIDTH = 5;
/** Global counters after the slots (the send path writes miss/udpSend*, the receive path the rest; one worker). */
export const GLOBAL = {
  miss: 0,
  udpSendErrors: 1,
  noSession: 2,
  badTag: 3,
  replayed: 4,
  tooOld: 5,
  wrongPath: 6,
  malformed: 7,
  tunWriteErrors: 8,
  keepaliveCapsules: 9,
  unknownPath: 10,
  /** TUN reads with a virtio_net_hdr that could not be segmented (malformed, or segments too small). */
  tsoDropped: 11,
  /** Capsules that authenticated only under a session past its open limit (dropped). */
  expired: 12,
  /** Send sessions let go at their seal limit (the next packet is a miss unless a newer session takes over). */
  sealExpired: 13,
  /** Events (misses, frames for the main thread) dropped because one turn's event buffer was full. */
  eventsDropped: 14,
  /** A responder's unconfirmed sessions dropped because a path already held as many as the initiator has requests. */
  candidatesDropped: 15,
  /** Packets held in the engine while their slot's send session was a responder's, not yet used by the initiator. */
  queued: 16,
  /** Held packets dropped because the engine's queue was full (the oldest go). */
  queueDropped: 17,
  /** Capsules that opened but whose inner source is not a virtual address of the path's peer (dropped). */
  spoofed: 18,
  /** Datagrams of UDP GSO sends the kernel refused (EMSGSIZE: over the path MTU it knows), re-sent one by one. */
  gsoResegmented: 19,
  /** TCP super-packets from the TUN (TSO) cut into segments smaller than their gso_size because the peer's path is
   *  narrower, and IPv6 TCP segments of at most 1280 bytes (which no ICMP may refuse) cut to fit it. */
  tsoNarrowed: 20,
  /** ICMP "fragmentation needed" / ICMPv6 "packet too big" written to the TUN for packets over a peer's usable MTU. */
  pmtuIcmpSent: 21,
  /** IPv4 packets without DF over a peer's usable MTU, fragmented. */
  pmtuFragmented: 22,
  /** TCP SYNs (either direction) whose MSS was lowered to fit a peer's usable MTU. */
  mssClamped: 23,
  /** Packets over a peer's usable MTU that could be neither answered nor fragmented (e.g. ICMP errors): dropped. */
  pmtuTooBigDropped: 24,
  /** Path MTU probes from peers answered. */
  pmtuProbesAnswered: 25,
  /** Acks of our path MTU probes. */
  pmtuProbeAcks: 26,
  /** Path MTU probes sent (the worker's search, pmtu.ts). */
  pmtuProbes: 27,
  /** Probe searches that found the path narrower than it had been confirmed (black hole detected). */
  pmtuBlackHoles: 28,
  /** UDP super-frames (USO) read from the TUN, cut into datagrams. */
  usoFrames: 29,
  /** TUN writes that carried several packets merged into one GSO packet (TCP runs, or UDP runs with USO). */
  tunGsoWrites: 30,
} as const;
const GLOBAL_COUNT = 31;

/** Where the native engine (native/dataplane.c, dpCreate's statIndex) adds each counter in this layout. */
export function engineStatIndex(): DataPlaneEngineInit['statIndex'] {
  const g = (f: number): number => MAX_PEER_SLOTS * SLOT_WIDTH + f;
  return {
    slotWidth: SLOT_WIDTH,
    rxBytes: SLOT.rxBytes,
    txBytes: SLOT.txBytes,
    rxPackets: SLOT.rxPackets,
    txPackets: SLOT.txPackets,
    miss: g(GLOBAL.miss),
    udpSendErrors: g(GLOBAL.udpSendErrors),
    badTag: g(GLOBAL.badTag),
    replayed: g(GLOBAL.replayed),
    tooOld: g(GLOBAL.tooOld),
    malformed: g(GLOBAL.malformed),
    tunWriteErrors: g(GLOBAL.tunWriteErrors),
    keepaliveCapsules: g(GLOBAL.keepaliveCapsules),
    unknownPath: g(GLOBAL.unknownPath),
    tsoDropped: g(GLOBAL.tsoDropped),
    expired: g(GLOBAL.expired),
    sealExpired: g(GLOBAL.sealExpired),
    eventsDropped: g(GLOBAL.eventsDropped),
    candidatesDropped: g(GLOBAL.candidatesDropped),
    queued: g(GLOBAL.queued),
    queueDropped: g(GLOBAL.queueDropped),
    spoofed: g(GLOBAL.spoofed),
    pmtu: SLOT.pmtu,
    gsoResegmented: g(GLOBAL.gsoResegmented),
    tsoNarrowed: g(GLOBAL.tsoNarrowed),
    pmtuIcmpSent: g(GLOBAL.pmtuIcmpSent),
    pmtuFragmented: g(GLOBAL.pmtuFragmented),
    mssClamped: g(GLOBAL.mssClamped),
    pmtuTooBigDropped: g(GLOBAL.pmtuTooBigDropped),
    pmtuProbesAnswered: g(GLOBAL.pmtuProbesAnswered),
    pmtuProbeAcks: g(GLOBAL.pmtuProbeAcks),
    usoFrames: g(GLOBAL.usoFrames),
    tunGsoWrites: g(GLOBAL.tunGsoWrites),
  };
}

export function createStats(): SharedArrayBuffer {
  return new SharedArrayBuffer((MAX_PEER_SLOTS * SLOT_WIDTH + GLOBAL_COUNT) * 8);
}

export class StatsView {
  readonly a: Float64Array;
  constructor(sab: SharedArrayBuffer) {
    this.a = new Float64Array(sab);
  }
  slot(slot: number, field: number): number {
    return slot * SLOT_WIDTH + field;
  }
  global(field: number): number {
    return MAX_PEER_SLOTS * SLOT_WIDTH + field;
  }
  peer(slot: number): { rxBytes: number; txBytes: number; rxPackets: number; txPackets: number; pmtu: number } {
    const b = slot * SLOT_WIDTH;
    return { rxBytes: this.a[b]!, txBytes: this.a[b + 1]!, rxPackets: this.a[b + 2]!, txPackets: this.a[b + 3]!, pmtu: this.a[b + 4]! };
  }
  globals(): Record<keyof typeof GLOBAL, number> {
    const out = {} as Record<keyof typeof GLOBAL, number>;
    for (const [k, i] of Object.entries(GLOBAL)) out[k as keyof typeof GLOBAL] = this.a[this.global(i)]!;
    return out;
  }
}
