// A fake end of a relayed path for TRS tests: a UDP socket that binds with RelayBind, sends raw capsules and queues what arrives.
// Every wait is bounded; `silentFor` asserts that nothing at all arrived (the TRS must never answer junk).

import dgram from 'node:dgram';
import { RelayBindKeys, openRelayBindAck, sealRelayBind, type OpenedRelayBindAck } from '../../src/channel/relay-bind.js';
import { SeqCounter } from '../../src/channel/sequence.js';
import { MessageType } from '../../src/protocol/constants.js';
import type { Endpoint } from '../../src/protocol/endpoint.js';
import { encodeFrame } from '../../src/protocol/frame.js';

export class RelayEnd {
  readonly received: Buffer[] = [];
  readonly seq = new SeqCounter();
  keys: RelayBindKeys;
  private waiters: (() => void)[] = [];
  private txid = 1;
  private capsuleSeq = 0n;

  private constructor(
    readonly sock: dgram.Socket,
    readonly nodeId: number,
    readonly pathId: bigint,
    readonly tempKey: Buffer,
    public relay: Endpoint,
  ) {
    this.keys = new RelayBindKeys(tempKey, nodeId);
    sock.on('message', (m) => {
      this.received.push(m);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** A socket on `local` (127.0.0.1 or ::1), ephemeral port. */
  static async open(local: string, o: { nodeId: number; pathId: bigint; tempKey: Buffer; relay: Endpoint }): Promise<RelayEnd> {
    const sock = dgram.createSocket(local.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((r) => sock.bind(0, local, () => r()));
    return new RelayEnd(sock, o.nodeId, o.pathId, o.tempKey, o.relay);
  }

  get local(): Endpoint {
    const a = this.sock.address();
    return { address: a.address, port: a.port };
  }

  send(datagram: Buffer, to: Endpoint = this.relay): void {
    this.sock.send(datagram, to.port, to.address);
  }

  /** A RelayBind as a node would send it (fresh seq each call); overrides make bad ones. */
  bindFrame(o: { now?: number; nodeId?: number; tempKey?: Buffer; txid?: number } = {}): Buffer {
    const keys = o.nodeId === undefined && o.tempKey === undefined ? this.keys : new RelayBindKeys(o.tempKey ?? this.tempKey, o.nodeId ?? this.nodeId);
    return sealRelayBind(this.pathId, keys, keys.nodeId, this.seq.next(), o.now ?? Date.now(), o.txid ?? this.txid++);
  }

  /** Sends a bind and waits for the TRS's ack (opened and checked with this end's keys). */
  async bind(timeoutMs = 2000): Promise<OpenedRelayBindAck> {
    const txid = this.txid++;
    this.send(this.bindFrame({ txid }));
    const ack = await this.next((m) => m[1] === MessageType.RelayBindAck, timeoutMs);
    const opened = openRelayBindAck(ack, this.keys);
    if (opened.txid !== txid) throw new Error(`ack for txid ${opened.txid}, expected ${txid}`);
    return opened;
  }

  /** A capsule-shaped datagram on our path (the TRS never opens it, so the body is whatever we like). */
  capsule(body: Buffer, type: MessageType = MessageType.Capsule): Buffer {
    return encodeFrame({ type, status: 0, txid: 0, seq: this.capsuleSeq++, id: this.pathId }, body);
  }

  /** Removes and returns the first queued datagram matching `pred`, waiting up to `timeoutMs`. */
  async next(pred: (m: Buffer) => boolean = () => true, timeoutMs = 2000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.received.findIndex(pred);
      if (i >= 0) return this.received.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`end ${this.nodeId}: nothing arrived within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Waits `ms` and fails if anything arrived meanwhile. */
  async silentFor(ms = 150): Promise<void> {
    const before = this.received.length;
    await new Promise((r) => setTimeout(r, ms));
    if (this.received.length !== before) throw new Error(`end ${this.nodeId} received ${this.received.length - before} unexpected datagram(s)`);
  }

  close(): Promise<void> {
    return new Promise((r) => this.sock.close(() => r()));
  }
}
