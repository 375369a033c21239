// The adapter's LAN port: whole Ethernet frames in and out of one interface through an AF_PACKET socket
// (native packetOpen) with PACKET_VNET_HDR, so every frame read says what offloads left undone. A worker thread
// (src/util/reader-thread.ts, lan-reader.ts) blocks in the native lanRecv, which cuts GRO/TSO super-frames into
// wire-size frames and completes partial checksums (native/lan_frames.c), and posts batches of frames to the main
// thread; the main thread writes frames directly (one write per frame, behind an empty virtio_net_hdr). A plain ARP
// request or Neighbor Solicitation for an address in the fast proxy table (setFastProxy, kept by the LAN service)
// is answered by lanRecv itself on the reader thread (native/lan_proxy.c) and never reaches the main thread; so is
// a general node's plain TCP/UDP packet to a known peer, carried by lanRecv into its engine's packet pair (the IP
// fast path, native/lan_fast.c, table from setFastPath), whose pair reader sends the answers straight back here.
//
//   LAN iface ─► packet socket ─► reader worker: lanRecv (segment, checksum; batch ≤ 128) ─► postMessage ─► onFrames
//   send(frame) ─► lanSend(fd) ─► LAN iface

import { readFileSync } from 'node:fs';
import type { NativeAddon } from '../native/addon.js';
import { requireNative } from '../net/tun/native.js';
import { Counters } from '../util/counters.js';
import { CyphonicError } from '../util/errors.js';
import { ReaderThread } from '../util/reader-thread.js';
import { macBytes } from './lan/ethernet.js';
import { ip4Bytes, ip6Bytes, ipText } from './lan/wire.js';

/** What the adapter's LAN service needs from a link (a real packet socket, or a test double). */
export interface LanLink {
  readonly mac: string;
  onFrames: (frames: Buffer[]) => void;
  send(frame: Buffer): void;
  close(): Promise<void>;
  /** What the link itself counted (frames, super-frames cut, checksums completed, drops), if anything. */
  counters?(): Record<string, number>;
  /**
   * The addresses a plain ARP request / Neighbor Solicitation may be answered for on the reader thread, replacing
   * the previous set (native/lan_proxy.c); a link without a fast path leaves every answer to the TypeScript proxy.
   */
  setFastProxy?(entries: FastProxyEntry[]): void;
  /**
   * The IP fast path's table (native/lan_fast.c), replacing the previous one: which general nodes' plain TCP/UDP
   * packets the reader threads carry between the LAN and their engines without the main thread.
   */
  setFastPath?(table: FastPathTable): void;
  /** The known peers that carried fast-path packets since the last call (canonical text), to keep them known. */
  takeFastHits?(): string[];
}

/** One general node in the fast path's table. */
export interface FastPathNode {
  mac: string;
  /** The host end of its engine's packet pair. */
  pairFd: number;
  /** The pair carries a virtio_net_hdr before every datagram (the engine opened it with offloads): LAN super-frames go in whole. */
  pairVnet?: boolean;
  /** Its unexpired leases (the only sources accepted from its MAC), with their expiry (ms since the epoch). */
  lease4: { address: string; expiresAt: number } | null;
  lease6: { address: string; expiresAt: number } | null;
  /** Its virtual addresses (the only destinations of packets from its engine). */
  vip4: string | null;
  vip6: string | null;
}

/** The fast path's table: the general nodes, and the known peers' virtual addresses (the only other ends carried). */
export interface FastPathTable {
  nodes: FastPathNode[];
  peers: string[];
}

/** The lanFastSet wire form of the nodes (72 bytes each) and the peers (18 bytes each); see native/lan_fast.c. */
export function fastPathWire(t: FastPathTable): { nodes: Buffer; peers: Buffer } {
  const nodes = Buffer.alloc(t.nodes.length * 72);
  t.nodes.forEach((n, i) => {
    const at = i * 72;
    nodes.set(macBytes(n.mac), at);
    nodes[at + 6] = (n.lease4 ? 1 : 0) | (n.lease6 ? 2 : 0) | (n.vip4 ? 4 : 0) | (n.vip6 ? 8 : 0) | (n.pairVnet ? 16 : 0);
    nodes.writeInt32LE(n.pairFd, at + 8);
    if (n.lease4) nodes.set(ip4Bytes(n.lease4.address), at + 12);
    if (n.vip4) nodes.set(ip4Bytes(n.vip4), at + 16);
    if (n.lease6) nodes.set(ip6Bytes(n.lease6.address), at + 20);
    if (n.vip6) nodes.set(ip6Bytes(n.vip6), at + 36);
    nodes.writeDoubleLE(n.lease4?.expiresAt ?? 0, at + 56);
    nodes.writeDoubleLE(n.lease6?.expiresAt ?? 0, at + 64);
  });
  return { nodes, peers: fastProxyTable(t.peers.map((address) => ({ address, router: false }))) };
}

/** Names of the fast path's counters (LAN_FAST_ST_* in native/lan_fast.h, same order). */
export const FAST_STATS = [
  'lan.fast.out',
  'lan.fast.out.full',
  'lan.fast.out.errors',
  'lan.fast.in',
  'lan.fast.in.errors',
  'lan.fast.in.gso',
  'lan.fast.out.gso',
  'lan.fast.out.bad-gso',
  'lan.fast.out.gso.udp',
  'lan.fast.out.merged.udp',
  'lan.fast.out.merged.udp.datagrams',
] as const;

/** One address of the fast proxy table: answered with the adapter's MAC; `router` sets R in the NA. */
export interface FastProxyEntry {
  address: string;
  router: boolean;
}

/** The lanProxySet wire form: per entry family (4/6), flags (1 = router), 16 address bytes. */
export function fastProxyTable(entries: FastProxyEntry[]): Buffer {
  const out = Buffer.alloc(entries.length * 18);
  entries.forEach((e, i) => {
    const at = i * 18;
    const v6 = e.address.includes(':');
    out[at] = v6 ? 6 : 4;
    out[at + 1] = e.router ? 1 : 0;
    out.set(v6 ? ip6Bytes(e.address) : ip4Bytes(e.address), at + 2);
  });
  return out;
}

/** The addon's LAN-frame calls (native/lan_frames.c). */
export interface LanNative {
  /** PACKET_VNET_HDR on a packet socket: reads start with a virtio_net_hdr, writes need one. */
  lanSetVnetHdr(fd: number): void;
  /** Frames read (super-frames cut, checksums completed): frame i at out[i*slot], lengths[i] bytes; stats added to. */
  lanRecv(fd: number, scratch: Uint8Array, out: Uint8Array, slot: number, lengths: Uint32Array, stats: Uint32Array, timeoutMs: number): number;
  /** lanRecv's work on one frame (virtio_net_hdr + Ethernet frame at frame[offset..]): frame count, or -2 (too many). */
  lanSegment(frame: Uint8Array, offset: number, length: number, out: Uint8Array, slot: number, lengths: Uint32Array, stats: Uint32Array): number;
  /** One frame behind an empty virtio_net_hdr; bytes of the frame written. */
  lanSend(fd: number, buf: Uint8Array, offset: number, length: number): number;
  /** Replaces the fast proxy table of `fd` (entries: fastProxyTable's form; mac: 6 bytes). */
  lanProxySet(fd: number, mac: Uint8Array, entries: Uint8Array): void;
  /** Forgets the fast proxy table of `fd` (before the socket closes). */
  lanProxyClear(fd: number): void;
  /** What lanRecv's fast path answers to frame[offset..offset+length] on `fd`: the reply's length in out, or 0. */
  lanProxyAnswer(fd: number, frame: Uint8Array, offset: number, length: number, out: Uint8Array): number;
  /** Replaces the IP fast path's table of LAN socket `fd` (fastPathWire's form; pair fds are dup()ed). */
  lanFastSet(fd: number, mac: Uint8Array, nodes: Uint8Array, peers: Uint8Array): void;
  /** Forgets the fast path's table of `fd` (before the socket closes). */
  lanFastClear(fd: number): void;
  /** Known peers that carried packets since the last call (18-byte entries as lanProxySet's). */
  lanFastHits(fd: number): Buffer;
  /** The fast path's counters of `fd` (FAST_STATS order). */
  lanFastStats(fd: number, out: Uint32Array): void;
  /** What lanRecv's fast path does with frames read from `fd` (frame i at out[i*slot]): carried ones go into their pairs, the rest move to the front; returns how many are left. */
  lanFastOut(fd: number, out: Uint8Array, slot: number, lengths: Uint32Array, count: number): number;
  /** The pair reader's fast path: packets i < count of a tunReadBatch on pairFd sent on the LAN (length set to 0); vnet: each starts with a virtio_net_hdr. */
  lanFastIn(pairFd: number, buf: Uint8Array, slot: number, lengths: Uint32Array, count: number, vnet?: boolean): number;
}

/** The addon with its LAN-frame calls, or an error saying it must be rebuilt. */
export function lanNative(): NativeAddon & LanNative {
  const addon = requireNative() as NativeAddon & Partial<LanNative>;
  if (!addon.packetOpen || !addon.lanRecv || !addon.lanSend || !addon.lanSetVnetHdr || !addon.lanSegment || !addon.lanProxySet || !addon.lanFastSet) {
    throw new CyphonicError('ERR_NATIVE', 'the native addon has no packetOpen/lanRecv (rebuild it)');
  }
  return addon as NativeAddon & LanNative;
}

/** Names of the native stats (LAN_ST_* in native/lan_frames.h, same order), as LAN counters. */
export const LAN_STATS = [
  'lan.rx.frames',
  'lan.rx.gso.tcp',
  'lan.rx.gso.udp',
  'lan.rx.segments',
  'lan.rx.csum-completed',
  'lan.rx.drop.malformed',
  'lan.rx.drop.too-big',
  'lan.rx.drop.gso-unsupported',
  'lan.rx.drop.too-many-segments',
  'proxy.arp.answered.fast',
  'proxy.nd.answered.fast',
  'proxy.fast.send-errors',
] as const;
/** Length of the native stats array: the counters, then lanRecv's pending-frame state. */
export const LAN_STATS_LEN = LAN_STATS.length + 1;

export interface ReaderInit {
  fd: number;
  /** Int32Array over a SharedArrayBuffer: [0] set to 1 asks the reader to stop. */
  stop: SharedArrayBuffer;
  /** lanRecv's stats (LAN_STATS_LEN × Uint32), counted by the reader, read by the main thread. */
  stats: SharedArrayBuffer;
}

/** One message of the reader: frames packed back to back in `bytes` (lengths in `lengths`). */
export interface ReaderBatch {
  bytes: Uint8Array;
  lengths: Uint32Array;
}

/** Largest frame slot: Ethernet header + 802.1Q tag + 1500-byte payload, with room to spare. */
export const MAX_FRAME = 2048;

export class PacketLanPort implements LanLink {
  onFrames: (frames: Buffer[]) => void = () => {};
  private readonly stats = new Counters();
  /** The reader's lanRecv stats, shared. */
  private readonly rx = new Uint32Array(new SharedArrayBuffer(LAN_STATS_LEN * 4));
  private closed = false;
  private readonly reader: ReaderThread<ReaderBatch>;
  private readonly native = lanNative();

  private constructor(
    readonly ifname: string,
    readonly mac: string,
    private readonly fd: number,
  ) {
    const data: Omit<ReaderInit, 'stop'> = { fd, stats: this.rx.buffer as SharedArrayBuffer };
    this.reader = new ReaderThread(new URL('./lan-reader.js', import.meta.url), { ...data }, 'cyphonic-lan', (b: ReaderBatch) => {
      const frames: Buffer[] = [];
      let at = 0;
      for (const len of b.lengths) {
        frames.push(Buffer.from(b.bytes.buffer, b.bytes.byteOffset + at, len));
        at += len;
      }
      if (frames.length) this.onFrames(frames);
    });
  }

  /** Opens the packet socket on `ifname` (needs CAP_NET_RAW), with PACKET_VNET_HDR, and starts the reader. */
  static open(ifname: string): PacketLanPort {
    const addon = lanNative();
    let mac: string;
    try {
      mac = readFileSync(`/sys/class/net/${ifname}/address`, 'utf8').trim().toLowerCase();
    } catch {
      throw new CyphonicError('ERR_LAN_IFACE', `--lan: no interface ${ifname}`);
    }
    const fd = addon.packetOpen!(ifname);
    try {
      addon.lanSetVnetHdr(fd);
    } catch (err) {
      addon.fdClose(fd);
      throw err;
    }
    return new PacketLanPort(ifname, mac, fd);
  }

  send(frame: Buffer): void {
    if (this.closed) return;
    try {
      this.native.lanSend(this.fd, frame, 0, frame.length);
      this.stats.inc('lan.tx.frames');
    } catch {
      this.stats.inc('lan.tx.errors');
    }
  }

  counters(): Record<string, number> {
    const out = this.stats.toJSON();
    LAN_STATS.forEach((name, i) => {
      if (this.rx[i]) out[name] = this.rx[i]!;
    });
    if (!this.closed) {
      const fast = new Uint32Array(FAST_STATS.length);
      this.native.lanFastStats(this.fd, fast);
      FAST_STATS.forEach((name, i) => {
        if (fast[i]) out[name] = fast[i]!;
      });
    }
    return out;
  }

  setFastPath(table: FastPathTable): void {
    if (this.closed) return;
    const { nodes, peers } = fastPathWire(table);
    this.native.lanFastSet(this.fd, macBytes(this.mac), nodes, peers);
  }

  takeFastHits(): string[] {
    if (this.closed) return [];
    const raw = this.native.lanFastHits(this.fd);
    const out: string[] = [];
    for (let at = 0; at + 18 <= raw.length; at += 18) out.push(raw[at] === 4 ? ipText(raw, at + 2, 4) : ipText(raw, at + 2, 16));
    return out;
  }

  setFastProxy(entries: FastProxyEntry[]): void {
    if (this.closed) return;
    this.native.lanProxySet(this.fd, macBytes(this.mac), fastProxyTable(entries));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.reader.stop();
    this.native.lanProxyClear(this.fd);
    this.native.lanFastClear(this.fd);
    this.native.fdClose(this.fd);
  }
}
