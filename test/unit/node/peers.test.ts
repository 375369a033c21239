// PeerManager in one process: two nodes wired back to back through a fake NMS and a fake wire.
// Route selection + handshake establish one session; both ends asking at once still agree on one path.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { LocalIdentity, SessionKeys, TrustAnchors } from '../../../src/crypto/handshake.js';
import { createTestPki, type TestPki } from './pki-fixture.js';
import { PathType } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import type { RouteDirection } from '../../../src/protocol/messages.js';
import { PeerManager } from '../../../src/node/peers.js';
import { MobilityManager } from '../../../src/node/mobility.js';
import { silentLogger } from '../../../src/util/log.js';

interface Side {
  name: string;
  id: number;
  vip4: string;
  vip6: string;
  ep: Endpoint;
  local: LocalIdentity;
  certDer: Buffer;
  pm: PeerManager;
  installed: { keys: SessionKeys; receiveOnly: boolean }[];
  /** Endpoints the data plane was told to use (mobility). */
  moved: Endpoint[];
}

let anchors: TrustAnchors;
const sides: Side[] = [];

/** Fake NMS: a Direction Request from `from` pushes the responder half to the other side, then answers. */
async function direct(from: Side, to: Side): Promise<RouteDirection> {
  const pathId = randomBytes(8).readBigUInt64BE() | 1n;
  const tunnelKey = randomBytes(32);
  const half = (peer: Side, initiator: boolean): RouteDirection => ({
    pathId, pathType: PathType.Direct, initiator, tunnelKey,
    peerNodeId: peer.id, peerName: peer.name, peerFqdn: `${peer.name}.cyphonic.internal`, peerVip4: peer.vip4, peerVip6: peer.vip6,
    peerEndpoints: [peer.ep], peerCertificate: peer.certDer,
  });
  await to.pm.onRouteDirection(half(from, false));
  return half(to, true);
}

let pki: TestPki;

/** Two nodes wired back to back; `wire.down` drops every datagram between them while it is true. */
async function makePair(names: [string, string], opts: { rekeyAfterMs?: number; wire?: { down: boolean } } = {}): Promise<[Side, Side]> {
  const pair: Side[] = [];
  for (const [i, name] of names.entries()) {
    const { local, certDer } = await pki.identity(name, i + 1);
    pair.push({ name, id: i + 1, vip4: `100.64.0.${i + 1}`, vip6: `fd00::${i + 1}`, ep: { address: `198.18.0.${11 + i}`, port: 30000 }, local, certDer, installed: [], moved: [] } as unknown as Side);
  }
  for (const me of pair) {
    const other = pair.find((s) => s !== me)!;
    me.pm = new PeerManager({
      local: () => me.local,
      anchors: () => anchors,
      routes: () => ({ direction: () => direct(me, other), confirm: async () => {} }),
      sink: () => ({
        send: (d: Buffer) => void (opts.wire?.down || setImmediate(() => other.pm.onDatagram(d, me.ep))),
        install: async (_r, keys, receiveOnly) => void me.installed.push({ keys, receiveOnly: !!receiveOnly }),
        peerStats: () => ({ rxBytes: 0, txBytes: 0 }),
        setEndpoint: (_slot, ep) => void me.moved.push(ep),
      }),
      logger: silentLogger,
      ...(opts.rekeyAfterMs ? { rekeyAfterMs: opts.rekeyAfterMs } : {}),
    });
  }
  return pair as [Side, Side];
}

describe('peer manager', () => {
  before(async () => {
    pki = await createTestPki();
    anchors = pki.anchors;
    sides.push(...(await makePair(['alpha', 'beta'])));
  });

  const settle = async (): Promise<void> => {
    for (let i = 0; i < 100 && !sides.every((s) => s.pm.status().every((p) => p.state === 'established')); i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
  };
  const sendingPath = (s: Side): bigint => s.installed.filter((x) => !x.receiveOnly).at(-1)!.keys.pathId;

  test('a DNS lookup selects the route and establishes one tunnel; both ends hold matching keys', async () => {
    const [a, b] = sides as [Side, Side];
    assert.deepEqual(await a.pm.resolve('beta.cyphonic.internal'), { vip4: b.vip4, vip6: b.vip6 });
    await settle();
    const ka = a.installed.at(-1)!.keys;
    const kb = b.installed.at(-1)!.keys;
    assert.equal(ka.pathId, kb.pathId);
    assert.deepEqual(ka.send, kb.recv);
    assert.deepEqual(ka.recv, kb.send);
    const st = a.pm.status()[0]!;
    assert.equal(st.name, 'beta');
    assert.equal(st.state, 'established');
    assert.equal(st.endpoint, '198.18.0.12:30000');
    assert.ok(st.routeSelectionMs !== null && st.tunnelMs !== null);
  });

  test('both ends initiating at once end up sending on the same path', async () => {
    const [a, b] = sides as [Side, Side];
    // Fresh paths from both sides at the same moment (a second selection each, as after a restart of both).
    const before = [a.installed.length, b.installed.length];
    await Promise.all([(a.pm as unknown as { selectRoute(t: object): Promise<unknown> }).selectRoute({ targetFqdn: 'beta.cyphonic.internal' }), (b.pm as unknown as { selectRoute(t: object): Promise<unknown> }).selectRoute({ targetFqdn: 'alpha.cyphonic.internal' })]);
    await settle();
    assert.ok(a.installed.length >= before[0]! + 2 && b.installed.length >= before[1]! + 2, 'both new paths were established');
    assert.equal(sendingPath(a), sendingPath(b), 'one path carries traffic both ways');
  });

  test('mobility over the established path: the peer manager authenticates the update, moves the data plane, acks', async () => {
    const [a, b] = sides as [Side, Side];
    const newAddr: Endpoint = { address: '198.18.0.99', port: 30000 };
    const box: { mb?: MobilityManager } = {};
    const ma = new MobilityManager({ nodeId: () => a.id, peers: a.pm, send: (m) => setImmediate(() => box.mb!.onDatagram(m, newAddr)), localEndpoints: () => [newAddr], logger: silentLogger });
    const mb = new MobilityManager({ nodeId: () => b.id, peers: b.pm, send: (m) => setImmediate(() => ma.onDatagram(m, b.ep)), localEndpoints: () => [b.ep], logger: silentLogger });
    box.mb = mb;
    assert.equal(a.pm.establishedPeers()[0]!.pathId, sendingPath(a), 'mobility sees the path that carries traffic');
    ma.moved({ v4: true, v6: false });
    for (let i = 0; i < 50 && ma.counters.get('update.acked') === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(ma.counters.get('update.acked'), 1);
    assert.equal(b.pm.status()[0]!.endpoint, '198.18.0.99:30000');
    assert.deepEqual(b.moved.at(-1), newAddr, 'the data plane was told');
    // A re-selection (what a move without a usable path triggers) makes a new path and handshake to the same peer.
    const n = a.installed.length;
    a.pm.reselect(b.id, 'test');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(a.pm.counters.get('reselect.test'), 1);
    assert.ok(a.installed.length > n, 'a new session was installed');
    assert.equal(a.pm.status()[0]!.vip4, b.vip4);
    ma.close();
    mb.close();
  });

  test('a rekey that times out is tried again, backing off, and succeeds once the peer answers', async () => {
    const wire = { down: false };
    const [a, b] = await makePair(['gamma', 'delta'], { rekeyAfterMs: 1000, wire });
    try {
      await a.pm.resolve('delta.cyphonic.internal');
      for (let i = 0; i < 100 && a.installed.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      const first = a.installed.length;
      assert.ok(first > 0, 'established');
      wire.down = true;
      // The rekey starts after ~1 s and gives up after its 2.25 s of retransmissions.
      for (let i = 0; i < 80 && a.pm.counters.get('rekey.failed') === 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(a.pm.counters.get('rekey.failed'), 1, 'the rekey timed out');
      assert.equal(a.installed.length, first, 'no new session while the peer is unreachable');
      wire.down = false;
      for (let i = 0; i < 80 && a.installed.length === first; i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(a.installed.length > first, 'a later attempt made new keys');
      assert.ok(a.pm.counters.get('rekey') >= 2);
      const ka = a.installed.at(-1)!.keys;
      assert.deepEqual(ka.send, b.installed.at(-1)!.keys.recv, 'both ends hold the new session');
    } finally {
      a.pm.close();
      b.pm.close();
    }
  });
});
