// UDP socket of the TRS (default port 4503), dual-stack: one socket on [::] relays between IPv4 and IPv6 ends.
// Hands each datagram with its raw source to the service and sends what the service asks; also finds the host's addresses.
// Receives in batches like the NMS (UdpBatchReader, ../udp-reader.ts: after each 'message', the rest of the queue by
// recvmmsg in the same call); plain 'message' events without the addon or with CYPHONIC_TRS_RECV_BATCH=off.

import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Endpoint } from '../../protocol/endpoint.js';
import { mapForDualStack } from '../../util/addr.js';
import type { Logger } from '../../util/log.js';
import { UdpBatchReader } from '../udp-reader.js';
import type { TrsService } from './service.js';

export interface TrsTransportInit {
  /** @default '::' (dual-stack) */
  host?: string;
  /** @default 4503; 0 = ephemeral */
  port?: number;
}

/** Kernel socket buffers: relayed traffic arrives in bursts from many paths at once. */
const SOCKET_BUFFER_BYTES = 4 << 20;

export class TrsTransport {
  private sock: dgram.Socket | null = null;
  private dualStack = true;
  /** Reads the rest of the socket's queue after each 'message' (null: the addon is missing; one event each). */
  private reader: UdpBatchReader | null = null;

  constructor(
    private readonly init: TrsTransportInit,
    private readonly service: TrsService,
    private readonly logger: Logger,
  ) {}

  /**
   * Sends from the TRS socket. `address` is normally in the socket's own form (what the service got from it),
   * so forwarding needs no conversion; a plain IPv4 address given to a dual-stack socket is mapped first.
   */
  send(datagram: Buffer, port: number, address: string): void {
    const s = this.sock;
    if (!s) return;
    try {
      s.send(datagram, port, this.dualStack && address.indexOf(':') < 0 ? mapForDualStack(address) : address);
    } catch (err) {
      this.logger.debug('TRS send failed', { err: (err as Error).message });
    }
  }

  async start(): Promise<{ port: number }> {
    const host = this.init.host ?? '::';
    this.dualStack = host.includes(':');
    const sock = dgram.createSocket({
      type: this.dualStack ? 'udp6' : 'udp4',
      ipv6Only: false,
      recvBufferSize: SOCKET_BUFFER_BYTES,
      sendBufferSize: SOCKET_BUFFER_BYTES,
    });
    const onDatagram = (msg: Buffer, address: string, port: number): void => {
      // Port 0 can be neither answered nor forwarded to: dropped before any work.
      if (port === 0) return this.service.counters.inc('refused.port0');
      this.service.handle(msg, address, port);
    };
    const failed = (err: unknown): void => {
      this.service.counters.inc('error.handler');
      this.logger.error('TRS handler failed', { err: (err as Error).message });
    };
    sock.on('message', (msg, rinfo) => {
      if (this.reader) return this.reader.message(msg, rinfo.address, rinfo.port);
      try {
        onDatagram(msg, rinfo.address, rinfo.port);
      } catch (err) {
        failed(err);
      }
    });
    sock.on('error', (err) => this.logger.error('TRS socket error', { err: err.message }));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: host, port: this.init.port ?? 4503 }, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    this.sock = sock;
    if (process.env['CYPHONIC_TRS_RECV_BATCH'] !== 'off') {
      this.reader = UdpBatchReader.create(sock, { v6: this.dualStack, handler: onDatagram, onTruncated: () => this.service.counters.inc('refused.truncated'), onError: failed });
    }
    return { port: sock.address().port };
  }

  /** Batch reads the reader made and the datagrams they returned (0, 0 without it), for tests. */
  get recvBatches(): { batches: number; drained: number } {
    return { batches: this.reader?.batches ?? 0, drained: this.reader?.drained ?? 0 };
  }

  async stop(): Promise<void> {
    this.reader?.close();
    this.reader = null;
    const s = this.sock;
    this.sock = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}

/** True for addresses worth advertising: not loopback, link-local, unspecified or IPv4-mapped. */
function advertisable(address: string): boolean {
  const a = address.toLowerCase();
  if (isIP(a) === 4) return !a.startsWith('127.') && !a.startsWith('169.254.') && a !== '0.0.0.0';
  return a !== '::1' && a !== '::' && !/^fe[89ab]/.test(a) && !a.startsWith('::ffff:');
}

/** The host's own addresses a TRS can advertise (IPv4 first), from its network interfaces. */
export function hostAddresses(): string[] {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) {
      if (i.internal || !advertisable(i.address)) continue;
      (i.family === 'IPv4' ? v4 : v6).push(i.address);
    }
  }
  return [...new Set([...v4, ...v6])];
}

/** Advertised endpoints for a TRS bound to `host`:`port`: explicit addresses, else the bound address, else the host's. */
export function advertisedEndpoints(port: number, host: string, explicit: string[], fallback: string[]): Endpoint[] {
  const wildcard = host === '::' || host === '0.0.0.0';
  const addresses = explicit.length ? explicit : !wildcard ? [host] : hostAddresses();
  return (addresses.length ? addresses : fallback).map((address) => ({ address, port }));
}
