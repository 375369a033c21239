// The adapter's LAN port: whole Ethernet frames in and out of one interface through an AF_PACKET socket
// (native packetOpen) with PACKET_VNET_HDR, so every frame read says what offloads left undone. A worker thread
// (src/util/reader-thread.ts, lan-reader.ts) blocks in the native lanRecv, which cuts GRO/TSO super-frames into
// wire-size frames and completes partial checksums (native/lan_frames.c), and posts batches of frames to the main
// thread; the main thread writes frames directly (one write per frame, behind an empty virtio_net_hdr). A plain ARP
// request or Neighbor Solicitation for an address in the fast proxy table (setFastProxy, kept by the LAN service)
// is answered by lanRecv itself on the reader thread (native/lan_proxy.c) and never reaches the main thread.
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
import { ip4Bytes, ip6Bytes } from './lan/wire.js';

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
}

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
}

/** The addon with its LAN-frame calls, or an error saying it must be rebuilt. */
export function lanNative(): NativeAddon & LanNative {
  const addon = requireNative() as NativeAddon & Partial<LanNative>;
  if (!addon.packetOpen || !addon.lanRecv || !addon.lanSend || !addon.lanSetVnetHdr || !addon.lanSegment || !addon.lanProxySet) {
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
}

/** One message of the reader: frames packed back to back in `bytes` (lengths in `lengths`), and stats since the last. */
export interface ReaderBatch {
  bytes: Uint8Array;
  lengths: Uint32Array;
  stats: number[];
}

/** Largest frame slot: Ethernet header + 802.1Q tag + 1500-byte payload, with room to spare. */
export const MAX_FRAME = 2048;

export class PacketLanPort implements LanLink {
  onFrames: (frames: Buffer[]) => void = () => {};
  private readonly stats = new Counters();
  private closed = false;
  private readonly reader: ReaderThread<ReaderBatch>;
  private readonly native = lanNative();

  private constructor(
    readonly ifname: string,
    readonly mac: string,
    private readonly fd: number,
  ) {
    const data: Omit<ReaderInit, 'stop'> = { fd };
    this.reader = new ReaderThread(new URL('./lan-reader.js', import.meta.url), { ...data }, 'cyphonic-lan', (b: ReaderBatch) => {
      b.stats.forEach((v, i) => {
        if (v) this.stats.inc(LAN_STATS[i]!, v);
      });
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
    return this.stats.toJSON();
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
    this.native.fdClose(this.fd);
  }
}
