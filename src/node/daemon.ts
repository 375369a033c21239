// The node daemon: enrolls on first start, logs in at the AS, registers with the NMS and keeps the
// registration alive; recovers by itself from a lost reply, a restarted cloud, or an expired Common Key.
//
//   start ─► enroll (first run: key pair + CSR, token) ─► login (mTLS → Common Key) ─► register ─► keepalive loop
//                                   ▲                          ▲                         │
//                                   └──── key expired ─────────┴──── timeout / moved ────┘

import dgram from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { createCsr, generateEphemeral, generateKeyPair, sharedSecret, sign as signData, splitPemChain, toDer, toPem, verify as verifySignature } from '../crypto/index.js';
import type { LocalIdentity, TrustAnchors } from '../crypto/handshake.js';
import { createResolver, readSystemUpstreams, type Resolver } from '../net/dns/resolver.js';
import { contains } from '../net/addr/cidr.js';
import { DataPlane, type DatagramPort, type OffloadState } from './dataplane/dataplane.js';
import { PeerManager, type PeerStatus } from './peers.js';
import { RelayBinder } from './relay.js';
import { decodeToken, type EnrollmentToken } from '../config/token.js';
import { Status } from '../protocol/constants.js';
import { formatEndpoint, type Endpoint } from '../protocol/endpoint.js';
import { mapForDualStack, unmapV4 } from '../util/addr.js';
import { prefixed } from '../util/counters.js';
import { serveControl, type ControlServer } from '../util/control.js';
import { ConfigError, CyphonicError, RequestError, describeError } from '../util/errors.js';
import { sleep } from '../util/sleep.js';
import type { Logger } from '../util/log.js';
import { enroll, login } from './as-client.js';
import { deliverRouteDirections, NmsClient } from './signaling.js';
import { StateDir, type Identity, type Session } from './state.js';
import { AddressWatcher, type LocalAddress } from '../net/route/watch.js';
import { MobilityManager } from './mobility.js';
import { followRegistration } from './nat-follow.js';

export interface NodeInit {
  stateDir: string;
  /** Enrollment token (needed only on the first start). */
  token?: string;
  /** Overrides the AS endpoints from the token ("host:port", comma-separated allowed). */
  cloud?: string[];
  /** UDP port for signaling and data. @default 30000 */
  port?: number;
  /** Log in again this long before the Common Key expires. @default 60000 */
  reloginMarginMs?: number;
  /** Bring up the TUN device, data plane and overlay DNS (needs root and the native addon). @default true */
  tun?: boolean;
  /** TUN device name. @default 'cyp0' */
  tunName?: string;
  /** Overlay DNS port on the virtual addresses. @default 53 */
  dnsPort?: number;
  /** Re-handshake every so often (ms). @default REKEY_AFTER_MS (120 s) */
  rekeyAfterMs?: number;
  /** Hard age limit of a session (ms; PeerManager rejectAfterMs). @default REJECT_AFTER_MS (180 s) */
  rejectAfterMs?: number;
  /** Use TUN/UDP offloads (TSO, GSO, GRO) where the kernel has them; false = the portable path. @default true */
  offload?: boolean;
  /** Keepalive interval of idle paths through a NAT (ms). @default PATH_KEEPALIVE_MS (20 s) */
  pathKeepaliveMs?: number;
  /** First wait before a relay that replaced a failed punch retries the punch (ms). @default PUNCH_RETRY_MS (30 s) */
  punchRetryMs?: number;
  /** Watch the host's addresses (netlink, via `ip -o monitor`) and act on moves at once. @default true */
  watchAddresses?: boolean;
}

export interface NodeStatus {
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
  dns: string | null;
  tun: string | null;
  /** Offloads the data plane uses (null without a data plane). */
  offload: OffloadState | null;
  /** Mobility: address moves seen, and the last one's time from the first netlink event to the first peer ack. */
  mobility?: { moves: number; lastHandoverMs: number | null } | null;
  peers: PeerStatus[];
  counters: Record<string, number>;
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 8000;

export class NodeDaemon {
  private readonly state: StateDir;
  private identity: Identity | null = null;
  private session: Session | null = null;
  private local: LocalIdentity | null = null;
  private anchors: TrustAnchors | null = null;
  private port: DatagramPort | null = null;
  private dataplane: DataPlane | null = null;
  private resolver: Resolver | null = null;
  private peers: PeerManager | null = null;
  private relay: RelayBinder | null = null;
  private client: NmsClient | null = null;
  private control: ControlServer | null = null;
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;
  private nmsIndex = 0;
  private reg: { nat: boolean; observed: Endpoint; keepaliveSec: number; at: number } | null = null;
  private registered = false;
  // ── mobility (src/node/mobility.ts, src/net/route/watch.ts) ──
  private watcher: AddressWatcher | null = null;
  private mobility: MobilityManager | null = null;
  /** Aborted by an address change: wakes the keepalive loop so it re-registers at once. */
  private wake = new AbortController();
  /** Called at the next successful registration (a re-selection after a move waits for the NMS to know where we are). */
  private regWaiters: (() => void)[] = [];
  /** True from an address change until the registration that follows it. */
  private movedSinceRegistration = false;

  constructor(
    private readonly init: NodeInit,
    private readonly logger: Logger,
  ) {
    this.state = new StateDir(init.stateDir);
  }

  async start(): Promise<void> {
    this.state.ensure();
    this.identity = this.state.enrolled() ? this.state.readIdentity() : await this.enroll();
    if (this.init.cloud?.length) this.identity = { ...this.identity, as: this.init.cloud };
    this.session = this.state.readSession();
    // The TUN device needs our virtual addresses: they come from a login (and never change afterwards).
    while (!this.session && !this.abort.signal.aborted) {
      try {
        await this.ensureSession();
      } catch (err) {
        this.logger.warn('login failed; retrying', { err: describeError(err) });
        await sleep(BACKOFF_MAX_MS, this.abort.signal);
      }
    }
    this.relay = new RelayBinder({
      nodeId: () => this.identity!.nodeId,
      send: (m, to) => this.port?.send(m, to),
      logger: this.logger.child({ component: 'relay' }),
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
          install: async (route, keys, receiveOnly) => this.dataplane?.install(route, keys, receiveOnly),
          peerStats: (slot) => this.dataplane?.peerStats(slot) ?? { rxBytes: 0, txBytes: 0 },
          promote: (slot) => this.dataplane?.promote(slot),
          keepalive: (peer) => this.pathKeepalive(peer.vip4),
          setEndpoint: (slot, endpoint) => this.dataplane?.setEndpoint(slot, endpoint),
        },
      logger: this.logger.child({ component: 'peers' }),
      ...(this.init.rekeyAfterMs ? { rekeyAfterMs: this.init.rekeyAfterMs } : {}),
      ...(this.init.rejectAfterMs ? { rejectAfterMs: this.init.rejectAfterMs } : {}),
      ...(this.init.pathKeepaliveMs ? { pathKeepaliveMs: this.init.pathKeepaliveMs } : {}),
      ...(this.init.punchRetryMs ? { punchRetryMs: this.init.punchRetryMs } : {}),
      onEstablished: (pathId) => this.mobility?.established(pathId),
    });
    this.port = this.init.tun === false ? await DgramPort.open(this.init.port ?? 30000) : await this.openDataPlane();
    this.port.onDatagram = (msg, from) => this.onDatagram(msg, from);
    await this.startMobility();
    this.warmUp();
    this.control = await serveControl(this.state.controlPath, { '/status': () => this.status() });
    this.loop = this.run();
  }

  private async openDataPlane(): Promise<DatagramPort> {
    const s = this.session!;
    const dp = await DataPlane.open(
      { tunName: this.init.tunName, vip4: s.vip4, vip6: s.vip6, pool4: s.pool4 ?? '100.64.0.0/10', pool6: s.pool6 ?? `${s.vip6}/64`, port: this.init.port ?? 30000, offload: this.init.offload !== false },
      this.logger.child({ component: 'dataplane' }),
    );
    // Only unicast addresses inside the overlay pools start route selection (not multicast, not strays).
    const pools = [s.pool4, s.pool6].filter((p): p is string => !!p);
    dp.onMiss = (dst) => {
      if (pools.some((p) => contains(p, dst))) this.peers?.miss(dst);
    };
    this.dataplane = dp;
    const domain = s.domain;
    const resolver = createResolver(
      {
        listen: [
          { address: s.vip4, port: this.init.dnsPort ?? 53 },
          { address: s.vip6, port: this.init.dnsPort ?? 53 },
        ],
        domain,
        upstream: readSystemUpstreams('/etc/resolv.conf', [s.vip4, s.vip6]),
      },
      {
        lookup: async (name) => (await this.peers?.resolve(`${name}.${domain}`)) ?? null,
        logger: this.logger.child({ component: 'dns' }),
      },
    );
    await resolver.start();
    this.resolver = resolver;
    this.logger.info('data plane up', { tun: dp.tunName, vip4: s.vip4, vip6: s.vip6, dns: s.vip4, offload: dp.offload });
    return dp;
  }

  private keepaliveSock: dgram.Socket | null = null;

  /**
   * A path keepalive: one byte of UDP to the peer's discard port over the overlay, so the data plane seals it with
   * the End Key like any packet; the peer's kernel answers (port unreachable) through the tunnel too.
   */
  private pathKeepalive(vip4: string): void {
    if (!this.dataplane) return;
    if (!this.keepaliveSock) {
      this.keepaliveSock = dgram.createSocket('udp4');
      this.keepaliveSock.on('error', () => {});
      this.keepaliveSock.unref();
    }
    this.keepaliveSock.send(Buffer.from([0]), 9, vip4);
  }

  private onDatagram(msg: Buffer, from: Endpoint): void {
    if (this.client?.handleDatagram(msg)) return;
    if (this.relay?.onDatagram(msg, from)) return;
    if (this.mobility?.onDatagram(msg, from)) return;
    if (this.peers?.onDatagram(msg, from)) return;
    this.client?.counters.inc('refused.stray');
  }

  /** Our certificate identity for handshakes, read once (the same object lets the handshake cache the parsed key). */
  private localIdentity(): LocalIdentity {
    if (!this.local) {
      const chain = splitPemChain(this.state.readChain()).map((p) => toDer(p));
      this.local = { nodeId: this.identity!.nodeId, certDer: toDer(this.state.readCert()), chainDer: chain.slice(0, -1), privateKeyPem: this.state.readKey() };
    }
    return this.local;
  }

  private trustAnchors(): TrustAnchors {
    if (!this.anchors) {
      const chain = splitPemChain(this.state.readChain()).map((p) => toDer(p));
      // Revocation: the NMS hands out only current certificates and revoked nodes can neither log in nor register.
      this.anchors = { rootsDer: [toDer(this.state.readRoot())], intermediatesDer: chain.slice(0, -1), isRevoked: () => false };
    }
    return this.anchors;
  }

  /** One throwaway signature and key agreement at start, so the first real handshake pays no warm-up. */
  private warmUp(): void {
    const key = this.localIdentity().privateKeyPem;
    const e = generateEphemeral();
    sharedSecret(e.privateKey, generateEphemeral().publicKey);
    verifySignature(toDer(this.state.readCert()), Buffer.from('warm-up'), signData(key, Buffer.from('warm-up')));
  }

  /** Mobility hooks: the netlink address watcher, and endpoint updates to peers (see mobility.ts). */
  private async startMobility(): Promise<void> {
    const peers = this.peers!;
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
      logger: this.logger.child({ component: 'mobility' }),
    });
    if (this.init.watchAddresses === false) return;
    const vips = new Set([this.session?.vip4, this.session?.vip6]);
    const watcher = new AddressWatcher({ exclude: (ifname, address) => vips.has(address) || ifname === this.dataplane?.tunName });
    watcher.onChange = (addrs, at) => this.onAddressChange(addrs, at);
    watcher.onError = (err) =>
      (err as NodeJS.ErrnoException).code === 'ENOENT'
        ? this.logger.warn('address watcher: `ip` not found; moves are noticed only by the NMS keepalive')
        : this.logger.debug('address watcher', { err: describeError(err) });
    try {
      await watcher.start();
      this.watcher = watcher;
    } catch (err) {
      watcher.stop();
      this.logger.warn('address watcher unavailable; moves are noticed only by the NMS keepalive', { err: describeError(err) });
    }
  }

  /** Our usable addresses changed: re-register (one round trip) and tell every peer, at once and in parallel. */
  private onAddressChange(addrs: LocalAddress[], at: number): void {
    const families = { v4: addrs.some((a) => a.family === 4), v6: addrs.some((a) => a.family === 6) };
    this.logger.info('addresses changed', { addrs: addrs.map((a) => a.address), ...families });
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

  async stop(): Promise<void> {
    this.watcher?.stop();
    this.mobility?.close();
    this.abort.abort();
    this.client?.close();
    await this.loop?.catch(() => {});
    await this.control?.close();
    this.peers?.close();
    this.relay?.close();
    this.keepaliveSock?.close();
    this.keepaliveSock = null;
    await this.resolver?.stop();
    await this.port?.close();
    this.port = null;
  }

  status(): NodeStatus {
    const id = this.identity!;
    return {
      name: id.name,
      nodeId: id.nodeId,
      fqdn: id.fqdn,
      vip4: this.session?.vip4 ?? null,
      vip6: this.session?.vip6 ?? null,
      registered: this.registered,
      nat: this.reg?.nat ?? null,
      observed: this.reg ? formatEndpoint(this.reg.observed) : null,
      nms: this.client ? formatEndpoint(this.client.nms) : null,
      keepaliveSec: this.reg?.keepaliveSec ?? null,
      commonKeyExpiresAt: this.session ? new Date(this.session.expiresAt).toISOString() : null,
      lastRegistration: this.reg ? new Date(this.reg.at).toISOString() : null,
      dns: this.resolver ? this.session?.vip4 ?? null : null,
      tun: this.dataplane?.tunName ?? null,
      offload: this.dataplane?.offload ?? null,
      mobility: this.mobility ? { moves: this.mobility.counters.get('moves'), lastHandoverMs: this.mobility.lastMove?.firstAckMs ?? null } : null,
      peers: this.peers?.status() ?? [],
      counters: {
        ...prefixed('mobility.', this.mobility?.counters.toJSON()),
        ...(this.client?.counters.toJSON() ?? {}),
        ...prefixed('peers.', this.peers?.counters.toJSON()),
        ...prefixed('relay.', this.relay?.counters.toJSON()),
        ...prefixed('dns.', this.resolver?.counters.toJSON()),
        ...prefixed('data.', this.dataplane?.stats.globals()),
      },
    };
  }

  /** First start: make a key pair and CSR here (the private key never leaves DIR) and trade the token for a certificate. */
  private async enroll(): Promise<Identity> {
    if (!this.init.token) throw new ConfigError(`${this.init.stateDir} holds no enrollment yet: pass --token`, 'ERR_NO_TOKEN');
    const token: EnrollmentToken = decodeToken(this.init.token);
    let keyPem: string;
    if (this.state.hasKey()) keyPem = this.state.readKey();
    else {
      keyPem = (await generateKeyPair()).privateKeyPem;
      this.state.writeKey(keyPem);
    }
    const csr = await createCsr(keyPem, token.name);
    const endpoints = this.init.cloud?.length ? this.init.cloud : token.as;
    const res = await enroll({ endpoints, caFingerprint: token.ca, token: token.secret, csr });
    const identity: Identity = { name: res.name, nodeId: res.nodeId, fqdn: res.fqdn, as: token.as, caFingerprint: token.ca };
    this.state.writeEnrollment(toPem(res.certificate), res.chain.map((d) => toPem(d)).join(''), res.rootPem, identity);
    this.logger.info('enrolled', { node: res.name, nodeId: res.nodeId });
    return identity;
  }

  /** Addresses this host has now, with our port: what the NMS compares its observation against. */
  localEndpoints(): Endpoint[] {
    const out: Endpoint[] = [];
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) {
        if (a.internal) continue;
        if (a.family === 'IPv6' && (a.address.toLowerCase().startsWith('fe80') || a.scopeid)) continue;
        if (this.session && (a.address === this.session.vip4 || a.address === this.session.vip6)) continue; // our TUN
        out.push({ address: unmapV4(a.address), port: this.port?.localPort ?? 0 });
      }
    }
    return out.slice(0, 32);
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
          this.client = new NmsClient({ nodeId: this.identity!.nodeId, commonKey: session.commonKey, nms }, { send: (m, to) => this.port?.send(m, to) });
          deliverRouteDirections(this.client, (rd) => void this.peers?.onRouteDirection(rd), this.logger);
        }
        this.client.nms = nms;
        // A move while this registration is in flight abandons it (its body lists the old addresses): see catch.
        const res = await this.client.register(this.localEndpoints(), everRegistered, this.wake.signal);
        everRegistered = true;
        this.registered = true;
        const localMove = this.movedSinceRegistration;
        if (!this.wake.signal.aborted) this.movedSinceRegistration = false; // else: moved again meanwhile
        for (const w of this.regWaiters.splice(0)) w();
        failures = 0;
        backoff = BACKOFF_MIN_MS;
        const prev = this.reg?.observed ?? null;
        this.reg = { nat: res.nat, observed: res.observed, keepaliveSec: res.keepaliveSec, at: Date.now() };
        this.logger.info('registered', { vip4: res.vip4, vip6: res.vip6, nat: res.nat, udpAddr: formatEndpoint(res.observed), keepaliveSec: res.keepaliveSec });
        // TRS bindings follow a new public endpoint; the NAT mapping probe (src/node/nat-follow.ts). After a move of our
        // own the peers are being told already; a NAT that rebound us behind our back needs them told now.
        const moved = followRegistration(prev, res, { relay: this.relay, client: this.client, logger: this.logger });
        if (moved && !localMove) this.mobility?.natRebound();
        await this.keepaliveLoop(res.keepaliveSec, signal);
      } catch (err) {
        this.registered = false;
        if (signal.aborted) break;
        if (this.wake.signal.aborted) {
          this.wake = new AbortController(); // moved: register again at once, with the new addresses
          continue;
        }
        if (err instanceof RequestError && (err.status === Status.CommonKeyExpired || err.status === Status.Unauthorized)) {
          this.logger.info('Common Key refused; logging in again', { code: err.code });
          this.dropSession();
        } else if (err instanceof RequestError && err.status === Status.NotRegistered) {
          this.logger.info('NMS asks for a new registration', { code: err.code });
          continue;
        } else {
          failures++;
          this.logger.warn('signaling failed', { err: describeError(err), failures });
          this.nmsIndex++;
          // After every NMS failed twice, our Common Key may be unknown to the cloud: log in again.
          if (this.session && failures >= Math.max(2, this.session.nms.length * 2)) this.dropSession();
        }
        await sleep(backoff, signal, this.wake.signal);
        if (this.wake.signal.aborted) this.wake = new AbortController();
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    }
  }

  private async keepaliveLoop(intervalSec: number, signal: AbortSignal): Promise<void> {
    const margin = this.init.reloginMarginMs ?? 60_000;
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
        this.dropSession();
        throw new CyphonicError('ERR_RELOGIN', 'refreshing Common Key');
      }
      const ack = await this.client!.keepalive(this.wake.signal);
      if (this.reg) this.reg.observed = ack.observed;
    }
  }

  private dropSession(): void {
    this.session = null;
  }

  private async ensureSession(): Promise<void> {
    const margin = this.init.reloginMarginMs ?? 60_000;
    if (this.session && this.session.expiresAt - margin > Date.now()) return;
    const id = this.identity!;
    const res = await login({
      endpoints: id.as,
      rootPem: this.state.readRoot(),
      certPem: this.state.readCert(),
      chainPem: this.state.readChain(),
      keyPem: this.state.readKey(),
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
    this.state.writeSession(this.session);
    this.client?.rekey(res.nodeId, res.commonKey);
    this.logger.info('logged in', { node: res.name, vip4: res.vip4, vip6: res.vip6 });
  }

  /** An NMS endpoint of a family this host can use, rotating on failures. */
  private pickNms(s: Session): Endpoint {
    const mine = this.localEndpoints();
    const has4 = mine.some((e) => !e.address.includes(':'));
    const has6 = mine.some((e) => e.address.includes(':'));
    const usable = s.nms.filter((e) => (e.address.includes(':') ? has6 : has4));
    const list = usable.length ? usable : s.nms;
    if (list.length === 0) throw new CyphonicError('ERR_NO_NMS', 'login returned no NMS endpoint');
    return list[this.nmsIndex % list.length]!;
  }
}



/** The datagram port without a data plane (`tun: false`): one node:dgram socket, dual-stack when possible. */
class DgramPort implements DatagramPort {
  onDatagram: (datagram: Buffer, from: Endpoint) => void = () => {};
  private constructor(
    private readonly sock: dgram.Socket,
    private readonly dualStack: boolean,
  ) {
    sock.on('message', (msg, rinfo) => this.onDatagram(msg, { address: unmapV4(rinfo.address), port: rinfo.port }));
  }

  static async open(port: number): Promise<DgramPort> {
    const bind = (type: 'udp4' | 'udp6'): Promise<dgram.Socket> =>
      new Promise((resolve, reject) => {
        const s = dgram.createSocket({ type, ipv6Only: false });
        s.once('error', reject);
        s.bind({ port, address: type === 'udp6' ? '::' : '0.0.0.0' }, () => {
          s.removeListener('error', reject);
          s.on('error', () => {});
          resolve(s);
        });
      });
    try {
      return new DgramPort(await bind('udp6'), true);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw err;
      return new DgramPort(await bind('udp4'), false); // IPv6 disabled on this host
    }
  }

  get localPort(): number {
    return this.sock.address().port;
  }

  send(datagram: Buffer, to: Endpoint): void {
    this.sock.send(datagram, to.port, this.dualStack ? mapForDualStack(to.address) : to.address);
  }

  close(): Promise<void> {
    return new Promise((r) => this.sock.close(() => r()));
  }
}
