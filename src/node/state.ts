// The node's state directory (--state DIR): key pair, certificate chain, identity, Common Key session, revocation list.
// Every file is written atomically (tmp + fsync + rename) so kill -9 never leaves a half-written identity.

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Endpoint } from '../protocol/endpoint.js';
import { ConfigError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fsx.js';

export interface Identity {
  name: string;
  nodeId: number;
  fqdn: string;
  /** AS endpoints ("host:port"), from the token or --cloud. */
  as: string[];
  /** SHA-256 of the root CA we trust. */
  caFingerprint: string;
}

export interface Session {
  commonKey: Buffer;
  expiresAt: number;
  domain: string;
  vip4: string;
  vip6: string;
  nms: Endpoint[];
  pool4?: string;
  pool6?: string;
}

export class StateDir {
  constructor(readonly dir: string) {}

  get keyPath(): string {
    return join(this.dir, 'key.pem');
  }
  get certPath(): string {
    return join(this.dir, 'cert.pem');
  }
  get chainPath(): string {
    return join(this.dir, 'chain.pem');
  }
  get rootPath(): string {
    return join(this.dir, 'root.pem');
  }
  /** The revocation list (revocations.ts), written before the node acts on a revocation. */
  get revokedPath(): string {
    return join(this.dir, 'revoked.json');
  }
  get controlPath(): string {
    return join(this.dir, 'control.sock');
  }
  private get identityPath(): string {
    return join(this.dir, 'identity.json');
  }
  private get sessionPath(): string {
    return join(this.dir, 'session.json');
  }

  ensure(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** True once enrollment finished (identity written last). */
  enrolled(): boolean {
    return existsSync(this.identityPath) && existsSync(this.certPath) && existsSync(this.keyPath);
  }

  hasKey(): boolean {
    return existsSync(this.keyPath);
  }

  readKey(): string {
    return readFileSync(this.keyPath, 'utf8');
  }

  writeKey(pem: string): void {
    writeFileAtomic(this.keyPath, pem, 0o600);
  }

  readCert(): string {
    return readFileSync(this.certPath, 'utf8');
  }
  readChain(): string {
    return readFileSync(this.chainPath, 'utf8');
  }
  readRoot(): string {
    return readFileSync(this.rootPath, 'utf8');
  }

  writeEnrollment(certPem: string, chainPem: string, rootPem: string, id: Identity): void {
    writeFileAtomic(this.certPath, certPem, 0o644);
    writeFileAtomic(this.chainPath, chainPem, 0o644);
    writeFileAtomic(this.rootPath, rootPem, 0o644);
    writeFileAtomic(this.identityPath, JSON.stringify(id, null, 2) + '\n', 0o600);
  }

  readIdentity(): Identity {
    const raw = this.readJson(this.identityPath) as Partial<Identity>;
    if (typeof raw.name !== 'string' || typeof raw.nodeId !== 'number' || !Array.isArray(raw.as) || typeof raw.caFingerprint !== 'string') {
      throw new ConfigError(`${this.identityPath} is damaged; enroll again with a new token`, 'ERR_STATE');
    }
    return raw as Identity;
  }

  writeIdentity(id: Identity): void {
    writeFileAtomic(this.identityPath, JSON.stringify(id, null, 2) + '\n', 0o600);
  }

  readSession(): Session | null {
    if (!existsSync(this.sessionPath)) return null;
    try {
      const raw = this.readJson(this.sessionPath) as Record<string, unknown>;
      const key = Buffer.from(String(raw['commonKey']), 'base64');
      if (key.length !== 32 || typeof raw['expiresAt'] !== 'number') return null;
      return {
        commonKey: key,
        expiresAt: raw['expiresAt'],
        domain: String(raw['domain']),
        vip4: String(raw['vip4']),
        vip6: String(raw['vip6']),
        nms: raw['nms'] as Endpoint[],
        ...(typeof raw['pool4'] === 'string' ? { pool4: raw['pool4'] } : {}),
        ...(typeof raw['pool6'] === 'string' ? { pool6: raw['pool6'] } : {}),
      };
    } catch {
      return null; // a damaged session only costs a login
    }
  }

  writeSession(s: Session): void {
    writeFileAtomic(this.sessionPath, JSON.stringify({ ...s, commonKey: s.commonKey.toString('base64') }, null, 2) + '\n', 0o600);
  }

  private readJson(path: string): unknown {
    try {
      return JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      throw new ConfigError(`cannot read ${path}: ${(err as Error).message}`, 'ERR_STATE');
    }
  }
}
