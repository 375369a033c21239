// Batched receive for the cloud's UDP services (the NMS and the TRS): the dgram socket stays the readiness source, and
// each datagram it delivers ('message') is followed, in the same call, by what else is queued on the socket, read with
// recvmmsg (the addon's udpRecvMany, non-blocking) straight from the socket's fd in batches of up to 64:
//
//   libuv poll: fd readable → recvmsg → 'message' (one JS entry) → handler(first)
//                                     → udpRecvMany ×k → one copy per batch → handler(each)
//                                     → libuv's next recvmsg finds the queue empty (EAGAIN): back to the loop
//
// instead of one libuv recvmsg, one Buffer, one rinfo object and one JS entry (MakeCallback, microtask checkpoint)
// per datagram. The handler sees what the 'message' event would have given it: the bytes (a Buffer of its own,
// stable after the call: handlers keep it across awaits), the source address as dgram formats it ('::ffff:a.b.c.d'
// for IPv4 on a dual-stack socket, compressed IPv6, '%ifname' after a link-local address) and the port.
//
// Bounds: at most PER_TURN datagrams are drained per event-loop turn (reset at setImmediate), so timers, other
// sockets and the send queue's flush are not starved; past that the datagrams wait for libuv's own reads (32 per
// poll) and the next turn. Slots are 64 KiB, the largest UDP payload, so no datagram is cut; one that is anyway
// (kernel flag MSG_TRUNC) is dropped and counted (onTruncated), never handed on. A handler that throws is counted
// (onError) and the rest of the batch is still handed on. Without the addon (or udpRecvMany) create() returns null
// and the caller stays on plain 'message' events.

import type dgram from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { loadNativeAddon, type NativeAddon } from '../native/addon.js';
import { formatIp6 } from '../protocol/ip.js';

/** Tunable: datagrams read per recvmmsg (the addon's MAX_BATCH). */
export const RECV_SLOTS = 64;
/** Tunable: datagrams drained per event-loop turn, beyond the ones libuv delivers itself (about 4 recvmmsg calls). */
export const RECV_PER_TURN = 256;
/** Spec: the largest UDP payload (65 535 − 8 over IPv6; 65 507 over IPv4) fits a slot, so nothing is cut. */
const SLOT_BYTES = 65536;

/** The fd under a bound dgram socket (Node keeps its handle behind a symbol; `_handle` is deprecated), or -1. */
export function dgramFd(sock: dgram.Socket): number {
  const key = Object.getOwnPropertySymbols(sock).find((s) => s.description === 'state symbol');
  const state = key ? (sock as unknown as Record<symbol, { handle?: { fd?: unknown } } | undefined>)[key] : undefined;
  const fd = state?.handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : -1;
}

/** What a datagram is handed to: the bytes, the source as the dgram 'message' event's rinfo would give it. */
export type DatagramHandler = (msg: Buffer, address: string, port: number) => void;

export interface UdpBatchReaderInit {
  /** The socket is udp6 (dual-stack: IPv4 sources are written '::ffff:a.b.c.d', as dgram does). */
  v6: boolean;
  handler: DatagramHandler;
  /** A datagram cut by the kernel (longer than a slot): dropped, counted here. */
  onTruncated: () => void;
  /** The handler threw for one datagram (the rest are still handed on). */
  onError: (err: unknown) => void;
  /** @default 65536 (tests use less to see truncation) */
  slotBytes?: number;
  /** @default RECV_PER_TURN */
  perTurn?: number;
}

export class UdpBatchReader {
  private readonly buf: Buffer;
  private readonly slot: number;
  private readonly offsets = new Uint32Array(RECV_SLOTS);
  private readonly lengths = new Uint32Array(RECV_SLOTS);
  private readonly metas = new Uint8Array(RECV_SLOTS * 20);
  private readonly scopes = new Uint32Array(RECV_SLOTS);
  private readonly perTurn: number;
  private budget: number;
  private resetPending = false;
  private closed = false;
  /** Interface names by index, for link-local sources (refreshed when an index is missing, at most once a second). */
  private ifNames = new Map<number, string>();
  private ifNamesAt = 0;
  /** recvmmsg calls that returned datagrams, and the datagrams they returned (the bench and tests read these). */
  batches = 0;
  drained = 0;

  /** Null when the addon (or its udpRecvMany) is missing or the socket has no fd: use plain 'message' events. */
  static create(sock: dgram.Socket, init: UdpBatchReaderInit): UdpBatchReader | null {
    const native = loadNativeAddon();
    const fd = dgramFd(sock);
    if (!native?.udpRecvMany || fd < 0) return null;
    return new UdpBatchReader(native, fd, init);
  }

  private constructor(
    private readonly native: NativeAddon,
    private readonly fd: number,
    private readonly init: UdpBatchReaderInit,
  ) {
    this.slot = init.slotBytes ?? SLOT_BYTES;
    this.buf = Buffer.allocUnsafe(RECV_SLOTS * this.slot); // only the pages datagrams land in are ever touched
    this.perTurn = init.perTurn ?? RECV_PER_TURN;
    this.budget = this.perTurn;
  }

  /** The socket's 'message' event: hands on `msg`, then what else is queued (up to this turn's budget). */
  message(msg: Buffer, address: string, port: number): void {
    this.dispatch(msg, address, port);
    this.drain();
  }

  /** No read after this (call before the socket is closed: its fd number may be reused). */
  close(): void {
    this.closed = true;
  }

  private dispatch(msg: Buffer, address: string, port: number): void {
    try {
      this.init.handler(msg, address, port);
    } catch (err) {
      this.init.onError(err);
    }
  }

  private drain(): void {
    if (!this.resetPending) {
      this.resetPending = true;
      setImmediate(() => {
        this.resetPending = false;
        this.budget = this.perTurn;
      });
    }
    while (this.budget > 0 && !this.closed) {
      let n: number;
      try {
        n = this.native.udpRecvMany(this.fd, this.buf, this.slot, this.offsets, this.lengths, this.metas, 0, undefined, false, this.scopes);
      } catch {
        return; // a closed fd or the like: the socket's own reads report it
      }
      if (n <= 0) return; // empty (or an error the socket's own read will see)
      this.batches++;
      this.drained += n;
      this.budget -= n;
      // One allocation per batch: each datagram gets bytes of its own that the next batch does not overwrite.
      let total = 0;
      for (let i = 0; i < n; i++) total += this.lengths[i]!;
      const copy = Buffer.allocUnsafe(total);
      let at = 0;
      for (let i = 0; i < n; i++) {
        const m = i * 20;
        if (this.metas[m + 1] === 1) {
          this.init.onTruncated();
          continue;
        }
        const len = this.lengths[i]!;
        const off = this.offsets[i]!;
        this.buf.copy(copy, at, off, off + len);
        const msg = copy.subarray(at, at + len);
        at += len;
        this.dispatch(msg, this.address(m, i), (this.metas[m + 2]! << 8) | this.metas[m + 3]!);
      }
      if (n < RECV_SLOTS) return; // the queue was emptied
    }
  }

  /** The source of datagram i (its meta at metas[m..]) as dgram writes rinfo.address. */
  private address(m: number, i: number): string {
    const b = this.metas;
    if (b[m] === 4) {
      const quad = `${b[m + 4]}.${b[m + 5]}.${b[m + 6]}.${b[m + 7]}`;
      return this.init.v6 ? `::ffff:${quad}` : quad;
    }
    const text = formatIp6(b.subarray(m + 4, m + 20));
    const scope = this.scopes[i]!;
    // Node appends the interface's name to a link-local source (fe80::/10) with a scope id.
    if (scope === 0 || b[m + 4] !== 0xfe || (b[m + 5]! & 0xc0) !== 0x80) return text;
    return `${text}%${this.ifName(scope)}`;
  }

  private ifName(index: number): string {
    let name = this.ifNames.get(index);
    if (name === undefined && Date.now() - this.ifNamesAt >= 1000) {
      this.ifNamesAt = Date.now();
      const names = new Map<number, string>();
      for (const [ifname, list] of Object.entries(networkInterfaces())) {
        for (const a of list ?? []) if (a.family === 'IPv6' && a.scopeid) names.set(a.scopeid, ifname);
      }
      this.ifNames = names;
      name = names.get(index);
    }
    return name ?? String(index);
  }
}
