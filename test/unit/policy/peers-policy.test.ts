// The policy on the node side (PeerManager, two nodes back to back through a fake NMS and wire): the Route
// Direction's allowIn sets the peer's filter before any session is installed and shows in status; a PolicyUpdate
// swaps it without a handshake; a revoked peer is blocked and its handshakes (a rekey) are refused.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { LocalIdentity, SessionKeys, TrustAnchors } from '../../../src/crypto/handshake.js';
import { createTestPki } from '../node/pki-fixture.js';
import { PathType } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import type { RouteDirection } from '../../../src/protocol/messages.js';
import { PeerManager } from '../../../src/node/peers.js';
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
  /** Data-plane calls in order: install / filter / block. */
  calls: string[];
  installed: SessionKeys[];
}

describe('policy at the peer manager', () => {
  let anchors: TrustAnchors;
  let a: Side;
  let b: Side;

  before(async () => {
    const pki = await createTestPki();
    anchors = pki.anchors;
    const sides: Side[] = [];
    for (const [i, name] of ['ops', 'cam'].entries()) {
      const { local, certDer } = await pki.identity(name, i + 1);
      sides.push({ name, id: i + 1, vip4: `100.64.0.${i + 1}`, vip6: `fd00::${i + 1}`, ep: { address: `198.18.0.${11 + i}`, port: 30000 }, local, certDer, calls: [], installed: [] } as unknown as Side);
    }
    [a, b] = sides as [Side, Side];
    // ops may open icmp and tcp:22 to cam; cam nothing to ops.
    const allowIn = (receiver: Side): string => (receiver === b ? 'icmp,tcp:22' : '');
    const direct = async (from: Side, to: Side): Promise<RouteDirection> => {
      const pathId = randomBytes(8).readBigUInt64BE() | 1n;
      const tunnelKey = randomBytes(32);
      const half = (peer: Side, me: Side, initiator: boolean): RouteDirection => ({
        pathId, pathType: PathType.Direct, initiator, tunnelKey, peerNodeId: peer.id, peerName: peer.name, peerFqdn: `${peer.name}.cyphonic.internal`,
        peerVip4: peer.vip4, peerVip6: peer.vip6, peerEndpoints: [peer.ep], peerCertificate: peer.certDer, allowIn: allowIn(me),
      });
      await to.pm.onRouteDirection(half(from, to, false));
      return half(to, from, true);
    };
    for (const me of [a, b]) {
      const other = me === a ? b : a;
      me.pm = new PeerManager({
        local: () => me.local,
        anchors: () => anchors,
        routes: () => ({ direction: () => direct(me, other), confirm: async () => {} }),
        sink: () => ({
          send: (d: Buffer) => void setImmediate(() => other.pm.onDatagram(d, me.ep)),
          install: async (_r, keys) => {
            me.calls.push('install');
            me.installed.push(keys);
          },
          peerStats: () => ({ rxBytes: 0, txBytes: 0 }),
          setFilter: (_slot, allowIn) => void me.calls.push(`filter ${allowIn}`),
          blockPeer: () => void me.calls.push('block'),
        }),
        logger: silentLogger,
        // cam rekeys every second (so a refused rekey shows quickly); ops would wait two minutes.
        ...(me === b ? { rekeyAfterMs: 1000 } : {}),
      });
    }
  });

  const until = async (cond: () => boolean, ms: number): Promise<void> => {
    for (let i = 0; i < ms / 20 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
  };

  test('the Route Direction sets the filter before the first session; status shows the allowed ports', async () => {
    await a.pm.resolve('cam.cyphonic.internal');
    await until(() => a.installed.length > 0 && b.installed.length > 0, 2000);
    assert.deepEqual(a.calls.slice(0, 2), ['filter ', 'install']);
    assert.deepEqual(b.calls.slice(0, 2), ['filter icmp,tcp:22', 'install']);
    assert.deepEqual(b.pm.status()[0]!.allowed, ['icmp', 'tcp:22']);
    assert.deepEqual(a.pm.status()[0]!.allowed, []);
  });

  test('a PolicyUpdate swaps the filter in place: no handshake', async () => {
    const installs = b.installed.length;
    const hs = b.pm.status()[0]!.lastHandshake;
    b.pm.applyPolicy([{ peerNodeId: a.id, connected: true, allowIn: 'tcp:22' }, { peerNodeId: 99, connected: true, allowIn: '*' }]);
    assert.equal(b.calls.at(-1), 'filter tcp:22');
    assert.deepEqual(b.pm.status()[0]!.allowed, ['tcp:22']);
    assert.equal(b.pm.counters.get('policy.unknown-peer'), 1);
    assert.equal(b.installed.length, installs);
    assert.equal(b.pm.status()[0]!.lastHandshake, hs);
  });

  test('a revoked peer is blocked and its rekey handshakes are refused', async () => {
    a.pm.applyPolicy([{ peerNodeId: b.id, connected: false, allowIn: '', revoked: true }]);
    assert.equal(a.calls.at(-1), 'block');
    assert.equal(a.pm.status()[0]!.revoked, true);
    const installs = a.installed.length;
    // cam rekeys within about a second; ops refuses its TunnelRequests.
    await until(() => a.pm.counters.get('handshake.refused-revoked') > 0, 4000);
    assert.ok(a.pm.counters.get('handshake.refused-revoked') > 0, 'the rekey was refused');
    assert.equal(a.installed.length, installs, 'no new session with the revoked peer');
    a.pm.applyPolicy([{ peerNodeId: b.id, connected: true, allowIn: '*' }]);
    assert.equal(a.calls.at(-1), 'block', 'only a new Route Direction lifts a revocation');
    a.pm.close();
    b.pm.close();
  });
});
