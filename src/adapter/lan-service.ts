// The adapter's LAN service: every frame from the LAN goes through the classifier (deck slide 28) and on to the
// piece that serves it; what comes back from the overlay is framed for the general node's MAC.
//
//   frame ─► classify ─┬─ arp / ns ──► ARP / ND proxy (peers' virtual addresses → the adapter's MAC)
//                      ├─ dhcp4 ─────► Dhcp4Server (vip4, router/DNS = the adapter's vip4)
//                      ├─ rs ────────► RouterAdvertiser (M=1, O=1, unicast answer or earlier multicast RA)
//                      ├─ dhcp6 ─────► Dhcp6Server (IA_NA = vip6, DNS = the adapter's vip6, search = domain)
//                      ├─ dns ───────► LanDns (overlay names through that general node's route selection)
//                      ├─ mld ───────► MldListener (a querier asks: report the groups below)
//                      ├─ overlay ───► MTU (mtu.ts) ─► that general node's agent: into its engine, sealed to the peer
//                      │                 (source checked: its lease)
//                      │   (the IP fast path carries the plain TCP/UDP packets to known peers before this, on the reader
//                      │    thread: syncFastPath gives it the leases, pairs and peers; see native/lan_fast.c)
//                      └─ drop ──────► counted as lan.drop.<reason>
//   agent.onPacket(ip) ─► dst must be that general node's vip ─► MTU ─► Ethernet to its MAC
//
// MTU: the overlay and the LAN carry packets of at most LAN_MTU, whatever a device's own MTU (it may ignore the
// DHCP/RA MTU). Both ways, as a router: TCP SYNs get their MSS clamped; a longer packet gets an ICMP
// "fragmentation needed" (IPv4 with DF) or ICMPv6 "packet too big" back to its source, or is fragmented (IPv4
// without DF). Counted as mtu.*.out (from the LAN) and mtu.*.in (toward it).
//
// MLD (for switches that snoop, RFC 4541): the adapter listens to ff02::2 (RS), ff02::1:2 (DHCPv6) and the
// solicited-node groups of its link-local and vip6 from start to stop, plus those of known peers (KnownPeers: a
// peer address answered by the LAN DNS, seen as the source of an overlay packet to a general node, or as the
// destination of one from it), joined before the answer or packet goes out, left when idle. The ND proxy answers
// a DAD probe only for the adapter's own and known peers' addresses.
//
// Leases live in a MemoryLeaseTable saved to STATE/leases.json on every change (atomic write), so they survive
// kill -9. Timers: the periodic RA schedule and lease expiry.

import { contains, normalizeAddress, parseCidr } from '../net/addr/cidr.js';
import {
  answerArp,
  answerNs,
  ALL_DHCP_SERVERS6,
  ALL_ROUTERS6,
  buildUdp,
  classify,
  dhcp4ReplyFrame,
  dhcp6ReplyFrame,
  Dhcp4Server,
  Dhcp6Server,
  DNS_PORT,
  encodeEthernet,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  KnownPeers,
  linkLocalFromMac,
  MemoryLeaseTable,
  MldListener,
  solicitedNodeAddress,
  RouterAdvertiser,
  saveLeaseFile,
  LEASE_FILE_VERSION,
  clampMss,
  fitMtu,
  type ClassifyContext,
  type GeneralNode,
  type LanPacket,
  type ProxyContext,
} from './lan/index.js';
import { Budgets } from '../util/budget.js';
import { Counters, prefixed } from '../util/counters.js';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { LanDns, type OverlayLookup } from './lan-dns.js';
import type { LanLink } from './lan-port.js';
import { ipText } from './lan/wire.js';
import type { HostPort } from '../net/dns/resolver.js';

/** Tunable: the general nodes' link MTU (DHCPv4 option 26, RA MTU): 1400 + capsule and UDP/IPv6 headers < 1500. */
export const LAN_MTU = 1400;
/** Tunable: how often expired leases are dropped (ms). */
const EXPIRE_EVERY_MS = 10_000;
/**
 * Tunable: DHCP messages (v4 and v6 together) handled per source MAC. A client sends a handful per exchange and
 * renews every half lease; a flood from one MAC (each REQUEST would rebind and save the lease table) is dropped and
 * counted (`lan.drop.dhcp-rate`).
 */
export const DHCP_RATE = { perSec: 10, burst: 20 } as const;
/** Tunable: MACs with a DHCP budget tracked at once (bounded memory). */
const DHCP_BUDGET_MACS = 4096;
/**
 * Tunable: ICMP errors (fragmentation needed / packet too big) sent per general node and direction, as routers
 * rate-limit them (RFC 1812 §4.3.2.8, RFC 4443 §2.4(f)); past it the oversize packet is dropped and counted.
 */
export const ICMP_ERROR_RATE = { perSec: 100, burst: 200 } as const;

/** What the LAN service needs from one general node's overlay side (GeneralNodeAgent, or a test double). */
export interface GeneralNodePort {
  /** Set by attach(): an IP packet the general node's engine opened for the device (checked and framed here). */
  onPacket: (packet: Buffer) => void;
  /** An IP packet from the device to the overlay address `dst`; handed on before the call returns. */
  sendPacket(dst: string, packet: Buffer): void;
  resolve: OverlayLookup;
  /** The host end of its engine's packet pair while open (the IP fast path writes into it), else null. */
  deviceFd?(): number | null;
  /** That pair carries a virtio_net_hdr before every datagram (its engine has offloads). */
  deviceVnet?(): boolean;
  /** Set by attach(): deviceFd() changed. */
  onDevice?: () => void;
}

export interface LanServiceInit {
  /** The adapter's own virtual addresses: DHCP server, router and DNS address on the LAN. */
  vip4: string;
  vip6: string;
  pool4: string;
  pool6: string;
  domain: string;
  leaseFile: string;
  upstreamDns: HostPort[];
  /** @default 200 (RFC 4861 MaxRtrAdvInterval) */
  raMaxIntervalSec?: number;
  /** @default 3600 */
  leaseTimeSec?: number;
  /**
   * The IP fast path (native/lan_fast.c): plain TCP/UDP packets between general nodes and known peers carried by the
   * reader threads, not this thread. Off: every packet takes the TypeScript path (A/B measurements). @default true
   */
  fastPath?: boolean;
}

export class LanService {
  readonly counters = new Counters();
  readonly leases: MemoryLeaseTable;
  private readonly dhcp4: Dhcp4Server;
  private readonly dhcp6: Dhcp6Server;
  private readonly ra: RouterAdvertiser;
  private readonly dns: LanDns;
  private readonly linkLocal: string;
  private readonly vip4: string;
  private readonly vip6: string;
  private readonly agents = new Map<string, GeneralNodePort>();
  private readonly dhcpBudget = new Budgets<string>(DHCP_RATE, DHCP_BUDGET_MACS);
  private readonly icmpBudget = new Budgets<string>(ICMP_ERROR_RATE, DHCP_BUDGET_MACS);
  private readonly mld: MldListener;
  private readonly peers = new KnownPeers();
  /** Groups joined for as long as the service runs. */
  private readonly fixedGroups: string[];
  private readonly own: Set<string>;
  private readonly ctx: ClassifyContext;
  private readonly proxy: ProxyContext;
  private raTimer: NodeJS.Timeout | null = null;
  private expireTimer: NodeJS.Timeout | null = null;
  /** The fast proxy table last given to the link (addresses joined), to skip unchanged updates. */
  private fastKey = '';
  /** The fast path's table last given to the link, to skip unchanged updates. */
  private fastPathKey = '';

  constructor(
    private readonly init: LanServiceInit,
    private readonly link: LanLink,
    leases: MemoryLeaseTable,
    private readonly logger: Logger,
  ) {
    this.leases = leases;
    this.vip4 = normalizeAddress(init.vip4) ?? init.vip4;
    this.vip6 = normalizeAddress(init.vip6) ?? init.vip6;
    this.linkLocal = linkLocalFromMac(link.mac);
    const mask = maskOf(init.pool4);
    this.dhcp4 = new Dhcp4Server(
      { serverIp: this.vip4, subnetMask: mask, domainName: init.domain, mtu: LAN_MTU, ...(init.leaseTimeSec ? { leaseTimeSec: init.leaseTimeSec } : {}) },
      { leases, counters: this.counters, log: logger },
    );
    this.dhcp6 = new Dhcp6Server({ adapterMac: link.mac, dnsServers: [this.vip6], domainList: [init.domain] }, { leases, counters: this.counters, log: logger });
    this.ra = new RouterAdvertiser({
      adapterMac: link.mac,
      linkLocal: this.linkLocal,
      dnsServers: [this.vip6],
      domains: [init.domain],
      mtu: LAN_MTU,
      onLinkPrefix: init.pool6,
      ...(init.raMaxIntervalSec ? { maxIntervalSec: init.raMaxIntervalSec } : {}),
    });
    this.dns = new LanDns(init.domain, init.upstreamDns);
    const own = (this.own = new Set([this.vip4, this.vip6, this.linkLocal]));
    this.mld = new MldListener({ mac: link.mac, linkLocal: this.linkLocal, send: (f) => link.send(f), counters: this.counters });
    this.fixedGroups = [...new Set([ALL_ROUTERS6, ALL_DHCP_SERVERS6, solicitedNodeAddress(this.linkLocal), solicitedNodeAddress(this.vip6)])];
    const inPools = (a: string): boolean => safeContains(init.pool4, a) || safeContains(init.pool6, a);
    this.ctx = {
      adapterMac: link.mac,
      isAdapterAddress: (a) => own.has(a),
      isOverlay: (a) => inPools(a) && !own.has(a) && leases.holderOf(a) === undefined,
      leasedAddress: (mac, family) => leases.active(mac, family, Date.now()),
    };
    this.proxy = {
      adapterMac: link.mac,
      isProxied: (a) => own.has(a) || inPools(a),
      holderOf: (a) => leases.holderOf(a),
      isDefended: (a) => own.has(a) || this.peers.has(a),
      isRouter: (a) => a === this.vip6 || a === this.linkLocal,
      counters: this.counters,
    };
    link.onFrames = (frames) => {
      for (const f of frames) this.onFrame(f);
    };
  }

  start(): void {
    this.mld.join(this.fixedGroups);
    this.ra.start(Date.now());
    this.scheduleRa();
    this.syncFastProxy();
    this.expireTimer = setInterval(() => {
      const now = Date.now();
      // Peers the fast path carried packets to or from are in use, as notePeer would have recorded per packet.
      for (const a of this.link.takeFastHits?.() ?? []) this.peers.touch(a, now);
      this.leases.expire(now);
      this.leaveGroups(this.peers.expire(now));
      this.syncFastProxy();
    }, EXPIRE_EVERY_MS);
    this.expireTimer.unref();
  }

  stop(): void {
    if (this.raTimer) clearTimeout(this.raTimer);
    if (this.expireTimer) clearInterval(this.expireTimer);
    this.raTimer = this.expireTimer = null;
    this.mld.stop();
  }

  /** The multicast groups the adapter listens to now (MLD). */
  groups(): string[] {
    return this.mld.joined();
  }

  /**
   * `a` (canonical text) is a peer's virtual address in use by a general node here (DNS answer, overlay packet): remembered,
   * and its solicited-node group joined at once — before the frame that makes the device ask for it goes out.
   */
  private notePeer(a: string | null | undefined): void {
    if (!a) return;
    const now = Date.now();
    if (this.peers.touch(a, now)) return; // per packet: a known peer is only refreshed
    if (this.own.has(a) || !this.ctx.isOverlay(a)) return;
    const { join, left } = this.peers.note(a, now);
    this.leaveGroups(left);
    if (join) this.mld.join([join]);
    this.syncFastProxy();
  }

  /**
   * Gives the link's fast proxy (the LAN reader thread) the addresses a plain solicitation is answered for: the
   * adapter's own and the known peers', never one a device here holds — the same answers the TypeScript proxy gives,
   * without a trip to this thread. Called whenever the peers or the leases may have changed.
   */
  private syncFastProxy(): void {
    this.syncFastPath();
    if (!this.link.setFastProxy) return;
    const entries = [...this.own, ...this.peers.addresses()]
      .filter((a) => this.leases.holderOf(a) === undefined && this.proxy.isProxied(a))
      .map((a) => ({ address: a, router: this.proxy.isRouter?.(a) ?? false }));
    const key = entries.map((e) => e.address).join(',');
    if (key === this.fastKey) return;
    this.fastKey = key;
    try {
      this.link.setFastProxy(entries);
    } catch (err) {
      this.counters.inc('proxy.fast.set-errors');
      this.logger.warn('fast proxy table refused', { err: describeError(err) });
    }
  }

  /**
   * Gives the link's IP fast path (the reader threads) what it may carry without this thread: per general node with a
   * running engine its MAC, pair, unexpired leases (the only sources accepted: the anti-spoof rule) and virtual
   * addresses (the only destinations from its engine), and the known peers (the only other ends, so notePeer's MLD
   * joins have happened). Everything else still comes here. Called with syncFastProxy, and when an engine starts or stops.
   */
  private syncFastPath(): void {
    if (!this.link.setFastPath || this.init.fastPath === false) return;
    const now = Date.now();
    const nodes = [];
    for (const [mac, agent] of this.agents) {
      const pairFd = agent.deviceFd?.() ?? null;
      const node = this.leases.node(mac);
      if (pairFd === null || !node) continue;
      const lease = (family: 4 | 6): { address: string; expiresAt: number } | null => {
        const l = this.leases.lease(mac, family);
        return l && l.expiresAt > now && this.leases.active(mac, family, now) === l.address ? { address: l.address, expiresAt: l.expiresAt } : null;
      };
      nodes.push({ mac, pairFd, pairVnet: agent.deviceVnet?.() ?? false, lease4: lease(4), lease6: lease(6), vip4: node.vip4 ?? null, vip6: node.vip6 ?? null });
    }
    const peers = this.peers.addresses().filter((a) => !this.own.has(a) && this.ctx.isOverlay(a));
    const key = JSON.stringify([nodes, peers]);
    if (key === this.fastPathKey) return;
    this.fastPathKey = key;
    try {
      this.link.setFastPath({ nodes, peers });
    } catch (err) {
      this.fastPathKey = '';
      this.counters.inc('lan.fast.set-errors');
      this.logger.warn('fast path table refused', { err: describeError(err) });
    }
  }

  private leaveGroups(groups: string[]): void {
    const fixed = new Set(this.fixedGroups);
    const gone = groups.filter((g) => !fixed.has(g));
    if (gone.length) this.mld.leave(gone);
  }

  /** Attaches (or detaches, with null) the overlay side of the general node with this MAC. */
  attach(mac: string, agent: GeneralNodePort | null): void {
    if (!agent) {
      this.agents.delete(mac);
      this.syncFastPath();
      return;
    }
    this.agents.set(mac, agent);
    agent.onPacket = (packet) => this.toLan(mac, packet);
    agent.onDevice = () => this.syncFastPath();
    this.syncFastPath();
  }

  /** The general nodes known now (from the AS), replacing the list; leases of vanished nodes are dropped. */
  setNodes(nodes: GeneralNode[]): void {
    this.leases.setNodes(nodes);
    this.syncFastProxy();
  }

  lanCounters(): Record<string, number> {
    return { ...this.link.counters?.(), ...this.counters.toJSON(), ...prefixed('dns.', this.dns.counters.toJSON()) };
  }

  private scheduleRa(): void {
    if (this.raTimer) clearTimeout(this.raTimer);
    const wait = Math.max(0, this.ra.dueAt - Date.now());
    this.raTimer = setTimeout(() => {
      this.link.send(this.ra.frame());
      this.counters.inc('ra.multicast');
      this.ra.sentMulticast(Date.now());
      this.scheduleRa();
    }, wait);
    this.raTimer.unref();
  }

  /** One frame from the LAN. Never throws. */
  onFrame(bytes: Buffer): void {
    let p: LanPacket;
    try {
      p = classify(bytes, this.ctx);
    } catch (err) {
      this.counters.inc('lan.drop.bug');
      this.logger.error('classifier threw', { err: describeError(err) });
      return;
    }
    try {
      this.dispatch(p);
    } catch (err) {
      // Anything the servers refuse past the classifier (e.g. a DecodeError deep in an option) is a counted drop.
      this.counters.inc(`lan.drop.refused.${p.kind}`);
      this.logger.debug('LAN packet refused', { kind: p.kind, err: describeError(err) });
    }
  }

  private dispatch(p: LanPacket): void {
    const now = Date.now();
    switch (p.kind) {
      case 'drop':
        this.counters.inc(`lan.drop.${p.reason}`);
        if (p.code) this.counters.inc(`lan.drop.${p.reason}.${p.code}`);
        return;
      case 'arp': {
        const reply = answerArp({ frame: p.frame, arp: p.arp }, this.proxy);
        if (reply) this.link.send(reply);
        return;
      }
      case 'ns': {
        const reply = answerNs({ frame: p.frame, ip: p.ip, ns: p.ns }, this.proxy);
        if (reply) this.link.send(reply);
        return;
      }
      case 'mld':
        this.mld.onQuery(p.query);
        return;
      case 'rs': {
        const a = this.ra.solicited(now, p.ip.src, p.rs.options.sourceLinkAddr ?? p.frame.src);
        this.counters.inc(`ra.solicited.${a.kind}`);
        if (a.kind === 'unicast') this.link.send(this.ra.frame({ ip: a.ip, mac: a.mac }));
        else if (a.kind === 'multicast') this.scheduleRa();
        return;
      }
      case 'dhcp4': {
        if (!this.dhcpBudget.take(p.frame.src, now)) return this.counters.inc('lan.drop.dhcp-rate');
        const reply = this.dhcp4.handle(p.message, p.frame.src, now, p.ip.src);
        this.syncFastProxy(); // a lease taken is never proxied, from before the device learns it
        if (reply) this.link.send(dhcp4ReplyFrame(reply, p.message, { adapterMac: this.link.mac, serverIp: this.vip4 }));
        return;
      }
      case 'dhcp6': {
        if (!this.dhcpBudget.take(p.frame.src, now)) return this.counters.inc('lan.drop.dhcp-rate');
        const reply = this.dhcp6.handle(p.message, p.frame.src, now);
        this.syncFastProxy();
        if (reply) this.link.send(dhcp6ReplyFrame(reply, { ip: p.ip.src, mac: p.frame.src }, { adapterMac: this.link.mac, linkLocal: this.linkLocal }));
        return;
      }
      case 'dns': {
        if (p.transport !== 'udp' || !p.payload) {
          this.counters.inc('lan.drop.dns-tcp');
          return;
        }
        const agent = this.agents.get(p.frame.src);
        const { frame, ip, srcPort } = p;
        const lookup = agent
          ? (n: string): ReturnType<GeneralNodePort['resolve']> =>
              agent.resolve(n).then((r) => {
                this.notePeer(r?.vip6 ? normalizeAddress(r.vip6) : null);
                this.notePeer(r?.vip4 ? normalizeAddress(r.vip4) : null);
                return r;
              })
          : null;
        void this.dns.answer(p.payload, lookup).then((res) => {
          if (!res) return;
          const packet = buildUdp({ src: ip.dst, dst: ip.src, srcPort: DNS_PORT, dstPort: srcPort, payload: res });
          this.link.send(encodeEthernet({ dst: frame.src, src: this.link.mac, ethertype: ip.version === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6, payload: packet }));
        });
        return;
      }
      case 'overlay': {
        const agent = this.agents.get(p.frame.src);
        if (!agent) {
          this.counters.inc('lan.drop.no-agent');
          return;
        }
        this.counters.inc('lan.overlay.out');
        this.notePeer(p.dst);
        const packet = Buffer.from(p.packet);
        if (clampMss(packet, LAN_MTU)) this.counters.inc('mtu.mss-clamped.out');
        const fit = fitMtu(packet, LAN_MTU, p.family === 4 ? this.vip4 : this.vip6);
        switch (fit.kind) {
          case 'fits':
            agent.sendPacket(p.dst, packet);
            return;
          case 'fragments':
            this.counters.inc('mtu.fragmented.out');
            for (const f of fit.packets) agent.sendPacket(p.dst, f);
            return;
          case 'too-big':
            if (!this.icmpBudget.take(`out ${p.frame.src}`, now)) return this.counters.inc('mtu.drop.out.rate-limited');
            this.counters.inc(`mtu.too-big.out.v${p.family}`);
            this.link.send(encodeEthernet({ dst: p.frame.src, src: this.link.mac, ethertype: p.family === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6, payload: fit.reply }));
            return;
          case 'drop':
            this.counters.inc(`mtu.drop.out.${fit.reason}`);
            return;
        }
        return;
      }
    }
  }

  /** A packet from the overlay for the general node `mac`: only to its own virtual address. */
  private toLan(mac: string, packet: Buffer): void {
    const node = this.leases.node(mac);
    const v = packet.length > 0 ? packet[0]! >> 4 : 0;
    let dst: string | null = null;
    if (v === 4 && packet.length >= 20) dst = `${packet[16]}.${packet[17]}.${packet[18]}.${packet[19]}`;
    else if (v === 6 && packet.length >= 40) dst = normalizeAddress(ip6Text(packet.subarray(24, 40)));
    if (!node || !dst || (dst !== node.vip4 && dst !== node.vip6)) {
      this.counters.inc('lan.in.refused');
      return;
    }
    this.counters.inc('lan.overlay.in');
    // MLD wiring: the source's solicited-node group is joined before the device, answering, asks for it.
    const src = v === 4 ? `${packet[12]}.${packet[13]}.${packet[14]}.${packet[15]}` : ipText(packet, 8, 16);
    this.notePeer(src);
    const frame = (payload: Buffer): void => this.link.send(encodeEthernet({ dst: mac, src: this.link.mac, ethertype: v === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6, payload }));
    if (clampMss(packet, LAN_MTU)) this.counters.inc('mtu.mss-clamped.in');
    // An ICMP error about a packet from the overlay goes back into it, from the device's address (the only source
    // the peer's engine accepts from this general node).
    const fit = fitMtu(packet, LAN_MTU, dst);
    switch (fit.kind) {
      case 'fits':
        frame(packet);
        return;
      case 'fragments':
        this.counters.inc('mtu.fragmented.in');
        for (const f of fit.packets) frame(f);
        return;
      case 'too-big':
        if (!this.icmpBudget.take(`in ${mac}`, Date.now())) return this.counters.inc('mtu.drop.in.rate-limited');
        this.counters.inc(`mtu.too-big.in.v${v}`);
        this.agents.get(mac)?.sendPacket(src, fit.reply);
        return;
      case 'drop':
        this.counters.inc(`mtu.drop.in.${fit.reason}`);
        return;
    }
  }
}

/** Saves the lease table (nodes and leases) as STATE/leases.json. */
export function persistLeases(path: string, table: MemoryLeaseTable): void {
  saveLeaseFile(path, { version: LEASE_FILE_VERSION, nodes: table.nodes(), leases: table.leases() });
}

function maskOf(pool4: string): string {
  const len = parseCidr(pool4).prefix;
  const m = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return [m >>> 24, (m >>> 16) & 255, (m >>> 8) & 255, m & 255].join('.');
}

function safeContains(cidr: string, a: string): boolean {
  try {
    return contains(cidr, a);
  } catch {
    return false;
  }
}

function ip6Text(b: Uint8Array): string {
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return parts.join(':');
}

