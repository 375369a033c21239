// Route selection across two NMS instances sharing one store: the initiator's instance has the responder's own
// instance push the Route Direction (over the registration path only that instance has) and gets the confirmation
// back through store messages; stray, foreign and malformed instance messages change nothing. Also the live-instance
// list that login and tokens hand out.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openStore, StoreError } from '../../../src/store/index.js';
import type { Store } from '../../../src/store/types.js';
import { NmsService } from '../../../src/cloud/nms/service.js';
import { InstanceRegistry, liveEndpoints, newInstanceId } from '../../../src/cloud/instances.js';
import { NmsClient } from '../../../src/node/signaling.js';
import { MessageType } from '../../../src/protocol/constants.js';
import { endpointKey, type Endpoint } from '../../../src/protocol/endpoint.js';
import { decodeBody } from '../../../src/protocol/messages.js';
import { silentLogger } from '../../../src/util/log.js';
import type { U64Table } from '../../../src/util/u64-table.js';

const POOLS = { v4: '100.64.0.0/10', v6: 'fd00:1:2::/48' };
const NMS1: Endpoint = { address: '198.18.0.10', port: 4502 };
const NMS2: Endpoint = { address: '198.18.0.20', port: 4502 };
const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 300 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
};

describe('route selection across NMS instances', () => {
  let store: Store;
  const nms = new Map<string, NmsService>();
  const clients = new Map<string, NmsClient>();
  /** Which instance sent each datagram to which node endpoint. */
  const sentBy: { instance: string; to: string }[] = [];

  async function node(name: string, ep: Endpoint, at: 'i-1' | 'i-2'): Promise<{ client: NmsClient; id: number }> {
    const n = await store.createNode({ name, kind: 'node' }, POOLS);
    const key = randomBytes(32);
    await store.putCommonKey({ nodeId: n.id, key, expiresAt: Date.now() + 60_000, createdAt: Date.now() });
    await store.addCertificate({ serial: randomBytes(8).toString('hex'), nodeId: n.id, der: Buffer.from(`cert-of-${name}`), notAfter: Date.now() + 86_400_000, createdAt: Date.now() });
    const service = nms.get(at)!;
    const client = new NmsClient({ nodeId: n.id, commonKey: key, nms: at === 'i-1' ? NMS1 : NMS2 }, {
      send: (msg) => void service.handle(msg, ep).then((r) => r && client.handleDatagram(r)),
    });
    clients.set(endpointKey(ep), client);
    await client.register([ep], false);
    return { client, id: n.id };
  }

  before(async () => {
    store = await openStore(':memory:');
    for (const id of ['i-1', 'i-2']) {
      await store.upsertInstance({ id, as: [], nms: [id === 'i-1' ? NMS1 : NMS2], trs: [], startedAt: Date.now(), heartbeatAt: Date.now() + 600_000 });
      const s = new NmsService({ domain: 'cyphonic.internal', instanceId: id }, {
        store,
        logger: silentLogger,
        send: (d, to) => {
          sentBy.push({ instance: id, to: endpointKey(to) });
          clients.get(endpointKey(to))?.handleDatagram(d);
        },
      });
      await s.listenToInstances();
      nms.set(id, s);
    }
  });
  after(async () => {
    for (const s of nms.values()) s.close();
    await store.close();
  });

  test('the responder\'s instance pushes; the confirmation reaches the initiator\'s instance', async () => {
    const aEp = { address: '198.18.0.11', port: 30000 };
    const bEp = { address: '198.18.0.12', port: 30000 };
    const a = await node('alpha', aEp, 'i-1');
    const b = await node('beta', bEp, 'i-2');
    assert.equal((await store.getRegistration(a.id))?.nms, 'i-1');
    assert.equal((await store.getRegistration(b.id))?.nms, 'i-2');
    let pushed = 0;
    b.client.onPush = (type, body) => {
      assert.equal(type, MessageType.RouteDirectionResponder);
      const rd = decodeBody(MessageType.RouteDirectionResponder, body);
      pushed++;
      void b.client.confirm(rd.pathId, true);
    };
    sentBy.length = 0;
    const mine = await a.client.direction({ targetFqdn: 'beta.cyphonic.internal' });
    assert.equal(mine.peerName, 'beta');
    // A direct path is answered beside the push: the push and beta's confirmation may still be on their way.
    const waiting = (nms.get('i-1') as unknown as { routes: { waiting: U64Table<unknown> } }).routes.waiting;
    await until(() => pushed > 0 && waiting.get(mine.pathId) === undefined);
    assert.equal(pushed, 1);
    assert.equal(waiting.get(mine.pathId), undefined, 'beta\'s confirmation reached the initiator\'s instance');
    assert.equal(nms.get('i-1')!.counters.get('route.unconfirmed.no-confirmation'), 0);
    const toBeta = sentBy.filter((s) => s.to === endpointKey(bEp));
    assert.deepEqual(toBeta.map((s) => s.instance), ['i-2'], 'only beta\'s own instance sent to beta');
    assert.equal(nms.get('i-1')!.counters.get('route.forward'), 1);
    assert.equal(nms.get('i-2')!.counters.get('route.push-for-instance'), 1);
    assert.equal(nms.get('i-1')!.counters.get('route.ok'), 1);
  });

  test('a registration naming a dead instance (a restart under a new id): pushed from here; a keepalive claims the node', async () => {
    const cEp = { address: '198.18.0.13', port: 30000 };
    const dEp = { address: '198.18.0.14', port: 30000 };
    const c = await node('gamma', cEp, 'i-1');
    const d = await node('delta', dEp, 'i-1');
    const reg = (await store.getRegistration(d.id))!;
    await store.upsertRegistration({ ...reg, nms: 'i-gone' });
    let pushed = 0;
    d.client.onPush = (_type, body) => {
      pushed++;
      void d.client.confirm(decodeBody(MessageType.RouteDirectionResponder, body).pathId, true);
    };
    sentBy.length = 0;
    const i1 = nms.get('i-1')!;
    const dead = i1.counters.get('route.push-for-dead-instance');
    assert.equal((await c.client.direction({ targetFqdn: 'delta.cyphonic.internal' })).peerName, 'delta');
    await until(() => pushed > 0); // answered beside the push
    assert.equal(pushed, 1);
    assert.equal(i1.counters.get('route.push-for-dead-instance'), dead + 1);
    assert.deepEqual(sentBy.filter((x) => x.to === endpointKey(dEp)).map((x) => x.instance), ['i-1']);
    await d.client.keepalive();
    assert.equal((await store.getRegistration(d.id))?.nms, 'i-1', 'the keepalive claimed the node');
    assert.equal(i1.counters.get('keepalive.claimed'), 1);
  });

  test('malformed, foreign and misdirected instance messages change nothing', async () => {
    const i2 = nms.get('i-2')!;
    const bad = i2.counters.get('instance.bad-message');
    const beta = (await store.getNodeByName('beta'))!;
    const alpha = (await store.getNodeByName('alpha'))!;
    sentBy.length = 0;
    await store.publish('not json');
    await store.publish(JSON.stringify({ t: 'push', to: 'i-2', from: 'i-1', node: beta.id, body: Buffer.from('garbage').toString('base64') }));
    await store.publish(JSON.stringify({ t: 'push', to: 'i-2', from: 'i-1', node: -1, body: '' }));
    await store.publish(JSON.stringify({ t: 'confirm', to: 'i-1', node: alpha.id, path: '12345', ok: true }));
    await store.publish(JSON.stringify({ t: 'push', to: 'i-9', from: 'i-1', node: beta.id, body: '' }));
    await until(() => i2.counters.get('instance.bad-message') >= bad + 3);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(i2.counters.get('instance.bad-message'), bad + 3);
    assert.equal(sentBy.length, 0, 'nothing was sent to any node');
  });
});

describe('live instances', () => {
  test('an instance id follows its endpoints (a restart keeps it); without them it is random', () => {
    const where = JSON.stringify({ advertise: ['198.18.0.10'], as: 4501, nms: 4502 });
    assert.equal(newInstanceId(where), newInstanceId(where));
    assert.notEqual(newInstanceId(where), newInstanceId(JSON.stringify({ advertise: ['198.18.0.11'], as: 4501, nms: 4502 })));
    assert.notEqual(newInstanceId(), newInstanceId());
    assert.match(newInstanceId(where), /^i-[0-9a-f]{12}$/);
  });

  test('heartbeat rows: own endpoints first, then live others; a stopped or silent instance drops out', async () => {
    const store = await openStore(':memory:');
    try {
      let now = 1_000_000;
      const mk = (id: string, addr: string) => new InstanceRegistry(id, { as: [{ address: addr, port: 4501 }], nms: [{ address: addr, port: 4502 }], trs: [] }, { store, logger: silentLogger, now: () => now });
      const r1 = mk('i-1', '198.18.0.10');
      const r2 = mk('i-2', '198.18.0.20');
      const r3 = mk('i-3', '198.18.0.30');
      await Promise.all([r1.start(), r2.start(), r3.start()]);
      const own = [{ address: '198.18.0.30', port: 4502 }];
      assert.deepEqual((await liveEndpoints(store, 'nms', own, now)).map((e) => e.address), ['198.18.0.30', '198.18.0.10', '198.18.0.20']);
      await r1.stop();
      assert.deepEqual((await liveEndpoints(store, 'as', [], now)).map((e) => e.address), ['198.18.0.20', '198.18.0.30']);
      // No heartbeat for longer than INSTANCE_LIVE_MS: dead (kill -9 leaves its row behind).
      now += 60_000;
      assert.deepEqual(await liveEndpoints(store, 'nms', [], now), []);
      await r2.stop();
      await r3.stop();
    } finally {
      await store.close();
    }
  });
});

describe('NMS while the store is unreachable', () => {
  test('known nodes keep alive from memory; anything else is refused; the store coming back resumes saving', async () => {
    const real = await openStore(':memory:');
    let down = false;
    // Every store call fails while `down`, as PostgreSQL does when unreachable.
    const store = new Proxy(real, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => (down ? Promise.reject(new StoreError('ERR_STORE_UNAVAILABLE', 'database unreachable')) : (v as (...a: unknown[]) => unknown).apply(target, args));
      },
    });
    try {
      const service = new NmsService({ domain: 'cyphonic.internal', instanceId: 'i-1' }, { store, logger: silentLogger });
      const n = await real.createNode({ name: 'alpha', kind: 'node' }, POOLS);
      const key = randomBytes(32);
      await real.putCommonKey({ nodeId: n.id, key, expiresAt: Date.now() + 60_000, createdAt: Date.now() });
      const client = (from: Endpoint): NmsClient => {
        const c: NmsClient = new NmsClient({ nodeId: n.id, commonKey: key, nms: NMS1, retransmitMs: [100, 100] }, {
          send: (msg) => void service.handle(msg, from).then((r) => r && c.handleDatagram(r)),
        });
        return c;
      };
      const here = { address: '198.18.0.11', port: 30000 };
      const c = client(here);
      await c.register([here], false);
      down = true;
      await c.keepalive();
      await c.keepalive();
      assert.equal(service.counters.get('keepalive.store-down'), 2);
      // Registering needs the store; so does a keepalive from an address this NMS has not seen the node at.
      await assert.rejects(c.register([here], true), { code: 'ERR_TIMEOUT' });
      const moved = client({ address: '198.18.0.99', port: 30000 });
      await assert.rejects(moved.keepalive(), { code: 'ERR_TIMEOUT' });
      assert.equal(service.counters.get('keepalive.store-down'), 2);
      down = false;
      const before = (await real.getRegistration(n.id))!.lastSeen;
      await new Promise((r) => setTimeout(r, 5));
      await c.keepalive();
      assert.ok((await real.getRegistration(n.id))!.lastSeen > before, 'liveness saved again');
      service.close();
    } finally {
      await real.close();
    }
  });
});
