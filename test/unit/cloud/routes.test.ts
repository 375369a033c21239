// Route selection scenarios in one process: Direction Request → push to the responder and Route Direction to the
// initiator (at once for a direct path, after the Confirmation for a relayed one); unknown, offline and silent peers;
// retransmitted requests answered once.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openStore } from '../../../src/store/index.js';
import type { Store } from '../../../src/store/types.js';
import { DIRECTIONS_IN_FLIGHT, NmsService } from '../../../src/cloud/nms/service.js';
import { NmsClient } from '../../../src/node/signaling.js';
import { MessageType, PathType, Status } from '../../../src/protocol/constants.js';
import { endpointKey, type Endpoint } from '../../../src/protocol/endpoint.js';
import { decodeBody } from '../../../src/protocol/messages.js';
import { silentLogger } from '../../../src/util/log.js';
import { RequestError } from '../../../src/util/errors.js';
import { bumpPolicyRev } from '../../../src/policy/store.js';
import { sleep } from '../../../src/util/sleep.js';

const POOLS = { v4: '100.64.0.0/10', v6: 'fd00:1:2::/48' };
const NMS: Endpoint = { address: '198.18.0.10', port: 4502 };

/** Makes `c` accept every Route Direction pushed to it (it confirms the path). */
function confirmRoutes(c: NmsClient): void {
  c.onPush = (type, body) => {
    if (type === MessageType.RouteDirectionResponder) void c.confirm(decodeBody(MessageType.RouteDirectionResponder, body).pathId, true);
  };
}

describe('route selection at the NMS', () => {
  let store: Store;
  let service: NmsService;
  const clients = new Map<string, NmsClient>();
  const mute = new Set<string>();

  /** A node in the store with a Common Key and a (fake) certificate, registered at `nms` (the suite's NMS by default). */
  async function node(name: string, ep: Endpoint, nms?: NmsService): Promise<{ client: NmsClient; id: number }> {
    const n = await store.createNode({ name, kind: 'node' }, POOLS);
    const key = randomBytes(32);
    await store.putCommonKey({ nodeId: n.id, key, expiresAt: Date.now() + 60_000, createdAt: Date.now() });
    await store.addCertificate({ serial: randomBytes(8).toString('hex'), nodeId: n.id, der: Buffer.from(`cert-of-${name}`), notAfter: Date.now() + 86_400_000, createdAt: Date.now() });
    const client = new NmsClient({ nodeId: n.id, commonKey: key, nms: NMS }, {
      send: (msg) => void (nms ?? service).handle(msg, ep).then((r) => r && client.handleDatagram(r)),
    });
    clients.set(endpointKey(ep), client);
    await client.register([ep], false);
    return { client, id: n.id };
  }

  before(async () => {
    store = await openStore(':memory:');
    service = new NmsService({ domain: 'cyphonic.internal' }, {
      store,
      logger: silentLogger,
      send: (d, to) => {
        const k = endpointKey(to);
        if (!mute.has(k)) clients.get(k)?.handleDatagram(d);
      },
    });
  });
  after(() => store.close());

  test('both ends get the same path id and Tunnel Key, and each the other\'s certificate and endpoints', async () => {
    const a = await node('alpha', { address: '198.18.0.11', port: 30000 });
    const b = await node('beta', { address: '198.18.0.12', port: 30000 });
    const pushed: ReturnType<typeof decodeBody<MessageType.RouteDirectionResponder>>[] = [];
    b.client.onPush = (type, body) => {
      const rd = decodeBody(MessageType.RouteDirectionResponder, body);
      assert.equal(type, MessageType.RouteDirectionResponder);
      pushed.push(rd);
      void b.client.confirm(rd.pathId, true);
    };
    const mine = await a.client.direction({ targetFqdn: 'beta.cyphonic.internal' });
    assert.equal(pushed.length, 1);
    const theirs = pushed[0]!;
    assert.equal(mine.pathId, theirs.pathId);
    assert.deepEqual(mine.tunnelKey, theirs.tunnelKey);
    assert.equal(mine.tunnelKey.length, 32);
    assert.equal(mine.initiator, true);
    assert.equal(theirs.initiator, false);
    assert.equal(mine.pathType, PathType.Direct);
    assert.equal(mine.peerName, 'beta');
    assert.equal(theirs.peerName, 'alpha');
    assert.deepEqual(mine.peerCertificate, Buffer.from('cert-of-beta'));
    assert.deepEqual(theirs.peerCertificate, Buffer.from('cert-of-alpha'));
    assert.deepEqual(mine.peerEndpoints[0], { address: '198.18.0.12', port: 30000 });
    // By virtual address too.
    const byVip = await a.client.direction({ targetVip: (await store.getNodeByName('beta'))!.vip6 });
    assert.equal(byVip.peerNodeId, b.id);
    assert.notEqual(byVip.pathId, mine.pathId, 'each selection makes a new path');
  });

  test('unknown names get UnknownPeer; a direct path is answered before the responder confirms, and a silent one is counted', async () => {
    const a = clients.get(endpointKey({ address: '198.18.0.11', port: 30000 }))!;
    await assert.rejects(a.direction({ targetFqdn: 'nobody.cyphonic.internal' }), (e: unknown) => e instanceof RequestError && e.status === Status.UnknownPeer);
    await assert.rejects(a.direction({ targetFqdn: 'beta.example.com' }), (e: unknown) => e instanceof RequestError && e.status === Status.UnknownPeer);
    const c = await node('gamma', { address: '198.18.0.13', port: 30000 });
    mute.add(endpointKey({ address: '198.18.0.13', port: 30000 }));
    void c;
    const pushesBefore = service.counters.get('route.push');
    const rd = await a.direction({ targetFqdn: 'gamma.cyphonic.internal' });
    assert.equal(rd.peerName, 'gamma', 'the initiator has its direction while gamma has not confirmed');
    assert.equal(rd.pathType, PathType.Direct);
    for (let i = 0; i < 100 && service.counters.get('route.unconfirmed.no-confirmation') === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(service.counters.get('route.unconfirmed.no-confirmation'), 1);
    assert.ok(service.counters.get('route.push') - pushesBefore >= 4, 'the push was retransmitted');
  });

  test('a Direction Request flood from one node is refused past its budget; another node still gets its route at once', async () => {
    const beta = clients.get(endpointKey({ address: '198.18.0.12', port: 30000 }))!;
    let pushes = 0;
    beta.onPush = (_type, body) => {
      pushes++;
      void beta.confirm(decodeBody(MessageType.RouteDirectionResponder, body).pathId, true);
    };
    const m = await node('mallory', { address: '198.18.0.14', port: 30000 });
    const refusedBefore = service.counters.get('route.refused.rate-limited');
    const flood = await Promise.allSettled(Array.from({ length: 400 }, () => m.client.direction({ targetFqdn: 'beta.cyphonic.internal' })));
    const served = flood.filter((r) => r.status === 'fulfilled').length;
    assert.ok(served <= 60, `only the budget's worth is served: ${served}`);
    assert.ok(pushes <= 60, `and only that many paths are pushed to the target: ${pushes}`);
    assert.ok(service.counters.get('route.refused.rate-limited') - refusedBefore >= 300);
    for (const r of flood) if (r.status === 'rejected') assert.ok(r.reason instanceof RequestError && r.reason.status === Status.NoRoute, String(r.reason));
    const a = clients.get(endpointKey({ address: '198.18.0.11', port: 30000 }))!;
    const t0 = Date.now();
    const rd = await a.direction({ targetFqdn: 'beta.cyphonic.internal' });
    assert.equal(rd.peerName, 'beta');
    assert.ok(Date.now() - t0 < 1000, `alpha's route took ${Date.now() - t0} ms`);
  });

  test('a relayOnly Direction Request flood allocates no more TRS paths than the budget: the TRS keeps free paths', async () => {
    // A second NMS on the same store with a counting relay allocator (the TRS's side: its 65 536 paths).
    let allocated = 0;
    const relayed = new NmsService({ domain: 'cyphonic.internal' }, {
      store,
      logger: silentLogger,
      relays: { allocate: async () => (allocated++, { tempKey: randomBytes(32), relay: [{ address: '198.18.0.99', port: 4503 }], relayId: 'trs-1' }) },
      send: (d, to) => clients.get(endpointKey(to))?.handleDatagram(d),
    });
    const at = async (name: string, ep: Endpoint): Promise<NmsClient> => (await node(name, ep, relayed)).client;
    const tango = await at('tango', { address: '198.18.0.16', port: 30000 });
    tango.onPush = (_type, body) => void tango.confirm(decodeBody(MessageType.RouteDirectionResponder, body).pathId, true);
    const m = await at('mallory2', { address: '198.18.0.15', port: 30000 });
    const flood = await Promise.allSettled(Array.from({ length: 400 }, () => m.direction({ targetFqdn: 'tango.cyphonic.internal', relayOnly: true })));
    const served = flood.filter((r) => r.status === 'fulfilled').length;
    assert.ok(served >= 1, 'the budget still serves some');
    assert.ok(allocated <= 60, `TRS paths allocated by 400 relayOnly requests: ${allocated} (the TRS holds 65 536 and sweeps idle ones)`);
  });

  test('a relayed path waits for the responder: one that never confirms leaves the initiator with NoRoute', async () => {
    const relayed = new NmsService({ domain: 'cyphonic.internal' }, {
      store,
      logger: silentLogger,
      relays: { allocate: async () => ({ tempKey: randomBytes(32), relay: [{ address: '198.18.0.99', port: 4503 }], relayId: 'trs-1' }) },
      send: (d, to) => clients.get(endpointKey(to))?.handleDatagram(d),
    });
    const at = async (name: string, ep: Endpoint): Promise<NmsClient> => (await node(name, ep, relayed)).client;
    await at('quiet', { address: '198.18.0.17', port: 30000 }); // gets the push, never confirms
    const i = await at('asker', { address: '198.18.0.18', port: 30000 });
    await assert.rejects(i.direction({ targetFqdn: 'quiet.cyphonic.internal', relayOnly: true }), (e: unknown) => e instanceof RequestError && e.status === Status.NoRoute && /did not confirm/.test(e.message));
    assert.ok(relayed.counters.get('route.push') >= 4, 'the push was retransmitted');
  });

  // Last: it leaves a revoked node in the store, whose revocation list later registrations would be pushed.
  test('certificates are cached per certificate revision: a renewal and a revocation written by another instance reach the next selection', async () => {
    const a = await node('delta', { address: '198.18.0.21', port: 30000 });
    const b = await node('echo', { address: '198.18.0.22', port: 30000 });
    confirmRoutes(b.client);
    assert.deepEqual((await a.client.direction({ targetFqdn: 'echo.cyphonic.internal' })).peerCertificate, Buffer.from('cert-of-echo'));
    // Renewal at an AS elsewhere (the store is shared; no policy revision changes): the old one superseded, a new one.
    await store.revokeNodeCertificates(b.id, 'superseded', Date.now());
    await store.addCertificate({ serial: 'e0e0', nodeId: b.id, der: Buffer.from('renewed-echo'), notAfter: Date.now() + 86_400_000, createdAt: Date.now() });
    assert.deepEqual((await a.client.direction({ targetFqdn: 'echo.cyphonic.internal' })).peerCertificate, Buffer.from('renewed-echo'));
    // Revoked there: never handed out again.
    await store.revokeCertificate('e0e0', 'revoked by administrator', Date.now());
    await assert.rejects(a.client.direction({ targetFqdn: 'echo.cyphonic.internal' }), (e: unknown) => e instanceof RequestError && e.status === Status.NoRoute && /no valid certificate/.test(e.message));
  });

  test('a cached target removed and enrolled again under its name is routed as the new node (its registration read early is not used)', async () => {
    const a = await node('foxtrot', { address: '198.18.0.31', port: 30000 });
    const old = await node('golf', { address: '198.18.0.32', port: 30000 });
    confirmRoutes(old.client);
    const first = await a.client.direction({ targetFqdn: 'golf.cyphonic.internal' });
    assert.equal(first.peerNodeId, old.id); // golf is now in the NMS's caches
    // Removed at another instance (the node first, the revision after, as `cloud revoke` does) and enrolled again.
    assert.equal(await store.deleteNode(old.id), true);
    await bumpPolicyRev(store);
    const again = await node('golf', { address: '198.18.0.33', port: 30001 });
    confirmRoutes(again.client);
    assert.notEqual(again.id, old.id);
    const rd = await a.client.direction({ targetFqdn: 'golf.cyphonic.internal' });
    assert.equal(rd.peerNodeId, again.id);
    assert.deepEqual(rd.peerEndpoints[0], { address: '198.18.0.33', port: 30001 });
  });

  test('a pair selected again keeps one record, updated and newest; the console gets copies', async () => {
    const h = await node('hotel', { address: '198.18.0.41', port: 30000 });
    const peers = [await node('india', { address: '198.18.0.42', port: 30000 }), await node('juliet', { address: '198.18.0.43', port: 30000 })];
    for (const p of peers) confirmRoutes(p.client);
    const first = await h.client.direction({ targetFqdn: 'india.cyphonic.internal' });
    await h.client.direction({ targetFqdn: 'juliet.cyphonic.internal' });
    const before = service.selectedPaths(h.id);
    assert.deepEqual(before.map((p) => p.peer), [peers[1]!.id, peers[0]!.id], 'newest first');
    const again = await h.client.direction({ targetFqdn: 'india.cyphonic.internal' });
    assert.notEqual(again.pathId, first.pathId);
    const after = service.selectedPaths(h.id);
    assert.equal(after.length, 2, 'one record per pair');
    assert.equal(after[0]!.peer, peers[0]!.id, 'the pair selected again is the newest');
    assert.equal(after[0]!.pathId, again.pathId, 'its record now holds the new path');
    assert.equal(before[1]!.pathId, first.pathId, 'what the console was given earlier did not change under it');
    assert.equal(service.selectedPaths(peers[0]!.id)[0]!.initiator, false, 'the responder\'s end is recorded too');
  });

  test('selections in progress: a retransmitted request is answered once; past DIRECTIONS_IN_FLIGHT at once the node is refused until they end', async () => {
    const sr = await node('sierra', { address: '198.18.0.51', port: 30000 });
    confirmRoutes(sr.client);
    const u = await node('uniform', { address: '198.18.0.52', port: 30000 });
    // Every selection waits at its first store read until released, so all of them are in progress together.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const real = store.getRegistration.bind(store);
    store.getRegistration = async (id) => {
      await gate;
      return real(id);
    };
    try {
      const okBefore = service.counters.get('route.ok');
      const pushesBefore = service.counters.get('route.push');
      const limitedBefore = service.counters.get('route.refused.rate-limited');
      const retried = u.client.direction({ targetFqdn: 'sierra.cyphonic.internal' }, [20, 20, 5000]);
      await sleep(80); // its two retransmissions (same txid, new sequence numbers) are in
      const more = Array.from({ length: DIRECTIONS_IN_FLIGHT + 3 }, () => u.client.direction({ targetFqdn: 'sierra.cyphonic.internal' }, [5000]));
      await sleep(20);
      release();
      const [first, ...rest] = await Promise.allSettled([retried, ...more]);
      assert.equal(first!.status, 'fulfilled');
      const refused = rest.filter((r) => r.status === 'rejected');
      assert.equal(refused.length, 4, 'the first holds one slot and 15 more are served; the other 4 are refused');
      for (const r of refused) assert.ok(r.reason instanceof RequestError && r.reason.status === Status.NoRoute && /too many route selections/.test(r.reason.message), String(r.reason));
      assert.equal(service.counters.get('route.ok') - okBefore, DIRECTIONS_IN_FLIGHT, 'the retransmissions were not selected again');
      assert.equal(service.counters.get('route.push') - pushesBefore, DIRECTIONS_IN_FLIGHT);
      assert.equal(service.counters.get('route.refused.rate-limited') - limitedBefore, 4);
    } finally {
      store.getRegistration = real;
    }
    const again = await u.client.direction({ targetFqdn: 'sierra.cyphonic.internal' });
    assert.equal(again.peerName, 'sierra', 'the slots came back when the selections ended');
  });

  test('a node with pairsPerNode peers loses the least recently selected one, not the first selected', async () => {
    const small = new NmsService({ domain: 'cyphonic.internal', pairsPerNode: 2 }, {
      store,
      logger: silentLogger,
      send: (d, to) => clients.get(endpointKey(to))?.handleDatagram(d),
    });
    try {
      const v = await node('victor', { address: '198.18.0.61', port: 30000 }, small);
      const [w, x, y] = [await node('whiskey', { address: '198.18.0.62', port: 30000 }, small), await node('xray', { address: '198.18.0.63', port: 30000 }, small), await node('yankee', { address: '198.18.0.64', port: 30000 }, small)];
      for (const p of [w, x, y]) confirmRoutes(p.client);
      await v.client.direction({ targetFqdn: 'whiskey.cyphonic.internal' });
      await v.client.direction({ targetFqdn: 'xray.cyphonic.internal' });
      await v.client.direction({ targetFqdn: 'whiskey.cyphonic.internal' }); // whiskey: first selected, and now the newest
      await v.client.direction({ targetFqdn: 'yankee.cyphonic.internal' });
      assert.deepEqual(small.selectedPaths(v.id).map((p) => p.peer), [y.id, w.id], 'xray, the least recently selected, went');
    } finally {
      small.close();
    }
  });
});
