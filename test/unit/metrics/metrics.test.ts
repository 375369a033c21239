// Prometheus metrics: the cloud's GET /metrics (bearer token) on a real in-process cloud (AS + NMS + TRS on
// loopback) parses as Prometheus text and moves when traffic moves (an enrollment, NMS datagrams, a relay path);
// the daemons' --metrics listener (serveMetrics + nodeMetrics/adapterMetrics) likewise.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Histogram } from 'prom-client';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cloudControlPath, createEnrollment, initCloud, startCloud } from '../../../src/cloud/cloud.js';
import { decodeToken } from '../../../src/config/token.js';
import { createCsr, generateKeyPair } from '../../../src/crypto/index.js';
import { adapterMetrics, type AdapterView } from '../../../src/metrics/daemons.js';
import { countsSince, HotHistogram, latencyHistogram, newRegistry, quantileBound, serveMetrics } from '../../../src/metrics/prom.js';
import { handleTimes } from '../../../src/cloud/api/metrics.js';
import { controlGet } from '../../../src/util/control.js';
import { enroll } from '../../../src/node/as-client.js';
import { silentLogger } from '../../../src/util/log.js';

type Sample = { name: string; labels: Record<string, string>; value: number };

/** A strict reader of the Prometheus text format (0.0.4): HELP/TYPE comments and `name{l="v",…} value` lines. */
function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  const typed = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const c = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (c) {
      if (c[1] === 'TYPE') {
        assert.match(c[3]!, /^(counter|gauge|histogram|summary|untyped)$/, line);
        typed.add(c[2]!);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
      let got: RegExpExecArray | null;
      let end = 0;
      while ((got = re.exec(m[2])) !== null) {
        labels[got[1]!] = got[2]!;
        end = re.lastIndex;
      }
      assert.equal(end, m[2].length, `bad labels: ${line}`);
    }
    const family = m[1]!.replace(/_(bucket|sum|count)$/, '');
    assert.ok(typed.has(m[1]!) || typed.has(family), `sample without TYPE: ${line}`);
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

const value = (s: Sample[], name: string, labels: Record<string, string> = {}): number =>
  s.filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v)).reduce((a, x) => a + x.value, 0);

describe('metrics: the cloud /metrics (prom-client)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-metrics-'));
  const cloudDir = join(dir, 'cloud');
  let cloud: Awaited<ReturnType<typeof startCloud>>;
  let token = '';

  const scrape = async (auth = token): Promise<{ status: number; text: string; type: string }> => {
    const res = await fetch(`${cloud.console!.url}/metrics`, { headers: { authorization: `Bearer ${auth}` } });
    return { status: res.status, text: await res.text(), type: res.headers.get('content-type') ?? '' };
  };

  before(async () => {
    await initCloud({ dir: cloudDir, advertise: ['127.0.0.1'] });
    cloud = await startCloud({ dir: cloudDir, logger: silentLogger, host: '127.0.0.1', ports: { as: 0, nms: 0, trs: 0 }, roles: ['as', 'nms', 'trs'], console: { host: '127.0.0.1', port: 0 } });
    token = readFileSync(join(cloudDir, 'admin-token'), 'utf8').trim();
  });
  after(async () => {
    await cloud?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('wants the bearer token', async () => {
    const r = await scrape('wrong');
    assert.equal(r.status, 401);
    assert.match(r.text, /ERR_UNAUTHORIZED/);
  });

  test('parses as Prometheus text and counters move with traffic (enrollment, NMS datagrams)', async () => {
    const first = await scrape();
    assert.equal(first.status, 200);
    assert.match(first.type, /^text\/plain; version=0\.0\.4/);
    const s0 = parseProm(first.text);
    assert.ok(s0.some((x) => x.name === 'cyphonic_trs_paths'), 'relay load is there');
    // An enrollment through the real AS (TLS).
    const t = decodeToken(await createEnrollment(cloudDir, 'alpha'));
    const keyPem = (await generateKeyPair()).privateKeyPem;
    await enroll({ endpoints: [`127.0.0.1:${cloud.ports.as}`], caFingerprint: t.ca, token: t.secret, csr: await createCsr(keyPem, 'alpha') });
    // Datagrams the NMS must refuse (too short to be a frame).
    const sock = dgram.createSocket('udp4');
    for (let i = 0; i < 5; i++) await new Promise<void>((r) => sock.send(Buffer.from('junk'), cloud.ports.nms, '127.0.0.1', () => r()));
    sock.close();
    let s1: Sample[] = [];
    for (let i = 0; i < 50; i++) {
      s1 = parseProm((await scrape()).text);
      if (value(s1, 'cyphonic_nms_handle_seconds_count') >= 5) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(value(s1, 'cyphonic_as_events_total', { event: 'enroll.ok' }) - value(s0, 'cyphonic_as_events_total', { event: 'enroll.ok' }), 1);
    assert.ok(value(s1, 'cyphonic_nms_drops_total') - value(s0, 'cyphonic_nms_drops_total') >= 5, 'the refused datagrams are counted by reason');
    assert.ok(value(s1, 'cyphonic_nms_handle_seconds_count') >= 5, 'and timed');
    assert.ok(value(s1, 'cyphonic_api_request_seconds_count', { route: 'GET /metrics' }) >= 1, 'the scrapes themselves are timed');
    // `cloud stats` (the control socket) has the same handling times, summarised per message type.
    const stats = (await controlGet(cloudControlPath(cloudDir), '/metrics')) as { nmsHandle: ReturnType<typeof handleTimes> };
    const other = stats.nmsHandle.byType['other']!;
    assert.equal(other.count, value(s1, 'cyphonic_nms_handle_seconds_count', { type: 'other' }));
    assert.equal(other.counts.reduce((a, b) => a + b, 0), other.count);
    assert.equal(stats.nmsHandle.leMs.length + 1, other.counts.length);
    assert.ok(other.p99AtMostMs !== null && stats.nmsHandle.leMs.includes(other.p99AtMostMs));
  });
});

describe('metrics: a daemon\'s --metrics listener', () => {
  test('serves its counters, leases and peers; values follow the status', async () => {
    const st: AdapterView = {
      registered: true,
      counters: { 'route.request': 1, 'refused.auth': 2 },
      peers: [{ name: 'beta', path: 'relayed', rxBytes: 10, txBytes: 20 }],
      mobility: { moves: 0, lastHandoverMs: null },
      lanCounters: { 'dhcp4.ack': 1, 'dropped.spoofed-source': 3 },
      generalNodes: [{ name: 'g1', registered: true, lease: { v4: { state: 'bound' }, v6: null }, counters: {} }],
    };
    const reg = newRegistry();
    adapterMetrics(reg, () => st);
    const served = await serveMetrics(reg, { host: '127.0.0.1', port: 0 }, silentLogger);
    try {
      const get = async (): Promise<Sample[]> => parseProm(await (await fetch(`http://127.0.0.1:${served.port}/metrics`)).text());
      let s = await get();
      assert.equal(value(s, 'cyphonic_node_events_total', { event: 'route.request' }), 1);
      assert.equal(value(s, 'cyphonic_node_drops_total', { reason: 'auth' }), 2);
      assert.equal(value(s, 'cyphonic_lan_drops_total', { reason: 'spoofed-source' }), 3);
      assert.equal(value(s, 'cyphonic_adapter_leases', { family: '4' }), 1);
      assert.equal(value(s, 'cyphonic_node_peer_bytes', { peer: 'beta', direction: 'tx', path: 'relayed' }), 20);
      st.counters['route.request'] = 4;
      st.peers[0]!.txBytes = 5000;
      st.mobility = { moves: 1, lastHandoverMs: 120 };
      s = await get();
      assert.equal(value(s, 'cyphonic_node_events_total', { event: 'route.request' }), 4);
      assert.equal(value(s, 'cyphonic_node_peer_bytes', { peer: 'beta', direction: 'tx' }), 5000);
      assert.equal(value(s, 'cyphonic_node_last_handover_seconds'), 0.12);
      assert.equal((await fetch(`http://127.0.0.1:${served.port}/other`)).status, 404);
    } finally {
      await served.close();
    }
  });
});

describe('metrics: the per-datagram histogram (HotHistogram)', () => {
  test('scrapes exactly as prom-client\'s own histogram fed the same observations, bounds inclusive; bad input ignored', async () => {
    const labels = ['Keepalive', 'RegistrationRequest', 'never', 'other'];
    const ours = newRegistry();
    const theirs = newRegistry();
    const hot = new HotHistogram(ours, 'x_seconds', 'help text', 'type', labels);
    const ref = latencyHistogram(theirs, 'x_seconds', 'help text', ['type']);
    // On a bound (le is "less or equal"), between bounds, below the first, above the last, and zero.
    const seen: [number, number][] = [[0, 0.0001], [0, 0.0003], [0, 0.00005], [1, 0.001], [1, 12], [3, 0], [0, 2.5], [1, 0.0042]];
    for (const [i, v] of seen) {
      hot.observeAt(i, v);
      ref.observe({ type: labels[i]! }, v);
    }
    hot.observeAt(4, 0.1); // no such label value
    hot.observeAt(-1, 0.1);
    hot.observeAt(0, Number.NaN);
    const text = await ours.metrics();
    assert.equal(text, await theirs.metrics());
    assert.ok(!text.includes('type="never"'), 'a label value never observed is left out');
    const s = parseProm(text);
    assert.equal(value(s, 'x_seconds_count', { type: 'Keepalive' }), 4);
    assert.equal(value(s, 'x_seconds_bucket', { type: 'Keepalive', le: '0.0001' }), 2, 'the bound itself counts in its bucket');
    assert.equal(value(s, 'x_seconds_bucket', { type: 'RegistrationRequest', le: '10' }), 2);
    assert.equal(value(s, 'x_seconds_bucket', { type: 'RegistrationRequest', le: '+Inf' }), 3);
    // The JSON form too (prom-client adds empty exemplar fields to its own; they carry nothing here).
    const json = async (r: typeof ours) => (await r.getMetricsAsJSON()).map((m) => ({ ...m, values: m.values.map(({ labels, value, metricName }: { labels: object; value: number; metricName?: string }) => ({ labels, value, metricName })) }));
    assert.deepEqual(await json(ours), await json(theirs));
    // prom-client's own ways of counting would count where no scrape looks: they refuse. A reset zeroes.
    assert.throws(() => (hot as Histogram).observe({ type: 'Keepalive' }, 0.1), TypeError);
    assert.throws(() => hot.startTimer(), TypeError);
    ours.resetMetrics();
    assert.equal(value(parseProm(await ours.metrics()), 'x_seconds_count'), 0);
    hot.observeAt(1, 0.002);
    assert.equal(value(parseProm(await ours.metrics()), 'x_seconds_count', { type: 'RegistrationRequest' }), 1);
  });

  test('snapshots subtract, and a quantile falls in the bucket that holds it', () => {
    const hot = new HotHistogram(newRegistry(), 'y_seconds', 'help', 'type', ['a', 'b']);
    for (let i = 0; i < 99; i++) hot.observeAt(0, 0.0004); // ≤ 0.5 ms
    hot.observeAt(0, 0.003); // ≤ 5 ms
    const before = hot.snapshot();
    assert.deepEqual(Object.keys(before), ['a'], 'only label values observed');
    assert.equal(quantileBound(before['a']!, 0.5), 0.0005);
    assert.equal(quantileBound(before['a']!, 0.99), 0.0005, '99 of 100 at most 0.5 ms');
    assert.equal(quantileBound(before['a']!, 1), 0.005);
    hot.observeAt(0, 20); // above the largest bound
    hot.observeAt(1, 0.0001);
    const after = hot.snapshot();
    const since = countsSince(after['a'], before['a']);
    assert.equal(since.count, 1);
    assert.equal(since.sum, 20);
    assert.equal(since.buckets.at(-1), 1);
    assert.equal(quantileBound(since, 0.5), Infinity);
    assert.equal(countsSince(after['b'], before['b']).count, 1, 'a label value new since counts from zero');
    assert.ok(Number.isNaN(quantileBound(countsSince(before['a'], before['a']), 0.5)), 'nothing counted');
    const summary = handleTimes(hot).byType['a']!;
    assert.equal(summary.count, 101);
    assert.equal(summary.p50AtMostMs, 0.5);
    assert.equal(summary.p99AtMostMs, 5, '99 of 101 is not 99 %: the 100th, at most 5 ms, is');
    assert.equal(summary.meanMs, Math.round(((99 * 0.0004 + 0.003 + 20) / 101) * 1e6) / 1e3);
  });
});

