// Live policy changes at the NMS: it watches the store's policy revision (bumped by `cloud policy set`, `cloud tags`
// and `cloud revoke`, in this or another process) and pushes a sealed PolicyUpdate to every node that has paths,
// listing for each of its peers what that peer may now open to it, whether any rule still connects them, and whether
// the peer was revoked. Retransmitted until the node acknowledges (an Ack with the push's txid). Sessions are not
// touched: nodes swap their filters in place (a revoked peer's, or a removed general node's: drop everything both
// ways). Newly revoked (or removed) nodes are also sent to every live TRS (RelayRevoke), which drops their relayed
// paths and refuses their binds.
// The revocation list reaches every node, not only the revoked node's peers: a newly revoked node's serials go to
// every node with a session at this NMS, and a node that registers afresh (started, restarted, failed over) gets the
// whole current list (the newest MAX_CATCHUP_REVOKED revoked nodes), so it refuses them before ever meeting them.

import type { Endpoint } from '../../protocol/endpoint.js';
import { encodePolicyEntry, MAX_POLICY_ENTRIES, MAX_REVOKED_SERIALS, type PolicyEntry, type PolicyUpdate } from '../../protocol/messages.js';
import { allowedPorts, connected, formatPortList, type Subject } from '../../policy/policy.js';
import { loadPolicy, POLICY_REV_KEY } from '../../policy/store.js';
import type { Store } from '../../store/types.js';
import type { Counters } from '../../util/counters.js';
import type { Logger } from '../../util/log.js';
import type { PairIndex } from './pair-table.js';

/** Tunable: how often the NMS looks at the policy revision in the store (a local read; PostgreSQL could NOTIFY). */
export const POLICY_WATCH_MS = 500;
/** Tunable: revoked nodes whose serials a freshly registered node is sent (the newest; 16 PolicyUpdates at most). */
export const MAX_CATCHUP_REVOKED = 1024;
/** Tunable: waits between retransmissions of an unacknowledged PolicyUpdate. */
export const POLICY_PUSH_RETRANSMIT_MS = [250, 500, 1000, 2000] as const;

export interface PolicyPushComponents {
  store: Store;
  logger: Logger;
  counters: Counters;
  /** The nodes with paths and their peers (RouteSelector.pairs). */
  pairs: PairIndex;
  /** Seals a PolicyUpdate for `nodeId` with its Common Key and sends it to its registration's observed address; false if it cannot (no session or registration). */
  send: (nodeId: number, txid: number, body: PolicyUpdate, to: Endpoint) => boolean;
  /** Tells the live TRS that these nodes were revoked (trs/client.ts revokeAtRelays); absent: no relays. */
  revokeAtRelays?: (nodeIds: number[]) => Promise<{ acked: number; failed: number }>;
}

export class PolicyPusher {
  private rev: string | null | undefined = undefined;
  private timer: NodeJS.Timeout | null = null;
  private txid = 1;
  /** Unacknowledged pushes: txid → resolve. */
  private readonly waiting = new Map<number, () => void>();
  private running: Promise<void> | null = null;
  /** Revoked nodes the TRS were already told about (a node that gets a valid certificate again leaves it). */
  private readonly relayTold = new Set<number>();
  /** Revoked nodes every registered node was already sent (same rule). */
  private readonly nodesTold = new Set<number>();
  /** Revoked node → its revoked serials, as of the last reading of the store (start and every change). */
  private revokedList = new Map<number, string[]>();
  /** Revoked serial → the node it was issued to (readRevoked). */
  private readonly serialOwner = new Map<string, number>();

  constructor(private readonly c: PolicyPushComponents) {}

  start(everyMs = POLICY_WATCH_MS): void {
    this.timer = setInterval(() => void this.check(), everyMs);
    this.timer.unref();
    void this.check();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const done of this.waiting.values()) done();
    this.waiting.clear();
  }

  /** Nodes without a valid certificate, as of the last reading (start and every policy revision). */
  revokedNodes(): ReadonlySet<number> {
    return new Set(this.revokedList.keys());
  }

  /** An Ack from a node: true if it answered one of our pushes. */
  acked(txid: number): boolean {
    const done = this.waiting.get(txid);
    if (!done) return false;
    this.waiting.delete(txid);
    done();
    return true;
  }

  /** Reads the revision; on a change (not the first read) pushes to every node with paths. One run at a time. */
  async check(): Promise<void> {
    if (this.running) return this.running; // the one in progress (callers may rely on its outcome)
    this.running = (async () => {
      try {
        const rev = await this.c.store.getMeta(POLICY_REV_KEY);
        const first = this.rev === undefined;
        if (rev === this.rev) return;
        this.rev = rev;
        if (first) {
          // Revocations from before our start: known (for registrations), not news to push.
          this.revokedList = await this.readRevoked();
          for (const id of this.revokedList.keys()) this.nodesTold.add(id);
        } else await this.pushAll();
      } catch (err) {
        this.c.counters.inc('policy.watch-failed');
        this.c.logger.warn('policy watch failed', { err: err instanceof Error ? err.message : String(err) });
      }
    })().finally(() => (this.running = null));
    await this.running;
  }

  /**
   * Nodes without a valid certificate (revoked by `cloud revoke`) → the serials of their newest revoked certificates
   * (what nodes add to their revocation lists), oldest node first.
   */
  private async readRevoked(existing?: Set<number>): Promise<Map<number, string[]>> {
    // Candidates: the nodes we hold paths for (their peers must hear even of a plain expiry) and the owners of revoked
    // serials (one query, owners remembered: a certificate never changes hands), not every node in the store.
    const candidates = this.involved();
    for (const serial of await this.c.store.listRevokedSerials()) {
      let owner = this.serialOwner.get(serial);
      if (owner === undefined) {
        const cert = await this.c.store.getCertificate(serial);
        if (!cert) continue;
        owner = cert.nodeId;
        this.serialOwner.set(serial, owner);
      }
      candidates.add(owner);
    }
    const out = new Map<number, string[]>();
    const now = Date.now();
    for (const id of [...candidates].sort((a, b) => a - b)) {
      if (existing && !existing.has(id)) {
        out.set(id, []); // deleted (`general-node remove`): its peers close their tunnels as for a revoked node
        continue;
      }
      const certs = await this.c.store.listNodeCertificates(id);
      if (certs.length > 0 && !certs.some((c) => c.revokedAt === null && c.notAfter > now)) {
        out.set(id, certs.filter((c) => c.revokedAt !== null && /^[0-9a-f]{1,40}$/i.test(c.serial)).slice(-MAX_REVOKED_SERIALS).map((c) => c.serial.toLowerCase()));
      }
    }
    return out;
  }

  /** Every node with remembered paths and every peer of one. */
  private involved(): Set<number> {
    const out = new Set<number>();
    for (const id of this.c.pairs.nodes()) {
      out.add(id);
      for (const peer of this.c.pairs.peersOf(id)) out.add(peer);
    }
    return out;
  }

  private static revokedEntry(nodeId: number, serials: string[]): PolicyEntry {
    return { peerNodeId: nodeId, connected: false, allowIn: '', revoked: true, revokedSerials: serials };
  }

  private async pushAll(): Promise<void> {
    const [policy, nodes, tags, regs] = await Promise.all([loadPolicy(this.c.store), this.c.store.listNodes(), this.c.store.listNodeTags(), this.c.store.listRegistrations()]);
    const subjects = new Map<number, Subject>(nodes.map((n) => [n.id, { name: n.name, tags: tags.get(n.name) ?? [] }]));
    // Revoked nodes: their peers close the tunnels, every node lists their serials.
    const serials = await this.readRevoked(new Set(subjects.keys()));
    this.revokedList = serials;
    const revoked = new Set(serials.keys());
    this.c.counters.inc('policy.changed');
    const sends: Promise<void>[] = [];
    const newlyRevoked = [...revoked].filter((id) => !this.relayTold.has(id));
    const involved = this.involved();
    for (const id of this.relayTold) if (!revoked.has(id) && involved.has(id)) this.relayTold.delete(id);
    if (newlyRevoked.length > 0 && this.c.revokeAtRelays) sends.push(this.tellRelays(newlyRevoked));
    for (const id of this.nodesTold) if (!revoked.has(id)) this.nodesTold.delete(id); // enrolled again: news when revoked again
    const news = [...revoked].filter((id) => !this.nodesTold.has(id));
    for (const id of news) this.nodesTold.add(id);
    const registered = new Map(regs.map((r) => [r.nodeId, r]));
    for (const nodeId of new Set([...this.c.pairs.nodes(), ...registered.keys()])) {
      const me = subjects.get(nodeId);
      if (!me || revoked.has(nodeId)) continue;
      const peers = new Set(this.c.pairs.peersOf(nodeId));
      const entries: PolicyEntry[] = [];
      for (const peerId of peers) {
        const peer = subjects.get(peerId);
        if (revoked.has(peerId)) entries.push(PolicyPusher.revokedEntry(peerId, serials.get(peerId) ?? []));
        else if (peer) entries.push({ peerNodeId: peerId, connected: connected(policy, me, peer), allowIn: formatPortList(allowedPorts(policy, peer, me)) });
      }
      // Every other node hears of a new revocation too (its revocation list; no tunnel to close).
      for (const id of news) if (id !== nodeId && !peers.has(id)) entries.push(PolicyPusher.revokedEntry(id, serials.get(id) ?? []));
      const reg = registered.get(nodeId);
      if (!reg || entries.length === 0) continue;
      for (let i = 0; i < entries.length; i += MAX_POLICY_ENTRIES) {
        sends.push(this.push(nodeId, entries.slice(i, i + MAX_POLICY_ENTRIES).map(encodePolicyEntry), reg.observed));
      }
    }
    await Promise.all(sends);
  }

  /**
   * A node registered afresh (it started, restarted or came from another NMS): it is sent the current revocation list
   * (the newest MAX_CATCHUP_REVOKED revoked nodes' serials), retransmitted until acknowledged. Nothing when none.
   */
  async sendRevocations(nodeId: number, to: Endpoint): Promise<void> {
    const list = [...this.revokedList].filter(([id]) => id !== nodeId).slice(-MAX_CATCHUP_REVOKED);
    if (list.length === 0) return;
    this.c.counters.inc('policy.revocations-sent');
    const entries = list.map(([id, serials]) => encodePolicyEntry(PolicyPusher.revokedEntry(id, serials)));
    const sends: Promise<void>[] = [];
    for (let i = 0; i < entries.length; i += MAX_POLICY_ENTRIES) sends.push(this.push(nodeId, entries.slice(i, i + MAX_POLICY_ENTRIES), to));
    await Promise.all(sends);
  }

  private async tellRelays(nodeIds: number[]): Promise<void> {
    for (const id of nodeIds) this.relayTold.add(id);
    try {
      const { acked, failed } = await this.c.revokeAtRelays!(nodeIds);
      this.c.counters.inc('policy.relay-revoke.acked', acked);
      if (failed > 0) {
        this.c.counters.inc('policy.relay-revoke.failed', failed);
        this.c.logger.warn('a TRS did not acknowledge a revocation (it forgets the paths when they idle out)', { nodes: nodeIds.length, failed });
      }
    } catch (err) {
      this.c.counters.inc('policy.relay-revoke.failed');
      this.c.logger.warn('telling the TRS about a revocation failed', { err: err instanceof Error ? err.message : String(err) });
    }
  }

  /**
   * Tells adapter node `nodeId` that its general-node list changed (a PolicyUpdate with no entries and generalNodes
   * set), retransmitted until acknowledged. Nothing is sent when this NMS holds no registration for it.
   */
  async pushGeneralNodes(nodeId: number): Promise<void> {
    const reg = await this.c.store.getRegistration(nodeId);
    if (reg) await this.push(nodeId, [], reg.observed, true);
  }

  private async push(nodeId: number, entries: Buffer[], to: Endpoint, generalNodes = false): Promise<void> {
    this.txid = (this.txid % 0x7fffffff) + 1;
    const txid = this.txid;
    const acked = new Promise<true>((resolve) => this.waiting.set(txid, () => resolve(true)));
    try {
      for (const wait of POLICY_PUSH_RETRANSMIT_MS) {
        if (!this.c.send(nodeId, txid, generalNodes ? { entries, generalNodes } : { entries }, to)) return;
        this.c.counters.inc('policy.push');
        let t: NodeJS.Timeout | undefined;
        const got = await Promise.race([acked, new Promise<false>((r) => (t = setTimeout(() => r(false), wait)))]);
        clearTimeout(t);
        if (got) {
          this.c.counters.inc('policy.acked');
          return;
        }
      }
      this.c.counters.inc('policy.unacked');
    } finally {
      this.waiting.delete(txid);
    }
  }
}

