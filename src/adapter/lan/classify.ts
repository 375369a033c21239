// The classifier of the deck's slide 28: the adapter receives everything from its LAN on one
// interface and must tell apart what it serves itself from what it carries into the overlay.
//
// frame ─► Ethernet ─► from us? tagged? for us (our MAC, broadcast, multicast)? ─► drop
//            ├─ ARP ───────────────────────────────────────────────► arp     (→ proxy.answerArp)
//            ├─ IPv4 ─ UDP 68→67 to broadcast/us ────────────────────► dhcp4   (→ Dhcp4Server)
//            │         UDP/TCP →53 to us (source = lease) ───────────► dns     (→ local DNS service)
//            │         to a virtual address (source = lease) ────────► overlay (→ tunnel)
//            └─ IPv6 ─ ICMPv6 RS / NS ───────────────────────────────► rs / ns (→ RouterAdvertiser / answerNs)
//                      ICMPv6 MLD Query (130) ───────────────────────► mld     (→ MldListener: report our groups)
//                      UDP 546→547 to ff02::1:2 or us ───────────────► dhcp6   (→ Dhcp6Server)
//                      UDP/TCP →53 to us (source = lease or link-local) ► dns
//                      to a virtual address (source = lease) ────────► overlay
// Everything else is { kind: 'drop', reason } with a stable reason code (DropReason); a
// DecodeError anywhere is reason 'malformed' with the error's code. The anti-spoof rule: an
// overlay or DNS packet whose source is not the address leased to the frame's source MAC is
// dropped as 'spoofed-source'. classify never throws on input bytes.

import { DecodeError } from '../../util/errors.js';
import { decodeArp } from './arp.js';
import type { ArpPacket } from './arp.js';
import { decodeDhcp4, DHCP4_CLIENT_PORT, DHCP4_SERVER_PORT } from './dhcpv4.js';
import type { Dhcp4Message } from './dhcpv4.js';
import { ALL_DHCP_SERVERS6, decodeDhcp6, DHCP6_CLIENT_PORT, DHCP6_SERVER_PORT } from './dhcpv6.js';
import type { Dhcp6Message } from './dhcpv6.js';
import { decodeEthernet, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, isMulticastMac } from './ethernet.js';
import type { EthernetFrame } from './ethernet.js';
import { decodeIcmpv6, decodeIpv4, decodeIpv6, decodeUdp, isLinkLocal6, isMulticast6, peekPorts, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP } from './ip.js';
import type { IpPacket, Ipv4Packet, Ipv6Packet } from './ip.js';
import { decodeNdp, ICMP6_NA, ICMP6_NS, ICMP6_RA, ICMP6_RS } from './ndp.js';
import { decodeMldQuery, ICMP6_MLD_QUERY } from './mld.js';
import type { MldQuery } from './mld.js';
import type { NeighborSolicitation, RouterSolicitation } from './ndp.js';

export const DNS_PORT = 53;
/** ICMPv6 types handled on the link, never tunneled: MLD (130–132, 143) and ND (133–137). */
const LINK_ICMP6 = new Set([130, 131, 132, 143, ICMP6_RS, ICMP6_RA, ICMP6_NS, ICMP6_NA, 137]);

export type DropReason =
  /** A DecodeError: `code` names the codec (ERR_ETH_DECODE, ERR_IP_CHECKSUM, ERR_DHCP_DECODE, …). */
  | 'malformed'
  /** Sent from the adapter's own MAC (looped back). */
  | 'own-frame'
  /** Carries an 802.1Q tag: the adapter serves one untagged LAN. */
  | 'vlan-tagged'
  /** Neither ARP, IPv4 nor IPv6 (802.3 length frames, LLDP, …). */
  | 'ethertype'
  /** Unicast to another MAC (seen in promiscuous mode). */
  | 'not-for-us'
  /** A Router Advertisement from another router on the LAN. */
  | 'foreign-ra'
  /** Other link-local ICMPv6: NA, Redirect, MLD reports and done (another listener's). */
  | 'link-icmpv6'
  /** DHCP server or relay traffic from the LAN (a second DHCP server). */
  | 'dhcp-server'
  /** A fragmented DHCP or DNS packet. */
  | 'fragment'
  /** Source address not the one leased to the frame's source MAC. */
  | 'spoofed-source'
  /** Other multicast or broadcast (mDNS, SSDP, …). */
  | 'multicast'
  /** To an IPv6 link-local address other than a service of the adapter. */
  | 'link-local'
  /** To the adapter's own address but not a service it offers (ping, ssh, …). */
  | 'to-adapter'
  /** To an address outside the overlay. */
  | 'not-overlay';

export interface ClassifyContext {
  adapterMac: string;
  /** The adapter's own LAN addresses (its IPv4, link-local and IPv6 DNS addresses), canonical text. */
  isAdapterAddress(address: string): boolean;
  /** A virtual address reachable through the overlay (a peer's vip4/vip6). */
  isOverlay(address: string): boolean;
  /** The address the general node with this MAC holds an active lease on (undefined: none). */
  leasedAddress(mac: string, family: 4 | 6): string | undefined;
}

export type LanPacket =
  | { kind: 'arp'; frame: EthernetFrame; arp: ArpPacket }
  | { kind: 'dhcp4'; frame: EthernetFrame; ip: Ipv4Packet; message: Dhcp4Message }
  | { kind: 'dhcp6'; frame: EthernetFrame; ip: Ipv6Packet; message: Dhcp6Message }
  | { kind: 'rs'; frame: EthernetFrame; ip: Ipv6Packet; rs: RouterSolicitation }
  | { kind: 'ns'; frame: EthernetFrame; ip: Ipv6Packet; ns: NeighborSolicitation }
  | { kind: 'mld'; frame: EthernetFrame; ip: Ipv6Packet; query: MldQuery }
  | {
      kind: 'dns';
      family: 4 | 6;
      frame: EthernetFrame;
      ip: IpPacket;
      transport: 'udp' | 'tcp';
      srcPort: number;
      /** The DNS message (UDP); TCP segments are left to a TCP stack. */
      payload: Uint8Array | null;
    }
  | {
      kind: 'overlay';
      family: 4 | 6;
      /** The whole IP packet, link padding stripped (a view into the frame). */
      packet: Uint8Array;
      src: string;
      dst: string;
      frame: EthernetFrame;
    }
  | { kind: 'drop'; reason: DropReason; code?: string; detail?: string };

function drop(reason: DropReason, detail?: string): LanPacket {
  return detail === undefined ? { kind: 'drop', reason } : { kind: 'drop', reason, detail };
}

/** Classifies one frame from the LAN. Never throws for bad input: malformed frames are drops. */
export function classify(bytes: Uint8Array, ctx: ClassifyContext): LanPacket {
  try {
    return classifyFrame(decodeEthernet(bytes), ctx);
  } catch (err) {
    if (err instanceof DecodeError) return { kind: 'drop', reason: 'malformed', code: err.code, detail: err.message };
    throw err;
  }
}

function classifyFrame(frame: EthernetFrame, ctx: ClassifyContext): LanPacket {
  if (frame.src === ctx.adapterMac) return drop('own-frame');
  if (frame.vlan) return drop('vlan-tagged', `vid ${frame.vlan.vid}`);
  if (frame.dst !== ctx.adapterMac && !isMulticastMac(frame.dst)) return drop('not-for-us');
  switch (frame.ethertype) {
    case ETHERTYPE_ARP:
      return { kind: 'arp', frame, arp: decodeArp(frame.payload) };
    case ETHERTYPE_IPV4:
      return classify4(frame, decodeIpv4(frame.payload), ctx);
    case ETHERTYPE_IPV6:
      return classify6(frame, decodeIpv6(frame.payload), ctx);
    default:
      return drop('ethertype', `0x${frame.ethertype.toString(16).padStart(4, '0')}`);
  }
}

function spoofed(frame: EthernetFrame, ip: IpPacket, ctx: ClassifyContext): boolean {
  return ctx.leasedAddress(frame.src, ip.version) !== ip.src;
}

/** DNS to the adapter over UDP or TCP, or null when the packet is not DNS. */
function dns(frame: EthernetFrame, ip: IpPacket, ctx: ClassifyContext, linkLocalOk: boolean): LanPacket | null {
  const ports = peekPorts(ip);
  if (!ports || ports.dstPort !== DNS_PORT) return null;
  if (spoofed(frame, ip, ctx) && !(linkLocalOk && isLinkLocal6(ip.src))) return drop('spoofed-source', `${ip.src} from ${frame.src}`);
  if (ip.protocol === PROTO_TCP) return { kind: 'dns', family: ip.version, frame, ip, transport: 'tcp', srcPort: ports.srcPort, payload: null };
  return { kind: 'dns', family: ip.version, frame, ip, transport: 'udp', srcPort: ports.srcPort, payload: decodeUdp(ip).payload };
}

function overlay(frame: EthernetFrame, ip: IpPacket, ctx: ClassifyContext): LanPacket {
  if (spoofed(frame, ip, ctx)) return drop('spoofed-source', `${ip.src} from ${frame.src}`);
  return { kind: 'overlay', family: ip.version, packet: ip.packet, src: ip.src, dst: ip.dst, frame };
}

function classify4(frame: EthernetFrame, ip: Ipv4Packet, ctx: ClassifyContext): LanPacket {
  const ports = peekPorts(ip);
  const toUs = ctx.isAdapterAddress(ip.dst);
  if (ip.protocol === PROTO_UDP && ports) {
    if (ports.dstPort === DHCP4_SERVER_PORT && (ip.dst === '255.255.255.255' || toUs)) {
      if (ip.fragment) return drop('fragment');
      return { kind: 'dhcp4', frame, ip, message: decodeDhcp4(decodeUdp(ip).payload) };
    }
    if (ports.srcPort === DHCP4_SERVER_PORT && ports.dstPort === DHCP4_CLIENT_PORT) return drop('dhcp-server');
  }
  if (toUs) {
    if (ip.fragment && (ip.protocol === PROTO_UDP || ip.protocol === PROTO_TCP)) return drop('fragment');
    return dns(frame, ip, ctx, false) ?? drop('to-adapter');
  }
  const first = Number(ip.dst.slice(0, ip.dst.indexOf('.')));
  if (first >= 224 || frame.dst !== ctx.adapterMac) return drop('multicast', ip.dst);
  if (ctx.isOverlay(ip.dst)) return overlay(frame, ip, ctx);
  return drop('not-overlay', ip.dst);
}

function classify6(frame: EthernetFrame, ip: Ipv6Packet, ctx: ClassifyContext): LanPacket {
  if (ip.protocol === PROTO_ICMPV6 && !ip.fragment) {
    const type = ip.payload[0];
    if (type !== undefined && LINK_ICMP6.has(type)) {
      if (type === ICMP6_RS || type === ICMP6_NS) {
        const nd = decodeNdp(ip);
        if (nd.type === 'rs') return { kind: 'rs', frame, ip, rs: nd };
        if (nd.type === 'ns') return { kind: 'ns', frame, ip, ns: nd };
      }
      if (type === ICMP6_MLD_QUERY) return { kind: 'mld', frame, ip, query: decodeMldQuery(ip) };
      decodeIcmpv6(ip); // checksum: a corrupt message is 'malformed', not a foreign router
      return drop(type === ICMP6_RA ? 'foreign-ra' : 'link-icmpv6', `type ${type}`);
    }
  }
  const ports = peekPorts(ip);
  const toUs = ctx.isAdapterAddress(ip.dst);
  if (ip.protocol === PROTO_UDP && ports) {
    if (ports.dstPort === DHCP6_SERVER_PORT && (ip.dst === ALL_DHCP_SERVERS6 || toUs)) {
      return { kind: 'dhcp6', frame, ip, message: decodeDhcp6(decodeUdp(ip).payload) };
    }
    if (ports.srcPort === DHCP6_SERVER_PORT && ports.dstPort === DHCP6_CLIENT_PORT) return drop('dhcp-server');
  }
  if (ip.fragment && (ip.protocol === PROTO_UDP || ip.protocol === PROTO_ICMPV6) && (toUs || ip.dst === ALL_DHCP_SERVERS6)) {
    return drop('fragment');
  }
  if (toUs) return dns(frame, ip, ctx, true) ?? drop('to-adapter');
  if (isMulticast6(ip.dst) || frame.dst !== ctx.adapterMac) return drop('multicast', ip.dst);
  if (isLinkLocal6(ip.dst)) return drop('link-local', ip.dst);
  if (ctx.isOverlay(ip.dst)) return overlay(frame, ip, ctx);
  return drop('not-overlay', ip.dst);
}
