// One general node as the overlay sees it: a full node identity run by the adapter on the device's behalf.
// The adapter makes its key pair and CSR (kept in STATE/general/NAME/), the AS signs it because the adapter owns the
// general node (GeneralEnrollRequest), then the agent logs in with that certificate, registers at the NMS from its
// own UDP port and keeps the registration alive — so route selection, tunnel handshakes and relays treat it exactly
// like any node. Its data path runs in JS on the adapter's main thread (DataSession per path).
// NAT traversal as for a node: the NAT mapping probe after registering, TRS bindings from its own socket (rebound
// when its public endpoint changes), path keepalives through the tunnel (a sealed 1-byte UDP packet to the peer's
// discard port, built here since there is no TUN), and the newer path's session taking over on a path replacement.
// Mobility of its peers: EndpointUpdates (0x32) are answered on its socket and new paths announce its endpoints.
//
//   LAN packet (src = its vip) ─► sendPacket ─► session of the peer owning dst ─► seal ─► UDP ─► peer
//        (no session yet: PeerManager.miss → route selection → handshake → install → queued packets flushed)
//   UDP capsule ─► open with the path's session ─► onPacket(ip) ─► Ethernet to the device's MAC

import dgram from 'node:dgram';
import { existsSync, mkdirSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { createCsr, generateKeyPair, splitPemChain, toDer, toPem } from '../crypto/index.js';
import { DataSession } from '../crypto/data-session.js';
import type { LocalIdentity, SessionKeys, TrustAnchors } from '../crypto/handshake.js';
import { contains } from '../net/addr/cidr.js';
import { MessageType, Status } from '../protocol/constants.js';
import { formatEndpoint, type Endpoint } from '../protocol/endpoint.js';
import { HEADER_LEN } from '../protocol/constants.js';
import { HEADER_OFFSETS } from '../protocol/header.js';
import { enrollGeneral, login } from '../node/as-client.js';
import { MobilityManager } from '../node/mobility.js';
import { followRegistration, sameEndpoint } from '../node/nat-follow.js';
import { PeerManager, type PeerStatus, type SessionSink } from '../node/peers.js';
import { RelayBinder } from '../node/relay.js';
import { buildUdp } from './lan/ip.js';
import { deliverRouteDirections, NmsClient } from '../node/signaling.js';
import { mapForDualStack, unmapV4 } from '../util/addr.js';
import { Counters, prefixed } from '../util/counters.js';
import { CyphonicError, RequestError, describeError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fsx.js';
import type { Logger } from '../util/log.js';
import { sleep } from '../util/sleep.js';

/** The adapter's own credentials (mTLS to the AS) and where the AS is. */
export interface AdapterCredentials {
  as: string[];
  rootPem: string;
  certPem: string;
  chainPem: string;
  keyPem: string;
}

export interface GeneralNodeInit {
  name: string;
  mac: string;
  /** Where its key and certificate live (STATE/general/NAME). */
  dir: string;
  /** The overlay pools: our own virtual addresses are never reported as endpoints. */
  pools: string[];
  /** Keepalive interval of idle paths through a NAT (ms). @default PATH_KEEPALIVE_MS (peers.ts) */
  pathKeepaliveMs?: number;
  /** First wait before a relay that replaced a failed punch retries the punch (ms). @default PUNCH_RETRY_MS (peers.ts) */
  punchRetryMs?: number;
}

/** Tunable: packets held per peer while its tunnel is being set up. */
const MAX_QUEUED = 32;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 8000;
/** Tunable: re-login this long before the Common Key expires. */
const RELOGIN_MARGIN_MS = 60_000;
/** The path keepalive: one byte of UDP to the peer's discard port (its kernel answers with port unreachable). */
const DISCARD_PORT = 9;
const KEEPALIVE_SRC_PORT = 40009;

interface Slot {
  vip4: string | null;
  vip6: string | null;
  endpoint: Endpoint;
  send: DataSession | null;
  /** The session installed last for sending (what promote switches to). */
  latest: DataSession | null;
  rxBytes: number;
  txBytes: number;
}

interface PathEntry {
  slot: number;
  sessions: DataSession[];
  /** A responder's rekeyed session: we switch to it once the initiator uses it. */
  awaiting: DataSession | null;
}

/** The JS data plane of one general node: sessions by path and by peer slot, and the virtual-address routes. */
export class JsSessions implements SessionSink {
  readonly counters = new Counters();
  private readonly paths = new Map<bigint, PathEntry>();
  private readonly slots = new Map<number, Slot>();
  private readonly byVip = new Map<string, number>();
  private readonly queued = new Map<string, Buffer[]>();

  constructor(
    private readonly out: (datagram: Buffer, to: Endpoint) => void,
    /** Our own virtual addresses (from the login): the source of path keepalives. */
    private readonly ownVips: () => { vip4: string | null; vip6: string | null },
  ) {}

  send(datagram: Buffer, to: Endpoint): void {
    this.out(datagram, to);
  }

  async install(route: { slot: number; vip4: string | null; vip6: string | null; endpoint: Endpoint }, keys: SessionKeys, receiveOnly = false): Promise<void> {
    const fresh = new DataSession(keys);
    const entry = this.paths.get(keys.pathId) ?? { slot: route.slot, sessions: [], awaiting: null };
    entry.awaiting = entry.sessions.length > 0 && !keys.initiator && !receiveOnly ? fresh : null;
    entry.sessions.unshift(fresh);
    entry.sessions.length = Math.min(entry.sessions.length, 3);
    this.paths.set(keys.pathId, entry);
    const slot = this.slots.get(route.slot) ?? { vip4: route.vip4, vip6: route.vip6, endpoint: route.endpoint, send: null, latest: null, rxBytes: 0, txBytes: 0 };
    this.slots.set(route.slot, slot);
    if (receiveOnly) return;
    slot.endpoint = route.endpoint;
    slot.latest = fresh;
    if (!entry.awaiting) slot.send = fresh;
    for (const v of [route.vip4, route.vip6]) if (v) this.byVip.set(v, route.slot);
    // The initiator speaks first under a new session, so the responder can switch to it (see SessionSet).
    if (keys.initiator) this.out(fresh.seal(Buffer.alloc(0)), slot.endpoint);
    for (const v of [route.vip4, route.vip6]) {
      const q = v ? this.queued.get(v) : undefined;
      if (!q) continue;
      this.queued.delete(v!);
      for (const p of q) this.sendPacket(v!, p);
    }
  }

  /** A new path replaced the old one: send on the session installed last for `slot` now. */
  promote(slotId: number): void {
    const slot = this.slots.get(slotId);
    if (!slot?.latest) return;
    slot.send = slot.latest;
    for (const e of this.paths.values()) if (e.awaiting === slot.latest) e.awaiting = null;
    this.counters.inc('promoted');
  }

  /** Mobility: the peer's capsules go to a new endpoint, same session. */
  setEndpoint(slotId: number, endpoint: Endpoint): void {
    const slot = this.slots.get(slotId);
    if (slot) slot.endpoint = endpoint;
  }

  /** A path keepalive: a small UDP packet from our virtual address to the peer's discard port, sealed like any packet. */
  keepalive(peer: { vip4: string; vip6: string }): void {
    const own = this.ownVips();
    const [src, dst] = own.vip4 && peer.vip4 ? [own.vip4, peer.vip4] : own.vip6 && peer.vip6 ? [own.vip6, peer.vip6] : [null, null];
    if (!src || !dst) return;
    const packet = buildUdp({ src, dst, srcPort: KEEPALIVE_SRC_PORT, dstPort: DISCARD_PORT, payload: Buffer.from([0]) });
    // Only over an installed session: a keepalive never starts route selection or waits in a queue.
    if (!this.byVip.has(dst)) return;
    if (this.sendPacket(dst, packet)) this.counters.inc('tx.path-keepalive');
  }

  peerStats(slot: number): { rxBytes: number; txBytes: number } {
    const s = this.slots.get(slot);
    return { rxBytes: s?.rxBytes ?? 0, txBytes: s?.txBytes ?? 0 };
  }

  /** Seals `packet` for the peer owning `dst`; false when there is no session (the packet is queued). */
  sendPacket(dst: string, packet: Buffer): boolean {
    const slotId = this.byVip.get(dst);
    const slot = slotId === undefined ? undefined : this.slots.get(slotId);
    if (!slot?.send) {
      const q = this.queued.get(dst) ?? [];
      if (q.length < MAX_QUEUED) q.push(Buffer.from(packet));
      else this.counters.inc('tx.queue-full');
      this.queued.set(dst, q);
      return false;
    }
    try {
      this.out(slot.send.seal(packet), slot.endpoint);
      slot.txBytes += packet.length;
      this.counters.inc('tx.packets');
    } catch (err) {
      this.counters.inc('tx.seal-error');
      throw err;
    }
    return true;
  }

  /** Opens a capsule: the IP packet, or null (keepalive, or dropped and counted). */
  open(frame: Buffer): Buffer | null {
    if (frame.length < HEADER_LEN) {
      this.counters.inc('rx.malformed');
      return null;
    }
    const entry = this.paths.get(frame.readBigUInt64BE(HEADER_OFFSETS.id));
    if (!entry) {
      this.counters.inc('rx.unknown-path');
      return null;
    }
    for (const s of entry.sessions) {
      const r = s.tryOpen(frame);
      if (typeof r === 'string') continue;
      const slot = this.slots.get(entry.slot);
      if (s === entry.awaiting) {
        entry.awaiting = null;
        if (slot) slot.send = s;
      }
      if (r.length === 0) {
        this.counters.inc('rx.keepalive');
        return null;
      }
      if (slot) slot.rxBytes += r.length;
      this.counters.inc('rx.packets');
      return r;
    }
    this.counters.inc('rx.refused');
    return null;
  }
}

export interface GeneralNodeStatus {
  name: string;
  mac: string;
  nodeId: number | null;
  fqdn: string | null;
  registered: boolean;
  /** Behind a NAT, as the NMS saw it at the last registration (null before one). */
  nat: boolean | null;
  observed: string | null;
  peers: PeerStatus[];
  counters: Record<string, number>;
}

export class GeneralNodeAgent {
  /** Decrypted IP packets from peers, for the device. */
  onPacket: (packet: Buffer) => void = () => {};
  private sock: dgram.Socket | null = null;
  private client: NmsClient | null = null;
  private peers: PeerManager | null = null;
  private relay: RelayBinder | null = null;
  private mobility: MobilityManager | null = null;
  private nat: boolean | null = null;
  private readonly sessions: JsSessions;
  private local: LocalIdentity | null = null;
  private anchors: TrustAnchors | null = null;
  private session: { commonKey: Buffer; expiresAt: number; nms: Endpoint[]; nodeId: number; fqdn: string; vip4: string | null; vip6: string | null } | null = null;
  private registered = false;
  private observed: Endpoint | null = null;
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;
  private nmsIndex = 0;

  constructor(
    readonly init: GeneralNodeInit,
    private readonly adapter: AdapterCredentials,
    private readonly logger: Logger,
  ) {
    this.sessions = new JsSessions(
      (m, to) => this.sendUdp(m, to),
      () => ({ vip4: this.session?.vip4 || null, vip6: this.session?.vip6 || null }),
    );
  }

  private get keyPath(): string {
    return join(this.init.dir, 'key.pem');
  }
  private get certPath(): string {
    return join(this.init.dir, 'cert.pem');
  }
  private get chainPath(): string {
    return join(this.init.dir, 'chain.pem');
  }

  /** Enrolls (first time), opens the UDP port and starts login/registration in the background. */
  async start(): Promise<void> {
    mkdirSync(this.init.dir, { recursive: true, mode: 0o700 });
    await this.openSocket();
    // Binds from this agent's own socket, so the TRS records the endpoint its capsules come from.
    this.relay = new RelayBinder({
      nodeId: () => this.session?.nodeId ?? 0,
      send: (m, to) => this.sendUdp(m, to),
      logger: this.logger.child({ component: 'relay' }),
    });
    this.peers = new PeerManager({
      relay: this.relay,
      behindNat: () => this.nat === true,
      local: () => this.localIdentity(),
      anchors: () => this.trustAnchors(),
      routes: () => this.client,
      sink: () => this.sessions,
      logger: this.logger.child({ component: 'peers' }),
      ...(this.init.pathKeepaliveMs ? { pathKeepaliveMs: this.init.pathKeepaliveMs } : {}),
      ...(this.init.punchRetryMs ? { punchRetryMs: this.init.punchRetryMs } : {}),
      onEstablished: (pathId) => this.mobility?.established(pathId),
    });
    // A peer that moves tells us its new endpoint (EndpointUpdate); the adapter's own moves are not followed here.
    this.mobility = new MobilityManager({
      nodeId: () => this.session?.nodeId ?? 0,
      peers: this.peers,
      send: (m, to) => this.sendUdp(m, to),
      localEndpoints: () => this.localEndpoints(),
      logger: this.logger.child({ component: 'mobility' }),
    });
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.mobility?.close();
    this.client?.close();
    await this.loop?.catch(() => {});
    this.peers?.close();
    this.relay?.close();
    const s = this.sock;
    this.sock = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  /** DNS: the addresses of an overlay FQDN; starts route selection and the tunnel. */
  async resolve(fqdn: string): Promise<{ vip4: string; vip6: string } | null> {
    return (await this.peers?.resolve(fqdn)) ?? null;
  }

  /** An IP packet from the device to the overlay address `dst`. */
  sendPacket(dst: string, packet: Buffer): void {
    if (!this.sessions.sendPacket(dst, packet)) this.peers?.miss(dst);
  }

  status(): GeneralNodeStatus {
    return {
      name: this.init.name,
      mac: this.init.mac,
      nodeId: this.session?.nodeId ?? null,
      fqdn: this.session?.fqdn ?? null,
      registered: this.registered,
      nat: this.nat,
      observed: this.observed ? formatEndpoint(this.observed) : null,
      peers: this.peers?.status() ?? [],
      counters: { ...this.sessions.counters.toJSON(), ...prefixed('peers.', this.peers?.counters.toJSON()), ...prefixed('relay.', this.relay?.counters.toJSON()), ...prefixed('mobility.', this.mobility?.counters.toJSON()), ...prefixed('nms.', this.client?.counters.toJSON()) },
    };
  }

  private async openSocket(): Promise<void> {
    const sock = dgram.createSocket({ type: 'udp6', ipv6Only: false });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ port: 0, address: '::' }, () => {
        sock.removeListener('error', reject);
        sock.on('error', () => {});
        resolve();
      });
    });
    sock.on('message', (msg, rinfo) => this.onDatagram(msg, { address: unmapV4(rinfo.address), port: rinfo.port }));
    this.sock = sock;
  }

  private sendUdp(msg: Buffer, to: Endpoint): void {
    this.sock?.send(msg, to.port, mapForDualStack(to.address));
  }

  private onDatagram(msg: Buffer, from: Endpoint): void {
    if (msg.length > 1 && msg[1] === MessageType.Capsule) {
      const packet = this.sessions.open(msg);
      if (packet) this.onPacket(packet);
      return;
    }
    if (this.client?.handleDatagram(msg)) return;
    if (this.relay?.onDatagram(msg, from)) return;
    if (this.mobility?.onDatagram(msg, from)) return;
    if (this.peers?.onDatagram(msg, from)) return;
    this.sessions.counters.inc('rx.stray');
  }

  /** Key pair (made here, kept here) and certificate from the AS through the adapter's mTLS identity. */
  private async ensureCertificate(): Promise<void> {
    if (existsSync(this.certPath) && existsSync(this.keyPath) && existsSync(this.chainPath)) return;
    let keyPem: string;
    if (existsSync(this.keyPath)) keyPem = readFileSync(this.keyPath, 'utf8');
    else {
      keyPem = (await generateKeyPair()).privateKeyPem;
      writeFileAtomic(this.keyPath, keyPem, 0o600);
    }
    const csr = await createCsr(keyPem, this.init.name);
    const res = await enrollGeneral({ endpoints: this.adapter.as, ...this.adapterTrust(), name: this.init.name, csr });
    writeFileAtomic(this.chainPath, res.chain.map((d) => toPem(d)).join(''), 0o644);
    writeFileAtomic(this.certPath, toPem(res.certificate), 0o644);
    this.local = null;
    this.logger.info('general node enrolled', { node: this.init.name, nodeId: res.nodeId });
  }

  private adapterTrust(): { rootPem: string; certPem: string; chainPem: string; keyPem: string } {
    return { rootPem: this.adapter.rootPem, certPem: this.adapter.certPem, chainPem: this.adapter.chainPem, keyPem: this.adapter.keyPem };
  }

  private localIdentity(): LocalIdentity {
    if (!this.local) {
      const chain = splitPemChain(readFileSync(this.chainPath, 'utf8')).map((p) => toDer(p));
      this.local = { nodeId: this.session?.nodeId ?? 0, certDer: toDer(readFileSync(this.certPath, 'utf8')), chainDer: chain.slice(0, -1), privateKeyPem: readFileSync(this.keyPath, 'utf8') };
    }
    return this.local;
  }

  private trustAnchors(): TrustAnchors {
    if (!this.anchors) {
      const chain = splitPemChain(readFileSync(this.chainPath, 'utf8')).map((p) => toDer(p));
      this.anchors = { rootsDer: [toDer(this.adapter.rootPem)], intermediatesDer: chain.slice(0, -1), isRevoked: () => false };
    }
    return this.anchors;
  }

  private async ensureSession(): Promise<void> {
    if (this.session && this.session.expiresAt - RELOGIN_MARGIN_MS > Date.now()) return;
    await this.ensureCertificate();
    const res = await login({
      endpoints: this.adapter.as,
      rootPem: this.adapter.rootPem,
      certPem: readFileSync(this.certPath, 'utf8'),
      chainPem: readFileSync(this.chainPath, 'utf8'),
      keyPem: readFileSync(this.keyPath, 'utf8'),
    });
    this.session = { commonKey: res.commonKey, expiresAt: Number(res.commonKeyExpiresAt), nms: res.nmsEndpoints, nodeId: res.nodeId, fqdn: res.fqdn, vip4: res.vip4 || null, vip6: res.vip6 || null };
    this.local = null;
    this.client?.rekey(res.nodeId, res.commonKey);
    this.logger.info('general node logged in', { node: res.name, vip4: res.vip4, vip6: res.vip6 });
  }

  /** This host's addresses with our port, minus overlay addresses (the adapter's TUN) and link-locals. */
  private localEndpoints(): Endpoint[] {
    const port = (this.sock?.address().port as number | undefined) ?? 0;
    const out: Endpoint[] = [];
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) {
        if (a.internal) continue;
        if (a.family === 'IPv6' && (a.address.toLowerCase().startsWith('fe80') || a.scopeid)) continue;
        const addr = unmapV4(a.address);
        if (this.init.pools.some((p) => contains(p, addr))) continue;
        out.push({ address: addr, port });
      }
    }
    return out.slice(0, 16);
  }

  private pickNms(): Endpoint {
    const mine = this.localEndpoints();
    const has4 = mine.some((e) => !e.address.includes(':'));
    const has6 = mine.some((e) => e.address.includes(':'));
    const all = this.session!.nms;
    const usable = all.filter((e) => (e.address.includes(':') ? has6 : has4));
    const list = usable.length ? usable : all;
    if (list.length === 0) throw new CyphonicError('ERR_NO_NMS', 'login returned no NMS endpoint');
    return list[this.nmsIndex % list.length]!;
  }

  /** Login → register → keepalives, recovering like the node daemon does (relogin on a refused Common Key). */
  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let backoff = BACKOFF_MIN_MS;
    let again = false;
    while (!signal.aborted) {
      try {
        await this.ensureSession();
        const s = this.session!;
        const nms = this.pickNms();
        if (!this.client) {
          this.client = new NmsClient({ nodeId: s.nodeId, commonKey: s.commonKey, nms }, { send: (m, to) => this.sendUdp(m, to) });
          deliverRouteDirections(this.client, (rd) => void this.peers?.onRouteDirection(rd), this.logger);
        }
        this.client.nms = nms;
        const res = await this.client.register(this.localEndpoints(), again);
        again = true;
        this.registered = true;
        const prev = this.observed;
        this.observed = res.observed;
        this.nat = res.nat;
        // A new public endpoint with the adapter's addresses unchanged is the NAT rebinding us: peers on direct and
        // punched paths are told from the new mapping (the relayed ones follow the TRS rebind).
        if (followRegistration(prev, res, { relay: this.relay, client: this.client, logger: this.logger })) this.mobility?.natRebound();
        backoff = BACKOFF_MIN_MS;
        this.logger.info('general node registered', { node: this.init.name, vip4: res.vip4, vip6: res.vip6, nat: res.nat, udpAddr: formatEndpoint(res.observed) });
        while (!signal.aborted) {
          await sleep(res.keepaliveSec * 1000, signal);
          if (signal.aborted) return;
          if (this.session && this.session.expiresAt - RELOGIN_MARGIN_MS <= Date.now()) {
            this.session = null;
            throw new CyphonicError('ERR_RELOGIN', 'refreshing Common Key');
          }
          const ack = await this.client.keepalive();
          // A NAT rebinding seen by a keepalive: the TRS bindings follow at once (the next registration would too).
          if (this.observed && !sameEndpoint(this.observed, ack.observed)) this.relay?.rebindAll();
          this.observed = ack.observed;
        }
      } catch (err) {
        this.registered = false;
        if (signal.aborted) break;
        if (err instanceof RequestError && (err.status === Status.CommonKeyExpired || err.status === Status.Unauthorized)) this.session = null;
        else if (!(err instanceof RequestError && err.status === Status.NotRegistered)) {
          this.nmsIndex++;
          this.logger.warn('general node signaling failed', { node: this.init.name, err: describeError(err) });
        }
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    }
  }
}


