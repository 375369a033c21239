// Scenario tests of the node↔NMS channel in one process: sealed registration, NAT detection, lost replies,
// replays, wrong keys, expired Common Keys; and a whole cloud + node daemon on loopback (enroll, login, relogin).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openStore } from '../../../src/store/index.js';
import type { Store } from '../../../src/store/types.js';
import { NmsService } from '../../../src/cloud/nms/service.js';
import { NmsClient } from '../../../src/node/signaling.js';
import { Status } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { createLogger, silentLogger } from '../../../src/util/log.js';
import { RequestError } from '../../../src/util/errors.js';
import { createEnrollment, initCloud, startCloud } from '../../../src/cloud/cloud.js';
import { NodeDaemon } from '../../../src/node/daemon.js';
import { loadCloudConfig, saveCloudConfig } from '../../../src/config/cloud.js';

const POOLS = { v4: '100.64.0.0/10', v6: 'fd00:1:2::/48' };
const NMS_EP: Endpoint = { address: '198.18.0.10', port: 4502 };

/** Wires an NmsClient straight into an NmsService, with a hook to drop or capture datagrams. */
function wire(service: NmsService, from: Endpoint, opts: { dropFirst?: number } = {}) {
  const sent: Buffer[] = [];
  let toDrop = opts.dropFirst ?? 0;
  let client!: NmsClient;
  const socket = {
    send(msg: Buffer) {
      sent.push(Buffer.from(msg));
      if (toDrop > 0) {
        toDrop--;
        return;
      }
      void service.handle(msg, from).then((reply) => reply && client.handleDatagram(reply));
    },
  };
  return {
    sent,
    make(nodeId: number, key: Buffer) {
      client = new NmsClient({ nodeId, commonKey: key, nms: NMS_EP, retransmitMs: [100, 100, 100] }, socket);
      return client;
    },
  };
}

describe('NMS service and client', () => {
  let store: Store;
  let service: NmsService;
  let nodeId: number;
  let key: Buffer;
  const from: Endpoint = { address: '198.18.0.20', port: 30000 };

  before(async () => {
    store = await openStore(':memory:');
    service = new NmsService({ domain: 'cyphonic.internal' }, { store, logger: silentLogger });
    const n = await store.createNode({ name: 'alpha', kind: 'node' }, POOLS);
    nodeId = n.id;
    key = randomBytes(32);
    await store.putCommonKey({ nodeId, key, expiresAt: Date.now() + 60_000, createdAt: Date.now() });
  });
  after(() => store.close());

  test('registration: reported address seen as-is means no NAT; virtual addresses come back', async () => {
    const client = wire(service, from).make(nodeId, key);
    const res = await client.register([from], false);
    assert.equal(res.nat, false);
    assert.equal(res.keepaliveSec, 20);
    const node = await store.getNodeById(nodeId);
    assert.equal(res.vip4, node!.vip4);
    assert.equal(res.fqdn, 'alpha.cyphonic.internal');
    const reg = await store.getRegistration(nodeId);
    assert.deepEqual(reg!.observed, from);
  });

  test('registration from a translated address is flagged as NAT with 5 s keepalives', async () => {
    const natted: Endpoint = { address: '198.18.0.30', port: 61000 };
    const client = wire(service, natted).make(nodeId, key);
    const res = await client.register([{ address: '10.1.0.10', port: 30000 }], true);
    assert.equal(res.nat, true);
    assert.equal(res.keepaliveSec, 5);
    assert.deepEqual(res.observed, natted);
    const ack = await client.keepalive();
    assert.deepEqual(ack.observed, natted);
  });

  test('a lost reply is retransmitted with a fresh sequence number', async () => {
    const w = wire(service, from, { dropFirst: 1 });
    const client = w.make(nodeId, key);
    await client.register([from], true);
    assert.equal(client.counters.get('retransmit'), 1);
    assert.equal(w.sent.length, 2);
    assert.notDeepEqual(w.sent[0]!.subarray(8, 16), w.sent[1]!.subarray(8, 16), 'sequence differs');
  });

  test('a replayed datagram is refused and counted', async () => {
    const w = wire(service, from);
    const client = w.make(nodeId, key);
    await client.keepalive();
    const before = service.counters.get('refused.replay');
    assert.equal(await service.handle(w.sent[0]!, from), null);
    assert.equal(service.counters.get('refused.replay'), before + 1);
  });

  test('a registration sealed with a wrong key gets no answer and is counted', async () => {
    const before = service.counters.get('refused.auth');
    const client = wire(service, from).make(nodeId, randomBytes(32));
    await assert.rejects(client.register([from], false), /ERR_TIMEOUT|no answer/);
    assert.equal(service.counters.get('refused.auth'), before + 3);
  });

  test('an expired Common Key sends the node back to the AS', async () => {
    const n = await store.createNode({ name: 'old', kind: 'node' }, POOLS);
    const k = randomBytes(32);
    await store.putCommonKey({ nodeId: n.id, key: k, expiresAt: Date.now() - 1, createdAt: Date.now() - 10 });
    const client = wire(service, from).make(n.id, k);
    await assert.rejects(client.register([from], false), (err: unknown) => err instanceof RequestError && err.status === Status.CommonKeyExpired);
  });

  test('random bytes never get an answer and never throw', async () => {
    for (let i = 0; i < 2000; i++) assert.equal(await service.handle(randomBytes(i % 120), from), null);
    assert.ok(service.counters.sum('refused.') >= 2000);
  });
});

describe('NMS registration log lines', () => {
  test('each registration is a debug line; an info `registrations` line sums them up, none when nothing happened', async () => {
    const store = await openStore(':memory:');
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({}, { level: 'info', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    const service = new NmsService({ domain: 'cyphonic.internal' }, { store, logger });
    try {
      const from: Endpoint = { address: '198.18.0.40', port: 30000 };
      const clients = [];
      for (const name of ['a', 'b']) {
        const n = await store.createNode({ name, kind: 'node' }, POOLS);
        const key = randomBytes(32);
        await store.putCommonKey({ nodeId: n.id, key, expiresAt: Date.now() + 60_000, createdAt: Date.now() });
        clients.push(wire(service, from).make(n.id, key));
      }
      service.logSummaries(3_600_000);
      service.logSummary();
      assert.deepEqual(lines, [], 'nothing happened: no line');
      await clients[0]!.register([from], false);
      await clients[1]!.register([from], false);
      await clients[0]!.register([from], true);
      assert.deepEqual(lines.filter((l) => l['msg'] === 'node registered'), [], 'not at info level');
      // A frame that does not open (refused.auth) counts as refused.
      void service.handle(Buffer.from(randomBytes(64)), from);
      await new Promise((r) => setImmediate(r));
      service.logSummary();
      assert.equal(lines.length, 1);
      assert.equal(lines[0]!['msg'], 'registrations');
      assert.equal(lines[0]!['level'], 'info');
      assert.deepEqual([lines[0]!['new'], lines[0]!['re'], lines[0]!['sessions']], [2, 1, 2]);
      assert.ok((lines[0]!['refused'] as number) >= 1);
      service.logSummary();
      assert.equal(lines.length, 1, 'nothing since: no second line');
      await clients[1]!.register([from], true);
      service.logSummary();
      assert.deepEqual([lines[1]!['new'], lines[1]!['re'], lines[1]!['refused']], [0, 1, 0]);
    } finally {
      service.close();
      await store.close();
    }
  });
});

describe('cloud + node daemon on loopback', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-unit-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('enroll, login, register; a short-lived Common Key is renewed by logging in again', async () => {
    const cloudDir = join(dir, 'cloud');
    await initCloud({ dir: cloudDir, advertise: ['127.0.0.1'] });
    const cfg = loadCloudConfig(join(cloudDir, 'cloud.json'));
    saveCloudConfig(join(cloudDir, 'cloud.json'), { ...cfg, commonKeyTtlSec: 2, keepaliveNatSec: 1, keepaliveOpenSec: 1 });
    const cloud = await startCloud({ dir: cloudDir, logger: silentLogger, host: '127.0.0.1', ports: { as: 0, nms: 0 } });
    const token = await createEnrollment(cloudDir, 'alpha');
    const node = new NodeDaemon({ stateDir: join(dir, 'alpha'), token, cloud: [`127.0.0.1:${cloud.ports.as}`], port: 0, reloginMarginMs: 500, tun: false }, silentLogger);
    try {
      await node.start();
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline && (cloud.as!.counters.get('login.ok') < 3 || !node.status().registered)) await new Promise((r) => setTimeout(r, 100));
      const st = node.status();
      assert.equal(st.registered, true);
      assert.equal(st.fqdn, 'alpha.cyphonic.internal');
      assert.ok(cloud.as!.counters.get('login.ok') >= 3, 'logged in again as the Common Key ran out');
      assert.equal(cloud.as!.counters.get('enroll.ok'), 1);
    } finally {
      await node.stop();
      await cloud.stop();
    }
  });
});
