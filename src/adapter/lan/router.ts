// The adapter as the general nodes' IPv6 router (the deck's "Router Configuration Module"): what its
// Router Advertisement says and when it is sent (periodic, and in answer to Router Solicitations).
//
// What the RA says: M=1 and O=1, so hosts take their address and DNS from stateful DHCPv6 (the
// virtual IPv6 comes from there, never from SLAAC); a router lifetime (the adapter is the default
// router); the MTU of the overlay tunnel; the adapter's link-layer address; RDNSS and DNSSL
// (RFC 8106) pointing at the adapter's DNS service, for hosts that read DNS from RAs only.
//
// Prefix Information: none by default. When `onLinkPrefix` is given (the overlay IPv6 pool, e.g. the
// ULA /48), it is advertised with L=1 and A=0 (`autonomous` turns A on, only if told): hosts then
// treat peers' virtual addresses as on-link and send Neighbor Solicitations for them, which the
// ND proxy answers with the adapter's MAC — the flow the seed deck measures (slides 17, 19) — while
// A=0 keeps hosts from inventing SLAAC addresses the overlay would not route. (L=0/A=0 would say
// nothing at all, so it is never sent.) Without the option, hosts send everything to the default
// router, and the proxy only has to answer for the adapter's own addresses.
//
// When (RFC 4861 §6.2.4–6.2.6): unsolicited RAs every MinRtrAdvInterval..MaxRtrAdvInterval, the
// first three at most 16 s apart; an RS from a host with an address is answered at once by unicast
// (allowed by §6.2.6, recommended by RFC 7772), at most once per host per 3 s; an RS from the
// unspecified address brings the next multicast RA forward to within 0.5 s, but never closer than
// 3 s to the previous multicast RA.

import { ETHERTYPE_IPV6, encodeEthernet } from './ethernet.js';
import { ALL_NODES6, buildIcmpv6, linkLocalFromMac, multicastMac, UNSPECIFIED6 } from './ip.js';
import { encodeNdp, emptyNdOptions } from './ndp.js';
import type { PrefixInfo, RouterAdvertisement } from './ndp.js';
import { ip6Bytes } from './wire.js';
import { formatIp6 } from '../../protocol/ip.js';

/** Tunable: matches the node's TUN MTU (src/node/dataplane DEFAULT_MTU): 1500 minus tunnel overhead. */
export const DEFAULT_LAN_MTU = 1400;
/** Tunable: RFC 4861 default MaxRtrAdvInterval is 600 s; 200 s lets a late-joining host hear an RA sooner. */
export const DEFAULT_MAX_RA_INTERVAL_SEC = 200;
/** Spec (RFC 4861 §6.2.1): MinRtrAdvInterval defaults to 0.33 × MaxRtrAdvInterval. */
const MIN_INTERVAL_RATIO = 0.33;
/** Spec (RFC 4861 §10): router constants. */
const MAX_INITIAL_RTR_ADVERT_INTERVAL_MS = 16_000;
const MAX_INITIAL_RTR_ADVERTISEMENTS = 3;
const MIN_DELAY_BETWEEN_RAS_MS = 3_000;
const MAX_RA_DELAY_TIME_MS = 500;
/** Tunable: solicitors remembered for the per-host rate limit (cleared when full). */
const MAX_SOLICITORS = 1024;

export interface RouterAdvertiserOptions {
  adapterMac: string;
  /** The adapter's link-local address on the LAN. @default from adapterMac (modified EUI-64) */
  linkLocal?: string;
  /** RDNSS: the adapter's IPv6 DNS address(es). */
  dnsServers: string[];
  /** DNSSL, e.g. the overlay domain. @default [] */
  domains?: string[];
  /** @default DEFAULT_LAN_MTU */
  mtu?: number;
  /** @default DEFAULT_MAX_RA_INTERVAL_SEC */
  maxIntervalSec?: number;
  /** Spec default (RFC 4861 §6.2.1): 3 × MaxRtrAdvInterval, seconds (≤ 9000). */
  routerLifetimeSec?: number;
  /** The overlay IPv6 pool as CIDR ('fd12:3456:789a::/48'): advertised on-link (L=1, A=0). @default none */
  onLinkPrefix?: string;
  /** Set A on the on-link prefix (SLAAC). Only if told. @default false */
  autonomous?: boolean;
  /** Answer an RS from a host with an address by unicast at once. @default true */
  unicastSolicited?: boolean;
}

export type RsAnswer =
  | { kind: 'unicast'; ip: string; mac: string }
  | { kind: 'multicast'; at: number }
  | { kind: 'rate-limited' };

function parsePrefix(cidr: string): { prefix: string; length: number } {
  const m = /^([0-9a-fA-F:]+)\/(\d{1,3})$/.exec(cidr);
  const len = m ? Number(m[2]) : NaN;
  if (!m || !(len >= 0 && len <= 128)) throw new RangeError(`bad IPv6 prefix ${cidr}`);
  return { prefix: formatIp6(ip6Bytes(m[1]!)), length: len };
}

export class RouterAdvertiser {
  readonly linkLocal: string;
  private readonly ra: RouterAdvertisement;
  private readonly adapterMac: string;
  private readonly minMs: number;
  private readonly maxMs: number;
  private readonly unicast: boolean;
  private readonly solicitors = new Map<string, number>();
  private initialLeft = MAX_INITIAL_RTR_ADVERTISEMENTS;
  private lastMulticast = -Infinity;
  private next = 0;

  constructor(
    opts: RouterAdvertiserOptions,
    private readonly random: () => number = Math.random,
  ) {
    this.adapterMac = opts.adapterMac;
    this.linkLocal = opts.linkLocal ?? linkLocalFromMac(opts.adapterMac);
    const maxSec = opts.maxIntervalSec ?? DEFAULT_MAX_RA_INTERVAL_SEC;
    if (!(maxSec >= 4 && maxSec <= 1800)) throw new RangeError(`bad MaxRtrAdvInterval ${maxSec}`);
    this.maxMs = maxSec * 1000;
    this.minMs = Math.max(3, maxSec * MIN_INTERVAL_RATIO) * 1000;
    const lifetime = opts.routerLifetimeSec ?? Math.min(9000, 3 * maxSec);
    if (!Number.isInteger(lifetime) || lifetime < 0 || lifetime > 9000) throw new RangeError(`bad router lifetime ${lifetime}`);
    const options = emptyNdOptions();
    options.sourceLinkAddr = opts.adapterMac;
    options.mtu = opts.mtu ?? DEFAULT_LAN_MTU;
    if (opts.onLinkPrefix !== undefined) {
      const p = parsePrefix(opts.onLinkPrefix);
      const info: PrefixInfo = {
        prefix: p.prefix,
        prefixLength: p.length,
        onLink: true,
        autonomous: opts.autonomous ?? false,
        validLifetime: 0xffffffff,
        preferredLifetime: 0xffffffff,
      };
      options.prefixes.push(info);
    }
    // RFC 8106 §5.1: lifetime at least MaxRtrAdvInterval; 3 × is the recommended value.
    if (opts.dnsServers.length) options.rdnss.push({ lifetime: 3 * maxSec, servers: [...opts.dnsServers] });
    if (opts.domains?.length) options.dnssl.push({ lifetime: 3 * maxSec, domains: [...opts.domains] });
    this.ra = { type: 'ra', curHopLimit: 64, managed: true, other: true, routerLifetime: lifetime, reachableTime: 0, retransTimer: 0, options };
    this.unicast = opts.unicastSolicited ?? true;
    this.frame(); // validates every field now, not at the first send
  }

  /** The advertisement (for tests and status). */
  get advertisement(): RouterAdvertisement {
    return this.ra;
  }

  /** The RA as an Ethernet frame: to all nodes (ff02::1), or unicast to one host. */
  frame(to?: { ip: string; mac: string }): Buffer {
    const { type, body } = encodeNdp(this.ra);
    const dst = to?.ip ?? ALL_NODES6;
    const packet = buildIcmpv6({ src: this.linkLocal, dst, type, body });
    return encodeEthernet({ dst: to?.mac ?? multicastMac(ALL_NODES6), src: this.adapterMac, ethertype: ETHERTYPE_IPV6, payload: packet });
  }

  /** Unix ms when the next multicast RA is due (0 before `start`: at once). */
  get dueAt(): number {
    return this.next;
  }

  /** Starts the schedule: the first RA is due at `now`. */
  start(now: number): void {
    this.next = now;
  }

  /** Call after sending a multicast RA at `now`: schedules the next one. */
  sentMulticast(now: number): void {
    this.lastMulticast = now;
    let interval = this.minMs + this.random() * (this.maxMs - this.minMs);
    if (this.initialLeft > 0) {
      this.initialLeft--;
      interval = Math.min(interval, MAX_INITIAL_RTR_ADVERT_INTERVAL_MS);
    }
    this.next = now + interval;
  }

  /** What to do about a valid RS from `src` (IPv6) sent by `mac` (its link-layer option, or the frame's source). */
  solicited(now: number, src: string, mac: string): RsAnswer {
    if (this.unicast && src !== UNSPECIFIED6) {
      const last = this.solicitors.get(src);
      if (last !== undefined && now - last < MIN_DELAY_BETWEEN_RAS_MS) return { kind: 'rate-limited' };
      if (this.solicitors.size >= MAX_SOLICITORS) this.solicitors.clear();
      this.solicitors.set(src, now);
      return { kind: 'unicast', ip: src, mac };
    }
    const at = Math.max(now + this.random() * MAX_RA_DELAY_TIME_MS, this.lastMulticast + MIN_DELAY_BETWEEN_RAS_MS);
    if (at < this.next) this.next = at;
    return { kind: 'multicast', at: this.next };
  }
}
