// PeerManager in one process: two nodes wired back to back through a fake NMS and a fake wire.
// Route selection + handshake establish one session; both ends asking at once still agree on one path.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { HandshakeInitiator, type LocalIdentity, type SessionKeys, type TrustAnchors } from '../../../src/crypto/handshake.js';
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

/**
 * Two nodes wired back to back; `wire.down` drops every datagram between them while it is true. rekeyAfterMs may
 * differ per side ([first, second]).
 */
async function makePair(names: [string, string], opts: { rekeyAfterMs?: number | [number, number]; rejectAfterMs?: number; wire?: { down: boolean }; delayMs?: number } = {}): Promise<[Side, Side]> {
  const pair: Side[] = [];
  for (const [i, name] of names.entries()) {
    const { local, certDer } = await pki.identity(name, i + 1);
    pair.push({ name, id: i + 1, vip4: `100.64.0.${i + 1}`, vip6: `fd00::${i + 1}`, ep: { address: `198.18.0.${11 + i}`, port: 30000 }, local, certDer, installed: [], moved: [] } as unknown as Side);
  }
  for (const [i, me] of pair.entries()) {
    const other = pair.find((s) => s !== me)!;
    const rekeyAfterMs = Array.isArray(opts.rekeyAfterMs) ? opts.rekeyAfterMs[i] : opts.rekeyAfterMs;
    me.pm = new PeerManager({
      local: () => me.local,
      anchors: () => anchors,
      routes: () => ({ direction: () => direct(me, other), confirm: async () => {} }),
      sink: () => ({
        send: (d: Buffer) =>
          void (opts.wire?.down || (opts.delayMs ? setTimeout(() => other.pm.onDatagram(d, me.ep), opts.delayMs) : setImmediate(() => other.pm.onDatagram(d, me.ep)))),
        install: async (_r, keys, receiveOnly) => void me.installed.push({ keys, receiveOnly: !!receiveOnly }),
        peerStats: () => ({ rxBytes: 0, txBytes: 0 }),
        setEndpoint: (_slot, ep) => void me.moved.push(ep),
      }),
      logger: silentLogger,
      ...(rekeyAfterMs ? { rekeyAfterMs } : {}),
      ...(opts.rejectAfterMs ? { rejectAfterMs: opts.rejectAfterMs } : {}),
    });
  }
  return pair as [Side, Side];
}

describe('peer manager', { timeout: 180_000 }, () => {
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
    // What a keepalive reports of it to the cloud: the peer, the path type, the handshake's time as RTT until an
    // endpoint update measures one.
    assert.deepEqual(a.pm.reports(32, () => undefined), [{ peerNodeId: b.id, pathType: 1, rttMs: Math.round(st.tunnelMs!), txBytes: 0n, rxBytes: 0n }]);
    assert.equal(a.pm.reports(32, () => 42)[0]!.rttMs, 42);
    assert.deepEqual(a.pm.reports(0, () => undefined), []);
  });

  test('both ends initiating at once end up sending on the same path', async () => {
    const [a, b] = sides as [Side, Side];
    // Fresh paths from both sides at the same moment (a second selection each, as after a restart of both).
    const before = [a.installed.length, b.installed.length];
    await Promise.all([(a.pm as unknown as { selectRoute(t: object): Promise<unknown> }).selectRoute({ targetFqdn: 'beta.cyphonic.internal' }), (b.pm as unknown as { selectRoute(t: object): Promise<unknown> }).selectRoute({ targetFqdn: 'alpha.cyphonic.internal' })]);
    // The peers were already established (settle() alone would not wait): wait for both new paths' sessions.
    const both = (): boolean => a.installed.length >= before[0]! + 2 && b.installed.length >= before[1]! + 2;
    for (let i = 0; i < 300 && !both(); i++) await new Promise((r) => setTimeout(r, 10));
    await settle();
    assert.ok(both(), 'both new paths were established');
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
  /** Waits until `cond` holds (bounded). */
  const until = async (cond: () => boolean, ms: number): Promise<void> => {
    for (let i = 0; i < ms / 20 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
  };
  const sends = (s: Side): SessionKeys[] => s.installed.filter((x) => !x.receiveOnly).map((x) => x.keys);

  test('the responder end rekeys too (the initiator would not for a minute); both ends then hold its session', async () => {
    const [a, b] = await makePair(['eps', 'zeta'], { rekeyAfterMs: [60_000, 1000] });
    try {
      await a.pm.resolve('zeta.cyphonic.internal');
      await until(() => a.installed.length > 0 && b.installed.length > 0, 2000);
      const first = b.installed.at(-1)!.keys;
      assert.equal(first.initiator, false, 'b answered the first handshake');
      await until(() => b.pm.counters.get('rekey.ok') > 0, 4000);
      assert.equal(b.pm.counters.get('rekey.ok'), 1, 'b, the responder of the path, rekeyed');
      assert.equal(a.pm.counters.get('rekey'), 0);
      await until(() => a.installed.at(-1)!.keys.recv.equals(b.installed.at(-1)!.keys.send), 1000);
      const kb = sends(b).at(-1)!;
      const ka = a.installed.at(-1)!.keys;
      assert.equal(kb.initiator, true, 'b initiated the new session');
      assert.equal(ka.initiator, false);
      assert.deepEqual(ka.recv, kb.send);
      assert.deepEqual(ka.send, kb.recv);
      assert.equal(ka.pathId, first.pathId, 'same path, same Tunnel Key');
    } finally {
      a.pm.close();
      b.pm.close();
    }
  });

  test('both ends rekeying on the same schedule converge on matching sessions (tie-break)', async () => {
    const [a, b] = await makePair(['eta', 'theta'], { rekeyAfterMs: 1000 });
    try {
      await a.pm.resolve('theta.cyphonic.internal');
      await until(() => a.installed.length > 0 && b.installed.length > 0, 2000);
      await until(() => a.pm.counters.get('rekey') + b.pm.counters.get('rekey') >= 3, 6000);
      assert.ok(a.pm.counters.get('rekey') + b.pm.counters.get('rekey') >= 3);
      await new Promise((r) => setTimeout(r, 300));
      // Whichever end started each one, the newest session each end installed is the same session.
      const ka = a.installed.at(-1)!.keys;
      const kb = b.installed.at(-1)!.keys;
      assert.deepEqual(ka.send, kb.recv);
      assert.deepEqual(ka.recv, kb.send);
      assert.notEqual(ka.initiator, kb.initiator);
      assert.equal(a.pm.counters.get('rekey.failed') + b.pm.counters.get('rekey.failed'), 0);
    } finally {
      a.pm.close();
      b.pm.close();
    }
  });

  test('a miss while the active session is past the hard limit starts a new handshake at once; before it, nothing', async () => {
    // The hard limit leaves room for a loaded machine: the "fresh" checks must run well inside it.
    const limit = 3000;
    const [a, b] = await makePair(['iota', 'kappa'], { rekeyAfterMs: 60_000, rejectAfterMs: limit });
    try {
      await a.pm.resolve('kappa.cyphonic.internal');
      await until(() => a.installed.length > 0 && b.installed.length > 0, 2000);
      const n = a.installed.length;
      const born = a.installed[0]!.keys.establishedAt;
      assert.equal(a.installed[0]!.keys.expiresAt, born + limit, 'installed with its expiry');
      a.pm.miss(b.vip4);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(a.installed.length, n, 'a fresh session: a miss is a race with an install, nothing to do');
      await new Promise((r) => setTimeout(r, Math.max(0, born + limit + 50 - Date.now())));
      b.pm.miss(a.vip4); // the engine refused b's session: b (the responder) re-handshakes
      await until(() => a.installed.length > n, 2000);
      assert.equal(b.pm.counters.get('rekey.expired'), 1);
      const ka = a.installed.at(-1)!.keys;
      const kb = sends(b).at(-1)!;
      assert.deepEqual(ka.recv, kb.send, 'a new session at both ends');
      assert.ok(kb.expiresAt! > Date.now(), 'not expired');
    } finally {
      a.pm.close();
      b.pm.close();
    }
  });

  test('paths per peer are bounded: the oldest idle ones are forgotten and counted', async () => {
    const [a, b] = await makePair(['lambda', 'mu']);
    try {
      const select = (a.pm as unknown as { selectRoute(t: object): Promise<unknown> }).selectRoute.bind(a.pm);
      for (let i = 0; i < 11; i++) {
        await select({ targetFqdn: 'mu.cyphonic.internal' });
        await new Promise((r) => setTimeout(r, 30));
      }
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(a.pm.counters.get('path.evicted') >= 3, `evicted ${a.pm.counters.get('path.evicted')}`);
      const paths = (a.pm as unknown as { peers: Map<number, { paths: Map<bigint, unknown> }> }).peers.get(b.id)!.paths;
      assert.ok(paths.size <= 8);
    } finally {
      a.pm.close();
      b.pm.close();
    }
  });
  test('a responder that answered several requests of one handshake counts the earliest answer against the limit', async () => {
    // 300 ms each way: the initiator retransmits before the first response arrives; the responder answers each.
    const [a, b] = await makePair(['nu', 'xi'], { rekeyAfterMs: 60_000, rejectAfterMs: 3000, delayMs: 300 });
    try {
      await a.pm.resolve('xi.cyphonic.internal');
      await until(() => b.installed.length >= 3, 3000);
      assert.ok(b.installed.length >= 3, `b answered ${b.installed.length} requests`);
      const first = b.installed[0]!.keys.establishedAt;
      const latest = b.installed.at(-1)!.keys.establishedAt;
      assert.ok(latest - first >= 400, 'answers of one handshake, spread over the retransmissions');
      // Past the earliest answer's limit (less the 750 ms margin) but not the latest's: the engine may be sealing
      // with the earliest (a chose the first response), so a miss now must re-handshake.
      await new Promise((r) => setTimeout(r, Math.max(0, first + 3000 - 750 + 100 - Date.now())));
      assert.ok(Date.now() < latest + 3000 - 750, 'still before the latest answer\'s limit');
      b.pm.miss(a.vip4);
      assert.equal(b.pm.counters.get('rekey.expired'), 1);
    } finally {
      a.pm.close();
      b.pm.close();
    }
  });
  test('mobility on a path whose handshake was retransmitted: the update opens under the session the initiator chose', async () => {
    const [a, b] = await makePair(['omicron', 'pi'], { rekeyAfterMs: 60_000, delayMs: 300 });
    const boxes: { ma?: MobilityManager; mb?: MobilityManager } = {};
    try {
      await a.pm.resolve('pi.cyphonic.internal');
      await until(() => b.installed.length >= 3 && a.installed.length > 0, 3000);
      await new Promise((r) => setTimeout(r, 700)); // the last answers are in
      const chosen = a.installed.at(-1)!.keys;
      assert.ok(!b.installed.at(-1)!.keys.recv.equals(chosen.send), 'a completed with an earlier response than b answered last');
      const newAddr: Endpoint = { address: '198.18.0.77', port: 30000 };
      boxes.ma = new MobilityManager({ nodeId: () => a.id, peers: a.pm, send: (m) => setImmediate(() => boxes.mb!.onDatagram(m, newAddr)), localEndpoints: () => [newAddr], logger: silentLogger });
      boxes.mb = new MobilityManager({ nodeId: () => b.id, peers: b.pm, send: (m) => setImmediate(() => boxes.ma!.onDatagram(m, b.ep)), localEndpoints: () => [b.ep], logger: silentLogger });
      boxes.ma.moved({ v4: true, v6: false });
      await until(() => boxes.ma!.counters.get('update.acked') > 0, 1000);
      assert.equal(boxes.ma.counters.get('update.acked'), 1);
      assert.equal(b.pm.status()[0]!.endpoint, '198.18.0.77:30000');
    } finally {
      boxes.ma?.close();
      boxes.mb?.close();
      a.pm.close();
      b.pm.close();
    }
  });

  test('a handshake flood from one peer (timestamps far ahead) does not stop another peer\'s tunnel setup', async () => {
    // victim answers; mallory holds a valid path (and its tunnel key) and floods valid TunnelRequests dated 25 s
    // ahead; honest then sets up its own first tunnel with victim. With one replay cache per node (old code) the
    // flood pushed its floor past honest's timestamps and every request of honest was refused as a replay.
    const ids = { victim: 31, mallory: 32, honest: 33 } as const;
    const mk = async (name: keyof typeof ids): Promise<Side> => {
      const { local, certDer } = await pki.identity(name, ids[name]);
      return { name, id: ids[name], vip4: `100.64.1.${ids[name]}`, vip6: `fd00::1:${ids[name]}`, ep: { address: `198.18.1.${ids[name]}`, port: 30000 }, local, certDer, installed: [], moved: [] } as unknown as Side;
    };
    const [victim, mallory, honest] = [await mk('victim'), await mk('mallory'), await mk('honest')];
    const all = [victim, mallory, honest];
    const byEp = (ep: Endpoint): Side | undefined => all.find((x) => x.ep.address === ep.address);
    for (const me of [victim, honest]) {
      me.pm = new PeerManager({
        local: () => me.local,
        anchors: () => anchors,
        routes: () => ({ direction: () => direct(me, victim), confirm: async () => {} }),
        sink: () => ({
          send: (d: Buffer, to: Endpoint) => void setImmediate(() => byEp(to)?.pm?.onDatagram(d, me.ep)),
          install: async (_r, keys, receiveOnly) => void me.installed.push({ keys, receiveOnly: !!receiveOnly }),
          peerStats: () => ({ rxBytes: 0, txBytes: 0 }),
        }),
        logger: silentLogger,
      });
    }
    try {
      // mallory's path to victim, as the NMS would push it to victim.
      const rd = await direct(mallory, victim);
      const flood = new HandshakeInitiator(mallory.local, { ...anchors, now: () => Date.now() + 25_000 }, { pathId: rd.pathId, tunnelKey: rd.tunnelKey }, { nodeId: victim.id, name: victim.name });
      for (let i = 0; i < 4200; i++) {
        victim.pm.onDatagram(flood.request(BigInt(i + 1), i + 1), mallory.ep);
        if (i % 200 === 0) await new Promise((r) => setImmediate(r));
      }
      assert.ok(victim.pm.counters.get('handshake.rate-limited') > 4000, `rate-limited: ${victim.pm.counters.get('handshake.rate-limited')}`);
      // honest's first tunnel to victim.
      await honest.pm.resolve('victim.cyphonic.internal');
      for (let i = 0; i < 300 && honest.pm.status()[0]?.state !== 'established'; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(honest.pm.status()[0]?.state, 'established', JSON.stringify(victim.pm.counters.toJSON()));
    } finally {
      victim.pm.close();
      honest.pm.close();
    }
  });

  /**
   * Node 'vee' (41), which only answers pushes, and a Route Direction maker for its peer 'pea' (42), whose certificate
   * carries 100.64.2.42 and fd00::2:42. `extra` adds PeerManager components.
   */
  async function veeAndPea(extra: Partial<ConstructorParameters<typeof PeerManager>[0]> = {}): Promise<{ pm: PeerManager; rd: (over?: Partial<RouteDirection>) => RouteDirection }> {
    const { local: vl } = await pki.identity('vee', 41, ['100.64.2.41', 'fd00::2:41']);
    const { certDer: pc } = await pki.identity('pea', 42, ['100.64.2.42', 'fd00::2:42']);
    const pm = new PeerManager({
      local: () => vl,
      anchors: () => anchors,
      routes: () => ({ direction: async () => assert.fail('no selection here'), confirm: async () => {} }),
      sink: () => ({ send: () => {}, install: async () => {}, peerStats: () => ({ rxBytes: 0, txBytes: 0 }) }),
      logger: silentLogger,
      ...extra,
    });
    const rd = (over: Partial<RouteDirection> = {}): RouteDirection => ({
      pathId: randomBytes(8).readBigUInt64BE() | 1n, pathType: PathType.Direct, initiator: false, tunnelKey: randomBytes(32),
      peerNodeId: 42, peerName: 'pea', peerFqdn: 'pea.cyphonic.internal', peerVip4: '100.64.2.42', peerVip6: 'fd00::2:42',
      peerEndpoints: [{ address: '198.18.2.42', port: 30000 }], peerCertificate: pc, ...over,
    });
    return { pm, rd };
  }

  test('a Route Direction whose name or addresses the peer\'s certificate does not carry is refused', async () => {
    // The NMS (or whoever forged its push) cannot make us route another node's addresses to this peer.
    const { pm, rd } = await veeAndPea();
    try {
      for (const [what, over] of [
        ['another node\'s IPv4', { peerVip4: '100.64.2.99' }],
        ['another node\'s IPv6', { peerVip6: 'fd00::2:99' }],
        ['another FQDN', { peerFqdn: 'someone.cyphonic.internal' }],
      ] as const) {
        const before = pm.counters.get('route.bad-certificate');
        await pm.onRouteDirection(rd(over));
        assert.equal(pm.counters.get('route.bad-certificate'), before + 1, what);
        assert.equal(pm.status().length, 0, `${what}: no peer adopted`);
      }
      await pm.onRouteDirection(rd({ peerVip6: 'FD00:0:0:0:0:0:2:42' })); // the same address in another spelling
      assert.equal(pm.status().length, 1, 'the certificate\'s own addresses are accepted');
    } finally {
      pm.close();
    }
  });

  test('a directory entry the peer\'s certificate contradicts is forgotten when its Route Direction arrives', async () => {
    // A wrong or forged directory could answer a name with another node's address; the certificate has the last word.
    const forgotten: string[] = [];
    const { pm, rd } = await veeAndPea({
      directory: { lookup: (f) => (f === 'pea.cyphonic.internal' ? { vip4: '100.64.2.99', vip6: 'fd00::2:42' } : null), forget: (f) => void forgotten.push(f) },
    });
    try {
      await pm.onRouteDirection(rd({ peerVip6: 'FD00:0:0:0:0:0:2:42' }));
      assert.equal(pm.status().length, 1, 'the peer itself is adopted (its certificate is valid)');
      assert.deepEqual(forgotten, ['pea.cyphonic.internal']);
      assert.equal(pm.counters.get('directory.mismatch'), 1);
    } finally {
      pm.close();
    }
  });

  test('endpoints the NMS did not see the peer at get 44-byte probes, never a TunnelRequest, until the peer answers there', async () => {
    // A registration may name a third party's address as a second endpoint: it must not draw ~1.5 KB requests (×4).
    const mk = async (name: string, id: number, address: string): Promise<Side> => {
      const { local, certDer } = await pki.identity(name, id);
      return { name, id, vip4: `100.64.3.${id}`, vip6: `fd00::3:${id}`, ep: { address, port: 30000 }, local, certDer, installed: [], moved: [] } as unknown as Side;
    };
    const third: { size: number; type: number; to: string }[] = [];
    const run = async (endpoints: (b: Side) => Endpoint[]): Promise<[Side, Side]> => {
      const [a, b] = [await mk('probe-a', 61 + third.length * 2, '198.18.3.1'), await mk('probe-b', 62 + third.length * 2, '198.18.3.2')];
      const route = async (from: Side, to: Side): Promise<RouteDirection> => {
        const rd = await direct(from, to);
        return { ...rd, peerEndpoints: endpoints(to) };
      };
      for (const [me, other] of [[a, b], [b, a]] as const) {
        me.pm = new PeerManager({
          local: () => me.local,
          anchors: () => anchors,
          routes: () => ({ direction: () => route(me, other), confirm: async () => {} }),
          sink: () => ({
            send: (d: Buffer, to: Endpoint) => {
              if (to.address === other.ep.address && to.port === other.ep.port) setImmediate(() => other.pm.onDatagram(d, me.ep));
              else third.push({ size: d.length, type: d[1]!, to: `${to.address}:${to.port}` });
            },
            install: async (_r, keys, receiveOnly) => void me.installed.push({ keys, receiveOnly: !!receiveOnly }),
            peerStats: () => ({ rxBytes: 0, txBytes: 0 }),
          }),
          logger: silentLogger,
        });
      }
      await a.pm.resolve(`${b.name}.cyphonic.internal`);
      for (let i = 0; i < 300 && a.pm.status()[0]?.state !== 'established'; i++) await new Promise((r) => setTimeout(r, 10));
      return [a, b];
    };
    const victim = { address: '203.0.113.9', port: 4000 };
    // 1. The peer where the NMS saw it, a third party named second: the tunnel comes up; the third party saw probes only.
    let [a, b] = await run((peer) => [peer.ep, victim]);
    try {
      assert.equal(a.pm.status()[0]?.state, 'established');
      assert.ok(third.length >= 1, 'the third party was probed');
      assert.ok(third.every((x) => x.size === 44 && x.type === 0x36), JSON.stringify(third));
      assert.equal(a.pm.counters.get('probe.verified'), 0);
    } finally {
      a.pm.close();
      b.pm.close();
    }
    // 2. The first endpoint is dead and the peer is at the second: it answers the probe there and gets the request.
    third.length = 0;
    [a, b] = await run((peer) => [{ address: '198.51.100.1', port: 5000 }, peer.ep]);
    try {
      assert.equal(a.pm.status()[0]?.state, 'established', JSON.stringify(a.pm.counters.toJSON()));
      assert.equal(b.pm.counters.get('probe.answered') >= 1, true);
      assert.equal(a.pm.counters.get('probe.verified'), 1);
    } finally {
      a.pm.close();
      b.pm.close();
    }
  });
});
