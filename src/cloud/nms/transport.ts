// UDP listener for the NMS (default port 4502), dual-stack: one socket on [::] also takes IPv4 (mapped) traffic.
// Normalises IPv4-mapped source addresses so NAT detection compares like with like. Receives in batches: each
// datagram the dgram socket delivers is followed by the rest of the socket's queue, read with recvmmsg in the same
// call (UdpBatchReader, ../udp-reader.ts); replies leave in batches too (SendQueue). Without the native addon, or
// with CYPHONIC_NMS_RECV_BATCH=off (for A/B runs), every datagram comes through its own 'message' event.

import dgram from 'node:dgram';
import type { Endpoint } from '../../protocol/endpoint.js';
import { mapForDualStack, unmapV4 } from '../../util/addr.js';
import { describeError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import { dgramFd, UdpBatchReader } from '../udp-reader.js';
import type { NmsService } from './service.js';
import { SendQueue } from './send-queue.js';

export interface NmsTransportInit {
  /** @default '::' */
  host?: string;
  /** @default 4502 */
  port?: number;
  /** 'probe': the NMS's mapping probe socket (only Keepalives, see NmsService.probe). @default 'main' */
  via?: 'main' | 'probe';
}

export class NmsTransport {
  private sock: dgram.Socket | null = null;
  private dualStack = true;
  /** Datagrams of one event-loop turn go out in sendmmsg calls (null: the addon is missing; one send each). */
  private queue: SendQueue | null = null;
  /** Reads the rest of the socket's queue after each 'message' (null: the addon is missing; one event each). */
  private reader: UdpBatchReader | null = null;

  /** Sends a datagram from the NMS socket (the service pushes Route Directions through it). */
  send(datagram: Buffer, to: Endpoint): void {
    this.sendRaw(datagram, to.port, this.dualStack ? mapForDualStack(to.address) : to.address);
  }

  /** A send never throws out of a handler: a bad port or address is counted, never fatal to the process. */
  private sendRaw(datagram: Buffer, port: number, address: string): void {
    if (!this.sock) return;
    if (this.queue) return this.queue.send(datagram, port, address);
    this.sendOne(datagram, port, address);
  }

  /** One datagram through the dgram socket. */
  private sendOne(datagram: Buffer, port: number, address: string): void {
    if (!this.sock) return;
    try {
      this.sock.send(datagram, port, address);
    } catch (err) {
      this.service.counters.inc('error.send');
      this.logger.debug('NMS send failed', { err: describeError(err) });
    }
  }

  constructor(
    private readonly init: NmsTransportInit,
    private readonly service: NmsService,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<{ port: number }> {
    const host = this.init.host ?? '::';
    this.dualStack = host.includes(':');
    const sock: dgram.Socket = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', ipv6Only: false, recvBufferSize: 4 << 20 });
    this.sock = sock;
    const via = this.init.via ?? 'main';
    // One datagram, with its source as dgram writes it (IPv4 as '::ffff:a.b.c.d' on the dual-stack socket).
    const onDatagram = (msg: Buffer, address: string, port: number): void => {
      // Port 0 cannot be answered (Node throws ERR_SOCKET_BAD_PORT on the send): dropped before any work.
      if (port === 0) return this.service.counters.inc('refused.port0');
      const from: Endpoint = { address: unmapV4(address), port };
      this.service
        .handle(msg, from, via)
        .then((reply) => {
          if (reply) this.sendRaw(reply, port, address);
        })
        .catch((err: unknown) => this.handlerFailed(err));
    };
    sock.on('message', (msg, rinfo) => {
      if (this.reader) this.reader.message(msg, rinfo.address, rinfo.port);
      else onDatagram(msg, rinfo.address, rinfo.port);
    });
    sock.on('error', (err) => this.logger.error('NMS socket error', { err: err.message }));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: host, port: this.init.port ?? 4502 }, () => resolve());
    });
    if (process.env['CYPHONIC_NMS_RECV_BATCH'] !== 'off') {
      this.reader = UdpBatchReader.create(sock, {
        v6: this.dualStack,
        handler: onDatagram,
        onTruncated: () => this.service.counters.inc('refused.truncated'),
        onError: (err) => this.handlerFailed(err),
      });
    }
    if (process.env['CYPHONIC_NMS_SEND_QUEUE'] !== 'off') {
      this.queue = SendQueue.create(dgramFd(sock), this.dualStack, (d, p, a) => this.sendOne(d, p, a), (n) => {
        this.service.counters.inc('error.send', n);
      });
    }
    return { port: sock.address().port };
  }

  /** A handler that failed (its promise rejected, or it threw): counted and logged; the other datagrams go on. */
  private handlerFailed(err: unknown): void {
    this.service.counters.inc('error.handler');
    this.logger.error('NMS handler failed', { err: describeError(err) });
  }

  /** Batch reads the reader made and the datagrams they returned (0, 0 without it), for tests and the bench. */
  get recvBatches(): { batches: number; drained: number } {
    return { batches: this.reader?.batches ?? 0, drained: this.reader?.drained ?? 0 };
  }

  async stop(): Promise<void> {
    this.reader?.close();
    this.reader = null;
    this.queue?.flush();
    this.queue = null;
    const s = this.sock;
    this.sock = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
