// Route selection at the NMS: Direction Request → Route Direction to the responder (pushed over its
// registration path) and Route Direction to the initiator, with a fresh path id and Tunnel Key; the responder
// confirms.
//
//   initiator ──DirectionRequest──► NMS ──RouteDirectionResponder──► responder
//   initiator ◄─RouteDirectionInitiator── NMS ◄──RouteConfirmation── responder
//
// A direct or punched path is answered to the initiator at once, beside the push (its Tunnel Request may then reach
// the responder before the push does: the responder holds it until the push arrives, src/node/peers.ts); the push
// is retransmitted until confirmed all the same. A relayed path is answered only after the confirmation: the
// responder binds at the TRS first, and the initiator's first Tunnel Request must find both ends bound.

import { randomFillSync } from 'node:crypto';
import { PathType } from '../../protocol/constants.js';
import type { Endpoint } from '../../protocol/endpoint.js';
import type { DirectionRequest, RelayTicket, RouteDirection } from '../../protocol/messages.js';
import type { NodeRecord, RegistrationRecord, Store } from '../../store/types.js';
import { choosePath, relayFor, type PathKind } from './paths.js';
import { formatPortList } from '../../policy/policy.js';
import { PolicyView } from './policy-view.js';
import { trace } from '../../util/trace.js';
import { readU64BE } from '../../util/u64.js';
import { U64Table } from '../../util/u64-table.js';
import { PairTable } from './pair-table.js';

/** Tunable: bytes of randomness drawn from the CSPRNG at once for path ids and Tunnel Keys (each byte used once). */
const RANDOM_POOL = 4096;

/** What route selection needs to relay a path (the NMS's RelayClient + allocateRelay); absent: no relayed paths. */
export interface RelayAllocator {
  allocate(req: { pathId: bigint; nodeA: number; nodeB: number; expiresAt: number }, avoid: Endpoint[]): Promise<{ tempKey: Buffer; relay: Endpoint[]; relayId: string }>;
  /** `cloud revoke`: tells every live TRS to drop these nodes' paths and refuse their binds (RelayRevoke). */
  revoke?(nodeIds: number[]): Promise<{ acked: number; failed: number }>;
  /** `node netcheck`: a probe ticket for each live TRS (src/channel/relay-probe.ts), least-loaded first. */
  tickets?(nodeId: number): Promise<RelayTicket[]>;
}

/** Tunable: how long a relayed path may live at the TRS (it also forgets it when idle; the ends rebind every ≤ 25 s). */
export const RELAYED_PATH_LIFETIME_MS = 24 * 3600_000;
/** Tunable: a TRS endpoint a node reported dead is tried last for this long (its heartbeat row expires later). */
export const RELAY_SUSPECT_MS = 30_000;

/** Tunable: waits between pushes of a Route Direction to a responder that has not confirmed (ms). */
export const PUSH_RETRANSMIT_MS = [250, 500, 1000, 2000] as const;
/** Tunable: a registration older than this many keepalive intervals does not count as reachable. */
export const REACHABLE_INTERVALS = 3;

export type RouteOutcome =
  | { ok: true; toInitiator: RouteDirection; toResponder: RouteDirection; responder: NodeRecord; path: PathKind; why: string }
  | { ok: false; status: 'unknown-peer' | 'offline' | 'no-confirmation' | 'refused' | 'no-relay' | 'policy'; reason: string };

export interface RouteSelectorComponents {
  store: Store;
  domain: string;
  now: () => number;
  /** Peers remembered per node. @default MAX_PAIRS_PER_NODE */
  pairsPerNode?: number;
  /** Pushes a Route Direction to the responder node (sealed by the caller) and returns once sent. */
  push: (responderId: number, reg: RegistrationRecord, body: RouteDirection) => void;
  /** Relays paths that cannot be direct or punched. */
  relays?: RelayAllocator;
  /** A path already answered to its initiator that the responder refused or never confirmed (counted by the caller). */
  onUnconfirmed?: (status: 'no-confirmation' | 'refused', responder: string) => void;
}

interface Waiting {
  responderId: number;
  reg: RegistrationRecord;
  body: RouteDirection;
  /** Pushes made so far (the wait running after the last one is PUSH_RETRANSMIT_MS[sent - 1]). */
  sent: number;
  timer: NodeJS.Timeout | null;
  /** true/false: the responder accepted/refused; null: no confirmation after the last push's wait. */
  resolve: (accepted: boolean | null) => void;
}

/** Tunable: peers remembered per node for policy pushes (the node's data plane holds at most MAX_PEER_SLOTS). */
export const MAX_PAIRS_PER_NODE = 1024;

export type { SelectedPath } from './pair-table.js';

export class RouteSelector {
  private readonly waiting = new U64Table<Waiting>();
  /**
   * Node id → peer id → the last path selected between them (either end started it); at most pairsPerNode peers per
   * node. Its nodes and their peers are whom a policy change concerns (PolicyPusher). In memory (see PROTOCOL.md).
   */
  readonly pairs: PairTable;
  /** TRS endpoints reported dead by nodes ("address:port" → until). */
  private readonly suspect = new Map<string, number>();

  /** Policy, tags and node records as of the store's policy revision (read once per selection). */
  readonly view: PolicyView;
  private readonly pool = Buffer.alloc(RANDOM_POOL);
  private poolAt = RANDOM_POOL;

  /** `.domain`: what a peer's FQDN ends with. */
  private readonly suffix: string;

  constructor(private readonly c: RouteSelectorComponents) {
    this.view = new PolicyView(c.store);
    this.pairs = new PairTable(c.pairsPerNode ?? MAX_PAIRS_PER_NODE);
    this.suffix = `.${c.domain}`;
  }

  /** `n` fresh random bytes (copied out of a pool filled by the CSPRNG; what was handed out is wiped in the pool). */
  private random(n: number): Buffer {
    const at = this.take(n);
    const out = Buffer.from(this.pool.subarray(at, at + n));
    this.pool.fill(0, at, at + n);
    return out;
  }

  /** A fresh random path id, never 0 (read straight out of the pool, then wiped there). */
  private randomPathId(): bigint {
    const at = this.take(8);
    this.pool[at + 7] = this.pool[at + 7]! | 1; // never 0
    const id = readU64BE(this.pool, at);
    this.pool.fill(0, at, at + 8);
    return id;
  }

  /** The offset of `n` unused bytes in the pool (refilled from the CSPRNG when too few are left). */
  private take(n: number): number {
    if (this.poolAt + n > RANDOM_POOL) {
      randomFillSync(this.pool);
      this.poolAt = 0;
    }
    const at = this.poolAt;
    this.poolAt += n;
    return at;
  }

  /** Runs one route selection for `initiator`; resolves when the responder confirmed or gave up. */
  async select(initiator: NodeRecord, initiatorReg: RegistrationRecord, req: DirectionRequest): Promise<RouteOutcome> {
    // The revisions and the first read that does not depend on them go to the store together (one round trip less
    // on a networked store): a target the caches do not hold is read beside them (a fresh read either way); for
    // one they hold, its registration (always read fresh) is. The cached record itself is used only after the
    // refresh confirmed it: its id is re-checked then, and a registration read for another id is dropped.
    const name = req.targetVip ? null : this.targetName(req);
    const cached = this.view.peek(name, req.targetVip ?? null);
    const early = cached ? { id: cached.id, reg: this.c.store.getRegistration(cached.id) } : null;
    early?.reg.catch(() => {}); // a read dropped below must not become an unhandled rejection; a used one is awaited
    let responder: NodeRecord | null;
    if (cached) {
      await this.view.refresh();
      responder = await this.findTarget(req, name);
    } else {
      [, responder] = await Promise.all([this.view.refresh(), this.findTarget(req, name)]);
    }
    if (!responder || responder.id === initiator.id) return { ok: false, status: 'unknown-peer', reason: `no node ${req.targetFqdn ?? req.targetVip}` };
    // The rest of what the selection reads, asked for at once (what misses the view's caches is one read batch at the
    // store, not three turns of reads one after another); it is looked at in the order the checks always had.
    const now = this.c.now();
    const [allow, reg, initCert, respCert] = await Promise.all([
      this.view.pairAllowance(initiator.name, responder.name),
      early?.id === responder.id ? early.reg : this.c.store.getRegistration(responder.id),
      this.view.currentCert(initiator.id, now), // cached per certificate revision (policy-view.ts)
      this.view.currentCert(responder.id, now),
    ]);
    // The policy: no route between nodes no rule connects (either way); each end learns what the other may open to it.
    if (!allow.connected) return { ok: false, status: 'policy', reason: `the policy connects ${initiator.name} and ${responder.name} in neither direction` };
    if (!reg || this.c.now() - reg.lastSeen > reg.keepaliveSec * 1000 * REACHABLE_INTERVALS) {
      return { ok: false, status: 'offline', reason: `${responder.name} is not registered` };
    }
    if (!initCert || !respCert) return { ok: false, status: 'refused', reason: 'no valid certificate on record' };
    const allowIn = { toInitiator: formatPortList(allow.bToA), toResponder: formatPortList(allow.aToB) };
    const pathId = this.randomPathId();
    const tunnelKey = this.random(32);
    const plan = choosePath(initiatorReg, reg, { relayOnly: req.relayOnly === true });
    let toResponder: RouteDirection;
    let toInitiator: RouteDirection;
    let relayId: string | null = null;
    if (plan.kind === 'relayed' && req.noRelay) return { ok: false, status: 'refused', reason: `only a relay would do (${plan.why}) and the node asked for none` };
    if (plan.kind === 'relayed') {
      if (!this.c.relays) return { ok: false, status: 'no-relay', reason: `a relay is needed (${plan.why}) and this NMS has none` };
      if (req.avoidRelay) this.suspect.set(`${req.avoidRelay.address}|${req.avoidRelay.port}`, this.c.now() + RELAY_SUSPECT_MS);
      let a;
      try {
        a = await this.c.relays.allocate({ pathId, nodeA: initiator.id, nodeB: responder.id, expiresAt: this.c.now() + RELAYED_PATH_LIFETIME_MS }, this.suspects());
      } catch (err) {
        return { ok: false, status: 'no-relay', reason: `${plan.why}; no relay: ${err instanceof Error ? err.message : String(err)}` };
      }
      relayId = a.relayId;
      const rR = relayFor(reg, a.relay);
      const rI = relayFor(initiatorReg, a.relay);
      toResponder = this.direction(pathId, tunnelKey, PathType.Relayed, false, initiator, initiatorReg, rR ? [rR] : [], initCert, allowIn.toResponder, rR, a.tempKey);
      toInitiator = this.direction(pathId, tunnelKey, PathType.Relayed, true, responder, reg, rI ? [rI] : [], respCert, allowIn.toInitiator, rI, a.tempKey);
    } else {
      // A Punched direction tells the responder to send too; "direct" paths where the responder is behind NAT
      // also get it sending (connection reversal), which the node learns from its own registration.
      const pathType = plan.kind === 'punched' ? PathType.Punched : PathType.Direct;
      toResponder = this.direction(pathId, tunnelKey, pathType, false, initiator, initiatorReg, plan.toResponder, initCert, allowIn.toResponder);
      toInitiator = this.direction(pathId, tunnelKey, pathType, true, responder, reg, plan.toInitiator, respCert, allowIn.toInitiator);
    }
    trace('nms.planned', pathId);
    if (plan.kind === 'relayed') {
      const accepted = await this.pushAndWait(responder.id, reg, toResponder);
      if (accepted === null) return { ok: false, status: 'no-confirmation', reason: `${responder.name} did not confirm the route` };
      if (!accepted) return { ok: false, status: 'refused', reason: `${responder.name} refused the route` };
    } else {
      // Answered now; a responder that refuses or is gone leaves the initiator's handshake unanswered (it gives up
      // after its retransmissions, as for a peer that died after the route was given).
      void this.pushAndWait(responder.id, reg, toResponder).then((accepted) => {
        if (accepted !== true) this.c.onUnconfirmed?.(accepted === null ? 'no-confirmation' : 'refused', responder.name);
      });
    }
    const at = this.c.now();
    this.pairs.remember(initiator.id, responder.id, pathId, plan.kind, true, relayId, toInitiator.relay ?? null, plan.why, at);
    this.pairs.remember(responder.id, initiator.id, pathId, plan.kind, false, relayId, toResponder.relay ?? null, plan.why, at);
    return { ok: true, toInitiator, toResponder, responder, path: plan.kind, why: plan.why };
  }

  /** A Route Confirmation from `nodeId`; returns false if no selection waits for it. */
  confirm(nodeId: number, pathId: bigint, accepted: boolean): boolean {
    const w = this.waiting.get(pathId);
    if (!w || w.responderId !== nodeId) return false;
    this.settle(w, accepted);
    return true;
  }

  /**
   * Pushes `body` to the responder and again after each of PUSH_RETRANSMIT_MS until it confirms: true/false as it
   * accepted or refused, null if it never answered. One promise and one timer at a time for the whole exchange.
   */
  private pushAndWait(responderId: number, reg: RegistrationRecord, body: RouteDirection): Promise<boolean | null> {
    return new Promise<boolean | null>((resolve) => {
      const w: Waiting = { responderId, reg, body, sent: 0, timer: null, resolve };
      this.waiting.set(body.pathId, w);
      try {
        this.pushAgain(w);
      } catch (err) {
        this.waiting.delete(body.pathId);
        throw err;
      }
    });
  }

  /** The next push of `w` and the wait after it. */
  private pushAgain(w: Waiting): void {
    const wait = PUSH_RETRANSMIT_MS[w.sent++]!;
    this.c.push(w.responderId, w.reg, w.body);
    w.timer = setTimeout(this.waited, wait, w);
  }

  /** A push's wait ran out without a confirmation: push again, or give up after the last one. */
  private readonly waited = (w: Waiting): void => {
    w.timer = null;
    if (this.waiting.get(w.body.pathId) !== w) return;
    if (w.sent < PUSH_RETRANSMIT_MS.length) {
      try {
        this.pushAgain(w);
        return;
      } catch {
        // a push that throws ends the wait like an unanswered one
      }
    }
    this.settle(w, null);
  };

  private settle(w: Waiting, accepted: boolean | null): void {
    if (this.waiting.get(w.body.pathId) === w) this.waiting.delete(w.body.pathId);
    if (w.timer) clearTimeout(w.timer);
    w.timer = null;
    w.resolve(accepted);
  }

  /** The node a Direction Request names (`name`: targetName(req), for a request by FQDN). */
  private findTarget(req: DirectionRequest, name: string | null): Promise<NodeRecord | null> {
    if (req.targetVip) return this.view.nodeByVip(req.targetVip);
    return name === null ? Promise.resolve(null) : this.view.nodeByName(name);
  }

  /** The node name of a request by FQDN in this cloud's domain, or null. */
  private targetName(req: DirectionRequest): string | null {
    let fqdn = (req.targetFqdn ?? '').toLowerCase();
    if (fqdn.endsWith('.')) fqdn = fqdn.slice(0, -1);
    const suffix = this.suffix;
    return fqdn.endsWith(suffix) ? fqdn.slice(0, -suffix.length) : null;
  }

  /**
   * One end's Route Direction about peer `n` (one object literal of a fixed shape: spreading partial objects into it
   * was about 5 % of a selection's CPU in a profile).
   */
  private direction(
    pathId: bigint,
    tunnelKey: Buffer,
    pathType: PathType,
    initiator: boolean,
    n: NodeRecord,
    reg: RegistrationRecord,
    endpoints: Endpoint[],
    peerCertificate: Buffer,
    allowIn: string,
    relay?: Endpoint | null,
    tempKey?: Buffer,
  ): RouteDirection {
    // Without a plan's endpoints (never, today): observed first (what works from outside), then what the node reported.
    let eps: Endpoint[];
    if (endpoints.length) eps = endpoints.length > 16 ? endpoints.slice(0, 16) : endpoints; // the plan's own arrays, not shared
    else {
      eps = [reg.observed];
      for (const e of reg.reported) if (!eps.some((x) => x.address === e.address && x.port === e.port)) eps.push(e);
      if (eps.length > 16) eps.length = 16;
    }
    const d: RouteDirection = {
      pathId,
      tunnelKey,
      pathType,
      initiator,
      peerNodeId: n.id,
      peerName: n.name,
      peerFqdn: n.name + this.suffix,
      peerVip4: n.vip4,
      peerVip6: n.vip6,
      peerEndpoints: eps,
      peerCertificate,
      allowIn,
    };
    if (tempKey) d.tempKey = tempKey;
    if (relay) d.relay = relay;
    return d;
  }

  /** TRS endpoints nodes reported dead recently. */
  private suspects(): Endpoint[] {
    const now = this.c.now();
    const out: Endpoint[] = [];
    for (const [k, until] of this.suspect) {
      if (until <= now) this.suspect.delete(k);
      else {
        const i = k.lastIndexOf('|');
        out.push({ address: k.slice(0, i), port: Number(k.slice(i + 1)) });
      }
    }
    return out;
  }
}
