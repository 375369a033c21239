// Route selection under a policy, in one process: the NMS selects no route between nodes no rule connects (answered
// like an unknown name, so the node's DNS gives no answer), and each end of an allowed path learns what the other
// may open to it (`allowIn`); policy, tag and revocation changes are pushed to nodes with paths (PolicyUpdate).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openStore } from '../../../src/store/index.js';
import type { Store } from '../../../src/store/types.js';
import { NmsService } from '../../../src/cloud/nms/service.js';
import { NmsClient } from '../../../src/node/signaling.js';
import { Status } from '../../../src/protocol/constants.js';
import { endpointKey, type Endpoint } from '../../../src/protocol/endpoint.js';
import type { PolicyEntry, RouteDirection } from '../../../src/protocol/messages.js';
import { deliverRouteDirections } from '../../../src/node/signaling.js';
import { bumpPolicyRev, setPolicy, setTags } from '../../../src/policy/store.js';
import { waitFor } from '../../harness/cluster.js';
import { silentLogger } from '../../../src/util/log.js';
import { RequestError } from '../../../src/util/errors.js';

const POOLS = { v4: '100.64.0.0/10', v6: 'fd00:1:2::/48' };
const NMS: Endpoint = { address: '198.18.0.10', port: 4502 };

describe('route selection under a policy', () => {
  let store: Store;
  let service: NmsService;
  const clients = new Map<string, NmsClient>();
  const pushed: RouteDirection[] = [];
  const updates: { to: string; entries: PolicyEntry[] }[] = [];

  async function node(name: string, last: number, tags: string[]): Promise<NmsClient> {
    const ep = { address: `198.18.0.${last}`, port: 30000 };
    const n = await store.createNode({ name, kind: 'node' }, POOLS);
    await store.setNodeTags(name, tags);
    const key = randomBytes(32);
    await store.putCommonKey({ nodeId: n.id, key, expiresAt: Date.now() + 60_000, createdAt: Date.now() });
    await store.addCertificate({ serial: randomBytes(8).toString('hex'), nodeId: n.id, der: Buffer.from(`cert-of-${name}`), notAfter: Date.now() + 86_400_000, createdAt: Date.now() });
    const client = new NmsClient({ nodeId: n.id, commonKey: key, nms: NMS }, {
      send: (msg) => void service.handle(msg, ep).then((r) => r && client.handleDatagram(r)),
    });
    deliverRouteDirections(client, (rd) => {
      pushed.push(rd);
      void client.confirm(rd.pathId, true);
    }, silentLogger, (entries) => updates.push({ to: name, entries }));
    clients.set(endpointKey(ep), client);
    await client.register([ep], false);
    return client;
  }

  before(async () => {
    store = await openStore(':memory:');
    service = new NmsService({ domain: 'cyphonic.internal' }, { store, logger: silentLogger, send: (d, to) => clients.get(endpointKey(to))?.handleDatagram(d) });
    service.watchPolicy(50);
  });
  after(async () => {
    service.close();
    await store.close();
  });

  test('allow-all by default: allowIn "*" both ways', async () => {
    const a = await node('ops1', 11, ['ops']);
    await node('cam1', 12, ['cam']);
    await node('plain', 13, []);
    const rd = await a.direction({ targetFqdn: 'cam1.cyphonic.internal' });
    assert.equal(rd.allowIn, '*');
    assert.equal(pushed.at(-1)!.allowIn, '*');
  });

  test('ops → cam on icmp and tcp:22: each end learns what the other may open; unconnected pairs get no route', async () => {
    await setPolicy(store, '{"allow": [{"from": ["tag:ops"], "to": ["tag:cam"], "ports": ["icmp", "tcp:22"]}]}');
    const ops = clients.get(endpointKey({ address: '198.18.0.11', port: 30000 }))!;
    const cam = clients.get(endpointKey({ address: '198.18.0.12', port: 30000 }))!;
    const plain = clients.get(endpointKey({ address: '198.18.0.13', port: 30000 }))!;
    const rd = await ops.direction({ targetFqdn: 'cam1.cyphonic.internal' });
    assert.equal(rd.allowIn, '', 'cam may open nothing to ops');
    assert.equal(pushed.at(-1)!.allowIn, 'icmp,tcp:22', 'ops may open icmp and tcp:22 to cam');
    const back = await cam.direction({ targetFqdn: 'ops1.cyphonic.internal' });
    assert.equal(back.allowIn, 'icmp,tcp:22', 'the reverse selection is allowed (replies need the path) with the same filters');
    assert.equal(pushed.at(-1)!.allowIn, '');
    const before = pushed.length;
    for (const [from, to] of [[plain, 'cam1'], [ops, 'plain'], [cam, 'plain']] as const) {
      await assert.rejects(from.direction({ targetFqdn: `${to}.cyphonic.internal` }), (e: unknown) => e instanceof RequestError && e.status === Status.UnknownPeer);
    }
    assert.equal(pushed.length, before, 'nothing was pushed for refused pairs');
    assert.equal(service.counters.get('route.refused.policy'), 3);
  });

  test('a policy or tag change is pushed to nodes with paths (PolicyUpdate, acknowledged); nodes without paths hear nothing', async () => {
    updates.length = 0;
    const ids = Object.fromEntries((await store.listNodes()).map((n) => [n.name, n.id]));
    await setPolicy(store, '{"allow": [{"from": ["tag:ops"], "to": ["tag:cam"], "ports": ["tcp:22", "udp:53"]}]}');
    // A push of the previous test's policy may still be retransmitted in between (until acknowledged): what counts
    // is that each node's newest push carries the new policy.
    const newest = (to: string, peer: string) => [...updates].reverse().find((u) => u.to === to)?.entries.find((e) => e.peerNodeId === ids[peer]);
    await waitFor('pushes of the new policy to ops1 and cam1', async () => newest('cam1', 'ops1')?.allowIn === 'tcp:22,udp:53' && newest('ops1', 'cam1') !== undefined, 3000, 20);
    assert.deepEqual(newest('cam1', 'ops1'), { peerNodeId: ids['ops1'], connected: true, allowIn: 'tcp:22,udp:53' });
    assert.deepEqual(newest('ops1', 'cam1'), { peerNodeId: ids['cam1'], connected: true, allowIn: '' });
    assert.ok(!updates.some((u) => u.to === 'plain'), 'plain has no path');
    await waitFor('acks', async () => service.counters.get('policy.acked') >= 2, 3000, 20);
    // ops1 loses its tag: no rule connects the pair any more.
    updates.length = 0;
    await setTags(store, 'ops1', []);
    await waitFor('the tag change pushed', async () => newest('cam1', 'ops1')?.connected === false, 3000, 20);
    assert.deepEqual(newest('cam1', 'ops1'), { peerNodeId: ids['ops1'], connected: false, allowIn: '' });
    assert.equal(service.counters.get('policy.unacked'), 0);
  });

  test('a revoked node\'s peers are told to close its tunnels (revoked: true); the revoked node itself gets nothing', async () => {
    const ids = Object.fromEntries((await store.listNodes()).map((n) => [n.name, n.id]));
    updates.length = 0;
    await store.revokeNodeCertificates(ids['cam1']!, 'test', Date.now());
    await bumpPolicyRev(store);
    await waitFor('the revocation pushed to ops1', async () => updates.some((u) => u.to === 'ops1'), 3000, 20);
    const serials = (await store.listNodeCertificates(ids['cam1']!)).map((c) => c.serial.toLowerCase());
    assert.deepEqual(updates.find((u) => u.to === 'ops1')!.entries[0], { peerNodeId: ids['cam1'], connected: false, allowIn: '', revoked: true, revokedSerials: serials }, 'with the serials for the revocation list');
    assert.ok(!updates.some((u) => u.to === 'cam1'), 'the revoked node is not told');
  });

  test('every registered node gets the revocation list: nodes without a path to the revoked one, and nodes that register afresh', async () => {
    const ids = Object.fromEntries((await store.listNodes()).map((n) => [n.name, n.id]));
    const serials = (await store.listNodeCertificates(ids['cam1']!)).map((c) => c.serial.toLowerCase());
    const camEntry = { peerNodeId: ids['cam1'], connected: false, allowIn: '', revoked: true, revokedSerials: serials };
    // plain never had a path with cam1: it heard of cam1's revocation all the same (the previous test's push).
    await waitFor('plain told of cam1', async () => updates.some((u) => u.to === 'plain'), 3000, 20);
    assert.deepEqual(updates.find((u) => u.to === 'plain')!.entries, [camEntry]);

    // A node that registers after the revocation (a new one, or one restarted) is sent the list at registration.
    updates.length = 0;
    const late = await node('late', 14, []);
    await waitFor('late gets the list', async () => updates.some((u) => u.to === 'late'), 3000, 20);
    assert.deepEqual(updates.find((u) => u.to === 'late')!.entries, [camEntry]);
    await waitFor('acked', async () => service.counters.get('policy.revocations-sent') >= 1 && service.counters.get('policy.unacked') === 0, 3000, 20);
    // A re-registration (keepalive cycle) is not a fresh start: nothing is resent.
    updates.length = 0;
    await late.register([{ address: '198.18.0.14', port: 30000 }], true);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(updates.filter((u) => u.to === 'late').length, 0);

    // A second revocation: only the news goes to everyone (cam1's serials are not sent again to unrelated nodes).
    await store.revokeNodeCertificates(ids['plain']!, 'test', Date.now());
    await bumpPolicyRev(store);
    await waitFor('late told of plain', async () => updates.some((u) => u.to === 'late'), 3000, 20);
    const plainSerials = (await store.listNodeCertificates(ids['plain']!)).map((c) => c.serial.toLowerCase());
    assert.deepEqual(updates.find((u) => u.to === 'late')!.entries, [{ peerNodeId: ids['plain'], connected: false, allowIn: '', revoked: true, revokedSerials: plainSerials }]);
  });
});
