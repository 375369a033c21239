// A TunnelRequest that reaches the responder before the NMS's push of the same path (the NMS answers the initiator
// of a direct path beside the push) is held, unopened, and answered once the push arrives; the holding is bounded
// against anyone sending requests for made-up paths, expires, and is dropped with a refused route. Real
// certificates, Route Directions and handshakes; the data plane is a recording fake.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { generateKeyPair } from '../../../src/crypto/index.js';
import { HandshakeInitiator, type SessionKeys } from '../../../src/crypto/handshake.js';
import { PathType } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import type { RouteDirection } from '../../../src/protocol/messages.js';
import { PeerManager } from '../../../src/node/peers.js';
import { silentLogger } from '../../../src/util/log.js';
import { createTestPki } from './pki-fixture.js';

async function rig() {
  const pki = await createTestPki();
  const { privateKeyPem } = await generateKeyPair();
  const me = await pki.identity('resp', 1, undefined, privateKeyPem);
  const peer = await pki.identity('init', 2, undefined, privateKeyPem);
  const clock = { t: Date.now() };
  const installed: SessionKeys[] = [];
  const sent: { d: Buffer; to: Endpoint }[] = [];
  const confirmed: { pathId: bigint; ok: boolean }[] = [];
  const pm = new PeerManager({
    local: () => me.local,
    anchors: () => pki.anchors,
    routes: () => ({ direction: () => Promise.reject(new Error('not used')), confirm: async (pathId, ok) => void confirmed.push({ pathId, ok }) }),
    sink: () => ({
      send: (d: Buffer, to: Endpoint) => void sent.push({ d, to }),
      install: async (_r, keys) => void installed.push(keys),
      peerStats: () => ({ rxBytes: 0, txBytes: 0 }),
      remove: () => {},
    }),
    logger: silentLogger,
    now: () => clock.t,
  });
  let next = 1n;
  const rd = (certDer = peer.certDer): RouteDirection => ({
    pathId: (next++ << 16n) | 7n, pathType: PathType.Direct, initiator: false, tunnelKey: randomBytes(32),
    peerNodeId: 2, peerName: 'init', peerFqdn: 'init.cyphonic.internal', peerVip4: '100.64.0.2', peerVip6: 'fd00::2',
    peerEndpoints: [{ address: '198.18.0.2', port: 30000 }], peerCertificate: certDer,
  });
  const request = (r: RouteDirection): { hs: HandshakeInitiator; frame: Buffer } => {
    const hs = new HandshakeInitiator(peer.local, pki.anchors, { pathId: r.pathId, tunnelKey: r.tunnelKey }, { nodeId: 1, name: 'resp' });
    return { hs, frame: hs.request(1n, 1) };
  };
  const settle = async (until: () => boolean): Promise<void> => {
    for (let i = 0; i < 200 && !until(); i++) await new Promise((r) => setTimeout(r, 5));
  };
  return { pki, pm, clock, installed, sent, confirmed, rd, request, settle, other: await pki.identity('other', 3, undefined, privateKeyPem) };
}

const FROM = { address: '198.18.0.2', port: 30000 };

test('a TunnelRequest that arrives before the push is answered when the push comes', async () => {
  const r = await rig();
  try {
    const path = r.rd();
    const { hs, frame } = r.request(path);
    r.pm.onDatagram(frame, FROM);
    assert.equal(r.sent.length, 0, 'nothing is answered for a path we have not been given');
    assert.equal(r.pm.counters.get('handshake.early-held'), 1);
    await r.pm.onRouteDirection(path);
    await r.settle(() => r.sent.length > 0);
    assert.equal(r.installed.length, 1, 'the session is installed');
    assert.equal(r.installed[0]!.pathId, path.pathId);
    assert.ok(hs.handleResponse(r.sent[0]!.d), 'the initiator completes with the answer');
    assert.deepEqual(r.sent[0]!.to, FROM);
    assert.equal(r.pm.counters.get('handshake.early-released'), 1);
    assert.deepEqual(r.confirmed, [{ pathId: path.pathId, ok: true }]);
  } finally {
    r.pm.close();
  }
});

test('requests for made-up paths are held within bounds and do not push out one that arrives after them', async () => {
  const r = await rig();
  try {
    for (let i = 0; i < 500; i++) {
      const fake = r.rd();
      r.pm.onDatagram(r.request(fake).frame, { address: '198.18.0.66', port: 1000 + i });
    }
    const held = (r.pm as unknown as { early: Map<bigint, { frames: unknown[] }> }).early;
    assert.ok(held.size <= 32, `paths held: ${held.size}`);
    assert.ok(r.pm.counters.get('handshake.early-dropped') >= 500 - 32);
    // A path flooded with copies holds only two of them.
    const busy = r.rd();
    const copy = r.request(busy).frame;
    for (let i = 0; i < 50; i++) r.pm.onDatagram(copy, FROM);
    assert.equal(held.get(busy.pathId)!.frames.length, 2);
    // The genuine request after the flood is still answered.
    const path = r.rd();
    const { hs, frame } = r.request(path);
    r.pm.onDatagram(frame, FROM);
    await r.pm.onRouteDirection(path);
    await r.settle(() => r.sent.length > 0);
    assert.ok(hs.handleResponse(r.sent.at(-1)!.d));
  } finally {
    r.pm.close();
  }
});

test('a held request expires, and one for a refused route is dropped unanswered', async () => {
  const r = await rig();
  try {
    const late = r.rd();
    r.pm.onDatagram(r.request(late).frame, FROM);
    r.clock.t += 2001;
    await r.pm.onRouteDirection(late);
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(r.sent.length, 0, 'an expired hold is not answered');
    assert.equal(r.pm.counters.get('handshake.early-released'), 0);

    // The push names the initiator but carries another node's certificate: refused, and its held request with it.
    const bad = r.rd(r.other.certDer);
    r.pm.onDatagram(r.request(bad).frame, FROM);
    await r.pm.onRouteDirection(bad);
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(r.sent.length, 0);
    assert.deepEqual(r.confirmed.at(-1), { pathId: bad.pathId, ok: false });
    assert.equal((r.pm as unknown as { early: Map<bigint, unknown> }).early.has(bad.pathId), false);
  } finally {
    r.pm.close();
  }
});
