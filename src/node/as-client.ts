// Client side of the AS (TLS 1.3): enrollment pins the root CA by the token's fingerprint, login uses mTLS.
// Either way the server must prove it is the AS, not merely someone our CA certified: its leaf certificate must carry
// the AS server purpose (AS_SERVER_PURPOSE), which the CA puts in no node certificate. A login answer is checked
// before anyone uses it (pools, virtual addresses, NMS endpoints: checkLoginResponse).
// Tries each AS endpoint in turn, never two at once: every request changes state at the AS (a token spent, a
// certificate issued, the node's one Common Key replaced by a login), so a losing racer could undo the winner.
// Refusals come back as RequestError with the AS's status code.

import tls from 'node:tls';
import { fingerprint, hasAsPurpose, toPem, verifyChain } from '../crypto/index.js';
import { contains, parseCidr } from '../net/addr/cidr.js';
import { MessageType, Status } from '../protocol/constants.js';
import { parseEndpoint } from '../protocol/endpoint.js';
import { encodeFrame, FrameReader } from '../protocol/frame.js';
import { decodeBody, decodeGeneralNodeInfo, encodeBody, type EnrollResponse, type GeneralNodeInfo, type LoginResponse } from '../protocol/messages.js';
import { CertificateError, CyphonicError, RequestError, requestErrorFromNack } from '../util/errors.js';

export interface AsClientOptions {
  endpoints: string[];
  /** @default AS_TIMEOUT_MS */
  timeoutMs?: number;
}

/**
 * How long one AS exchange (TCP + TLS 1.3 + one request: three round trips) may take: at a 600 ms satellite RTT it
 * needs 1.8 s, and a lost segment adds TCP's first retransmission timeout (1 s for a SYN, ~1.8 s later), twice.
 */
export const AS_TIMEOUT_MS = 10_000;


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
      try {
        if (trust.kind === 'pin') rootPem = checkPinnedChain(sock, trust.caFingerprint);
        checkAsPurpose(sock);
      } catch (err) {
        return fail(err as Error);
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

/** The server's leaf must be the AS's own certificate: a node certificate chains to the same root but lacks this. */
function checkAsPurpose(sock: tls.TLSSocket): void {
  const leaf = sock.getPeerCertificate(false);
  if (!leaf?.raw || !hasAsPurpose(leaf.raw)) {
    throw new CertificateError('the server is not the AS: its certificate lacks the AS purpose (a node certificate?)', 'ERR_NOT_AS');
  }
}

/** Smallest and largest prefix lengths accepted for the overlay pools a login hands out. */
const POOL4_PREFIX = { min: 8, max: 30 };
const POOL6_PREFIX = { min: 32, max: 126 };

/**
 * A login answer is used to configure the TUN (addresses, on-link pools) and to pick where signaling goes, so it is
 * checked first: pools of sane size (a /1 pool would pull half the Internet into the TUN), our virtual addresses
 * inside them, and NMS endpoints that are unicast, have a port and do not sit inside the overlay itself.
 */
export function checkLoginResponse(res: LoginResponse): LoginResponse {
  const bad = (what: string): never => {
    throw new CertificateError(`login answer refused: ${what}`, 'ERR_LOGIN_ANSWER');
  };
  const pool = (text: string | undefined, family: 4 | 6, bounds: { min: number; max: number }): string | null => {
    if (text === undefined) return null;
    let c;
    try {
      c = parseCidr(text);
    } catch {
      return bad(`pool ${JSON.stringify(text)} is not a CIDR`);
    }
    if (c.family !== family) bad(`pool ${text} is not IPv${family}`);
    if (c.prefix < bounds.min || c.prefix > bounds.max) bad(`pool ${text}: prefix /${c.prefix} outside /${bounds.min}../${bounds.max}`);
    return text;
  };
  const p4 = pool(res.pool4, 4, POOL4_PREFIX);
  const p6 = pool(res.pool6, 6, POOL6_PREFIX);
  if (p4 && res.vip4 && !contains(p4, res.vip4)) bad(`vip4 ${res.vip4} outside pool ${p4}`);
  if (p6 && res.vip6 && !contains(p6, res.vip6)) bad(`vip6 ${res.vip6} outside pool ${p6}`);
  if (res.nmsEndpoints.length === 0) bad('no NMS endpoint');
  for (const e of res.nmsEndpoints) {
    if (e.port === 0) bad(`NMS endpoint ${e.address} without a port`);
    if (/^(0\.0\.0\.0|::|255\.255\.255\.255)$/.test(e.address) || /^(22[4-9]|23\d)\./.test(e.address) || /^ff/i.test(e.address)) bad(`NMS endpoint ${e.address} is not unicast`);
    if ((p4 && !e.address.includes(':') && contains(p4, e.address)) || (p6 && e.address.includes(':') && contains(p6, e.address))) {
      bad(`NMS endpoint ${e.address} lies inside the overlay pool`);
    }
  }
  return res;
}

/** Tries the endpoints one after another; the first answer, or refusal, ends it. */
async function firstAnswer(endpoints: string[], run: (ep: string) => Promise<Exchange>): Promise<Exchange> {
  let last: unknown = new CyphonicError('ERR_NO_AS', 'no AS endpoint configured');
  for (const ep of endpoints) {
    try {
      return await run(ep);
    } catch (err) {
      if (isAnswer(err)) throw err; // a real answer: do not shop around
      last = err;
    }
  }
  throw last;
}

/** A refusal from an AS (or a server that failed to prove it is ours) ends the search; anything else is the network. */
function isAnswer(err: unknown): boolean {
  return err instanceof RequestError || err instanceof CertificateError;
}

export async function enroll(o: AsClientOptions & { caFingerprint: string; token: string; csr: Buffer }): Promise<EnrollResponse & { rootPem: string }> {
  const body = encodeBody(MessageType.EnrollRequest, { token: o.token, csr: o.csr });
  const ex = await firstAnswer(o.endpoints, (ep) => exchange(ep, { kind: 'pin', caFingerprint: o.caFingerprint }, MessageType.EnrollRequest, body, o.timeoutMs ?? AS_TIMEOUT_MS));
  const res = decodeBody(MessageType.EnrollResponse, ex.body);
  return { ...res, rootPem: ex.rootPem! };
}

export async function login(o: AsClientOptions & { rootPem: string; certPem: string; chainPem: string; keyPem: string }): Promise<LoginResponse> {
  const body = encodeBody(MessageType.LoginRequest, { clientVersion: 1 });
  const trust: Trust = { kind: 'mtls', rootPem: o.rootPem, certPem: o.certPem, chainPem: o.chainPem, keyPem: o.keyPem };
  const ex = await firstAnswer(o.endpoints, (ep) => exchange(ep, trust, MessageType.LoginRequest, body, o.timeoutMs ?? AS_TIMEOUT_MS));
  return checkLoginResponse(decodeBody(MessageType.LoginResponse, ex.body));
}

export { Status };

/** InfoRequest (mTLS): the general nodes this node serves as an adapter. */
export async function info(o: AsClientOptions & { rootPem: string; certPem: string; chainPem: string; keyPem: string }): Promise<GeneralNodeInfo[]> {
  const trust: Trust = { kind: 'mtls', rootPem: o.rootPem, certPem: o.certPem, chainPem: o.chainPem, keyPem: o.keyPem };
  const ex = await firstAnswer(o.endpoints, (ep) => exchange(ep, trust, MessageType.InfoRequest, encodeBody(MessageType.InfoRequest, {}), o.timeoutMs ?? AS_TIMEOUT_MS));
  return decodeBody(MessageType.InfoResponse, ex.body).generalNodes.map((b) => decodeGeneralNodeInfo(b));
}

/** RenewRequest (mTLS with the current certificate): a new certificate for this node from `csr` (renewal). */
export async function renew(o: AsClientOptions & { rootPem: string; certPem: string; chainPem: string; keyPem: string; csr: Buffer }): Promise<EnrollResponse> {
  const trust: Trust = { kind: 'mtls', rootPem: o.rootPem, certPem: o.certPem, chainPem: o.chainPem, keyPem: o.keyPem };
  const body = encodeBody(MessageType.RenewRequest, { csr: o.csr });
  const ex = await firstAnswer(o.endpoints, (ep) => exchange(ep, trust, MessageType.RenewRequest, body, o.timeoutMs ?? AS_TIMEOUT_MS));
  return decodeBody(MessageType.EnrollResponse, ex.body);
}

/** GeneralEnrollRequest (mTLS as the adapter): a certificate for general node `name` from the adapter-made CSR. */
export async function enrollGeneral(
  o: AsClientOptions & { rootPem: string; certPem: string; chainPem: string; keyPem: string; name: string; csr: Buffer },
): Promise<EnrollResponse> {
  const trust: Trust = { kind: 'mtls', rootPem: o.rootPem, certPem: o.certPem, chainPem: o.chainPem, keyPem: o.keyPem };
  const body = encodeBody(MessageType.GeneralEnrollRequest, { name: o.name, csr: o.csr });
  const ex = await firstAnswer(o.endpoints, (ep) => exchange(ep, trust, MessageType.GeneralEnrollRequest, body, o.timeoutMs ?? AS_TIMEOUT_MS));
  return decodeBody(MessageType.EnrollResponse, ex.body);
}
