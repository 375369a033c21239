// Node side of relay probes (`node netcheck`): times every TRS the cloud lists, whether or not this node has a relayed
// path through it. The NMS hands out one probe ticket per live TRS (RelayTicketRequest); each endpoint of each TRS gets
// a RelayProbe (every 300 ms until an ack or 1.5 s), sealed under the ticket's key (src/channel/relay-probe.ts).
// Used by the running node (its own data socket: acks come back through lifecycle's dispatch) and by the standalone
// probe (a fresh socket). Only acks that open under a ticket we hold and answer a txid we sent are counted as answers.

import { randomInt } from 'node:crypto';
import { isIP } from 'node:net';
import { openRelayProbeAck, RelayProbeKeys, sealRelayProbe } from '../channel/relay-probe.js';
import { SeqCounter } from '../channel/sequence.js';
import { HEADER_LEN, MessageType } from '../protocol/constants.js';
import { formatEndpoint, type Endpoint } from '../protocol/endpoint.js';
import { HEADER_OFFSETS } from '../protocol/header.js';
import { decodeBody, decodeRelayTicket } from '../protocol/messages.js';
import { unmapV4 } from '../util/addr.js';
import { Counters } from '../util/counters.js';
import type { NmsClient } from './signaling.js';

/** Tunable: wait between probe retransmissions (ms); the TRS answers up to 8 at once per source, 4 per second. */
export const PROBE_RETRANSMIT_MS = 300;
/** Tunable: a TRS endpoint that has not answered within this long is reported unreachable. */
export const PROBE_DEADLINE_MS = 1500;

/** One TRS endpoint as `node netcheck` reports it. */
export interface RelayProbeResult {
  /** The TRS endpoint ('192.0.2.50:4503'). */
  relay: string;
  /** The TRS's id, when the cloud listed it (null: known only from a relayed path). */
  relayId: string | null;
  /** Round trip of the probe (ms, 0.1 resolution), or null when it went unanswered. */
  rttMs: number | null;
  /** Our endpoint as that TRS saw it. */
  observed: string | null;
  error: string | null;
  /** 'ticket': a RelayProbe under a ticket from the NMS; 'path': a RelayBind on a relayed path we have. */
  via: 'ticket' | 'path';
}

interface Waiting {
  keys: RelayProbeKeys;
  sentAt: number;
  resolve: (r: { rttMs: number; observed: Endpoint }) => void;
}

export interface RelayProberComponents {
  nodeId: () => number;
  send: (datagram: Buffer, to: Endpoint) => void;
  /** Why this endpoint cannot be probed from here (e.g. no socket of its family), or null. */
  unusable?: (to: Endpoint) => string | null;
}

export class RelayProber {
  readonly counters = new Counters();
  private readonly waiting = new Map<number, Waiting>();
  private readonly seq = new SeqCounter();
  private txid = randomInt(1, 0x7fffffff);

  constructor(private readonly c: RelayProberComponents) {}

  /** Asks the NMS for tickets and probes every endpoint of every TRS it lists, all at once. */
  async probeCloud(client: NmsClient): Promise<RelayProbeResult[]> {
    const body = await client.request(MessageType.RelayTicketRequest, {}, MessageType.RelayTicketResponse, undefined, [500, 1000]);
    const tickets = decodeBody(MessageType.RelayTicketResponse, body).tickets.flatMap((b) => {
      try {
        return [decodeRelayTicket(b)];
      } catch {
        this.counters.inc('ticket.malformed'); // one bad record does not hide the others
        return [];
      }
    });
    return Promise.all(
      tickets.flatMap((t) => {
        const keys = new RelayProbeKeys(t.secret, t.ticketId);
        return t.relay.map((e) => this.probe(keys, t.relayId, e));
      }),
    );
  }

  /** RelayProbeAck datagrams; false for anything else. Acks that do not open or answer nothing we sent are counted. */
  onDatagram(msg: Buffer): boolean {
    if (msg.length < 2 || msg[HEADER_OFFSETS.type] !== MessageType.RelayProbeAck) return false;
    const w = msg.length >= HEADER_LEN ? this.waiting.get(msg.readUInt32BE(HEADER_OFFSETS.txid)) : undefined;
    if (!w) {
      this.counters.inc('ack.unsolicited');
      return true;
    }
    let ack;
    try {
      ack = openRelayProbeAck(msg, w.keys);
    } catch {
      this.counters.inc('ack.refused');
      return true;
    }
    this.counters.inc('ack.ok');
    w.resolve({ rttMs: Math.round((performance.now() - w.sentAt) * 10) / 10, observed: ack.observed });
    return true;
  }

  private probe(keys: RelayProbeKeys, relayId: string, to: Endpoint): Promise<RelayProbeResult> {
    const relay = formatEndpoint(to);
    const base = { relay, relayId, via: 'ticket' as const };
    const why = isIP(unmapV4(to.address)) === 0 ? 'not an IP address' : (this.c.unusable?.(to) ?? null);
    if (why) return Promise.resolve({ ...base, rttMs: null, observed: null, error: why });
    return new Promise((resolve) => {
      const mine: number[] = [];
      let timer: NodeJS.Timeout | undefined;
      let done = false;
      const started = performance.now();
      const finish = (r: { rttMs: number; observed: Endpoint } | null, error: string | null = null): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        for (const t of mine) this.waiting.delete(t);
        resolve({ ...base, rttMs: r?.rttMs ?? null, observed: r ? formatEndpoint(r.observed) : null, error: r ? null : (error ?? `no answer within ${PROBE_DEADLINE_MS} ms`) });
      };
      const send = (): void => {
        if (performance.now() - started >= PROBE_DEADLINE_MS) return finish(null);
        this.txid = (this.txid % 0x7fffffff) + 1;
        const txid = this.txid;
        mine.push(txid);
        this.waiting.set(txid, { keys, sentAt: performance.now(), resolve: (r) => finish(r) });
        try {
          this.c.send(sealRelayProbe(keys, { nodeId: this.c.nodeId(), seq: this.seq.next(), now: Date.now(), txid }), to);
        } catch (err) {
          return finish(null, err instanceof Error ? err.message : String(err));
        }
        this.counters.inc(mine.length > 1 ? 'probe.retransmit' : 'probe.sent');
        timer = setTimeout(send, Math.min(PROBE_RETRANSMIT_MS, Math.max(1, PROBE_DEADLINE_MS - (performance.now() - started))));
      };
      send();
    });
  }
}
