// What the console shows of one node's peers, from what the cloud knows: the last path this instance's NMS selected
// with each peer (direct / punched / relayed, the relay, when and why) and, for a path relayed by this process's own
// TRS, the datagrams and bytes it relayed. Nodes do not report their tunnels' RTT or byte counts to the cloud, so a
// direct or punched path has neither here (`cyphonic node status` / `node ping` on the node has them). Also the
// enrollment token's QR code (SVG drawn on the server with the `qrcode` package).

import QRCode from 'qrcode';
import type { CloudConfig } from '../../config/cloud.js';
import { formatEndpoint } from '../../protocol/endpoint.js';
import type { Store } from '../../store/types.js';
import { ConfigError } from '../../util/errors.js';
import { listNodes } from '../cloud.js';
import type { SelectedPath } from '../nms/routes.js';

export interface PeerDeps {
  /** The NMS's selections for a node id (absent: this process runs no NMS). */
  paths?: (nodeId: number) => SelectedPath[];
  /** The embedded TRS's counts for a path it relays (null: not relayed here or forgotten). */
  relayStats?: (relayId: string, pathId: bigint) => { packets: number; bytes: number; lastActive: number } | null;
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
  why: string;
  selectedAt: string;
  /** Relayed through this process's TRS: what it carried (both directions). */
  relayed: { packets: number; bytes: number; lastActive: string } | null;
  /** Not known to the cloud (nodes do not report it). */
  rttMs: null;
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
  for (const p of d.paths?.(node.id) ?? []) {
    const peer = rows.get(p.peer);
    if (!peer) continue; // removed since
    const st = p.relayId ? (d.relayStats?.(p.relayId, p.pathId) ?? null) : null;
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
      rttMs: null,
    });
  }
  return {
    name,
    source: d.paths ? "route selections by this instance's NMS since it started; relayed bytes from this process's TRS" : 'this process runs no NMS: no route selections known',
    peers,
  };
}

/** The token as a QR code (SVG text; error correction M, 2-module quiet zone). */
export function tokenQr(token: string): Promise<string> {
  return QRCode.toString(token, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
}
