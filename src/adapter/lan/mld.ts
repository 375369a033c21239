// Multicast Listener Discovery as a listener (host side): the adapter joins the groups it must hear on a LAN
// whose switch snoops MLD (RFC 4541), so that Router Solicitations, DHCPv6 and the Neighbor Solicitations it
// proxies reach its port at all. MLDv2 (RFC 3810) with MLDv1 (RFC 2710) compatibility when an old querier speaks.
//
//  Query  130: max resp code (2) | reserved (2) | multicast address (16)                  = 24 bytes: MLDv1
//              … | resv/S/QRV (1) | QQIC (1) | number of sources (2) | sources (16 each)  ≥ 28 bytes: MLDv2
//  Report 143: reserved (2) | number of records (2) | records, each:
//              record type (1) | aux data len (1) | number of sources (2) | multicast address (16) | sources | aux
//  v1 Report 131 / Done 132: max resp delay (2) | reserved (2) | multicast address (16)
//
// Every message we send has a link-local source, hop limit 1 and a Hop-by-Hop header with the Router Alert option
// (value 0: MLD), RFC 3810 §5; v2 reports go to ff02::16, v1 reports to the group, v1 Done to ff02::2.
// `decodeMldQuery` throws DecodeError('ERR_MLD_DECODE') for a query a listener must ignore: hop limit not 1,
// non-link-local source (§5.1.14), code not 0, a length other than 24 or ≥ 28 (§8.1), sources past the end, a
// group that is neither :: nor multicast, a source-specific query without a group. Bad checksum: 'ERR_IP_CHECKSUM'.
//
// MldListener keeps the joined groups and speaks for them (§6): a state-change report on join and leave, sent at
// once and repeated [robustness − 1] times within the Unsolicited Report Interval; current-state reports in answer
// to queries after a random delay below the query's Maximum Response Delay (a pending General Query answer covers
// later group queries; a source-specific query gets MODE_IS_INCLUDE of the sources asked about, as our filter is
// EXCLUDE {}). It never reports ff02::1 (§6).

import type { Counters } from '../../util/counters.js';
import { ETHERTYPE_IPV6, encodeEthernet } from './ethernet.js';
import { ALL_ROUTERS6, decodeIcmpv6, encodeIpv6, isLinkLocal6, isMulticast6, multicastMac } from './ip.js';
import type { Ipv6Packet } from './ip.js';
import { transportChecksum } from './checksum.js';
import { LAN_ERR, fail, ip6Bytes, ipText, need, u16 } from './wire.js';

export const ICMP6_MLD_QUERY = 130;
export const ICMP6_MLD1_REPORT = 131;
export const ICMP6_MLD1_DONE = 132;
export const ICMP6_MLD2_REPORT = 143;
export const ALL_MLDV2_ROUTERS = 'ff02::16';
export const MLD_HOP_LIMIT = 1;

/** MLDv2 multicast address record types (RFC 3810 §5.2.12). */
export const MldRecordType = {
  MODE_IS_INCLUDE: 1,
  MODE_IS_EXCLUDE: 2,
  CHANGE_TO_INCLUDE: 3,
  CHANGE_TO_EXCLUDE: 4,
  ALLOW_NEW_SOURCES: 5,
  BLOCK_OLD_SOURCES: 6,
} as const;

const ERR = LAN_ERR.mld;
const PROTO_HOP_BY_HOP = 0;
const PROTO_ICMPV6 = 58;
/** Hop-by-Hop header: next header ICMPv6, length 0 (8 bytes), Router Alert (type 5, len 2, value 0 = MLD), PadN(0). */
const HBH_ROUTER_ALERT = Buffer.from([PROTO_ICMPV6, 0, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00]);
/** Bytes before the first record: IPv6 header, Hop-by-Hop header, ICMPv6 header and the report's 4 bytes. */
const REPORT_OVERHEAD = 40 + 8 + 4 + 4;
/** Tunable: largest IPv6 packet we send (the LAN's Ethernet MTU). */
const MAX_PACKET = 1500;

export interface MldRecord {
  type: number;
  group: string;
  sources?: string[];
}

export interface MldQuery {
  version: 1 | 2;
  /** Maximum Response Delay, ms. */
  maxResponseMs: number;
  /** null: a General Query; else the group asked about. */
  group: string | null;
  /** Multicast Address and Source Specific Query: the sources asked about (MLDv2). */
  sources: string[];
  /** S flag: routers suppress timer updates (hosts ignore it). */
  suppressRouterSide: boolean;
  /** Querier's Robustness Variable (0: not given). */
  qrv: number;
  /** Querier's Query Interval, seconds (0: not given). */
  qqiSec: number;
}

/** RFC 3810 §5.1.3 / §5.1.9: a 16-bit or 8-bit code with the floating-point form when the top bit is set. */
function floatCode(code: number, bits: 8 | 16): number {
  const top = bits === 16 ? 0x8000 : 0x80;
  if (code < top) return code;
  const expShift = bits === 16 ? 12 : 4;
  const mantBits = bits === 16 ? 0x0fff : 0x0f;
  const exp = (code >> expShift) & 0x07;
  const mant = code & mantBits;
  return (mant | (mantBits + 1)) * 2 ** (exp + 3);
}

/** Decodes and validates an MLD Query (ICMPv6 type 130) in `ip`. */
export function decodeMldQuery(ip: Ipv6Packet): MldQuery {
  const icmp = decodeIcmpv6(ip);
  if (icmp.type !== ICMP6_MLD_QUERY) fail(ERR, `ICMPv6 type ${icmp.type} is not an MLD query`);
  if (ip.hopLimit !== MLD_HOP_LIMIT) fail(ERR, `hop limit ${ip.hopLimit}, must be 1`);
  if (!isLinkLocal6(ip.src)) fail(ERR, `query from ${ip.src}, not a link-local source`);
  if (icmp.code !== 0) fail(ERR, `ICMPv6 code ${icmp.code}`);
  const b = icmp.body;
  const length = b.length + 4;
  if (length !== 24 && length < 28) fail(ERR, `query of ${length} bytes (neither MLDv1's 24 nor MLDv2's 28+)`);
  const maxCode = u16(b, 0);
  const g = ipText(b, 4, 16);
  const group = g === '::' ? null : g;
  if (group !== null && !isMulticast6(group)) fail(ERR, `query for ${group}, not a multicast address`);
  if (length === 24) return { version: 1, maxResponseMs: maxCode, group, sources: [], suppressRouterSide: false, qrv: 0, qqiSec: 0 };
  const n = u16(b, 22);
  need(b, 24, n * 16, ERR, `query with ${n} sources`);
  if (n > 0 && group === null) fail(ERR, 'source-specific query without a multicast address');
  const sources: string[] = [];
  for (let i = 0; i < n; i++) sources.push(ipText(b, 24 + 16 * i, 16));
  return {
    version: 2,
    maxResponseMs: floatCode(maxCode, 16),
    group,
    sources,
    suppressRouterSide: (b[20]! & 0x08) !== 0,
    qrv: b[20]! & 0x07,
    qqiSec: floatCode(b[21]!, 8),
  };
}

/** An IPv6 packet carrying one MLD message: hop limit 1, Router Alert in a Hop-by-Hop header, checksum over the pseudo-header. */
export function buildMldPacket(src: string, dst: string, type: number, body: Uint8Array): Buffer {
  if (!isLinkLocal6(src)) throw new RangeError(`MLD source ${src} is not link-local`);
  const msg = Buffer.alloc(4 + body.length);
  msg[0] = type;
  msg.set(body, 4);
  // The checksum's pseudo-header names the final destination and ICMPv6 (58), not the Hop-by-Hop header.
  msg.writeUInt16BE(transportChecksum(ip6Bytes(src), ip6Bytes(dst), PROTO_ICMPV6, msg), 2);
  return encodeIpv6({ src, dst, nextHeader: PROTO_HOP_BY_HOP, hopLimit: MLD_HOP_LIMIT, payload: Buffer.concat([HBH_ROUTER_ALERT, msg]) });
}

function encodeRecord(r: MldRecord): Buffer {
  if (!Number.isInteger(r.type) || r.type < 1 || r.type > 6) throw new RangeError(`bad MLD record type ${r.type}`);
  if (!isMulticast6(r.group)) throw new RangeError(`MLD record for ${r.group}, not a multicast address`);
  const sources = r.sources ?? [];
  const out = Buffer.alloc(20 + 16 * sources.length);
  out[0] = r.type;
  out.writeUInt16BE(sources.length, 2);
  out.set(ip6Bytes(r.group), 4);
  sources.forEach((s, i) => out.set(ip6Bytes(s), 20 + 16 * i));
  return out;
}

/** The body (after type, code, checksum) of one MLDv2 Report with these records. */
export function encodeMld2Report(records: MldRecord[]): Buffer {
  if (records.length > 0xffff) throw new RangeError('too many MLD records');
  const head = Buffer.alloc(4);
  head.writeUInt16BE(records.length, 2);
  return Buffer.concat([head, ...records.map(encodeRecord)]);
}

/** MLDv2 Report packets for `records`, as many as it takes to keep each within the LAN MTU. */
export function mld2ReportPackets(src: string, records: MldRecord[]): Buffer[] {
  const out: Buffer[] = [];
  let batch: MldRecord[] = [];
  let size = REPORT_OVERHEAD;
  for (const r of records) {
    const len = 20 + 16 * (r.sources?.length ?? 0);
    if (REPORT_OVERHEAD + len > MAX_PACKET) throw new RangeError(`MLD record for ${r.group} does not fit a packet`);
    if (size + len > MAX_PACKET) {
      out.push(buildMldPacket(src, ALL_MLDV2_ROUTERS, ICMP6_MLD2_REPORT, encodeMld2Report(batch)));
      batch = [];
      size = REPORT_OVERHEAD;
    }
    batch.push(r);
    size += len;
  }
  if (batch.length) out.push(buildMldPacket(src, ALL_MLDV2_ROUTERS, ICMP6_MLD2_REPORT, encodeMld2Report(batch)));
  return out;
}

/** An MLDv1 Report (to the group) or Done (to all-routers) packet. */
export function mld1Packet(src: string, type: typeof ICMP6_MLD1_REPORT | typeof ICMP6_MLD1_DONE, group: string): Buffer {
  if (!isMulticast6(group)) throw new RangeError(`MLD message for ${group}, not a multicast address`);
  const body = Buffer.alloc(20);
  body.set(ip6Bytes(group), 4);
  return buildMldPacket(src, type === ICMP6_MLD1_REPORT ? group : ALL_ROUTERS6, type, body);
}

// ───────────────────────────── the listener ─────────────────────────────

/** Tunables of RFC 3810 §9 (the defaults). */
const ROBUSTNESS = 2;
const UNSOLICITED_REPORT_MS = 1000;
const QUERY_INTERVAL_MS = 125_000;
const QUERY_RESPONSE_MS = 10_000;

export interface MldListenerInit {
  mac: string;
  /** The link-local source of every report. */
  linkLocal: string;
  send(frame: Buffer): void;
  counters?: Counters;
  /** @default Date.now */
  now?: () => number;
  /** @default Math.random */
  random?: () => number;
  /** @default setTimeout, unref'd */
  schedule?: (fn: () => void, ms: number) => { cancel(): void };
}

const defaultSchedule = (fn: () => void, ms: number): { cancel(): void } => {
  const t = setTimeout(fn, ms);
  t.unref();
  return { cancel: () => clearTimeout(t) };
};

export class MldListener {
  private readonly groups = new Set<string>();
  /** State changes still to be repeated: group → [record type, transmissions left]. */
  private readonly changes = new Map<string, [number, number]>();
  private readonly timers = new Set<{ cancel(): void }>();
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly schedule: (fn: () => void, ms: number) => { cancel(): void };
  private generalDue: number | null = null;
  private readonly groupDue = new Map<string, number>();
  private changeTimer = false;
  /** Older Version Querier Present until (RFC 3810 §8.2.1): speak MLDv1 until then. */
  private v1Until = 0;
  private stopped = false;

  constructor(private readonly init: MldListenerInit) {
    this.now = init.now ?? Date.now;
    this.random = init.random ?? Math.random;
    this.schedule = init.schedule ?? defaultSchedule;
  }

  /** The groups joined now. */
  joined(): string[] {
    return [...this.groups];
  }

  has(group: string): boolean {
    return this.groups.has(group);
  }

  /** Joins `groups` (those not joined yet): one state-change report at once, repeated later. */
  join(groups: Iterable<string>): void {
    const fresh = [...new Set(groups)].filter((g) => g !== 'ff02::1' && !this.groups.has(g) && isMulticast6(g));
    if (!fresh.length || this.stopped) return;
    for (const g of fresh) {
      this.groups.add(g);
      this.changes.set(g, [MldRecordType.CHANGE_TO_EXCLUDE, ROBUSTNESS]);
    }
    this.init.counters?.inc('mld.join', fresh.length);
    this.sendChanges(fresh);
  }

  /** Leaves `groups` (those joined): a state-change report (MLDv1: Done) at once, repeated later. */
  leave(groups: Iterable<string>): void {
    const gone = [...new Set(groups)].filter((g) => this.groups.has(g));
    if (!gone.length || this.stopped) return;
    for (const g of gone) {
      this.groups.delete(g);
      this.groupDue.delete(g);
      this.changes.set(g, [MldRecordType.CHANGE_TO_INCLUDE, ROBUSTNESS]);
    }
    this.init.counters?.inc('mld.leave', gone.length);
    this.sendChanges(gone);
  }

  /** Leaves every group once (no repeats) and stops all timers. */
  stop(): void {
    if (this.stopped) return;
    const all = [...this.groups];
    this.groups.clear();
    this.changes.clear();
    for (const g of all) this.changes.set(g, [MldRecordType.CHANGE_TO_INCLUDE, 1]);
    if (all.length) this.sendChanges(all);
    this.stopped = true;
    for (const t of this.timers) t.cancel();
    this.timers.clear();
  }

  /** A query heard on the link: the answer is scheduled (RFC 3810 §6.2). */
  onQuery(q: MldQuery): void {
    if (this.stopped) return;
    const now = this.now();
    this.init.counters?.inc(`mld.query.v${q.version}.${q.group === null ? 'general' : q.sources.length ? 'source' : 'group'}`);
    if (q.version === 1) this.v1Until = now + ROBUSTNESS * QUERY_INTERVAL_MS + QUERY_RESPONSE_MS;
    if (q.group !== null && !this.groups.has(q.group)) return;
    const delay = Math.floor(this.random() * Math.max(1, q.maxResponseMs));
    const due = now + delay;
    if (this.generalDue !== null && this.generalDue <= due) return; // a pending general answer covers this one
    if (q.group === null) {
      this.generalDue = due;
      this.later(delay, () => {
        if (this.generalDue !== due) return;
        this.generalDue = null;
        this.groupDue.clear();
        this.sendCurrent([...this.groups]);
      });
      return;
    }
    const group = q.group;
    if (q.sources.length) {
      // Our filter is EXCLUDE {}: every source asked about is wanted, MODE_IS_INCLUDE (them) (§6.3).
      const sources = q.sources;
      this.later(delay, () => {
        if (!this.groups.has(group)) return;
        this.init.counters?.inc('mld.report.current');
        this.emit(mld2ReportPackets(this.init.linkLocal, [{ type: MldRecordType.MODE_IS_INCLUDE, group, sources }]));
      });
      return;
    }
    const pending = this.groupDue.get(group);
    if (pending !== undefined && pending <= due) return;
    this.groupDue.set(group, due);
    this.later(delay, () => {
      if (this.groupDue.get(group) !== due) return;
      this.groupDue.delete(group);
      if (this.groups.has(group)) this.sendCurrent([group]);
    });
  }

  private v1(): boolean {
    return this.now() < this.v1Until;
  }

  private later(ms: number, fn: () => void): void {
    const t = this.schedule(() => {
      this.timers.delete(t);
      if (!this.stopped) fn();
    }, ms);
    this.timers.add(t);
  }

  private emit(packets: Buffer[]): void {
    for (const p of packets) {
      const dst = p.subarray(24, 40);
      const mac = multicastMac(ipText(dst, 0, 16));
      this.init.send(encodeEthernet({ dst: mac, src: this.init.mac, ethertype: ETHERTYPE_IPV6, payload: p }));
    }
  }

  /** Current-state records (answers to queries). */
  private sendCurrent(groups: string[]): void {
    if (!groups.length) return;
    this.init.counters?.inc('mld.report.current');
    if (this.v1()) this.emit(groups.map((g) => mld1Packet(this.init.linkLocal, ICMP6_MLD1_REPORT, g)));
    else this.emit(mld2ReportPackets(this.init.linkLocal, groups.map((group) => ({ type: MldRecordType.MODE_IS_EXCLUDE, group }))));
  }

  /** Sends the pending state change of `groups` now, and arms the repeat timer for what is left. */
  private sendChanges(groups: string[]): void {
    const records: MldRecord[] = [];
    for (const g of groups) {
      const c = this.changes.get(g);
      if (!c) continue;
      records.push({ type: c[0], group: g });
      if (--c[1] <= 0) this.changes.delete(g);
    }
    if (records.length) {
      this.init.counters?.inc('mld.report.change');
      if (this.v1()) {
        this.emit(records.map((r) => mld1Packet(this.init.linkLocal, r.type === MldRecordType.CHANGE_TO_EXCLUDE ? ICMP6_MLD1_REPORT : ICMP6_MLD1_DONE, r.group)));
      } else this.emit(mld2ReportPackets(this.init.linkLocal, records));
    }
    if (this.changes.size && !this.changeTimer && !this.stopped) {
      this.changeTimer = true;
      this.later(Math.floor(this.random() * UNSOLICITED_REPORT_MS), () => {
        this.changeTimer = false;
        this.sendChanges([...this.changes.keys()]);
      });
    }
  }
}
