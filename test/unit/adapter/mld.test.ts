// MLD as the adapter speaks it (RFC 3810, RFC 2710 compatibility): the report encoder checked byte by byte against
// an independent checksum, queries of both versions parsed (with the floating-point codes), hostile queries
// rejected with ERR_MLD_DECODE and counted by the classifier/service; the listener's joins, leaves, repeats and
// answers to queries on a fake clock; the known-peer set behind the solicited-node groups.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ALL_MLDV2_ROUTERS,
  decodeEthernet,
  decodeIpv6,
  decodeMldQuery,
  encodeEthernet,
  ETHERTYPE_IPV6,
  ICMP6_MLD1_DONE,
  ICMP6_MLD1_REPORT,
  ICMP6_MLD2_REPORT,
  KnownPeers,
  mld2ReportPackets,
  MldListener,
  MldRecordType,
  classify,
  solicitedNodeAddress,
  type ClassifyContext,
  type MldQuery,
} from '../../../src/adapter/lan/index.js';
import { ip6Bytes } from '../../../src/adapter/lan/wire.js';
import { formatIp6 } from '../../../src/protocol/ip.js';
import { Counters } from '../../../src/util/counters.js';
import { prng } from '../../harness/prng.js';
import { ADAPTER_LL, ADAPTER_MAC, SEED, fuzz, isDecodeError, mutate, naiveChecksum } from './fixtures.js';

const QUERIER = 'fe80::1';

/** An IPv6 packet with an ICMPv6 message, built here without src/'s encoders; `icmp` has a zero checksum field. */
function raw(src: string, dst: string, icmp: Buffer, o: { hopLimit?: number; routerAlert?: boolean } = {}): Buffer {
  const m = Buffer.from(icmp);
  const pseudo = Buffer.concat([ip6Bytes(src), ip6Bytes(dst), Buffer.from([0, 0, m.length >> 8, m.length & 255, 0, 0, 0, 58]), m]);
  m.writeUInt16BE(naiveChecksum(pseudo), 2);
  const hbh = o.routerAlert === false ? Buffer.alloc(0) : Buffer.from([58, 0, 5, 2, 0, 0, 1, 0]);
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(hbh.length + m.length, 4);
  h[6] = hbh.length ? 0 : 58;
  h[7] = o.hopLimit ?? 1;
  h.set(ip6Bytes(src), 8);
  h.set(ip6Bytes(dst), 24);
  return Buffer.concat([h, hbh, m]);
}

function queryIcmp(o: { v1?: boolean; maxCode?: number; group?: string; sources?: string[]; sqrv?: number; qqic?: number; code?: number; nsrc?: number; extra?: number }): Buffer {
  const sources = o.sources ?? [];
  const b = Buffer.alloc(o.v1 ? 24 : 28 + 16 * sources.length + (o.extra ?? 0));
  b[0] = 130;
  b[1] = o.code ?? 0;
  b.writeUInt16BE(o.maxCode ?? 10_000, 4);
  b.set(ip6Bytes(o.group ?? '::'), 8);
  if (!o.v1) {
    b[24] = o.sqrv ?? 2;
    b[25] = o.qqic ?? 125;
    b.writeUInt16BE(o.nsrc ?? sources.length, 26);
    sources.forEach((s, i) => b.set(ip6Bytes(s), 28 + 16 * i));
  }
  return b;
}

const query = (o: Parameters<typeof queryIcmp>[0] & { src?: string; hopLimit?: number } = {}): Buffer => raw(o.src ?? QUERIER, 'ff02::1', queryIcmp(o), { hopLimit: o.hopLimit ?? 1 });

test('MLDv2 report: hop limit 1, Router Alert, link-local source, to ff02::16, checksum over the pseudo-header, records', () => {
  const [p, ...more] = mld2ReportPackets(ADAPTER_LL, [
    { type: MldRecordType.CHANGE_TO_EXCLUDE, group: 'ff02::1:2' },
    { type: MldRecordType.MODE_IS_INCLUDE, group: 'ff05::1:3', sources: ['fe80::9'] },
  ]);
  assert.equal(more.length, 0);
  // Fixed header: next header Hop-by-Hop, hop limit 1, our link-local to all MLDv2-capable routers.
  assert.equal(p!.readUInt16BE(4), p!.length - 40);
  assert.deepEqual([p![6], p![7]], [0, 1]);
  assert.deepEqual(p!.subarray(8, 24), ip6Bytes(ADAPTER_LL));
  assert.deepEqual(p!.subarray(24, 40), ip6Bytes(ALL_MLDV2_ROUTERS));
  // Hop-by-Hop: next ICMPv6, 8 bytes, Router Alert option (5, len 2, value 0 = MLD), PadN.
  assert.equal(p!.subarray(40, 48).toString('hex'), '3a00050200000100');
  const icmp = p!.subarray(48);
  assert.deepEqual([icmp[0], icmp[1], icmp.readUInt16BE(4), icmp.readUInt16BE(6)], [ICMP6_MLD2_REPORT, 0, 0, 2]);
  // Checksum, recomputed independently: pseudo-header (src, dst = ff02::16, length, 58) + message sums to 0.
  const pseudo = Buffer.concat([ip6Bytes(ADAPTER_LL), ip6Bytes(ALL_MLDV2_ROUTERS), Buffer.from([0, 0, 0, icmp.length, 0, 0, 0, 58]), icmp]);
  assert.equal(naiveChecksum(pseudo), 0);
  // Record 1: type 4, no aux, 0 sources, ff02::1:2. Record 2: type 1, 1 source.
  assert.equal(icmp.subarray(8, 28).toString('hex'), '04000000' + 'ff020000000000000000000000010002');
  assert.equal(icmp.subarray(28, 32).toString('hex'), '01000001');
  assert.deepEqual(icmp.subarray(48, 64), ip6Bytes('fe80::9'));
  assert.equal(icmp.length, 64);
  // src/'s own decoder agrees (ICMPv6 behind the Hop-by-Hop header, checksum valid).
  const ip = decodeIpv6(p!);
  assert.deepEqual([ip.protocol, ip.hopLimit, ip.payload[0]], [58, 1, 143]);
});

test('MLDv2 report: many groups are split into packets within the 1500-byte MTU; bad input is a RangeError', () => {
  const groups = Array.from({ length: 200 }, (_, i) => solicitedNodeAddress(`fd00::${(i + 1).toString(16)}`));
  const packets = mld2ReportPackets(ADAPTER_LL, groups.map((group) => ({ type: MldRecordType.MODE_IS_EXCLUDE, group })));
  assert.equal(packets.length, 3);
  let n = 0;
  for (const p of packets) {
    assert.ok(p.length <= 1500, `${p.length} bytes`);
    n += p.readUInt16BE(48 + 6);
  }
  assert.equal(n, 200);
  assert.throws(() => mld2ReportPackets('fd00::1', [{ type: 4, group: 'ff02::2' }]), RangeError); // not link-local
  assert.throws(() => mld2ReportPackets(ADAPTER_LL, [{ type: 4, group: 'fd00::2' }]), RangeError); // not multicast
  assert.throws(() => mld2ReportPackets(ADAPTER_LL, [{ type: 9, group: 'ff02::2' }]), RangeError);
});

test('MLD query: v1 and v2, general, group- and source-specific, floating-point codes', () => {
  assert.deepEqual(decodeMldQuery(decodeIpv6(query({ v1: true, maxCode: 1000 }))), { version: 1, maxResponseMs: 1000, group: null, sources: [], suppressRouterSide: false, qrv: 0, qqiSec: 0 });
  const v2 = decodeMldQuery(decodeIpv6(query({ maxCode: 10_000, sqrv: 0x0a, qqic: 125 })));
  assert.deepEqual(v2, { version: 2, maxResponseMs: 10_000, group: null, sources: [], suppressRouterSide: true, qrv: 2, qqiSec: 125 });
  const g = decodeMldQuery(decodeIpv6(query({ group: 'ff02::1:2', sources: ['fe80::7'] })));
  assert.equal(g.group, 'ff02::1:2');
  assert.deepEqual(g.sources, ['fe80::7']);
  // Max Resp Code 0x8000 | exp 1 | mant 0x234: (0x234 | 0x1000) << (1 + 3); QQIC 0x81: (1 | 0x10) << 3.
  const f = decodeMldQuery(decodeIpv6(query({ maxCode: 0x9234, qqic: 0x81 })));
  assert.deepEqual([f.maxResponseMs, f.qqiSec], [0x1234 * 16, 0x11 * 8]);
  // Bytes after the sources are allowed (§5.1.12).
  assert.equal(decodeMldQuery(decodeIpv6(query({ extra: 6 }))).version, 2);
});

test('MLD query: hostile or invalid queries are ERR_MLD_DECODE (or a checksum error), never anything else', () => {
  const bad: [string, Buffer, string][] = [
    ['hop limit 64', query({ hopLimit: 64 }), 'ERR_MLD_DECODE'],
    ['global source', query({ src: 'fd00::1' }), 'ERR_MLD_DECODE'],
    ['code 1', query({ code: 1 }), 'ERR_MLD_DECODE'],
    ['sources past the end', query({ nsrc: 5, sources: ['fe80::7'], group: 'ff02::1:2' }), 'ERR_MLD_DECODE'],
    ['unicast group', query({ group: 'fd00::5' }), 'ERR_MLD_DECODE'],
    ['sources without a group', query({ sources: ['fe80::7'] }), 'ERR_MLD_DECODE'],
    ['truncated', raw(QUERIER, 'ff02::1', queryIcmp({}).subarray(0, 20)), 'ERR_MLD_DECODE'],
  ];
  // 26 bytes: between v1 and v2.
  const odd = Buffer.concat([queryIcmp({ v1: true }), Buffer.alloc(2)]);
  bad.push(['26 bytes', raw(QUERIER, 'ff02::1', odd), 'ERR_MLD_DECODE']);
  const sum = query();
  sum[sum.length - 1]! ^= 1;
  bad.push(['bad checksum', sum, 'ERR_IP_CHECKSUM']);
  for (const [what, p, code] of bad) assert.throws(() => decodeMldQuery(decodeIpv6(p)), isDecodeError(code), what);
  // Fuzzed queries: each decodes or throws DecodeError.
  const ok = fuzz(SEED, 3000, (rnd) => mutate(rnd, query({ group: 'ff02::1:2', sources: ['fe80::7', 'fe80::8'] })), (b) => decodeMldQuery(decodeIpv6(b)));
  assert.ok(ok > 0);
});

test('classifier: a query is kind mld, a hostile one is a malformed drop with ERR_MLD_DECODE', () => {
  const ctx: ClassifyContext = { adapterMac: ADAPTER_MAC, isAdapterAddress: () => false, isOverlay: () => false, leasedAddress: () => undefined };
  const frame = (p: Buffer): Buffer => encodeEthernet({ dst: '33:33:00:00:00:01', src: '02:00:00:00:00:99', ethertype: ETHERTYPE_IPV6, payload: p });
  const good = classify(frame(query()), ctx);
  assert.equal(good.kind, 'mld');
  assert.deepEqual(classify(frame(query({ hopLimit: 255 })), ctx), { kind: 'drop', reason: 'malformed', code: 'ERR_MLD_DECODE', detail: 'hop limit 255, must be 1' });
  // Another listener's report is not ours to act on.
  const report = mld2ReportPackets('fe80::99', [{ type: 4, group: 'ff02::fb' }])[0]!;
  assert.deepEqual(classify(frame(report), ctx), { kind: 'drop', reason: 'link-icmpv6', detail: 'type 143' });
  const rnd = prng(SEED + 1);
  for (let i = 0; i < 2000; i++) classify(frame(mutate(rnd, query({ group: 'ff02::2' }))), ctx); // never throws
});

/** A fake clock and timer queue for the listener. */
function harness(random = 0.5) {
  let now = 1_000_000;
  const timers: { at: number; fn: () => void; live: boolean }[] = [];
  const frames: Buffer[] = [];
  const counters = new Counters();
  const l = new MldListener({
    mac: ADAPTER_MAC,
    linkLocal: ADAPTER_LL,
    send: (f) => frames.push(f),
    counters,
    now: () => now,
    random: () => random,
    schedule: (fn, ms) => {
      const t = { at: now + ms, fn, live: true };
      timers.push(t);
      return { cancel: () => (t.live = false) };
    },
  });
  const advance = (ms: number): void => {
    const end = now + ms;
    for (;;) {
      const next = timers.filter((t) => t.live && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      next.live = false;
      now = next.at;
      next.fn();
    }
    now = end;
  };
  /** Each sent frame as [ICMPv6 type, ip dst, records [type, group][]]. */
  const sent = (): [number, string, [number, string][]][] =>
    frames.splice(0).map((f) => {
      const e = decodeEthernet(f);
      const ip = decodeIpv6(e.payload);
      assert.equal(e.src, ADAPTER_MAC);
      assert.equal(ip.hopLimit, 1);
      assert.equal(ip.nextHeader, 0, 'Hop-by-Hop header (Router Alert)');
      const t = ip.payload[0]!;
      if (t !== ICMP6_MLD2_REPORT) return [t, ip.dst, [[0, ipOf(ip.payload.subarray(8, 24))]]];
      const recs: [number, string][] = [];
      const m = Buffer.from(ip.payload);
      let p = 8;
      for (let i = 0; i < m.readUInt16BE(6); i++) {
        recs.push([m[p]!, ipOf(m.subarray(p + 4, p + 20))]);
        p += 20 + 16 * m.readUInt16BE(p + 2);
      }
      return [t, ip.dst, recs];
    });
  return { l, advance, sent, counters };
}

const ipOf = (b: Uint8Array): string => formatIp6(Buffer.from(b));

const v2query = (group: string | null, maxResponseMs = 10_000): MldQuery => ({ version: 2, maxResponseMs, group, sources: [], suppressRouterSide: false, qrv: 2, qqiSec: 125 });

test('listener: join reports CHANGE_TO_EXCLUDE at once and repeats it once; leave reports CHANGE_TO_INCLUDE', () => {
  const { l, advance, sent, counters } = harness();
  l.join(['ff02::2', 'ff02::1:2', 'ff02::1', 'ff02::2']);
  assert.deepEqual(l.joined(), ['ff02::2', 'ff02::1:2'], 'ff02::1 is never joined or reported');
  assert.deepEqual(sent(), [[143, 'ff02::16', [[4, 'ff02::2'], [4, 'ff02::1:2']]]]);
  advance(1000);
  assert.deepEqual(sent(), [[143, 'ff02::16', [[4, 'ff02::2'], [4, 'ff02::1:2']]]], 'robustness 2: one repeat within 1 s');
  advance(5000);
  assert.deepEqual(sent(), []);
  l.join(['ff02::2']);
  assert.deepEqual(sent(), [], 'joining again sends nothing');
  l.leave(['ff02::1:2', 'ff02::9']);
  assert.deepEqual(sent(), [[143, 'ff02::16', [[3, 'ff02::1:2']]]]);
  assert.deepEqual(l.joined(), ['ff02::2']);
  assert.equal(counters.get('mld.join'), 2);
  l.stop();
  assert.deepEqual(sent(), [[143, 'ff02::16', [[3, 'ff02::2']]]], 'stop leaves every group once');
  advance(5000);
  assert.deepEqual(sent(), []);
});

test('listener: queries are answered after a random delay below Max Response Delay, only for joined groups', () => {
  const { l, advance, sent } = harness(0.5);
  l.join(['ff02::2', 'ff02::1:2']);
  advance(2000);
  sent();
  l.onQuery(v2query(null, 10_000));
  advance(4999);
  assert.deepEqual(sent(), []);
  advance(1);
  assert.deepEqual(sent(), [[143, 'ff02::16', [[2, 'ff02::2'], [2, 'ff02::1:2']]]]);
  l.onQuery(v2query('ff02::1:2', 1000));
  l.onQuery(v2query('ff02::1:3', 1000)); // not ours
  advance(1000);
  assert.deepEqual(sent(), [[143, 'ff02::16', [[2, 'ff02::1:2']]]]);
  // A source-specific query: MODE_IS_INCLUDE of the sources asked about.
  l.onQuery({ ...v2query('ff02::1:2', 1000), sources: ['fe80::7'] });
  advance(1000);
  assert.deepEqual(sent(), [[143, 'ff02::16', [[1, 'ff02::1:2']]]]);
  // A group query while a sooner general answer is pending is covered by it.
  l.onQuery(v2query(null, 2000));
  l.onQuery(v2query('ff02::2', 10_000));
  advance(20_000);
  assert.deepEqual(sent(), [[143, 'ff02::16', [[2, 'ff02::2'], [2, 'ff02::1:2']]]]);
});

test('listener: after an MLDv1 query it speaks MLDv1 (reports to the group, Done to ff02::2) until the querier is gone', () => {
  const { l, advance, sent } = harness(0);
  l.join(['ff02::1:2']);
  advance(2000);
  sent();
  l.onQuery({ ...v2query(null, 1000), version: 1 });
  advance(10);
  assert.deepEqual(sent(), [[ICMP6_MLD1_REPORT, 'ff02::1:2', [[0, 'ff02::1:2']]]]);
  l.leave(['ff02::1:2']);
  assert.deepEqual(sent(), [[ICMP6_MLD1_DONE, 'ff02::2', [[0, 'ff02::1:2']]]]);
  advance(1000);
  assert.deepEqual(sent(), [[ICMP6_MLD1_DONE, 'ff02::2', [[0, 'ff02::1:2']]]], 'repeated once');
  advance(260_000);
  l.join(['ff02::2']);
  assert.equal(sent()[0]![0], ICMP6_MLD2_REPORT, 'back to MLDv2 after the Older Version Querier Present timeout');
});

test('known peers: one join per solicited-node group, shared groups counted, idle and overflow addresses leave', () => {
  const peers = new KnownPeers(1000, 3);
  const a = 'fd00::1:2:3';
  const b = 'fd00:1::1:2:3'; // same low 24 bits: same group
  assert.deepEqual(peers.note(a, 0), { join: solicitedNodeAddress(a), left: [] });
  assert.deepEqual(peers.note(b, 10), { join: null, left: [] });
  assert.deepEqual(peers.note('100.64.0.9', 20), { join: null, left: [] }, 'IPv4 peers have no group');
  assert.ok(peers.has('100.64.0.9') && peers.has(a));
  assert.deepEqual(peers.expire(1005), [], 'b still needs the group');
  assert.equal(peers.has(a), false);
  assert.deepEqual(peers.expire(1011), [solicitedNodeAddress(a)]);
  // Capacity 3: the least recently seen address goes first.
  peers.note('fd00::a', 2000);
  peers.note('fd00::b', 2001);
  assert.equal(peers.touch('fd00::c', 2002), false, 'touch does not add');
  assert.equal(peers.touch('fd00::a', 2002), true); // seen again: now the newest
  peers.note('fd00::c', 2003);
  assert.deepEqual(peers.note('fd00::d', 2004).left, [solicitedNodeAddress('fd00::b')]);
  assert.deepEqual(peers.solicitedGroups().sort(), ['fd00::a', 'fd00::c', 'fd00::d'].map(solicitedNodeAddress).sort());
});
