// Node side of relayed paths: binds this node's data socket to the TRS for each relayed path (RelayBind, sealed with
// keys from the path's Temp Key), keeps the binding (and the NAT mapping toward the TRS) fresh, and tells whether
// the TRS still answers (failover). The same UDP socket as data, so the TRS records the endpoint capsules come from.
//
//   PeerManager (relayed RouteDirection) ─► bind(path) ─► RelayBind every 250 ms ─► TRS
//                                         ◄── fresh RelayBindAck {observed, peerBound} ◄──┘   (0x27, via the worker)
//   every REBIND_MS, and after our registration saw a new address ─► rebind every path (NAT rebinding, moves)
//   check(path): one bind with a short deadline — false when the TRS is gone (PeerManager asks for another TRS)

import { randomInt } from 'node:crypto';
import { openRelayBindAck, relayBindFresh, RelayBindKeys, sealRelayBind } from '../channel/relay-bind.js';
import { SeqCounter } from '../channel/sequence.js';
import { HEADER_LEN, MessageType } from '../protocol/constants.js';
import { formatEndpoint, type Endpoint } from '../protocol/endpoint.js';
import { HEADER_OFFSETS } from '../protocol/header.js';
import { Counters } from '../util/counters.js';
import type { Logger } from '../util/log.js';

/** Tunable: wait between RelayBind retransmissions (ms); the TRS allows 8 binds per second per path. */
export const BIND_RETRANSMIT_MS = 250;
/** Tunable: how long bind() keeps trying (ms) for an ack (and, if asked, for the other end to be bound too). */
export const BIND_DEADLINE_MS = 3000;
/** Tunable: bound paths are refreshed this often (the TRS forgets idle paths after 180 s; NAT UDP state ~30 s+). */
export const REBIND_MS = 20_000;
/** Tunable: a path whose TRS has not acked a bind for this long is forgotten (the TRS forgot it, or died). */
export const FORGET_UNACKED_MS = 200_000;

export interface RelayBinderComponents {
  nodeId: () => number;
  send: (datagram: Buffer, to: Endpoint) => void;
  logger: Logger;
  now?: () => number;
}

export interface BindResult {
  observed: Endpoint;
  peerBound: boolean;
}

interface Bound {
  pathId: bigint;
  relay: Endpoint;
  keys: RelayBindKeys;
  seq: SeqCounter;
  /** txid → resolver of the bind waiting for that ack. */
  waiting: Map<number, (r: BindResult) => void>;
  lastAck: number;
}

export class RelayBinder {
  readonly counters = new Counters();
  private readonly paths = new Map<bigint, Bound>();
  private txid = randomInt(1, 0x7fffffff);
  private timer: NodeJS.Timeout | null = null;
  private readonly now: () => number;

  constructor(private readonly c: RelayBinderComponents) {
    this.now = c.now ?? Date.now;
    this.timer = setInterval(() => this.rebindAll(), REBIND_MS);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.paths.clear();
  }

  /** The relay endpoint of a bound path (status), or null. */
  relayOf(pathId: bigint): Endpoint | null {
    return this.paths.get(pathId)?.relay ?? null;
  }

  /**
   * Binds to the TRS for `pathId` (retransmitting) until a fresh ack — and, with `waitPeer`, until the ack says the
   * other end is bound too, so our first TunnelRequest is forwarded. Resolves with the last ack, or null if none came.
   */
  async bind(pathId: bigint, tempKey: Buffer, relay: Endpoint, opts: { waitPeer?: boolean; deadlineMs?: number } = {}): Promise<BindResult | null> {
    let p = this.paths.get(pathId);
    if (!p || p.relay.address !== relay.address || p.relay.port !== relay.port) {
      p = { pathId, relay, keys: new RelayBindKeys(tempKey, this.c.nodeId()), seq: new SeqCounter(this.now), waiting: new Map(), lastAck: this.now() };
      this.paths.set(pathId, p);
    }
    const deadline = this.now() + (opts.deadlineMs ?? BIND_DEADLINE_MS);
    let last: BindResult | null = null;
    while (this.paths.get(pathId) === p && this.now() < deadline) {
      const got = await this.exchange(p, BIND_RETRANSMIT_MS, deadline);
      if (!got) break;
      last = got;
      if (!opts.waitPeer || got.peerBound) return got;
    }
    if (!last) {
      this.counters.inc('bind.timeout');
      this.c.logger.warn('relay bind unanswered', { relay: formatEndpoint(relay), path: pathId.toString(16) });
    }
    return last;
  }

  /** True when the TRS still answers a bind for `pathId` within `deadlineMs` (a few tries). */
  async check(pathId: bigint, deadlineMs = 900): Promise<boolean> {
    const p = this.paths.get(pathId);
    if (!p) return false;
    if (await this.exchange(p, 300, this.now() + deadlineMs)) return true;
    this.counters.inc('check.failed');
    return false;
  }

  /**
   * `node netcheck`: one bind exchange with each TRS this node has a path through, timed (ms, 0.1 resolution; null:
   * no ack within 1.5 s). A bind from our own socket refreshes the binding and moves nothing.
   */
  async probeRelays(): Promise<{ relay: string; rttMs: number | null }[]> {
    const one = new Map<string, Bound>();
    for (const p of this.paths.values()) if (!one.has(formatEndpoint(p.relay))) one.set(formatEndpoint(p.relay), p);
    return Promise.all(
      [...one].map(async ([relay, p]) => {
        const t0 = performance.now();
        const got = await this.exchange(p, 300, this.now() + 1500);
        return { relay, rttMs: got ? Math.round((performance.now() - t0) * 10) / 10 : null };
      }),
    );
  }

  /** Refreshes every binding now (the periodic refresh, and after our registration saw a new address). */
  rebindAll(): void {
    for (const p of this.paths.values()) {
      this.counters.inc('rebind');
      void this.bindQuietly(p);
    }
  }

  forget(pathId: bigint): void {
    this.paths.delete(pathId);
  }

  /** RelayBindAck datagrams (0x27); false for anything else. Unauthenticated or stale ones are dropped and counted. */
  onDatagram(msg: Buffer, from: Endpoint): boolean {
    if (msg.length < 2 || msg[HEADER_OFFSETS.type] !== MessageType.RelayBindAck) return false;
    if (msg.length < HEADER_LEN) {
      this.counters.inc('ack.malformed');
      return true;
    }
    const p = this.paths.get(msg.readBigUInt64BE(HEADER_OFFSETS.id));
    if (!p) {
      this.counters.inc('ack.unknown-path');
      return true;
    }
    let ack;
    try {
      ack = openRelayBindAck(msg, p.keys);
    } catch {
      this.counters.inc('ack.refused');
      return true;
    }
    if (ack.pathId !== p.pathId || !relayBindFresh(ack.timestamp, this.now())) {
      this.counters.inc('ack.stale');
      return true;
    }
    const resolve = p.waiting.get(ack.txid);
    if (!resolve) {
      this.counters.inc('ack.late');
      return true;
    }
    p.waiting.delete(ack.txid);
    p.lastAck = this.now();
    this.counters.inc('ack.ok');
    this.c.logger.debug('relay bound', { relay: formatEndpoint(from), udpAddr: formatEndpoint(ack.observed), peerBound: ack.peerBound });
    resolve({ observed: ack.observed, peerBound: ack.peerBound });
    return true;
  }

  private async bindQuietly(p: Bound): Promise<void> {
    if (await this.exchange(p, 500, this.now() + 1500)) return;
    if (this.now() - p.lastAck > FORGET_UNACKED_MS && this.paths.get(p.pathId) === p) {
      this.counters.inc('forgotten');
      this.paths.delete(p.pathId);
    }
  }

  /**
   * RelayBinds every `everyMs` (fresh txid and seq each) until the TRS acks any of them, or `deadline`: on a slow path
   * (a satellite hop: 600 ms RTT) the ack of the first bind arrives after the second or third went out, and still
   * counts. Resolves with that ack, or null.
   */
  private exchange(p: Bound, everyMs: number, deadline: number): Promise<BindResult | null> {
    return new Promise((resolve) => {
      const mine: number[] = [];
      let timer: NodeJS.Timeout | undefined;
      let done = false;
      const finish = (r: BindResult | null): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        for (const t of mine) p.waiting.delete(t);
        resolve(r);
      };
      const send = (): void => {
        if (this.paths.get(p.pathId) !== p || this.now() >= deadline) return finish(null);
        this.txid = (this.txid % 0x7fffffff) + 1;
        mine.push(this.txid);
        p.waiting.set(this.txid, finish);
        this.c.send(sealRelayBind(p.pathId, p.keys, this.c.nodeId(), p.seq.next(), this.now(), this.txid), p.relay);
        this.counters.inc(mine.length > 1 ? 'bind.retransmit' : 'bind.sent');
        timer = setTimeout(send, Math.max(1, Math.min(everyMs, deadline - this.now())));
      };
      send();
    });
  }
}
