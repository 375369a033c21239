// Main-thread side of the data plane: brings up the device and the node's UDP socket (native), starts the
// data-plane worker (worker.ts: one thread for both directions), and is the node's datagram port for signaling
// and handshakes.
// Sessions and endpoints reach the workers as control messages; traffic counters come back through shared memory.
//
// The device is where the node's own IP packets come from and opened packets go to:
//   - 'tun': a TUN interface with the virtual addresses (the node daemon);
//   - 'pair': an AF_UNIX datagram pair (one write = one packet, like a TUN), for a general node the adapter serves:
//     the engine has one end, the adapter the other (`host`: PairHost, pair-host.ts), which writes the LAN device's
//     packets in and hands what it reads back to the LAN. No interface, no root needed. With offloads on (the
//     default) every datagram starts with a virtio_net_hdr, as on a TUN with IFF_VNET_HDR and TSO: the engine reads
//     TCP super-frames and UDP GSO super-datagrams (up to 64 KiB, the adapter's LAN fast path writes GRO/TSO frames
//     and UDP_SEGMENT sends in whole) and writes merged TCP ones (vnet_coalesce; never UDP ones: no USO on a pair).
//     With offloads off the pair carries plain packets.

import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { SessionKeys } from '../../crypto/handshake.js';
import { loadNativeAddon, nativeLoadError, type NativeAddon } from '../../native/addon.js';
import { openLinuxTun, type LinuxTun } from '../../net/tun/linux.js';
import type { Endpoint } from '../../protocol/endpoint.js';
import { formatIp, parseIp } from '../../protocol/ip.js';
import { CyphonicError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import { PairHost } from './pair-host.js';
import { createStats, StatsView } from './stats.js';
import { BLOCK_RULES, createFilterStats, filterCounters, rulesFromAllowIn } from './filter.js';
import { type FromWorker, type ToWorker, type WirePeer, type WorkerInit } from './worker.js';

/** Tunable: TUN MTU. 1500 − IPv6 (40) − UDP (8) − header (28) − tag (16) = 1408; rounded down. */
export const DEFAULT_MTU = 1400;
/**
 * Tunable: the TUN's transmit queue (packets the local stack queued for the engine to read). The kernel's 500 is
 * ~5 ms of 1400-byte datagrams at 1 Gbit/s: a reader descheduled that long on a busy host drops what UDP senders
 * send (TCP is held back by its own small-queue limit). 4096 absorbs such gaps (docs/PERFORMANCE.md, UDP).
 */
const TUN_TX_QUEUE = 4096;

/** The packet device the engine serves. */
export type DataPlaneDevice =
  | {
      kind: 'tun';
      /** @default 'cyp0' */
      name?: string | undefined;
      /** @default DEFAULT_MTU */
      mtu?: number;
      vip4: string;
      vip6: string;
      pool4: string;
      pool6: string;
    }
  | {
      kind: 'pair';
      /** Largest packet either way. @default DEFAULT_MTU */
      mtu?: number;
    };

export interface DataPlaneInit {
  device: DataPlaneDevice;
  /** UDP port for signaling, handshakes and capsules (0: any; dual-stack, IPv4 only where IPv6 is off). */
  port: number;
  /**
   * Use the kernel's offloads where it accepts them: TUN with virtio_net_hdr and TSO, UDP GSO sends, UDP GRO
   * receives (see worker.ts). false = one packet per read/write/datagram (the portable path).
   * @default true
   */
  offload?: boolean;
}

/** Which offloads the running data plane uses. */
export interface OffloadState {
  /** TUN opened with virtio_net_hdr and TCP segmentation offload accepted. */
  tso: boolean;
  /** The TUN also took UDP segmentation offload (USO4/USO6, Linux 6.2+): UDP super-frames in, merged datagrams out. */
  uso: boolean;
  /** UDP GSO sends asked for. */
  gso: boolean;
  /** UDP GRO accepted on the socket. */
  gro: boolean;
}

/** What the engine needs from its device (a TUN, or the engine's end of a packet pair). */
interface Device {
  readonly fd: number;
  readonly mtu: number;
  /** Packets carry virtio_net_hdr (TUN with offloads only). */
  readonly vnetHdr: boolean;
  /** TSO accepted (TUN only). */
  readonly offload: boolean;
  /** USO accepted too (TUN only). */
  readonly uso: boolean;
  /** Interface name (null for a pair). */
  readonly name: string | null;
  close(): void;
}

/** What the daemon needs from whatever carries its datagrams (the data plane, or a plain socket without TUN). */
export interface DatagramPort {
  readonly localPort: number;
  send(datagram: Buffer, to: Endpoint): void;
  onDatagram: (datagram: Buffer, from: Endpoint) => void;
  close(): Promise<void>;
}

export interface PeerRoute {
  slot: number;
  vip4: string | null;
  vip6: string | null;
  endpoint: Endpoint;
}

/** Raw destination for the native send: on a dual-stack socket IPv4 goes as ::ffff:a.b.c.d (16 bytes). */
function wireEndpoint(e: Endpoint, dualStack: boolean): WirePeer['endpoint'] {
  const raw = parseIp(e.address);
  if (!raw) throw new CyphonicError('ERR_ADDRESS', `bad endpoint address ${e.address}`);
  if (raw.length === 16 || !dualStack) return { addr: raw, port: e.port };
  const addr = Buffer.alloc(16);
  addr[10] = 0xff;
  addr[11] = 0xff;
  raw.copy(addr, 12);
  return { addr, port: e.port };
}

export class DataPlane implements DatagramPort {
  onDatagram: (datagram: Buffer, from: Endpoint) => void = () => {};
  onMiss: (dst: string) => void = () => {};
  readonly stats: StatsView;
  readonly localPort: number;
  private readonly worker: Worker;
  private readonly wakeFd: number;
  private readonly installing = new Map<bigint, () => void>();
  private readonly filterSab = createFilterStats();
  private closed = false;

  private constructor(
    private readonly native: NativeAddon,
    private readonly device: Device,
    /** The adapter's end of a 'pair' device (null for a TUN). */
    readonly host: PairHost | null,
    private readonly udpFd: number,
    private readonly logger: Logger,
    sab: SharedArrayBuffer,
    private readonly dualStack: boolean,
    readonly offload: OffloadState,
  ) {
    this.stats = new StatsView(sab);
    this.localPort = native.udpLocalPort(udpFd);
    const file = fileURLToPath(new URL('./worker.js', import.meta.url));
    this.wakeFd = native.eventfdCreate();
    const init: WorkerInit = {
      tunFd: device.fd,
      udpFd,
      mtu: device.mtu,
      stats: sab,
      wakeFd: this.wakeFd,
      vnet: device.vnetHdr,
      gso: offload.gso,
      gro: offload.gro,
      uso: offload.uso,
      filterStats: this.filterSab,
    };
    this.worker = new Worker(file, { workerData: init, name: 'cyphonic-dataplane' });
    this.worker.on('message', (m: FromWorker) => this.fromWorker(m));
    this.worker.on('error', (err) => this.logger.error('data-plane worker failed', { err: err.message }));
  }

  static async open(init: DataPlaneInit, logger: Logger): Promise<DataPlane> {
    const native = loadNativeAddon();
    if (!native) throw new CyphonicError('ERR_NATIVE', `the data plane needs the native addon: ${nativeLoadError()}`);
    const offload = init.offload !== false;
    const d = init.device;
    let device: Device;
    let host: PairHost | null = null;
    if (d.kind === 'tun') {
      const tun: LinuxTun = await openLinuxTun({
        name: d.name ?? 'cyp0',
        mtu: d.mtu ?? DEFAULT_MTU,
        addresses: { v4: `${d.vip4}/${d.pool4.split('/')[1]}`, v6: `${d.vip6}/${d.pool6.split('/')[1]}` },
        routes: [],
        vnetHdr: offload,
        txQueueLen: TUN_TX_QUEUE,
      });
      device = { fd: tun.fd, mtu: tun.mtu, vnetHdr: tun.vnetHdr, offload: tun.offload, uso: tun.uso, name: tun.name, close: () => tun.close() };
    } else {
      const [engineEnd, hostEnd] = native.packetPair();
      const mtu = d.mtu ?? DEFAULT_MTU;
      device = { fd: engineEnd, mtu, vnetHdr: offload, offload, uso: false, name: null, close: () => native.fdClose(engineEnd) };
      host = new PairHost(native, hostEnd, mtu, offload);
    }
    let fd: number;
    let dualStack = true;
    try {
      fd = native.udpOpen(init.port, true);
    } catch {
      dualStack = false;
      try {
        fd = native.udpOpen(init.port, false); // IPv6 disabled on this host
      } catch (err) {
        device.close();
        await host?.close();
        throw err;
      }
    }
    const state: OffloadState = { tso: device.offload, uso: device.uso, gso: offload, gro: offload && native.udpSetGro(fd) };
    return new DataPlane(native, device, host, fd, logger, createStats(), dualStack, state);
  }

  /** The TUN interface's name (null for a packet pair). */
  get tunName(): string | null {
    return this.device.name;
  }

  /** Never throws: a bad endpoint (from a peer's message) or a refused send is counted (`sendErrors`). */
  send(datagram: Buffer, to: Endpoint): void {
    if (this.closed) return;
    try {
      const e = wireEndpoint(to, this.dualStack);
      if (this.native.udpSend(this.udpFd, datagram, 0, datagram.length, e.addr, e.port) < 0) this.sendErrors++;
    } catch {
      this.sendErrors++;
    }
  }

  /** Signaling and handshake sends the kernel refused (or whose endpoint was unusable). */
  sendErrors = 0;

  /**
   * Installs (or replaces after a rekey) the session used to reach a peer: the worker puts it in its receive path,
   * then in its send path, and acknowledges. So nothing we send under new keys can draw an answer we could not
   * open, and a responder that awaits this can answer the handshake knowing the first capsule will find its
   * session. `reply` (the responder's TunnelResponse) is sent by the worker right after it installed.
   */
  async install(route: PeerRoute, keys: SessionKeys, receiveOnly = false, reply?: { datagram: Buffer; to: Endpoint }): Promise<void> {
    const peer: WirePeer = { slot: route.slot, vip4: route.vip4, vip6: route.vip6, endpoint: wireEndpoint(route.endpoint, this.dualStack) };
    const msg: ToWorker = { op: 'install', peer, keys, receiveOnly };
    if (reply) msg.reply = { data: reply.datagram, to: wireEndpoint(reply.to, this.dualStack) };
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => finish(true), 500); // a stuck worker must not stall signaling
      const finish = (late = false): void => {
        if (late && reply) this.send(reply.datagram, reply.to); // (a late worker may send it too: a duplicate is refused)
        clearTimeout(t);
        this.installing.delete(keys.pathId);
        resolve();
      };
      this.installing.set(keys.pathId, finish);
      this.post(msg);
    });
  }

  /**
   * Sends on the session installed last for `slot` at once. A responder's new session waits for the peer to use
   * it when it rekeys one path; when a new path replaces another (relay failover, punch after relay) the old
   * path may be dead, so the caller switches right away.
   */
  promote(slot: number): void {
    this.post({ op: 'promote', slot });
  }

  /** Mobility: the peer in `slot` is reached at `endpoint` from now on (same session; only the send worker cares). */
  setEndpoint(slot: number, endpoint: Endpoint): void {
    this.post({ op: 'endpoint', slot, endpoint: wireEndpoint(endpoint, this.dualStack) });
  }

  /** The peer in `slot` is forgotten: its sessions, routes and counters go, and the slot may serve another peer. */
  remove(slot: number): void {
    this.post({ op: 'remove', slot });
  }

  /** We moved: every peer's path MTU is learned again (probes from the largest size, the kernel's MTU re-read). */
  relearnPathMtu(): void {
    this.post({ op: 'relearn' });
  }

  /**
   * The policy for the peer in `slot`: the ports it may open new flows to us on (a Route Direction's `allowIn`;
   * null = no policy information, everything passes). Replies to flows we open always pass. Throws PolicyError on
   * text that is not a port list.
   */
  setFilter(slot: number, allowIn: string | null): void {
    this.post({ op: 'filter', slot, rules: rulesFromAllowIn(allowIn) });
  }

  /** The peer in `slot` was revoked: nothing from it is delivered and nothing is sent to it any more. */
  blockPeer(slot: number): void {
    this.post({ op: 'filter', slot, rules: BLOCK_RULES });
  }

  /** What the policy filter passed and dropped, by reason (filter.ts FILTER_STATS). */
  filterStats(): Record<string, number> {
    return filterCounters(this.filterSab);
  }

  peerStats(slot: number): { rxBytes: number; txBytes: number; pmtu: number } {
    const s = this.stats.peer(slot);
    return { rxBytes: s.rxBytes, txBytes: s.txBytes, pmtu: s.pmtu };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const stopped = new Promise<void>((r) => this.worker.once('exit', () => r()));
    this.post({ op: 'stop' });
    await Promise.race([stopped, new Promise((r) => setTimeout(r, 2000))]);
    await this.worker.terminate();
    this.native.fdClose(this.udpFd);
    this.native.fdClose(this.wakeFd);
    this.device.close();
    await this.host?.close();
  }

  private post(msg: ToWorker): void {
    this.worker.postMessage(msg);
    this.native.eventfdSignal(this.wakeFd);
  }

  private fromWorker(m: FromWorker): void {
    if (m.op === 'datagram') this.onDatagram(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength), { address: formatIp(m.addr), port: m.port });
    else if (m.op === 'miss') this.onMiss(m.dst);
    else if (m.op === 'installed') this.installing.get(m.pathId)?.();
    else if (m.op === 'error') this.logger.error('data-plane worker error', { err: m.message });
  }
}
