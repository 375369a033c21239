// Mobility in one process: two MobilityManagers over a fake wire with fake peer directories. An authenticated
// EndpointUpdate moves the peer's endpoint and is acknowledged; forged, replayed, foreign and malformed ones
// change nothing and are counted; no ack (or no usable family) leads to a new route selection.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { SessionKeys } from '../../../src/crypto/handshake.js';
import { MessageType } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { chooseEndpoint, MobilityManager, type MobilityPeer, type PeerDirectory } from '../../../src/node/mobility.js';
import { silentLogger } from '../../../src/util/log.js';

const PATH = 0x1234_5678_9abcn;

class FakeDirectory implements PeerDirectory {
  endpointSets: { endpoint: Endpoint; candidates?: Endpoint[] }[] = [];
  reselected: string[] = [];
  constructor(public peer: MobilityPeer) {}
  establishedPeers(): MobilityPeer[] {
    return [this.peer];
  }
  peerOfPath(pathId: bigint): MobilityPeer | null {
    return pathId === this.peer.pathId ? this.peer : null;
  }
  setEndpoint(_pathId: bigint, endpoint: Endpoint, candidates?: Endpoint[]): void {
    this.endpointSets.push({ endpoint, ...(candidates ? { candidates } : {}) });
    this.peer.endpoint = endpoint;
    if (candidates) this.peer.candidates = candidates;
  }
  reselect(nodeId: number, reason: string): void {
    this.reselected.push(`${nodeId}:${reason}`);
  }
}

interface Wire {
  sent: { from: 'a' | 'b'; msg: Buffer; to: Endpoint }[];
}

function pair(opts: { deliver?: boolean; retransmitMs?: number[]; oneWayMs?: number } = {}) {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  const keys = (send: Buffer, recv: Buffer, peerNodeId: number, initiator: boolean): SessionKeys => ({ send, recv, initiator, pathId: PATH, peerNodeId, peerCertDer: Buffer.alloc(0), establishedAt: Date.now() });
  const aAddr: Endpoint = { address: '198.18.0.11', port: 30000 };
  const bAddr: Endpoint = { address: '198.18.0.12', port: 30000 };
  const dirA = new FakeDirectory({ nodeId: 42, name: 'b', pathId: PATH, keys: [keys(k1, k2, 42, true)], endpoint: bAddr, candidates: [bAddr, { address: '2001:db8::12', port: 30000 }] });
  const dirB = new FakeDirectory({ nodeId: 7, name: 'a', pathId: PATH, keys: [keys(k2, k1, 7, false)], endpoint: aAddr, candidates: [aAddr] });
  const wire: Wire = { sent: [] };
  const state = { aAt: aAddr as Endpoint };
  const retransmitMs = opts.retransmitMs ?? [20, 20, 20];
  /** The wire: at once, or after the one-way delay of a long path. */
  const later = (fn: () => void): void => (opts.oneWayMs ? void setTimeout(fn, opts.oneWayMs) : queueMicrotask(fn));
  const box: { a?: MobilityManager; b?: MobilityManager } = {};
  const a = new MobilityManager({
    nodeId: () => 7,
    peers: dirA,
    send: (msg, to) => {
      wire.sent.push({ from: 'a', msg, to });
      const at = state.aAt;
      if (opts.deliver !== false) later(() => box.b!.onDatagram(msg, at));
    },
    localEndpoints: () => [state.aAt],
    logger: silentLogger,
    retransmitMs,
  });
  const b = new MobilityManager({
    nodeId: () => 42,
    peers: dirB,
    send: (msg, to) => {
      wire.sent.push({ from: 'b', msg, to });
      later(() => a.onDatagram(msg, bAddr));
    },
    localEndpoints: () => [bAddr],
    logger: silentLogger,
    retransmitMs,
  });
  box.a = a;
  box.b = b;
  return { a, b, dirA, dirB, wire, state, bAddr };
}

const settle = (ms = 30): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('MobilityManager', () => {
  test('a move: the peer authenticates the update, sends to the new source from then on, and acknowledges once', async () => {
    const { a, b, dirB, dirA, wire, state } = pair();
    state.aAt = { address: '198.18.0.40', port: 30000 };
    a.moved({ v4: true, v6: false });
    await settle(80);
    assert.deepEqual(dirB.peer.endpoint, state.aAt, 'b sends to a\'s new address');
    assert.equal(b.counters.get('update.accepted'), 1);
    assert.equal(a.counters.get('update.acked'), 1);
    assert.equal(a.counters.get('update.retransmit'), 0, 'acked at the first try');
    assert.deepEqual(dirA.reselected, [], 'no route selection needed');
    assert.equal(wire.sent.filter((s) => s.from === 'a').length, 1);
    assert.ok(a.lastMove?.firstAckMs !== null && a.lastMove!.firstAckMs >= 0);
    a.close();
    b.close();
  });

  test('replayed, forged, foreign-path and truncated updates change nothing and are counted', async () => {
    const { a, b, dirB, wire, state } = pair();
    state.aAt = { address: '198.18.0.40', port: 30000 };
    a.moved({ v4: true, v6: false });
    await settle(80);
    const update = wire.sent.find((s) => s.from === 'a' && s.msg[1] === MessageType.EndpointUpdate)!.msg;
    const sets = dirB.endpointSets.length;
    const evil: Endpoint = { address: '203.0.113.66', port: 4444 };
    // Replay of the captured update from another address.
    assert.equal(b.onDatagram(Buffer.from(update), evil), true);
    assert.equal(b.counters.get('refused.replay'), 1);
    // Forged: one body byte flipped (fresh seq so it passes the replay guard and reaches the AEAD).
    const forged = Buffer.from(update);
    forged.writeBigUInt64BE(forged.readBigUInt64BE(8) + 1000n, 8);
    forged[40] = forged[40]! ^ 0x01;
    b.onDatagram(forged, evil);
    // Sealed under a key nobody shares.
    const stranger = new MobilityManager({
      nodeId: () => 7,
      peers: new FakeDirectory({ nodeId: 42, name: 'b', pathId: PATH, keys: [{ send: randomBytes(32), recv: randomBytes(32), initiator: true, pathId: PATH, peerNodeId: 42, peerCertDer: Buffer.alloc(0), establishedAt: Date.now() }], endpoint: evil, candidates: [] }),
      send: (msg) => b.onDatagram(msg, evil),
      localEndpoints: () => [evil],
      logger: silentLogger,
      retransmitMs: [5],
    });
    stranger.moved({ v4: true, v6: false });
    await settle(20);
    assert.equal(b.counters.get('refused.auth'), 2, 'the flipped byte and the stranger\'s key both fail authentication');
    // Unknown path id, truncated frame.
    const other = Buffer.from(update);
    other.writeBigUInt64BE(PATH + 1n, 16);
    b.onDatagram(other, evil);
    assert.equal(b.counters.get('refused.unknown-path'), 1);
    b.onDatagram(update.subarray(0, 20), evil);
    assert.equal(b.counters.get('refused.malformed'), 1);
    assert.equal(dirB.endpointSets.length, sets, 'the endpoint was never changed by any of them');
    assert.deepEqual(dirB.peer.endpoint, state.aAt);
    assert.equal(b.onDatagram(Buffer.from([1, MessageType.Capsule, 0, 0]), evil), false, 'other types are not ours');
    for (const m of [a, b, stranger]) m.close();
  });

  test('an update sealed under the previous session (a rekey in flight) is still accepted', async () => {
    const { a, b, dirB, state } = pair();
    const old = dirB.peer.keys[0]!;
    dirB.peer.keys = [{ ...old, send: randomBytes(32), recv: randomBytes(32) }, old];
    state.aAt = { address: '198.18.0.41', port: 30000 };
    a.moved({ v4: true, v6: false });
    await settle(80);
    assert.equal(b.counters.get('update.accepted'), 1);
    assert.equal(a.counters.get('update.acked'), 1);
    a.close();
    b.close();
  });

  test('no ack (the peer moved too): retransmitted, then a new route selection through the NMS', async () => {
    const { a, dirA } = pair({ deliver: false, retransmitMs: [10, 10, 10] });
    a.moved({ v4: true, v6: false });
    await settle(80);
    assert.equal(a.counters.get('update.sent'), 1);
    assert.equal(a.counters.get('update.retransmit'), 2);
    assert.deepEqual(dirA.reselected, ['42:no-ack']);
    a.close();
  });

  test('a 300 ms round trip: retransmissions wait for the path (its handshake time, then measured acks), so a move needs no route selection', async () => {
    // The production schedule; the old one retransmitted after 30 ms and re-selected after 90 ms on every move.
    const { a, b, dirA, dirB, state } = pair({ oneWayMs: 150, retransmitMs: [30, 60, 120, 240] });
    dirA.peer.rttHintMs = 310; // the handshake took about a round trip
    state.aAt = { address: '198.18.0.40', port: 30000 };
    a.moved({ v4: true, v6: false });
    await settle(700);
    assert.equal(a.counters.get('update.acked'), 1);
    assert.equal(a.counters.get('update.retransmit'), 0, 'no retransmission before the first ack could come');
    assert.deepEqual(dirA.reselected, [], 'no route selection');
    assert.deepEqual(dirB.peer.endpoint, state.aAt);
    const rtt = a.rttOf(PATH)!;
    assert.ok(rtt >= 295 && rtt < 450, `the ack measured the path: ${rtt} ms`);
    // With no hint any more, the measured RTT carries the next move.
    dirA.peer.rttHintMs = null;
    state.aAt = { address: '198.18.0.41', port: 30000 };
    a.moved({ v4: true, v6: false });
    await settle(700);
    assert.equal(a.counters.get('update.acked'), 2);
    assert.equal(a.counters.get('update.retransmit'), 0);
    assert.deepEqual(dirA.reselected, []);
    a.close();
    b.close();
  });

  test('moved to IPv6-only: the peer\'s IPv6 endpoint is used; no endpoint of our family: route selection at once', async () => {
    const { a, dirA, wire } = pair({ deliver: false, retransmitMs: [200] });
    a.moved({ v4: false, v6: true });
    await settle(5);
    assert.deepEqual(dirA.peer.endpoint, { address: '2001:db8::12', port: 30000 });
    assert.deepEqual(wire.sent.at(-1)!.to, { address: '2001:db8::12', port: 30000 });
    dirA.peer.candidates = [{ address: '198.18.0.12', port: 30000 }];
    dirA.peer.endpoint = { address: '198.18.0.12', port: 30000 };
    a.moved({ v4: false, v6: true });
    assert.deepEqual(dirA.reselected, ['42:family']);
    a.close();
  });

  test('a new path: our endpoints are announced once (the peer learns candidates); silence triggers no re-selection', async () => {
    const { a, b, dirB } = pair();
    a.established(PATH);
    a.established(PATH); // a rekey of the same path: no second announcement
    await settle(300);
    assert.equal(a.counters.get('announce'), 1);
    assert.equal(b.counters.get('update.accepted'), 1);
    assert.deepEqual(dirB.peer.candidates, [{ address: '198.18.0.11', port: 30000 }]);
    assert.equal(a.lastMove, null, 'not a move');
    a.close();
    b.close();
    const quiet = pair({ deliver: false, retransmitMs: [5, 5, 5] });
    quiet.a.established(PATH);
    await settle(300);
    assert.deepEqual(quiet.dirA.reselected, [], 'an unanswered announcement (e.g. through a TRS) changes nothing');
    quiet.a.close();
    quiet.b.close();
  });

  test('chooseEndpoint keeps a reachable current endpoint, else the first candidate of a family we have', () => {
    const v4 = { address: '198.18.0.1', port: 1 };
    const v6 = { address: '2001:db8::1', port: 1 };
    assert.equal(chooseEndpoint({ v4: true, v6: true }, v4, [v6]), v4);
    assert.equal(chooseEndpoint({ v4: false, v6: true }, v4, [v4, v6]), v6);
    assert.equal(chooseEndpoint({ v4: true, v6: false }, v6, [v6]), null);
  });
});
