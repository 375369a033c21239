// The node's copy of its directory: the peers the NMS says it may reach (name, node id, virtual addresses), fetched
// page by page whenever the NMS names a revision we do not hold (RegistrationResponse, KeepaliveAck, a pushed
// DirectoryNotice). The overlay DNS answers a listed name from here at once and starts route selection beside the
// answer (PeerManager.resolve). Only a convenience: a name not listed (or a directory not fetched yet) is resolved
// through route selection as before, and a listed peer still needs a route selection and a handshake that check the
// policy and its certificate. A failed or torn fetch (the revision changed between pages) keeps the previous copy.
// The NMS is not trusted with more than it could do before: entries outside the overlay's pools are dropped, and an
// entry whose peer's certificate (when its Route Direction arrives) carries other addresses is forgotten (PeerManager).

import { decodeDirectoryEntry, type DirectoryEntry, type DirectoryPage } from '../protocol/messages.js';
import { Counters } from '../util/counters.js';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

/** Tunable: entries kept at most (the NMS lists at most as many: cloud/nms/directory.ts MAX_DIRECTORY_ENTRIES). */
export const MAX_DIRECTORY_ENTRIES = 4096;
/** Tunable: page requests in flight at once while fetching. */
export const DIRECTORY_FETCH_PARALLEL = 8;
/** Tunable: whole fetches tried for one revision before waiting for the next offer. */
const FETCH_ATTEMPTS = 3;

export interface DirectoryComponents {
  /** The overlay domain (LoginResponse.domain): names are looked up as NAME.DOMAIN. */
  domain: () => string;
  /** One DirectoryRequest to the NMS (retransmitted by the client); rejects when it gets no answer. */
  fetchPage: (page: number) => Promise<DirectoryPage>;
  /**
   * Whether an address lies in the overlay's pools (as the AS gave them at login). An entry with an address outside
   * is dropped: a DNS answer from the directory must never send an application's traffic outside the tunnels.
   */
  inOverlay?: (address: string) => boolean;
  logger: Logger;
}

export class PeerDirectory {
  readonly counters = new Counters();
  private held: string | null = null;
  private wanted: string | null = null;
  private byFqdn = new Map<string, DirectoryEntry>();
  private running: Promise<void> | null = null;

  constructor(private readonly c: DirectoryComponents) {}

  /** The revision held, or null before the first fetch. */
  get rev(): string | null {
    return this.held;
  }

  get size(): number {
    return this.byFqdn.size;
  }

  /** A listed peer by its fully qualified name (case-insensitive, trailing dot allowed), or null. */
  lookup(fqdn: string): DirectoryEntry | null {
    return this.byFqdn.get(fqdn.toLowerCase().replace(/\.$/, '')) ?? null;
  }

  /**
   * Drops the entry for `fqdn` (its peer's certificate carries other addresses than the entry: a wrong or forged
   * directory); the next revision fetched brings it back if the NMS still lists it.
   */
  forget(fqdn: string): void {
    if (this.byFqdn.delete(fqdn.toLowerCase().replace(/\.$/, ''))) this.counters.inc('forgotten');
  }

  /** The NMS named revision `rev`: fetch it unless we hold it (in the background; resolves when the fetch ends). */
  offer(rev: string | undefined): Promise<void> {
    if (!rev || rev === this.held) return this.running ?? Promise.resolve();
    this.wanted = rev;
    this.running ??= this.fetchWanted().finally(() => (this.running = null));
    return this.running;
  }

  private async fetchWanted(): Promise<void> {
    let attempts = 0;
    while (this.wanted !== null && this.wanted !== this.held && attempts < FETCH_ATTEMPTS) {
      attempts++;
      const asked = this.wanted;
      try {
        const got = await this.fetchAll();
        if (!got) {
          this.counters.inc('torn');
          continue; // changed while we fetched: again, with what page 0 says now
        }
        this.byFqdn = got.entries;
        this.held = got.rev;
        // Whatever revision we got is at least as new as the one asked for; only a later offer asks again.
        if (this.wanted === asked) this.wanted = null;
        this.counters.inc('fetched');
        this.c.logger.debug('directory fetched', { rev: got.rev, peers: got.entries.size });
      } catch (err) {
        this.counters.inc('fetch-failed');
        this.c.logger.debug('directory fetch failed', { err: describeError(err) });
        return;
      }
    }
  }

  /** Every page of one revision, or null when pages of different revisions came back (torn). */
  private async fetchAll(): Promise<{ rev: string; entries: Map<string, DirectoryEntry> } | null> {
    const first = await this.c.fetchPage(0);
    const pages: DirectoryPage[] = [first];
    let next = 1;
    const worker = async (): Promise<void> => {
      while (next < first.pages) {
        const n = next++;
        pages[n] = await this.c.fetchPage(n);
      }
    };
    await Promise.all(Array.from({ length: Math.min(DIRECTORY_FETCH_PARALLEL, first.pages - 1) }, worker));
    if (pages.some((p, i) => p.rev !== first.rev || p.page !== i || p.pages !== first.pages)) return null;
    const domain = this.c.domain().toLowerCase().replace(/\.$/, '');
    const entries = new Map<string, DirectoryEntry>();
    for (const p of pages) {
      for (const raw of p.entries) {
        let e: DirectoryEntry;
        try {
          e = decodeDirectoryEntry(raw);
        } catch {
          this.counters.inc('bad-entry');
          continue;
        }
        if (entries.size >= MAX_DIRECTORY_ENTRIES) break;
        if (this.c.inOverlay && !(this.c.inOverlay(e.vip4) && this.c.inOverlay(e.vip6))) {
          this.counters.inc('outside-overlay');
          continue;
        }
        entries.set(`${e.name.toLowerCase()}.${domain}`, e);
      }
    }
    return { rev: first.rev, entries };
  }
}
