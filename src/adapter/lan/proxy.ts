// ARP proxy and ND proxy: answer a general node's "who has X?" for a peer's virtual address X with
// the adapter's own MAC, so the node hands the packet to the adapter, which tunnels it (deck slides 17, 19).
//
// answerArp(frame, ctx) / answerNs(frame, ctx) → the reply frame, or null when no answer is due.
// No answer (each counted as `proxy.arp.skip.<reason>` / `proxy.nd.skip.<reason>` when ctx.counters is set):
//  - the target is not proxied (ctx.isProxied), or it belongs to a general node on this LAN
//    (ctx.holderOf) — in particular the requester's own leased address, so duplicate address
//    detection (an ARP probe, a DAD Neighbor Solicitation) never succeeds falsely;
//  - gratuitous ARP (sender IP = target IP), ARP replies, frames from the adapter itself, ARP
//    whose sender MAC is not the frame's source;
//  - an NS whose destination is neither the target nor the target's solicited-node group;
//  - a duplicate address detection probe (NS from ::, RFC 4862 §5.4.2) or an ARP probe (sender 0.0.0.0,
//    RFC 5227) for anything but an address ctx.isDefended names (the adapter's own, known peers'): the device
//    probing may own any other address in the pool — a lease the adapter forgot, a static address — and an
//    answer would make it give the address up (`dad-undefended`). Real solicitations are answered as before.
// Malformed input throws DecodeError (the classifier has normally caught it already).
//
// The NA sets S (unless it answers a DAD probe, which goes to all-nodes with S=0, RFC 4861 §7.2.4)
// and O: RFC 4861 §7.2.8 asks proxies for O=0 so the real owner's NA wins, but the owner of a
// virtual address is never on this link, and O=1 lets the answer replace a stale cache entry.
// R is set when ctx.isRouter says the target is the adapter's own router address.

import type { Counters } from '../../util/counters.js';
import { ARP_REPLY, ARP_REQUEST, decodeArp, encodeArp, isGratuitousArp } from './arp.js';
import { ETHERTYPE_ARP, ETHERTYPE_IPV6, decodeEthernet, encodeEthernet } from './ethernet.js';
import type { EthernetFrame } from './ethernet.js';
import type { ArpPacket } from './arp.js';
import { ALL_NODES6, PROTO_ICMPV6, UNSPECIFIED6, buildIcmpv6, decodeIpv6, multicastMac, solicitedNodeAddress } from './ip.js';
import type { Ipv6Packet } from './ip.js';
import { ICMP6_NS, decodeNdp, emptyNdOptions, encodeNdp } from './ndp.js';
import type { NeighborSolicitation } from './ndp.js';

export interface ProxyContext {
  adapterMac: string;
  /** Addresses answered for: peers' virtual addresses (and the adapter's own LAN addresses if the kernel does not answer for them). */
  isProxied(address: string): boolean;
  /** The MAC of the general node on this LAN that owns `address`, if any: never answered for. */
  holderOf(address: string): string | undefined;
  /**
   * Addresses a DAD or ARP probe is answered for (the probe then fails): the adapter's own and known peers' virtual
   * addresses, which no device on the LAN may take. @default none (probes are never answered)
   */
  isDefended?(address: string): boolean;
  /** The target is the adapter's own router address (sets R in the NA). @default never */
  isRouter?(address: string): boolean;
  counters?: Counters;
}

function skip(ctx: ProxyContext, family: 'arp' | 'nd', reason: string): null {
  ctx.counters?.inc(`proxy.${family}.skip.${reason}`);
  return null;
}

/** What the classifier already decoded (its 'arp' and 'ns' results fit), so nothing is decoded twice. */
export interface DecodedArp {
  frame: EthernetFrame;
  arp: ArpPacket;
}

export interface DecodedNs {
  frame: EthernetFrame;
  ip: Ipv6Packet;
  ns: NeighborSolicitation;
}

function asFrame(frame: Uint8Array | EthernetFrame): EthernetFrame {
  return frame instanceof Uint8Array ? decodeEthernet(frame) : frame;
}

/** The ARP reply for a request about a proxied address, or null. Input: frame bytes, a decoded frame, or the classifier's result. */
export function answerArp(input: Uint8Array | EthernetFrame | DecodedArp, ctx: ProxyContext): Buffer | null {
  let frame: EthernetFrame;
  let arp: ArpPacket;
  if ('arp' in input) ({ frame, arp } = input);
  else {
    frame = asFrame(input);
    if (frame.ethertype !== ETHERTYPE_ARP) return skip(ctx, 'arp', 'not-arp');
    arp = decodeArp(frame.payload);
  }
  if (frame.src === ctx.adapterMac) return skip(ctx, 'arp', 'own-frame');
  if (arp.op !== ARP_REQUEST) return skip(ctx, 'arp', 'not-request');
  if (arp.senderMac !== frame.src) return skip(ctx, 'arp', 'sender-mismatch');
  if (isGratuitousArp(arp)) return skip(ctx, 'arp', 'gratuitous');
  if (ctx.holderOf(arp.targetIp) !== undefined) return skip(ctx, 'arp', 'local-target');
  if (!ctx.isProxied(arp.targetIp)) return skip(ctx, 'arp', 'not-proxied');
  if (arp.senderIp === '0.0.0.0' && !ctx.isDefended?.(arp.targetIp)) return skip(ctx, 'arp', 'dad-undefended');
  ctx.counters?.inc('proxy.arp.answered');
  const reply = encodeArp({ op: ARP_REPLY, senderMac: ctx.adapterMac, senderIp: arp.targetIp, targetMac: arp.senderMac, targetIp: arp.senderIp });
  return encodeEthernet({ dst: arp.senderMac, src: ctx.adapterMac, ethertype: ETHERTYPE_ARP, payload: reply, vlan: frame.vlan });
}

/** The Neighbor Advertisement for a solicitation about a proxied address, or null. Input as for answerArp. */
export function answerNs(input: Uint8Array | EthernetFrame | DecodedNs, ctx: ProxyContext): Buffer | null {
  let frame: EthernetFrame;
  let ip: Ipv6Packet;
  let ns: NeighborSolicitation;
  if ('ns' in input) ({ frame, ip, ns } = input);
  else {
    frame = asFrame(input);
    if (frame.ethertype !== ETHERTYPE_IPV6) return skip(ctx, 'nd', 'not-ipv6');
    ip = decodeIpv6(frame.payload);
    if (ip.protocol !== PROTO_ICMPV6 || ip.payload[0] !== ICMP6_NS) return skip(ctx, 'nd', 'not-ns');
    const nd = decodeNdp(ip);
    if (nd.type !== 'ns') return skip(ctx, 'nd', 'not-ns');
    ns = nd;
  }
  if (frame.src === ctx.adapterMac) return skip(ctx, 'nd', 'own-frame');
  if (ip.dst !== ns.target && ip.dst !== solicitedNodeAddress(ns.target)) return skip(ctx, 'nd', 'wrong-destination');
  if (ctx.holderOf(ns.target) !== undefined) return skip(ctx, 'nd', 'local-target');
  if (!ctx.isProxied(ns.target)) return skip(ctx, 'nd', 'not-proxied');
  const dad = ip.src === UNSPECIFIED6;
  if (dad && !ctx.isDefended?.(ns.target)) return skip(ctx, 'nd', 'dad-undefended');
  const options = emptyNdOptions();
  options.targetLinkAddr = ctx.adapterMac;
  const { type, body } = encodeNdp({
    type: 'na',
    router: ctx.isRouter?.(ns.target) ?? false,
    solicited: !dad,
    override: true,
    target: ns.target,
    options,
  });
  ctx.counters?.inc(dad ? 'proxy.nd.defended' : 'proxy.nd.answered');
  const dst = dad ? ALL_NODES6 : ip.src;
  const packet = buildIcmpv6({ src: ns.target, dst, type, body });
  return encodeEthernet({
    dst: dad ? multicastMac(ALL_NODES6) : (ns.options.sourceLinkAddr ?? frame.src),
    src: ctx.adapterMac,
    ethertype: ETHERTYPE_IPV6,
    payload: packet,
    vlan: frame.vlan,
  });
}
