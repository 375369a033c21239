// The directory at the NMS: for each node, the peers it may reach (name, node id, virtual addresses), so the node's
// DNS can answer for a peer from memory, at once, and start route selection beside the answer instead of before it.
// A peer is listed when the policy connects the two nodes (either direction) and it has not been revoked; the list is
// capped at MAX_DIRECTORY_ENTRIES per node (beyond that, names are looked up through route selection as before).
//
// Revision: "<policy rev>|<directory rev>". The policy revision changes with `cloud policy set`, tags, revocations and
// removals; the directory revision (DIRECTORY_REV_KEY) with every node created (enrollment, `general-node add`). The
// NMS reads both with its policy watch; a change rebuilds the snapshot, and nodes learn the new revision from a
// DirectoryNotice pushed once, or from their next KeepaliveAck, and fetch the pages (docs/PROTOCOL.md, "Directory").
// Nothing here is a trust decision: a listed peer still needs a route selection, which checks the policy, the
// registration and the certificate, and a handshake, which checks the certificate again.

import { randomBytes } from 'node:crypto';
import { encodeDirectoryEntry, MAX_DIRECTORY_ENTRY_LEN, type DirectoryPage } from '../../protocol/messages.js';
import { connected, type Policy, type Subject } from '../../policy/policy.js';
import { loadPolicy, POLICY_REV_KEY } from '../../policy/store.js';
import type { Store } from '../../store/types.js';

/** Meta key bumped whenever a node is created: its peers' directories gain it. */
export const DIRECTORY_REV_KEY = 'directory.rev';
/** Tunable: peers one node's directory lists at most (its 4096 lowest node ids). */
export const MAX_DIRECTORY_ENTRIES = 4096;
/** Tunable: encoded entry bytes per page, so a sealed page stays well under a 1280-byte path MTU. */
export const DIRECTORY_PAGE_BYTES = 900;
/**
 * Tunable: a new revision is built (and announced) at most this often. Each build lists every node, and each node's
 * pages are cut on its first request (a pass over the nodes until MAX_DIRECTORY_ENTRIES are listed), so a burst of
 * enrollments costs one rebuild and one fetch per node, not one per enrollment.
 */
export const DIRECTORY_REBUILD_MS = 2000;
/** Tunable: nodes whose paged directories are kept ready (the most recent askers). */
export const DIRECTORY_CACHE_NODES = 4096;

/** Marks that a node was created; running NMSs tell the other nodes within about a second. */
export async function bumpDirectoryRev(store: Store): Promise<void> {
  await store.setMeta(DIRECTORY_REV_KEY, `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`);
}

interface Listed {
  id: number;
  subject: Subject;
  entry: Buffer;
}

interface Snapshot {
  rev: string;
  policy: Policy;
  nodes: Listed[];
  byId: Map<number, Listed>;
}

export class Directory {
  private snap: Snapshot | null = null;
  /** node id → its directory cut into pages, for the current snapshot (bounded; most recent askers). */
  private readonly pages = new Map<number, Buffer[][]>();
  /** The refresh in progress: concurrent callers (a burst of first registrations) share it instead of each listing every node. */
  private refreshing: Promise<boolean> | null = null;

  constructor(
    private readonly store: Store,
    /** Nodes whose certificates are all revoked (the policy pusher's list): never listed. */
    private readonly revoked: () => ReadonlySet<number>,
  ) {}

  /** The current revision, or null before the first refresh. */
  get rev(): string | null {
    return this.snap?.rev ?? null;
  }

  /**
   * Reads both revisions and rebuilds the snapshot when either changed. Returns true on a change after the first
   * snapshot (the caller then tells nodes). Calls made while one runs share its outcome.
   */
  refresh(): Promise<boolean> {
    if (this.refreshing) return this.refreshing;
    const run = this.rebuild().finally(() => {
      if (this.refreshing === run) this.refreshing = null;
    });
    this.refreshing = run;
    return run;
  }

  private async rebuild(): Promise<boolean> {
    const [p, d] = await Promise.all([this.store.getMeta(POLICY_REV_KEY), this.store.getMeta(DIRECTORY_REV_KEY)]);
    const rev = `${p ?? '-'}|${d ?? '-'}`.slice(0, 64);
    if (this.snap?.rev === rev) return false;
    const first = this.snap === null;
    const [policy, nodes, tags] = await Promise.all([loadPolicy(this.store), this.store.listNodes(), this.store.listNodeTags()]);
    const revoked = this.revoked();
    const listed: Listed[] = [];
    for (const n of nodes.sort((a, b) => a.id - b.id)) {
      if (revoked.has(n.id)) continue;
      listed.push({ id: n.id, subject: { name: n.name, tags: tags.get(n.name) ?? [] }, entry: encodeDirectoryEntry({ nodeId: n.id, name: n.name, vip4: n.vip4, vip6: n.vip6 }) });
    }
    this.snap = { rev, policy, nodes: listed, byId: new Map(listed.map((l) => [l.id, l])) };
    this.pages.clear();
    return !first;
  }

  /** Page `page` of `nodeId`'s directory at the current revision; null before the first refresh. */
  page(nodeId: number, page: number): DirectoryPage | null {
    const snap = this.snap;
    if (!snap) return null;
    let pages = this.pages.get(nodeId);
    if (pages) this.pages.delete(nodeId);
    else pages = this.cut(snap, nodeId);
    this.pages.set(nodeId, pages);
    if (this.pages.size > DIRECTORY_CACHE_NODES) this.pages.delete(this.pages.keys().next().value as number);
    const n = Math.min(page, pages.length - 1);
    return { rev: snap.rev, page: n, pages: pages.length, entries: pages[n]! };
  }

  /** The peers `nodeId` may reach, cut into pages of at most DIRECTORY_PAGE_BYTES (one empty page when none). */
  private cut(snap: Snapshot, nodeId: number): Buffer[][] {
    const me = snap.byId.get(nodeId);
    const pages: Buffer[][] = [[]];
    let bytes = 0;
    let count = 0;
    if (!me) return pages;
    for (const peer of snap.nodes) {
      if (peer.id === nodeId || !connected(snap.policy, me.subject, peer.subject)) continue;
      if (++count > MAX_DIRECTORY_ENTRIES) break;
      const size = peer.entry.length + 3;
      if (bytes + size > DIRECTORY_PAGE_BYTES) {
        pages.push([]);
        bytes = 0;
      }
      pages[pages.length - 1]!.push(peer.entry);
      bytes += size;
    }
    return pages;
  }
}

// An entry always fits a page.
if (MAX_DIRECTORY_ENTRY_LEN + 3 > DIRECTORY_PAGE_BYTES) throw new Error('directory: DIRECTORY_PAGE_BYTES below one entry');
