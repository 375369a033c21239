// The cloud's Prometheus metrics (GET /metrics on the API port, same bearer token): the AS, NMS and TRS counters
// (registrations, route selections, handshakes relayed, drops by reason, …), relay load, and the NMS's handling time
// per message type. Built on src/metrics/prom.ts (prom-client).

import type { Registry } from 'prom-client';
import { MessageType } from '../../protocol/constants.js';
import { addCounterSource, addGauge, HotHistogram, LATENCY_BUCKETS, quantileBound } from '../../metrics/prom.js';
import type { AsService } from '../as/service.js';
import type { NmsService } from '../nms/service.js';
import type { TrsService } from '../trs/service.js';
import type { ApiRoute } from './server.js';

export function cloudMetrics(reg: Registry, as: AsService | null, nms: NmsService | null, trs: TrsService | null): void {
  addCounterSource(reg, 'as', 'AS (enrollment, login)', () => as?.counters.toJSON() ?? null);
  addCounterSource(reg, 'nms', 'NMS (registration, keepalives, route selection, policy pushes)', () => nms?.counters.toJSON() ?? null);
  addCounterSource(reg, 'trs', 'TRS (relayed datagrams and bytes, binds)', () => trs?.metrics() ?? null);
  addGauge(reg, 'cyphonic_trs_paths', 'relay load: paths this TRS holds, and those with both ends bound', ['state'], () => {
    if (!trs) return [];
    const st = trs.status();
    return [[{ state: 'allocated' }, st.paths], [{ state: 'bound' }, st.bound]];
  });
}

/** The `type` label values of cyphonic_nms_handle_seconds: every message type's name, then "other". */
const TYPE_LABELS: readonly string[] = [...Object.values(MessageType).filter((v): v is string => typeof v === 'string'), 'other'];
/** A datagram's type byte → its index in TYPE_LABELS (bytes that name no message type: "other"). */
const TYPE_INDEX: Uint8Array = Uint8Array.from({ length: 256 }, (_, t) => {
  const i = TYPE_LABELS.indexOf(MessageType[t] ?? 'other');
  return i < 0 ? TYPE_LABELS.length - 1 : i;
});

/**
 * `nms` with its datagram handler timed into cyphonic_nms_handle_seconds{type} (for the transports), and that
 * histogram (`cloud stats` reads it: handleTimes).
 */
export function timedNms(nms: NmsService, reg: Registry): { timed: NmsService; times: HotHistogram } {
  const h = new HotHistogram(reg, 'cyphonic_nms_handle_seconds', 'NMS: time from a datagram received to its answer, by message type', 'type', TYPE_LABELS);
  const timed = Object.create(nms) as NmsService;
  timed.handle = async (datagram, from, via) => {
    const t0 = performance.now();
    try {
      return await nms.handle(datagram, from, via);
    } finally {
      h.observeAt(datagram.length > 1 ? TYPE_INDEX[datagram[1]!]! : TYPE_LABELS.length - 1, (performance.now() - t0) / 1000);
    }
  };
  return { timed, times: h };
}

/**
 * The NMS's handling times for `cloud stats`, per message type handled: how many, the mean, the bucket bounds that
 * hold the median and the 99th percentile (at most that long), and the raw counts per bucket (`le` in ms; the last
 * count is above the largest bound), so a tool can subtract two readings.
 */
export function handleTimes(h: HotHistogram): { leMs: number[]; byType: Record<string, HandleTimes> } {
  const ms = (s: number): number | null => (Number.isFinite(s) ? Math.round(s * 1e6) / 1e3 : null);
  const byType: Record<string, HandleTimes> = {};
  for (const [type, c] of Object.entries(h.snapshot())) {
    byType[type] = { count: c.count, sumMs: c.sum * 1e3, meanMs: ms(c.sum / c.count)!, p50AtMostMs: ms(quantileBound(c, 0.5)), p99AtMostMs: ms(quantileBound(c, 0.99)), counts: c.buckets };
  }
  return { leMs: LATENCY_BUCKETS.map((s) => ms(s)!), byType };
}

/** One message type's handling times in `cloud stats` (handleTimes); null: above the largest bucket. */
export interface HandleTimes {
  count: number;
  sumMs: number;
  meanMs: number;
  p50AtMostMs: number | null;
  p99AtMostMs: number | null;
  /** Per bucket of `leMs`, then one above them; not cumulative. */
  counts: number[];
}

export function metricsRoute(reg: Registry): ApiRoute {
  return { method: 'GET', path: '/metrics', handle: async () => ({ text: { contentType: reg.contentType, data: await reg.metrics() } }) };
}
