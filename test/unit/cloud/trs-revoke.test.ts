// Revocation at the relay, in one process over real loopback sockets: `cloud revoke` (a store revocation and a policy
// revision bump) makes the NMS's PolicyPusher send a sealed RelayRevoke to every live TRS, which drops the revoked
// node's relayed paths at once (nothing forwarded either way, binds unanswered), refuses new paths naming it, and
// leaves every other path relaying. A RelayRevoke under another key changes nothing.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { sealFrame } from '../../../src/channel/sealed.js';
import { SeqCounter } from '../../../src/channel/sequence.js';
import { PolicyPusher } from '../../../src/cloud/nms/policy-push.js';
import { PairTable } from '../../../src/cloud/nms/pair-table.js';
import { RelayClient, RelayError, revokeAtRelays } from '../../../src/cloud/trs/client.js';
import { TrsService } from '../../../src/cloud/trs/service.js';
import { TrsTransport } from '../../../src/cloud/trs/transport.js';
import { relayControlKeys } from '../../../src/cloud/trs/control.js';
import { MessageType, Status } from '../../../src/protocol/constants.js';
import { encodeBody } from '../../../src/protocol/messages.js';
import { bumpPolicyRev, setTags } from '../../../src/policy/store.js';
import { openStore } from '../../../src/store/index.js';
import type { Store } from '../../../src/store/types.js';
import { Counters } from '../../../src/util/counters.js';
import { silentLogger } from '../../../src/util/log.js';
import { waitFor } from '../../harness/cluster.js';
import { RelayEnd } from '../../harness/relay-end.js';

const POOLS = { v4: '100.64.0.0/10', v6: 'fd00:1:2::/48' };

describe('revocation at the TRS', () => {
  let store: Store;
  let trs: TrsService;
  let transport: TrsTransport;
  let client: RelayClient;
  let pusher: PolicyPusher;
  const counters = new Counters();
  const relayKey = randomBytes(32);
  const ends: RelayEnd[] = [];
  const ids = new Map<string, number>();
  const pairs = new PairTable(64);

  async function node(name: string): Promise<number> {
    const n = await store.createNode({ name, kind: 'node' }, POOLS);
    await store.addCertificate({ serial: randomBytes(8).toString('hex'), nodeId: n.id, der: Buffer.from(`cert-of-${name}`), notAfter: Date.now() + 86_400_000, createdAt: Date.now() });
    ids.set(name, n.id);
    return n.id;
  }

  /** A relayed path between two nodes on our TRS (as route selection makes it), both ends bound. */
  async function relayed(x: string, y: string): Promise<{ a: RelayEnd; b: RelayEnd; pathId: bigint }> {
    const nodeA = ids.get(x)!;
    const nodeB = ids.get(y)!;
    const pathId = randomBytes(8).readBigUInt64BE() | 1n;
    pairs.remember(nodeA, nodeB, pathId, 'relayed', true, trs.id, null, 'test', Date.now());
    pairs.remember(nodeB, nodeA, pathId, 'relayed', false, trs.id, null, 'test', Date.now());
    const alloc = await client.request({ id: trs.id, endpoints: trs.advertised }, { pathId, nodeA, nodeB, expiresAt: Date.now() + 60_000 }, randomBytes(32));
    const a = await RelayEnd.open('127.0.0.1', { nodeId: nodeA, pathId, tempKey: alloc.tempKey, relay: alloc.relay[0]! });
    const b = await RelayEnd.open('127.0.0.1', { nodeId: nodeB, pathId, tempKey: alloc.tempKey, relay: alloc.relay[0]! });
    ends.push(a, b);
    await a.bind();
    await b.bind();
    return { a, b, pathId };
  }

  async function flows(a: RelayEnd, b: RelayEnd): Promise<void> {
    const ab = a.capsule(randomBytes(48));
    a.send(ab);
    assert.deepEqual(await b.next((m) => m[1] === MessageType.Capsule), ab);
    const ba = b.capsule(randomBytes(48));
    b.send(ba);
    assert.deepEqual(await a.next((m) => m[1] === MessageType.Capsule), ba);
  }

  before(async () => {
    store = await openStore(':memory:');
    trs = new TrsService({ id: `trs-${randomBytes(4).toString('hex')}` }, { relayKey, logger: silentLogger, send: (d, p, addr) => transport.send(d, p, addr) });
    transport = new TrsTransport({ host: '127.0.0.1', port: 0 }, trs, silentLogger);
    const { port } = await transport.start();
    trs.advertise([{ address: '127.0.0.1', port }]);
    await store.upsertRelayServer({ id: trs.id, endpoints: trs.advertised, load: 0, startedAt: Date.now(), heartbeatAt: Date.now() });
    client = new RelayClient({ relayKey, host: '127.0.0.1', retransmitMs: [200, 400, 800] });
    await client.start();
    for (const n of ['alpha', 'beta', 'gamma', 'delta']) await node(n);
    pusher = new PolicyPusher({
      store,
      logger: silentLogger,
      counters,
      pairs,
      send: () => false, // no node sessions here: this test watches the relay
      revokeAtRelays: (nodeIds) => revokeAtRelays({ store, client }, nodeIds),
    });
    pusher.start(50);
  });
  after(async () => {
    pusher.stop();
    for (const e of ends) await e.close();
    await client.stop();
    await transport.stop();
    trs.stop();
    await store.close();
  });

  test('`cloud revoke` reaches the TRS: the node\'s relayed path stops both ways, its binds go unanswered, new paths for it are refused; other paths relay on', async () => {
    const ab = await relayed('alpha', 'beta');
    const gd = await relayed('gamma', 'delta');
    await flows(ab.a, ab.b);
    await flows(gd.a, gd.b);
    assert.equal(trs.status().paths, 2);

    // What `cloud revoke alpha` does to the store (cloud.ts revokeNode), then the NMS's watch picks it up.
    const t0 = Date.now();
    await store.revokeNodeCertificates(ids.get('alpha')!, 'revoked by administrator', t0);
    await bumpPolicyRev(store);
    await waitFor('the TRS drops the revoked node\'s path', async () => trs.metrics()['paths.revoked'] === 1, 5000, 20);
    const took = Date.now() - t0;
    assert.ok(took < 5000, `dropped after ${took} ms`);
    await waitFor('the TRS acknowledged', async () => counters.get('policy.relay-revoke.acked') === 1, 2000, 20);
    assert.equal(trs.status().paths, 1);

    // Nothing passes either way on the revoked node's path; a (validly sealed) rebind is not answered.
    ab.a.send(ab.a.capsule(randomBytes(48)));
    ab.b.send(ab.b.capsule(randomBytes(48)));
    await ab.b.silentFor(200);
    await ab.a.silentFor(0);
    await assert.rejects(ab.a.bind(300));
    await assert.rejects(ab.b.bind(300));
    assert.ok(trs.dropped.unknownPath >= 4);

    // A new path naming the revoked node (a route selection in flight) is refused with CertRevoked.
    await assert.rejects(
      client.request({ id: trs.id, endpoints: trs.advertised }, { pathId: randomBytes(8).readBigUInt64BE() | 1n, nodeA: ids.get('beta')!, nodeB: ids.get('alpha')!, expiresAt: Date.now() + 60_000 }, randomBytes(32)),
      (e: unknown) => e instanceof RelayError && e.code === 'ERR_RELAY_REFUSED' && e.status === Status.CertRevoked,
    );

    // The other pair's path is untouched.
    await flows(gd.a, gd.b);

    // A later policy change does not tell the TRS again about a revocation it already has.
    const sent = client.counters.get('revoke.tx');
    await setTags(store, 'gamma', ['ops']);
    await bumpPolicyRev(store);
    await waitFor('the second change', async () => counters.get('policy.changed') === 2, 3000, 20);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(client.counters.get('revoke.tx'), sent);
  });

  test('a RelayRevoke under another relay key or for another TRS changes nothing; a hold ends after its time', async () => {
    const gd = await relayed('gamma', 'delta');
    const id = randomBytes(8).readBigUInt64BE() | 1n;
    const body = encodeBody(MessageType.RelayRevoke, { nodeIds: [ids.get('gamma')!] });
    const before = trs.dropped.badControl;
    const seqs = new SeqCounter();
    for (const k of [relayControlKeys(randomBytes(32), id, trs.id), relayControlKeys(relayKey, id, 'trs-other')]) {
      gd.a.send(sealFrame(k.up, { type: MessageType.RelayRevoke, txid: 9, seq: seqs.next(), id }, body));
    }
    await waitFor('forged revokes dropped', async () => trs.dropped.badControl >= before + 2, 2000, 20);
    await flows(gd.a, gd.b);

    // A hold refuses new paths for the node until it ends (then a re-enrolled node may be relayed again).
    let clock = Date.now();
    const sent: Buffer[] = [];
    const short = new TrsService({ id: 'trs-short', revokeHoldMs: 1000 }, { relayKey, logger: silentLogger, send: (d) => sent.push(d), now: () => clock });
    short.advertise([{ address: '127.0.0.1', port: 9 }]);
    short.revoke([7]);
    const ask = (): number => {
      const pathId = randomBytes(8).readBigUInt64BE() | 1n;
      const k = relayControlKeys(relayKey, pathId, short.id);
      const req = encodeBody(MessageType.RelayRequest, { pathId, nodeA: 7, nodeB: 8, tempKey: randomBytes(32), expiresAt: BigInt(clock + 60_000) });
      short.handle(sealFrame(k.up, { type: MessageType.RelayRequest, txid: 1, seq: seqs.next(), id: pathId }, req), '127.0.0.1', 5000);
      const answer = sent.pop()!;
      return answer.readUInt16BE(2) === Status.Ok ? answer[1]! : -answer.readUInt16BE(2);
    };
    assert.equal(ask(), -Status.CertRevoked);
    clock += 1001;
    short.sweep();
    assert.equal(ask(), MessageType.RelayResponse);
    short.stop();
  });
});
