// TLS 1.3 listener for the AS (default port 4501): frames in, AsService calls, frames out.
// Enrollment needs no client certificate; login needs one that chains to our CA (mTLS, checked again in AsService).

import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { MessageType, Status, STATUS_CODES } from '../../protocol/constants.js';
import { decodeBody, encodeBody } from '../../protocol/messages.js';
import { encodeFrame, FrameReader } from '../../protocol/frame.js';
import type { Header } from '../../protocol/header.js';
import { RequestError, describeError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import type { AsService } from './service.js';

export interface AsTransportInit {
  host?: string;
  /** @default 4501 */
  port?: number;
  /** Server certificate chain (leaf, intermediate, root) and key, PEM. */
  certChainPem: string;
  keyPem: string;
  rootPem: string;
  /** An idle or slow connection is closed after this long. @default 10000 */
  idleMs?: number;
  /** Most frames one connection may send. @default 16 */
  maxFramesPerConnection?: number;
}

export class AsTransport {
  private server: tls.Server | null = null;
  private readonly sockets = new Set<tls.TLSSocket>();

  constructor(
    private readonly init: AsTransportInit,
    private readonly service: AsService,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<AddressInfo> {
    const server = tls.createServer({
      key: this.init.keyPem,
      cert: this.init.certChainPem,
      ca: [this.init.rootPem],
      requestCert: true,
      rejectUnauthorized: false, // enrollment has no client certificate yet; login checks `authorized`
      minVersion: 'TLSv1.3',
    });
    server.on('secureConnection', (s) => this.onConnection(s));
    server.on('tlsClientError', () => this.service.counters.inc('tls.error'));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.init.host ?? '::', port: this.init.port ?? 4501, ipv6Only: false }, () => resolve());
    });
    return server.address() as AddressInfo;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  private onConnection(sock: tls.TLSSocket): void {
    this.sockets.add(sock);
    sock.setNoDelay(true);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    sock.setTimeout(this.init.idleMs ?? 10_000, () => sock.destroy());
    const reader = new FrameReader();
    let frames = 0;
    let chain = Promise.resolve();
    sock.on('data', (chunk: Buffer) => {
      let got: { header: Header; body: Buffer }[];
      try {
        got = reader.push(chunk);
      } catch (err) {
        this.service.counters.inc('refused.decode');
        this.logger.debug('bad frame, closing', { err: describeError(err) });
        sock.destroy();
        return;
      }
      for (const f of got) {
        if (++frames > (this.init.maxFramesPerConnection ?? 16)) {
          sock.destroy();
          return;
        }
        chain = chain.then(() => this.handle(sock, f.header, f.body));
      }
    });
  }

  private async handle(sock: tls.TLSSocket, header: Header, body: Buffer): Promise<void> {
    let reply: Buffer;
    try {
      reply = await this.dispatch(sock, header, body);
    } catch (err) {
      const status = err instanceof RequestError ? err.status : Status.Internal;
      const reason = err instanceof RequestError ? err.message : 'internal error';
      if (!(err instanceof RequestError)) this.logger.error('AS request failed', { err: describeError(err) });
      reply = encodeFrame(
        { type: MessageType.Nack, status, txid: header.txid, seq: 0n, id: 0n },
        encodeBody(MessageType.Nack, { reason: `${STATUS_CODES[status as Status] ?? 'ERR'}: ${reason}` }),
      );
    }
    if (!sock.destroyed) sock.write(reply);
  }

  private async dispatch(sock: tls.TLSSocket, header: Header, body: Buffer): Promise<Buffer> {
    const bad = (why: string): never => {
      this.service.counters.inc('refused.decode');
      throw new RequestError('ERR_BAD_REQUEST', Status.BadRequest, why);
    };
    switch (header.type) {
      case MessageType.EnrollRequest: {
        let req;
        try {
          req = decodeBody(MessageType.EnrollRequest, body);
        } catch (err) {
          return bad(describeError(err));
        }
        const res = await this.service.enroll(req);
        return encodeFrame({ type: MessageType.EnrollResponse, status: Status.Ok, txid: header.txid, seq: 0n, id: BigInt(res.nodeId) }, encodeBody(MessageType.EnrollResponse, res));
      }
      case MessageType.LoginRequest: {
        try {
          decodeBody(MessageType.LoginRequest, body);
        } catch (err) {
          return bad(describeError(err));
        }
        const res = await this.service.login(this.clientCertificate(sock, 'login'));
        return encodeFrame({ type: MessageType.LoginResponse, status: Status.Ok, txid: header.txid, seq: 0n, id: BigInt(res.nodeId) }, encodeBody(MessageType.LoginResponse, res));
      }
      case MessageType.InfoRequest: {
        try {
          decodeBody(MessageType.InfoRequest, body);
        } catch (err) {
          return bad(describeError(err));
        }
        const res = await this.service.info(this.clientCertificate(sock, 'info'));
        return encodeFrame({ type: MessageType.InfoResponse, status: Status.Ok, txid: header.txid, seq: 0n, id: 0n }, encodeBody(MessageType.InfoResponse, res));
      }
      case MessageType.GeneralEnrollRequest: {
        let req;
        try {
          req = decodeBody(MessageType.GeneralEnrollRequest, body);
        } catch (err) {
          return bad(describeError(err));
        }
        const res = await this.service.enrollGeneral(this.clientCertificate(sock, 'general-enroll'), req);
        return encodeFrame({ type: MessageType.EnrollResponse, status: Status.Ok, txid: header.txid, seq: 0n, id: BigInt(res.nodeId) }, encodeBody(MessageType.EnrollResponse, res));
      }
      case MessageType.RenewRequest: {
        let req;
        try {
          req = decodeBody(MessageType.RenewRequest, body);
        } catch (err) {
          return bad(describeError(err));
        }
        const res = await this.service.renew(this.clientCertificate(sock, 'renew'), req);
        return encodeFrame({ type: MessageType.EnrollResponse, status: Status.Ok, txid: header.txid, seq: 0n, id: BigInt(res.nodeId) }, encodeBody(MessageType.EnrollResponse, res));
      }
      default:
        return bad(`unexpected message type ${header.type} at the AS`);
    }
  }

  /** The TLS client certificate (DER), which must have verified against our CA (mTLS); checked again by the service. */
  private clientCertificate(sock: tls.TLSSocket, what: string): Buffer {
    if (!sock.authorized) {
      const has = sock.getPeerCertificate(false);
      const present = !!has && Object.keys(has).length > 0;
      this.service.counters.inc(`${what}.refused.cert`);
      const why = present ? `certificate refused: ${String(sock.authorizationError)}` : `${what} requires a client certificate`;
      throw new RequestError('ERR_CERT_INVALID', present ? Status.CertInvalid : Status.Unauthorized, why);
    }
    const peer = sock.getPeerCertificate(false);
    return peer && peer.raw ? peer.raw : Buffer.alloc(0);
  }
}
