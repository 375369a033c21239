// TRS instances in the store: each TRS upserts its row (endpoints, load) every few seconds and removes it on a clean stop;
// the NMS picks a live, least-loaded one with pickRelay. A row whose heartbeat is 3 intervals old counts as dead.

import type { Endpoint } from '../../protocol/endpoint.js';
import type { RelayServerRecord, Store } from '../../store/types.js';
import { describeError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';

/** Tunable: how often a TRS refreshes its row (its load is at most this stale for the NMS). */
export const RELAY_HEARTBEAT_MS = 5_000;
/** Tunable: a TRS whose heartbeat is older than this many intervals is dead (one lost beat is not enough). */
export const RELAY_LIVE_INTERVALS = 3;
/** Tunable: rows of TRS processes that died without cleaning up are deleted after this long. */
export const RELAY_PRUNE_AFTER_MS = 10 * 60_000;

/** What the registry needs from the running TRS (narrow, so tests pass a fake). */
export interface RelayServerSource {
  readonly id: string;
  readonly advertised: Endpoint[];
  readonly load: number;
}

export interface RelayRegistryInit {
  /** @default RELAY_HEARTBEAT_MS */
  heartbeatMs?: number;
  /** @default RELAY_PRUNE_AFTER_MS */
  pruneAfterMs?: number;
}

export interface RelayRegistryComponents {
  store: Store;
  server: RelayServerSource;
  logger: Logger;
  now?: () => number;
}

export class RelayRegistry {
  private timer: NodeJS.Timeout | null = null;
  private beating: Promise<void> | null = null;
  private startedAt = 0;
  private lastPrune = 0;
  private readonly now: () => number;
  private readonly heartbeatMs: number;
  private readonly pruneAfterMs: number;

  constructor(
    init: RelayRegistryInit,
    private readonly c: RelayRegistryComponents,
  ) {
    this.now = c.now ?? Date.now;
    this.heartbeatMs = init.heartbeatMs ?? RELAY_HEARTBEAT_MS;
    this.pruneAfterMs = init.pruneAfterMs ?? RELAY_PRUNE_AFTER_MS;
  }

  /** Writes the first row (errors propagate: a TRS the NMS cannot find is useless) and starts heartbeating. */
  async start(): Promise<void> {
    this.startedAt = this.now();
    await this.write();
    await this.prune();
    this.timer = setInterval(() => void this.beat(), this.heartbeatMs);
    this.timer.unref();
  }

  /** One heartbeat (skipped while the previous one is still running); failures are logged, the next beat retries. */
  beat(): Promise<void> {
    if (this.beating) return this.beating;
    this.beating = (async () => {
      try {
        await this.write();
        if (this.now() - this.lastPrune >= this.pruneAfterMs / 10) await this.prune();
      } catch (err) {
        this.c.logger.warn('TRS heartbeat failed', { err: describeError(err) });
      } finally {
        this.beating = null;
      }
    })();
    return this.beating;
  }

  /** Stops heartbeating and removes the row, so the NMS stops picking this TRS at once. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.beating;
    try {
      await this.c.store.deleteRelayServer(this.c.server.id);
    } catch (err) {
      this.c.logger.warn('TRS could not remove its registration', { err: describeError(err) });
    }
  }

  private write(): Promise<void> {
    const s = this.c.server;
    return this.c.store.upsertRelayServer({ id: s.id, endpoints: s.advertised, load: s.load, startedAt: this.startedAt, heartbeatAt: this.now() });
  }

  private async prune(): Promise<void> {
    const now = this.now();
    this.lastPrune = now;
    for (const r of await this.c.store.listRelayServers()) {
      if (r.id !== this.c.server.id && r.heartbeatAt < now - this.pruneAfterMs) {
        await this.c.store.deleteRelayServer(r.id);
        this.c.logger.info('removed the row of a dead TRS', { relay: r.id, heartbeatAt: new Date(r.heartbeatAt).toISOString() });
      }
    }
  }
}

export interface PickOptions {
  /** The heartbeat interval TRS processes use. @default RELAY_HEARTBEAT_MS */
  heartbeatMs?: number;
  /** Ids not to return (e.g. ones that just failed). */
  exclude?: ReadonlySet<string>;
  /** @default Math.random (ties between equally loaded servers) */
  random?: () => number;
}

/** True when `r` heartbeated within RELAY_LIVE_INTERVALS intervals of `now`. */
export function isLiveRelay(r: RelayServerRecord, now: number, heartbeatMs = RELAY_HEARTBEAT_MS): boolean {
  return r.heartbeatAt >= now - heartbeatMs * RELAY_LIVE_INTERVALS && r.endpoints.length > 0;
}

/**
 * Live TRS rows, least-loaded first; servers with equal load come in random order, so NMS instances
 * allocating at once spread over them instead of all choosing the same one between two heartbeats.
 */
export async function liveRelays(store: Store, now = Date.now(), opts: PickOptions = {}): Promise<RelayServerRecord[]> {
  const rnd = opts.random ?? Math.random;
  const live = (await store.listRelayServers())
    .filter((r) => isLiveRelay(r, now, opts.heartbeatMs) && !opts.exclude?.has(r.id))
    .map((r) => ({ r, tie: rnd() }));
  live.sort((x, y) => x.r.load - y.r.load || x.tie - y.tie);
  return live.map((x) => x.r);
}

/** A live, least-loaded TRS, or null when none is live. For the NMS's route selection. */
export async function pickRelay(store: Store, now = Date.now(), opts: PickOptions = {}): Promise<RelayServerRecord | null> {
  return (await liveRelays(store, now, opts))[0] ?? null;
}
