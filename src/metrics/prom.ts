// Prometheus metrics (prom-client) over the counters the daemons already keep: each component's Counters become one
// counter family per component with the counter's name as a label (`cyphonic_nms_events_total{event="register.re"}`),
// drops and refusals one family by reason, plus gauges for what is a level rather than a count (relay load, peers,
// leases) and latency histograms where timings exist. Values are read at scrape time (collect), nothing is copied on
// the hot paths; a histogram observed per datagram (HotHistogram) counts into typed arrays, with no allocation, and is
// turned into samples only when scraped. `serveMetrics` is the small HTTP listener of `node up --metrics` and
// `adapter up --metrics`.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from '../util/log.js';

/** A component's counters read at scrape time (null: the component does not run here). */
export type CounterSource = () => Record<string, number> | null;

/** Counter names that are drops or refusals by reason (the rest are events). */
const DROP = /^(refused|dropped|drop|ignored|error)\b[.]?/;

/** Prometheus label values stay short and printable. */
const label = (s: string): string => s.replace(/[^A-Za-z0-9_.:-]/g, '_').slice(0, 100);

/**
 * Registers `cyphonic_<component>_events_total{event}` and `cyphonic_<component>_drops_total{reason}` for a
 * counters source (monotonic: the daemons' counters only grow while the process runs).
 */
export function addCounterSource(reg: Registry, component: string, help: string, source: CounterSource): void {
  const read = (): [string, number][] => Object.entries(source() ?? {}).filter(([, v]) => Number.isFinite(v));
  new Counter({
    name: `cyphonic_${component}_events_total`,
    help: `${help}: events counted by the daemon, by name`,
    labelNames: ['event'],
    registers: [reg],
    collect() {
      this.reset();
      for (const [k, v] of read()) if (!DROP.test(k)) this.inc({ event: label(k) }, v);
    },
  });
  new Counter({
    name: `cyphonic_${component}_drops_total`,
    help: `${help}: input dropped or refused, by reason`,
    labelNames: ['reason'],
    registers: [reg],
    collect() {
      this.reset();
      for (const [k, v] of read()) if (DROP.test(k)) this.inc({ reason: label(k.replace(DROP, '') || k) }, v);
    },
  });
}

/** A gauge read at scrape time: `values` returns [labels, value] pairs (or one value). */
export function addGauge(reg: Registry, name: string, help: string, labelNames: string[], values: () => [Record<string, string>, number][]): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [reg],
    collect() {
      this.reset();
      for (const [l, v] of values()) this.set(Object.fromEntries(Object.entries(l).map(([k, x]) => [k, label(x)])), v);
    },
  });
}

/** The buckets of every latency histogram (seconds): 100 µs to 10 s. */
export const LATENCY_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/** Seconds-scale latency histogram with buckets from 100 µs to 10 s. */
export function latencyHistogram(reg: Registry, name: string, help: string, labelNames: string[] = []): Histogram {
  return new Histogram({ name, help, labelNames, registers: [reg], buckets: [...LATENCY_BUCKETS] });
}

type HistogramSamples = Awaited<ReturnType<Histogram['get']>>;

/** One label value's counts (HotHistogram.snapshot): `buckets` per bound of LATENCY_BUCKETS, then one above them. */
export interface HistogramCounts {
  count: number;
  sum: number;
  buckets: number[];
}

/** `b` minus `a` (a later snapshot minus an earlier one of the same label value; a missing one counts as empty). */
export function countsSince(b: HistogramCounts | undefined, a: HistogramCounts | undefined): HistogramCounts {
  return {
    count: (b?.count ?? 0) - (a?.count ?? 0),
    sum: (b?.sum ?? 0) - (a?.sum ?? 0),
    buckets: Array.from({ length: LATENCY_BUCKETS.length + 1 }, (_, k) => (b?.buckets[k] ?? 0) - (a?.buckets[k] ?? 0)),
  };
}

/**
 * The upper bound (seconds) of the bucket that holds quantile `q` (0..1) of `h`: at least that share of the
 * observations took at most this long. Infinity when it falls above the largest bound, NaN when nothing was counted.
 */
export function quantileBound(h: HistogramCounts, q: number): number {
  if (h.count <= 0) return NaN;
  const want = Math.ceil(q * h.count);
  let acc = 0;
  for (let k = 0; k < LATENCY_BUCKETS.length; k++) {
    acc += h.buckets[k] ?? 0;
    if (acc >= want) return LATENCY_BUCKETS[k]!;
  }
  return Infinity;
}

function refuseObserve(): never {
  throw new TypeError('HotHistogram counts with observeAt(index, seconds)');
}

/**
 * A latency histogram (the buckets of latencyHistogram) with one label whose values are known up front, for a path
 * run per datagram: `observeAt(index, seconds)` counts into typed arrays and allocates nothing (prom-client's own
 * observe builds label objects, a label hash string and closures each time: about 1 kB of garbage per datagram at
 * the NMS). The samples are made when scraped, in prom-client's format; label values never observed are left out.
 * Only observeAt counts: prom-client's observe and startTimer throw here rather than count where no scrape looks.
 */
export class HotHistogram extends Histogram {
  readonly #name: string;
  readonly #help: string;
  readonly #label: string;
  readonly #values: readonly string[];
  /** Per label value: LATENCY_BUCKETS.length + 1 counts (the last: above the largest bound), not cumulative. */
  readonly #buckets: Float64Array;
  readonly #sums: Float64Array;
  readonly #counts: Float64Array;

  constructor(reg: Registry, name: string, help: string, label: string, values: readonly string[]) {
    super({ name, help, labelNames: [label], registers: [reg], buckets: [...LATENCY_BUCKETS] });
    this.#name = name;
    this.#help = help;
    this.#label = label;
    this.#values = values;
    this.#buckets = new Float64Array(values.length * (LATENCY_BUCKETS.length + 1));
    this.#sums = new Float64Array(values.length);
    this.#counts = new Float64Array(values.length);
    this.observe = refuseObserve; // prom-client's constructor puts observe on the instance: replaced, not overridden
  }

  /** One observation of `seconds` under label value `values[index]` (an index out of range is ignored). */
  observeAt(index: number, seconds: number): void {
    if (!(index >= 0 && index < this.#counts.length) || !Number.isFinite(seconds)) return;
    let b = 0;
    while (b < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[b]!) b++;
    this.#buckets[index * (LATENCY_BUCKETS.length + 1) + b]!++;
    this.#sums[index]! += seconds;
    this.#counts[index]!++;
  }

  /**
   * What was counted so far, per label value observed: the count, the sum (seconds) and the count in each of
   * LATENCY_BUCKETS (not cumulative; one more at the end: above the largest bound). Copies (`cloud stats`, benches).
   */
  snapshot(): Record<string, HistogramCounts> {
    const out: Record<string, HistogramCounts> = {};
    const per = LATENCY_BUCKETS.length + 1;
    for (let i = 0; i < this.#values.length; i++) {
      if (this.#counts[i] === 0) continue;
      out[this.#values[i]!] = { count: this.#counts[i]!, sum: this.#sums[i]!, buckets: Array.from(this.#buckets.subarray(i * per, (i + 1) * per)) };
    }
    return out;
  }

  override startTimer(): never {
    return refuseObserve();
  }

  /** Zero again (the registry's resetMetrics). prom-client's constructor calls it too, before our fields exist. */
  override reset(): void {
    super.reset();
    if (!(#buckets in this)) return;
    this.#buckets.fill(0);
    this.#sums.fill(0);
    this.#counts.fill(0);
  }

  override async get(): Promise<HistogramSamples> {
    const values: HistogramSamples['values'] = [];
    const bucketName = `${this.#name}_bucket`;
    for (let i = 0; i < this.#values.length; i++) {
      const count = this.#counts[i]!;
      if (count === 0) continue;
      const v = this.#values[i]!;
      let acc = 0;
      for (let b = 0; b < LATENCY_BUCKETS.length; b++) {
        acc += this.#buckets[i * (LATENCY_BUCKETS.length + 1) + b]!;
        values.push({ labels: { le: LATENCY_BUCKETS[b]!, [this.#label]: v }, value: acc, metricName: bucketName });
      }
      values.push({ labels: { le: '+Inf', [this.#label]: v }, value: count, metricName: bucketName });
      values.push({ labels: { [this.#label]: v }, value: this.#sums[i]!, metricName: `${this.#name}_sum` });
      values.push({ labels: { [this.#label]: v }, value: count, metricName: `${this.#name}_count` });
    }
    // What prom-client's own get() returns (its typings also ask for the collect function, which it does not return).
    return { name: this.#name, help: this.#help, type: 'histogram', values, aggregator: 'sum' } as unknown as HistogramSamples;
  }

  /** What the registry reads for the text format (prom-client prefers it to get()): the same samples. */
  getForPromString(): Promise<HistogramSamples> {
    return this.get();
  }
}

export function newRegistry(): Registry {
  return new Registry();
}

/** GET /metrics on host:port (Prometheus text); everything else 404. For the node and adapter daemons. */
export async function serveMetrics(reg: Registry, at: { host: string; port: number }, logger: Logger): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    reg.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': reg.contentType });
        res.end(text);
      },
      (err: unknown) => {
        logger.warn('metrics scrape failed', { err: err instanceof Error ? err.message : String(err) });
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('error\n');
      },
    );
  });
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
