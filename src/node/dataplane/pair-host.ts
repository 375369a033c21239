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

import type { NativeAddon } from '../../native/addon.js';
import { ReaderThread } from '../../util/reader-thread.js';

export interface PairReaderInit {
  fd: number;
  /** Largest packet. */
  mtu: number;
  /** Int32Array over a SharedArrayBuffer: [0] set to 1 asks the reader to stop. */
  stop: SharedArrayBuffer;
}

export class PairHost {
  /** Opened packets from the engine, in order, in batches. */
  onPackets: (packets: Buffer[]) => void = () => {};
  readonly counters = { written: 0, writeErrors: 0, read: 0 };
  private readonly reader: ReaderThread<Uint8Array[]>;
  private closed = false;

  constructor(
    private readonly native: NativeAddon,
    private readonly fd: number,
    mtu: number,
  ) {
    native.setNonblocking(fd);
    const data: Omit<PairReaderInit, 'stop'> = { fd, mtu };
    this.reader = new ReaderThread(new URL('./pair-reader.js', import.meta.url), { ...data }, 'cyphonic-pair', (packets) => {
      this.counters.read += packets.length;
      this.onPackets(packets.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
    });
  }

  /** The host end's descriptor while open (the adapter's LAN fast path writes into it too), else null. */
  get descriptor(): number | null {
    return this.closed ? null : this.fd;
  }

  /** One IP packet for the engine; false when it could not be queued (closed, or the engine's queue is full). */
  write(packet: Uint8Array): boolean {
    if (this.closed) return false;
    try {
      this.native.tunWrite(this.fd, packet, 0, packet.length);
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
