// One general node as the overlay sees it: a node the adapter runs on the device's behalf, whose "TUN" is the
// adapter's LAN. Everything a node does — enrollment, login, NMS registration and recovery, route selection,
// tunnel handshakes, relays, NAT following, mobility, datagram dispatch — is the shared NodeLifecycle
// (src/node/lifecycle.ts), so a general node behaves exactly like a node. What is its own:
//   - the enrollment strategy: a key pair and CSR made here (kept in STATE/general/NAME/, a StateDir like a node's),
//     signed by the AS because the adapter owns the general node (GeneralEnrollRequest over the adapter's mTLS);
//   - its device: a C data-plane engine (src/node/dataplane/) with its own UDP socket (dual-stack, IPv4 fallback)
//     and a packet pair instead of a TUN; the adapter holds the pair's other end;
//   - path keepalives: a 1-byte UDP packet from its virtual address to the peer's discard port, written into the
//     pair so the engine seals it like any packet (a node's kernel does this through its TUN).
//
//   LAN frame (src = its lease) ─► LanService ─► sendPacket ─► pair ─► engine: session of the peer owning dst ─► UDP
//        (no session yet: the engine worker holds it (bounded HeldPackets) and asks for a route: PeerManager.miss)
//   UDP capsule ─► engine opens it ─► pair ─► onPacket(ip) ─► LanService: dst must be the device's ─► Ethernet to its MAC
// The adapter's IP fast path (native/lan_fast.c) takes plain TCP/UDP packets both ways without sendPacket/onPacket:
// the LAN reader writes into the pair (deviceFd), the pair reader sends on the LAN.

import { createCsr, fingerprint, generateKeyPair, toPem } from '../crypto/index.js';
import { DataPlane } from '../node/dataplane/dataplane.js';
import { enrollGeneral } from '../node/as-client.js';
import { NodeLifecycle } from '../node/lifecycle.js';
import type { PairHost } from '../node/dataplane/pair-host.js';
import type { PeerStatus } from '../node/peers.js';
import { StateDir, type Identity } from '../node/state.js';
import { Counters } from '../util/counters.js';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { buildUdp } from './lan/ip.js';
import type { GeneralNodePort } from './lan-service.js';

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
  /** Its state directory (STATE/general/NAME): key, certificate chain, identity, Common Key session. */
  dir: string;
  /** The overlay pools: only they start route selection, and our own virtual addresses are never reported as endpoints. */
  pools: string[];
  /** The largest IP packet the engine takes from and gives to the device (the adapter: a full Ethernet payload). */
  mtu: number;
  /** Keepalive interval of idle paths through a NAT (ms). @default PATH_KEEPALIVE_MS (peers.ts) */
  pathKeepaliveMs?: number;
  /** First wait before a relay that replaced a failed punch retries the punch (ms). @default PUNCH_RETRY_MS (peers.ts) */
  punchRetryMs?: number;
  /** Log in again this long before the Common Key expires. @default RELOGIN_MARGIN_MS (lifecycle.ts) */
  reloginMarginMs?: number;
  /** Waits between retransmissions of a request to the NMS (ms). @default RETRANSMIT_MS (signaling.ts) */
  nmsRetransmitMs?: readonly number[];
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
  commonKeyExpiresAt: string | null;
  peers: PeerStatus[];
  counters: Record<string, number>;
}

/** The path keepalive: one byte of UDP to the peer's discard port (its kernel answers with port unreachable). */
const DISCARD_PORT = 9;
const KEEPALIVE_SRC_PORT = 40009;

export class GeneralNodeAgent implements GeneralNodePort {
  /** Opened IP packets from peers, for the device. */
  onPacket: (packet: Buffer) => void = () => {};
  /** Its engine's packet pair opened or is closing (deviceFd changed): the LAN fast path's table follows. */
  onDevice: () => void = () => {};
  readonly counters = new Counters();
  private readonly state: StateDir;
  private readonly life: NodeLifecycle;
  private starting: Promise<void> | null = null;
  /** The host end of its engine's packet pair, from when it opens until stop(). */
  private host: PairHost | null = null;

  constructor(
    readonly init: GeneralNodeInit,
    private readonly adapter: AdapterCredentials,
    private readonly logger: Logger,
  ) {
    this.state = new StateDir(init.dir);
    this.life = new NodeLifecycle(
      {
        state: this.state,
        enroll: () => this.enroll(),
        retryEnrollment: true,
        as: adapter.as,
        openPort: async () => {
          const dp = await DataPlane.open({ device: { kind: 'pair', mtu: init.mtu }, port: 0 }, logger.child({ component: 'dataplane' }));
          dp.host!.onPackets = (packets) => {
            for (const p of packets) this.onPacket(p);
          };
          this.host = dp.host;
          this.onDevice();
          return { port: dp, dataplane: dp };
        },
        pathKeepalive: (peer) => this.pathKeepalive(peer),
        pools: init.pools,
        ...(init.pathKeepaliveMs ? { pathKeepaliveMs: init.pathKeepaliveMs } : {}),
        ...(init.punchRetryMs ? { punchRetryMs: init.punchRetryMs } : {}),
        ...(init.reloginMarginMs !== undefined ? { reloginMarginMs: init.reloginMarginMs } : {}),
        ...(init.nmsRetransmitMs ? { nmsRetransmitMs: init.nmsRetransmitMs } : {}),
      },
      logger,
    );
  }

  /** Starts enrollment (first time), login, the engine and registration in the background. */
  start(): Promise<void> {
    this.starting = this.life.start().catch((err: unknown) => this.logger.error('general node failed to start', { node: this.init.name, err: describeError(err) }));
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    this.host = null;
    this.onDevice(); // out of the fast path's table before the pair closes
    await this.life.stop();
    await this.starting;
  }

  /** Our addresses changed (the adapter's host moved): re-register at once, tell the peers. */
  moved(...args: Parameters<NodeLifecycle['moved']>): void {
    this.life.moved(...args);
  }

  /** DNS: the addresses of an overlay FQDN; starts route selection and the tunnel. */
  resolve(fqdn: string): Promise<{ vip4: string; vip6: string } | null> {
    return this.life.resolve(fqdn);
  }

  /** The host end of its engine's packet pair while it is open (for the LAN fast path), else null. */
  deviceFd(): number | null {
    return this.host?.descriptor ?? null;
  }

  /** Whether that pair carries a virtio_net_hdr before every datagram (the engine runs with offloads). */
  deviceVnet(): boolean {
    return this.host?.vnet ?? false;
  }

  /** An IP packet from the device into the overlay: the engine routes it by its destination. */
  sendPacket(_dst: string, packet: Buffer): void {
    const host = this.life.dataplane?.host;
    if (!host) this.counters.inc('tx.not-ready');
    else if (!host.write(packet)) this.counters.inc('tx.device-full');
  }

  status(): GeneralNodeStatus {
    const st = this.life.status();
    return {
      name: this.init.name,
      mac: this.init.mac,
      nodeId: st.nodeId || null,
      fqdn: st.fqdn || null,
      registered: st.registered,
      nat: st.nat,
      observed: st.observed,
      commonKeyExpiresAt: st.commonKeyExpiresAt,
      peers: st.peers,
      counters: { ...st.counters, ...this.counters.toJSON(), ...(this.host?.refusedGso ? { 'rx.device-gso-refused': this.host.refusedGso } : {}) },
    };
  }

  /** A path keepalive: a small UDP packet from our virtual address to the peer's discard port, sealed by the engine. */
  private pathKeepalive(peer: { vip4: string; vip6: string }): void {
    const own = this.life.session;
    const [src, dst] = own?.vip4 && peer.vip4 ? [own.vip4, peer.vip4] : own?.vip6 && peer.vip6 ? [own.vip6, peer.vip6] : [null, null];
    if (!src || !dst) return;
    const packet = buildUdp({ src, dst, srcPort: KEEPALIVE_SRC_PORT, dstPort: DISCARD_PORT, payload: Buffer.from([0]) });
    if (this.life.dataplane?.host?.write(packet)) this.counters.inc('tx.path-keepalive');
  }

  /** Enrollment strategy of a general node: key pair made and kept here, certificate through the adapter's mTLS identity. */
  private async enroll(): Promise<Identity> {
    let keyPem: string;
    if (this.state.hasKey()) keyPem = this.state.readKey();
    else {
      keyPem = (await generateKeyPair()).privateKeyPem;
      this.state.writeKey(keyPem);
    }
    const csr = await createCsr(keyPem, this.init.name);
    const a = this.adapter;
    const res = await enrollGeneral({ endpoints: a.as, rootPem: a.rootPem, certPem: a.certPem, chainPem: a.chainPem, keyPem: a.keyPem, name: this.init.name, csr });
    const identity: Identity = { name: res.name, nodeId: res.nodeId, fqdn: res.fqdn, as: a.as, caFingerprint: fingerprint(a.rootPem) };
    this.state.writeEnrollment(toPem(res.certificate), res.chain.map((d) => toPem(d)).join(''), a.rootPem, identity);
    this.logger.info('general node enrolled', { node: this.init.name, nodeId: res.nodeId });
    return identity;
  }
}
