// Scenario tests of the TRS over real UDP sockets on loopback (127.0.0.1 and ::1): allocation by a sealed RelayRequest,
// binds, forwarding both ways and across IPv4/IPv6, and every refusal (unknown path, third party, bad/replayed binds, floods).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { sealFrame } from '../../../src/channel/sealed.js';
import { RelayClient, RelayError, type RelayAllocation } from '../../../src/cloud/trs/client.js';
import { TrsService } from '../../../src/cloud/trs/service.js';
import { TrsTransport } from '../../../src/cloud/trs/transport.js';
import { HEADER_LEN, MessageType, Status } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { encodeFrame } from '../../../src/protocol/frame.js';
import { encodeBody } from '../../../src/protocol/messages.js';
import { silentLogger } from '../../../src/util/log.js';
import { RelayEnd } from '../../harness/relay-end.js';
import { prng } from '../../harness/prng.js';

const SEED = Number(process.env['CYPHONIC_SEED'] ?? 0x7e5);

interface Harness {
  service: TrsService;
  transport: TrsTransport;
  client: RelayClient;
  v4: Endpoint;
  v6: Endpoint;
  stop(): Promise<void>;
}

/** A TRS on [::] (dual-stack, ephemeral port) and an NMS-side RelayClient sharing its relay key. */
async function startTrs(opts: { maxPaths?: number; idleMs?: number; now?: () => number } = {}): Promise<Harness> {
  const relayKey = randomBytes(32);
  let transport: TrsTransport | null = null;
  const service = new TrsService(
    { id: `trs-${randomBytes(4).toString('hex')}`, maxPaths: opts.maxPaths, idleMs: opts.idleMs },
    { relayKey, logger: silentLogger, send: (d, p, a) => transport?.send(d, p, a), now: opts.now },
  );
  transport = new TrsTransport({ host: '::', port: 0 }, service, silentLogger);
  const { port } = await transport.start();
  const v4 = { address: '127.0.0.1', port };
  const v6 = { address: '::1', port };
  service.advertise([v4, v6]);
  const client = new RelayClient({ relayKey, host: '127.0.0.1', retransmitMs: [150, 300] });
  await client.start();
  const t = transport;
  return {
    service,
    transport: t,
    client,
    v4,
    v6,
    async stop() {
      await client.stop();
      await t.stop();
      service.stop();
    },
  };
}

let nextNode = 100;

type Allocated = RelayAllocation & { nodeA: number; nodeB: number };

async function allocate(h: Harness, over: { expiresAt?: number } = {}): Promise<Allocated> {
  const nodeA = nextNode++;
  const nodeB = nextNode++;
  const pathId = randomBytes(8).readBigUInt64BE() | 1n;
  const a = await h.client.request(
    { id: h.service.id, endpoints: h.service.advertised },
    { pathId, nodeA, nodeB, expiresAt: over.expiresAt ?? Date.now() + 60_000 },
    randomBytes(32),
  );
  return { ...a, nodeA, nodeB };
}

/** Allocates a path and opens its two ends on the given loopback addresses (not yet bound). */
async function pair(h: Harness, localA = '127.0.0.1', localB = '127.0.0.1'): Promise<{ alloc: Allocated; a: RelayEnd; b: RelayEnd }> {
  const alloc = await allocate(h);
  const relayFor = (local: string): Endpoint => (local.includes(':') ? h.v6 : h.v4);
  const a = await RelayEnd.open(localA, { nodeId: alloc.nodeA, pathId: alloc.pathId, tempKey: alloc.tempKey, relay: relayFor(localA) });
  const b = await RelayEnd.open(localB, { nodeId: alloc.nodeB, pathId: alloc.pathId, tempKey: alloc.tempKey, relay: relayFor(localB) });
  return { alloc, a, b };
}

/** Sends `n` capsules each way and checks every one arrives byte for byte. */
async function exchange(a: RelayEnd, b: RelayEnd, n = 5): Promise<void> {
  for (let i = 0; i < n; i++) {
    const ab = a.capsule(randomBytes(40 + i));
    a.send(ab);
    assert.deepEqual(await b.next((m) => m[1] === MessageType.Capsule), ab);
    const ba = b.capsule(randomBytes(60 + i));
    b.send(ba);
    assert.deepEqual(await a.next((m) => m[1] === MessageType.Capsule), ba);
  }
}

describe('TRS on loopback', () => {
  let h: Harness;
  const ends: RelayEnd[] = [];
  before(async () => {
    h = await startTrs();
  });
  after(async () => {
    for (const e of ends) await e.close();
    await h.stop();
  });
  const track = <T extends { a: RelayEnd; b: RelayEnd }>(p: T): T => {
    ends.push(p.a, p.b);
    return p;
  };

  test('allocation answers with the TRS endpoints; two ends bind and exchange capsules both ways, unchanged', async () => {
    const { alloc, a, b } = track(await pair(h));
    assert.deepEqual(alloc.relay, [h.v4, h.v6]);
    assert.equal(alloc.relayId, h.service.id);
    const ackA = await a.bind();
    assert.equal(ackA.peerBound, false);
    assert.deepEqual(ackA.observed, a.local);
    assert.equal(ackA.nodeId, alloc.nodeA);
    assert.ok(Math.abs(ackA.timestamp - Date.now()) < 5000);
    const ackB = await b.bind();
    assert.equal(ackB.peerBound, true);
    await exchange(a, b);
    // TunnelRequest / TunnelResponse go through the same way
    const tr = a.capsule(randomBytes(100), MessageType.TunnelRequest);
    a.send(tr);
    assert.deepEqual(await b.next(), tr);
    assert.ok(h.service.forwarded >= 11);
    assert.equal(h.service.status().bound >= 1, true);
  });

  test('an IPv4 end and an IPv6 end meet through one dual-stack TRS', async () => {
    const { a, b } = track(await pair(h, '127.0.0.1', '::1'));
    assert.deepEqual((await a.bind()).observed, a.local);
    const ackB = await b.bind();
    assert.deepEqual(ackB.observed, { address: '::1', port: b.local.port });
    assert.equal(ackB.peerBound, true);
    await exchange(a, b);
  });

  test('an unknown path id is dropped and counted, never answered', async () => {
    const { a } = track(await pair(h));
    await a.bind();
    const before = h.service.dropped.unknownPath;
    const stray = encodeFrame({ type: MessageType.Capsule, status: 0, txid: 0, seq: 1n, id: 0x1234n }, randomBytes(32));
    a.send(stray);
    a.send(encodeFrame({ type: MessageType.RelayBind, status: 0, txid: 0, seq: 1n, id: 0x1234n }, randomBytes(40)));
    await a.silentFor();
    assert.equal(h.service.dropped.unknownPath, before + 2);
  });

  test('a third address sending on a valid path id is dropped as notAnEnd; a capsule to an unbound end as unbound', async () => {
    const { alloc, a, b } = track(await pair(h));
    await a.bind();
    const unbound = h.service.dropped.unbound;
    a.send(a.capsule(randomBytes(20)));
    await b.silentFor(100);
    assert.equal(h.service.dropped.unbound, unbound + 1);
    await b.bind();
    const intruder = await RelayEnd.open('127.0.0.1', { nodeId: 999, pathId: alloc.pathId, tempKey: randomBytes(32), relay: h.v4 });
    ends.push(intruder);
    const before = h.service.dropped.notAnEnd;
    intruder.send(intruder.capsule(randomBytes(20)));
    intruder.send(intruder.capsule(randomBytes(20), MessageType.TunnelResponse));
    await Promise.all([a.silentFor(), b.silentFor(), intruder.silentFor()]);
    assert.equal(h.service.dropped.notAnEnd, before + 2);
  });

  test('binds with a wrong temp key, a foreign node id, a stale or future timestamp, or replayed are refused, unanswered, counted', async () => {
    const { alloc, a } = track(await pair(h));
    const d = { ...h.service.dropped };
    a.send(a.bindFrame({ tempKey: randomBytes(32) }));
    a.send(a.bindFrame({ nodeId: 424242 }));
    a.send(a.bindFrame({ now: Date.now() - 121_000 }));
    a.send(a.bindFrame({ now: Date.now() + 121_000 }));
    // Sealed with end A's own key but naming another node in the body.
    const forged = sealFrame(a.keys.up, { type: MessageType.RelayBind, txid: 1, seq: a.seq.next(), id: alloc.pathId }, encodeBody(MessageType.RelayBind, { nodeId: alloc.nodeB, timestamp: BigInt(Date.now()) }));
    a.send(forged);
    // A status other than 0 is not a bind.
    const withStatus = sealFrame(a.keys.up, { type: MessageType.RelayBind, status: Status.BadRequest, txid: 1, seq: a.seq.next(), id: alloc.pathId }, encodeBody(MessageType.RelayBind, { nodeId: alloc.nodeA, timestamp: BigInt(Date.now()) }));
    a.send(withStatus);
    await a.silentFor();
    assert.equal(h.service.dropped.badBind, d.badBind + 3);
    assert.equal(h.service.dropped.staleBind, d.staleBind + 2);
    assert.equal(h.service.dropped.foreignNode, d.foreignNode + 1);
    // A replay of an accepted bind, and an older bind arriving late, are refused.
    const older = a.bindFrame();
    const good = a.bindFrame();
    a.send(good);
    await a.next((m) => m[1] === MessageType.RelayBindAck);
    a.send(good);
    a.send(older);
    await a.silentFor();
    assert.equal(h.service.dropped.replayedBind, d.replayedBind + 2);
    // A is still bound where its last good bind came from.
    const b = await RelayEnd.open('127.0.0.1', { nodeId: alloc.nodeB, pathId: alloc.pathId, tempKey: alloc.tempKey, relay: h.v4 });
    ends.push(b);
    assert.equal((await b.bind()).peerBound, true);
    await exchange(a, b, 1);
  });

  test('a rebind from a new port moves the end (NAT rebinding, mobility); the old port becomes a stranger', async () => {
    const { alloc, a, b } = track(await pair(h));
    await a.bind();
    await b.bind();
    await exchange(a, b, 1);
    const moved = await RelayEnd.open('::1', { nodeId: alloc.nodeA, pathId: alloc.pathId, tempKey: alloc.tempKey, relay: h.v6 });
    ends.push(moved);
    const before = h.service.counters.get('bind.moved');
    const ack = await moved.bind();
    assert.equal(ack.peerBound, true);
    assert.equal(h.service.counters.get('bind.moved'), before + 1);
    await exchange(moved, b, 2);
    const notAnEnd = h.service.dropped.notAnEnd;
    a.send(a.capsule(randomBytes(10)));
    await b.silentFor();
    assert.equal(h.service.dropped.notAnEnd, notAnEnd + 1);
    // the old socket's binds keep their own sequence numbers: its next fresh bind moves the end back
    await a.bind();
    await exchange(a, b, 1);
  });

  test('a capsule altered in flight is forwarded byte for byte (the receiving node, not the TRS, authenticates it)', async () => {
    const { a, b } = track(await pair(h));
    await a.bind();
    await b.bind();
    const c = a.capsule(randomBytes(64));
    c[HEADER_LEN + 5] = c[HEADER_LEN + 5]! ^ 0xff;
    c[c.length - 1] = c[c.length - 1]! ^ 0x01;
    a.send(c);
    assert.deepEqual(await b.next(), c);
  });

  test('a flood of 5000 junk datagrams while a path is in use leaves the path working', async () => {
    const { alloc, a, b } = track(await pair(h));
    await a.bind();
    await b.bind();
    const attacker = await RelayEnd.open('127.0.0.1', { nodeId: 7, pathId: alloc.pathId, tempKey: randomBytes(32), relay: h.v4 });
    ends.push(attacker);
    const rnd = prng(SEED);
    const junk = (i: number): Buffer => {
      switch (i % 5) {
        case 0: // random bytes
          return randomBytes(Math.floor(rnd() * 200));
        case 1: // well-formed capsule on an unknown path
          return encodeFrame({ type: MessageType.Capsule, status: 0, txid: 0, seq: BigInt(i), id: BigInt(i + 1) }, randomBytes(64));
        case 2: // our path, from a stranger
          return attacker.capsule(randomBytes(64));
        case 3: // forged binds on our path (cost AES-GCM: rate-limited)
          return attacker.bindFrame({ nodeId: alloc.nodeA });
        default: // forged RelayRequests
          return encodeFrame({ type: MessageType.RelayRequest, status: 0, txid: i, seq: BigInt(Date.now()) << 16n, id: BigInt(i + 1) }, randomBytes(80));
      }
    };
    const dropsBefore = Object.values(h.service.dropped).reduce((x, y) => x + y, 0);
    let delivered = 0;
    const sent: Buffer[] = [];
    for (let i = 0; i < 5000; i++) {
      attacker.send(junk(i));
      if (i % 100 === 0) {
        const c = a.capsule(Buffer.from(`during flood ${i}`));
        sent.push(c);
        a.send(c);
        await new Promise((r) => setImmediate(r));
      }
    }
    const deadline = Date.now() + 3000;
    while (delivered < sent.length && Date.now() < deadline) {
      try {
        const m = await b.next(() => true, deadline - Date.now());
        assert.ok(sent.some((s) => s.equals(m)), 'only our capsules reach B');
        delivered++;
      } catch {
        break;
      }
    }
    // Loopback can shed datagrams when the burst overflows a socket buffer; the relay itself drops none of ours.
    assert.ok(delivered >= sent.length * 0.9, `${delivered}/${sent.length} capsules got through during the flood`);
    await exchange(a, b, 10);
    const dropsAfter = Object.values(h.service.dropped).reduce((x, y) => x + y, 0);
    assert.ok(dropsAfter - dropsBefore >= 4000, `junk counted: ${dropsAfter - dropsBefore}`);
    await attacker.silentFor(200);
    // the forged binds burned this path's bind budget, not everyone's: another path binds at once
    assert.ok(h.service.dropped.rateLimited > 900, `rate-limited binds: ${h.service.dropped.rateLimited}`);
    const other = track(await pair(h));
    await other.a.bind();
    await other.b.bind();
    await exchange(other.a, other.b, 1);
  });
});

describe('TRS allocation', () => {
  test('forged RelayRequests never spend the budget the NMS\'s real requests need (authenticated first, budget per source)', async () => {
    // The clock stands still, so no budget refills during the test: on the old order (budget before authentication)
    // 10 000 forged frames emptied the one shared budget and every real request after them was dropped.
    const frozen = Date.now();
    const h = await startTrs({ now: () => frozen });
    try {
      for (let i = 0; i < 10_000; i++) {
        const forged = encodeFrame({ type: MessageType.RelayRequest, status: 0, txid: i, seq: (BigInt(frozen) << 16n) + BigInt(i), id: BigInt(i + 1) }, randomBytes(80));
        h.service.handle(forged, '::ffff:198.51.100.7', 40000 + (i % 1000));
      }
      assert.equal(h.service.dropped.badControl, 10_000, 'every forged request refused by authentication');
      assert.equal(h.service.dropped.rateLimited, 0);
      const alloc = await allocate(h);
      assert.ok(alloc.tempKey.length === 32, 'the real request was served');
    } finally {
      await h.stop();
    }
  });

  test('a retransmitted RelayRequest gets the same answer; a conflicting one and one over capacity are refused', async () => {
    const h = await startTrs({ maxPaths: 1 });
    try {
      const alloc = await allocate(h);
      const server = { id: h.service.id, endpoints: h.service.advertised };
      const req = { pathId: alloc.pathId, nodeA: alloc.nodeA, nodeB: alloc.nodeB, expiresAt: Date.now() + 120_000 };
      const again = await h.client.request(server, req, alloc.tempKey);
      assert.deepEqual(again.relay, alloc.relay);
      assert.equal(h.service.counters.get('relay.refreshed'), 1);
      assert.equal(h.service.load, 1);
      await assert.rejects(h.client.request(server, req, randomBytes(32)), (e: unknown) => e instanceof RelayError && e.code === 'ERR_RELAY_REFUSED' && e.status === Status.BadRequest);
      await assert.rejects(allocate(h), (e: unknown) => e instanceof RelayError && e.code === 'ERR_RELAY_REFUSED' && e.status === Status.NoRoute);
      await assert.rejects(allocate(h, { expiresAt: Date.now() - 1 }), (e: unknown) => e instanceof RelayError && e.status === Status.BadRequest);
    } finally {
      await h.stop();
    }
  });

  test('a RelayRequest under another relay key, or meant for another TRS, gets no answer', async () => {
    const h = await startTrs();
    const stranger = new RelayClient({ relayKey: randomBytes(32), host: '127.0.0.1', retransmitMs: [100, 100] });
    await stranger.start();
    try {
      const req = { pathId: 77n, nodeA: 1, nodeB: 2, expiresAt: Date.now() + 60_000 };
      await assert.rejects(stranger.request({ id: h.service.id, endpoints: [h.v4] }, req, randomBytes(32)), { code: 'ERR_RELAY_TIMEOUT' });
      await assert.rejects(h.client.request({ id: 'trs-someone-else', endpoints: [h.v4] }, req, randomBytes(32)), { code: 'ERR_RELAY_TIMEOUT' });
      assert.equal(h.service.dropped.badControl, 4);
      assert.equal(h.service.load, 0);
    } finally {
      await stranger.stop();
      await h.stop();
    }
  });

  test('paths expire at their deadline and when idle', async () => {
    let now = Date.now();
    const h = await startTrs({ idleMs: 10_000, now: () => now });
    const ends: RelayEnd[] = [];
    try {
      await allocate(h, { expiresAt: now + 5_000 });
      const { a, b } = await pair(h);
      ends.push(a, b);
      await a.bind();
      await b.bind();
      assert.equal(h.service.load, 2);
      now += 6_000;
      h.service.sweep();
      assert.equal(h.service.load, 1, 'the short path is gone');
      assert.equal(h.service.counters.get('paths.expired.deadline'), 1);
      await exchange(a, b, 1); // traffic keeps the other one alive
      now += 9_000;
      h.service.sweep();
      assert.equal(h.service.load, 1);
      now += 10_001;
      h.service.sweep();
      assert.equal(h.service.load, 0);
      assert.equal(h.service.counters.get('paths.expired.idle'), 1);
      const before = h.service.dropped.unknownPath;
      a.send(a.capsule(randomBytes(8)));
      await b.silentFor();
      assert.equal(h.service.dropped.unknownPath, before + 1);
    } finally {
      for (const e of ends) await e.close();
      await h.stop();
    }
  });
});
