// A peer that forgot our path (it restarted, or evicted us to free a data-plane slot) drops everything we send; the
// PeerManager notices (we send, nothing comes back for silentPathMs), asks with PathProbes, and on silence asks the
// NMS for a new route, whose Route Direction reaches the peer: traffic flows again in seconds, not when the old
// session expires minutes later. A peer that is alive but quiet (a one-way stream) answers the probes and keeps its
// path. Two PeerManagers over a fake wire and a fake NMS; the data plane's counters are the test's.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { LocalIdentity, SessionKeys, TrustAnchors } from '../../../src/crypto/handshake.js';
import { PathType } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import type { RouteDirection } from '../../../src/protocol/messages.js';
import { PeerManager } from '../../../src/node/peers.js';
import { silentLogger } from '../../../src/util/log.js';
import { createTestPki, type TestPki } from './pki-fixture.js';

const SILENT_MS = 800;

interface Node {
  name: string;
  id: number;
  vip4: string;
  vip6: string;
  ep: Endpoint;
  local: LocalIdentity;
  certDer: Buffer;
  pm: PeerManager;
  installed: SessionKeys[];
  /** What the data plane counted for the peer: the test moves it. */
  stats: { rxBytes: number; txBytes: number };
}

let pki: TestPki;
let anchors: TrustAnchors;

async function node(name: string, id: number): Promise<Node> {
  const { local, certDer } = await pki.identity(name, id);
  return { name, id, vip4: `100.64.0.${id}`, vip6: `fd00::${id}`, ep: { address: `198.18.0.${10 + id}`, port: 30000 }, local, certDer, installed: [], stats: { rxBytes: 0, txBytes: 0 } } as unknown as Node;
}

/** Wires `me` to whichever node `other()` is now (a restarted peer is a new PeerManager at the same address). */
function manager(me: Node, other: () => Node): PeerManager {
  const direct = async (): Promise<RouteDirection> => {
    const pathId = randomBytes(8).readBigUInt64BE() | 1n;
    const tunnelKey = randomBytes(32);
    const half = (peer: Node, initiator: boolean): RouteDirection => ({
      pathId, pathType: PathType.Direct, initiator, tunnelKey,
      peerNodeId: peer.id, peerName: peer.name, peerFqdn: `${peer.name}.cyphonic.internal`, peerVip4: peer.vip4, peerVip6: peer.vip6,
      peerEndpoints: [peer.ep], peerCertificate: peer.certDer,
    });
    await other().pm.onRouteDirection(half(me, false));
    return half(other(), true);
  };
  return new PeerManager({
    local: () => me.local,
    anchors: () => anchors,
    routes: () => ({ direction: direct, confirm: async () => {} }),
    sink: () => ({
      send: (d: Buffer) => void setImmediate(() => other().pm.onDatagram(d, me.ep)),
      install: async (_r, keys) => void me.installed.push(keys),
      peerStats: () => me.stats,
    }),
    logger: silentLogger,
    silentPathMs: SILENT_MS,
  });
}

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Our data plane sends all the time and hears nothing back (the test's stand-in for a stream into the void). */
function sendIntoSilence(n: Node): NodeJS.Timeout {
  return setInterval(() => (n.stats.txBytes += 1400), 100);
}

describe('silent paths', () => {
  before(async () => {
    pki = await createTestPki();
    anchors = pki.anchors;
  });

  test('a peer that restarted (the path is gone there) is found silent and reached again over a new route', async () => {
    const a = await node('alpha', 1);
    let b = await node('beta', 2);
    a.pm = manager(a, () => b);
    b.pm = manager(b, () => a);
    await a.pm.resolve('beta.cyphonic.internal');
    await until('established', () => a.installed.length > 0 && b.installed.length > 0, 15_000);
    const first = a.installed.at(-1)!.pathId;

    // beta restarts: same identity and address, no paths. alpha keeps sending on the old path.
    b.pm.close();
    const restarted = await node('beta', 2);
    b = restarted;
    b.pm = manager(b, () => a);
    const stream = sendIntoSilence(a);
    try {
      await until('a new path with the restarted peer', () => b.installed.length > 0, SILENT_MS + 3 * 1500 + 10_000);
    } finally {
      clearInterval(stream);
    }
    assert.equal(a.pm.counters.get('path.silent-check'), 1);
    assert.ok(a.pm.counters.get('probe.sent') >= 3, 'asked three times first');
    assert.equal(a.pm.counters.get('path.silent'), 1);
    assert.equal(a.pm.counters.get('reselect.silent'), 1);
    assert.equal(b.pm.counters.get('probe.unknown-path'), 3, 'the restarted peer could not answer for the old path');
    await until('alpha installed the new path', () => a.installed.at(-1)!.pathId !== first, 10_000);
    assert.equal(a.installed.at(-1)!.pathId, b.installed.at(-1)!.pathId, 'both ends on the new path');
    a.pm.close();
    b.pm.close();
  });

  test('a peer that is alive but sends nothing back (a one-way stream) answers the probes and keeps its path', async () => {
    const a = await node('gamma', 3);
    const b = await node('delta', 4);
    a.pm = manager(a, () => b);
    b.pm = manager(b, () => a);
    await a.pm.resolve('delta.cyphonic.internal');
    await until('established', () => a.installed.length > 0 && b.installed.length > 0, 15_000);
    const path = a.installed.at(-1)!.pathId;
    const stream = sendIntoSilence(a);
    try {
      // A check is counted when it starts, before its probe is answered; checks run one at a time, so once the third
      // has started the first two are decided (answered, or path.silent counted).
      await until('two checks done', () => a.pm.counters.get('path.silent-check') >= 3, 4 * SILENT_MS + 10_000);
    } finally {
      clearInterval(stream);
    }
    assert.ok(a.pm.counters.get('probe.verified') >= 2, 'each check answered');
    assert.equal(a.pm.counters.get('path.silent'), 0);
    assert.equal(a.pm.counters.get('reselect.silent'), 0);
    assert.equal(a.installed.at(-1)!.pathId, path, 'the same path');
    a.pm.close();
    b.pm.close();
  });
});
