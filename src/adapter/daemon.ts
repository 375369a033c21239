// The adapter daemon (`cyphonic adapter up`): brings devices that cannot run cyphonic ("general nodes") into the
// overlay. The adapter is itself a node (NodeDaemon: enrollment, login, registration, TUN, its own DNS); on top:
//
//   start ─► NodeDaemon.start ─► own the LAN iface (nftables: the kernel neither answers nor forwards there)
//         ─► packet socket on --lan ─► LanService (DHCPv4/v6, RA, ARP/ND proxy, DNS, classifier)
//         ─► at once when the NMS pushes "general nodes changed" (PolicyUpdate.generalNodes), and every INFO_INTERVAL
//            as a fallback: InfoRequest → general nodes → one GeneralNodeAgent per node (the same node lifecycle
//            as the adapter's own node: own certificate, login, NMS registration; its own C data-plane engine whose
//            device is a packet pair) attached to the LAN service by MAC; the adapter's address moves wake them all
//
// State (STATE = --state): the node's files, leases.json (DHCP leases, atomic writes), general/NAME/ (each general
// node's key and certificate). Control socket STATE/adapter.sock answers /status for `adapter status`.

import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { readSystemUpstreams } from '../net/dns/resolver.js';
import { info } from '../node/as-client.js';
import { NodeDaemon, type NodeStatus } from '../node/daemon.js';
import { StateDir } from '../node/state.js';
import { serveControl, type ControlServer } from '../util/control.js';
import { CyphonicError, describeError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { GeneralNodeAgent, type AdapterCredentials, type GeneralNodeStatus } from './general-node.js';
import { generalNodeFromInfo, loadLeaseFile, MemoryLeaseTable, type GeneralNode, type Lease } from './lan/index.js';
import { PacketLanPort } from './lan-port.js';
import { LanService, persistLeases } from './lan-service.js';

const run = promisify(execFile);

/**
 * The largest IP packet a general node's engine takes from or gives to its device: a full Ethernet payload. The LAN
 * service holds both directions to LAN_MTU (1400) as a router would (MSS clamping, ICMP errors, fragments:
 * lan/mtu.ts), even for a device that ignores the MTU handed out; the pair stays wider so that whatever the engine
 * hands over reaches that check whole.
 */
const DEVICE_MAX_PACKET = 1500;

/** Tunable: how long a lease renewal (same address, later expiry) may wait before the lease file is written. */
const LEASE_SAVE_DELAY_MS = 5000;

export interface AdapterInit {
  stateDir: string;
  token?: string;
  cloud?: string[];
  /** The LAN interface the general nodes are on. */
  lan: string;
  /** UDP port of the adapter's own node. @default 30000 */
  port?: number;
  tunName?: string;
  /** How often the general-node list is fetched from the AS (ms). @default 30000 */
  infoIntervalMs?: number;
  /** @default 200 */
  raMaxIntervalSec?: number;
  /** Keepalive interval of idle paths through a NAT (ms), for the adapter's node and every general node. @default 20000 */
  pathKeepaliveMs?: number;
  /** The LAN's IP fast path (native/lan_fast.c); false: every packet through the main thread. @default true */
  lanFast?: boolean;
}

export interface GeneralNodeView {
  name: string;
  mac: string;
  fqdn: string | null;
  vip4: string | null;
  vip6: string | null;
  lease: { v4: LeaseView | null; v6: LeaseView | null };
  registered: boolean;
  /** Behind a NAT as the NMS saw its own registration, and the public endpoint it saw (null until registered). */
  nat: boolean | null;
  observed: string | null;
  /** When its Common Key expires (a new one after each login). */
  commonKeyExpiresAt: string | null;
  peers: GeneralNodeStatus['peers'];
  counters: Record<string, number>;
}

interface LeaseView {
  address: string;
  state: 'bound' | 'expired';
  expiresAt: string;
}

export interface AdapterStatus extends NodeStatus {
  lan: string;
  mac: string;
  generalNodes: GeneralNodeView[];
  lanCounters: Record<string, number>;
}

export class AdapterDaemon {
  private readonly node: NodeDaemon;
  private readonly state: StateDir;
  private port: PacketLanPort | null = null;
  private lan: LanService | null = null;
  private readonly agents = new Map<string, GeneralNodeAgent>();
  private control: ControlServer | null = null;
  private timer: NodeJS.Timeout | null = null;
  private nft: string | null = null;
  private refreshing: Promise<void> | null = null;
  private again: Promise<void> | null = null;
  private creds: AdapterCredentials | null = null;
  private pools: string[] = [];
  private leaseTimer: NodeJS.Timeout | null = null;
  private flushLeases: (() => void) | null = null;

  constructor(
    private readonly init: AdapterInit,
    private readonly logger: Logger,
  ) {
    this.state = new StateDir(init.stateDir);
    this.node = new NodeDaemon(
      { stateDir: init.stateDir, ...(init.token ? { token: init.token } : {}), ...(init.cloud ? { cloud: init.cloud } : {}), port: init.port ?? 30000, ...(init.tunName ? { tunName: init.tunName } : {}), ...(init.pathKeepaliveMs ? { pathKeepaliveMs: init.pathKeepaliveMs } : {}) },
      logger.child({ component: 'node' }),
    );
  }

  get controlPath(): string {
    return join(this.init.stateDir, 'adapter.sock');
  }

  /** Starts everything; on a failure after the node came up, stops what started (so the process can exit) and rethrows. */
  async start(): Promise<void> {
    // The general nodes share this host's addresses: a move re-registers them too and tells their peers.
    this.node.moveListeners.push((addrs, at) => {
      for (const a of this.agents.values()) a.moved(addrs, at);
    });
    // The NMS pushes "your general nodes changed": fetch the list now rather than at the next poll.
    this.node.generalNodeListeners.push(() => {
      if (!this.lan) return; // still starting: startLan fetches it
      this.refreshSoon().catch((err: unknown) => this.logger.warn('general node refresh failed', { err: describeError(err) }));
    });
    await this.node.start();
    try {
      await this.startLan();
    } catch (err) {
      await this.stop().catch(() => {});
      throw err;
    }
  }

  private async startLan(): Promise<void> {
    const session = this.state.readSession();
    if (!session) throw new CyphonicError('ERR_STATE', 'the adapter node has no session after start');
    const id = this.state.readIdentity();
    this.creds = {
      as: this.init.cloud?.length ? this.init.cloud : id.as,
      rootPem: this.state.readRoot(),
      certPem: this.state.readCert(),
      chainPem: this.state.readChain(),
      keyPem: this.state.readKey(),
    };
    const pool4 = session.pool4 ?? '100.64.0.0/10';
    const pool6 = session.pool6 ?? `${session.vip6}/64`;
    this.pools = [pool4, pool6];
    await this.ownLan();
    this.port = PacketLanPort.open(this.init.lan);
    const leaseFile = join(this.init.stateDir, 'leases.json');
    let table: MemoryLeaseTable;
    const saveNow = (): void => {
      if (this.leaseTimer) clearTimeout(this.leaseTimer);
      this.leaseTimer = null;
      try {
        persistLeases(leaseFile, table);
      } catch (err) {
        this.logger.error('saving leases failed', { err: describeError(err) });
      }
    };
    this.flushLeases = saveNow;
    // A new binding, a release or a new node list is written at once (kill -9 loses none); a renewal that only
    // moved an expiry waits up to LEASE_SAVE_DELAY_MS, so renewals (or a flood of REQUESTs) cost one write.
    const save = (what: 'change' | 'renewal'): void => {
      if (what === 'change') return saveNow();
      this.leaseTimer ??= setTimeout(saveNow, LEASE_SAVE_DELAY_MS);
    };
    try {
      table = MemoryLeaseTable.fromSnapshot(loadLeaseFile(leaseFile), { onChange: save });
    } catch (err) {
      this.logger.error('lease file unreadable; starting with no leases', { err: describeError(err) });
      table = new MemoryLeaseTable([], { onChange: save });
    }
    this.lan = new LanService(
      {
        vip4: session.vip4,
        vip6: session.vip6,
        pool4,
        pool6,
        domain: session.domain,
        leaseFile,
        upstreamDns: readSystemUpstreams('/etc/resolv.conf', [session.vip4, session.vip6]),
        ...(this.init.raMaxIntervalSec ? { raMaxIntervalSec: this.init.raMaxIntervalSec } : {}),
        ...(this.init.lanFast === false ? { fastPath: false } : {}),
      },
      this.port,
      table,
      this.logger.child({ component: 'lan' }),
    );
    // Devices known from the last run are served at once (their leases too), before the AS answers.
    for (const n of table.nodes()) await this.startAgent(n);
    this.lan.start();
    this.control = await serveControl(this.controlPath, { '/status': () => this.status() });
    await this.refresh().catch((err: unknown) => this.logger.warn('general node list not fetched yet', { err: describeError(err) }));
    this.timer = setInterval(() => void this.refresh().catch((err: unknown) => this.logger.warn('general node refresh failed', { err: describeError(err) })), this.init.infoIntervalMs ?? 30_000);
    this.logger.info('adapter up', { lan: this.init.lan, mac: this.port.mac, vip4: session.vip4, vip6: session.vip6 });
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.refreshing?.catch(() => {});
    await this.control?.close();
    this.lan?.stop();
    if (this.leaseTimer) this.flushLeases?.();
    await Promise.all([...this.agents.values()].map((a) => a.stop()));
    await this.port?.close();
    await this.releaseLan();
    await this.node.stop();
  }

  /** A refresh that starts after any running one (whose InfoRequest may predate the change we were told of). */
  private async refreshSoon(): Promise<void> {
    if (this.refreshing) {
      this.again ??= this.refreshing.catch(() => {}).then(() => {
        this.again = null;
        return this.refresh();
      });
      return this.again;
    }
    return this.refresh();
  }

  /** InfoRequest → the general node list; agents started for new ones and stopped for removed ones. */
  refresh(): Promise<void> {
    if (this.refreshing) return this.refreshing;
    this.refreshing = (async () => {
      const list = (await info({ endpoints: this.creds!.as, ...this.creds! })).map(generalNodeFromInfo);
      this.lan!.setNodes(list);
      const macs = new Set(list.map((n) => n.mac));
      for (const [mac, agent] of this.agents) {
        if (macs.has(mac)) continue;
        this.lan!.attach(mac, null);
        this.agents.delete(mac);
        await agent.stop();
        // Removed at the cloud (its record and certificate are gone): its key and certificate are of no further use,
        // and a general node defined later under the same name must enroll afresh.
        rmSync(agent.init.dir, { recursive: true, force: true });
        this.logger.info('general node removed', { node: agent.init.name, mac });
      }
      for (const n of list) if (!this.agents.has(n.mac)) await this.startAgent(n);
    })().finally(() => (this.refreshing = null));
    return this.refreshing;
  }

  private async startAgent(n: GeneralNode): Promise<void> {
    const agent = new GeneralNodeAgent(
      { name: n.name, mac: n.mac, dir: join(this.init.stateDir, 'general', n.name), pools: this.pools, mtu: DEVICE_MAX_PACKET, ...(this.init.pathKeepaliveMs ? { pathKeepaliveMs: this.init.pathKeepaliveMs } : {}) },
      this.creds!,
      this.logger.child({ component: 'general', node: n.name }),
    );
    await agent.start();
    this.agents.set(n.mac, agent);
    this.lan!.attach(n.mac, agent);
    this.logger.info('general node served', { node: n.name, mac: n.mac, vip4: n.vip4 ?? null, vip6: n.vip6 ?? null });
  }

  status(): AdapterStatus {
    const now = Date.now();
    const view = (l: Lease | undefined): LeaseView | null =>
      l ? { address: l.address, state: l.expiresAt > now ? 'bound' : 'expired', expiresAt: new Date(l.expiresAt).toISOString() } : null;
    const table = this.lan?.leases;
    const generalNodes: GeneralNodeView[] = (table?.nodes() ?? []).map((n) => {
      const st = this.agents.get(n.mac)?.status();
      return {
        name: n.name,
        mac: n.mac,
        fqdn: n.fqdn ?? null,
        vip4: n.vip4 ?? null,
        vip6: n.vip6 ?? null,
        lease: { v4: view(table!.lease(n.mac, 4)), v6: view(table!.lease(n.mac, 6)) },
        registered: st?.registered ?? false,
        nat: st?.nat ?? null,
        observed: st?.observed ?? null,
        commonKeyExpiresAt: st?.commonKeyExpiresAt ?? null,
        peers: st?.peers ?? [],
        counters: st?.counters ?? {},
      };
    });
    return { ...this.node.status(), lan: this.init.lan, mac: this.port?.mac ?? '', generalNodes, lanCounters: this.lan?.lanCounters() ?? {} };
  }

  /**
   * The adapter owns the LAN interface: an nftables table drops IP input and forwarding and ARP input there, so the
   * kernel neither answers (ARP for the adapter's virtual address, ICMP, DNS on its TUN address) nor routes what the
   * general nodes send; the packet socket still sees every frame. Removed on stop; a stale one is replaced at start.
   */
  private async ownLan(): Promise<void> {
    const name = `cyphonic_adapter_${this.init.lan.replace(/[^A-Za-z0-9_]/g, '_')}`;
    const ifname = JSON.stringify(this.init.lan);
    await run('nft', ['delete', 'table', 'inet', name]).catch(() => {});
    await run('nft', ['delete', 'table', 'arp', name]).catch(() => {});
    const rules = [
      `table inet ${name} {`,
      `  chain input { type filter hook input priority -300; policy accept; iifname ${ifname} counter drop; }`,
      `  chain forward { type filter hook forward priority -300; policy accept; iifname ${ifname} counter drop; }`,
      `}`,
      `table arp ${name} {`,
      `  chain input { type filter hook input priority -300; policy accept; iifname ${ifname} counter drop; }`,
      `}`,
    ].join('\n');
    const child = execFile('nft', ['-f', '-']);
    const done = new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
      child.on('close', (code) => (code === 0 ? resolve() : reject(new CyphonicError('ERR_NFT', `nft failed: ${err.trim()}`))));
      child.on('error', reject);
    });
    child.stdin?.end(rules + '\n');
    await done;
    this.nft = name;
  }

  private async releaseLan(): Promise<void> {
    if (!this.nft) return;
    await run('nft', ['delete', 'table', 'inet', this.nft]).catch(() => {});
    await run('nft', ['delete', 'table', 'arp', this.nft]).catch(() => {});
    this.nft = null;
  }
}

/** What `adapter status` shows while the adapter is not running: identity, saved session, general nodes and leases. */
export function offlineAdapterStatus(stateDir: string): AdapterStatus {
  const state = new StateDir(stateDir);
  const id = state.readIdentity();
  const s = state.readSession();
  let snap: ReturnType<typeof loadLeaseFile> = { version: 1, nodes: [], leases: [] };
  try {
    snap = loadLeaseFile(join(stateDir, 'leases.json'));
  } catch {
    /* a damaged lease file shows as no general nodes */
  }
  const now = Date.now();
  const lease = (mac: string, family: 4 | 6): LeaseView | null => {
    const l = snap.leases.find((x) => x.mac === mac && x.family === family);
    return l ? { address: l.address, state: l.expiresAt > now ? 'bound' : 'expired', expiresAt: new Date(l.expiresAt).toISOString() } : null;
  };
  return {
    name: id.name, nodeId: id.nodeId, fqdn: id.fqdn, vip4: s?.vip4 ?? null, vip6: s?.vip6 ?? null,
    registered: false, nat: null, observed: null, nms: null, keepaliveSec: null,
    commonKeyExpiresAt: s ? new Date(s.expiresAt).toISOString() : null, lastRegistration: null,
    dns: null, tun: null, offload: null, peers: [], counters: {},
    lan: '', mac: '', lanCounters: {},
    generalNodes: snap.nodes.map((n) => ({
      name: n.name, mac: n.mac, fqdn: n.fqdn ?? null, vip4: n.vip4 ?? null, vip6: n.vip6 ?? null,
      lease: { v4: lease(n.mac, 4), v6: lease(n.mac, 6) }, registered: false, nat: null, observed: null, commonKeyExpiresAt: null, peers: [], counters: {},
    })),
  };
}
