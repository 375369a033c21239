// Node side of the NMS channel: sealed requests over the node's UDP socket, retransmitted with backoff,
// replies authenticated with the Common Key's downlink key and matched by transaction id.

import { randomInt } from 'node:crypto';
import { ChannelKeys, openFrame, sealFrame } from '../channel/sealed.js';
import { ReplayGuard, SeqCounter } from '../channel/sequence.js';
import { MessageType } from '../protocol/constants.js';
import type { Endpoint } from '../protocol/endpoint.js';
import { splitFrame } from '../protocol/header.js';
import { decodeBody, decodePolicyEntry, encodeBody, type BodyMap, type DirectoryPage, type KeepaliveAck, type PolicyEntry, type RegistrationResponse, type RouteDirection } from '../protocol/messages.js';
import { Counters } from '../util/counters.js';
import { CyphonicError, describeError, requestErrorFromNack } from '../util/errors.js';
import type { Logger } from '../util/log.js';

/** Tunable: waits between retransmissions of one request (ms); the request fails after the last. */
export const RETRANSMIT_MS = [500, 1000, 2000, 4000] as const;

/**
 * Tunable: the schedule toward one NMS when the login listed others the node can move to (failover). Three
 * transmissions, each wait longer than a 600 ms WAN round trip, so a lost keepalive or a lost reply is retransmitted
 * and answered instead of being taken for a dead NMS (a late reply to any transmission still counts); a silent NMS is
 * given up after 3 s instead of 7.5 s, and the node registers at the next one at once.
 */
export const FAILOVER_RETRANSMIT_MS = [800, 1000, 1200] as const;

/**
 * The schedule for registrations and keepalives toward one NMS: patient (`patient`, RETRANSMIT_MS) when it is the
 * only NMS the node can use, since giving up on it gains nothing and a lossy path would make the node flap; quick
 * (FAILOVER_RETRANSMIT_MS) when `usableNms` > 1 and another instance can take the node.
 */
export function nmsSchedule(usableNms: number, patient: readonly number[] = RETRANSMIT_MS): readonly number[] {
  return usableNms > 1 ? FAILOVER_RETRANSMIT_MS : patient;
}

/** What the client needs from the node's UDP socket (narrow, so tests pass a fake). */
export interface DatagramSender {
  send(msg: Buffer, to: Endpoint): void;
}

export interface NmsClientInit {
  nodeId: number;
  commonKey: Buffer;
  nms: Endpoint;
  /** @default RETRANSMIT_MS */
  retransmitMs?: readonly number[];
}

interface Pending {
  expect: MessageType;
  resolve: (body: Buffer) => void;
  reject: (err: Error) => void;
}

export class NmsClient {
  readonly counters = new Counters();
  private keys: ChannelKeys;
  private readonly seq = new SeqCounter();
  private guard = new ReplayGuard();
  private readonly pending = new Map<number, Pending>();
  private txid = randomInt(1, 0x7fffffff);
  private nodeId: number;
  nms: Endpoint;

  constructor(
    init: NmsClientInit,
    private readonly socket: DatagramSender,
  ) {
    this.nodeId = init.nodeId;
    this.keys = new ChannelKeys(init.commonKey);
    this.nms = init.nms;
    this.retransmitMs = init.retransmitMs ?? RETRANSMIT_MS;
  }

  private readonly retransmitMs: readonly number[];

  /** New Common Key after a login. */
  rekey(nodeId: number, commonKey: Buffer): void {
    this.nodeId = nodeId;
    this.keys = new ChannelKeys(commonKey);
    this.guard = new ReplayGuard();
  }

  /**
   * `signal` abandons the registration (the node moved: a new one with the new addresses replaces it);
   * `retransmitMs` overrides the client's schedule (nmsSchedule).
   */
  async register(endpoints: Endpoint[], reRegistration: boolean, signal?: AbortSignal, retransmitMs?: readonly number[]): Promise<RegistrationResponse> {
    const body = await this.request(MessageType.RegistrationRequest, { endpoints, reRegistration }, MessageType.RegistrationResponse, signal, retransmitMs);
    return decodeBody(MessageType.RegistrationResponse, body);
  }

  /** Page `page` of our directory (the peers we may reach). */
  async directoryPage(page: number): Promise<DirectoryPage> {
    const body = await this.request(MessageType.DirectoryRequest, { page }, MessageType.DirectoryPage);
    return decodeBody(MessageType.DirectoryPage, body);
  }

  async keepalive(signal?: AbortSignal, retransmitMs?: readonly number[], peers?: Buffer[]): Promise<KeepaliveAck> {
    const body = await this.request(MessageType.Keepalive, peers?.length ? { peers } : {}, MessageType.KeepaliveAck, signal, retransmitMs);
    return decodeBody(MessageType.KeepaliveAck, body);
  }

  /**
   * The NAT mapping probe: one Keepalive to the NMS's probe port (same address as the NMS), sent after registering,
   * so the NMS can compare the public port it sees there with the registration's. Resolves with what it saw.
   */
  async probe(port: number): Promise<KeepaliveAck> {
    const body = await this.request(MessageType.Keepalive, {}, MessageType.KeepaliveAck, undefined, [300, 600, 1200], { address: this.nms.address, port });
    return decodeBody(MessageType.KeepaliveAck, body);
  }

  /** Sends a sealed request and waits for its reply, resealing each retransmission with a fresh sequence number. */
  async request<T extends keyof BodyMap>(type: T, body: BodyMap[T], expect: MessageType, signal?: AbortSignal, retransmitMs?: readonly number[], to?: Endpoint): Promise<Buffer> {
    const plain = encodeBody(type, body);
    const txid = (this.txid = (this.txid % 0x7fffffff) + 1);
    const answer = new Promise<Buffer>((resolve, reject) => this.pending.set(txid, { expect, resolve, reject }));
    answer.catch(() => {}); // handled by the race below
    let onAbort: (() => void) | null = null;
    const aborted = signal ? new Promise<null>((r) => (signal.aborted ? r(null) : signal.addEventListener('abort', (onAbort = () => r(null)), { once: true }))) : null;
    try {
      for (const wait of retransmitMs ?? this.retransmitMs) {
        if (signal?.aborted) throw new CyphonicError('ERR_ABORTED', 'stopped');
        const frame = sealFrame(this.keys.up, { type: type as MessageType, txid, seq: this.seq.next(), id: BigInt(this.nodeId) }, plain);
        this.socket.send(frame, to ?? this.nms);
        this.counters.inc('tx');
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<null>((r) => (timer = setTimeout(() => r(null), wait)));
        const got = await Promise.race(aborted ? [answer, timeout, aborted] : [answer, timeout]);
        clearTimeout(timer);
        if (got) return got;
        if (signal?.aborted) throw new CyphonicError('ERR_ABORTED', 'request abandoned');
        this.counters.inc('retransmit');
      }
      throw new CyphonicError('ERR_TIMEOUT', `no answer from the NMS at ${this.nms.address}:${this.nms.port}`);
    } finally {
      this.pending.delete(txid);
      if (onAbort) signal?.removeEventListener('abort', onAbort); // the signal outlives this request
    }
  }

  /** Messages the NMS sends unasked (Route Directions, policy updates); authenticated before the handler sees them. */
  onPush: ((type: MessageType, body: Buffer, txid: number) => void) | null = null;

  /** Acknowledges a push (PolicyUpdate) with a sealed Ack carrying its txid; the NMS retransmits until it gets one. */
  ack(txid: number): void {
    const frame = sealFrame(this.keys.up, { type: MessageType.Ack, txid, seq: this.seq.next(), id: BigInt(this.nodeId) }, encodeBody(MessageType.Ack, {}));
    this.socket.send(frame, this.nms);
    this.counters.inc('tx');
  }

  /** Offers a datagram from the socket; returns true if it was a (valid or not) NMS message for us. */
  handleDatagram(msg: Buffer): boolean {
    let f;
    try {
      f = splitFrame(msg);
    } catch {
      return false;
    }
    if (f.header.id !== BigInt(this.nodeId)) return false;
    const p = this.pending.get(f.header.txid);
    const push = f.header.type === MessageType.RouteDirectionResponder || f.header.type === MessageType.PolicyUpdate || f.header.type === MessageType.DirectoryNotice;
    if (!p && !push) {
      this.counters.inc('refused.unsolicited');
      return true;
    }
    if (this.guard.check(f.header.seq)) {
      this.counters.inc('refused.replay');
      return true;
    }
    let plain: Buffer;
    try {
      plain = openFrame(this.keys.down, f.header, f.headerBytes, f.body);
    } catch {
      this.counters.inc('refused.auth');
      return true;
    }
    this.guard.accept(f.header.seq);
    if (push) {
      this.counters.inc('push');
      this.onPush?.(f.header.type, plain, f.header.txid);
    } else if (f.header.type === MessageType.Nack) {
      let reason = 'refused';
      try {
        reason = decodeBody(MessageType.Nack, plain).reason;
      } catch {
        /* generic */
      }
      p!.reject(requestErrorFromNack(f.header.status, reason));
    } else if (f.header.type === p!.expect) {
      p!.resolve(plain);
    } else {
      this.counters.inc('refused.type');
    }
    return true;
  }

  /** Asks the NMS for a route to a peer (by FQDN or virtual IP); resolves with our half of the Route Direction. */
  async direction(target: { targetFqdn?: string; targetVip?: string; relayOnly?: boolean; avoidRelay?: Endpoint; noRelay?: boolean }, retransmitMs?: readonly number[]): Promise<RouteDirection> {
    const body = await this.request(MessageType.DirectionRequest, target, MessageType.RouteDirectionInitiator, undefined, retransmitMs);
    return decodeBody(MessageType.RouteDirectionInitiator, body);
  }

  /** Tells the NMS we installed (or refused) a path it pushed. */
  async confirm(pathId: bigint, accepted: boolean): Promise<void> {
    await this.request(MessageType.RouteConfirmation, { pathId, accepted }, MessageType.Ack);
  }

  /** Fails every outstanding request (daemon stopping). */
  close(): void {
    for (const p of this.pending.values()) p.reject(new CyphonicError('ERR_ABORTED', 'stopped'));
    this.pending.clear();
  }
}

/**
 * Hands the Route Directions the NMS pushes (we are the responder) to `onRoute`; a push that does not decode is
 * logged and dropped. Shared by the node daemon and the adapter's general-node agents.
 */
export function deliverRouteDirections(
  client: NmsClient,
  onRoute: (rd: RouteDirection) => void,
  logger: Logger,
  onPolicy?: (entries: PolicyEntry[]) => void,
  onGeneralNodes?: () => void,
  onDirectory?: (rev: string) => void,
): void {
  client.onPush = (type, body, txid) => {
    if (type === MessageType.DirectoryNotice) {
      // Not acknowledged: a lost notice is caught up by the next KeepaliveAck's revision.
      try {
        onDirectory?.(decodeBody(MessageType.DirectoryNotice, body).rev);
      } catch (err) {
        logger.warn('bad DirectoryNotice from the NMS', { err: describeError(err) });
      }
      return;
    }
    if (type === MessageType.PolicyUpdate) {
      // Applied (idempotent: a retransmission carries the same entries), then acknowledged.
      try {
        const update = decodeBody(MessageType.PolicyUpdate, body);
        const entries = update.entries.map((e) => decodePolicyEntry(e));
        onPolicy?.(entries);
        client.ack(txid);
        if (update.generalNodes) onGeneralNodes?.(); // an adapter: its general-node list changed
      } catch (err) {
        logger.warn('bad PolicyUpdate from the NMS', { err: describeError(err) });
      }
      return;
    }
    if (type !== MessageType.RouteDirectionResponder) return;
    try {
      onRoute(decodeBody(MessageType.RouteDirectionResponder, body));
    } catch (err) {
      logger.warn('bad Route Direction from the NMS', { err: describeError(err) });
    }
  };
}
