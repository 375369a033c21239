// Data-plane slots are reused: a node that has met MAX_PEER_SLOTS peers still sets up a tunnel to the next one by
// forgetting the least recently used idle peer (its paths, relay bindings and engine slot), and refuses only when
// every peer is in use. A thousand real certificates, Route Directions and a real handshake; the data plane is a
// recording fake (the engine's side, dpRemove, is tested in dataplane-engine.test.ts).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { generateKeyPair } from '../../../src/crypto/index.js';
import { HandshakeInitiator, type SessionKeys } from '../../../src/crypto/handshake.js';
import { PathType } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import type { RouteDirection } from '../../../src/protocol/messages.js';
import { MAX_PEER_SLOTS } from '../../../src/node/dataplane/stats.js';
import { PEER_EVICT_IDLE_MS, PeerManager } from '../../../src/node/peers.js';
import { silentLogger } from '../../../src/util/log.js';
import { createTestPki } from './pki-fixture.js';

test(`a node's ${MAX_PEER_SLOTS + 1}th peer works: the least recently used idle peer gives up its slot; peers in use never do`, async () => {
  const pki = await createTestPki();
  const { privateKeyPem } = await generateKeyPair();
  const victim = await pki.identity('victim', 1, undefined, privateKeyPem);
  const peers: { name: string; id: number; local: Awaited<ReturnType<typeof pki.identity>>['local']; certDer: Buffer }[] = [];
  for (let i = 0; i <= MAX_PEER_SLOTS; i++) {
    const name = `p${i}`;
    const { local, certDer } = await pki.identity(name, 100 + i, undefined, privateKeyPem);
    peers.push({ name, id: 100 + i, local, certDer });
  }
  let t = Date.now();
  const stats = new Map<number, { rxBytes: number; txBytes: number }>();
  const installed: { slot: number; keys: SessionKeys }[] = [];
  const removed: number[] = [];
  const sent: { d: Buffer; to: Endpoint }[] = [];
  const pm = new PeerManager({
    local: () => victim.local,
    anchors: () => pki.anchors,
    routes: () => ({ direction: () => Promise.reject(new Error('not used')), confirm: async () => {} }),
    sink: () => ({
      send: (d: Buffer, to: Endpoint) => void sent.push({ d, to }),
      install: async (r, keys) => void installed.push({ slot: r.slot, keys }),
      peerStats: (slot) => stats.get(slot) ?? { rxBytes: 0, txBytes: 0 },
      remove: (slot) => void removed.push(slot),
    }),
    logger: silentLogger,
    now: () => t,
  });
  const rdFor = (i: number): RouteDirection => {
    const p = peers[i]!;
    return {
      pathId: BigInt(i + 1) << 8n, pathType: PathType.Direct, initiator: false, tunnelKey: randomBytes(32),
      peerNodeId: p.id, peerName: p.name, peerFqdn: `${p.name}.cyphonic.internal`, peerVip4: `100.64.${i >> 8}.${i & 0xff}`, peerVip6: `fd00::${i.toString(16)}`,
      peerEndpoints: [{ address: '198.18.0.2', port: 30000 + i }], peerCertificate: p.certDer,
    };
  };
  try {
    const rds: RouteDirection[] = [];
    for (let i = 0; i < MAX_PEER_SLOTS; i++) {
      rds.push(rdFor(i));
      await pm.onRouteDirection(rds[i]!);
      t += 1; // adopted one after another: p1 is the least recently used once p0 is busy
    }
    assert.equal(pm.status().length, MAX_PEER_SLOTS);
    const slotOf = (name: string): number => (pm as unknown as { peers: Map<number, { name: string; slot: number }> }).peers.get(peers.find((p) => p.name === name)!.id)!.slot;
    const busy = slotOf('p0');
    const lru = slotOf('p1');

    // Every slot taken and every peer met moments ago: the next peer is refused, nothing is forgotten.
    const newcomer = rdFor(MAX_PEER_SLOTS);
    await pm.onRouteDirection(newcomer);
    assert.equal(pm.counters.get('peer.full'), 1);
    assert.deepEqual(removed, []);

    // Two minutes later p0 still moves traffic (beyond keepalive noise), the others have been quiet.
    t += PEER_EVICT_IDLE_MS + 1;
    stats.set(busy, { rxBytes: 50_000, txBytes: 40_000 });
    await pm.onRouteDirection(newcomer);
    assert.deepEqual(removed, [lru], 'the least recently used idle peer (p1) gave up its slot');
    assert.equal(pm.counters.get('peer.evicted'), 1);
    const names = pm.status().map((s) => s.name);
    assert.ok(names.includes('p0') && !names.includes('p1') && names.includes(`p${MAX_PEER_SLOTS}`));

    // The newcomer's tunnel: a real handshake, installed in the freed slot.
    const hs = new HandshakeInitiator(peers[MAX_PEER_SLOTS]!.local, pki.anchors, { pathId: newcomer.pathId, tunnelKey: newcomer.tunnelKey }, { nodeId: 1, name: 'victim' });
    const from = { address: '198.18.0.9', port: 41000 };
    pm.onDatagram(hs.request(1n, 1), from);
    for (let i = 0; i < 200 && installed.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(installed.length, 1);
    assert.equal(installed[0]!.slot, lru);
    assert.equal(installed[0]!.keys.pathId, newcomer.pathId);
    for (let i = 0; i < 200 && sent.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(hs.handleResponse(sent.at(-1)!.d), 'the newcomer completes with the answer');

    // The forgotten peer's handshakes find no path any more (held unanswered until its next Route Direction adopts
    // it again, test/unit/node/early-request.test.ts).
    const stale = new HandshakeInitiator(peers[1]!.local, pki.anchors, { pathId: rds[1]!.pathId, tunnelKey: rds[1]!.tunnelKey }, { nodeId: 1, name: 'victim' });
    const answers = sent.length;
    pm.onDatagram(stale.request(1n, 1), { address: '198.18.0.2', port: 30001 });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(pm.counters.get('handshake.early-held'), 1);
    assert.equal(sent.length, answers, 'not answered');
  } finally {
    pm.close();
  }
});
