// The adapter's local DNS service for general nodes (deck slide 28: "DNS packets"). Queries arrive as frames on
// the LAN (the classifier hands over the UDP payload), so this works on messages, not sockets:
//
//   query ─► decode (FORMERR / NOTIMP on bad input) ─► name under the overlay domain?
//              ├─ yes: lookup through the asking general node's PeerManager (starts route selection) ─► A / AAAA
//              └─ no:  forwarded to the adapter's upstream resolvers (resolv.conf) over UDP ─► their answer relayed
//
// Every outcome is counted (dns.*); nothing here throws on input bytes. What to do with a query and the overlay
// answer are the node resolver's own (net/dns/query.ts); only receiving, forwarding and the lookup are here.

import dgram from 'node:dgram';
import { isIPv4 } from 'node:net';
import { normalizeName, peekHeader, type DnsQuery, type DnsResponseSpec } from '../net/dns/codec.js';
import { classifyQuery, encodeOrServfail, overlayAnswer, overlayShortcut, type OverlayAddresses } from '../net/dns/query.js';
import type { HostPort } from '../net/dns/resolver.js';
import { Counters } from '../util/counters.js';

/** Tunable: deadline of one overlay lookup or one forwarded query (ms). */
const TIMEOUT_MS = 2000;
/** Tunable: TTL of overlay answers (s): short, virtual addresses never change but peers come and go. */
const OVERLAY_TTL = 5;
/** Tunable: queries forwarded upstream at once. */
const MAX_FORWARDS = 256;

export type OverlayLookup = (fqdn: string) => Promise<OverlayAddresses | null>;

export class LanDns {
  readonly counters = new Counters();
  private readonly domain: string;
  private forwards = 0;

  constructor(
    domain: string,
    private readonly upstream: HostPort[],
  ) {
    this.domain = normalizeName(domain);
  }

  /** The response to one query message, or null when none is due (unreadable, or a response). */
  async answer(msg: Uint8Array, lookup: OverlayLookup | null): Promise<Buffer | null> {
    this.counters.inc('query');
    const v = classifyQuery(msg, this.domain, this.counters);
    if (v.kind === 'drop') return null;
    if (v.kind === 'reply') return v.buf;
    if (v.kind === 'forward') return this.forward(v.q, Buffer.from(msg));
    const { q, rel } = v;
    const shortcut = overlayShortcut(q, rel, this.counters);
    if (shortcut) return this.respond(q, shortcut);
    if (!lookup) return this.respond(q, overlayAnswer(q, null, OVERLAY_TTL, this.counters));
    let found: OverlayAddresses | null;
    try {
      found = await withTimeout(lookup(q.name), TIMEOUT_MS);
    } catch {
      this.counters.inc('overlay.lookup-error');
      return this.respond(q, { rcode: 'SERVFAIL', answers: [] });
    }
    return this.respond(q, overlayAnswer(q, found, OVERLAY_TTL, this.counters));
  }

  private respond(q: DnsQuery, spec: DnsResponseSpec): Buffer {
    return encodeOrServfail(q, spec, this.counters);
  }

  /** Relays the query to the upstreams in turn; SERVFAIL when none answers in time, REFUSED without any. */
  private async forward(q: DnsQuery, wire: Buffer): Promise<Buffer> {
    if (this.upstream.length === 0) {
      this.counters.inc('forward.no-upstream');
      return this.respond(q, { rcode: 'REFUSED', answers: [] });
    }
    if (this.forwards >= MAX_FORWARDS) {
      this.counters.inc('forward.overflow');
      return this.respond(q, { rcode: 'SERVFAIL', answers: [] });
    }
    this.forwards++;
    try {
      for (const up of this.upstream) {
        const reply = await askUpstream(up, wire, TIMEOUT_MS / this.upstream.length);
        const h = reply ? peekHeader(reply) : null;
        if (reply && h && h.flags.qr && h.id === q.id) {
          this.counters.inc('forward.answer');
          return reply;
        }
      }
      this.counters.inc('forward.timeout');
      return this.respond(q, { rcode: 'SERVFAIL', answers: [] });
    } finally {
      this.forwards--;
    }
  }
}

/** One query to one upstream from a fresh ephemeral port; its first datagram back, or null on error or timeout. */
function askUpstream(up: HostPort, wire: Buffer, timeoutMs: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket(isIPv4(up.address) ? 'udp4' : 'udp6');
    const done = (v: Buffer | null): void => {
      clearTimeout(t);
      try {
        sock.close();
      } catch {
        /* closed */
      }
      resolve(v);
    };
    const t = setTimeout(() => done(null), timeoutMs);
    sock.on('error', () => done(null));
    sock.on('message', (m) => done(m));
    // Connected: the kernel delivers only datagrams from this upstream, so nobody else can race in an answer.
    sock.connect(up.port, up.address, () => sock.send(wire, (err) => err && done(null)));
  });
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error('timeout')), ms)))]).finally(() => clearTimeout(t));
}
