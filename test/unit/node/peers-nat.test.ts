// PeerManager across NATs, in one process: two nodes behind fake NATs with address-dependent filtering (a datagram
// gets in only once its receiver has sent toward its sender), a fake NMS that answers punched or relayed paths, and
// a fake TRS. A punch where both send gets through; a blocked punch falls back to the relay; a later punch retry
// moves the traffic back to a punched path; the direct path a responder behind NAT is pushed makes it send too.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { LocalIdentity, SessionKeys, TrustAnchors } from '../../../src/crypto/handshake.js';
import { PathType } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import type { RouteDirection } from '../../../src/protocol/messages.js';
import { PeerManager, type RouteTarget } from '../../../src/node/peers.js';
import { silentLogger } from '../../../src/util/log.js';
import { createTestPki } from './pki-fixture.js';

const RELAY: Endpoint = { address: '198.18.0.10', port: 4503 };

interface Side {
  name: string;
  id: number;
  vip4: string;
  vip6: string;
  /** Public (NAT) endpoint. */
  ep: Endpoint;
  local: LocalIdentity;
  certDer: Buffer;
  pm: PeerManager;
  /** Peers' public endpoints this side's NAT has seen it send to (so their datagrams get in). */
  opened: Set<string>;
  installed: SessionKeys[];
  asked: RouteTarget[];
  behindNat: boolean;
}

const key = (e: Endpoint): string => `${e.address}:${e.port}`;

describe('peer manager across NATs', () => {
  let anchors: TrustAnchors;
  let sides: Side[] = [];
  const ids: { name: string; local: LocalIdentity; certDer: Buffer }[] = [];
  /** The NMS's answer for the next route selection: which path type (relays when asked). */
  let plan: 'punched' | 'direct' = 'punched';
  /** The wire between the two NATs drops everything (the TRS still works). */
  let blocked = false;

  function half(pathId: bigint, tunnelKey: Buffer, pathType: PathType, peer: Side, initiator: boolean, tempKey?: Buffer): RouteDirection {
    return {
      pathId, pathType, initiator, tunnelKey,
      peerNodeId: peer.id, peerName: peer.name, peerFqdn: `${peer.name}.cyphonic.internal`, peerVip4: peer.vip4, peerVip6: peer.vip6,
      peerEndpoints: [peer.ep], peerCertificate: peer.certDer,
      ...(tempKey ? { tempKey, relay: RELAY } : {}),
    };
  }

  async function nms(from: Side, to: Side, t: RouteTarget): Promise<RouteDirection> {
    from.asked.push(t);
    const pathId = randomBytes(8).readBigUInt64BE() | 1n;
    const tunnelKey = randomBytes(32);
    const type = t.relayOnly ? PathType.Relayed : plan === 'punched' ? PathType.Punched : PathType.Direct;
    const temp = type === PathType.Relayed ? randomBytes(32) : undefined;
    await to.pm.onRouteDirection(half(pathId, tunnelKey, type, from, false, temp));
    return half(pathId, tunnelKey, type, to, true, temp);
  }

  /** A datagram from `me`: to the TRS it is forwarded to the other end; to the peer it passes the NATs or not. */
  function deliver(me: Side, other: Side, d: Buffer, to: Endpoint): void {
    if (key(to) === key(RELAY)) return void setImmediate(() => other.pm.onDatagram(d, RELAY));
    me.opened.add(key(to));
    if (blocked || (other.behindNat && !other.opened.has(key(me.ep)))) return; // filtered by the receiver's NAT
    setImmediate(() => other.pm.onDatagram(d, me.ep));
  }

  before(async () => {
    const pki = await createTestPki();
    anchors = pki.anchors;
    for (const [i, name] of ['alpha', 'beta'].entries()) ids.push({ name, ...(await pki.identity(name, i + 1)) });
  });

  /** Two fresh nodes (no paths yet) behind NATs. */
  function fresh(): [Side, Side] {
    for (const s of sides) s.pm.close();
    sides = ids.map(({ name, local, certDer }, i) => ({
      name, id: i + 1, vip4: `100.64.0.${i + 1}`, vip6: `fd00::${i + 1}`, ep: { address: `198.51.100.${i + 1}`, port: 30000 },
      local, certDer, opened: new Set<string>(), installed: [], asked: [], behindNat: true,
    }) as unknown as Side);
    for (const me of sides) {
      const other = sides.find((s) => s !== me)!;
      me.pm = new PeerManager({
        local: () => me.local,
        anchors: () => anchors,
        routes: () => ({ direction: (t) => nms(me, other, t), confirm: async () => {} }),
        sink: () => ({
          send: (d: Buffer, to: Endpoint) => deliver(me, other, d, to),
          install: async (_r, keys) => void me.installed.push(keys),
          peerStats: () => ({ rxBytes: 0, txBytes: 0 }),
        }),
        relay: { bind: async () => ({ peerBound: true }), check: async () => true, forget: () => {} },
        behindNat: () => me.behindNat,
        punchRetryMs: 300,
        logger: silentLogger,
      });
    }
    return sides as [Side, Side];
  }

  const status = (s: Side) => s.pm.status()[0];
  const until = async (what: string, fn: () => boolean, ms = 5000): Promise<void> => {
    const end = Date.now() + ms;
    while (!fn()) {
      if (Date.now() > end) throw new Error(`timed out: ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  test('a punched path: both ends send, the NATs let the second wave through, one session', async () => {
    const [a, b] = fresh();
    await a.pm.resolve('beta.cyphonic.internal');
    await until('established both ways', () => status(a)?.state === 'established' && status(b)?.state === 'established');
    assert.equal(status(a)?.path, 'punched');
    assert.equal(status(b)?.path, 'punched');
    assert.equal(status(a)?.relay, null);
    assert.equal(a.installed.at(-1)?.pathId, b.installed.at(-1)?.pathId);
  });

  test('a blocked punch falls back to the relay within 2 s; a later punch retry moves the traffic back', async () => {
    const [a, b] = fresh();
    blocked = true;
    const t0 = Date.now();
    void a.pm.resolve('beta.cyphonic.internal');
    await until('relayed', () => status(a)?.path === 'relayed' && status(b)?.path === 'relayed', 4000);
    const ms = Date.now() - t0;
    assert.ok(ms < 1500 + 2000, `punch (≈1.5 s) + fallback took ${ms} ms`);
    assert.equal(status(a)?.relay, '198.18.0.10:4503');
    assert.deepEqual(a.asked.at(-1), { targetFqdn: 'beta.cyphonic.internal', relayOnly: true });
    assert.equal(a.pm.counters.toJSON()['punch.failed'], 1);
    blocked = false;
    await until('punched again', () => status(a)?.path === 'punched' && status(b)?.path === 'punched', 6000);
    assert.equal(a.asked.at(-1)?.noRelay, true, 'the retry refused relays');
    await until('the retry to finish', () => a.pm.counters.get('punch.upgraded') === 1, 2000);
    assert.equal(status(a)?.relay, null);
  });

  test('a direct path pushed to a responder behind NAT: the responder sends too, so the initiator gets through', async () => {
    const [a, b] = fresh();
    plan = 'direct';
    a.behindNat = false; // the initiator is reachable; beta's NAT drops what beta has not asked for
    await a.pm.resolve('beta.cyphonic.internal');
    await until('a direct path', () => status(a)?.state === 'established' && status(b)?.state === 'established', 4000);
    assert.equal(status(a)?.path, 'direct');
    assert.equal(b.pm.counters.toJSON()['punch.responder'], 1, 'beta sent toward alpha');
    for (const s of sides) s.pm.close();
  });
});
