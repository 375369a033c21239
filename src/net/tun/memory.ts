// In-memory TunDevice for tests: inject() packets for the engine to read(), capture what it write()s,
// or link two devices back to back with createMemoryTunPair() so one side's writes are the other's reads.
import { TunError, checkIfName, checkMtu, checkTimeout, type TunDevice } from './tun.js';

export interface MemoryTunOptions {
  name?: string;
  /** Default 1420. */
  mtu?: number;
  /** Packets queued for read() beyond this are dropped, like a full kernel queue (default 1024). */
  queueLimit?: number;
}

/**
 * A TunDevice backed by arrays. It never blocks: nothing else can enqueue while the (single) thread sits in
 * read(), so read() with an empty queue returns 0 at once whatever the timeout. Otherwise it follows the
 * TunDevice contract: packets are copied in and out, a packet longer than read()'s buffer is dropped
 * (read returns 0), an empty write throws ERR_TUN_IO (as the kernel's EINVAL), and after close() read/write
 * throw TunError ERR_CLOSED.
 */
export class MemoryTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  readonly queueLimit: number;
  /** Packets this device wrote that no peer took (in order). */
  readonly written: Buffer[] = [];
  /** Packets dropped because the read queue was full or a packet did not fit the read buffer. */
  dropped = 0;
  #queue: Buffer[] = [];
  #peer: MemoryTun | null = null;
  #closed = false;

  constructor(opts: MemoryTunOptions = {}) {
    this.name = opts.name ?? 'mem0';
    this.mtu = opts.mtu ?? 1420;
    this.queueLimit = opts.queueLimit ?? 1024;
    checkIfName(this.name);
    checkMtu(this.mtu);
    if (!Number.isInteger(this.queueLimit) || this.queueLimit < 1) {
      throw new TunError('ERR_TUN_ARG', `queueLimit must be a positive integer, got ${this.queueLimit}`);
    }
  }

  /** Queues a packet (copied) as if the kernel had routed it into the device. Returns false if dropped. */
  inject(packet: Uint8Array): boolean {
    if (this.#closed || this.#queue.length >= this.queueLimit) {
      this.dropped++;
      return false;
    }
    this.#queue.push(Buffer.from(packet));
    return true;
  }

  /** Packets waiting for read(). */
  get pending(): number {
    return this.#queue.length;
  }

  /** Removes and returns everything written so far (when no peer is linked). */
  takeWritten(): Buffer[] {
    return this.written.splice(0);
  }

  get closed(): boolean {
    return this.#closed;
  }

  read(buf: Buffer, timeoutMs: number): number {
    this.#check();
    checkTimeout(timeoutMs);
    const p = this.#queue.shift();
    if (p === undefined) return 0;
    if (p.length > buf.length) {
      this.dropped++;
      return 0;
    }
    p.copy(buf, 0);
    return p.length;
  }

  write(packet: Buffer): void {
    this.#check();
    if (packet.length === 0) throw new TunError('ERR_TUN_IO', `write ${this.name}: empty packet`, { errno: 'EINVAL' });
    if (this.#peer !== null) this.#peer.inject(packet);
    else this.written.push(Buffer.from(packet));
  }

  close(): void {
    this.#closed = true;
    this.#queue = [];
  }

  /** Links two devices: a.write(p) queues p for b.read() and vice versa. */
  static link(a: MemoryTun, b: MemoryTun): void {
    a.#peer = b;
    b.#peer = a;
  }

  #check(): void {
    if (this.#closed) throw new TunError('ERR_CLOSED', `TUN ${this.name} is closed`);
  }
}

/** Two linked MemoryTuns: whatever one writes, the other reads. */
export function createMemoryTunPair(opts: MemoryTunOptions = {}): [MemoryTun, MemoryTun] {
  const a = new MemoryTun({ ...opts, name: opts.name ?? 'mem0' });
  const b = new MemoryTun({ ...opts, name: opts.name ? `${opts.name.slice(0, 13)}-b` : 'mem1' });
  MemoryTun.link(a, b);
  return [a, b];
}
