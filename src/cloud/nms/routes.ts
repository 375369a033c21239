// Route selection at the NMS: Direction Request → Route Direction to the responder (pushed over its
// registration path) → Confirmation → Route Direction to the initiator, with a fresh path id and Tunnel Key.
//
//   initiator ──DirectionRequest──► NMS ──RouteDirectionResponder──► responder
//   initiator ◄─RouteDirectionInitiator── NMS ◄──RouteConfirmation── responder

import { randomBytes } from 'node:crypto';
import { randomKey } from '../../crypto/index.js';
import { PathType } from '../../protocol/constants.js';
import type { Endpoint } from '../../protocol/endpoint.js';
import type { DirectionRequest, RouteDirection } from '../../protocol/messages.js';
import type { NodeRecord, RegistrationRecord, Store } from '../../store/types.js';

/** Tunable: waits between pushes of a Route Direction to a responder that has not confirmed (ms). */
export const PUSH_RETRANSMIT_MS = [250, 500, 1000, 2000] as const;
/** Tunable: a registration older than this many keepalive intervals does not count as reachable. */
export const REACHABLE_INTERVALS = 3;

export type RouteOutcome =
  | { ok: true; toInitiator: RouteDirection; toResponder: RouteDirection; responder: NodeRecord }
  | { ok: false; status: 'unknown-peer' | 'offline' | 'no-confirmation' | 'refused'; reason: string };

export interface RouteSelectorComponents {
  store: Store;
  domain: string;
  now: () => number;
  /** Pushes a Route Direction to the responder node (sealed by the caller) and returns once sent. */
  push: (responderId: number, reg: RegistrationRecord, body: RouteDirection) => void;
}

interface Waiting {
  responderId: number;
  resolve: (accepted: boolean) => void;
}

export class RouteSelector {
  private readonly waiting = new Map<bigint, Waiting>();

  constructor(private readonly c: RouteSelectorComponents) {}

  /** Runs one route selection for `initiator`; resolves when the responder confirmed or gave up. */
  async select(initiator: NodeRecord, initiatorReg: RegistrationRecord, req: DirectionRequest): Promise<RouteOutcome> {
    const responder = await this.findTarget(req);
    if (!responder || responder.id === initiator.id) return { ok: false, status: 'unknown-peer', reason: `no node ${req.targetFqdn ?? req.targetVip}` };
    const reg = await this.c.store.getRegistration(responder.id);
    if (!reg || this.c.now() - reg.lastSeen > reg.keepaliveSec * 1000 * REACHABLE_INTERVALS) {
      return { ok: false, status: 'offline', reason: `${responder.name} is not registered` };
    }
    const [initCert, respCert] = await Promise.all([this.currentCert(initiator.id), this.currentCert(responder.id)]);
    if (!initCert || !respCert) return { ok: false, status: 'refused', reason: 'no valid certificate on record' };
    const pathId = randomBytes(8).readBigUInt64BE() | 1n; // never 0
    const tunnelKey = randomKey(32);
    const common = { pathId, pathType: PathType.Direct, tunnelKey };
    const toResponder: RouteDirection = { ...common, initiator: false, ...this.peerFields(initiator, initiatorReg), peerCertificate: initCert };
    const toInitiator: RouteDirection = { ...common, initiator: true, ...this.peerFields(responder, reg), peerCertificate: respCert };
    const accepted = await this.pushAndWait(responder.id, reg, toResponder);
    if (accepted === null) return { ok: false, status: 'no-confirmation', reason: `${responder.name} did not confirm the route` };
    if (!accepted) return { ok: false, status: 'refused', reason: `${responder.name} refused the route` };
    return { ok: true, toInitiator, toResponder, responder };
  }

  /** A Route Confirmation from `nodeId`; returns false if no selection waits for it. */
  confirm(nodeId: number, pathId: bigint, accepted: boolean): boolean {
    const w = this.waiting.get(pathId);
    if (!w || w.responderId !== nodeId) return false;
    this.waiting.delete(pathId);
    w.resolve(accepted);
    return true;
  }

  private async pushAndWait(responderId: number, reg: RegistrationRecord, body: RouteDirection): Promise<boolean | null> {
    const answer = new Promise<boolean>((resolve) => this.waiting.set(body.pathId, { responderId, resolve }));
    try {
      for (const wait of PUSH_RETRANSMIT_MS) {
        this.c.push(responderId, reg, body);
        let t: NodeJS.Timeout | undefined;
        const got = await Promise.race([answer, new Promise<null>((r) => (t = setTimeout(() => r(null), wait)))]);
        clearTimeout(t);
        if (got !== null) return got;
      }
      return null;
    } finally {
      this.waiting.delete(body.pathId);
    }
  }

  private async findTarget(req: DirectionRequest): Promise<NodeRecord | null> {
    if (req.targetVip) return this.c.store.getNodeByVip(req.targetVip);
    const fqdn = (req.targetFqdn ?? '').toLowerCase().replace(/\.$/, '');
    const suffix = `.${this.c.domain}`;
    if (!fqdn.endsWith(suffix)) return null;
    return this.c.store.getNodeByName(fqdn.slice(0, -suffix.length));
  }

  private peerFields(n: NodeRecord, reg: RegistrationRecord): Pick<RouteDirection, 'peerNodeId' | 'peerName' | 'peerFqdn' | 'peerVip4' | 'peerVip6' | 'peerEndpoints'> {
    // Observed endpoint first (what works from outside), then what the node reported.
    const eps: Endpoint[] = [reg.observed];
    for (const e of reg.reported) if (!eps.some((x) => x.address === e.address && x.port === e.port)) eps.push(e);
    return { peerNodeId: n.id, peerName: n.name, peerFqdn: `${n.name}.${this.c.domain}`, peerVip4: n.vip4, peerVip6: n.vip6, peerEndpoints: eps.slice(0, 16) };
  }

  private async currentCert(nodeId: number): Promise<Buffer | null> {
    const certs = await this.c.store.listNodeCertificates(nodeId);
    const now = this.c.now();
    const valid = certs.filter((c) => c.revokedAt === null && c.notAfter > now);
    return valid.length ? valid[valid.length - 1]!.der : null;
  }
}
