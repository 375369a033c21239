// Authentication Service domain logic: enrollment (token + CSR -> certificate) and login (certificate -> Common Key).
// No transport here: as/transport.ts feeds it requests from TLS connections and tests call it directly.

import { createHash } from 'node:crypto';
import { issueNodeCertificate, parseCsr, randomKey, serialOf, verifyChain, type CaMaterial } from '../../crypto/index.js';
import { Status } from '../../protocol/constants.js';
import type { Endpoint } from '../../protocol/endpoint.js';
import { encodeGeneralNodeInfo, MAX_ENDPOINTS, type EnrollRequest, type EnrollResponse, type GeneralEnrollRequest, type GeneralNodeInfo, type InfoResponse, type LoginResponse, type RenewRequest } from '../../protocol/messages.js';
import type { NodeRecord, Pools, Store } from '../../store/types.js';
import { CertificateError, RequestError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import { Counters } from '../../util/counters.js';
import { bumpDirectoryRev } from '../nms/directory.js';

export interface AsInit {
  domain: string;
  pools: Pools;
  /** NMS endpoints handed to nodes at login. */
  nmsEndpoints: Endpoint[];
  /** @default 86400 */
  commonKeyTtlSec?: number;
  /** @default 365 */
  certValidDays?: number;
}

export interface AsComponents {
  store: Store;
  /** The AS intermediate CA that signs node certificates. */
  issuer: CaMaterial;
  /** DER of [intermediate, root], returned to enrolling nodes. */
  chainDer: Buffer[];
  rootPem: string;
  logger: Logger;
  now?: () => number;
  /**
   * Several instances: the NMS endpoints of every live instance (this one's first), asked at each login. Absent, or
   * failing (store unreachable): init.nmsEndpoints.
   */
  liveNmsEndpoints?: () => Promise<Endpoint[]>;
}

/** Hash under which enrollment token secrets are stored. */
export function tokenHash(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

export class AsService {
  readonly counters = new Counters();
  private readonly now: () => number;
  private readonly ttlMs: number;
  private readonly certDays: number;

  constructor(
    private readonly init: AsInit,
    private readonly c: AsComponents,
  ) {
    this.now = c.now ?? Date.now;
    this.ttlMs = (init.commonKeyTtlSec ?? 86400) * 1000;
    this.certDays = init.certValidDays ?? 365;
  }

  fqdnOf(name: string): string {
    return `${name}.${this.init.domain}`;
  }

  /** Token + CSR -> certificate chain. The token is consumed only once the CSR is known to be good. */
  async enroll(req: EnrollRequest): Promise<EnrollResponse> {
    try {
      await parseCsr(req.csr);
    } catch (err) {
      this.counters.inc('enroll.refused.csr');
      throw new RequestError('ERR_CSR_INVALID', Status.BadRequest, `CSR refused: ${(err as Error).message}`);
    }
    const result = await this.c.store.consumeEnrollmentToken(tokenHash(req.token), this.now());
    if (!result.ok) {
      this.counters.inc(`enroll.refused.token.${result.reason}`);
      const status = { unknown: Status.TokenInvalid, used: Status.TokenUsed, expired: Status.TokenExpired }[result.reason];
      throw new RequestError(`ERR_TOKEN_${result.reason.toUpperCase()}`, status, `enrollment token ${result.reason}`);
    }
    const name = result.name;
    let node = await this.c.store.getNodeByName(name);
    if (node) {
      // Re-enrollment of a known name (the device lost its state): its older certificates stop being valid.
      await this.c.store.revokeNodeCertificates(node.id, 'superseded', this.now());
    } else {
      node = await this.c.store.createNode({ name, kind: 'node' }, this.init.pools);
    }
    const fqdn = this.fqdnOf(name);
    const cert = await issueNodeCertificate(this.c.issuer, req.csr, {
      name,
      fqdn,
      nodeId: node.id,
      vips: [node.vip4, node.vip6],
      validDays: this.certDays,
      now: new Date(this.now()),
    });
    await this.c.store.addCertificate({
      serial: cert.serial,
      nodeId: node.id,
      der: cert.certDer,
      notAfter: cert.notAfter.getTime(),
      createdAt: this.now(),
    });
    await bumpDirectoryRev(this.c.store); // running NMSs list it in the other nodes' directories
    this.counters.inc('enroll.ok');
    this.c.logger.info('node enrolled', { node: name, nodeId: node.id, vip4: node.vip4, vip6: node.vip6 });
    return { nodeId: node.id, name, fqdn, certificate: cert.certDer, chain: this.c.chainDer };
  }

  /** mTLS peer certificate -> fresh Common Key with the node's addressing. */
  async login(peerCertDer: Buffer | null): Promise<LoginResponse> {
    const node = await this.nodeOfCertificate(peerCertDer, 'login');
    const now = this.now();
    const key = randomKey(32);
    const expiresAt = now + this.ttlMs;
    await this.c.store.putCommonKey({ nodeId: node.id, key, expiresAt, createdAt: now });
    this.counters.inc('login.ok');
    this.c.logger.info('node logged in', { node: node.name, nodeId: node.id });
    return {
      nodeId: node.id,
      name: node.name,
      fqdn: this.fqdnOf(node.name),
      domain: this.init.domain,
      vip4: node.vip4,
      vip6: node.vip6,
      commonKey: key,
      commonKeyExpiresAt: BigInt(expiresAt),
      nmsEndpoints: await this.nmsEndpoints(),
      pool4: this.init.pools.v4,
      pool6: this.init.pools.v6,
    };
  }

  /** What login hands out: every live instance's NMS (at most the protocol's MAX_ENDPOINTS), else our own. */
  private async nmsEndpoints(): Promise<Endpoint[]> {
    if (!this.c.liveNmsEndpoints) return this.init.nmsEndpoints;
    try {
      const live = await this.c.liveNmsEndpoints();
      return live.length ? live.slice(0, MAX_ENDPOINTS) : this.init.nmsEndpoints;
    } catch (err) {
      this.c.logger.warn('live NMS list unavailable; handing out our own', { err: err instanceof Error ? err.message : String(err) });
      return this.init.nmsEndpoints;
    }
  }

  /** InfoRequest: the general nodes the authenticated (adapter) node owns. */
  async info(peerCertDer: Buffer | null): Promise<InfoResponse> {
    const adapter = await this.nodeOfCertificate(peerCertDer, 'info');
    const list = await this.c.store.listGeneralNodes(adapter.id);
    this.counters.inc('info.ok');
    return { generalNodes: list.map((n) => encodeGeneralNodeInfo(this.generalInfo(n))) };
  }

  /** The GeneralNodeInfo record of a general node: only the families it is set to use. */
  generalInfo(n: NodeRecord): GeneralNodeInfo {
    const info: GeneralNodeInfo = { name: n.name, mac: macBytes(n.mac ?? ''), fqdn: this.fqdnOf(n.name) };
    if (n.family !== 'v6') info.vip4 = n.vip4;
    if (n.family !== 'v4') info.vip6 = n.vip6;
    return info;
  }

  /**
   * GeneralEnrollRequest: the adapter asks for a certificate for one of its general nodes (key and CSR made by the
   * adapter). Allowed only when the authenticated node owns that general node; older certificates of it are revoked.
   */
  async enrollGeneral(peerCertDer: Buffer | null, req: GeneralEnrollRequest): Promise<EnrollResponse> {
    const adapter = await this.nodeOfCertificate(peerCertDer, 'general-enroll');
    const node = await this.c.store.getNodeByName(req.name);
    if (!node || node.kind !== 'general' || node.adapterId !== adapter.id) {
      this.counters.inc('general-enroll.refused.owner');
      throw new RequestError('ERR_NOT_OWNER', Status.Unauthorized, `${req.name} is not a general node of ${adapter.name}`);
    }
    try {
      await parseCsr(req.csr);
    } catch (err) {
      this.counters.inc('general-enroll.refused.csr');
      throw new RequestError('ERR_CSR_INVALID', Status.BadRequest, `CSR refused: ${(err as Error).message}`);
    }
    await this.c.store.revokeNodeCertificates(node.id, 'superseded', this.now());
    const fqdn = this.fqdnOf(node.name);
    const cert = await issueNodeCertificate(this.c.issuer, req.csr, { name: node.name, fqdn, nodeId: node.id, vips: [node.vip4, node.vip6], validDays: this.certDays, now: new Date(this.now()) });
    await this.c.store.addCertificate({ serial: cert.serial, nodeId: node.id, der: cert.certDer, notAfter: cert.notAfter.getTime(), createdAt: this.now() });
    this.counters.inc('general-enroll.ok');
    this.c.logger.info('general node enrolled', { node: node.name, nodeId: node.id, adapter: adapter.name });
    return { nodeId: node.id, name: node.name, fqdn, certificate: cert.certDer, chain: this.c.chainDer };
  }

  /**
   * Certificate renewal: a node proves its current certificate (mTLS; valid, ours, not revoked) and gets a new one
   * for the same node from its CSR, valid `certValidDays` from now. The old certificate stays valid until it expires
   * (handshakes in flight and peers' Route Directions may still carry it); `cloud revoke` revokes both.
   */
  async renew(peerCertDer: Buffer | null, req: RenewRequest): Promise<EnrollResponse> {
    const node = await this.nodeOfCertificate(peerCertDer, 'renew');
    try {
      await parseCsr(req.csr);
    } catch (err) {
      this.counters.inc('renew.refused.csr');
      throw new RequestError('ERR_CSR_INVALID', Status.BadRequest, `CSR refused: ${(err as Error).message}`);
    }
    const fqdn = this.fqdnOf(node.name);
    const cert = await issueNodeCertificate(this.c.issuer, req.csr, { name: node.name, fqdn, nodeId: node.id, vips: [node.vip4, node.vip6], validDays: this.certDays, now: new Date(this.now()) });
    await this.c.store.addCertificate({ serial: cert.serial, nodeId: node.id, der: cert.certDer, notAfter: cert.notAfter.getTime(), createdAt: this.now() });
    this.counters.inc('renew.ok');
    this.c.logger.info('node certificate renewed', { node: node.name, nodeId: node.id, notAfter: cert.notAfter.toISOString() });
    return { nodeId: node.id, name: node.name, fqdn, certificate: cert.certDer, chain: this.c.chainDer };
  }

  /** The node an mTLS client certificate belongs to: it must chain to our CA, be ours and not be revoked. */
  private async nodeOfCertificate(peerCertDer: Buffer | null, what: string): Promise<NodeRecord> {
    if (!peerCertDer || peerCertDer.length === 0) {
      this.counters.inc(`${what}.refused.nocert`);
      throw new RequestError('ERR_UNAUTHORIZED', Status.Unauthorized, `${what} requires a client certificate`);
    }
    let serial: string;
    try {
      serial = serialOf(peerCertDer);
      verifyChain(peerCertDer, this.c.chainDer.slice(0, -1), [this.c.rootPem], { now: new Date(this.now()) });
    } catch (err) {
      this.counters.inc(`${what}.refused.cert`);
      const code = err instanceof CertificateError ? err.code : 'ERR_CERT_INVALID';
      throw new RequestError(code, Status.CertInvalid, `certificate refused: ${(err as Error).message}`);
    }
    const rec = await this.c.store.getCertificate(serial);
    if (!rec) {
      this.counters.inc(`${what}.refused.cert`);
      throw new RequestError('ERR_CERT_UNKNOWN', Status.CertInvalid, 'certificate was not issued by this cloud');
    }
    if (rec.revokedAt !== null) {
      this.counters.inc(`${what}.refused.revoked`);
      throw new RequestError('ERR_CERT_REVOKED', Status.CertRevoked, `certificate revoked (${rec.revokeReason ?? 'no reason'})`);
    }
    const node = await this.c.store.getNodeById(rec.nodeId);
    if (!node) throw new RequestError('ERR_INTERNAL', Status.Internal, 'certificate names an unknown node');
    return node;
  }
}

/** 'aa:bb:cc:dd:ee:ff' -> 6 bytes (all zero for a malformed value, which the store never holds). */
function macBytes(mac: string): Buffer {
  const hex = mac.replace(/[:-]/g, '');
  return /^[0-9a-fA-F]{12}$/.test(hex) ? Buffer.from(hex, 'hex') : Buffer.alloc(6);
}
