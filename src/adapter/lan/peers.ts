// The peers' virtual addresses the adapter has seen in use on behalf of its general nodes: a bounded, expiring set.
//
// Why: the ND proxy answers for the whole overlay pool, but a /64 has 2^24 solicited-node groups, far too many to
// join on an MLD-snooping switch. So the adapter joins the groups of the peers it knows are in play — an address
// noted here when the adapter's DNS answered it to a general node (an overlay AAAA/A), when a packet from it came
// through the overlay to a general node, or when a general node sent a packet to it — and leaves a group when
// every address behind it has been idle for IDLE_MS. The same set tells the proxy which addresses it may defend
// against a DAD probe: only a known peer's (a device may own any other).
//
// note(address, now) → the solicited-node group newly needed, if any; expire(now) → groups no longer needed.
// Beyond MAX_PEERS the least recently seen address is dropped (its group left if no other address needs it).

import { solicitedNodeAddress } from './ip.js';

/** Tunable: an address not seen for this long is forgotten (ms). */
export const PEER_IDLE_MS = 30 * 60_000;
/** Tunable: most peer addresses remembered (one MLD record each at most: ~70 fit one report). */
export const MAX_PEERS = 1024;

export class KnownPeers {
  /** address → last seen (ms); Map order = least recently seen first. */
  private readonly seen = new Map<string, number>();
  /** solicited-node group → how many remembered IPv6 addresses map to it. */
  private readonly groups = new Map<string, number>();

  constructor(
    private readonly idleMs = PEER_IDLE_MS,
    private readonly max = MAX_PEERS,
  ) {}

  has(address: string): boolean {
    return this.seen.has(address);
  }

  /** Every remembered address (least recently seen first). */
  addresses(): string[] {
    return [...this.seen.keys()];
  }

  get size(): number {
    return this.seen.size;
  }

  /** The solicited-node groups of the remembered IPv6 addresses. */
  solicitedGroups(): string[] {
    return [...this.groups.keys()];
  }

  /** Refreshes a remembered address (the per-packet fast path); false when it is not remembered. */
  touch(address: string, now: number): boolean {
    if (!this.seen.has(address)) return false;
    this.seen.delete(address);
    this.seen.set(address, now);
    return true;
  }

  /**
   * Records `address` (canonical text) as seen now. Returns the solicited-node group the adapter must join now
   * (an IPv6 address whose group nobody needed yet), and `left`: groups no longer needed after an eviction.
   */
  note(address: string, now: number): { join: string | null; left: string[] } {
    const known = this.seen.has(address);
    this.seen.delete(address);
    this.seen.set(address, now);
    if (known) return { join: null, left: [] };
    let join: string | null = null;
    if (address.includes(':')) {
      const g = solicitedNodeAddress(address);
      const n = this.groups.get(g) ?? 0;
      this.groups.set(g, n + 1);
      if (n === 0) join = g;
    }
    const left: string[] = [];
    while (this.seen.size > this.max) {
      const oldest = this.seen.keys().next().value as string;
      const g = this.forget(oldest);
      if (g) left.push(g);
    }
    return { join, left: join && left.includes(join) ? left.filter((g) => g !== join) : left };
  }

  /** Forgets addresses idle for longer than the idle time; returns the groups no longer needed. */
  expire(now: number): string[] {
    const left: string[] = [];
    for (const [a, t] of this.seen) {
      if (now - t <= this.idleMs) break; // Map order: the rest were seen later
      const g = this.forget(a);
      if (g) left.push(g);
    }
    return left;
  }

  /** Drops `address`; returns its group if no remembered address needs it any more. */
  private forget(address: string): string | null {
    this.seen.delete(address);
    if (!address.includes(':')) return null;
    const g = solicitedNodeAddress(address);
    const n = (this.groups.get(g) ?? 1) - 1;
    if (n > 0) {
      this.groups.set(g, n);
      return null;
    }
    this.groups.delete(g);
    return g;
  }
}
