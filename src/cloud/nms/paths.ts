// Path choice at the NMS: from what registration learned about two nodes (reported and observed endpoints, NAT,
// NAT mapping behaviour), which kind of path joins them and which endpoints each end gets. Pure: no I/O.
//
//   relayOnly asked (a punch failed, a TRS died) ─────────────────────────────────────────► relayed
//   both behind one NAT (same observed address) ─► direct, LAN endpoints (reported) first
//   responder reachable (not behind NAT) in a family the initiator has ─► direct
//   initiator reachable, responder behind NAT, same family ─► direct; the responder opens the way (it sends
//        TunnelRequests toward the initiator too, so its NAT lets the answer in) — "connection reversal"
//   both behind NATs with endpoint-independent mapping, same family ─► punched: both send to the other's
//        observed endpoint at once (the simultaneous-initiation rule of the handshake makes one session)
//   anything else (a random-port NAT on either side, IPv4-only against IPv6-only) ─────────► relayed
//
// On the testbed (and behind most Linux/home routers) filtering is address-and-port dependent, so an
// endpoint-independent NAT facing a random-port one cannot be punched: the EIM side cannot guess the port the
// random side will use. The textbook rule "one EIM side suffices" holds only for endpoint-independent filtering,
// which we do not learn; such pairs are relayed.

import { isIP } from 'node:net';
import type { Endpoint } from '../../protocol/endpoint.js';
import type { RegistrationRecord } from '../../store/types.js';

export type PathKind = 'direct' | 'punched' | 'relayed';

export type PathPlan =
  | {
      kind: 'direct' | 'punched';
      /** The responder's endpoints, for the initiator (most promising first). */
      toInitiator: Endpoint[];
      /** The initiator's endpoints, for the responder. */
      toResponder: Endpoint[];
      /** The responder sends TunnelRequests too (it is behind NAT; punched paths always do). */
      responderSends: boolean;
      why: string;
    }
  | { kind: 'relayed'; why: string };

export interface PathOptions {
  /** The node asked for a relay. */
  relayOnly?: boolean;
}

function family(address: string): 4 | 6 {
  return isIP(address) === 6 ? 6 : 4;
}

/** The families `reg` has an address in, as a bit set (FAMILY_BIT): no Set per call on the route-selection path. */
function families(reg: RegistrationRecord): number {
  let m = FAMILY_BIT[family(reg.observed.address)];
  for (const e of reg.reported) m |= FAMILY_BIT[family(e.address)];
  return m;
}

const FAMILY_BIT = { 4: 1, 6: 2 } as const;

function hasFamily(fams: number, address: string): boolean {
  return (fams & FAMILY_BIT[family(address)]) !== 0;
}

/** The families of `reg` as text, in the order its endpoints name them ("4+6"): only for a relayed path's `why`. */
function familiesText(reg: RegistrationRecord): string {
  return [...new Set([reg.observed, ...reg.reported].map((e) => family(e.address)))].join('+');
}

function uniq(list: Endpoint[]): Endpoint[] {
  const out: Endpoint[] = [];
  for (const e of list) if (!out.some((x) => x.address === e.address && x.port === e.port)) out.push(e);
  return out;
}

/** The first endpoint of each family (a node's socket has one port; more claims only widen what peers send to). */
function onePerFamily(list: Endpoint[]): Endpoint[] {
  const seen = new Set<4 | 6>();
  return list.filter((e) => {
    const f = family(e.address);
    if (seen.has(f)) return false;
    seen.add(f);
    return true;
  });
}

/**
 * Endpoints of `reg` worth sending to from a node that has `fams`: the observed one (what the NMS saw: the node really
 * is there), then at most one reported endpoint of each *other* family (the NMS sees one family per registration).
 * Reported endpoints are the node's own claims and a peer sends Tunnel Requests to them, so each extra one is a way
 * to aim a peer's traffic at a third party: a same-family claim is never needed (the observed endpoint covers that
 * family; the same-NAT case uses LAN endpoints separately) and is dropped.
 */
function reachable(reg: RegistrationRecord, fams: number): Endpoint[] {
  const own = family(reg.observed.address);
  const out: Endpoint[] = hasFamily(fams, reg.observed.address) ? [reg.observed] : [];
  // At most one reported endpoint of each other family: with two families, the first of the other one.
  for (const e of reg.reported) {
    if (family(e.address) === own) continue;
    if (hasFamily(fams, e.address)) out.push(e);
    break;
  }
  return out;
}

export function choosePath(initiator: RegistrationRecord, responder: RegistrationRecord, opts: PathOptions = {}): PathPlan {
  if (opts.relayOnly) return { kind: 'relayed', why: 'relay asked for' };
  const fi = families(initiator);
  const fr = families(responder);
  if (initiator.nat && responder.nat && initiator.observed.address === responder.observed.address) {
    // One NAT in front of both: their LAN addresses reach each other (hairpinning is not something to count on).
    const lanI = onePerFamily(initiator.reported).filter((e) => hasFamily(fr, e.address));
    const lanR = onePerFamily(responder.reported).filter((e) => hasFamily(fi, e.address));
    if (lanI.length && lanR.length) {
      return { kind: 'direct', toInitiator: uniq(lanR), toResponder: uniq(lanI), responderSends: true, why: 'same NAT: LAN endpoints' };
    }
    return { kind: 'relayed', why: 'same NAT without a LAN path' };
  }
  if (!responder.nat) {
    const eps = reachable(responder, fi);
    if (eps.length) return { kind: 'direct', toInitiator: eps, toResponder: reachable(initiator, fr), responderSends: false, why: 'responder reachable' };
  }
  const fo = family(responder.observed.address);
  if (!initiator.nat && responder.nat) {
    const eps = reachable(initiator, FAMILY_BIT[fo]);
    if (eps.length) return { kind: 'direct', toInitiator: [responder.observed], toResponder: eps, responderSends: true, why: 'initiator reachable: the responder opens the way' };
  }
  if (initiator.nat && responder.nat && family(initiator.observed.address) === fo) {
    if (initiator.mapping === 'independent' && responder.mapping === 'independent') {
      return { kind: 'punched', toInitiator: [responder.observed], toResponder: [initiator.observed], responderSends: true, why: 'both NATs map endpoint-independently' };
    }
    return { kind: 'relayed', why: `NAT mappings ${initiator.mapping ?? 'unknown'} / ${responder.mapping ?? 'unknown'} cannot be punched` };
  }
  return { kind: 'relayed', why: `no common reachable family (${familiesText(initiator)} vs ${familiesText(responder)})` };
}

/** The relay endpoint a node should use: one of the family it reaches the NMS with, else the first. */
export function relayFor(reg: RegistrationRecord, relay: Endpoint[]): Endpoint | undefined {
  const f = family(reg.observed.address);
  return relay.find((e) => family(e.address) === f) ?? relay[0];
}
