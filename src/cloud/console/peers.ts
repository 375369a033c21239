// What the console shows of one node's peers, from what the cloud knows: what the node itself said of its tunnels in
// its last keepalive at this instance (Keepalive.peers: path type, RTT, bytes each way), the last path this
// instance's NMS selected with each peer (direct / punched / relayed, the relay, when and why) and, for a path
// relayed by this process's own TRS, the datagrams and bytes it relayed. A node reports at most its 32 busiest peers,
// every keepalive (20 s on an open network, less behind NAT). Also the enrollment token's QR code (SVG drawn on the
// server with the `qrcode` package).

import QRCode from 'qrcode';
import type { CloudConfig } from '../../config/cloud.js';
import { PathType } from '../../protocol/constants.js';
import { formatEndpoint } from '../../protocol/endpoint.js';
import type { PeerReport } from '../../protocol/messages.js';
import type { Store } from '../../store/types.js';
import { ConfigError } from '../../util/errors.js';
import { listNodes } from '../cloud.js';
import type { SelectedPath } from '../nms/routes.js';

export interface PeerDeps {
  /** The NMS's selections for a node id (absent: this process runs no NMS). */
  paths?: (nodeId: number) => SelectedPath[];
  /** The embedded TRS's counts for a path it relays (null: not relayed here or forgotten). */
  relayStats?: (relayId: string, pathId: bigint) => { packets: number; bytes: number; lastActive: number } | null;
  /** The node's own report of its tunnels at its last keepalive here (absent: no NMS; null: none yet). */
  reports?: (nodeId: number) => { at: number; peers: PeerReport[] } | null;
}

export interface PeerRow {
  name: string;
  online: boolean;
  vip4: string;
  vip6: string;
  path: 'direct' | 'punched' | 'relayed';
  /** This node started the path (else the peer did). */
  initiator: boolean;
  relayId: string | null;
  relay: string | null;
  /** Why this instance selected the path, and when (null: the node reported a path selected elsewhere). */
  why: string | null;
  selectedAt: string | null;
  /** Relayed through this process's TRS: what it carried (both directions). */
  relayed: { packets: number; bytes: number; lastActive: string } | null;
  /** As the node reported at `reportedAt` (null: not in its last report). */
  rttMs: number | null;
  txBytes: number | null;
  rxBytes: number | null;
  reportedAt: string | null;
}

export interface NodePeers {
  name: string;
  /** Where the paths come from, for the reader. */
  source: string;
  peers: PeerRow[];
}

export async function nodePeers(store: Store, cfg: CloudConfig, name: string, d: PeerDeps): Promise<NodePeers> {
  const node = await store.getNodeByName(name);
  if (!node) throw new ConfigError(`no node named ${name}`, 'ERR_UNKNOWN_NODE');
  const rows = new Map((await listNodes(store, cfg)).map((n) => [n.id, n]));
  const peers: PeerRow[] = [];
  const report = d.reports?.(node.id) ?? null;
  const reported = new Map((report?.peers ?? []).map((r) => [r.peerNodeId, r]));
  const fromReport = (r: PeerReport | undefined) => ({
    rttMs: r?.rttMs ?? null,
    txBytes: r ? Number(r.txBytes) : null,
    rxBytes: r ? Number(r.rxBytes) : null,
    reportedAt: r && report ? new Date(report.at).toISOString() : null,
  });
  for (const p of d.paths?.(node.id) ?? []) {
    const peer = rows.get(p.peer);
    if (!peer) continue; // removed since
    const st = p.relayId ? (d.relayStats?.(p.relayId, p.pathId) ?? null) : null;
    const r = reported.get(p.peer);
    reported.delete(p.peer);
    peers.push({
      name: peer.name,
      online: peer.online,
      vip4: peer.vip4,
      vip6: peer.vip6,
      path: p.kind,
      initiator: p.initiator,
      relayId: p.relayId,
      relay: p.relay ? formatEndpoint(p.relay) : null,
      why: p.why,
      selectedAt: new Date(p.at).toISOString(),
      relayed: st ? { packets: st.packets, bytes: st.bytes, lastActive: new Date(st.lastActive).toISOString() } : null,
      ...fromReport(r),
      // The node's own word on the path type is newer than our selection (a punch may have replaced a relay since).
      ...(r ? { path: PATH_NAMES[r.pathType] ?? p.kind } : {}),
    });
  }
  // Peers the node reported whose paths another instance selected (or this one before a restart).
  for (const r of reported.values()) {
    const peer = rows.get(r.peerNodeId);
    if (!peer) continue;
    peers.push({
      name: peer.name,
      online: peer.online,
      vip4: peer.vip4,
      vip6: peer.vip6,
      path: PATH_NAMES[r.pathType] ?? 'direct',
      initiator: false,
      relayId: null,
      relay: null,
      why: null,
      selectedAt: null,
      relayed: null,
      ...fromReport(r),
    });
  }
  return {
    name,
    source: d.paths
      ? `the node's own report at its last keepalive here${report ? ` (${new Date(report.at).toISOString()})` : ' (none yet)'}; route selections by this instance's NMS since it started; relayed bytes from this process's TRS`
      : 'this process runs no NMS: no route selections or reports known',
    peers,
  };
}

const PATH_NAMES: Record<number, PeerRow['path']> = { [PathType.Direct]: 'direct', [PathType.Punched]: 'punched', [PathType.Relayed]: 'relayed' };

/** The token as a QR code (SVG text; error correction M, 2-module quiet zone). */
export function tokenQr(token: string): Promise<string> {
  return QRCode.toString(token, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
}
