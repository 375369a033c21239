// The NMS's outgoing datagrams of one event-loop turn, sent together: replies and pushes queue here and go out at the
// end of the turn in sendmmsg calls (the addon's udpSendEach) on the dgram socket's own fd, each datagram to its own
// destination, instead of one dgram send each (a JS send request, async hooks and one syscall per datagram: 8–40 %
// of the NMS's time in its CPU profiles). Without the addon, or when the kernel's socket buffer is full, the rest go
// through the dgram socket as before.

import { loadNativeAddon, type NativeAddon } from '../../native/addon.js';
import { parseIp6 } from '../../protocol/ip.js';

/** Tunable: datagrams queued before the queue is flushed without waiting for the end of the turn. */
export const SEND_QUEUE_MAX = 1024;
/** Tunable: bytes of queued datagrams before the queue is flushed early (the slab they are copied into). */
const SLAB_BYTES = 1 << 20;

/** Writes IPv4 dotted quad `s` (from `start`) into out[at..at+4); false when it is not one. */
function ip4Into(s: string, start: number, out: Uint8Array, at: number): boolean {
  let part = 0;
  let digits = 0;
  let k = 0;
  for (let i = start; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || k === 3) return false;
      out[at + k++] = part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      if (part > 255) return false;
      digits++;
    } else {
      return false;
    }
  }
  if (digits === 0 || k !== 3) return false;
  out[at + 3] = part;
  return true;
}

/**
 * Address `address` as the 16 bytes udpSendEach takes at out[at..]: on a dual-stack socket IPv6, with IPv4 (plain or
 * ::ffff:-mapped) as ::ffff:a.b.c.d; on an IPv4 socket the first 4 bytes. False when it cannot be parsed.
 */
export function addressInto(address: string, v6: boolean, out: Uint8Array, at: number): boolean {
  if (!v6) return ip4Into(address, 0, out, at);
  const dot = address.indexOf('.');
  if (dot >= 0) {
    const colon = address.lastIndexOf(':');
    if (colon >= 0 && address.slice(0, colon + 1).toLowerCase() !== '::ffff:') return false;
    out.fill(0, at, at + 10);
    out[at + 10] = 0xff;
    out[at + 11] = 0xff;
    return ip4Into(address, colon + 1, out, at + 12);
  }
  const b = parseIp6(address);
  if (!b) return false;
  out.set(b, at);
  return true;
}

export class SendQueue {
  private readonly native: NativeAddon & Required<Pick<NativeAddon, 'udpSendEach'>>;
  private readonly slab = Buffer.allocUnsafe(SLAB_BYTES);
  private readonly offsets = new Uint32Array(SEND_QUEUE_MAX);
  private readonly lengths = new Uint32Array(SEND_QUEUE_MAX);
  private readonly ports = new Uint32Array(SEND_QUEUE_MAX);
  private readonly addrs = new Uint8Array(16 * SEND_QUEUE_MAX);
  private readonly stats = new Uint32Array(1);
  private count = 0;
  private used = 0;
  private scheduled = false;
  /** sendmmsg calls made and datagrams they carried (the bench and tests read these). */
  batches = 0;
  sent = 0;

  /** Null when the addon (or its udpSendEach) is missing or the socket has no fd: send one datagram at a time. */
  static create(fd: number, v6: boolean, fallback: (datagram: Buffer, port: number, address: string) => void, onRefused: (n: number) => void): SendQueue | null {
    const native = loadNativeAddon();
    if (!native?.udpSendEach || fd < 0) return null;
    return new SendQueue(native as NativeAddon & Required<Pick<NativeAddon, 'udpSendEach'>>, fd, v6, fallback, onRefused);
  }

  private constructor(
    native: NativeAddon & Required<Pick<NativeAddon, 'udpSendEach'>>,
    private readonly fd: number,
    private readonly v6: boolean,
    /** Sends one datagram the ordinary way (what did not fit, or could not be parsed). */
    private readonly fallback: (datagram: Buffer, port: number, address: string) => void,
    /** Datagrams the kernel refused for good (bad destination): counted by the caller. */
    private readonly onRefused: (n: number) => void,
  ) {
    this.native = native;
  }

  /** Queues `datagram` for address:port (sent at the end of this turn of the event loop). */
  send(datagram: Buffer, port: number, address: string): void {
    if (datagram.length > this.slab.length - this.used || this.count >= SEND_QUEUE_MAX) this.flush();
    if (datagram.length > this.slab.length || !Number.isInteger(port) || port < 1 || port > 65535 || !addressInto(address, this.v6, this.addrs, 16 * this.count)) {
      this.fallback(datagram, port, address);
      return;
    }
    datagram.copy(this.slab, this.used);
    this.offsets[this.count] = this.used;
    this.lengths[this.count] = datagram.length;
    this.ports[this.count] = port;
    this.used += datagram.length;
    this.count++;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Sends what is queued now. */
  flush(): void {
    this.scheduled = false;
    const n = this.count;
    if (n === 0) return;
    this.count = 0;
    this.used = 0;
    this.stats[0] = 0;
    let done = 0;
    try {
      done = this.native.udpSendEach(this.fd, this.slab, this.offsets, this.lengths, n, this.addrs, this.ports, this.v6, this.stats);
    } catch {
      done = 0; // a closed fd or the like: the ordinary path reports it
    }
    this.batches++;
    this.sent += done - this.stats[0]!;
    if (this.stats[0]! > 0) this.onRefused(this.stats[0]!);
    // The socket's buffer was full: the rest go through dgram (which queues them in libuv).
    for (let i = done; i < n; i++) {
      const a = this.addrs.subarray(16 * i, 16 * i + 16);
      const address = this.v6 ? formatV6(a) : `${a[0]}.${a[1]}.${a[2]}.${a[3]}`;
      this.fallback(Buffer.from(this.slab.subarray(this.offsets[i]!, this.offsets[i]! + this.lengths[i]!)), this.ports[i]!, address);
    }
  }
}

function formatV6(a: Uint8Array): string {
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((a[i]! << 8) | a[i + 1]!).toString(16));
  return words.join(':');
}
