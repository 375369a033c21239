// The node's revocation list: serials (lowercase hex) of certificates the NMS said were revoked (PolicyEntry
// revokedSerials). The handshake's trust anchors consult it, so a certificate on it is refused in every
// TunnelRequest/Response and Route Direction. With a file (the state directory's revoked.json) the list survives a
// restart: new serials are written atomically (tmp + fsync + rename) BEFORE the caller acts on them, so a kill -9 at
// any moment loses none that took effect, and a restarted node refuses a revoked peer before the NMS pushes again.
// Bounded: past MAX_REVOKED_SERIALS_HELD the oldest serial is forgotten (insertion order = oldest first).

import { existsSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../util/fsx.js';
import type { Logger } from '../util/log.js';

/** Tunable: revoked certificate serials a node remembers (the oldest is forgotten past this; ~50 bytes each). */
export const MAX_REVOKED_SERIALS_HELD = 16_384;

/** A certificate serial as the list keeps it: lowercase hex, at most 40 digits (20 bytes, RFC 5280). */
const SERIAL = /^[0-9a-f]{1,40}$/;

export interface RevocationLoad {
  serials: number;
  /** The file existed but could not be read as a list (it is then rewritten at the next revocation). */
  damaged: boolean;
}

export class RevocationList {
  private readonly serials = new Set<string>();
  /** What load() found (for the daemon's log). */
  readonly loaded: RevocationLoad;

  /** `file`: where the list is kept (read now); absent: in memory only. `max`: the bound (tests use small ones). */
  constructor(
    private readonly file?: string,
    private readonly max = MAX_REVOKED_SERIALS_HELD,
  ) {
    this.loaded = this.load();
  }

  get size(): number {
    return this.serials.size;
  }

  has(serial: string): boolean {
    return this.serials.has(serial);
  }

  /**
   * Adds serials (invalid ones are skipped); returns the ones that were new. If any were, the whole list is written
   * to the file before this returns; a failed write throws (and the serials are then held in memory only).
   */
  add(serials: Iterable<string>): string[] {
    const added: string[] = [];
    for (const s of serials) {
      if (!SERIAL.test(s) || this.serials.has(s)) continue;
      this.serials.add(s);
      added.push(s);
      if (this.serials.size > this.max) this.serials.delete(this.serials.values().next().value!);
    }
    if (added.length > 0 && this.file) writeFileAtomic(this.file, JSON.stringify({ v: 1, serials: [...this.serials] }) + '\n', 0o600);
    return added;
  }

  private load(): RevocationLoad {
    if (!this.file || !existsSync(this.file)) return { serials: 0, damaged: false };
    try {
      const raw = JSON.parse(readFileSync(this.file, 'utf8')) as { serials?: unknown };
      if (!Array.isArray(raw.serials)) return { serials: 0, damaged: true };
      let bad = false;
      for (const s of raw.serials.slice(-this.max)) {
        if (typeof s === 'string' && SERIAL.test(s)) this.serials.add(s);
        else bad = true;
      }
      return { serials: this.serials.size, damaged: bad };
    } catch {
      return { serials: 0, damaged: true };
    }
  }
}

/** The list kept in the state directory's file `path`, logging what was loaded (a damaged file is said aloud). */
export function openRevocationList(path: string, logger: Logger): RevocationList {
  const list = new RevocationList(path);
  if (list.loaded.damaged) logger.warn('the revocation list file is damaged; kept what could be read', { path, serials: list.size });
  else if (list.size > 0) logger.info('revocation list loaded', { serials: list.size });
  return list;
}
