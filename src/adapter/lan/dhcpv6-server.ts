// The adapter's stateful DHCPv6 server (RFC 8415 §18.3) as a pure state machine:
// handle(message, clientMac, now) → reply or null. Each general node gets its virtual IPv6 in an IA_NA,
// with the adapter as DNS server and the overlay domain as search list.
//
//   SOLICIT ─────────────► ADVERTISE (preference 255: take us at once), or REPLY if both sides allow rapid commit
//   REQUEST / RENEW / REBIND ─► REPLY, lease bound or extended; other addresses returned with lifetime 0
//   CONFIRM ─────────────► REPLY Success if every address is the node's, else NotOnLink
//   RELEASE / DECLINE ───► REPLY Success; the lease is forgotten (a DECLINE is also logged: a conflict on the LAN)
//   INFORMATION-REQUEST ─► REPLY with DNS servers and domain list only
//
// The general node is found by the frame's source MAC, or, when that MAC is unknown, by the MAC in
// a DUID-LL/DUID-LLT client identifier. A node has one address, so the IA_NA that already holds
// it (or the first) gets it and any other IA_NA gets NoAddrsAvail / NoBinding. Messages for
// another server, unknown devices and nodes without vip6 get null and a counter `dhcp6.ignored.<reason>`.

import { Counters } from '../../util/counters.js';
import type { Logger } from '../../util/log.js';
import { DHCP6_CLIENT_PORT, DHCP6_SERVER_PORT, Dhcp6Status, Dhcp6Type, duidLl, encodeDhcp6 } from './dhcpv6.js';
import type { Dhcp6Message, Duid, IaNa } from './dhcpv6.js';
import { ETHERTYPE_IPV6, encodeEthernet } from './ethernet.js';
import { buildUdp } from './ip.js';
import type { GeneralNode, LeaseTable } from './leases.js';
import { Notices } from './notices.js';
import { ip6Bytes } from './wire.js';

/** Tunable: an hour preferred, two valid — same order as the DHCPv4 lease. */
export const DEFAULT_PREFERRED6_SEC = 3600;
export const DEFAULT_VALID6_SEC = 7200;
/** Spec recommendation (RFC 8415 §21.4): T1 = 0.5 and T2 = 0.8 of the shortest preferred lifetime. */
const T1_RATIO = 0.5;
const T2_RATIO = 0.8;

export interface Dhcp6ServerOptions {
  /** The adapter's LAN MAC; the server identifier is its DUID-LL (stable across restarts). */
  adapterMac: string;
  /** DNS servers handed out: the adapter's IPv6 address(es) that its local DNS service listens on. */
  dnsServers: string[];
  /** Domain search list, e.g. the overlay domain. @default [] */
  domainList?: string[];
  /** @default DEFAULT_PREFERRED6_SEC */
  preferredLifetimeSec?: number;
  /** @default DEFAULT_VALID6_SEC */
  validLifetimeSec?: number;
  /** Answer a SOLICIT carrying Rapid Commit with a REPLY (two messages instead of four). @default true */
  rapidCommit?: boolean;
  /** Fall back to the MAC inside the client's DUID when the frame's MAC is unknown. @default true */
  matchDuidMac?: boolean;
}

export interface Dhcp6ServerComponents {
  leases: LeaseTable;
  counters?: Counters;
  log?: Logger;
}

export class Dhcp6Server {
  readonly counters: Counters;
  readonly serverId: Duid;
  private readonly leases: LeaseTable;
  private readonly notices: Notices;
  private readonly dns: string[];
  private readonly domains: string[];
  private readonly preferred: number;
  private readonly valid: number;
  private readonly rapidCommit: boolean;
  private readonly matchDuidMac: boolean;

  constructor(opts: Dhcp6ServerOptions, components: Dhcp6ServerComponents) {
    this.serverId = duidLl(opts.adapterMac);
    opts.dnsServers.forEach(ip6Bytes);
    this.dns = [...opts.dnsServers];
    this.domains = [...(opts.domainList ?? [])];
    this.preferred = opts.preferredLifetimeSec ?? DEFAULT_PREFERRED6_SEC;
    this.valid = opts.validLifetimeSec ?? DEFAULT_VALID6_SEC;
    const lifetimesOk = Number.isInteger(this.preferred) && this.preferred >= 60 && Number.isInteger(this.valid);
    if (!lifetimesOk || this.valid < this.preferred || this.valid >= 0xffffffff) {
      throw new RangeError(`bad lifetimes ${this.preferred}/${this.valid}`);
    }
    this.rapidCommit = opts.rapidCommit ?? true;
    this.matchDuidMac = opts.matchDuidMac ?? true;
    this.leases = components.leases;
    this.counters = components.counters ?? new Counters();
    this.notices = new Notices(components.log);
  }

  /** The reply to send for `msg`, received in a frame from `clientMac` (canonical MAC text), or null. */
  handle(msg: Dhcp6Message, clientMac: string, now: number): Dhcp6Message | null {
    this.counters.inc(`dhcp6.rx.${typeName(msg.type)}`);
    const T = Dhcp6Type;
    if (![T.SOLICIT, T.REQUEST, T.CONFIRM, T.RENEW, T.REBIND, T.RELEASE, T.DECLINE, T.INFORMATION_REQUEST].includes(msg.type as never)) {
      return this.ignore('unexpected-type');
    }
    // Server identifier rules (RFC 8415 §16): required and ours for Request/Renew/Release/Decline,
    // absent for Solicit/Confirm/Rebind, optional (but ours) for Information-request.
    const needsOurs = msg.type === T.REQUEST || msg.type === T.RENEW || msg.type === T.RELEASE || msg.type === T.DECLINE;
    const mustLack = msg.type === T.SOLICIT || msg.type === T.CONFIRM || msg.type === T.REBIND;
    if (msg.serverId && mustLack) return this.ignore('unexpected-server-id');
    if (needsOurs && !msg.serverId) return this.ignore('missing-server-id');
    if (msg.serverId && !sameDuid(msg.serverId, this.serverId)) return this.ignore('other-server');
    if (!msg.clientId && msg.type !== T.INFORMATION_REQUEST) return this.ignore('missing-client-id');
    if (msg.type === T.INFORMATION_REQUEST && msg.iaNa.length > 0) return this.ignore('ia-in-information-request');

    const node = this.findNode(msg, clientMac);
    if (!node) {
      this.notices.note(clientMac, now, 'dhcp6: unknown MAC, no lease', { txid: msg.txid });
      return this.ignore('unknown-mac');
    }
    const vip = node.vip6;
    if (vip === undefined) return this.ignore('no-vip6');

    switch (msg.type) {
      case T.INFORMATION_REQUEST:
        return this.reply(msg, T.REPLY, []);
      case T.SOLICIT: {
        if (msg.iaNa.length === 0) return this.ignore('no-ia-na');
        const commit = msg.rapidCommit && this.rapidCommit;
        const ias = this.assign(msg, node, vip, Dhcp6Status.NoAddrsAvail, commit ? now : null);
        const r = this.reply(msg, commit ? T.REPLY : T.ADVERTISE, ias);
        if (commit) r.rapidCommit = true;
        else r.preference = 255;
        return r;
      }
      case T.REQUEST:
      case T.RENEW:
      case T.REBIND: {
        if (msg.iaNa.length === 0) return this.ignore('no-ia-na');
        const missing = msg.type === T.REQUEST ? Dhcp6Status.NoAddrsAvail : Dhcp6Status.NoBinding;
        return this.reply(msg, T.REPLY, this.assign(msg, node, vip, missing, now));
      }
      case T.CONFIRM: {
        const addrs = msg.iaNa.flatMap((ia) => ia.addresses.map((a) => a.address));
        if (addrs.length === 0) return this.ignore('confirm-without-addresses'); // RFC 8415 §18.3.3: no reply
        const ok = addrs.every((a) => a === vip);
        return this.status(msg, ok ? Dhcp6Status.Success : Dhcp6Status.NotOnLink, ok ? 'addresses are on-link' : 'not on this link');
      }
      case T.RELEASE:
      case T.DECLINE: {
        const holds = msg.iaNa.some((ia) => ia.addresses.some((a) => a.address === vip));
        if (holds) {
          this.leases.release(node.mac, 6);
          if (msg.type === T.DECLINE) {
            this.counters.inc('dhcp6.declined');
            this.notices.note(node.mac, now, 'dhcp6: general node declined its address (in use on the LAN?)', { vip6: vip });
          } else this.counters.inc('dhcp6.released');
        }
        const r = this.status(msg, Dhcp6Status.Success, 'done');
        r.iaNa = msg.iaNa
          .filter((ia) => !ia.addresses.some((a) => a.address === vip))
          .map((ia) => emptyIa(ia.iaid, Dhcp6Status.NoBinding, 'no binding'));
        return r;
      }
    }
    return this.ignore('unexpected-type');
  }

  private findNode(msg: Dhcp6Message, clientMac: string): GeneralNode | undefined {
    const byFrame = this.leases.node(clientMac);
    if (byFrame || !this.matchDuidMac || !msg.clientId?.mac) return byFrame;
    const byDuid = this.leases.node(msg.clientId.mac);
    if (byDuid) this.counters.inc('dhcp6.matched-by-duid');
    return byDuid;
  }

  /**
   * The IA_NAs of the reply: the one that holds the node's lease (same IAID) or else the first
   * gets the address; addresses the client listed that are not the node's come back with
   * lifetime 0; other IAs get `missing`. With `bindAt`, the lease is recorded.
   */
  private assign(msg: Dhcp6Message, node: GeneralNode, vip: string, missing: number, bindAt: number | null): IaNa[] {
    const prior = this.leases.lease(node.mac, 6);
    const chosen = msg.iaNa.find((ia) => ia.iaid === prior?.iaid) ?? msg.iaNa[0]!;
    const out: IaNa[] = msg.iaNa.map((ia) => {
      if (ia !== chosen) return emptyIa(ia.iaid, missing, 'one address per node');
      const stale = ia.addresses.filter((a) => a.address !== vip).map((a) => ({ address: a.address, preferred: 0, valid: 0, other: [] }));
      return {
        iaid: ia.iaid,
        t1: Math.floor(this.preferred * T1_RATIO),
        t2: Math.floor(this.preferred * T2_RATIO),
        addresses: [{ address: vip, preferred: this.preferred, valid: this.valid, other: [] }, ...stale],
        other: [],
      };
    });
    if (bindAt !== null) {
      this.leases.bind({
        mac: node.mac,
        family: 6,
        address: vip,
        boundAt: bindAt,
        expiresAt: bindAt + this.valid * 1000,
        duid: Buffer.from(msg.clientId!.raw).toString('hex'),
        iaid: chosen.iaid,
      });
    }
    return out;
  }

  private reply(msg: Dhcp6Message, type: number, iaNa: IaNa[]): Dhcp6Message {
    this.counters.inc(`dhcp6.tx.${typeName(type)}`);
    const r: Dhcp6Message = { type, txid: msg.txid, serverId: this.serverId, iaNa, rapidCommit: false, other: [] };
    if (msg.clientId) r.clientId = msg.clientId;
    if (this.dns.length) r.dnsServers = this.dns;
    if (this.domains.length) r.domainList = this.domains;
    return r;
  }

  private status(msg: Dhcp6Message, code: number, message: string): Dhcp6Message {
    this.counters.inc('dhcp6.tx.reply');
    const r: Dhcp6Message = { type: Dhcp6Type.REPLY, txid: msg.txid, serverId: this.serverId, iaNa: [], rapidCommit: false, other: [] };
    if (msg.clientId) r.clientId = msg.clientId;
    r.status = { code, message };
    return r;
  }

  private ignore(reason: string): null {
    this.counters.inc(`dhcp6.ignored.${reason}`);
    return null;
  }
}

/** An IA_NA without addresses, carrying a status. */
function emptyIa(iaid: number, code: number, message: string): IaNa {
  return { iaid, t1: 0, t2: 0, addresses: [], status: { code, message }, other: [] };
}

function sameDuid(a: Duid, b: Duid): boolean {
  return Buffer.from(a.raw).equals(Buffer.from(b.raw));
}

const TYPE_NAMES: Record<number, string> = {
  1: 'solicit',
  2: 'advertise',
  3: 'request',
  4: 'confirm',
  5: 'renew',
  6: 'rebind',
  7: 'reply',
  8: 'release',
  9: 'decline',
  10: 'reconfigure',
  11: 'information-request',
};

function typeName(t: number): string {
  return TYPE_NAMES[t] ?? 'other';
}

export interface Dhcp6Link {
  adapterMac: string;
  /** The adapter's link-local address on the LAN (the reply's source). */
  linkLocal: string;
}

/** The frame carrying `reply` back to the client: its source address and MAC, UDP 547 → 546. */
export function dhcp6ReplyFrame(reply: Dhcp6Message, client: { ip: string; mac: string }, link: Dhcp6Link): Buffer {
  const payload = encodeDhcp6(reply);
  const packet = buildUdp({ src: link.linkLocal, dst: client.ip, srcPort: DHCP6_SERVER_PORT, dstPort: DHCP6_CLIENT_PORT, payload });
  return encodeEthernet({ dst: client.mac, src: link.adapterMac, ethertype: ETHERTYPE_IPV6, payload: packet });
}
