// The node's failover decision toward a silent NMS (nmsSchedule, src/node/signaling.ts, used by the lifecycle's
// register/keepalive loop): with several NMS endpoints a dead one is given up after a few seconds so the node can
// register at another within the cloud's 10 s failover bound; over a WAN path (600 ms round trip, lost datagrams) a
// live NMS is never abandoned for one lost keepalive or reply; with a single NMS the node stays patient through
// several lost round trips. A real NmsClient against a real NmsService (in-memory store) over a simulated path.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { NmsService } from '../../../src/cloud/nms/service.js';
import { KEEPALIVE_NAT_SEC } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { openStore } from '../../../src/store/index.js';
import type { Store } from '../../../src/store/types.js';
import { FAILOVER_RETRANSMIT_MS, NmsClient, nmsSchedule, RETRANSMIT_MS } from '../../../src/node/signaling.js';
import { CyphonicError } from '../../../src/util/errors.js';
import { silentLogger } from '../../../src/util/log.js';

const POOLS = { v4: '100.64.0.0/10', v6: 'fd00:1:2::/48' };
const NMS_EP: Endpoint = { address: '198.18.0.10', port: 4502 };
const WAN_RTT_MS = 600;
const sum = (a: readonly number[]) => a.reduce((x, y) => x + y, 0);

/**
 * A path to the NMS with `WAN_RTT_MS` round trip: `lose(dir, n)` drops the n-th datagram (0-based) in that direction;
 * `dead` drops everything (the instance was killed).
 */
function wanPath(service: NmsService, from: Endpoint, lose: (dir: 'up' | 'down', n: number) => boolean) {
  const sent = { up: 0, down: 0 };
  let client!: NmsClient;
  const socket = {
    send(msg: Buffer) {
      const n = sent.up++;
      if (lose('up', n)) return;
      setTimeout(() => {
        void service.handle(Buffer.from(msg), from).then((reply) => {
          if (!reply || lose('down', sent.down++)) return;
          setTimeout(() => client.handleDatagram(reply), WAN_RTT_MS / 2);
        });
      }, WAN_RTT_MS / 2);
    },
  };
  return {
    sent,
    make(nodeId: number, key: Buffer) {
      client = new NmsClient({ nodeId, commonKey: key, nms: NMS_EP }, socket);
      return client;
    },
  };
}

describe('NMS failover decision', { concurrency: true }, () => {
  let store: Store;
  let service: NmsService;
  const nodes: { id: number; key: Buffer }[] = [];
  let port = 30000;

  before(async () => {
    store = await openStore(':memory:');
    service = new NmsService({ domain: 'cyphonic.internal' }, { store, logger: silentLogger });
    for (let i = 0; i < 5; i++) {
      const n = await store.createNode({ name: `n${i}`, kind: 'node' }, POOLS);
      const key = randomBytes(32);
      await store.putCommonKey({ nodeId: n.id, key, expiresAt: Date.now() + 120_000, createdAt: Date.now() });
      nodes.push({ id: n.id, key });
    }
  });
  after(() => store.close());

  /** A registered node's client on a path with the given losses (the registration itself crosses a clean path). */
  async function registered(i: number, lose: (dir: 'up' | 'down', n: number) => boolean) {
    const from: Endpoint = { address: '198.18.0.20', port: port++ };
    let losing = false;
    const path = wanPath(service, from, (dir, n) => losing && lose(dir, n));
    const client = path.make(nodes[i]!.id, nodes[i]!.key);
    await client.register([from], false, undefined, [3000]); // no retransmission whose reply could arrive later
    path.sent.up = 0;
    path.sent.down = 0;
    losing = true;
    return { client, path };
  }

  test('the schedules: quick with several NMS, patient with one; each quick wait outlasts a WAN round trip', () => {
    assert.equal(nmsSchedule(1), RETRANSMIT_MS);
    assert.equal(nmsSchedule(0), RETRANSMIT_MS);
    assert.equal(nmsSchedule(2), FAILOVER_RETRANSMIT_MS);
    assert.equal(nmsSchedule(3), FAILOVER_RETRANSMIT_MS);
    assert.deepEqual(nmsSchedule(1, [100, 200]), [100, 200], 'an explicit patient schedule is kept for a single NMS');
    assert.ok(FAILOVER_RETRANSMIT_MS.length >= 3, 'at least three transmissions: one loss either way is retransmitted');
    for (const w of FAILOVER_RETRANSMIT_MS) assert.ok(w > WAN_RTT_MS, `wait ${w} ms outlasts the ${WAN_RTT_MS} ms round trip`);
    assert.ok(RETRANSMIT_MS.length > FAILOVER_RETRANSMIT_MS.length, 'one NMS: more transmissions before giving up');
    assert.ok(sum(FAILOVER_RETRANSMIT_MS) < sum(RETRANSMIT_MS));
    // A killed instance is noticed at the next keepalive (at most KEEPALIVE_NAT_SEC later, the shortest interval a
    // cloud asks for), given up after the schedule, and the next NMS is asked at once: 1.5 s left for the
    // registration there within 10 s.
    assert.ok(KEEPALIVE_NAT_SEC * 1000 + sum(FAILOVER_RETRANSMIT_MS) <= 8500);
  });

  test('several NMS, a live one over a WAN path that loses the keepalive: answered, not abandoned', async () => {
    const { client, path } = await registered(0, (dir, n) => dir === 'up' && n === 0);
    const ack = await client.keepalive(undefined, nmsSchedule(2));
    assert.ok(ack.observed);
    assert.equal(path.sent.up, 2, 'one retransmission');
  });

  test('several NMS, a live one over a WAN path that loses the reply: answered, not abandoned', async () => {
    const { client } = await registered(1, (dir, n) => dir === 'down' && n === 0);
    const ack = await client.keepalive(undefined, nmsSchedule(2));
    assert.ok(ack.observed);
  });

  test('several NMS, a dead one: given up after the quick schedule (three transmissions)', async () => {
    const { client, path } = await registered(2, () => true);
    const t0 = Date.now();
    await assert.rejects(client.keepalive(undefined, nmsSchedule(2)), (e) => e instanceof CyphonicError && e.code === 'ERR_TIMEOUT');
    assert.equal(path.sent.up, FAILOVER_RETRANSMIT_MS.length);
    assert.ok(Date.now() - t0 < sum(RETRANSMIT_MS), 'gave up before the single-NMS schedule would have');
  });

  test('one NMS over a WAN path that loses three round trips in a row: still patient, answered', async () => {
    const { client, path } = await registered(3, (dir, n) => dir === 'up' && n < 3);
    // The quick schedule would have given up here (three transmissions, all lost); with one NMS the node waits on.
    assert.equal(nmsSchedule(1).length > 3, true);
    const ack = await client.keepalive(undefined, nmsSchedule(1));
    assert.ok(ack.observed);
    assert.equal(path.sent.up, 4);
  });
});
