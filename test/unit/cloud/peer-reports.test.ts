// Nodes report what their tunnels carry with each keepalive (Keepalive.peers: per peer the path type, RTT and bytes
// each way), and the NMS keeps the last report of each node for the console. A real NmsClient against a real
// NmsService (in-memory store) over an in-process wire: a report is kept; a malformed one (unknown path type, an
// record that does not decode) is dropped whole and counted while the keepalive is still answered; more records than
// allowed cannot be sent; a keepalive without one leaves the last report alone; the next report replaces the last
// whole, longer or shorter (it is kept in place, as it came); past the bound on kept reports, a node that stopped
// reporting is forgotten before one that still reports.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { NmsService } from '../../../src/cloud/nms/service.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { encodePeerReport, MAX_PEER_REPORTS, type PeerReport } from '../../../src/protocol/messages.js';
import { openStore } from '../../../src/store/index.js';
import type { Store } from '../../../src/store/types.js';
import { NmsClient } from '../../../src/node/signaling.js';
import { silentLogger } from '../../../src/util/log.js';

const POOLS = { v4: '100.64.0.0/10', v6: 'fd00:1:2::/48' };
const NMS_EP: Endpoint = { address: '198.18.0.10', port: 4502 };
const FROM: Endpoint = { address: '198.18.0.20', port: 40000 };

describe('peer reports in keepalives', () => {
  let store: Store;
  let service: NmsService;
  let client: NmsClient;
  let nodeId: number;

  before(async () => {
    store = await openStore(':memory:');
    service = new NmsService({ domain: 'cyphonic.internal' }, { store, logger: silentLogger });
    const n = await store.createNode({ name: 'alpha', kind: 'node' }, POOLS);
    nodeId = n.id;
    const key = randomBytes(32);
    await store.putCommonKey({ nodeId, key, expiresAt: Date.now() + 120_000, createdAt: Date.now() });
    client = new NmsClient(
      { nodeId, commonKey: key, nms: NMS_EP },
      { send: (msg: Buffer) => void service.handle(Buffer.from(msg), FROM).then((reply) => reply && setImmediate(() => client.handleDatagram(reply))) },
    );
    await client.register([FROM], false);
  });
  after(() => store.close());

  const report = (r: Partial<PeerReport> = {}): PeerReport => ({ peerNodeId: 7, pathType: 1, rttMs: 3, txBytes: 1000n, rxBytes: 2000n, ...r });

  test('a keepalive\'s report is kept for the console; one without a report leaves it alone', async () => {
    assert.equal(service.peerReport(nodeId), null);
    await client.keepalive(undefined, [2000], [encodePeerReport(report()), encodePeerReport(report({ peerNodeId: 8, pathType: 3, rttMs: undefined, txBytes: 1n << 40n }))]);
    const r = service.peerReport(nodeId)!;
    assert.deepEqual(r.peers, [report(), { peerNodeId: 8, pathType: 3, txBytes: 1n << 40n, rxBytes: 2000n }]);
    await client.keepalive(undefined, [2000]);
    assert.deepEqual(service.peerReport(nodeId), r, 'unchanged by a keepalive without a report');
  });

  test('a malformed report is dropped whole and counted; the keepalive is still answered', async () => {
    const before = service.peerReport(nodeId);
    const bad = encodePeerReport(report());
    bad[bad.indexOf(2) + 3] = 9; // tag 2 (path type) = 9: no such path type
    const ack = await client.keepalive(undefined, [2000], [encodePeerReport(report({ peerNodeId: 9 })), bad]);
    assert.deepEqual(ack.observed, FROM);
    assert.equal(service.counters.get('keepalive.bad-report'), 1);
    assert.deepEqual(service.peerReport(nodeId), before, 'nothing of it kept');
    // More records than a keepalive may carry cannot even be sent.
    const many = Array.from({ length: MAX_PEER_REPORTS + 1 }, (_, i) => encodePeerReport(report({ peerNodeId: 100 + i })));
    await assert.rejects(client.keepalive(undefined, [300], many), RangeError);
  });

  test('the next report replaces the last whole, whether it is longer or shorter', async () => {
    const many = Array.from({ length: MAX_PEER_REPORTS }, (_, i) => report({ peerNodeId: 1000 + i, txBytes: BigInt(i) << 33n, ...(i % 2 ? { rttMs: undefined } : {}) }));
    const t0 = Date.now();
    await client.keepalive(undefined, [2000], many.map(encodePeerReport));
    const full = service.peerReport(nodeId)!;
    assert.deepEqual(full.peers, many.map((r) => (r.rttMs === undefined ? { peerNodeId: r.peerNodeId, pathType: r.pathType, txBytes: r.txBytes, rxBytes: r.rxBytes } : r)));
    assert.ok(full.at >= t0);
    await client.keepalive(undefined, [2000], [encodePeerReport(report({ peerNodeId: 42, rxBytes: 5n }))]);
    assert.deepEqual(service.peerReport(nodeId)!.peers, [report({ peerNodeId: 42, rxBytes: 5n })], 'nothing left of the longer one');
    await client.keepalive(undefined, [2000], many.slice(0, 3).map(encodePeerReport));
    assert.equal(service.peerReport(nodeId)!.peers.length, 3);
  });
});

test('past the bound, a node that stopped reporting is forgotten before one that still reports', async () => {
  const store = await openStore(':memory:');
  let clock = Date.now();
  const service = new NmsService({ domain: 'cyphonic.internal', maxReports: 3 }, { store, logger: silentLogger, now: () => clock });
  const nodes: { id: number; client: NmsClient }[] = [];
  for (let i = 0; i < 5; i++) {
    const n = await store.createNode({ name: `n${i}`, kind: 'node' }, POOLS);
    const key = randomBytes(32);
    await store.putCommonKey({ nodeId: n.id, key, expiresAt: clock + 3_600_000, createdAt: clock });
    const from: Endpoint = { address: '198.18.0.20', port: 40000 + i };
    const client: NmsClient = new NmsClient(
      { nodeId: n.id, commonKey: key, nms: NMS_EP },
      { send: (msg: Buffer) => void service.handle(Buffer.from(msg), from).then((reply) => reply && setImmediate(() => client.handleDatagram(reply))) },
    );
    await client.register([from], false);
    nodes.push({ id: n.id, client });
  }
  const reportFrom = (i: number): Promise<unknown> => nodes[i]!.client.keepalive(undefined, [2000], [encodePeerReport({ peerNodeId: 100 + i, pathType: 1, txBytes: 1n, rxBytes: 2n })]);
  const kept = (): number[] => nodes.flatMap((n, i) => (service.peerReport(n.id) ? [i] : []));
  // n0, n1, n2 report; a minute later n0 and n1 still do (n0 was the first ever), n2 has stopped.
  for (const i of [0, 1, 2]) await reportFrom(i);
  clock += 61_000;
  for (const i of [0, 1]) await reportFrom(i);
  await reportFrom(3);
  assert.deepEqual(kept(), [0, 1, 3], 'the node that stopped reporting makes room, not the first reporter');
  // Every kept report is live: more nodes report than are kept, so one of them goes, and the bound holds.
  await reportFrom(4);
  assert.equal(kept().length, 3);
  assert.ok(kept().includes(4), 'the new report is kept');
  for (const n of nodes) n.client.close();
  await store.close();
});
