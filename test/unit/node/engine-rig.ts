// A native data-plane engine (native/dataplane.c) without a TUN device, for unit tests: one end of an AF_UNIX
// datagram pair stands in for the TUN (one write = one packet) and a loopback UDP socket plays the peer. Used by
// dataplane-engine.test.ts and session-conformance.test.ts. No root needed.

import assert from 'node:assert/strict';
import { MAX_PENDING_REQUESTS } from '../../../src/crypto/handshake.js';
import { loadNativeAddon, type NativeAddon, type NativeEngineHandle } from '../../../src/native/addon.js';
import { MessageType } from '../../../src/protocol/constants.js';
import { createStats, engineStatIndex, GLOBAL, StatsView } from '../../../src/node/dataplane/stats.js';

export const native = loadNativeAddon();
export const LOOPBACK = Buffer.from([127, 0, 0, 1]);

/** Session keys as dpInstall takes them. */
export interface EngineKeys {
  pathId: bigint;
  send: Buffer;
  recv: Buffer;
  initiator: boolean;
}

/** An engine wired to a fake TUN and a loopback peer socket, with helpers to drive and observe it. */
export class Rig {
  readonly n: NativeAddon;
  readonly engine: NativeEngineHandle;
  readonly stats: StatsView;
  readonly tunEngine: number;
  readonly tunTest: number;
  readonly udp: number;
  readonly peer: number;
  readonly wake: number;
  readonly events = Buffer.alloc(1 << 16);
  private readonly rbuf = Buffer.alloc(64 * 4096);
  private readonly roffs = new Uint32Array(64);
  private readonly rlens = new Uint32Array(64);
  private readonly metas = new Uint8Array(64 * 20);

  /** vnet: the fake TUN carries virtio_net_hdr (as a TUN with offloads); uso: merged UDP writes allowed. */
  constructor(toMain: number[] = [MessageType.TunnelRequest], opts: { vnet?: boolean; uso?: boolean } = {}) {
    this.n = native!;
    [this.tunEngine, this.tunTest] = this.n.packetPair();
    this.n.setNonblocking(this.tunEngine);
    this.udp = this.n.udpOpen(0, false);
    this.peer = this.n.udpOpen(0, false);
    this.wake = this.n.eventfdCreate();
    this.stats = new StatsView(createStats());
    const tm = new Uint8Array(256);
    for (const t of toMain) tm[t] = 1;
    this.engine = this.n.dpCreate({
      tunFd: this.tunEngine,
      udpFd: this.udp,
      wakeFd: this.wake,
      mtu: 1400,
      vnet: opts.vnet ?? false,
      gso: false,
      gro: false,
      uso: opts.uso ?? false,
      maxSlots: 1024,
      stats: this.stats.a,
      statIndex: engineStatIndex(),
      toMain: tm,
    });
  }

  get enginePort(): number {
    return this.n.udpLocalPort(this.udp);
  }
  get peerPort(): number {
    return this.n.udpLocalPort(this.peer);
  }
  global(k: keyof typeof GLOBAL): number {
    return this.stats.globals()[k];
  }

  install(
    slot: number,
    s: EngineKeys,
    opts: { receiveOnly?: boolean; vip4?: number[]; vip6?: Buffer; port?: number; sealForMs?: number; openForMs?: number; candidates?: number } = {},
  ): void {
    const id = Buffer.alloc(8);
    id.writeBigUInt64BE(s.pathId);
    const sealForMs = opts.sealForMs ?? 60_000;
    const limits = { sealForMs, openForMs: opts.openForMs ?? sealForMs + 5000, candidates: opts.candidates ?? MAX_PENDING_REQUESTS };
    this.n.dpInstall(this.engine, slot, id, s.send, s.recv, s.initiator, opts.receiveOnly ?? false, opts.vip4 ? Buffer.from(opts.vip4) : null, opts.vip6 ?? null, LOOPBACK, opts.port ?? this.peerPort, limits);
  }

  /** Calls dpTurn until it reports something (bounded; each call returns 20 ms after the last activity). */
  turn(): { bits: number; moved: boolean; events: number } {
    let r = 0;
    for (let i = 0; i < 20 && (r & 7) === 0; i++) r = this.n.dpTurn(this.engine, 20, this.events);
    return { bits: r & 7, moved: (r & 8) !== 0, events: Math.floor(r / 16) };
  }

  /** One turn without waiting (moves whatever is ready). */
  poll(): void {
    this.n.dpTurn(this.engine, 0, this.events);
  }

  /** A plain packet into the engine's TUN side. */
  toTun(pkt: Buffer): void {
    this.n.tunWrite(this.tunTest, pkt, 0, pkt.length);
  }
  /** What the engine wrote to its TUN (null after `ms` without a packet). */
  fromTun(ms = 200, room = 2048): Buffer | null {
    const buf = Buffer.alloc(room);
    const len = this.n.tunRead(this.tunTest, buf, ms);
    return len > 0 ? buf.subarray(0, len) : null;
  }
  /** A datagram from the peer socket to the engine. */
  toEngine(frame: Buffer): void {
    assert.equal(this.n.udpSend(this.peer, frame, 0, frame.length, LOOPBACK, this.enginePort), frame.length);
  }
  /** Datagrams the engine sent to the peer socket. */
  atPeer(ms = 200): Buffer[] {
    const k = this.n.udpRecvMany(this.peer, this.rbuf, 4096, this.roffs, this.rlens, this.metas, ms, undefined, false);
    const out: Buffer[] = [];
    for (let i = 0; i < k; i++) out.push(Buffer.from(this.rbuf.subarray(this.roffs[i]!, this.roffs[i]! + this.rlens[i]!)));
    return out;
  }

  close(): void {
    this.n.dpDestroy(this.engine);
    for (const fd of [this.tunEngine, this.tunTest, this.udp, this.peer, this.wake]) this.n.fdClose(fd);
  }
}
