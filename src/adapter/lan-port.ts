// The adapter's LAN port: whole Ethernet frames in and out of one interface through an AF_PACKET socket
// (native packetOpen). A worker thread (src/util/reader-thread.ts) blocks in read and posts batches of frames to
// the main thread; the main thread writes frames directly (one write per frame).
//
//   LAN iface ─► packet socket ─► reader worker (poll/read, batch ≤ 64) ─► postMessage ─► onFrames(frames)
//   send(frame) ─► write(fd) ─► LAN iface

import { readFileSync } from 'node:fs';
import { requireNative } from '../net/tun/native.js';
import { CyphonicError } from '../util/errors.js';
import { ReaderThread } from '../util/reader-thread.js';

/** What the adapter's LAN service needs from a link (a real packet socket, or a test double). */
export interface LanLink {
  readonly mac: string;
  onFrames: (frames: Buffer[]) => void;
  send(frame: Buffer): void;
  close(): Promise<void>;
}

export interface ReaderInit {
  fd: number;
  /** Int32Array over a SharedArrayBuffer: [0] set to 1 asks the reader to stop. */
  stop: SharedArrayBuffer;
}

/** Largest frame read: Ethernet header + 802.1Q tag + 1500-byte payload, with room to spare. */
export const MAX_FRAME = 2048;

export class PacketLanPort implements LanLink {
  onFrames: (frames: Buffer[]) => void = () => {};
  readonly counters = { rxFrames: 0, txFrames: 0, txErrors: 0 };
  private closed = false;
  private readonly reader: ReaderThread<Uint8Array[]>;

  private constructor(
    readonly ifname: string,
    readonly mac: string,
    private readonly fd: number,
  ) {
    const data: Omit<ReaderInit, 'stop'> = { fd };
    this.reader = new ReaderThread(new URL('./lan-reader.js', import.meta.url), { ...data }, 'cyphonic-lan', (frames: Uint8Array[]) => {
      this.counters.rxFrames += frames.length;
      this.onFrames(frames.map((f) => Buffer.from(f.buffer, f.byteOffset, f.byteLength)));
    });
  }

  /** Opens the packet socket on `ifname` (needs CAP_NET_RAW) and starts the reader. */
  static open(ifname: string): PacketLanPort {
    const addon = requireNative();
    if (!addon.packetOpen || !addon.packetRead) throw new CyphonicError('ERR_NATIVE', 'the native addon has no packetOpen (rebuild it)');
    let mac: string;
    try {
      mac = readFileSync(`/sys/class/net/${ifname}/address`, 'utf8').trim().toLowerCase();
    } catch {
      throw new CyphonicError('ERR_LAN_IFACE', `--lan: no interface ${ifname}`);
    }
    return new PacketLanPort(ifname, mac, addon.packetOpen(ifname));
  }

  send(frame: Buffer): void {
    if (this.closed) return;
    try {
      requireNative().tunWrite(this.fd, frame, 0, frame.length);
      this.counters.txFrames++;
    } catch {
      this.counters.txErrors++;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.reader.stop();
    requireNative().fdClose(this.fd);
  }
}
