// Path choice at the NMS (src/cloud/nms/paths.ts): the rule table for every kind of site pair, and the relay
// endpoint each end gets; plus the NMS's mapping probe (and a registration retransmitted around it) and a relayed
// Route Direction, in one process.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { choosePath, relayFor } from '../../../src/cloud/nms/paths.js';
import { allocateRelay, type RelayClient } from '../../../src/cloud/trs/client.js';
import { NmsService } from '../../../src/cloud/nms/service.js';
import { NmsClient } from '../../../src/node/signaling.js';
import { MessageType, PathType } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { decodeBody } from '../../../src/protocol/messages.js';
import { openStore } from '../../../src/store/index.js';
import type { NatMapping, RegistrationRecord } from '../../../src/store/types.js';
import { silentLogger } from '../../../src/util/log.js';

function reg(observed: string, reported: string[], mapping?: NatMapping): RegistrationRecord {
  const ep = (s: string): Endpoint => {
    const i = s.lastIndexOf(':');
    return { address: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) };
  };
  const o = ep(observed);
  const rep = reported.map(ep);
  return {
    nodeId: 1,
    observed: o,
    reported: rep,
    nat: !rep.some((e) => e.address === o.address && e.port === o.port),
    keepaliveSec: 5,
    registeredAt: 0,
    lastSeen: 0,
    lastSeq: 0n,
    ...(mapping ? { mapping } : {}),
  };
}

const G4 = reg('198.18.0.11:30000', ['198.18.0.11:30000']);
const G6 = reg('[2001:db8::12]:30000', ['[2001:db8::12]:30000']);
const GD = reg('198.18.0.13:30000', ['198.18.0.13:30000', '[2001:db8::13]:30000']);
const EIM_A = reg('198.18.0.20:30000', ['10.1.0.10:30000'], 'independent');
const EIM_A2 = reg('198.18.0.20:1024', ['10.1.0.11:30000'], 'dependent');
const EIM_B = reg('198.18.0.21:30000', ['10.2.0.10:30000'], 'independent');
const RND = reg('198.18.0.22:51234', ['10.3.0.10:30000'], 'dependent');
const UNPROBED = reg('198.18.0.23:30000', ['10.4.0.10:30000']);

test('reported endpoints cannot aim a peer at third parties: the observed endpoint plus one per other family', () => {
  const victims = Array.from({ length: 12 }, (_, i) => `198.51.100.${i + 1}:53`);
  const liar = reg('198.18.0.30:30000', ['198.18.0.30:30000', ...victims, '[2001:db8::30]:30000', '[2001:db8::66]:53']);
  const plan = choosePath(GD, liar);
  if (plan.kind === 'relayed') return assert.fail('direct expected');
  assert.deepEqual(plan.toInitiator, [{ address: '198.18.0.30', port: 30000 }, { address: '2001:db8::30', port: 30000 }]);
  const back = choosePath(liar, GD);
  if (back.kind === 'relayed') return assert.fail('direct expected');
  assert.equal(back.toResponder.length, 2, 'the responder gets no more of the liar\'s claims');
  // Behind one NAT: one LAN endpoint per family, not every address claimed.
  const lanLiar = reg('198.18.0.20:1030', ['10.1.0.12:30000', ...victims.map((v) => v.replace('198.51.100', '10.1.0'))], 'independent');
  const same = choosePath(EIM_A, lanLiar);
  if (same.kind === 'relayed') return assert.fail('direct expected');
  assert.deepEqual(same.toInitiator, [{ address: '10.1.0.12', port: 30000 }]);
});

test('the rule table: direct, punched or relayed for every kind of pair', () => {
  const kind = (a: RegistrationRecord, b: RegistrationRecord): string => choosePath(a, b).kind;
  assert.equal(kind(G4, GD), 'direct');
  assert.equal(kind(G6, GD), 'direct');
  assert.equal(kind(G4, G6), 'relayed', 'IPv4-only vs IPv6-only');
  assert.equal(kind(G6, G4), 'relayed');
  assert.equal(kind(G6, EIM_A), 'relayed', 'IPv6-only vs an IPv4 NAPT');
  assert.equal(kind(EIM_A, G6), 'relayed');
  assert.equal(kind(EIM_A, G4), 'direct', 'initiator behind NAT, responder reachable');
  assert.equal(kind(RND, GD), 'direct');
  assert.equal(kind(G4, RND), 'direct', 'responder behind NAT opens the way');
  assert.equal(kind(EIM_A, EIM_A2), 'direct', 'same NAT: LAN');
  assert.equal(kind(EIM_A, EIM_B), 'punched');
  assert.equal(kind(EIM_A, RND), 'relayed', 'EIM vs random: not punchable under port-dependent filtering');
  assert.equal(kind(RND, EIM_B), 'relayed');
  assert.equal(kind(EIM_A, UNPROBED), 'relayed', 'mapping not learned: do not gamble');
  assert.equal(choosePath(G4, GD, { relayOnly: true }).kind, 'relayed', 'a relay asked for is a relay');
});

test('endpoints: the family the other end has, LAN endpoints behind one NAT, observed ones for a punch', () => {
  const p = choosePath(G6, GD);
  assert.ok(p.kind === 'direct');
  assert.deepEqual(p.toInitiator, [{ address: '2001:db8::13', port: 30000 }], 'only the IPv6 endpoint for an IPv6-only initiator');
  assert.equal(p.responderSends, false);
  const lan = choosePath(EIM_A, EIM_A2);
  assert.ok(lan.kind === 'direct');
  assert.deepEqual(lan.toInitiator, [{ address: '10.1.0.11', port: 30000 }]);
  assert.deepEqual(lan.toResponder, [{ address: '10.1.0.10', port: 30000 }]);
  const punch = choosePath(EIM_A, EIM_B);
  assert.ok(punch.kind === 'punched');
  assert.deepEqual(punch.toInitiator, [EIM_B.observed]);
  assert.deepEqual(punch.toResponder, [EIM_A.observed]);
  assert.equal(punch.responderSends, true);
  const rev = choosePath(G4, RND);
  assert.ok(rev.kind === 'direct');
  assert.equal(rev.responderSends, true);
  const relay = [{ address: '198.18.0.10', port: 4503 }, { address: '2001:db8::10', port: 4503 }];
  assert.equal(relayFor(G6, relay)?.address, '2001:db8::10');
  assert.equal(relayFor(EIM_A, relay)?.address, '198.18.0.10');
});

test('NMS: the probe port learns the mapping; a relayed Route Direction carries each end\'s relay and the Temp Key', async () => {
  const store = await openStore(':memory:');
  const NMS: Endpoint = { address: '198.18.0.10', port: 4502 };
  const tempKey = randomBytes(32);
  const asked: { nodeA: number; nodeB: number; avoid: Endpoint[] }[] = [];
  const clients = new Map<number, NmsClient>();
  const service = new NmsService({ domain: 'cyphonic.internal', probePort: 4505 }, {
    store,
    logger: silentLogger,
    send: (d) => {
      for (const c of clients.values()) if (c.handleDatagram(d)) break; // each takes only its own node id
    },
    relays: {
      allocate: async (req, avoid) => {
        asked.push({ nodeA: req.nodeA, nodeB: req.nodeB, avoid });
        return { tempKey, relay: [{ address: '198.18.0.10', port: 4503 }, { address: '2001:db8::10', port: 4503 }], relayId: 'trs-x' };
      },
    },
  });
  // A node behind a NAT at `pub` (first port for the NMS, `probePub` for the probe) and one IPv6-only node.
  const mk = async (name: string, local: Endpoint, pub: Endpoint, probePub: Endpoint) => {
    const n = await store.createNode({ name, kind: 'node' }, { v4: '100.64.0.0/10', v6: 'fd00:1:2::/48' });
    const key = randomBytes(32);
    await store.putCommonKey({ nodeId: n.id, key, expiresAt: Date.now() + 60_000, createdAt: Date.now() });
    await store.addCertificate({ serial: randomBytes(8).toString('hex'), nodeId: n.id, der: Buffer.from(`cert-${name}`), notAfter: Date.now() + 86_400_000, createdAt: Date.now() });
    const client = new NmsClient({ nodeId: n.id, commonKey: key, nms: NMS }, {
      send: (msg, to) => {
        const via = to.port === 4505 ? 'probe' : 'main';
        void service.handle(msg, via === 'probe' ? probePub : pub, via).then((r) => r && client.handleDatagram(r));
      },
    });
    clients.set(n.id, client);
    const res = await client.register([local], false);
    assert.equal(res.probePort, 4505);
    const ack = await client.probe(res.probePort!);
    assert.deepEqual(ack.observed, probePub);
    return { id: n.id, client };
  };
  const a = await mk('natted', { address: '10.1.0.10', port: 30000 }, { address: '198.18.0.20', port: 30000 }, { address: '198.18.0.20', port: 30000 });
  const r = await mk('random', { address: '10.3.0.10', port: 30000 }, { address: '198.18.0.22', port: 5000 }, { address: '198.18.0.22', port: 5001 });
  const v6 = await mk('six', { address: '2001:db8::12', port: 30000 }, { address: '2001:db8::12', port: 30000 }, { address: '2001:db8::12', port: 30000 });
  assert.equal((await store.getRegistration(a.id))?.mapping, 'independent');
  assert.equal((await store.getRegistration(r.id))?.mapping, 'dependent');
  assert.equal((await store.getRegistration(v6.id))?.mapping, undefined, 'not behind NAT: nothing to learn');
  v6.client.onPush = (_t, body) => void v6.client.confirm(decodeBody(MessageType.RouteDirectionResponder, body).pathId, true);
  const rd = await a.client.direction({ targetFqdn: 'six.cyphonic.internal' });
  assert.equal(rd.pathType, PathType.Relayed);
  assert.deepEqual(rd.relay, { address: '198.18.0.10', port: 4503 }, 'the IPv4 node gets the IPv4 relay endpoint');
  assert.ok(rd.tempKey?.equals(tempKey));
  assert.deepEqual(asked[0], { nodeA: a.id, nodeB: v6.id, avoid: [] });
  const again = await a.client.direction({ targetFqdn: 'six.cyphonic.internal', relayOnly: true, avoidRelay: { address: '198.18.0.10', port: 4503 } });
  assert.equal(again.pathType, PathType.Relayed);
  assert.deepEqual(asked[1]?.avoid, [{ address: '198.18.0.10', port: 4503 }], 'the dead TRS is excluded');
  for (const c of clients.values()) c.close();
  await store.close();
});

test('allocateRelay tries a TRS a node reported dead only after every other live one', async () => {
  const store = await openStore(':memory:');
  const now = Date.now();
  const row = (id: string, load: number, port: number) => ({ id, endpoints: [{ address: '198.18.0.10', port }], load, startedAt: now, heartbeatAt: now });
  await store.upsertRelayServer(row('least-loaded', 0, 4503));
  await store.upsertRelayServer(row('other', 5, 4513));
  const tried: string[] = [];
  const client = {
    request: async (server: { id: string; endpoints: Endpoint[] }, req: { pathId: bigint }, tempKey: Buffer) => {
      tried.push(server.id);
      return { pathId: req.pathId, tempKey, relay: server.endpoints, relayId: server.id };
    },
  } as unknown as RelayClient;
  const req = { pathId: 5n, nodeA: 1, nodeB: 2, expiresAt: now + 60_000 };
  assert.equal((await allocateRelay({ store, client }, req)).relayId, 'least-loaded');
  const dead = { address: '198.18.0.10', port: 4503 };
  const avoid = (r: { endpoints: Endpoint[] }): boolean => r.endpoints.some((e) => e.address === dead.address && e.port === dead.port);
  assert.equal((await allocateRelay({ store, client, avoid }, req)).relayId, 'other', 'the reported TRS is tried last');
  await store.deleteRelayServer('other');
  assert.equal((await allocateRelay({ store, client, avoid }, req)).relayId, 'least-loaded', 'but still used when it is the only one');
  assert.deepEqual(tried, ['least-loaded', 'other', 'least-loaded']);
  await store.close();
});

test('NMS: a registration retransmitted around the mapping probe is stored once and keeps the learnt mapping', async () => {
  const store = await openStore(':memory:');
  let upserts = 0;
  const upsert = store.upsertRegistration.bind(store);
  store.upsertRegistration = (rec) => {
    upserts++;
    return upsert(rec);
  };
  const NMS: Endpoint = { address: '198.18.0.10', port: 4502 };
  const service = new NmsService({ domain: 'cyphonic.internal', probePort: 4505 }, { store, logger: silentLogger });
  const n = await store.createNode({ name: 'natted', kind: 'node' }, { v4: '100.64.0.0/10', v6: 'fd00:1:2::/48' });
  const key = randomBytes(32);
  await store.putCommonKey({ nodeId: n.id, key, expiresAt: Date.now() + 60_000, createdAt: Date.now() });
  const pub: Endpoint = { address: '198.18.0.20', port: 30000 };
  // The node's frames are held here and delivered by the test, so a retransmission can arrive whenever it likes.
  const sent: { msg: Buffer; to: Endpoint }[] = [];
  let wake: (() => void) | null = null;
  const client = new NmsClient({ nodeId: n.id, commonKey: key, nms: NMS, retransmitMs: [40, 5_000] }, {
    send: (msg, to) => {
      sent.push({ msg, to });
      wake?.();
    },
  });
  const nextFrame = async (): Promise<{ msg: Buffer; to: Endpoint }> => {
    while (sent.length === 0) await new Promise<void>((r) => (wake = r));
    return sent.shift()!;
  };
  const answer = async (f: { msg: Buffer; to: Endpoint }, from = pub): Promise<Buffer | null> =>
    service.handle(f.msg, from, f.to.port === 4505 ? 'probe' : 'main');

  // The first registration is answered, but the answer is "slow": the node retransmits before it arrives.
  const registering = client.register([{ address: '10.1.0.10', port: 30000 }], false);
  const first = await nextFrame();
  const reply = await answer(first);
  assert.ok(reply);
  const retransmitted = await nextFrame();
  assert.equal(client.handleDatagram(reply), true);
  const res = await registering;
  assert.equal(res.nat, true);
  // The node probes once for this answer; the NMS learns an endpoint-independent mapping.
  const probing = client.probe(res.probePort!);
  const probeReply = await answer(await nextFrame());
  assert.ok(probeReply && client.handleDatagram(probeReply));
  await probing;
  assert.equal((await store.getRegistration(n.id))?.mapping, 'independent');
  assert.equal(upserts, 1);

  // Now the retransmission arrives: answered again, not stored again, and the mapping stays.
  const late = await answer(retransmitted);
  assert.ok(late, 'a late retransmission is answered (the first answer may have been lost)');
  assert.equal(upserts, 1, 'a retransmission is not stored a second time');
  assert.equal((await store.getRegistration(n.id))?.mapping, 'independent');
  assert.equal(service.counters.get('register.repeat'), 1);

  // A retransmission that arrives while its first copy is still being stored gets no answer of its own.
  const again = client.register([{ address: '10.1.0.10', port: 30000 }], true);
  const a1 = await nextFrame();
  const a2 = await nextFrame();
  const [r1, r2] = await Promise.all([answer(a1), answer(a2)]);
  assert.ok(r1, 'the first copy is answered');
  assert.equal(r2, null, 'the concurrent copy waits for the first one\'s answer');
  assert.equal(upserts, 2);
  assert.ok(client.handleDatagram(r1));
  await again;

  // A retransmission from another address (the NAT moved meanwhile) is a registration of that address.
  const moved = client.register([{ address: '10.1.0.10', port: 30000 }], true);
  const m1 = await nextFrame();
  const m1Reply = await answer(m1);
  const m2 = await nextFrame();
  const movedPub: Endpoint = { address: '198.18.0.20', port: 31000 };
  const m2Reply = await answer(m2, movedPub);
  assert.ok(m1Reply && m2Reply);
  assert.equal(upserts, 4);
  assert.deepEqual((await store.getRegistration(n.id))?.observed, movedPub);
  assert.ok(client.handleDatagram(m2Reply));
  assert.deepEqual((await moved).observed, movedPub);
  client.close();
  await store.close();
});
