// The REST API's admin token: DIR/admin-token (0600), written by `cloud init` (or the first `cloud start` of an
// older cloud) and replaced by `cloud admin-token --rotate`. The running API re-reads the file when it changed, so a
// rotation takes effect at once; tokens are compared in constant time (SHA-256 of both, then timingSafeEqual).

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../util/errors.js';
import { writeFileAtomic } from '../../util/fsx.js';

export const ADMIN_TOKEN_FILE = 'admin-token';

export function adminTokenPath(dir: string): string {
  return join(dir, ADMIN_TOKEN_FILE);
}

/** Writes a new random admin token (32 bytes, base64url) to DIR/admin-token (0600) and returns it. */
export function rotateAdminToken(dir: string): string {
  const token = randomBytes(32).toString('base64url');
  writeFileAtomic(adminTokenPath(dir), token + '\n', 0o600);
  return token;
}

/** The token in DIR/admin-token, made first if there is none. */
export function ensureAdminToken(dir: string): string {
  const path = adminTokenPath(dir);
  if (!existsSync(path)) return rotateAdminToken(dir);
  const token = readFileSync(path, 'utf8').trim();
  if (token.length < 16) throw new ConfigError(`${path}: too short to be an admin token (cloud admin-token --rotate)`, 'ERR_ADMIN_TOKEN');
  return token;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Checks bearer tokens against DIR/admin-token, re-reading it when its mtime or size changed. */
export class AdminTokenCheck {
  private digest: Buffer;
  private stamp: string;

  constructor(private readonly dir: string) {
    this.digest = digest(ensureAdminToken(dir));
    this.stamp = this.currentStamp();
  }

  private currentStamp(): string {
    try {
      const st = statSync(adminTokenPath(this.dir));
      return `${st.mtimeMs}/${st.size}/${st.ino}`;
    } catch {
      return 'missing';
    }
  }

  /** True if `presented` is the current admin token (constant time in its content). */
  check(presented: string): boolean {
    const stamp = this.currentStamp();
    if (stamp !== this.stamp) {
      try {
        this.digest = digest(ensureAdminToken(this.dir));
        this.stamp = this.currentStamp();
      } catch {
        return false; // unreadable or damaged: nobody gets in until it is fixed
      }
    }
    return timingSafeEqual(digest(presented), this.digest);
  }
}
