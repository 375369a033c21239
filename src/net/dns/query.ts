// Answering one DNS query the way cyphonic's DNS servers do, without sockets: what to do with a message (drop it,
// reply at once, forward it upstream, or answer it from the overlay) and the overlay answer once a node was looked
// up. Shared by the node's resolver (net/dns/resolver.ts) and the adapter's LAN DNS (adapter/lan-dns.ts), which
// differ only in how they receive, forward and look up. Every refusal is counted.

import { DecodeError } from '../../util/errors.js';
import type { Counters } from '../../util/counters.js';
import {
  CLASS_IN,
  decodeQuery,
  encodeHeaderOnlyResponse,
  encodeResponse,
  peekHeader,
  TYPE_A,
  TYPE_AAAA,
  type DnsAnswer,
  type DnsQuery,
  type DnsResponseSpec,
} from './codec.js';

/** A node's virtual addresses as the overlay directory gives them. */
export interface OverlayAddresses {
  vip4: string | null;
  vip6: string | null;
}

export type QueryVerdict =
  /** Unreadable, or a response (a response to a response can loop): no answer at all. */
  | { kind: 'drop' }
  /** Answered without a lookup: NOTIMP, FORMERR, BADVERS. `bug` is a decoder exception that was not a DecodeError. */
  | { kind: 'reply'; buf: Buffer; bug?: unknown }
  /** Not under our domain. */
  | { kind: 'forward'; q: DnsQuery }
  /** Under our domain: `rel` is '' for the domain itself, else the labels before it. */
  | { kind: 'overlay'; q: DnsQuery; rel: string };

/** '' for the domain itself, the labels before it for names under it, null for other names (all normalized). */
export function relativeName(name: string, domain: string): string | null {
  if (name === domain) return '';
  if (name.length > domain.length && name.endsWith(domain) && name[name.length - domain.length - 1] === '.') {
    return name.slice(0, name.length - domain.length - 1);
  }
  return null;
}

/** The response for `spec`, or SERVFAIL when it cannot be encoded (e.g. a lookup gave something not an address). */
export function encodeOrServfail(q: DnsQuery, spec: DnsResponseSpec, counters: Counters): Buffer {
  try {
    return encodeResponse(q, spec);
  } catch {
    counters.inc('answer.encode-error');
    return encodeResponse(q, { rcode: 'SERVFAIL', answers: [] });
  }
}

/** What to do with one query message; `domain` normalized. */
export function classifyQuery(msg: Uint8Array, domain: string, counters: Counters): QueryVerdict {
  const header = peekHeader(msg);
  if (!header || header.flags.qr) {
    counters.inc('refused.decode');
    return { kind: 'drop' };
  }
  if (header.flags.opcode !== 0) {
    counters.inc('refused.opcode');
    return { kind: 'reply', buf: encodeHeaderOnlyResponse(header, 'NOTIMP') };
  }
  let q: DnsQuery;
  try {
    q = decodeQuery(msg);
  } catch (err) {
    counters.inc('refused.decode');
    return { kind: 'reply', buf: encodeHeaderOnlyResponse(header, 'FORMERR'), ...(err instanceof DecodeError ? {} : { bug: err }) };
  }
  if (q.edns && q.edns.version !== 0) {
    counters.inc('refused.edns-version');
    return { kind: 'reply', buf: encodeOrServfail(q, { rcode: 'BADVERS', answers: [] }, counters) };
  }
  const rel = relativeName(q.name, domain);
  if (rel === null) return { kind: 'forward', q };
  counters.inc('overlay.query');
  return { kind: 'overlay', q, rel };
}

/** The answer an overlay query gets without a lookup (wrong class, the zone apex, escaped bytes), or null. */
export function overlayShortcut(q: DnsQuery, rel: string, counters: Counters): DnsResponseSpec | null {
  if (q.qclass !== CLASS_IN) {
    counters.inc('overlay.refused-class');
    return { rcode: 'REFUSED', answers: [] };
  }
  if (rel === '') return overlayAnswer(q, { vip4: null, vip6: null }, 0, counters); // the apex has no address records
  if (rel.includes('\\')) return overlayAnswer(q, null, 0, counters); // escaped bytes: never a node name
  return null;
}

/** The authoritative answer once the node was looked up: NXDOMAIN (null), NODATA, or its A/AAAA record. */
export function overlayAnswer(q: DnsQuery, found: OverlayAddresses | null, ttl: number, counters: Counters): DnsResponseSpec {
  if (found === null) {
    counters.inc('overlay.nxdomain');
    return { rcode: 'NXDOMAIN', answers: [], authoritative: true };
  }
  const answers: DnsAnswer[] = [];
  if (q.qtype === TYPE_A && found.vip4) answers.push({ type: 'A', address: found.vip4, ttl });
  if (q.qtype === TYPE_AAAA && found.vip6) answers.push({ type: 'AAAA', address: found.vip6, ttl });
  counters.inc(answers.length ? 'overlay.answer' : 'overlay.nodata');
  return { rcode: 'NOERROR', answers, authoritative: true };
}
