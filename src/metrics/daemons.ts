// What `node up --metrics` and `adapter up --metrics` expose, from the daemon's status at scrape time: its counters
// (handshakes, rekeys, route requests, drops by reason), each peer's bytes, moves, and for the adapter the LAN
// counters (DHCP, ARP/ND proxy, drops) and its leases. Structural types only: src/metrics depends on no daemon.

import type { Registry } from 'prom-client';
import { addCounterSource, addGauge } from './prom.js';

interface PeerView {
  name: string;
  path?: string;
  rxBytes: number;
  txBytes: number;
}

export interface NodeView {
  registered: boolean;
  counters: Record<string, number>;
  peers: PeerView[];
  mobility?: { moves: number; lastHandoverMs: number | null } | null;
}

export interface AdapterView extends NodeView {
  lanCounters: Record<string, number>;
  generalNodes: { name: string; registered: boolean; lease: { v4: { state: string } | null; v6: { state: string } | null }; counters: Record<string, number> }[];
}

export function nodeMetrics(reg: Registry, status: () => NodeView): void {
  addCounterSource(reg, 'node', 'node daemon (registration, route requests, handshakes, rekeys, data plane)', () => status().counters);
  addGauge(reg, 'cyphonic_node_registered', '1 while the node is registered at an NMS', [], () => [[{}, status().registered ? 1 : 0]]);
  addGauge(reg, 'cyphonic_node_peer_bytes', 'bytes through each peer tunnel since it was set up', ['peer', 'direction', 'path'], () =>
    status().peers.flatMap((p) => [[{ peer: p.name, direction: 'rx', path: p.path ?? '' }, p.rxBytes], [{ peer: p.name, direction: 'tx', path: p.path ?? '' }, p.txBytes]] as [Record<string, string>, number][]),
  );
  addGauge(reg, 'cyphonic_node_moves', 'address moves seen since start', [], () => [[{}, status().mobility?.moves ?? 0]]);
  addGauge(reg, 'cyphonic_node_last_handover_seconds', 'the last move: first netlink event to the first peer ack', [], () => {
    const ms = status().mobility?.lastHandoverMs;
    return ms === null || ms === undefined ? [] : [[{}, ms / 1000]];
  });
}

export function adapterMetrics(reg: Registry, status: () => AdapterView): void {
  nodeMetrics(reg, status);
  addCounterSource(reg, 'lan', 'adapter LAN side (DHCPv4/v6, RA, ARP/ND proxy, DNS)', () => status().lanCounters);
  addGauge(reg, 'cyphonic_adapter_leases', 'bound DHCP leases of general nodes, by family', ['family'], () => {
    const g = status().generalNodes;
    return [[{ family: '4' }, g.filter((n) => n.lease.v4?.state === 'bound').length], [{ family: '6' }, g.filter((n) => n.lease.v6?.state === 'bound').length]];
  });
  addGauge(reg, 'cyphonic_adapter_general_nodes', 'general nodes served, by registration state', ['registered'], () => {
    const g = status().generalNodes;
    return [[{ registered: 'true' }, g.filter((n) => n.registered).length], [{ registered: 'false' }, g.filter((n) => !n.registered).length]];
  });
}
