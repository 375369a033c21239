// Live general-node changes at the NMS: `general-node add/remove` (CLI or REST API, any process) bumps the store's
// meta key GENERAL_REV_KEY; every NMS looks at it twice a second and, on a change, compares each adapter's list of
// general nodes with the one it saw before. Each adapter whose list changed and that is registered here gets a
// PolicyUpdate with `generalNodes` set (PolicyPusher.pushGeneralNodes), and fetches the list at once (InfoRequest).

import type { Store } from '../../store/types.js';
import type { Counters } from '../../util/counters.js';
import type { Logger } from '../../util/log.js';

/** Meta key changed by every general-node definition or removal. */
export const GENERAL_REV_KEY = 'general.rev';
/** Tunable: how often the NMS looks at GENERAL_REV_KEY (one small read). */
export const GENERAL_WATCH_MS = 500;

/** Marks a change of some adapter's general nodes; running NMSs tell the adapter within about a second. */
export async function bumpGeneralRev(store: Store): Promise<void> {
  await store.setMeta(GENERAL_REV_KEY, `${Date.now()}-${Math.random().toString(36).slice(2, 10)}`);
}

/** adapter node id → a signature of its general nodes (id, MAC, family). */
async function adapterLists(store: Store): Promise<Map<number, string>> {
  const byAdapter = new Map<number, string[]>();
  for (const n of await store.listGeneralNodes()) {
    if (n.adapterId === null || n.adapterId === undefined) continue;
    const l = byAdapter.get(n.adapterId) ?? [];
    l.push(`${n.id}/${n.mac ?? ''}/${n.family}`);
    byAdapter.set(n.adapterId, l);
  }
  return new Map([...byAdapter].map(([id, l]) => [id, l.sort().join(',')]));
}

export class GeneralNodeWatcher {
  private rev: string | null | undefined = undefined;
  private lists = new Map<number, string>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly c: { store: Store; logger: Logger; counters: Counters; notify: (adapterId: number) => Promise<void> },
  ) {}

  start(everyMs = GENERAL_WATCH_MS): void {
    this.timer = setInterval(() => void this.check(), everyMs);
    this.timer.unref();
    void this.check();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Reads the revision; on a change (not the first read) notifies each adapter whose list changed. One run at a time. */
  async check(): Promise<void> {
    if (this.running) return this.running;
    this.running = (async () => {
      try {
        const rev = await this.c.store.getMeta(GENERAL_REV_KEY);
        const first = this.rev === undefined;
        if (rev === this.rev) return;
        this.rev = rev;
        const lists = await adapterLists(this.c.store);
        const old = this.lists;
        this.lists = lists;
        if (first) return;
        const changed = [...new Set([...lists.keys(), ...old.keys()])].filter((id) => lists.get(id) !== old.get(id));
        this.c.counters.inc('general.changed');
        await Promise.all(changed.map((id) => this.c.notify(id).then(() => this.c.counters.inc('general.notified'))));
      } catch (err) {
        this.c.counters.inc('general.watch-failed');
        this.c.logger.warn('general-node watch failed', { err: err instanceof Error ? err.message : String(err) });
      }
    })().finally(() => (this.running = null));
    return this.running;
  }
}
