// The data plane's policy filter seen from TypeScript: the counters the native filter (native/filter.c) keeps in
// shared memory, and the encoding of a peer's allowed ports (the Route Direction's `allowIn`) into its rule records.

import { parsePortList, type PortRange } from '../../policy/policy.js';

/** Counter positions in the filter's Float64Array (native/filter.c keeps the same order). */
export const FILTER_STATS = {
  /** New flows a rule allowed. */
  passRule: 0,
  /** Replies to flows this node opened. */
  passReply: 1,
  /** Packets from peers the policy lets open anything ("*"). */
  passAny: 2,
  /** Dropped: a new flow no rule allows (the policy's main refusal). */
  dropNoRule: 3,
  /** Dropped: a later fragment (no ports to judge) from a peer without "*". */
  dropFragment: 4,
  /** Dropped: headers too short to judge. */
  dropMalformed: 5,
  /** Flow entries pushed out of the full table (their replies are then judged as new flows). */
  flowsEvicted: 6,
  /** Dropped: from a peer the NMS said was revoked. */
  dropRevoked: 7,
  /** Not sent: to a peer the NMS said was revoked. */
  dropRevokedOut: 8,
} as const;
const FILTER_STAT_COUNT = 9;

/** The rule record that blocks a revoked peer both ways. */
export const BLOCK_RULES = Uint8Array.from([255, 0, 0, 0, 0]);

export function createFilterStats(): SharedArrayBuffer {
  return new SharedArrayBuffer(FILTER_STAT_COUNT * 8);
}

export function filterCounters(sab: SharedArrayBuffer): Record<string, number> {
  const a = new Float64Array(sab);
  const out: Record<string, number> = {};
  for (const [k, i] of Object.entries(FILTER_STATS)) out[k] = a[i]!;
  return out;
}

const PROTO = { any: 0, icmp: 1, tcp: 6, udp: 17 } as const;

/** Rule records for filterSet: 5 bytes each (proto, lo u16 BE, hi u16 BE). */
export function encodeRules(ranges: readonly PortRange[]): Uint8Array {
  const b = Buffer.alloc(ranges.length * 5);
  ranges.forEach((r, i) => {
    b[i * 5] = PROTO[r.proto];
    b.writeUInt16BE(r.lo, i * 5 + 1);
    b.writeUInt16BE(r.hi, i * 5 + 3);
  });
  return b;
}

/** `allowIn` text → rule records (null: no policy information, everything passes). Throws PolicyError on bad text. */
export function rulesFromAllowIn(allowIn: string | null): Uint8Array | null {
  return allowIn === null ? null : encodeRules(parsePortList(allowIn).slice(0, 512));
}
