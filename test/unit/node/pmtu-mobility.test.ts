// Mobility re-learns the path MTU: a move of our own (new addresses) asks the data plane to probe every peer's path
// again (src/node/mobility.ts relearnPathMtu -> DataPlane.relearnPathMtu -> the worker restarts each search), also
// for relayed paths whose endpoint (the TRS) does not change; going offline asks nothing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MobilityManager, type MobilityPeer } from '../../../src/node/mobility.js';
import { silentLogger } from '../../../src/util/log.js';

test('a move asks the data plane to learn every path MTU again; offline does not', () => {
  let relearned = 0;
  const peer: MobilityPeer = { nodeId: 42, name: 'b', pathId: 1n, keys: [], endpoint: { address: '198.18.0.12', port: 4503 }, candidates: [], relayed: true };
  const m = new MobilityManager({
    nodeId: () => 7,
    peers: { establishedPeers: () => [peer], peerOfPath: () => peer, setEndpoint: () => undefined, reselect: () => undefined },
    send: () => undefined,
    localEndpoints: () => [{ address: '198.18.0.20', port: 30000 }],
    logger: silentLogger,
    retransmitMs: [],
    relearnPathMtu: () => void relearned++,
  });
  try {
    m.moved({ v4: false, v6: false });
    assert.equal(relearned, 0, 'between networks: nothing to learn yet');
    m.moved({ v4: true, v6: false });
    assert.equal(relearned, 1);
  } finally {
    m.close();
  }
});
