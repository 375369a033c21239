// PeerManager over two native data-plane engines (engine-rig.ts: socket pairs as TUNs, loopback UDP between the
// engines), with handshakes on a slow wire: every Tunnel Request and Response takes 300 ms each way, so the
// initiator retransmits (150, 300 ms …) before the first response arrives and the responder answers each request
// with a session. Whichever response the initiator completes with, packets must pass both ways, for the first
// tunnel and across rekeys by either end. (With the engine's old two receive generations the responder had
// dropped the session the initiator chose: every capsule initiator→responder failed with a bad tag.)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { installLimits } from '../../../src/crypto/data-session.js';
import type { LocalIdentity, TrustAnchors } from '../../../src/crypto/handshake.js';
import { PathType } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import type { RouteDirection } from '../../../src/protocol/messages.js';
import { PeerManager } from '../../../src/node/peers.js';
import { silentLogger } from '../../../src/util/log.js';
import { native, Rig } from './engine-rig.js';
import { createTestPki } from './pki-fixture.js';

const skip = native ? false : 'native addon not built';
/** One-way delay of every handshake datagram (ms): a 600 ms handshake round trip. */
const WIRE_DELAY_MS = 300;

interface Node {
  name: string;
  id: number;
  vip4: number[];
  ep: Endpoint;
  local: LocalIdentity;
  certDer: Buffer;
  rig: Rig;
  pm: PeerManager;
  installs: number;
}

const vipText = (v: number[]): string => v.join('.');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('peer manager over native engines, handshake round trip 600 ms', { skip }, () => {
  let anchors: TrustAnchors;
  let nodes: [Node, Node];
  let pump: NodeJS.Timeout;

  before(async () => {
    const pki = await createTestPki();
    anchors = pki.anchors;
    const made: Node[] = [];
    for (const [i, name] of ['slow-a', 'slow-b'].entries()) {
      const { local, certDer } = await pki.identity(name, i + 1);
      made.push({ name, id: i + 1, vip4: [100, 64, 0, i + 1], ep: { address: `198.18.0.${21 + i}`, port: 30000 }, local, certDer, rig: new Rig(), installs: 0 } as unknown as Node);
    }
    nodes = made as [Node, Node];
    for (const me of nodes) {
      const other = nodes.find((n) => n !== me)!;
      me.pm = new PeerManager({
        local: () => me.local,
        anchors: () => anchors,
        routes: () => ({ direction: () => direct(me, other), confirm: async () => {} }),
        sink: () => ({
          send: (d: Buffer) => void setTimeout(() => other.pm.onDatagram(d, me.ep), WIRE_DELAY_MS),
          install: async (route, keys, receiveOnly) => {
            me.installs++;
            const id = Buffer.alloc(8);
            id.writeBigUInt64BE(keys.pathId);
            me.rig.n.dpInstall(me.rig.engine, route.slot, id, keys.send, keys.recv, keys.initiator, !!receiveOnly, Buffer.from(other.vip4), null, Buffer.from([127, 0, 0, 1]), other.rig.enginePort, installLimits(keys, Date.now()));
          },
          peerStats: () => ({ rxBytes: 0, txBytes: 0 }),
        }),
        logger: silentLogger,
        rekeyAfterMs: 2500,
      });
    }
    // The engines' turns (capsules between them), as their worker would run them.
    pump = setInterval(() => {
      for (const n of nodes) n.rig.poll();
    }, 2);
  });

  after(() => {
    clearInterval(pump);
    for (const n of nodes) {
      n.pm.close();
      n.rig.close();
    }
  });

  /** Fake NMS: pushes the responder half to `to`, answers `from` with the initiator half. */
  async function direct(from: Node, to: Node): Promise<RouteDirection> {
    const pathId = randomBytes(8).readBigUInt64BE() | 1n;
    const tunnelKey = randomBytes(32);
    const half = (peer: Node, initiator: boolean): RouteDirection => ({
      pathId, pathType: PathType.Direct, initiator, tunnelKey,
      peerNodeId: peer.id, peerName: peer.name, peerFqdn: `${peer.name}.cyphonic.internal`, peerVip4: vipText(peer.vip4), peerVip6: `fd00::${peer.id}`,
      peerEndpoints: [peer.ep], peerCertificate: peer.certDer,
    });
    await to.pm.onRouteDirection(half(from, false));
    return half(to, true);
  }

  /** `count` packets from one node's TUN to the other's; how many came out. */
  async function deliver(from: Node, to: Node, count: number): Promise<number> {
    let got = 0;
    for (let i = 0; i < count; i++) {
      const pkt = Buffer.alloc(80, i);
      pkt[0] = 0x45;
      Buffer.from(from.vip4).copy(pkt, 12);
      Buffer.from(to.vip4).copy(pkt, 16);
      from.rig.toTun(pkt);
      from.rig.poll();
      to.rig.poll();
      const out = to.rig.fromTun(20);
      if (out?.equals(pkt)) got++;
    }
    return got;
  }

  test('the first tunnel: the responder answered several requests, the initiator picked the first response; traffic passes both ways', async () => {
    const [a, b] = nodes;
    await a.pm.resolve('slow-b.cyphonic.internal');
    for (let i = 0; i < 300 && a.pm.status()[0]?.state !== 'established'; i++) await sleep(10);
    assert.equal(a.pm.status()[0]?.state, 'established');
    await sleep(2 * WIRE_DELAY_MS + 200); // the later requests reach b and are answered too
    assert.ok(b.installs >= 3, `b answered ${b.installs} requests (retransmissions while the first response travelled)`);
    assert.equal(await deliver(a, b, 20), 20, 'a → b (initiator → responder)');
    assert.equal(await deliver(b, a, 20), 20, 'b → a');
    assert.equal(b.rig.global('badTag'), 0);
  });

  test('rekeys (by either end) over the slow wire keep traffic passing both ways', async () => {
    const [a, b] = nodes;
    const rekeys = (): number => a.pm.counters.get('rekey') + b.pm.counters.get('rekey');
    const before = rekeys();
    for (let i = 0; i < 100 && rekeys() < before + 2; i++) await sleep(50);
    assert.ok(rekeys() >= before + 2, 'two rekeys ran');
    await sleep(3 * WIRE_DELAY_MS + 1300); // the last one completes and its retransmissions are answered
    assert.equal(await deliver(a, b, 20), 20, 'a → b');
    assert.equal(await deliver(b, a, 20), 20, 'b → a');
  });
});
