// What route selection reads about the policy and the nodes, kept in memory for as long as the store's policy
// revision (policy.rev) stays the same: the running policy (parsed once), each node's tags, and node records by
// name and by virtual IP. Every change of the policy or of tags, and every deletion of a node, writes its data first
// and bumps the revision after (policy/store.ts, general-nodes.ts, `cloud revoke`), so one read of the revision per
// route selection tells whether anything here may be stale: a selection then sees what a fresh read would, as of
// that read. Names and addresses of a node never change for its id; a node that does not exist is never cached
// (it is read again, so a node created since is found). Bounded: the caches are dropped whole when full.
// Certificates are kept the same way under their own revision (CERTS_REV_KEY), which the store itself changes in the
// transaction of every certificate write (enrollment, renewal, revocation, removal), whichever instance or process
// writes: a selection reads both revisions, and a certificate list is used only under the revision it was read under.

import { CERTS_REV_KEY, type NodeRecord, type Store } from '../../store/types.js';
import { allowedPorts, connected, type Policy, type Subject } from '../../policy/policy.js';
import { loadPolicy, POLICY_REV_KEY, type PairAllowance } from '../../policy/store.js';
import { normalizeIp } from '../../protocol/ip.js';
import { CertCache } from './cert-cache.js';

/** Tunable: node records and tag sets kept at once (each ~0.3 kB; dropped whole when full). */
export const POLICY_VIEW_MAX = 200_000;
/** Tunable: nodes whose certificates are kept at once (the oldest read is dropped first). */
export const CERT_CACHE_MAX = 20_000;
/** Tunable: bytes of certificates kept at once (~0.5-1 kB each; the oldest read is dropped first). */
export const CERT_CACHE_BYTES = 16 * 1024 * 1024;

export class PolicyView {
  /** The revision the cached data belongs to; undefined before the first read. */
  private rev: string | null | undefined = undefined;
  private policy: Policy | null = null;
  private readonly tags = new Map<string, readonly string[]>();
  private readonly byName = new Map<string, NodeRecord>();
  private readonly byVip = new Map<string, NodeRecord>();
  /** The certificate revision `certs` belongs to; undefined before the first read. */
  private certsRev: string | null | undefined = undefined;
  /** Each node's newest certificate valid when read (cert-cache.ts). */
  private readonly certs = new CertCache(CERT_CACHE_MAX, CERT_CACHE_BYTES);
  /** Reads of the store this view saved and made (the bench and tests look). */
  hits = 0;
  misses = 0;

  constructor(private readonly store: Store) {}

  /** Reads the revision once: forgets everything cached under another one. Call at the start of each selection. */
  async refresh(): Promise<void> {
    const [rev, certsRev] = await Promise.all([this.store.getMeta(POLICY_REV_KEY), this.store.getMeta(CERTS_REV_KEY)]);
    if (certsRev !== this.certsRev) {
      this.certsRev = certsRev;
      this.certs.clear();
    }
    if (rev === this.rev) return;
    this.rev = rev;
    this.policy = null;
    this.tags.clear();
    this.byName.clear();
    this.byVip.clear();
  }

  /**
   * The node cached under `name` or virtual IP `address`, as of the last refresh() (it may have been deleted since:
   * only for reads that are checked against a refresh made after them), or undefined. Counts nothing.
   */
  peek(name: string | null, address: string | null): NodeRecord | undefined {
    if (name !== null) return this.byName.get(name);
    const key = address === null ? undefined : normalizeIp(address);
    return key === undefined ? undefined : this.byVip.get(key);
  }

  nodeByName(name: string): Promise<NodeRecord | null> {
    const hit = this.byName.get(name);
    if (hit) return Promise.resolve(this.hit(hit));
    return this.nodeByNameMiss(name);
  }

  private async nodeByNameMiss(name: string): Promise<NodeRecord | null> {
    this.misses++;
    const rev = this.rev;
    const n = await this.store.getNodeByName(name);
    if (n && rev === this.rev) this.remember(n); // not if the revision moved while we read
    return n;
  }

  async nodeByVip(address: string): Promise<NodeRecord | null> {
    const key = normalizeIp(address);
    const hit = key === undefined ? undefined : this.byVip.get(key);
    if (hit) return this.hit(hit);
    this.misses++;
    const rev = this.rev;
    const n = await this.store.getNodeByVip(address);
    if (n && rev === this.rev) this.remember(n);
    return n;
  }

  /**
   * The node's newest certificate that is neither revoked nor expired at `now` (what a Route Direction carries), or
   * null: the store's answer as of the last refresh().
   */
  currentCert(nodeId: number, now: number): Promise<Buffer | null> {
    const der = this.certs.get(nodeId, now);
    if (der) {
      this.hits++;
      return Promise.resolve(der);
    }
    return this.currentCertMiss(nodeId, now);
  }

  /**
   * Read from the store: a node not kept, or whose kept certificate has expired (an older one may still be valid).
   * A node without a valid certificate is not kept: it is read again each time (it gets no routes meanwhile).
   */
  private async currentCertMiss(nodeId: number, now: number): Promise<Buffer | null> {
    this.misses++;
    const rev = this.certsRev;
    const all = await this.store.listNodeCertificates(nodeId);
    let newest: (typeof all)[number] | null = null;
    for (let i = all.length - 1; i >= 0 && !newest; i--) if (all[i]!.revokedAt === null && all[i]!.notAfter > now) newest = all[i]!;
    if (!newest) return null;
    if (rev === this.certsRev) this.certs.put(nodeId, newest.der, newest.notAfter); // not if the revision moved while we read
    return newest.der;
  }

  /** The same answer as policy/store.ts pairAllowance(), from the cached policy and tags. */
  pairAllowance(a: string, b: string): Promise<PairAllowance> {
    const policy = this.policy;
    const ta = this.tags.get(a);
    const tb = this.tags.get(b);
    if (policy && ta && tb) {
      this.hits += 3;
      return Promise.resolve(allowance(policy, a, ta, b, tb));
    }
    return this.pairAllowanceMiss(a, b);
  }

  private async pairAllowanceMiss(a: string, b: string): Promise<PairAllowance> {
    const rev = this.rev;
    const [policy, ta, tb] = await Promise.all([this.policy ? this.hit(this.policy) : this.loadPolicy(rev), this.tagsOf(a, rev), this.tagsOf(b, rev)]);
    return allowance(policy, a, ta, b, tb);
  }

  private async loadPolicy(rev: string | null | undefined): Promise<Policy> {
    this.misses++;
    const p = await loadPolicy(this.store);
    if (rev === this.rev) this.policy = p; // not if the revision moved while we read
    return p;
  }

  private async tagsOf(name: string, rev: string | null | undefined): Promise<readonly string[]> {
    const hit = this.tags.get(name);
    if (hit) return this.hit(hit);
    this.misses++;
    const t = await this.store.getNodeTags(name);
    if (rev === this.rev) {
      if (this.tags.size >= POLICY_VIEW_MAX) this.tags.clear();
      this.tags.set(name, t);
    }
    return t;
  }

  private remember(n: NodeRecord): void {
    if (this.byName.size >= POLICY_VIEW_MAX) {
      this.byName.clear();
      this.byVip.clear();
    }
    this.byName.set(n.name, n);
    const k4 = n.vip4 ? normalizeIp(n.vip4) : undefined;
    if (k4 !== undefined) this.byVip.set(k4, n);
    const k6 = n.vip6 ? normalizeIp(n.vip6) : undefined;
    if (k6 !== undefined) this.byVip.set(k6, n);
  }

  private hit<T>(v: T): T {
    this.hits++;
    return v;
  }
}

function allowance(policy: Policy, a: string, ta: readonly string[], b: string, tb: readonly string[]): PairAllowance {
  const sa: Subject = { name: a, tags: ta };
  const sb: Subject = { name: b, tags: tb };
  return { connected: connected(policy, sa, sb), aToB: allowedPorts(policy, sa, sb), bToA: allowedPorts(policy, sb, sa) };
}
