// Client side of the AS (TLS 1.3): enrollment pins the root CA by the token's fingerprint, login uses mTLS.
// Tries each AS endpoint in turn; refusals come back as RequestError with the AS's status code.

import tls from 'node:tls';
import { fingerprint, toPem, verifyChain } from '../crypto/index.js';
import { MessageType, Status } from '../protocol/constants.js';
import { parseEndpoint } from '../protocol/endpoint.js';
import { encodeFrame, FrameReader } from '../protocol/frame.js';
import { decodeBody, decodeGeneralNodeInfo, encodeBody, type EnrollResponse, type GeneralNodeInfo, type LoginResponse } from '../protocol/messages.js';
import { CertificateError, CyphonicError, RequestError, requestErrorFromNack } from '../util/errors.js';

export interface AsClientOptions {
  endpoints: string[];
  /** @default 5000 */
  timeoutMs?: number;
}

type Trust = { kind: 'pin'; caFingerprint: string } | { kind: 'mtls'; rootPem: string; certPem: string; chainPem: string; keyPem: string };

interface Exchange {
  body: Buffer;
  rootPem: string | null;
}

async function exchange(endpoint: string, trust: Trust, type: MessageType, body: Buffer, timeoutMs: number): Promise<Exchange> {
  const ep = parseEndpoint(endpoint);
  return new Promise<Exchange>((resolve, reject) => {
    const opts: tls.ConnectionOptions = {
      host: ep.address,
      port: ep.port,
      minVersion: 'TLSv1.3',
      checkServerIdentity: () => undefined, // trust comes from our own CA (pinned), not from names
    };
    if (trust.kind === 'pin') opts.rejectUnauthorized = false;
    else Object.assign(opts, { ca: [trust.rootPem], cert: trust.certPem + trust.chainPem, key: trust.keyPem, rejectUnauthorized: true });
    const sock = tls.connect(opts);
    sock.setNoDelay(true);
    let rootPem: string | null = null;
    const timer = setTimeout(() => sock.destroy(new CyphonicError('ERR_TIMEOUT', `AS ${endpoint} did not answer`)), timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    sock.on('error', fail);
    sock.on('secureConnect', () => {
      if (trust.kind === 'pin') {
        try {
          rootPem = checkPinnedChain(sock, trust.caFingerprint);
        } catch (err) {
          return fail(err as Error);
        }
      }
      sock.write(encodeFrame({ type, status: 0, txid: 1, seq: 0n, id: 0n }, body));
    });
    const reader = new FrameReader();
    sock.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = reader.push(chunk);
      } catch (err) {
        return fail(err as Error);
      }
      const f = frames[0];
      if (!f) return;
      clearTimeout(timer);
      sock.end();
      if (f.header.type === MessageType.Nack) {
        let reason = 'refused';
        try {
          reason = decodeBody(MessageType.Nack, f.body).reason;
        } catch {
          /* keep generic reason */
        }
        reject(requestErrorFromNack(f.header.status, reason));
        return;
      }
      resolve({ body: f.body, rootPem });
    });
    sock.on('close', () => fail(new CyphonicError('ERR_CLOSED', `AS ${endpoint} closed the connection`)));
  });
}

/** The server chain must end in a root whose fingerprint is the token's, and verify up to it. */
function checkPinnedChain(sock: tls.TLSSocket, caFingerprint: string): string {
  const chain: Buffer[] = [];
  let cert: tls.DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
  const seen = new Set<string>();
  while (cert && cert.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(cert.raw);
    cert = cert.issuerCertificate;
  }
  const root = chain.find((der) => fingerprint(der) === caFingerprint);
  if (!root) throw new CertificateError('the AS does not present the CA named in the token', 'ERR_CERT_UNTRUSTED');
  const leaf = chain[0]!;
  verifyChain(leaf, chain.slice(1).filter((d) => d !== root), [root]);
  return toPem(root);
}

async function firstAnswer(endpoints: string[], run: (ep: string) => Promise<Exchange>): Promise<Exchange> {
  let last: unknown = new CyphonicError('ERR_NO_AS', 'no AS endpoint configured');
  for (const ep of endpoints) {
    try {
      return await run(ep);
    } catch (err) {
      if (err instanceof RequestError || err instanceof CertificateError) throw err; // a real answer: do not shop around
      last = err;
    }
  }
  throw last;
}

export async function enroll(o: AsClientOptions & { caFingerprint: string; token: string; csr: Buffer }): Promise<EnrollResponse & { rootPem: string }> {
  const body = encodeBody(MessageType.EnrollRequest, { token: o.token, csr: o.csr });
  const ex = await firstAnswer(o.endpoints, (ep) => exchange(ep, { kind: 'pin', caFingerprint: o.caFingerprint }, MessageType.EnrollRequest, body, o.timeoutMs ?? 5000));
  const res = decodeBody(MessageType.EnrollResponse, ex.body);
  return { ...res, rootPem: ex.rootPem! };
}

export async function login(o: AsClientOptions & { rootPem: string; certPem: string; chainPem: string; keyPem: string }): Promise<LoginResponse> {
  const body = encodeBody(MessageType.LoginRequest, { clientVersion: 1 });
  const trust: Trust = { kind: 'mtls', rootPem: o.rootPem, certPem: o.certPem, chainPem: o.chainPem, keyPem: o.keyPem };
  const ex = await firstAnswer(o.endpoints, (ep) => exchange(ep, trust, MessageType.LoginRequest, body, o.timeoutMs ?? 5000));
  return decodeBody(MessageType.LoginResponse, ex.body);
}

export { Status };

/** InfoRequest (mTLS): the general nodes this node serves as an adapter. */
export async function info(o: AsClientOptions & { rootPem: string; certPem: string; chainPem: string; keyPem: string }): Promise<GeneralNodeInfo[]> {
  const trust: Trust = { kind: 'mtls', rootPem: o.rootPem, certPem: o.certPem, chainPem: o.chainPem, keyPem: o.keyPem };
  const ex = await firstAnswer(o.endpoints, (ep) => exchange(ep, trust, MessageType.InfoRequest, encodeBody(MessageType.InfoRequest, {}), o.timeoutMs ?? 5000));
  return decodeBody(MessageType.InfoResponse, ex.body).generalNodes.map((b) => decodeGeneralNodeInfo(b));
}

/** GeneralEnrollRequest (mTLS as the adapter): a certificate for general node `name` from the adapter-made CSR. */
export async function enrollGeneral(
  o: AsClientOptions & { rootPem: string; certPem: string; chainPem: string; keyPem: string; name: string; csr: Buffer },
): Promise<EnrollResponse> {
  const trust: Trust = { kind: 'mtls', rootPem: o.rootPem, certPem: o.certPem, chainPem: o.chainPem, keyPem: o.keyPem };
  const body = encodeBody(MessageType.GeneralEnrollRequest, { name: o.name, csr: o.csr });
  const ex = await firstAnswer(o.endpoints, (ep) => exchange(ep, trust, MessageType.GeneralEnrollRequest, body, o.timeoutMs ?? 5000));
  return decodeBody(MessageType.EnrollResponse, ex.body);
}
