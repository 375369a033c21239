// One node's lifecycle, shared by the node daemon (src/node/daemon.ts) and by every general node the adapter serves
// (src/adapter/general-node.ts): a general node is a node whose "TUN" is the adapter's LAN, nothing else differs.
//
//   start ─► enrollment (strategy: token for a node, the adapter's GeneralEnrollRequest for a general node)
//         ─► login (mTLS → Common Key, virtual IPs) ─► openPort (owner's device: TUN, or a packet pair to the LAN)
//         ─► components: RelayBinder, PeerManager (sessions into the C engine), MobilityManager
//         ─► register ─► keepalive loop
//                ▲              │ timeout / NACK / moved (wake) / Common Key near expiry
//                └──────────────┘ back-off; NMS rotation; re-login when the Common Key is refused, about to expire,
//                                  or after every NMS stayed silent twice (an NMS drops what it cannot authenticate,
//                                  so silence may mean the cloud no longer knows our key)
//
// Datagram dispatch (NMS replies and pushes → relay acks → mobility → handshakes → counted as stray) and the status
// (registration, peers, counters) live here too. What differs between a node and a general node is given by the
// owner: how to enroll, which device the data plane carries packets to (openPort), how a path keepalive enters
// that device, and which addresses are never reported as ours. The owner keeps its extras: the node daemon its
// overlay DNS resolver, address watcher and control socket; the general node its LAN attachment.

import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { BACKDATE_MS } from '../crypto/ca.js';
import { createCsr, generateEphemeral, sharedSecret, sign as signData, splitPemChain, toDer, toPem, verify as verifySignature } from '../crypto/index.js';
import type { LocalIdentity, TrustAnchors } from '../crypto/handshake.js';
import { warmHandshake } from '../crypto/warm.js';
import { contains, parseCidr, type Cidr } from '../net/addr/cidr.js';
import type { LocalAddress } from '../net/route/watch.js';
import { MessageType, Status } from '../protocol/constants.js';
import { decodeBody, encodePeerReport, MAX_PEER_REPORTS } from '../protocol/messages.js';
import { formatEndpoint, type Endpoint } from '../protocol/endpoint.js';
import { unmapV4 } from '../util/addr.js';
import { prefixed } from '../util/counters.js';
import { CertificateError, ConfigError, CyphonicError, RequestError, describeError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { sleep } from '../util/sleep.js';
import { login, renew } from './as-client.js';
import type { DataPlane, DatagramPort, OffloadState } from './dataplane/dataplane.js';
import { PeerDirectory } from './directory.js';
import { MobilityManager } from './mobility.js';
import { followRegistration } from './nat-follow.js';
import { PeerManager, type PeerStatus } from './peers.js';
import { RelayBinder } from './relay.js';
import { RelayProber, type RelayProbeResult } from './relay-probe.js';
import { deliverRouteDirections, NmsClient, nmsSchedule } from './signaling.js';
import type { Identity, Session, StateDir } from './state.js';
import { openRevocationList } from './revocations.js';

/** Tunable: first and longest wait between failed signaling rounds (doubling). */
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 8000;
/** Tunable: log in again this long before the Common Key expires. */
export const RELOGIN_MARGIN_MS = 60_000;
/** Tunable: a node asks the AS for a new certificate once less than this fraction of its lifetime is left. */
export const CERT_RENEW_FRACTION = 1 / 3;
/** Tunable: at most this many local endpoints are reported to the NMS. */
const MAX_ENDPOINTS = 32;

/** Where the lifecycle's datagrams go: the owner's port, and the C engine behind it (null: signaling only). */
export interface NodePort {
  port: DatagramPort;
  dataplane: DataPlane | null;
}

export interface LifecycleInit {
  /** The node's state directory (key, certificate chain, identity, Common Key session). */
  state: StateDir;
  /** Enrollment strategy: called when `state` holds no identity yet; writes it there and returns it. */
  enroll: () => Promise<Identity>;
  /**
   * Every failed enrollment is retried with the login (a general node). Otherwise (a node) an answer that refuses it
   * (a bad or used token, a certificate that does not match the token's pin) fails start at once, and only a failure
   * to reach any AS (timeout, unreachable) is retried: a node started on a slow or not-yet-connected network enrolls
   * once the network lets it.
   */
  retryEnrollment: boolean;
  /** Overrides the AS endpoints of the identity. */
  as?: string[];
  /** Opens the datagram port once the first login gave the virtual addresses (a TUN needs them). */
  openPort: (session: Session) => Promise<NodePort>;
  /** Sends one small packet to `peer` through its tunnel (sealed like data): keeps NAT mappings on the path open. */
  pathKeepalive: (peer: { vip4: string; vip6: string }) => void;
  /** Overlay pools: only they start route selection, and (when given) their addresses are never reported as
   *  endpoints. @default the pools from the login (or 100.64.0.0/10 and the vip6's /64), endpoints unfiltered */
  pools?: string[];
  /** Addresses of this interface are never reported as endpoints (the node's own TUN). */
  excludeInterface?: () => string | null;
  /** @default RELOGIN_MARGIN_MS */
  reloginMarginMs?: number;
  /** Waits between retransmissions of a request to the NMS (ms). @default RETRANSMIT_MS (signaling.ts) */
  nmsRetransmitMs?: readonly number[];
  rekeyAfterMs?: number;
  /** Hard age limit of a session (PeerManager rejectAfterMs). @default REJECT_AFTER_MS */
  rejectAfterMs?: number;
  pathKeepaliveMs?: number;
  punchRetryMs?: number;
  /** The NMS said this (adapter) node's general-node list changed (PolicyUpdate.generalNodes). */
  onGeneralNodes?: () => void;
}

/** The registration state and components every node and general node reports. */
export interface LifecycleStatus {
  name: string;
  nodeId: number;
  fqdn: string;
  vip4: string | null;
  vip6: string | null;
  registered: boolean;
  nat: boolean | null;
  observed: string | null;
  nms: string | null;
  keepaliveSec: number | null;
  commonKeyExpiresAt: string | null;
  lastRegistration: string | null;
  /** Offloads the data plane uses (null without a data plane). */
  offload: OffloadState | null;
  /** Mobility: address moves seen, and the last one's time from the first netlink event to the first peer ack. */
  mobility?: { moves: number; lastHandoverMs: number | null } | null;
  /** The directory of reachable peers as fetched from the NMS: its revision and how many peers it lists. */
  directory?: { rev: string | null; peers: number };
  peers: PeerStatus[];
  counters: Record<string, number>;
}

/** What a running node measures for `node netcheck` (NodeLifecycle.netcheck). */
export interface NetcheckSignals {
  /** Behind a NAT, as the NMS judged our registration. */
  nat: boolean;
  /** The public endpoint the NMS sees now. */
  observed: string;
  /** NAT mapping behaviour (null: no NAT; 'unknown': the probe went unanswered). */
  mapping: 'independent' | 'dependent' | 'unknown' | null;
  /** The endpoints we report (local addresses with our port). */
  local: string[];
  nms: { endpoint: string; registered: boolean; rttMs: number | null; observed: string | null; probe: { port: number; rttMs: number | null; observed: string | null } | null; error: string | null }[];
  /** Every TRS endpoint the cloud lists (a RelayProbe under a ticket), then any other TRS we have a path through. */
  relays: RelayProbeResult[];
  /** Why the NMS gave no TRS list (then only TRS with a relayed path are listed), or null. */
  relayListError: string | null;
}

export class NodeLifecycle {
  identity: Identity | null = null;
  session: Session | null = null;
  port: DatagramPort | null = null;
  dataplane: DataPlane | null = null;
  peers: PeerManager | null = null;
  relay: RelayBinder | null = null;
  prober: RelayProber | null = null;
  client: NmsClient | null = null;
  mobility: MobilityManager | null = null;
  private local: LocalIdentity | null = null;
  /** Certificate renewal in progress (renewCertificateIfDue), and when the current certificate is due (unix ms). */
  private renewing: Promise<void> | null = null;
  private renewDueAt: number | null = null;
  /** Certificate renewals done and failed since start. */
  readonly certRenewal = { ok: 0, failed: 0 };
  private anchors: TrustAnchors | null = null;
  /** The peers the NMS says we may reach (node/directory.ts): the overlay DNS answers them from memory. */
  readonly directory: PeerDirectory;
  /** The overlay pools of the last login (pools()). */
  private lastPools: string[] | null = null;
  private parsedPools: { of: string[]; cidrs: Cidr[] } | null = null;
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;
  private nmsIndex = 0;
  private reg: { nat: boolean; observed: Endpoint; keepaliveSec: number; at: number; probePort: number } | null = null;
  private registered = false;
  /** Aborted by an address change: wakes the keepalive loop so it re-registers at once. */
  private wake = new AbortController();
  /** Called at the next successful registration (a re-selection after a move waits for the NMS to know where we are). */
  private regWaiters: (() => void)[] = [];
  /** True from an address change until the registration that follows it. */
  private movedSinceRegistration = false;

  constructor(
    private readonly init: LifecycleInit,
    private readonly logger: Logger,
  ) {
    this.directory = new PeerDirectory({
      domain: () => this.session?.domain ?? '',
      fetchPage: (page) => {
        if (!this.client) return Promise.reject(new CyphonicError('ERR_NOT_REGISTERED', 'no NMS client yet'));
        return this.client.directoryPage(page);
      },
      // The pools of the current login, else of the last one (a notice may arrive while we log in again).
      inOverlay: (address) => (this.session ? this.pools() : (this.lastPools ?? [])).some((p) => safeContains(p, address)),
      logger: logger.child({ component: 'directory' }),
    });
  }

  get state(): StateDir {
    return this.init.state;
  }

  get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  /**
   * Enrolls (first start), logs in until it has a session (the device needs the virtual addresses), opens the port,
   * wires the components and starts the register/keepalive loop in the background. Throws a ConfigError (e.g. no
   * token) at once; returns early if stop() is called meanwhile.
   */
  async start(): Promise<void> {
    const state = this.init.state;
    state.ensure();
    if (state.enrolled()) this.identity = this.withAs(state.readIdentity());
    this.session = state.enrolled() ? state.readSession() : null;
    while (!this.session && !this.stopped) {
      try {
        if (!this.identity) this.identity = this.withAs(await this.init.enroll());
        await this.ensureSession();
      } catch (err) {
        if (err instanceof ConfigError) throw err;
        if (!this.identity && !this.init.retryEnrollment && (err instanceof RequestError || err instanceof CertificateError)) throw err;
        this.logger.warn(this.identity ? 'login failed; retrying' : 'enrollment failed; retrying', { err: describeError(err) });
        await sleep(BACKOFF_MAX_MS, this.abort.signal);
      }
    }
    if (this.stopped) return;
    this.relay = new RelayBinder({
      nodeId: () => this.identity!.nodeId,
      send: (m, to) => this.port?.send(m, to),
      logger: this.logger.child({ component: 'relay' }),
    });
    this.prober = new RelayProber({
      nodeId: () => this.identity!.nodeId,
      send: (m, to) => this.port?.send(m, to),
      // A TRS endpoint of a family this host has no address in cannot answer: said at once, not after the deadline.
      // (Loopback needs no global address: a cloud on this very host.)
      unusable: (to) => {
        const a = unmapV4(to.address);
        if (a === '::1' || a.startsWith('127.') || this.localEndpoints().some((e) => isIP(e.address) === isIP(a))) return null;
        return `no IPv${isIP(a)} address here`;
      },
    });
    this.peers = new PeerManager({
      relay: this.relay,
      behindNat: () => this.reg?.nat === true,
      local: () => this.localIdentity(),
      anchors: () => this.trustAnchors(),
      routes: () => this.client,
      sink: () =>
        this.port && {
          send: (m, to) => this.port?.send(m, to),
          install: async (route, keys, receiveOnly, reply) => this.dataplane?.install(route, keys, receiveOnly, reply),
          // The engine sends a reply from the data socket: only where that socket is the port (it always is today).
          installSends: this.dataplane !== null && (this.port as unknown) === this.dataplane,
          peerStats: (slot) => this.dataplane?.peerStats(slot) ?? { rxBytes: 0, txBytes: 0 },
          promote: (slot) => this.dataplane?.promote(slot),
          keepalive: (peer) => {
            if (this.dataplane) this.init.pathKeepalive(peer);
          },
          setEndpoint: (slot, endpoint) => this.dataplane?.setEndpoint(slot, endpoint),
          remove: (slot) => this.dataplane?.remove(slot),
          setFilter: (slot, allowIn) => this.dataplane?.setFilter(slot, allowIn),
          blockPeer: (slot) => this.dataplane?.blockPeer(slot),
        },
      logger: this.logger.child({ component: 'peers' }),
      ...(this.init.rekeyAfterMs ? { rekeyAfterMs: this.init.rekeyAfterMs } : {}),
      ...(this.init.rejectAfterMs ? { rejectAfterMs: this.init.rejectAfterMs } : {}),
      ...(this.init.pathKeepaliveMs ? { pathKeepaliveMs: this.init.pathKeepaliveMs } : {}),
      ...(this.init.punchRetryMs ? { punchRetryMs: this.init.punchRetryMs } : {}),
      onEstablished: (pathId) => this.mobility?.established(pathId),
      directory: this.directory,
      revocations: openRevocationList(state.revokedPath, this.logger),
    });
    const peers = this.peers;
    this.mobility = new MobilityManager({
      nodeId: () => this.identity!.nodeId,
      // A new route after a move is asked for once the NMS has our new registration (at most 2 s later).
      peers: {
        establishedPeers: () => peers.establishedPeers(),
        peerOfPath: (id) => peers.peerOfPath(id),
        setEndpoint: (id, ep, c) => peers.setEndpoint(id, ep, c),
        reselect: (nodeId, reason) => void this.nextRegistration(2000).then(() => peers.reselect(nodeId, reason)),
      },
      send: (m, to) => this.port?.send(m, to),
      localEndpoints: () => this.localEndpoints(),
      relearnPathMtu: () => this.dataplane?.relearnPathMtu(),
      logger: this.logger.child({ component: 'mobility' }),
    });
    const opened = await this.init.openPort(this.session!);
    if (this.stopped) {
      await opened.port.close(); // stop() ran while the device came up
      return;
    }
    this.port = opened.port;
    this.dataplane = opened.dataplane;
    this.port.onDatagram = (msg, from) => this.onDatagram(msg, from);
    if (this.dataplane) {
      // Only unicast addresses inside the overlay pools start route selection (not multicast, not strays).
      const pools = this.pools();
      this.dataplane.onMiss = (dst) => {
        if (pools.some((p) => safeContains(p, dst))) this.peers?.miss(dst);
      };
    }
    this.warmUp();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.mobility?.close();
    this.abort.abort();
    this.client?.close();
    await this.loop?.catch(() => {});
    this.peers?.close();
    this.relay?.close();
    await this.port?.close();
    this.port = null;
  }

  /** DNS: the addresses of an overlay FQDN; starts route selection and the tunnel. */
  async resolve(fqdn: string): Promise<{ vip4: string; vip6: string } | null> {
    return (await this.peers?.resolve(fqdn)) ?? null;
  }

  /** Our usable addresses changed: re-register (one round trip) and tell every peer, at once and in parallel. */
  moved(addrs: LocalAddress[], at: number): void {
    const families = { v4: addrs.some((a) => a.family === 4), v6: addrs.some((a) => a.family === 6) };
    if (this.client && this.session && (families.v4 || families.v6)) {
      try {
        this.client.nms = this.pickNms(this.session);
      } catch {
        /* no NMS of our families: the loop reports it */
      }
    }
    if (families.v4 || families.v6) this.movedSinceRegistration = true;
    this.mobility?.moved(families, at);
    if (!families.v4 && !families.v6) return; // between networks: the next change re-registers
    this.wake.abort();
  }

  status(): LifecycleStatus {
    const id = this.identity;
    return {
      name: id?.name ?? '',
      nodeId: id?.nodeId ?? 0,
      fqdn: id?.fqdn ?? '',
      vip4: this.session?.vip4 || null,
      vip6: this.session?.vip6 || null,
      registered: this.registered,
      nat: this.reg?.nat ?? null,
      observed: this.reg ? formatEndpoint(this.reg.observed) : null,
      nms: this.client ? formatEndpoint(this.client.nms) : null,
      keepaliveSec: this.reg?.keepaliveSec ?? null,
      commonKeyExpiresAt: this.session ? new Date(this.session.expiresAt).toISOString() : null,
      lastRegistration: this.reg ? new Date(this.reg.at).toISOString() : null,
      offload: this.dataplane?.offload ?? null,
      mobility: this.mobility ? { moves: this.mobility.counters.get('moves'), lastHandoverMs: this.mobility.lastMove?.firstAckMs ?? null } : null,
      directory: { rev: this.directory.rev, peers: this.directory.size },
      peers: this.peers?.status() ?? [],
      counters: {
        ...prefixed('mobility.', this.mobility?.counters.toJSON()),
        ...(this.client?.counters.toJSON() ?? {}),
        ...prefixed('peers.', this.peers?.counters.toJSON()),
        ...prefixed('relay.', this.relay?.counters.toJSON()),
        ...prefixed('directory.', this.directory.counters.toJSON()),
        ...prefixed('relayProbe.', this.prober?.counters.toJSON()),
        ...prefixed('data.', this.dataplane?.stats.globals()),
        ...prefixed('filter.', this.dataplane?.filterStats()),
        ...(this.dataplane ? { 'data.signalingSendErrors': this.dataplane.sendErrors } : {}),
      },
    };
  }

  /**
   * `node netcheck` on the running node (its control socket), over its own socket and Common Key so nothing it holds
   * changes: a Keepalive to its NMS (timed; the public endpoint the NMS sees), the NAT mapping probe to the probe port
   * of every NMS it knows (timed; the same public endpoint at its NMS's probe port as at its main port means an
   * endpoint-independent mapping, as the NMS judges it), a RelayProbe to every endpoint of every live TRS (tickets
   * from the NMS: no relayed path needed), and one bind exchange with each other TRS it has a path through.
   */
  async netcheck(): Promise<NetcheckSignals> {
    const client = this.client;
    const reg = this.reg;
    if (!client || !reg || !this.registered || !this.session) throw new CyphonicError('ERR_NOT_REGISTERED', 'the node is not registered yet');
    const timed = async <T>(f: () => Promise<T>): Promise<{ value: T | null; rttMs: number | null; error: string | null }> => {
      const t0 = performance.now();
      try {
        const value = await f();
        return { value, rttMs: Math.round((performance.now() - t0) * 10) / 10, error: null };
      } catch (err) {
        return { value: null, rttMs: null, error: describeError(err) };
      }
    };
    const main = client.nms;
    const relays = this.probeRelays(client); // in parallel with the NMS measurements
    const ka = await timed(() => client.keepalive(undefined, [500, 1000]));
    const nms = await Promise.all(
      this.session.nms.map(async (e) => {
        const isMain = e.address === main.address && e.port === main.port;
        const probe = reg.probePort ? await timed(() => client.request(MessageType.Keepalive, {}, MessageType.KeepaliveAck, undefined, [300, 600], { address: e.address, port: reg.probePort }).then((b) => decodeBody(MessageType.KeepaliveAck, b))) : null;
        return {
          endpoint: formatEndpoint(e),
          registered: isMain,
          rttMs: isMain ? ka.rttMs : (probe?.rttMs ?? null),
          observed: isMain && ka.value ? formatEndpoint(ka.value.observed) : probe?.value ? formatEndpoint(probe.value.observed) : null,
          probe: probe ? { port: reg.probePort, rttMs: probe.rttMs, observed: probe.value ? formatEndpoint(probe.value.observed) : null } : null,
          error: isMain ? ka.error : (probe?.error ?? null),
        };
      }),
    );
    const atMain = nms.find((n) => n.registered);
    const observed = ka.value?.observed ?? reg.observed;
    const seenAtProbe = atMain?.probe?.observed ?? null;
    const mapping = !reg.nat ? null : seenAtProbe === null ? 'unknown' : seenAtProbe === formatEndpoint(observed) ? 'independent' : 'dependent';
    return { nat: reg.nat, observed: formatEndpoint(observed), mapping, local: this.localEndpoints().map(formatEndpoint), nms, ...(await relays) };
  }

  /** netcheck's TRS list: probes under the NMS's tickets, then binds on relayed paths through a TRS not listed. */
  private async probeRelays(client: NmsClient): Promise<Pick<NetcheckSignals, 'relays' | 'relayListError'>> {
    let relayListError: string | null = null;
    const [listed, bound] = await Promise.all([
      this.prober!.probeCloud(client).catch((err: unknown): RelayProbeResult[] => {
        relayListError = describeError(err);
        return [];
      }),
      this.relay?.probeRelays() ?? [],
    ]);
    const seen = new Set(listed.map((r) => r.relay));
    const paths = bound
      .filter((b) => !seen.has(b.relay))
      .map((b): RelayProbeResult => ({ relay: b.relay, relayId: null, rttMs: b.rttMs, observed: null, error: b.rttMs === null ? 'no bind ack within 1.5 s' : null, via: 'path' }));
    return { relays: [...listed, ...paths], relayListError };
  }

  /** Addresses this host has now, with our port: what the NMS compares its observation against. */
  localEndpoints(): Endpoint[] {
    const skipIf = this.init.excludeInterface?.() ?? null;
    const pools = this.init.pools ?? [];
    const own = new Set([this.session?.vip4, this.session?.vip6].filter(Boolean));
    const out: Endpoint[] = [];
    for (const [ifname, list] of Object.entries(networkInterfaces())) {
      if (ifname === skipIf) continue;
      for (const a of list ?? []) {
        if (a.internal) continue;
        if (a.family === 'IPv6' && (a.address.toLowerCase().startsWith('fe80') || a.scopeid)) continue;
        const addr = unmapV4(a.address);
        if (own.has(addr) || pools.some((p) => safeContains(p, addr))) continue; // overlay addresses
        out.push({ address: addr, port: this.port?.localPort ?? 0 });
      }
    }
    return out.slice(0, MAX_ENDPOINTS);
  }

  private withAs(id: Identity): Identity {
    return this.init.as?.length ? { ...id, as: this.init.as } : id;
  }

  private pools(): string[] {
    if (this.init.pools) return this.init.pools;
    const s = this.session!;
    this.lastPools = [s.pool4 ?? '100.64.0.0/10', s.pool6 ?? (s.vip6 ? `${s.vip6}/64` : null)].filter((p): p is string => !!p);
    return this.lastPools;
  }

  /** Whether `address` is inside the overlay pools (checked for every datagram: the pools are parsed once per set). */
  private inPools(address: string): boolean {
    const pools = this.pools();
    const cached = this.parsedPools;
    let same = cached !== null && cached.of.length === pools.length;
    for (let i = 0; same && i < pools.length; i++) same = cached!.of[i] === pools[i];
    if (!same) {
      const cidrs: Cidr[] = [];
      for (const p of pools) {
        try {
          cidrs.push(parseCidr(p));
        } catch {
          /* a pool that does not parse contains nothing (safeContains) */
        }
      }
      this.parsedPools = { of: [...pools], cidrs };
    }
    return this.parsedPools!.cidrs.some((c) => safeContains(c, address));
  }

  private onDatagram(msg: Buffer, from: Endpoint): void {
    // Port 0 can never be answered (a send to it throws in Node): dropped before any work, for every message type.
    if (from.port === 0) return this.client?.counters.inc('refused.port0');
    // An overlay address is never an underlay endpoint. A peer whose host has no usable address of a family (an IPv6
    // address still tentative after a move) may have its kernel pick its own overlay address as the source; taking
    // that as the peer's endpoint would send our answers into our own tunnel. Dropped, so the peer retries from a
    // real address.
    if (this.session && this.inPools(unmapV4(from.address))) return this.client?.counters.inc('refused.overlay-source');
    if (this.client?.handleDatagram(msg)) return;
    if (this.relay?.onDatagram(msg, from)) return;
    if (this.prober?.onDatagram(msg)) return;
    if (this.mobility?.onDatagram(msg, from)) return;
    if (this.peers?.onDatagram(msg, from)) return;
    this.client?.counters.inc('refused.stray');
  }

  /** Our certificate identity for handshakes, read once (the same object lets the handshake cache the parsed key). */
  private localIdentity(): LocalIdentity {
    if (!this.local) {
      const state = this.init.state;
      const chain = splitPemChain(state.readChain()).map((p) => toDer(p));
      this.local = { nodeId: this.identity!.nodeId, certDer: toDer(state.readCert()), chainDer: chain.slice(0, -1), privateKeyPem: state.readKey() };
    }
    return this.local;
  }

  private trustAnchors(): TrustAnchors {
    if (!this.anchors) {
      const state = this.init.state;
      const chain = splitPemChain(state.readChain()).map((p) => toDer(p));
      // Revocation: the NMS hands out only current certificates, revoked nodes can neither log in nor register, and the
      // serials the NMS pushed as revoked (PolicyUpdate) are refused in every handshake (PeerManager's revocation list).
      this.anchors = { rootsDer: [toDer(state.readRoot())], intermediatesDer: chain.slice(0, -1), isRevoked: (serial) => this.peers?.isRevokedSerial(serial) ?? false };
    }
    return this.anchors;
  }

  /** One throwaway signature and key agreement at start, and our signing key parsed, so the first real handshake pays no warm-up. */
  private warmUp(): void {
    const key = this.localIdentity().privateKeyPem;
    this.peers?.warmUp();
    const e = generateEphemeral();
    sharedSecret(e.privateKey, generateEphemeral().publicKey);
    verifySignature(toDer(this.init.state.readCert()), Buffer.from('warm-up'), signData(key, Buffer.from('warm-up')));
    // In the background: a whole handshake between throwaway identities, and our own certificate through the real
    // anchors (crypto/warm.ts), so the first peer's route and tunnel run compiled code with the CA already checked.
    const t0 = performance.now();
    warmHandshake({ certDer: this.localIdentity().certDer, anchors: this.trustAnchors() })
      .then(() => this.logger.debug('handshake warm-up done', { ms: +(performance.now() - t0).toFixed(1) }))
      .catch((err: unknown) => this.logger.warn('handshake warm-up failed', { err: describeError(err) }));
  }

  /** Resolves once the registration after the last move succeeded (at once if it already has), or after `maxMs`. */
  private nextRegistration(maxMs: number): Promise<void> {
    if (!this.movedSinceRegistration) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, maxMs);
      this.regWaiters.push(done);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
    });
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let backoff = BACKOFF_MIN_MS;
    let failures = 0;
    let everRegistered = false;
    while (!signal.aborted) {
      try {
        await this.ensureSession();
        const session = this.session!;
        const nms = this.pickNms(session);
        if (!this.client) {
          const retransmitMs = this.init.nmsRetransmitMs;
          this.client = new NmsClient({ nodeId: this.identity!.nodeId, commonKey: session.commonKey, nms, ...(retransmitMs ? { retransmitMs } : {}) }, { send: (m, to) => this.port?.send(m, to) });
          const client = this.client;
          deliverRouteDirections(
            client,
            (rd) => void this.peers?.onRouteDirection(rd),
            this.logger,
            (entries) => this.peers?.applyPolicy(entries),
            () => this.init.onGeneralNodes?.(),
            (rev) => void this.directory.offer(rev),
          );
        }
        this.client.nms = nms;
        const schedule = this.nmsRetransmit(session);
        // A move while this registration is in flight abandons it (its body lists the old addresses): see catch.
        const res = await this.client.register(this.localEndpoints(), everRegistered, this.wake.signal, schedule);
        everRegistered = true;
        this.registered = true;
        const localMove = this.movedSinceRegistration;
        if (!this.wake.signal.aborted) this.movedSinceRegistration = false; // else: moved again meanwhile
        for (const w of this.regWaiters.splice(0)) w();
        failures = 0;
        backoff = BACKOFF_MIN_MS;
        const prev = this.reg?.observed ?? null;
        this.reg = { nat: res.nat, observed: res.observed, keepaliveSec: res.keepaliveSec, at: Date.now(), probePort: res.probePort ?? 0 };
        this.logger.info('registered', { vip4: res.vip4, vip6: res.vip6, nat: res.nat, udpAddr: formatEndpoint(res.observed), keepaliveSec: res.keepaliveSec });
        void this.directory.offer(res.directoryRev);
        // TRS bindings follow a new public endpoint; the NAT mapping probe (src/node/nat-follow.ts). After a move of our
        // own the peers are being told already; a NAT that rebound us behind our back needs them told now.
        const reg = this.reg;
        const moved = followRegistration(prev, res, { relay: this.relay, client: this.client, logger: this.logger, current: () => this.reg === reg && !signal.aborted });
        if (moved && !localMove) this.mobility?.natRebound();
        await this.keepaliveLoop(res.keepaliveSec, signal, schedule);
      } catch (err) {
        this.registered = false;
        if (signal.aborted) break;
        if (this.wake.signal.aborted) {
          this.wake = new AbortController(); // moved: register again at once, with the new addresses
          continue;
        }
        if (err instanceof RequestError && (err.status === Status.CommonKeyExpired || err.status === Status.Unauthorized)) {
          this.logger.info('Common Key refused; logging in again', { code: err.code });
          this.session = null;
        } else if (err instanceof RequestError && err.status === Status.NotRegistered) {
          this.logger.info('NMS asks for a new registration', { code: err.code });
          continue;
        } else {
          failures++;
          this.logger.warn('signaling failed', { err: describeError(err), failures });
          this.nmsIndex++;
          // Failover: an NMS that stayed silent is left for the next one of the login at once, until each had its turn
          // in this round; then the back-off below paces the rounds.
          const usable = this.session ? this.usableNms(this.session).length : 0;
          if (err instanceof CyphonicError && err.code === 'ERR_TIMEOUT' && usable > 1 && failures < usable) {
            this.logger.info('NMS silent; moving to the next', { failures });
            continue;
          }
          // After every NMS failed twice, our Common Key may be unknown to the cloud (an NMS drops what it cannot
          // authenticate without a word): log in again.
          if (this.session && failures >= Math.max(2, this.session.nms.length * 2)) {
            this.logger.info('no NMS answers; logging in again', { failures });
            this.session = null;
            failures = 0;
          }
        }
        await sleep(backoff, signal, this.wake.signal);
        if (this.wake.signal.aborted) this.wake = new AbortController();
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    }
  }

  private async keepaliveLoop(intervalSec: number, signal: AbortSignal, schedule: readonly number[] | undefined): Promise<void> {
    const margin = this.init.reloginMarginMs ?? RELOGIN_MARGIN_MS;
    while (!signal.aborted) {
      await sleep(intervalSec * 1000, signal, this.wake.signal);
      if (signal.aborted) return;
      if (this.wake.signal.aborted) {
        // Our addresses changed: back to run(), which re-registers (a re-registration: one round trip).
        this.wake = new AbortController();
        return;
      }
      if (this.session && this.session.expiresAt - margin <= Date.now()) {
        this.logger.info('Common Key about to expire; logging in again');
        this.session = null;
        throw new CyphonicError('ERR_RELOGIN', 'refreshing Common Key');
      }
      this.renewCertificateIfDue();
      const ack = await this.client!.keepalive(this.wake.signal, schedule, this.peerReports());
      if (this.reg) this.reg.observed = ack.observed;
      void this.directory.offer(ack.directoryRev);
    }
  }

  /** What our tunnels carry, for the operator's view at the cloud (busiest peers first; RTT as mobility measured it). */
  private peerReports(): Buffer[] {
    try {
      return (this.peers?.reports(MAX_PEER_REPORTS, (pathId) => this.mobility?.rttOf(pathId)) ?? []).map(encodePeerReport);
    } catch (err) {
      this.logger.debug('peer report skipped', { err: describeError(err) });
      return [];
    }
  }

  private async ensureSession(): Promise<void> {
    const margin = this.init.reloginMarginMs ?? RELOGIN_MARGIN_MS;
    if (this.session && this.session.expiresAt - margin > Date.now()) return;
    const id = this.identity!;
    const state = this.init.state;
    const res = await login({
      endpoints: id.as,
      rootPem: state.readRoot(),
      certPem: state.readCert(),
      chainPem: state.readChain(),
      keyPem: state.readKey(),
    });
    this.session = {
      commonKey: res.commonKey,
      expiresAt: Number(res.commonKeyExpiresAt),
      domain: res.domain,
      vip4: res.vip4,
      vip6: res.vip6,
      nms: res.nmsEndpoints,
      ...(res.pool4 ? { pool4: res.pool4 } : {}),
      ...(res.pool6 ? { pool6: res.pool6 } : {}),
    };
    state.writeSession(this.session);
    this.client?.rekey(res.nodeId, res.commonKey);
    this.logger.info('logged in', { node: res.name, vip4: res.vip4, vip6: res.vip6 });
  }

  /**
   * Certificate renewal, checked at every keepalive: once less than CERT_RENEW_FRACTION of the certificate's lifetime
   * is left, a CSR from the node's own key goes to the AS over mTLS (RenewRequest, proving the current certificate);
   * the new certificate and chain are written atomically and used from the next login and handshake on. A failure is
   * logged and tried again at the next keepalive; the registration and sessions are not touched.
   */
  private renewCertificateIfDue(): void {
    if (this.renewing || !this.identity) return;
    const state = this.init.state;
    if (this.renewDueAt === null) {
      const x = new X509Certificate(state.readCert());
      const from = new Date(x.validFrom).getTime() + BACKDATE_MS; // issued (the CA backdates notBefore)
      const to = new Date(x.validTo).getTime();
      this.renewDueAt = to - Math.max(0, to - from) * CERT_RENEW_FRACTION;
    }
    if (Date.now() < this.renewDueAt) return;
    const id = this.identity;
    this.renewing = (async () => {
      const keyPem = state.readKey();
      const res = await renew({ endpoints: id.as, rootPem: state.readRoot(), certPem: state.readCert(), chainPem: state.readChain(), keyPem, csr: await createCsr(keyPem, id.name) });
      if (res.nodeId !== id.nodeId || res.name !== id.name) throw new CyphonicError('ERR_RENEW', `the AS renewed ${res.name} (node ${res.nodeId}), not us`);
      state.writeEnrollment(toPem(res.certificate), res.chain.map((d) => toPem(d)).join(''), state.readRoot(), id);
      this.local = null; // new handshakes carry the new certificate
      this.renewDueAt = null;
      this.certRenewal.ok++;
      this.logger.info('certificate renewed', { notAfter: new X509Certificate(state.readCert()).validTo });
    })()
      .catch((err: unknown) => {
        this.certRenewal.failed++;
        this.logger.warn('certificate renewal failed; trying again at the next keepalive', { err: describeError(err) });
      })
      .finally(() => (this.renewing = null));
  }

  /** The NMS endpoints of the login of a family this host can use (all of them if none is). */
  private usableNms(s: Session): Endpoint[] {
    const mine = this.localEndpoints();
    const has4 = mine.some((e) => !e.address.includes(':'));
    const has6 = mine.some((e) => e.address.includes(':'));
    const usable = s.nms.filter((e) => (e.address.includes(':') ? has6 : has4));
    return usable.length ? usable : s.nms;
  }

  /** An NMS endpoint of a family this host can use, rotating on failures. */
  private pickNms(s: Session): Endpoint {
    const list = this.usableNms(s);
    if (list.length === 0) throw new CyphonicError('ERR_NO_NMS', 'login returned no NMS endpoint');
    return list[this.nmsIndex % list.length]!;
  }

  /**
   * Retransmissions of registrations and keepalives: an explicit nmsRetransmitMs as given; else quick to give up on a
   * silent NMS when another can take us, patient with the only one (nmsSchedule, src/node/signaling.ts).
   */
  private nmsRetransmit(s: Session): readonly number[] | undefined {
    return this.init.nmsRetransmitMs ?? nmsSchedule(this.usableNms(s).length);
  }
}

function safeContains(cidr: string | Cidr, a: string): boolean {
  try {
    return contains(cidr, a);
  } catch {
    return false;
  }
}
