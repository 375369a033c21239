// UDP listener for the NMS (default port 4502), dual-stack: one socket on [::] also takes IPv4 (mapped) traffic.
// Normalises IPv4-mapped source addresses so NAT detection compares like with like.

import dgram from 'node:dgram';
import type { Endpoint } from '../../protocol/endpoint.js';
import { mapForDualStack, unmapV4 } from '../../util/addr.js';
import { describeError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import type { NmsService } from './service.js';

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

  /** Sends a datagram from the NMS socket (the service pushes Route Directions through it). */
  send(datagram: Buffer, to: Endpoint): void {
    this.sendRaw(datagram, to.port, this.dualStack ? mapForDualStack(to.address) : to.address);
  }

  /** A send never throws out of a handler: a bad port or address is counted, never fatal to the process. */
  private sendRaw(datagram: Buffer, port: number, address: string): void {
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
    sock.on('message', (msg, rinfo) => {
      // Port 0 cannot be answered (Node throws ERR_SOCKET_BAD_PORT on the send): dropped before any work.
      if (rinfo.port === 0) return this.service.counters.inc('refused.port0');
      const from: Endpoint = { address: unmapV4(rinfo.address), port: rinfo.port };
      this.service
        .handle(msg, from, this.init.via ?? 'main')
        .then((reply) => {
          if (reply) this.sendRaw(reply, rinfo.port, rinfo.address);
        })
        .catch((err: unknown) => {
          this.service.counters.inc('error.handler');
          this.logger.error('NMS handler failed', { err: describeError(err) });
        });
    });
    sock.on('error', (err) => this.logger.error('NMS socket error', { err: err.message }));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: host, port: this.init.port ?? 4502 }, () => resolve());
    });
    return { port: sock.address().port };
  }

  async stop(): Promise<void> {
    const s = this.sock;
    this.sock = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
