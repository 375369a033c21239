// The node's revocation list, in one process: two PeerManagers wired back to back through a fake NMS, with trust
// anchors that consult each manager's list (as lifecycle.ts wires them). Once a PolicyUpdate lists a peer's
// certificate serial as revoked, that certificate is refused in the handshake itself: a stale Route Direction for the
// revoked node (which would otherwise lift the slot's block) sets up no tunnel, and its TunnelRequests are refused.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { serialOf } from '../../../src/crypto/index.js';
import { HandshakeInitiator, type LocalIdentity, type SessionKeys, type TrustAnchors } from '../../../src/crypto/handshake.js';
import { PathType } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { decodePolicyEntry, encodePolicyEntry, type RouteDirection } from '../../../src/protocol/messages.js';
import { PeerManager } from '../../../src/node/peers.js';
import { silentLogger } from '../../../src/util/log.js';
import { DecodeError } from '../../../src/util/errors.js';
import { createTestPki, type TestPki } from './pki-fixture.js';

interface Side {
  name: string;
  id: number;
  vip4: string;
  vip6: string;
  ep: Endpoint;
  local: LocalIdentity;
  certDer: Buffer;
  pm: PeerManager;
  anchors: TrustAnchors;
  installed: SessionKeys[];
}

describe('revocation list checked in the handshake', () => {
  let pki: TestPki;
  const sides: Side[] = [];
  /** Route Directions the fake NMS pushed to each responder, to replay later (stale). */
  const pushed: RouteDirection[] = [];

  const half = (peer: Side, initiator: boolean, pathId: bigint, tunnelKey: Buffer): RouteDirection => ({
    pathId, pathType: PathType.Direct, initiator, tunnelKey,
    peerNodeId: peer.id, peerName: peer.name, peerFqdn: `${peer.name}.cyphonic.internal`, peerVip4: peer.vip4, peerVip6: peer.vip6,
    peerEndpoints: [peer.ep], peerCertificate: peer.certDer,
  });

  before(async () => {
    pki = await createTestPki();
    for (const [i, name] of ['alpha', 'beta'].entries()) {
      const { local, certDer } = await pki.identity(name, i + 1, [`100.64.0.${i + 1}`, `fd00::${i + 1}`]);
      sides.push({ name, id: i + 1, vip4: `100.64.0.${i + 1}`, vip6: `fd00::${i + 1}`, ep: { address: `198.18.0.${11 + i}`, port: 30000 }, local, certDer, installed: [] } as unknown as Side);
    }
    for (const me of sides) {
      const other = sides.find((s) => s !== me)!;
      // As lifecycle.ts: the anchors' revocation check is this node's PeerManager list.
      me.anchors = { ...pki.anchors, isRevoked: (serial) => me.pm.isRevokedSerial(serial) };
      me.pm = new PeerManager({
        local: () => me.local,
        anchors: () => me.anchors,
        routes: () => ({
          direction: async () => {
            const pathId = randomBytes(8).readBigUInt64BE() | 1n;
            const key = randomBytes(32);
            const toResponder = half(me, false, pathId, key);
            pushed.push(toResponder);
            await other.pm.onRouteDirection(toResponder);
            return half(other, true, pathId, key);
          },
          confirm: async () => {},
        }),
        sink: () => ({
          send: (d: Buffer) => void setImmediate(() => other.pm.onDatagram(d, me.ep)),
          install: async (_r, keys) => void me.installed.push(keys),
          peerStats: () => ({ rxBytes: 0, txBytes: 0 }),
          blockPeer: () => {},
          setFilter: () => {},
        }),
        logger: silentLogger,
      });
    }
  });
  after(() => {
    for (const s of sides) s.pm.close();
  });

  const until = async (what: string, fn: () => boolean): Promise<void> => {
    for (let i = 0; i < 200 && !fn(); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(fn(), what);
  };

  test('a revoked serial pushed by the NMS makes the handshake refuse the certificate, even after a stale Route Direction', async () => {
    const [a, b] = sides as [Side, Side];
    assert.deepEqual(await a.pm.resolve('beta.cyphonic.internal'), { vip4: b.vip4, vip6: b.vip6 });
    await until('the tunnel is up', () => b.installed.length >= 1 && a.installed.length >= 1);
    const stale = pushed.at(-1)!;

    // The NMS pushes `alpha revoked` to beta, with the serial of alpha's certificate (through the wire codec).
    const serial = serialOf(a.certDer);
    const entry = decodePolicyEntry(encodePolicyEntry({ peerNodeId: a.id, connected: false, allowIn: '', revoked: true, revokedSerials: [serial] }));
    assert.deepEqual(entry.revokedSerials, [serial]);
    assert.throws(() => decodePolicyEntry(encodePolicyEntry({ peerNodeId: a.id, connected: false, allowIn: '', revoked: true, revokedSerials: ['NOT-HEX'] })), DecodeError);
    b.pm.applyPolicy([entry]);
    assert.ok(b.pm.isRevokedSerial(serial));
    assert.equal(b.pm.counters.get('revocation.serials'), 1);

    // A stale Route Direction for alpha (replayed, or from an NMS that did not hear of the revocation) is refused:
    // alpha's certificate is on beta's list, so beta adopts no path and the slot stays blocked.
    const refusedBefore = b.pm.counters.get('route.bad-certificate');
    await b.pm.onRouteDirection({ ...stale, pathId: randomBytes(8).readBigUInt64BE() | 1n });
    assert.equal(b.pm.counters.get('route.bad-certificate'), refusedBefore + 1);
    assert.equal(b.pm.status().find((p) => p.name === 'alpha')?.revoked, true, 'the block is not lifted');

    // alpha (still running, holding its key and certificate) asks for a new tunnel: beta sets up nothing.
    const installedBefore = b.installed.length;
    await (a.pm as unknown as { selectRoute(t: object): Promise<unknown> }).selectRoute({ targetFqdn: 'beta.cyphonic.internal' }).catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(b.installed.length, installedBefore, 'no session installed at beta');
  });

  test('a TunnelRequest carrying a listed certificate is refused by the handshake on a path beta holds', async () => {
    // A third node whose path beta adopted; its serial then arrives in an entry for a slot beta does not know (the
    // list is kept whatever the slot): the same path's handshakes now fail the certificate check.
    const [, b] = sides as [Side, Side];
    const { local, certDer } = await pki.identity('gamma', 3, ['100.64.0.3', 'fd00::3']);
    const pathId = randomBytes(8).readBigUInt64BE() | 1n;
    const tunnelKey = randomBytes(32);
    const gamma = { name: 'gamma', id: 3, vip4: '100.64.0.3', vip6: 'fd00::3', ep: { address: '198.18.0.13', port: 30000 }, local, certDer } as Side;
    await b.pm.onRouteDirection(half(gamma, false, pathId, tunnelKey));
    const handshake = (seq: bigint): Buffer => new HandshakeInitiator(local, pki.anchors, { pathId, tunnelKey }, { nodeId: b.id, name: b.name }).request(seq, Number(seq));
    const before = b.installed.length;
    b.pm.onDatagram(handshake(1n), gamma.ep);
    await until('gamma\'s first handshake is accepted', () => b.installed.length === before + 1);

    b.pm.applyPolicy([{ peerNodeId: 99, connected: false, allowIn: '', revoked: true, revokedSerials: [serialOf(certDer)] }]);
    const refused = b.pm.counters.get('handshake.refused');
    b.pm.onDatagram(handshake(2n), gamma.ep);
    await until('the handshake is refused', () => b.pm.counters.get('handshake.refused') === refused + 1);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(b.installed.length, before + 1, 'no session for a listed certificate');
  });
});
