// Node-side relay binding (src/node/relay.ts) against the real TRS service logic, in memory: binds answered with
// fresh acks, waiting for the other end, the liveness check failing once the TRS is gone, rebinding from a new
// source (NAT rebinding), and forged or unknown acks dropped and counted.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { sealFrame } from '../../../src/channel/sealed.js';
import { relayControlKeys } from '../../../src/cloud/trs/control.js';
import { TrsService } from '../../../src/cloud/trs/service.js';
import { MessageType } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { encodeBody } from '../../../src/protocol/messages.js';
import { RelayBinder } from '../../../src/node/relay.js';
import { silentLogger } from '../../../src/util/log.js';

const RELAY: Endpoint = { address: '198.18.0.10', port: 4503 };

/** A TRS whose datagrams go straight to the binders by destination; `down` stops it answering. */
function world() {
  const relayKey = randomBytes(32);
  const ends = new Map<string, RelayBinder>();
  const state = { down: false, delayMs: 0 };
  const trs = new TrsService({ id: 'trs-test', endpoints: [RELAY] }, {
    relayKey,
    logger: silentLogger,
    send: (d, port, address) => {
      if (state.down) return;
      const deliver = (): void => void ends.get(`${address}|${port}`)?.onDatagram(d, RELAY);
      if (state.delayMs) setTimeout(deliver, state.delayMs);
      else setImmediate(deliver);
    },
  });
  const clock = { offset: 0 };
  const binder = (nodeId: number, source: Endpoint): { b: RelayBinder; source: Endpoint } => {
    const ref = { source };
    const b = new RelayBinder({
      now: () => Date.now() + clock.offset,
      nodeId: () => nodeId,
      send: (d, to) => {
        assert.deepEqual(to, RELAY);
        if (!state.down) trs.handle(d, ref.source.address, ref.source.port);
      },
      logger: silentLogger,
    });
    ends.set(`${source.address}|${source.port}`, b);
    return { b, source: ref.source };
  };
  const allocate = (nodeA: number, nodeB: number): { pathId: bigint; tempKey: Buffer } => {
    const pathId = randomBytes(8).readBigUInt64BE() | 1n;
    const tempKey = randomBytes(32);
    const keys = relayControlKeys(relayKey, pathId, trs.id);
    const body = encodeBody(MessageType.RelayRequest, { pathId, nodeA, nodeB, tempKey, expiresAt: BigInt(Date.now() + 60_000) });
    trs.handle(sealFrame(keys.up, { type: MessageType.RelayRequest, txid: 1, seq: BigInt(Date.now()) << 16n, id: pathId }, body), '198.18.0.10', 40000);
    return { pathId, tempKey };
  };
  return { trs, state, binder, allocate, ends, clock };
}

test('both ends bind; the second sees the first bound; check() is true while the TRS answers and false once it is gone', async () => {
  const w = world();
  const { pathId, tempKey } = w.allocate(7, 9);
  const a = w.binder(7, { address: '198.51.100.7', port: 30000 }).b;
  const b = w.binder(9, { address: '203.0.113.9', port: 41000 }).b;
  const ra = await a.bind(pathId, tempKey, RELAY);
  assert.deepEqual(ra, { observed: { address: '198.51.100.7', port: 30000 }, peerBound: false });
  const rb = await b.bind(pathId, tempKey, RELAY, { waitPeer: true });
  assert.equal(rb?.peerBound, true);
  assert.equal(w.trs.status().bound, 1);
  assert.equal(await a.check(pathId), true);
  w.state.down = true;
  const t0 = Date.now();
  assert.equal(await a.check(pathId, 600), false);
  assert.ok(Date.now() - t0 < 1500);
  assert.equal(a.counters.toJSON()['check.failed'], 1);
  a.close();
  b.close();
  w.trs.stop();
});

test('waitPeer keeps binding until the other end is bound, and gives up with the last ack at the deadline', async () => {
  const w = world();
  const { pathId, tempKey } = w.allocate(7, 9);
  const a = w.binder(7, { address: '198.51.100.7', port: 30000 }).b;
  const t0 = Date.now();
  const r = await a.bind(pathId, tempKey, RELAY, { waitPeer: true, deadlineMs: 700 });
  assert.equal(r?.peerBound, false, 'acked, but nobody else bound');
  assert.ok(Date.now() - t0 >= 600, 'kept trying until the deadline');
  assert.ok((a.counters.toJSON()['ack.ok'] ?? 0) >= 2);
  a.close();
  w.trs.stop();
});

test('a rebind from a new source (NAT rebinding) moves the end at the TRS', async () => {
  const w = world();
  const { pathId, tempKey } = w.allocate(7, 9);
  const { b: a, source } = w.binder(7, { address: '198.51.100.7', port: 30000 });
  await a.bind(pathId, tempKey, RELAY);
  // The NAT picked a new public port: the binder's datagrams now arrive from there (acks are routed back to it).
  w.ends.set('198.51.100.7|31111', a);
  source.port = 31111;
  a.rebindAll();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(w.trs.counters.toJSON()['bind.moved'], 1);
  a.close();
  w.trs.stop();
});

test('acks that are forged, for unknown paths, or not RelayBindAcks are dropped or ignored', async () => {
  const w = world();
  const { pathId, tempKey } = w.allocate(7, 9);
  const a = w.binder(7, { address: '198.51.100.7', port: 30000 }).b;
  await a.bind(pathId, tempKey, RELAY);
  const forged = Buffer.alloc(60);
  forged[0] = 1;
  forged[1] = MessageType.RelayBindAck;
  forged.writeBigUInt64BE(pathId, 16);
  assert.equal(a.onDatagram(forged, RELAY), true);
  const unknown = Buffer.from(forged);
  unknown.writeBigUInt64BE(pathId ^ 2n, 16);
  assert.equal(a.onDatagram(unknown, RELAY), true);
  assert.equal(a.onDatagram(Buffer.from([1, MessageType.RelayBindAck, 0]), RELAY), true);
  assert.equal(a.onDatagram(Buffer.from([1, MessageType.Capsule, 0, 0]), RELAY), false, 'not ours: left to the others');
  const c = a.counters.toJSON();
  assert.equal(c['ack.refused'], 1);
  assert.equal(c['ack.unknown-path'], 1);
  assert.equal(c['ack.malformed'], 1);
  a.close();
  w.trs.stop();
});

test('a path whose TRS stopped acking for long is forgotten at the next refresh', async () => {
  const w = world();
  const { pathId, tempKey } = w.allocate(7, 9);
  const a = w.binder(7, { address: '198.51.100.7', port: 30000 }).b;
  await a.bind(pathId, tempKey, RELAY);
  assert.deepEqual(a.relayOf(pathId), RELAY);
  w.state.down = true;
  a.rebindAll(); // unanswered, but the last ack is recent: kept
  await new Promise((r) => setTimeout(r, 1700));
  assert.deepEqual(a.relayOf(pathId), RELAY);
  w.clock.offset = 300_000; // five minutes later, still no ack
  a.rebindAll();
  await new Promise((r) => setTimeout(r, 1700));
  assert.equal(a.relayOf(pathId), null);
  assert.equal(a.counters.toJSON()['forgotten'], 1);
  a.close();
  w.trs.stop();
});

test('on a slow path (acks arrive 700 ms later, after several retransmissions) bind and check still succeed', async () => {
  const w = world();
  w.state.delayMs = 700; // a satellite hop: every ack comes back after the next two binds went out
  const { pathId, tempKey } = w.allocate(7, 9);
  const a = w.binder(7, { address: '198.51.100.7', port: 30000 }).b;
  const t0 = Date.now();
  const got = await a.bind(pathId, tempKey, RELAY);
  assert.ok(got, `bound (${JSON.stringify(a.counters.toJSON())})`);
  assert.ok(Date.now() - t0 >= 650, 'the ack of an earlier bind was taken');
  assert.equal(await a.check(pathId), true, 'check() takes a late ack within its 900 ms');
  assert.ok(a.counters.get('bind.retransmit') >= 2);
});

