// The node's revocation list survives a restart: a real PeerManager keeps it in a file (as the lifecycle does, in
// the state directory), writes a pushed serial there before it closes the tunnel, and a new PeerManager on the same
// file — a restarted node, before any NMS push — refuses the revoked peer's Route Direction and handshake. A node
// started without the file (what every node did before) accepts them: the control case.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialOf } from '../../../src/crypto/index.js';
import { HandshakeInitiator, type LocalIdentity, type SessionKeys } from '../../../src/crypto/handshake.js';
import { PathType } from '../../../src/protocol/constants.js';
import type { RouteDirection } from '../../../src/protocol/messages.js';
import { PeerManager } from '../../../src/node/peers.js';
import { RevocationList } from '../../../src/node/revocations.js';
import { StateDir } from '../../../src/node/state.js';
import { silentLogger } from '../../../src/util/log.js';
import { createTestPki, type TestPki } from './pki-fixture.js';

describe('the revocation list is kept in the state directory', () => {
  let pki: TestPki;
  let dir: string;
  let alpha: { local: LocalIdentity; certDer: Buffer };
  const betaId = { nodeId: 2, name: 'beta' };

  before(async () => {
    pki = await createTestPki();
    alpha = await pki.identity('alpha', 1, ['100.64.0.1', 'fd00::1']);
    dir = mkdtempSync(join(tmpdir(), 'cyphonic-revoked-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** beta's PeerManager with this list; `onBlock` runs when it closes a peer's tunnel. */
  const beta = async (list: RevocationList, onBlock: () => void = () => {}) => {
    const beta = await pki.identity('beta', 2, ['100.64.0.2', 'fd00::2']);
    const installed: SessionKeys[] = [];
    const pm: PeerManager = new PeerManager({
      local: () => beta.local,
      anchors: () => ({ ...pki.anchors, isRevoked: (serial) => pm.isRevokedSerial(serial) }),
      routes: () => ({ direction: async () => { throw new Error('no NMS here'); }, confirm: async () => {} }),
      sink: () => ({
        send: () => {},
        install: async (_r, keys) => void installed.push(keys),
        peerStats: () => ({ rxBytes: 0, txBytes: 0 }),
        blockPeer: onBlock,
        setFilter: () => {},
      }),
      logger: silentLogger,
      revocations: list,
    });
    return { pm, installed };
  };

  /** Route Direction (beta responds) for alpha, and alpha's TunnelRequest on that path. */
  const alphaPath = (): { rd: RouteDirection; request: () => Buffer } => {
    const pathId = randomBytes(8).readBigUInt64BE() | 1n;
    const tunnelKey = randomBytes(32);
    const rd: RouteDirection = {
      pathId, pathType: PathType.Direct, initiator: false, tunnelKey, peerNodeId: 1, peerName: 'alpha', peerFqdn: 'alpha.cyphonic.internal',
      peerVip4: '100.64.0.1', peerVip6: 'fd00::1', peerEndpoints: [{ address: '198.18.0.11', port: 30000 }], peerCertificate: alpha.certDer,
    };
    return { rd, request: () => new HandshakeInitiator(alpha.local, pki.anchors, { pathId, tunnelKey }, betaId).request(1n, 1) };
  };

  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 100));

  test('a pushed serial is on disk before the tunnel closes, and a restarted node refuses the revoked peer before any push', async () => {
    const file = new StateDir(dir).revokedPath;
    const serial = serialOf(alpha.certDer);
    let onDiskAtBlock: boolean | null = null;
    const first = await beta(new RevocationList(file), () => (onDiskAtBlock = existsSync(file) && readFileSync(file, 'utf8').includes(serial)));
    const p1 = alphaPath();
    await first.pm.onRouteDirection(p1.rd);
    first.pm.onDatagram(p1.request(), p1.rd.peerEndpoints[0]!);
    await settle();
    assert.equal(first.installed.length, 1, 'alpha connects before the revocation');

    first.pm.applyPolicy([{ peerNodeId: 1, connected: false, allowIn: '', revoked: true, revokedSerials: [serial] }]);
    assert.equal(onDiskAtBlock, true, 'the serial was written before the tunnel was closed');
    assert.equal(first.pm.counters.get('revocation.serials'), 1);
    first.pm.close(); // kill -9: nothing more is written

    // The restarted node: a new PeerManager on the same file, no PolicyUpdate since.
    const second = await beta(new RevocationList(file));
    assert.ok(second.pm.isRevokedSerial(serial));
    const p2 = alphaPath();
    await second.pm.onRouteDirection(p2.rd); // a stale Route Direction for alpha
    assert.equal(second.pm.counters.get('route.bad-certificate'), 1, 'the Route Direction for the revoked certificate is refused');
    second.pm.onDatagram(p2.request(), p2.rd.peerEndpoints[0]!);
    await settle();
    assert.equal(second.installed.length, 0, 'no session for the revoked peer after the restart');
    second.pm.close();

    // Control: a node that kept no list (the old in-memory one) takes alpha back after its restart.
    const forgetful = await beta(new RevocationList());
    const p3 = alphaPath();
    await forgetful.pm.onRouteDirection(p3.rd);
    forgetful.pm.onDatagram(p3.request(), p3.rd.peerEndpoints[0]!);
    await settle();
    assert.equal(forgetful.installed.length, 1);
    forgetful.pm.close();
  });

  test('the file is bounded (oldest forgotten), skips bad serials, and a damaged file does not stop the node', () => {
    const file = join(dir, 'bounded.json');
    const list = new RevocationList(file, 3);
    assert.deepEqual(list.add(['01', 'NOT-HEX', '02', '03', '02']), ['01', '02', '03']);
    assert.deepEqual(list.add(['04', '05']), ['04', '05']);
    assert.equal(list.size, 3);
    const again = new RevocationList(file, 3);
    assert.deepEqual(['01', '02', '03', '04', '05'].map((s) => again.has(s)), [false, false, true, true, true]);
    assert.deepEqual(again.loaded, { serials: 3, damaged: false });
    assert.deepEqual(again.add(['05']), [], 'a known serial writes nothing');

    writeFileSync(file, '{"v":1,"serials":["0a", 7, "zz"');
    const damaged = new RevocationList(file, 3);
    assert.deepEqual(damaged.loaded, { serials: 0, damaged: true });
    writeFileSync(file, '{"v":1,"serials":["0a", 7, "zz"]}');
    const partly = new RevocationList(file, 3);
    assert.deepEqual(partly.loaded, { serials: 1, damaged: true });
    assert.ok(partly.has('0a'));
  });
});
