// Authentication Service domain logic: enrollment (token + CSR -> certificate) and login (certificate -> Common Key).
// No transport here: as/transport.ts feeds it requests from TLS connections and tests call it directly.

import { createHash } from 'node:crypto';
import { issueNodeCertificate, parseCsr, randomKey, serialOf, verifyChain, type CaMaterial } from '../../crypto/index.js';
import { Status } from '../../protocol/constants.js';
import type { Endpoint } from '../../protocol/endpoint.js';
import type { EnrollRequest, EnrollResponse, LoginResponse } from '../../protocol/messages.js';
import type { Pools, Store } from '../../store/types.js';
import { CertificateError, RequestError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import { Counters } from '../../util/counters.js';

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
    this.counters.inc('enroll.ok');
    this.c.logger.info('node enrolled', { node: name, nodeId: node.id, vip4: node.vip4, vip6: node.vip6 });
    return { nodeId: node.id, name, fqdn, certificate: cert.certDer, chain: this.c.chainDer };
  }

  /** mTLS peer certificate -> fresh Common Key with the node's addressing. */
  async login(peerCertDer: Buffer | null): Promise<LoginResponse> {
    if (!peerCertDer || peerCertDer.length === 0) {
      this.counters.inc('login.refused.nocert');
      throw new RequestError('ERR_UNAUTHORIZED', Status.Unauthorized, 'login requires a client certificate');
    }
    let serial: string;
    try {
      serial = serialOf(peerCertDer);
      verifyChain(peerCertDer, this.c.chainDer.slice(0, -1), [this.c.rootPem], { now: new Date(this.now()) });
    } catch (err) {
      this.counters.inc('login.refused.cert');
      const code = err instanceof CertificateError ? err.code : 'ERR_CERT_INVALID';
      throw new RequestError(code, Status.CertInvalid, `certificate refused: ${(err as Error).message}`);
    }
    const rec = await this.c.store.getCertificate(serial);
    if (!rec) {
      this.counters.inc('login.refused.cert');
      throw new RequestError('ERR_CERT_UNKNOWN', Status.CertInvalid, 'certificate was not issued by this cloud');
    }
    if (rec.revokedAt !== null) {
      this.counters.inc('login.refused.revoked');
      throw new RequestError('ERR_CERT_REVOKED', Status.CertRevoked, `certificate revoked (${rec.revokeReason ?? 'no reason'})`);
    }
    const node = await this.c.store.getNodeById(rec.nodeId);
    if (!node) throw new RequestError('ERR_INTERNAL', Status.Internal, 'certificate names an unknown node');
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
      nmsEndpoints: this.init.nmsEndpoints,
      pool4: this.init.pools.v4,
      pool6: this.init.pools.v6,
    };
  }
}
