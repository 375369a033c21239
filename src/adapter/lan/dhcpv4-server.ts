// The adapter's DHCPv4 server (RFC 2131 §4.3) as a pure state machine: handle(request, clientMac, now)
// → reply or null. Each general node gets its virtual IPv4; router and DNS server are the adapter.
//
//   DISCOVER ─────────────────────────────────────► OFFER  (yiaddr = vip4, nothing recorded yet)
//   REQUEST selecting   (server id = ours)          ► ACK, lease bound   | NAK if requested ≠ vip4
//   REQUEST init-reboot (requested IP, no ciaddr)    ► ACK                | NAK if requested ≠ vip4
//   REQUEST renew/rebind (ciaddr)                    ► ACK, lease extended| NAK if ciaddr ≠ vip4
//   RELEASE (ciaddr = vip4) / DECLINE (requested = vip4) ► lease forgotten, no reply
//   INFORM                                           ► ACK without yiaddr or lease times
//
// Everything else gets null and a counter `dhcp4.ignored.<reason>`: unknown MAC (also logged,
// rate-limited), a node without vip4, relayed or BOOTP messages, chaddr ≠ frame source.
// Deviation from RFC 2131, on purpose: with `authoritative` (default), a known general node's
// REQUEST that names another server is NAKed instead of ignored — its only valid address is its
// virtual one, and a second DHCP server on the general nodes' LAN is a fault or an attack.

import { Counters } from '../../util/counters.js';
import type { Logger } from '../../util/log.js';
import { BOOTREPLY, BOOTREQUEST, DHCP4_CLIENT_PORT, DHCP4_SERVER_PORT, Dhcp4Opt, Dhcp4Type, encodeDhcp4 } from './dhcpv4.js';
import type { Dhcp4Message, Dhcp4Options } from './dhcpv4.js';
import { BROADCAST_MAC, ETHERTYPE_IPV4, encodeEthernet } from './ethernet.js';
import { buildUdp } from './ip.js';
import type { LeaseTable } from './leases.js';
import { Notices } from './notices.js';
import { ip4Bytes } from './wire.js';

/** Tunable: one hour — a removed general node loses its address soon; renewals every 30 min are cheap. */
export const DEFAULT_LEASE4_SEC = 3600;
/** Spec defaults (RFC 2131 §4.4.5): T1 = 0.5 × lease, T2 = 0.875 × lease. */
const T1_RATIO = 0.5;
const T2_RATIO = 0.875;
const ZERO4 = '0.0.0.0';

export interface Dhcp4ServerOptions {
  /** The adapter's IPv4 address on the LAN: server identifier, and by default router and DNS server. */
  serverIp: string;
  /**
   * Subnet mask handed out. Use the overlay IPv4 pool's (e.g. 255.192.0.0 for 100.64.0.0/10) so
   * peers' virtual addresses are on-link for the general node: it ARPs for them and the ARP proxy answers.
   */
  subnetMask: string;
  /** @default [serverIp] */
  routers?: string[];
  /** @default [serverIp] */
  dnsServers?: string[];
  /** Option 15, e.g. the overlay domain so that short names resolve. @default none */
  domainName?: string;
  /** Option 26: the general node's link MTU, so its packets fit the overlay tunnel without fragmentation. @default none */
  mtu?: number;
  /** @default DEFAULT_LEASE4_SEC */
  leaseTimeSec?: number;
  /** NAK a known node's REQUEST naming another server (see the module comment). @default true */
  authoritative?: boolean;
}

export interface Dhcp4ServerComponents {
  leases: LeaseTable;
  /** @default a private Counters */
  counters?: Counters;
  log?: Logger;
}

export class Dhcp4Server {
  readonly counters: Counters;
  private readonly leases: LeaseTable;
  private readonly notices: Notices;
  private readonly o: Required<Omit<Dhcp4ServerOptions, 'domainName' | 'mtu'>> & { domainName?: string; mtu?: number };

  constructor(opts: Dhcp4ServerOptions, components: Dhcp4ServerComponents) {
    ip4Bytes(opts.serverIp);
    ip4Bytes(opts.subnetMask);
    const leaseTimeSec = opts.leaseTimeSec ?? DEFAULT_LEASE4_SEC;
    if (!Number.isInteger(leaseTimeSec) || leaseTimeSec < 60 || leaseTimeSec >= 0xffffffff) throw new RangeError(`bad lease time ${leaseTimeSec}`);
    this.o = {
      serverIp: opts.serverIp,
      subnetMask: opts.subnetMask,
      routers: opts.routers ?? [opts.serverIp],
      dnsServers: opts.dnsServers ?? [opts.serverIp],
      leaseTimeSec,
      authoritative: opts.authoritative ?? true,
    };
    if (opts.domainName !== undefined) this.o.domainName = opts.domainName;
    if (opts.mtu !== undefined) {
      if (!Number.isInteger(opts.mtu) || opts.mtu < 576 || opts.mtu > 0xffff) throw new RangeError(`bad MTU ${opts.mtu}`);
      this.o.mtu = opts.mtu;
    }
    this.leases = components.leases;
    this.counters = components.counters ?? new Counters();
    this.notices = new Notices(components.log);
  }

  /**
   * The reply to send for `msg`, received in a frame from `clientMac` (canonical MAC text) with IPv4 source `srcIp`
   * (when known), or null.
   */
  handle(msg: Dhcp4Message, clientMac: string, now: number, srcIp?: string): Dhcp4Message | null {
    if (msg.op !== BOOTREQUEST) return this.ignore('not-a-request');
    const type = msg.options.messageType;
    if (type === undefined) return this.ignore('bootp');
    this.counters.inc(`dhcp4.rx.${typeName(type)}`);
    if (msg.giaddr !== ZERO4) return this.ignore('relayed');
    if (msg.chaddr !== clientMac) return this.ignore('chaddr-mismatch');
    const node = this.leases.node(clientMac);
    if (!node) {
      this.notices.note(clientMac, now, 'dhcp4: unknown MAC, no lease', { xid: msg.xid });
      return this.ignore('unknown-mac');
    }
    const vip = node.vip4;
    if (vip === undefined) return this.ignore('no-vip4');
    const o = msg.options;
    switch (type) {
      case Dhcp4Type.DISCOVER:
        return this.reply(msg, Dhcp4Type.OFFER, vip, node.name);
      case Dhcp4Type.REQUEST:
        return this.request(msg, clientMac, vip, node.name, now);
      case Dhcp4Type.RELEASE:
        if (o.serverId !== undefined && o.serverId !== this.o.serverIp) return this.ignore('other-server');
        if (msg.ciaddr !== vip) return this.ignore('not-its-address');
        // RFC 2131 §4.4.6: the client sends its RELEASE from the address it gives back. Another device would have to
        // forge both the MAC and the IP source (the LAN needs port security against that: docs/SECURITY.md).
        if (srcIp !== undefined && srcIp !== vip) return this.ignore('release-not-from-its-address');
        this.leases.release(clientMac, 4);
        this.counters.inc('dhcp4.released');
        return null;
      case Dhcp4Type.DECLINE:
        if (o.serverId !== undefined && o.serverId !== this.o.serverIp) return this.ignore('other-server');
        if (o.requestedIp !== vip) return this.ignore('not-its-address');
        this.leases.release(clientMac, 4);
        this.counters.inc('dhcp4.declined');
        this.notices.note(clientMac, now, 'dhcp4: general node declined its address (in use on the LAN?)', { vip4: vip });
        return null;
      case Dhcp4Type.INFORM:
        return this.reply(msg, Dhcp4Type.ACK, ZERO4, node.name, false);
      default:
        return this.ignore('unexpected-type');
    }
  }

  private request(msg: Dhcp4Message, mac: string, vip: string, name: string, now: number): Dhcp4Message | null {
    const { serverId, requestedIp } = msg.options;
    let ok: boolean;
    if (serverId !== undefined) {
      // SELECTING: the client names the server whose offer it took.
      if (serverId !== this.o.serverIp) {
        if (!this.o.authoritative) return this.ignore('other-server');
        return this.nak(msg, 'lease must come from the adapter');
      }
      if (requestedIp === undefined) return this.ignore('bad-request');
      ok = requestedIp === vip;
    } else if (msg.ciaddr === ZERO4) {
      // INIT-REBOOT: the client asks to keep an address it remembers.
      if (requestedIp === undefined) return this.ignore('bad-request');
      ok = requestedIp === vip;
    } else {
      // RENEWING (unicast) or REBINDING (broadcast): the address is in ciaddr.
      ok = msg.ciaddr === vip;
    }
    if (!ok) return this.nak(msg, 'requested address is not this client\'s');
    const lease = {
      mac,
      family: 4 as const,
      address: vip,
      boundAt: now,
      expiresAt: now + this.o.leaseTimeSec * 1000,
      ...(msg.options.hostname !== undefined ? { hostname: msg.options.hostname } : {}),
      ...(msg.options.clientId !== undefined ? { clientId: Buffer.from(msg.options.clientId).toString('hex') } : {}),
    };
    this.leases.bind(lease);
    return this.reply(msg, Dhcp4Type.ACK, vip, name);
  }

  private base(msg: Dhcp4Message, yiaddr: string, options: Dhcp4Options): Dhcp4Message {
    if (msg.options.clientId !== undefined) options.clientId = msg.options.clientId; // RFC 6842
    return {
      op: BOOTREPLY,
      hops: 0,
      xid: msg.xid,
      secs: 0,
      broadcast: msg.broadcast,
      ciaddr: msg.ciaddr,
      yiaddr,
      siaddr: ZERO4,
      giaddr: msg.giaddr,
      chaddr: msg.chaddr,
      sname: '',
      file: '',
      options,
    };
  }

  private reply(msg: Dhcp4Message, type: number, yiaddr: string, name: string, withLease = true): Dhcp4Message {
    const o: Dhcp4Options = { messageType: type, serverId: this.o.serverIp, other: [] };
    if (withLease) {
      o.leaseTime = this.o.leaseTimeSec;
      o.renewalTime = Math.floor(this.o.leaseTimeSec * T1_RATIO);
      o.rebindingTime = Math.floor(this.o.leaseTimeSec * T2_RATIO);
    }
    o.subnetMask = this.o.subnetMask;
    o.routers = this.o.routers;
    o.dnsServers = this.o.dnsServers;
    if (this.o.domainName !== undefined) o.domainName = this.o.domainName;
    if (this.o.mtu !== undefined) o.interfaceMtu = this.o.mtu;
    if (msg.options.paramRequestList?.includes(Dhcp4Opt.HOSTNAME) && name) o.hostname = name;
    this.counters.inc(`dhcp4.tx.${typeName(type)}`);
    return this.base(msg, yiaddr, o);
  }

  private nak(msg: Dhcp4Message, why: string): Dhcp4Message {
    this.counters.inc('dhcp4.tx.nak');
    // A NAK carries no address and no configuration (RFC 2131 table 3); clients expect it broadcast.
    const reply = this.base({ ...msg, ciaddr: ZERO4 }, ZERO4, { messageType: Dhcp4Type.NAK, serverId: this.o.serverIp, message: why, other: [] });
    reply.broadcast = true;
    return reply;
  }

  private ignore(reason: string): null {
    this.counters.inc(`dhcp4.ignored.${reason}`);
    return null;
  }
}

const TYPE_NAMES: Record<number, string> = {
  1: 'discover',
  2: 'offer',
  3: 'request',
  4: 'decline',
  5: 'ack',
  6: 'nak',
  7: 'release',
  8: 'inform',
};

function typeName(t: number): string {
  return TYPE_NAMES[t] ?? 'other';
}

export interface Dhcp4Link {
  adapterMac: string;
  /** The server's IPv4 (the reply's source). */
  serverIp: string;
}

/**
 * The Ethernet frame carrying `reply` to the client that sent `request` (RFC 2131 §4.1): a NAK or a
 * reply to a client that set the BROADCAST flag goes to 255.255.255.255 / ff:ff:ff:ff:ff:ff; a
 * reply to a client with ciaddr goes to ciaddr; otherwise unicast to yiaddr at chaddr (the client
 * cannot answer ARP yet, so no ARP is needed: the MAC is known).
 */
export function dhcp4ReplyFrame(reply: Dhcp4Message, request: Dhcp4Message, link: Dhcp4Link): Buffer {
  let dstIp: string;
  let dstMac: string;
  if (reply.options.messageType === Dhcp4Type.NAK || (request.ciaddr === ZERO4 && reply.broadcast)) {
    dstIp = '255.255.255.255';
    dstMac = BROADCAST_MAC;
  } else if (request.ciaddr !== ZERO4) {
    dstIp = request.ciaddr;
    dstMac = request.chaddr;
  } else {
    dstIp = reply.yiaddr;
    dstMac = request.chaddr;
  }
  const packet = buildUdp({
    src: link.serverIp,
    dst: dstIp,
    srcPort: DHCP4_SERVER_PORT,
    dstPort: DHCP4_CLIENT_PORT,
    payload: encodeDhcp4(reply),
  });
  return encodeEthernet({ dst: dstMac, src: link.adapterMac, ethertype: ETHERTYPE_IPV4, payload: packet });
}
