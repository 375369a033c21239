// The host's end of a 'pair' data-plane device (dataplane.ts): an AF_UNIX datagram socket whose other end the C
// engine uses as its TUN. For a general node the adapter is the host: what the LAN device sends to the overlay is
// written in here (the engine seals it for the peer that owns the destination, or holds it and asks for a route),
// and what the engine opened for the device comes out here, for the adapter to frame for the LAN.
//
//   write(packet) ─► host fd ─► engine fd ─► engine: route by destination, seal, UDP
//   engine: UDP, open ─► engine fd ─► host fd ─► reader thread (pair-reader.ts, util/reader-thread.ts; batch ≤ 64)
//                                              ─► postMessage ─► onPackets(packets) on the main thread
//
// Writes never block the main thread: the socket is non-blocking and a full queue drops the packet (counted, as
// a full TUN queue would).
//
// With `vnet` (the engine's end opened with offloads, dataplane.ts) every datagram either way starts with a 10-byte
// virtio_net_hdr: write() puts an empty one (a plain packet, checksums complete) before each packet, and the reader
// hands on plain packets only — it strips the empty headers and cuts the engine's TCP GSO packets (merged opened
// segments of one flow, up to 64 KiB) back into the segments with offload.c's vnet_segment (native vnetSegment),
// after the LAN fast path has sent those it takes to the LAN whole.

import type { NativeAddon } from '../../native/addon.js';
import { ReaderThread } from '../../util/reader-thread.js';

/** Size of the virtio_net_hdr before every datagram of a vnet pair. */
export const VNET_HDR_LEN = 10;

export interface PairReaderInit {
  fd: number;
  /** Largest packet. */
  mtu: number;
  /** Datagrams carry a virtio_net_hdr first. */
  vnet: boolean;
  /** Int32Array over a SharedArrayBuffer: [0] counts GSO packets from the engine the reader could not cut (dropped). */
  refused: SharedArrayBuffer;
  /** Int32Array over a SharedArrayBuffer: [0] set to 1 asks the reader to stop. */
  stop: SharedArrayBuffer;
}

export class PairHost {
  /** Opened packets from the engine, in order, in batches. */
  onPackets: (packets: Buffer[]) => void = () => {};
  readonly counters = { written: 0, writeErrors: 0, read: 0 };
  private readonly refused = new Int32Array(new SharedArrayBuffer(4));
  /** An empty virtio_net_hdr followed by the packet being written (vnet). */
  private scratch: Buffer;
  private readonly reader: ReaderThread<Uint8Array[]>;
  private closed = false;

  constructor(
    private readonly native: NativeAddon,
    private readonly fd: number,
    mtu: number,
    /** The pair carries a virtio_net_hdr before every datagram (the engine's end opened with offloads). */
    readonly vnet = false,
  ) {
    native.setNonblocking(fd);
    this.scratch = Buffer.alloc(vnet ? VNET_HDR_LEN + mtu + 64 : 0);
    const data: Omit<PairReaderInit, 'stop'> = { fd, mtu, vnet, refused: this.refused.buffer as SharedArrayBuffer };
    this.reader = new ReaderThread(new URL('./pair-reader.js', import.meta.url), { ...data }, 'cyphonic-pair', (packets) => {
      this.counters.read += packets.length;
      this.onPackets(packets.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
    });
  }

  /** GSO packets from the engine the reader could not cut into packets (dropped; never expected from our engine; a
   * general node's status shows it as `rx.device-gso-refused`). */
  get refusedGso(): number {
    return Atomics.load(this.refused, 0);
  }

  /** The host end's descriptor while open (the adapter's LAN fast path writes into it too), else null. */
  get descriptor(): number | null {
    return this.closed ? null : this.fd;
  }

  /** One IP packet for the engine; false when it could not be queued (closed, or the engine's queue is full). */
  write(packet: Uint8Array): boolean {
    if (this.closed) return false;
    try {
      if (this.vnet) {
        if (VNET_HDR_LEN + packet.length > this.scratch.length) this.scratch = Buffer.alloc(VNET_HDR_LEN + packet.length);
        this.scratch.set(packet, VNET_HDR_LEN); // the header bytes stay zero
        this.native.tunWrite(this.fd, this.scratch, 0, VNET_HDR_LEN + packet.length);
      } else {
        this.native.tunWrite(this.fd, packet, 0, packet.length);
      }
      this.counters.written++;
      return true;
    } catch {
      this.counters.writeErrors++;
      return false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.reader.stop();
    this.native.fdClose(this.fd);
  }
}
