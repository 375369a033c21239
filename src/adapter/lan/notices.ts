// Rate-limited log lines about devices the adapter does not serve (unknown MACs, spoofed sources):
// a chatty or hostile device is logged once per interval, not on every packet; counters count every one.

import type { Fields, Logger } from '../../util/log.js';

/** Tunable: one line per device and reason every 10 minutes is enough to notice it. */
export const NOTICE_INTERVAL_MS = 10 * 60_000;
/** Tunable: devices remembered; past this the memory is cleared (a flood of random MACs cannot grow it). */
const MAX_REMEMBERED = 1024;

export class Notices {
  private readonly last = new Map<string, number>();

  constructor(
    private readonly log: Logger | undefined,
    private readonly intervalMs = NOTICE_INTERVAL_MS,
  ) {}

  /** Logs `msg` at info level unless the same (mac, msg) was logged within the interval. */
  note(mac: string, now: number, msg: string, fields: Fields = {}): void {
    if (!this.log) return;
    const k = `${mac} ${msg}`;
    const prev = this.last.get(k);
    if (prev !== undefined && now - prev < this.intervalMs) return;
    if (this.last.size >= MAX_REMEMBERED) this.last.clear();
    this.last.set(k, now);
    this.log.info(msg, { mac, ...fields });
  }
}
