// The one loader of the native addon (native/build/Release/cyphonic_native.node, built by node-gyp from native/):
// the N-API functions it exports, typed, and where it is looked for. The addon opens TUNs, packet sockets and UDP
// sockets, runs the data-plane engine and reuses OpenSSL AES-GCM contexts, so it sits at the bottom of the layers,
// beside util/: crypto, net and node import it from here.

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Opaque handle to a native AES-256-GCM key (a tagged N-API external). */
export type NativeAeadHandle = { readonly __brand: 'NativeAeadHandle' };

/** The functions exported by cyphonic_native.node (see native/cyphonic_native.c for the C contracts). */
export interface NativeAddon {
  /** TUNSETIFF; vnetHdr adds IFF_VNET_HDR and asks for TSO (offload: whether the kernel accepted it). */
  /** vnetHdr: IFF_VNET_HDR + TSO (and USO where the kernel has it; noUso: do not ask for it, as an older kernel). */
  tunOpen(name: string, opts: { multiQueue?: boolean; vnetHdr?: boolean; noUso?: boolean; txQueueLen?: number }): { fd: number; name: string; vnetHdr: boolean; offload: boolean; uso: boolean };
  tunRead(fd: number, buf: Uint8Array, timeoutMs: number, wakeFd?: number): number;
  tunReadBatch(fd: number, buf: Uint8Array, slotSize: number, lengths: Uint32Array, timeoutMs: number): number;
  tunWrite(fd: number, buf: Uint8Array, offset: number, length: number): number;
  /** An AF_PACKET raw socket bound to interface `ifname` (promiscuous): one Ethernet frame per tunRead/tunWrite. */
  packetOpen?(ifname: string): number;
  /** One frame from a packet socket (0 = timeout or oversized); status[0] = its tp_status (8: checksum left to offload). */
  packetRead?(fd: number, buf: Uint8Array, timeoutMs: number, status: Uint32Array): number;
  /** Kernel software timestamps on a packet socket (SO_TIMESTAMPNS), and its own outgoing frames seen again, stamped as they left. */
  packetStampOn?(fd: number): void;
  /** One frame (0 = timeout or oversized); info = [seconds (low 32 bits), nanoseconds, sll_pkttype (4: our own), 1 if stamped]. */
  packetReadStamped?(fd: number, buf: Uint8Array, timeoutMs: number, info: Uint32Array): number;
  /** mode: 0 (default) seals and opens, 1 only seals, 2 only opens (one OpenSSL context instead of two). */
  aeadCreate(key: Uint8Array, mode?: 0 | 1 | 2): NativeAeadHandle;
  aeadDestroy(handle: NativeAeadHandle): void;
  aeadSeal(h: NativeAeadHandle, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array, out: Uint8Array, off: number): number;
  aeadOpen(h: NativeAeadHandle, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array, out: Uint8Array, off: number): number;
  /**
   * aeadSeal/aeadOpen with a raw key on this thread's shared context, re-keyed for the call (no handle): the 32 bytes
   * at key[keyOffset..], or all of `key` (exactly 32 bytes) without keyOffset.
   */
  aeadSealKey?(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array, out: Uint8Array, off: number, keyOffset?: number): number;
  aeadOpenKey?(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array, out: Uint8Array, off: number, keyOffset?: number): number;
  /** Overwrites the key schedule left in this thread's shared context(s): 1 the sealing one, 2 the opening one, 3 both. */
  aeadSharedWipe?(which: 1 | 2 | 3): void;
  /** Binds a UDP socket on `port` (0 = any): dual-stack [::] when `ipv6`, else 0.0.0.0. Returns the fd. */
  udpOpen(port: number, ipv6: boolean): number;
  udpLocalPort(fd: number): number;
  /** Sends buf[offset..offset+length) to addr (4 or 16 bytes):port; returns bytes sent or -errno. */
  udpSend(fd: number, buf: Uint8Array, offset: number, length: number, addr: Uint8Array, port: number): number;
  fdClose(fd: number): void;
  /** A wake-up eventfd for a worker blocked in tunRead/udpRecvMany or in the engine's dpTurn (their optional last argument). */
  eventfdCreate(): number;
  eventfdSignal(fd: number): void;
  /** CPU time the calling thread has used so far, µs (CLOCK_THREAD_CPUTIME_ID; -1 if the clock failed). */
  threadCpuUs(): number;
  setNonblocking(fd: number): void;
  /** recvmmsg into slots of slotSize: datagram i at buf[offsets[i]], lengths[i] bytes (0 = truncated or empty); its
   *  source in metas[i*20..]: [0]=family 4|6, [1]=1 when truncated (longer than the slot), [2..3]=port (BE), [4..]
   *  address (IPv4-mapped sources reported as IPv4); with `scopes`, scopes[i] = the IPv6 scope id (interface index)
   *  of a link-local source, else 0. UDP GRO buffers are split into their datagrams; with `gro`, at most
   *  offsets.length/64 buffers per call. Waits only when nothing is queued. */
  udpRecvMany(
    fd: number,
    buf: Uint8Array,
    slotSize: number,
    offsets: Uint32Array,
    lengths: Uint32Array,
    metas: Uint8Array,
    timeoutMs: number,
    wakeFd: number | undefined,
    gro: boolean,
    scopes?: Uint32Array,
  ): number;
  /** sendmmsg of `count` (<= 256) datagrams (buf[offsets[i]], lengths[i]) to one destination; returns how many
   *  went. With gso, runs of equal-sized datagrams go as single UDP GSO sends (plain sendmmsg if the kernel refuses). */
  udpSendMany(fd: number, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number, addr: Uint8Array, port: number, gso: boolean): number;
  /** sendmmsg of `count` datagrams (buf[offsets[i]], lengths[i]), each to its own destination: addrs[16i..] (IPv6,
   *  IPv4-mapped on a dual-stack socket; with v6 false the first 4 bytes are IPv4), ports[i]. Returns how many were
   *  dealt with (sent, or refused for good: counted in stats[0]); less than count only when the socket buffer is full. */
  udpSendEach?(fd: number, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number, addrs: Uint8Array, ports: Uint32Array, v6: boolean, stats: Uint32Array): number;
  /** HKDF-SHA-256 (RFC 5869) of secret into two 32-byte keys: out[0..32) with infoA, out[32..64) with infoB. */
  hkdfSha256Pair?(secret: Uint8Array, salt: Uint8Array, infoA: Uint8Array, infoB: Uint8Array, out: Uint8Array): void;
  /** HKDF-SHA-256 (RFC 5869) of secret into all of out (1..8160 bytes); salt at most 64 bytes, info at most 255. */
  hkdfSha256?(secret: Uint8Array, salt: Uint8Array, info: Uint8Array, out: Uint8Array): void;
  /** Turns on UDP_GRO for the socket; false when the kernel refuses. */
  udpSetGro(fd: number): boolean;
  /** Splits one virtio_net_hdr packet from the TUN into plain packets (i at out[i*outSlot]); count, -1 malformed, -2 too many. */
  vnetSegment(buf: Uint8Array, offset: number, length: number, out: Uint8Array, outSlot: number, outLengths: Uint32Array): number;
  /** Writes packets to the TUN; with vnet, merges runs of one TCP flow into GSO writes (10 bytes headroom before each). */
  /** uso: also merge runs of equal-sized datagrams of one UDP flow into USO writes (the TUN took USO). */
  tunWriteMany(fd: number, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number, vnet: boolean, scratch: Uint8Array, uso?: boolean): number;
  /** The data-plane engine (native/dataplane.c): per-packet work in C, driven by the data-plane worker. */
  dpCreate(opts: DataPlaneEngineInit): NativeEngineHandle;
  /** A session for `slot` (pathId: 8 bytes BE); vip4/vip6 raw (or null) are routed to the slot. See dataplane.c. */
  dpInstall(
    h: NativeEngineHandle,
    slot: number,
    pathId: Uint8Array,
    sendKey: Uint8Array,
    recvKey: Uint8Array,
    initiator: boolean,
    receiveOnly: boolean,
    vip4: Uint8Array | null,
    vip6: Uint8Array | null,
    addr: Uint8Array,
    port: number,
    limits: { sealForMs: number; openForMs: number; candidates: number },
  ): void;
  dpPromote(h: NativeEngineHandle, slot: number): void;
  dpEndpoint(h: NativeEngineHandle, slot: number, addr: Uint8Array, port: number): void;
  /** Forgets the peer in `slot` (paths, sessions, routes, held packets, counters) so the slot can serve another. */
  dpRemove(h: NativeEngineHandle, slot: number): void;
  /** Seals and sends one packet on the slot's session; false when it has none (or the send failed). */
  dpSend(h: NativeEngineHandle, slot: number, packet: Uint8Array): boolean;
  /** Turns (wait, receive step, send step) until events, a wake-up, a quiet timeoutMs or 64 busy turns. Returns the
   *  bits the waits saw (1 TUN, 2 UDP, 4 wake) | 8 if packets moved | event count << 4. See native/dataplane.c. */
  dpTurn(h: NativeEngineHandle, timeoutMs: number, events: Uint8Array): number;
  dpDestroy(h: NativeEngineHandle): void;
  /** Path MTU (native/dataplane_pmtu.inc): sets the slot's probed PLPMTU (0 = none), re-reads the kernel's path MTU
   *  toward its peer and publishes the usable inner MTU; returns the kernel's path MTU (0 = unknown). */
  dpPmtu(h: NativeEngineHandle, slot: number, plpmtu: number): number;
  /** Sends a path MTU probe whose outer IP datagram is `size` bytes (docs/PROTOCOL.md); false when it could not. */
  dpProbe(h: NativeEngineHandle, slot: number, size: number, id: number): boolean;
  /** Path MTU helpers (native/pmtu.c), for tests: ICMP answers (null: not answerable), IPv4 fragments (null: DF or
   *  malformed), MSS clamping in place (true when lowered). */
  pmtuFragNeeded(packet: Uint8Array, mtu: number): Buffer | null;
  pmtuTooBig(packet: Uint8Array, mtu: number): Buffer | null;
  pmtuFragment4(packet: Uint8Array, mtu: number): Buffer[] | null;
  pmtuClampMss(packet: Uint8Array, mtu: number): boolean;
  /** Two connected AF_UNIX datagram sockets (a TUN stand-in for tests: one write = one read). */
  packetPair(): [number, number];
  /** The policy filter (native/filter.c): counters go to `stats` (FILTER_STATS in node/dataplane/filter.ts). */
  filterCreate(maxSlots: number, stats: Float64Array): NativeFilterHandle;
  /** Rules of one peer slot: 5-byte records (proto 0 any/1 icmp/6 tcp/17 udp, lo u16 BE, hi u16 BE); null = no filtering. */
  filterSet(h: NativeFilterHandle, slot: number, rules: Uint8Array | null): void;
  /** The slot's peer is gone: its rules and the flows it had open are forgotten. */
  filterForget(h: NativeFilterHandle, slot: number): void;
  /** One packet through the filter: outbound records its flow (returns true), inbound returns whether it passes. */
  filterPacket(h: NativeFilterHandle, slot: number, packet: Uint8Array, outbound: boolean, nowMs: number): boolean;
}

/** Opaque handle to a native policy filter. */
export type NativeFilterHandle = { readonly __brand: 'cyphonic-filter' };

/** Opaque handle to a native data-plane engine. */
export type NativeEngineHandle = { readonly __brand: 'cyphonic-dp-engine' };

/** dpCreate's options: the fds, offload switches, the shared counters and where each lives, and which frame types go up. */
export interface DataPlaneEngineInit {
  tunFd: number;
  udpFd: number;
  wakeFd: number;
  mtu: number;
  vnet: boolean;
  gso: boolean;
  gro: boolean;
  /** The TUN took USO: runs of one UDP flow's datagrams may go as one USO write (default false). */
  uso?: boolean;
  maxSlots: number;
  stats: Float64Array;
  statIndex: Record<
    | 'slotWidth'
    | 'rxBytes'
    | 'txBytes'
    | 'rxPackets'
    | 'txPackets'
    | 'miss'
    | 'udpSendErrors'
    | 'badTag'
    | 'replayed'
    | 'tooOld'
    | 'malformed'
    | 'tunWriteErrors'
    | 'keepaliveCapsules'
    | 'unknownPath'
    | 'tsoDropped'
    | 'expired'
    | 'sealExpired'
    | 'eventsDropped'
    | 'candidatesDropped'
    | 'queued'
    | 'queueDropped'
    | 'spoofed'
    | 'pmtu'
    | 'gsoResegmented'
    | 'tsoNarrowed'
    | 'pmtuIcmpSent'
    | 'pmtuFragmented'
    | 'mssClamped'
    | 'pmtuTooBigDropped'
    | 'pmtuProbesAnswered'
    | 'pmtuProbeAcks'
    | 'usoFrames'
    | 'tunGsoWrites',
    number
  >;
  /** 256 entries: non-zero marks a message type handed to the worker as an event (signaling, handshakes). */
  toMain: Uint8Array;
  /** The policy filter run on every opened packet (and told of every sent one); absent: none. */
  filter?: NativeFilterHandle;
}

const ADDON_RELATIVE = join('native', 'build', 'Release', 'cyphonic_native.node');

let loaded: NativeAddon | null | undefined;
let loadError = '';

/** The package root: the nearest ancestor directory whose package.json is named "cyphonic". */
function packageRoot(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: unknown }).name === 'cyphonic') return dir;
      } catch {
        // unreadable package.json: keep looking upwards
      }
    }
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/**
 * Loads the addon once (per thread). Path: $CYPHONIC_NATIVE if set, else <package root>/native/build/Release/
 * cyphonic_native.node. Returns null on failure; nativeLoadError() then says why.
 */
export function loadNativeAddon(): NativeAddon | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  const override = process.env['CYPHONIC_NATIVE'];
  const root = override ? null : packageRoot();
  const file = override ?? (root ? join(root, ADDON_RELATIVE) : null);
  if (file === null) {
    loadError = 'cannot find the cyphonic package root (package.json named "cyphonic")';
  } else if (process.platform !== 'linux') {
    loadError = `the native addon supports Linux only (platform is ${process.platform})`;
  } else if (!existsSync(file)) {
    loadError = `native addon not built: ${file} is missing (run "npm run build:native")`;
  } else {
    try {
      const addon = createRequire(import.meta.url)(file) as Partial<NativeAddon>;
      if (typeof addon.aeadSeal !== 'function' || typeof addon.tunOpen !== 'function') {
        loadError = `${file} does not export the expected functions (stale build?)`;
      } else {
        loaded = addon as NativeAddon;
      }
    } catch (err) {
      loadError = `failed to load ${file}: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
  return loaded;
}

/** Why loadNativeAddon() returned null ('' if it loaded or was never tried). */
export function nativeLoadError(): string {
  return loadError;
}
