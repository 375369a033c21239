// Several instances of one cloud: each running `cloud start` registers its AS/NMS/TRS endpoints in the shared store
// under a random id and heartbeats; an instance whose heartbeat is older than INSTANCE_LIVE_MS is dead (kill -9,
// lost host) and drops out of what nodes are told (login's NMS list, tokens' AS list). A clean stop deletes the row.

import { createHash, randomBytes } from 'node:crypto';
import type { Endpoint } from '../protocol/endpoint.js';
import type { CloudInstanceRecord, Store } from '../store/types.js';
import type { Logger } from '../util/log.js';

/** Tunable: heartbeat interval of an instance into the store (ms). */
export const INSTANCE_HEARTBEAT_MS = 2_000;
/** Tunable: an instance is live while its heartbeat is younger than this (three missed heartbeats). */
export const INSTANCE_LIVE_MS = 3 * INSTANCE_HEARTBEAT_MS;

export function isLiveInstance(r: CloudInstanceRecord, now: number, liveMs = INSTANCE_LIVE_MS): boolean {
  return now - r.heartbeatAt < liveMs;
}

/**
 * An instance's id. From `where` (the addresses and ports nodes reach it at) it is stable: a restarted instance is
 * the same instance and takes its registrations back at once, and two instances cannot share it without sharing
 * those endpoints. Without (an ephemeral port): random, unique per process.
 */
export function newInstanceId(where?: string): string {
  if (where === undefined) return `i-${randomBytes(6).toString('hex')}`;
  return `i-${createHash('sha256').update(where).digest('hex').slice(0, 12)}`;
}

export interface InstanceEndpoints {
  as: Endpoint[];
  nms: Endpoint[];
  trs: Endpoint[];
}

export class InstanceRegistry {
  private timer: NodeJS.Timeout | null = null;
  private readonly startedAt: number;
  private failing = false;

  constructor(
    readonly id: string,
    private readonly endpoints: InstanceEndpoints,
    private readonly c: { store: Store; logger: Logger; heartbeatMs?: number; now?: () => number },
  ) {
    this.startedAt = (c.now ?? Date.now)();
  }

  /** Registers once (errors reach the caller: a store that refuses us at start is fatal), then heartbeats. */
  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => {
      this.beat().then(
        () => {
          if (this.failing) this.c.logger.info('instance heartbeat saved again', { instance: this.id });
          this.failing = false;
        },
        (err: unknown) => {
          // The store is unreachable: keep serving; other instances will see us as dead until it is back.
          if (!this.failing) this.c.logger.warn('instance heartbeat not saved', { instance: this.id, err: err instanceof Error ? err.message : String(err) });
          this.failing = true;
        },
      );
    }, this.c.heartbeatMs ?? INSTANCE_HEARTBEAT_MS);
    this.timer.unref();
  }

  private beat(): Promise<void> {
    return this.c.store.upsertInstance({ id: this.id, ...this.endpoints, startedAt: this.startedAt, heartbeatAt: (this.c.now ?? Date.now)() });
  }

  /** Stops heartbeating and removes the row (best effort: a dead store only delays our disappearance). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.c.store.deleteInstance(this.id).catch(() => undefined);
  }
}

/**
 * The endpoints of `role` that live instances registered: `own` (this instance's) first, then the others by instance
 * id, without duplicates. Nodes try them in order, so a node stays at the instance it logged in at while it answers.
 */
export async function liveEndpoints(store: Store, role: keyof InstanceEndpoints, own: Endpoint[], now = Date.now(), liveMs = INSTANCE_LIVE_MS): Promise<Endpoint[]> {
  const out: Endpoint[] = [...own];
  const seen = new Set(own.map((e) => `${e.address}|${e.port}`));
  for (const r of await store.listInstances()) {
    if (!isLiveInstance(r, now, liveMs)) continue;
    for (const e of r[role]) {
      const k = `${e.address}|${e.port}`;
      if (!seen.has(k)) {
        seen.add(k);
        out.push(e);
      }
    }
  }
  return out;
}
