// The node's DNS resolver service: answers <name>.<domain> from the overlay directory, forwards the rest upstream.
// UDP only; bounded, never crashes on input, and counts every drop (see Resolver.counters).

import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP, isIPv4 } from 'node:net';
import { Counters } from '../../util/counters.js';
import { ConfigError, describeError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import { unmapV4 } from '../../util/addr.js';
import {
  addressBytes,
  DNS_HEADER_LEN,
  normalizeName,
  peekHeader,
  TYPE_A,
  TYPE_AAAA,
  type DnsQuery,
  type DnsResponseSpec,
} from './codec.js';
import { classifyQuery, encodeOrServfail, overlayAnswer, overlayShortcut, type OverlayAddresses } from './query.js';

export interface HostPort {
  address: string;
  port: number;
}

export interface ResolverInit {
  /** Where to answer, e.g. the node's virtual IPv4 and IPv6 on port 53, or 127.0.0.1:0 in tests. */
  listen: HostPort[];
  /** The overlay zone, e.g. 'cyphonic.internal' (case and trailing dot ignored). */
  domain: string;
  /** Where other names are forwarded; readSystemUpstreams() gives the system's. Own listen addresses are skipped. */
  upstream: HostPort[];
  /** TTL of overlay answers. @default 5 */
  ttlSec?: number;
  /** Deadline for a forwarded query (shared among upstreams tried in turn) and for one overlay lookup. @default 2000 */
  forwardTimeoutMs?: number;
  /** Forwarded queries in flight at once; beyond it new ones get SERVFAIL. Also bounds overlay lookups in flight. @default 1024 */
  maxPendingForwards?: number;
}

export type { OverlayAddresses };

export interface ResolverComponents {
  /** Overlay directory: `name` is the label(s) before the domain, lowercase; null means no such node. */
  lookup: (name: string) => Promise<OverlayAddresses | null>;
  /** Called synchronously for every overlay A/AAAA query before the lookup (start route selection; must be fast). */
  onQuery?: (name: string) => void;
  logger: Logger;
}

export interface Resolver {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Bound listen addresses (actual ports once started). */
  addresses(): HostPort[];
  readonly counters: Counters;
}

const DEFAULT_TTL = 5;
const DEFAULT_FORWARD_TIMEOUT = 2000;
const DEFAULT_MAX_PENDING = 1024;
const RECV_BUFFER = 1 << 20;

interface Client {
  sock: dgram.Socket;
  address: string;
  port: number;
}

interface PendingForward {
  upId: number;
  client: Client;
  query: DnsQuery;
  /** The query bytes as sent upstream (client's bytes with our id). */
  wire: Buffer;
  /** Upstream keys ('address|port') sent to so far: a reply is accepted from any of them. */
  tried: Set<string>;
  attempt: number;
  timer: NodeJS.Timeout | undefined;
  /**
   * One socket per attempt, each on a fresh random source port (closed when the query ends): an off-path spoofer
   * must guess the port as well as the 16-bit id, and one answered query teaches nothing about the next.
   */
  socks: dgram.Socket[];
}

/** A comparison key for an address and port that ignores textual IPv6 variants and zone ids. */
function endpointKey(address: string, port: number): string {
  const a = unmapV4(address.split('%')[0]!);
  try {
    return `${Buffer.from(addressBytes(a)).toString('hex')}|${port}`;
  } catch {
    return `${a.toLowerCase()}|${port}`;
  }
}

/** Whether `msg` holds `question` right after the header, ASCII letter case ignored. */
function sameQuestion(msg: Buffer, question: Uint8Array): boolean {
  if (msg.length < DNS_HEADER_LEN + question.length) return false;
  const nameLen = question.length - 4; // then QTYPE and QCLASS, compared exactly
  for (let i = 0; i < question.length; i++) {
    let a = msg[DNS_HEADER_LEN + i]!;
    let b = question[i]!;
    if (i < nameLen && a >= 0x41 && a <= 0x5a) a += 0x20;
    if (i < nameLen && b >= 0x41 && b <= 0x5a) b += 0x20;
    if (a !== b) return false;
  }
  return true;
}

function validHostPort(hp: HostPort): boolean {
  return isIP(hp.address.split('%')[0]!) !== 0 && Number.isInteger(hp.port) && hp.port >= 0 && hp.port <= 65535;
}

/**
 * Nameservers of a resolv.conf (port 53), in file order, minus any listed in `exclude` (addresses
 * alone match any port; pass the resolver's own listen addresses). A missing or unreadable file
 * gives []. Synchronous: meant for building ResolverInit at start-up.
 */
export function readSystemUpstreams(path = '/etc/resolv.conf', exclude: readonly (string | HostPort)[] = []): HostPort[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const skip = new Set(exclude.map((e) => (typeof e === 'string' ? endpointKey(e, 53) : endpointKey(e.address, 53))));
  const out: HostPort[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const m = /^nameserver\s+(\S+)$/.exec(line);
    if (!m) continue;
    const address = m[1]!;
    if (isIP(address.split('%')[0]!) === 0) continue;
    if (skip.has(endpointKey(address, 53))) continue;
    if (out.some((o) => endpointKey(o.address, o.port) === endpointKey(address, 53))) continue;
    out.push({ address, port: 53 });
  }
  return out;
}

class DnsResolver implements Resolver {
  readonly counters = new Counters();
  private readonly domain: string;
  private readonly ttl: number;
  private readonly timeoutMs: number;
  private readonly maxPending: number;
  private readonly log: Logger;
  private upstreams: HostPort[];
  private upstreamKeys: string[] = [];
  /** Index of the upstream that answered last: forwards try it first. */
  private preferred = 0;
  private listeners: dgram.Socket[] = [];
  private bound: HostPort[] = [];
  private readonly pending = new Map<number, PendingForward>();
  private lookupsInFlight = 0;
  private running = false;

  constructor(
    private readonly init: ResolverInit,
    private readonly components: ResolverComponents,
  ) {
    this.domain = normalizeName(init.domain);
    if (this.domain === '' || /[^a-z0-9.-]/.test(this.domain) || this.domain.split('.').some((l) => l === '' || l.length > 63)) {
      throw new ConfigError(`bad overlay domain: ${JSON.stringify(init.domain)}`);
    }
    this.ttl = init.ttlSec ?? DEFAULT_TTL;
    this.timeoutMs = init.forwardTimeoutMs ?? DEFAULT_FORWARD_TIMEOUT;
    this.maxPending = init.maxPendingForwards ?? DEFAULT_MAX_PENDING;
    if (!Number.isInteger(this.ttl) || this.ttl < 0) throw new ConfigError(`bad ttlSec ${this.ttl}`);
    if (!(this.timeoutMs > 0)) throw new ConfigError(`bad forwardTimeoutMs ${this.timeoutMs}`);
    if (!Number.isInteger(this.maxPending) || this.maxPending < 1) throw new ConfigError(`bad maxPendingForwards ${this.maxPending}`);
    if (init.listen.length === 0) throw new ConfigError('resolver needs at least one listen address');
    for (const hp of [...init.listen, ...init.upstream]) {
      if (!validHostPort(hp)) throw new ConfigError(`bad resolver address ${hp.address}:${hp.port}`);
    }
    this.upstreams = [...init.upstream];
    this.log = components.logger;
  }

  addresses(): HostPort[] {
    return this.bound.map((b) => ({ ...b }));
  }

  async start(): Promise<void> {
    if (this.running) return;
    try {
      for (const hp of this.init.listen) {
        const sock = await this.bind(hp.address, hp.port, (s, msg, rinfo) => this.onClientDatagram(s, msg, rinfo));
        this.listeners.push(sock);
        const a = sock.address();
        this.bound.push({ address: a.address, port: a.port });
      }
      // Never forward to ourselves (a resolv.conf pointing at this resolver would loop).
      const own = new Set(this.bound.map((b) => endpointKey(b.address, b.port)));
      this.upstreams = this.upstreams.filter((u) => {
        const self = own.has(endpointKey(u.address, u.port));
        if (self) this.log.warn('dns upstream is this resolver, skipped', { udpAddr: `${u.address}:${u.port}` });
        return !self;
      });
      this.upstreamKeys = this.upstreams.map((u) => endpointKey(u.address, u.port));
      this.running = true;
      this.log.info('dns resolver listening', {
        listen: this.bound.map((b) => `${b.address}:${b.port}`),
        upstream: this.upstreams.map((u) => `${u.address}:${u.port}`),
        domain: this.domain,
      });
    } catch (err) {
      await this.closeAll();
      throw err;
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.closeAll();
  }

  private async closeAll(): Promise<void> {
    for (const p of this.pending.values()) this.finish(p);
    const socks = this.listeners;
    this.listeners = [];
    this.bound = [];
    await Promise.all(socks.map((s) => new Promise<void>((resolve) => {
      try {
        s.close(() => resolve());
      } catch {
        resolve(); // already closed
      }
    })));
  }

  private bind(address: string, port: number, onMessage: (sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo) => void): Promise<dgram.Socket> {
    const type = isIPv4(address) ? 'udp4' : 'udp6';
    // A larger receive buffer rides out bursts (it is capped by net.core.rmem_max).
    const sock = dgram.createSocket({ type, ipv6Only: type === 'udp6', recvBufferSize: RECV_BUFFER });
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        try {
          sock.close();
        } catch {
          // not yet bound
        }
        reject(err);
      };
      sock.once('error', onError);
      sock.bind({ address, port, exclusive: true }, () => {
        sock.off('error', onError);
        sock.on('error', (err) => {
          this.counters.inc('socket.error');
          this.log.warn('dns socket error', { code: describeError(err) });
        });
        sock.on('message', (msg, rinfo) => onMessage(sock, msg, rinfo));
        resolve(sock);
      });
    });
  }

  private send(c: Client, buf: Buffer): void {
    this.counters.inc('tx');
    try {
      c.sock.send(buf, c.port, c.address, (err) => {
        if (err) this.counters.inc('send.error');
      });
    } catch {
      this.counters.inc('send.error'); // socket closed by stop()
    }
  }

  // ---- client side -------------------------------------------------------------------------

  private onClientDatagram(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.counters.inc('rx');
    if (rinfo.port === 0) {
      this.counters.inc('refused.source');
      return;
    }
    const client: Client = { sock, address: rinfo.address, port: rinfo.port };
    const v = classifyQuery(msg, this.domain, this.counters);
    if (v.kind === 'drop') return;
    if (v.kind === 'reply') {
      if (v.bug !== undefined) this.log.error('dns decoder bug', { code: describeError(v.bug) });
      this.send(client, v.buf);
    } else if (v.kind === 'forward') {
      this.forward(client, v.q, msg);
    } else {
      this.answerOverlay(client, v.q, v.rel).catch((err: unknown) => {
        this.log.error('dns overlay answer failed', { code: describeError(err) });
      });
    }
  }

  private reply(client: Client, q: DnsQuery, r: DnsResponseSpec): void {
    this.send(client, encodeOrServfail(q, r, this.counters));
  }

  private async answerOverlay(client: Client, q: DnsQuery, rel: string): Promise<void> {
    const shortcut = overlayShortcut(q, rel, this.counters);
    if (shortcut) return this.reply(client, q, shortcut);
    const isAddr = q.qtype === TYPE_A || q.qtype === TYPE_AAAA;
    if (isAddr && this.components.onQuery) {
      try {
        const r = this.components.onQuery(rel) as unknown;
        if (r instanceof Promise) r.catch(() => this.counters.inc('overlay.onquery-error'));
      } catch {
        this.counters.inc('overlay.onquery-error');
      }
    }
    if (this.lookupsInFlight >= this.maxPending) {
      this.counters.inc('overlay.overflow');
      this.reply(client, q, { rcode: 'SERVFAIL', answers: [] });
      return;
    }
    this.lookupsInFlight++;
    let found: OverlayAddresses | null;
    let timer: NodeJS.Timeout | undefined;
    try {
      found = await Promise.race([
        this.components.lookup(rel),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('overlay lookup timed out')), this.timeoutMs);
        }),
      ]);
    } catch (err) {
      this.counters.inc('overlay.lookup-error');
      this.log.warn('dns overlay lookup failed', { node: rel, code: describeError(err) });
      if (this.listeners.includes(client.sock)) this.reply(client, q, { rcode: 'SERVFAIL', answers: [] });
      return;
    } finally {
      clearTimeout(timer);
      this.lookupsInFlight--;
    }
    if (!this.listeners.includes(client.sock)) return; // stopped meanwhile
    // Other qtypes for an existing node: NOERROR with no answer (NODATA).
    this.reply(client, q, overlayAnswer(q, found, this.ttl, this.counters));
  }

  // ---- forwarding --------------------------------------------------------------------------

  private forward(client: Client, q: DnsQuery, msg: Buffer): void {
    if (this.upstreams.length === 0) {
      this.counters.inc('forward.no-upstream');
      this.reply(client, q, { rcode: 'REFUSED', answers: [] });
      return;
    }
    if (this.pending.size >= this.maxPending) {
      this.counters.inc('forward.overflow');
      this.reply(client, q, { rcode: 'SERVFAIL', answers: [] });
      return;
    }
    let upId = randomInt(0, 0x10000);
    for (let i = 0; this.pending.has(upId); i++) {
      if (i > 64) {
        this.counters.inc('forward.overflow');
        this.reply(client, q, { rcode: 'SERVFAIL', answers: [] });
        return;
      }
      upId = randomInt(0, 0x10000);
    }
    const wire = Buffer.from(msg); // copy: the client's id must never reach upstream
    wire.writeUInt16BE(upId, 0);
    const p: PendingForward = { upId, client, query: q, wire, tried: new Set(), attempt: 0, timer: undefined, socks: [] };
    this.pending.set(upId, p);
    this.sendUpstream(p);
  }

  /** Sends to the next upstream in turn and arms the timer for this attempt's share of the deadline. */
  private sendUpstream(p: PendingForward): void {
    const n = this.upstreams.length;
    const idx = (this.preferred + p.attempt) % n;
    const up = this.upstreams[idx]!;
    p.tried.add(this.upstreamKeys[idx]!);
    p.attempt++;
    const v4 = isIPv4(unmapV4(up.address));
    const slice = p.attempt < n ? Math.floor(this.timeoutMs / n) : this.timeoutMs - Math.floor(this.timeoutMs / n) * (n - 1);
    p.timer = setTimeout(() => this.onForwardTimer(p), slice);
    this.counters.inc('forward.tx');
    try {
      // Unbound: the first send binds it to a random port the kernel picks (ip_local_port_range).
      const sock = dgram.createSocket(v4 ? 'udp4' : 'udp6');
      sock.on('error', () => this.counters.inc('forward.socket-error'));
      sock.on('message', (msg, rinfo) => this.onUpstreamDatagram(p, msg, rinfo));
      p.socks.push(sock);
      sock.send(p.wire, up.port, v4 ? unmapV4(up.address) : up.address, (err) => {
        if (err) this.counters.inc('forward.send-error');
      });
    } catch {
      this.counters.inc('forward.send-error');
    }
  }

  private onForwardTimer(p: PendingForward): void {
    if (this.pending.get(p.upId) !== p) return;
    if (p.attempt < this.upstreams.length) {
      this.counters.inc('forward.retry');
      this.sendUpstream(p);
      return;
    }
    this.finish(p);
    this.counters.inc('forward.timeout');
    this.reply(p.client, p.query, { rcode: 'SERVFAIL', answers: [] });
  }

  /** The query is over (answered, timed out, or the resolver stops): its timer and sockets go. */
  private finish(p: PendingForward): void {
    clearTimeout(p.timer);
    if (this.pending.get(p.upId) === p) this.pending.delete(p.upId);
    for (const s of p.socks.splice(0)) {
      try {
        s.close();
      } catch {
        /* already closed */
      }
    }
  }

  private onUpstreamDatagram(sent: PendingForward, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.counters.inc('forward.rx');
    const h = peekHeader(msg);
    if (!h || !h.flags.qr) {
      this.counters.inc('forward.stray.decode');
      return;
    }
    const p = this.pending.get(h.id);
    if (!p || p !== sent) {
      this.counters.inc('forward.stray.id');
      return;
    }
    if (!p.tried.has(endpointKey(rinfo.address, rinfo.port))) {
      this.counters.inc('forward.stray.source');
      return;
    }
    // The reply must echo our question (letter case aside: not every server preserves it);
    // some servers send errors with no question, which are accepted as they are.
    const echoes = h.qdcount === 1 && sameQuestion(msg, p.query.question);
    if (!echoes && !(h.qdcount === 0 && h.flags.rcode !== 0)) {
      this.counters.inc('forward.stray.question');
      return;
    }
    this.finish(p);
    const idx = this.upstreamKeys.indexOf(endpointKey(rinfo.address, rinfo.port));
    if (idx >= 0) this.preferred = idx;
    this.counters.inc('forward.ok');
    const out = Buffer.from(msg);
    out.writeUInt16BE(p.query.id, 0);
    this.send(p.client, out);
  }
}

/** Builds the resolver; nothing is bound until start(). Throws ConfigError on a bad init. */
export function createResolver(init: ResolverInit, components: ResolverComponents): Resolver {
  return new DnsResolver(init, components);
}
