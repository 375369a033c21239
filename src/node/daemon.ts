// The node daemon: a node with a TUN. The lifecycle every node shares — enrollment, login, NMS registration and
// keepalives, recovery (lost replies, a restarted cloud, an expired or forgotten Common Key, moves), the components
// and datagram dispatch — is NodeLifecycle (src/node/lifecycle.ts), with the token as enrollment strategy. What
// is the daemon's own: the device (TUN + C engine, or a plain UDP socket with `tun: false`), the overlay DNS
// resolver on the virtual addresses, path keepalives through the kernel, the netlink address watcher that wakes
// the lifecycle on moves, and the control socket.
//
//   start ─► enroll (first run: key pair + CSR, token) ─► login ─► TUN + engine + DNS ─► register ─► keepalive loop
//                                                          ▲ (lifecycle.ts)                  │
//                                                          └─── key refused / no NMS / moved ─┘

import dgram from 'node:dgram';
import { createCsr, generateKeyPair, toPem } from '../crypto/index.js';
import { createResolver, readSystemUpstreams, type Resolver } from '../net/dns/resolver.js';
import { DataPlane, type DatagramPort } from './dataplane/dataplane.js';
import { decodeToken, type EnrollmentToken } from '../config/token.js';
import type { Endpoint } from '../protocol/endpoint.js';
import { mapForDualStack, unmapV4 } from '../util/addr.js';
import { prefixed } from '../util/counters.js';
import { serveControl, type ControlServer } from '../util/control.js';
import { ConfigError, describeError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { enroll } from './as-client.js';
import { NodeLifecycle, type LifecycleStatus, type NodePort } from './lifecycle.js';
import { StateDir, type Identity, type Session } from './state.js';
import { AddressWatcher, type LocalAddress } from '../net/route/watch.js';

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

export interface NodeStatus extends LifecycleStatus {
  dns: string | null;
  tun: string | null;
}

export class NodeDaemon {
  private readonly state: StateDir;
  private readonly life: NodeLifecycle;
  private resolver: Resolver | null = null;
  private control: ControlServer | null = null;
  private watcher: AddressWatcher | null = null;
  private keepaliveSock: dgram.Socket | null = null;
  /** Told about every move of this host's addresses after the node itself (the adapter wakes its general nodes). */
  readonly moveListeners: ((addrs: LocalAddress[], at: number) => void)[] = [];
  /** Told when the NMS says this node's general-node list changed (the adapter fetches it at once). */
  readonly generalNodeListeners: (() => void)[] = [];

  constructor(
    private readonly init: NodeInit,
    private readonly logger: Logger,
  ) {
    this.state = new StateDir(init.stateDir);
    this.life = new NodeLifecycle(
      {
        state: this.state,
        enroll: () => this.enroll(),
        retryEnrollment: false,
        ...(init.cloud?.length ? { as: init.cloud } : {}),
        openPort: (s) => this.openPort(s),
        pathKeepalive: (peer) => this.pathKeepalive(peer.vip4),
        excludeInterface: () => this.life.dataplane?.tunName ?? null,
        onGeneralNodes: () => {
          for (const l of this.generalNodeListeners) l();
        },
        ...(init.reloginMarginMs !== undefined ? { reloginMarginMs: init.reloginMarginMs } : {}),
        ...(init.rekeyAfterMs ? { rekeyAfterMs: init.rekeyAfterMs } : {}),
        ...(init.rejectAfterMs ? { rejectAfterMs: init.rejectAfterMs } : {}),
        ...(init.pathKeepaliveMs ? { pathKeepaliveMs: init.pathKeepaliveMs } : {}),
        ...(init.punchRetryMs ? { punchRetryMs: init.punchRetryMs } : {}),
      },
      logger,
    );
  }

  async start(): Promise<void> {
    await this.life.start();
    if (this.life.stopped) return;
    await this.startWatcher();
    this.control = await serveControl(this.state.controlPath, { '/status': () => this.status(), '/netcheck': () => this.life.netcheck() });
  }

  /** The device: TUN + engine + overlay DNS, or only a UDP socket (`tun: false`). */
  private async openPort(s: Session): Promise<NodePort> {
    if (this.init.tun === false) return { port: await DgramPort.open(this.init.port ?? 30000), dataplane: null };
    const dp = await DataPlane.open(
      {
        device: { kind: 'tun', name: this.init.tunName, vip4: s.vip4, vip6: s.vip6, pool4: s.pool4 ?? '100.64.0.0/10', pool6: s.pool6 ?? `${s.vip6}/64` },
        port: this.init.port ?? 30000,
        offload: this.init.offload !== false,
      },
      this.logger.child({ component: 'dataplane' }),
    );
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
        lookup: (name) => this.life.resolve(`${name}.${domain}`),
        logger: this.logger.child({ component: 'dns' }),
      },
    );
    try {
      await resolver.start();
    } catch (err) {
      await dp.close();
      throw err;
    }
    this.resolver = resolver;
    this.logger.info('data plane up', { tun: dp.tunName, vip4: s.vip4, vip6: s.vip6, dns: s.vip4, offload: dp.offload });
    return { port: dp, dataplane: dp };
  }

  /**
   * A path keepalive: one byte of UDP to the peer's discard port over the overlay, so the data plane seals it with
   * the End Key like any packet; the peer's kernel answers (port unreachable) through the tunnel too.
   */
  private pathKeepalive(vip4: string): void {
    if (!this.keepaliveSock) {
      this.keepaliveSock = dgram.createSocket('udp4');
      this.keepaliveSock.on('error', () => {});
      this.keepaliveSock.unref();
    }
    this.keepaliveSock.send(Buffer.from([0]), 9, vip4);
  }

  /** Mobility: the netlink address watcher wakes the lifecycle on every move (see lifecycle.ts, mobility.ts). */
  private async startWatcher(): Promise<void> {
    if (this.init.watchAddresses === false) return;
    const vips = new Set([this.life.session?.vip4, this.life.session?.vip6]);
    const watcher = new AddressWatcher({ exclude: (ifname, address) => vips.has(address) || ifname === this.life.dataplane?.tunName });
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

  private onAddressChange(addrs: LocalAddress[], at: number): void {
    this.logger.info('addresses changed', { addrs: addrs.map((a) => a.address), v4: addrs.some((a) => a.family === 4), v6: addrs.some((a) => a.family === 6) });
    this.life.moved(addrs, at);
    for (const l of this.moveListeners) l(addrs, at);
  }

  /** Addresses this host has now, with our port: what the NMS compares its observation against. */
  localEndpoints(): Endpoint[] {
    return this.life.localEndpoints();
  }

  async stop(): Promise<void> {
    this.watcher?.stop();
    await this.life.stop();
    await this.control?.close();
    this.keepaliveSock?.close();
    this.keepaliveSock = null;
    await this.resolver?.stop();
  }

  status(): NodeStatus {
    const st = this.life.status();
    return {
      ...st,
      dns: this.resolver ? this.life.session?.vip4 ?? null : null,
      tun: this.life.dataplane?.tunName ?? null,
      counters: { ...st.counters, ...prefixed('dns.', this.resolver?.counters.toJSON()) },
    };
  }

  /** Enrollment strategy of a node: a key pair and CSR made here (the private key never leaves DIR), the token traded for a certificate. */
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

  /** Never throws (a bad port or address from a peer's message must not escape into a handler). */
  send(datagram: Buffer, to: Endpoint): void {
    try {
      this.sock.send(datagram, to.port, this.dualStack ? mapForDualStack(to.address) : to.address);
    } catch {
      /* counted by the caller's protocol (retransmission), never fatal */
    }
  }

  close(): Promise<void> {
    return new Promise((r) => this.sock.close(() => r()));
  }
}
