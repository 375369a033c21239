// The native data-plane engine (native/dataplane.c) without a TUN device: one end of an AF_UNIX datagram pair
// stands in for the TUN (one write = one packet), a loopback UDP socket plays the peer, and the TypeScript
// DataSession is the peer's crypto. So every capsule the engine seals is opened by the TypeScript code and vice
// versa (one wire format), each drop reason is checked against the shared counters, and a burst of hostile
// frames is all counted and dropped while the engine keeps serving. No root needed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DataSession } from '../../../src/crypto/data-session.js';
import { MAX_PENDING_REQUESTS } from '../../../src/crypto/handshake.js';
import type { NativeEngineHandle } from '../../../src/native/addon.js';
import { MessageType } from '../../../src/protocol/constants.js';
import { LOOPBACK, native, Rig } from './engine-rig.js';
import { fold, sum16 } from '../../harness/checksum.js';

const skip = native ? false : 'native addon not built';
const LIMITS = { sealForMs: 60_000, openForMs: 65_000, candidates: MAX_PENDING_REQUESTS };

/** A session pair: `engine` keys for dpInstall and the peer's DataSession with the keys swapped. */
function sessions(pathId: bigint, engineInitiator = true): { engine: { pathId: bigint; send: Buffer; recv: Buffer; initiator: boolean }; peer: DataSession } {
  const a = randomBytes(32);
  const b = randomBytes(32);
  const base = { pathId, peerNodeId: 1, peerCertDer: Buffer.alloc(1), establishedAt: Date.now() };
  return {
    engine: { pathId, send: a, recv: b, initiator: engineInitiator },
    peer: new DataSession({ ...base, initiator: !engineInitiator, send: b, recv: a }),
  };
}

/** An IPv4 packet between 10.99.0.1 (the engine's node) and 10.99.0.2 (its peer), to `dst` from the other one. */
function ipv4(dst: number[], bytes = 60, fill = 7): Buffer {
  const p = Buffer.alloc(bytes, fill);
  p[0] = 0x45;
  Buffer.from([dst[0]!, dst[1]!, dst[2]!, dst[3] === 1 ? 2 : 1]).copy(p, 12);
  Buffer.from(dst).copy(p, 16);
  return p;
}

function open(s: DataSession, frame: Buffer): Buffer {
  const r = s.tryOpen(frame);
  assert.ok(Buffer.isBuffer(r), `peer could not open the capsule: ${String(r)}`);
  return r;
}

test('engine capsules open in DataSession and DataSession capsules come out of the TUN', { skip }, () => {
  const rig = new Rig();
  try {
    const { engine, peer } = sessions(0x0102030405060708n);
    rig.install(3, engine, { vip4: [10, 99, 0, 2] });
    const [announce] = rig.atPeer();
    assert.ok(announce, 'a first session is announced with an empty capsule');
    assert.equal(open(peer, announce).length, 0);

    const pkt = ipv4([10, 99, 0, 2], 300);
    rig.toTun(pkt);
    assert.equal(rig.turn().bits & 1, 1);
    const [capsule] = rig.atPeer();
    assert.ok(capsule);
    assert.equal(capsule.length, pkt.length + 44);
    assert.equal(capsule.readBigUInt64BE(8), 1n, 'counter 1 after the announcement');
    assert.deepEqual(open(peer, capsule), pkt);

    const back = ipv4([10, 99, 0, 1], 1400, 9);
    rig.toEngine(peer.seal(back));
    const t = rig.turn();
    assert.equal(t.bits & 2, 2);
    assert.ok(t.moved);
    assert.deepEqual(rig.fromTun(), back);

    const slot = rig.stats.peer(3);
    assert.deepEqual(slot, { rxBytes: back.length, txBytes: pkt.length, rxPackets: 1, txPackets: 2, pmtu: 1400 });
  } finally {
    rig.close();
  }
});

test('replays, old counters, forgeries, unknown paths and garbage are dropped and counted; good capsules still pass', { skip }, () => {
  const rig = new Rig();
  try {
    const { engine, peer } = sessions(77n);
    rig.install(0, engine, { vip4: [10, 99, 0, 2] });
    rig.atPeer();
    const first = peer.seal(ipv4([10, 99, 0, 1], 80, 1));
    rig.toEngine(first);
    rig.turn();
    assert.ok(rig.fromTun());

    rig.toEngine(first); // replay
    rig.turn();
    assert.equal(rig.global('replayed'), 1);

    const forged = peer.seal(ipv4([10, 99, 0, 1], 80, 2));
    forged[40] = forged[40]! ^ 1;
    rig.toEngine(forged);
    rig.turn();
    assert.equal(rig.global('badTag'), 1);

    const stranger = sessions(78n).peer.seal(ipv4([10, 99, 0, 1]));
    rig.toEngine(stranger);
    rig.turn();
    assert.equal(rig.global('unknownPath'), 1);

    const badLength = peer.seal(ipv4([10, 99, 0, 1]));
    badLength.writeUInt16BE(badLength.readUInt16BE(24) + 1, 24);
    rig.toEngine(badLength);
    rig.turn();
    rig.toEngine(Buffer.from([1, 0x99, ...randomBytes(60)])); // version 1, a type nobody handles here
    rig.turn();
    rig.toEngine(randomBytes(5));
    rig.turn();
    assert.equal(rig.global('malformed'), 3);

    rig.toEngine(peer.seal(Buffer.alloc(0))); // keepalive
    rig.turn();
    assert.equal(rig.global('keepaliveCapsules'), 1);
    assert.equal(rig.fromTun(50), null, 'nothing above reached the TUN');

    // Too old: a capsule held back while 4100 newer ones went ahead of it (the window keeps 4064 counters).
    const old = peer.seal(ipv4([10, 99, 0, 1], 80, 3));
    for (let i = 0; i < 4100; i++) peer.seal(Buffer.alloc(0));
    const newest = ipv4([10, 99, 0, 1], 80, 4);
    rig.toEngine(peer.seal(newest));
    rig.turn();
    assert.deepEqual(rig.fromTun(), newest);
    rig.toEngine(old);
    rig.turn();
    assert.equal(rig.global('tooOld'), 1);
    assert.equal(rig.fromTun(50), null);
    assert.equal(rig.stats.peer(0).rxPackets, 2);
  } finally {
    rig.close();
  }
});

test('packets without a session and frames for the main thread come out as events', { skip }, () => {
  const rig = new Rig([MessageType.TunnelRequest]);
  try {
    const v6 = Buffer.alloc(80);
    v6[0] = 0x60;
    const dst = Buffer.from('fd000000000000000000000000000005', 'hex');
    dst.copy(v6, 24);
    rig.toTun(v6);
    let t = rig.turn();
    assert.equal(t.events, 1);
    assert.equal(rig.events[0], 1, 'kind 1: no session');
    assert.equal(rig.events.readUInt16BE(2), v6.length);
    assert.equal(rig.events[4], 6);
    assert.deepEqual(rig.events.subarray(8, 24), dst);
    assert.deepEqual(rig.events.subarray(24, 24 + v6.length), v6);
    assert.equal(rig.global('miss'), 1);

    const frame = Buffer.alloc(40, 5);
    frame[0] = 1;
    frame[1] = MessageType.TunnelRequest;
    rig.toEngine(frame);
    t = rig.turn();
    assert.equal(t.events, 1);
    assert.equal(rig.events[0], 2, 'kind 2: for the main thread');
    assert.equal(rig.events[4], 4);
    assert.equal(rig.events.readUInt16BE(6), rig.peerPort);
    assert.deepEqual(rig.events.subarray(8, 12), LOOPBACK);
    assert.deepEqual(rig.events.subarray(24, 24 + frame.length), frame);

    frame[1] = MessageType.TunnelResponse; // not in this engine's toMain
    rig.toEngine(frame);
    t = rig.turn();
    assert.equal(t.events, 0);
    assert.equal(rig.global('malformed'), 1);
  } finally {
    rig.close();
  }
});

test("a responder's rekey of the same path is sent on only once the initiator uses it", { skip }, () => {
  const rig = new Rig();
  try {
    const path = 9n;
    const one = sessions(path, false);
    rig.install(1, one.engine, { vip4: [10, 99, 0, 2] });
    assert.deepEqual(rig.atPeer(50), [], 'an answered session is not announced: the initiator speaks first');
    const p0 = ipv4([10, 99, 0, 2], 100, 0);
    rig.toTun(p0);
    rig.turn();
    assert.deepEqual(rig.atPeer(50), [], 'and our packets wait for it');
    assert.equal(rig.global('queued'), 1);
    rig.toEngine(one.peer.seal(Buffer.alloc(0))); // the initiator's announcement
    rig.turn();
    assert.deepEqual(open(one.peer, rig.atPeer()[0]!), p0, 'then the held packet goes');

    const two = sessions(path, false);
    rig.install(1, two.engine, { vip4: [10, 99, 0, 2] });
    assert.deepEqual(rig.atPeer(50), [], 'a rekey is not announced by the responder');
    const p1 = ipv4([10, 99, 0, 2], 100, 1);
    rig.toTun(p1);
    rig.turn();
    assert.deepEqual(open(one.peer, rig.atPeer()[0]!), p1, 'still sealed with the old keys');

    rig.toEngine(two.peer.seal(ipv4([10, 99, 0, 1]))); // the initiator switched
    rig.turn();
    assert.ok(rig.fromTun());
    const p2 = ipv4([10, 99, 0, 2], 100, 2);
    rig.toTun(p2);
    rig.turn();
    assert.deepEqual(open(two.peer, rig.atPeer()[0]!), p2, 'now sealed with the new keys');

    rig.toEngine(one.peer.seal(ipv4([10, 99, 0, 1], 64, 3))); // late capsule under the old keys
    rig.turn();
    assert.ok(rig.fromTun(), 'the previous generation still opens');
  } finally {
    rig.close();
  }
});

test('dpSend, dpEndpoint, dpPromote and receive-only installs', { skip }, () => {
  const rig = new Rig();
  const other = native ? native.udpOpen(0, false) : -1;
  try {
    const s = sessions(5n);
    assert.equal(rig.n.dpSend(rig.engine, 2, ipv4([10, 99, 0, 2])), false, 'no session yet');
    rig.install(2, s.engine, { receiveOnly: true, vip4: [10, 99, 0, 2] });
    assert.equal(rig.n.dpSend(rig.engine, 2, ipv4([10, 99, 0, 2])), false, 'receive-only: nothing to send with');
    rig.toEngine(s.peer.seal(ipv4([10, 99, 0, 1])));
    rig.turn();
    assert.ok(rig.fromTun(), 'but it opens');

    rig.install(2, s.engine, { vip4: [10, 99, 0, 2] });
    rig.atPeer();
    rig.n.dpEndpoint(rig.engine, 2, LOOPBACK, rig.n.udpLocalPort(other));
    const pkt = ipv4([10, 99, 0, 2], 90);
    assert.equal(rig.n.dpSend(rig.engine, 2, pkt), true);
    const buf = Buffer.alloc(2048);
    const offs = new Uint32Array(4);
    const lens = new Uint32Array(4);
    assert.equal(rig.n.udpRecvMany(other, buf, 512, offs, lens, new Uint8Array(80), 200, undefined, false), 1, 'sent to the new endpoint');
    assert.deepEqual(open(s.peer, buf.subarray(offs[0]!, offs[0]! + lens[0]!)), pkt);
    rig.n.dpPromote(rig.engine, 2); // nothing pending: no change
    assert.equal(rig.n.dpSend(rig.engine, 2, pkt), true);
  } finally {
    rig.close();
    if (other >= 0) native!.fdClose(other);
  }
});

test('bad arguments throw typed errors; a destroyed engine throws ERR_CLOSED', { skip }, () => {
  const rig = new Rig();
  const n = rig.n;
  const id = Buffer.alloc(8);
  const k = Buffer.alloc(32);
  assert.throws(() => n.dpInstall(rig.engine, 1, id, Buffer.alloc(31), k, true, false, null, null, LOOPBACK, 1, LIMITS), { code: 'ERR_NATIVE_ARG', name: 'RangeError' });
  assert.throws(() => n.dpInstall(rig.engine, 1024, id, k, k, true, false, null, null, LOOPBACK, 1, LIMITS), { code: 'ERR_NATIVE_ARG' });
  assert.throws(() => n.dpInstall(rig.engine, 1, id, k, k, true, false, Buffer.alloc(3), null, LOOPBACK, 1, LIMITS), { code: 'ERR_NATIVE_ARG' });
  assert.throws(() => n.dpEndpoint(rig.engine, 1, Buffer.alloc(5), 1), { code: 'ERR_NATIVE_ARG' });
  // Limits: required, openForMs ≥ sealForMs, 1..16 candidates.
  const install = (limits: unknown): void => n.dpInstall(rig.engine, 1, id, k, k, true, false, null, null, LOOPBACK, 1, limits as typeof LIMITS);
  assert.throws(() => install(undefined), { code: 'ERR_NATIVE_ARG', name: 'TypeError' });
  assert.throws(() => install({ ...LIMITS, openForMs: LIMITS.sealForMs - 1 }), { code: 'ERR_NATIVE_ARG', name: 'RangeError' });
  assert.throws(() => install({ ...LIMITS, candidates: 0 }), { code: 'ERR_NATIVE_ARG' });
  assert.throws(() => install({ ...LIMITS, candidates: 17 }), { code: 'ERR_NATIVE_ARG' });
  assert.throws(() => install({ ...LIMITS, sealForMs: -1 }), { code: 'ERR_NATIVE_ARG' });
  assert.throws(() => install({ sealForMs: 1 }), { code: 'ERR_NATIVE_ARG' });
  assert.throws(() => n.dpTurn({} as NativeEngineHandle, 0, rig.events), { code: 'ERR_NATIVE_ARG', name: 'TypeError' });
  assert.throws(() => n.dpSend(rig.engine, 0, Buffer.alloc(70_000)), { code: 'ERR_NATIVE_ARG' });
  rig.close();
  assert.throws(() => n.dpTurn(rig.engine, 0, rig.events), { code: 'ERR_CLOSED' });
  n.dpDestroy(rig.engine); // idempotent
});

test('hostile datagrams: 3000 random and mangled frames are all dropped and counted, and the engine keeps serving', { skip }, () => {
  const rig = new Rig();
  try {
    const { engine, peer } = sessions(0xabcdefn);
    rig.install(4, engine, { vip4: [10, 99, 0, 2] });
    rig.atPeer();
    const good = peer.seal(ipv4([10, 99, 0, 1], 200));
    const sent = 3000;
    for (let i = 0; i < sent; i++) {
      let f: Buffer;
      const kind = i % 4;
      if (kind === 0) {
        f = randomBytes(1 + (i % 1500)); // noise (of another protocol version: never a frame for the main thread)
        f[0] = 2;
      }
      else if (kind === 1) {
        f = Buffer.from(good); // our path id and a valid header, body flipped somewhere
        const at = 28 + (i % (f.length - 28));
        f[at] = f[at]! ^ (1 + (i % 255));
      } else if (kind === 2) f = good.subarray(0, i % good.length); // truncated anywhere
      else {
        f = randomBytes(28 + (i % 200)); // header-shaped: version 1, type Capsule, random rest
        f[0] = 1;
        f[1] = MessageType.Capsule;
      }
      if (f.length === 0) f = Buffer.from([0]);
      rig.toEngine(f);
      if (i % 50 === 49) rig.turn();
    }
    rig.turn();
    const g = rig.stats.globals();
    const dropped = g.malformed + g.badTag + g.unknownPath + g.replayed + g.tooOld + g.keepaliveCapsules;
    assert.equal(dropped, sent, `every hostile frame is counted once (${JSON.stringify(g)})`);
    assert.equal(rig.fromTun(20), null, 'none reached the TUN');
    rig.toEngine(good);
    rig.turn();
    assert.deepEqual(rig.fromTun(), ipv4([10, 99, 0, 1], 200), 'the untouched capsule still opens');
  } finally {
    rig.close();
  }
});

test('a TUN fd that goes away makes dpTurn throw (the worker stops) instead of polling a dead fd forever', { skip }, () => {
  const rig = new Rig();
  const n = rig.n;
  n.fdClose(rig.tunEngine);
  assert.throws(() => n.dpTurn(rig.engine, 10, rig.events), { code: 'EBADF', syscall: 'poll' });
  n.dpDestroy(rig.engine);
  for (const fd of [rig.tunTest, rig.udp, rig.peer, rig.wake]) n.fdClose(fd);
});

test('the path table forgets paths whose sessions all expired and still finds every other path (removal keeps probing intact)', { skip }, async () => {
  const rig = new Rig();
  try {
    // 300 paths on one slot (receive-only, as a peer's older paths): every other one expires almost at once.
    const keep: { id: bigint; peer: DataSession }[] = [];
    const gone: { id: bigint; peer: DataSession }[] = [];
    for (let i = 0; i < 300; i++) {
      const id = 0x7000_0000_0000_0000n + BigInt(i) * 0x1_0001n;
      const s = sessions(id, true);
      const short = i % 2 === 0;
      rig.install(0, s.engine, { receiveOnly: true, vip4: [10, 99, 0, 2], sealForMs: short ? 0 : 60_000, openForMs: short ? 20 : 65_000 });
      (short ? gone : keep).push({ id, peer: s.peer });
    }
    await new Promise((r) => setTimeout(r, 60));
    rig.install(0, sessions(1n, true).engine, { receiveOnly: true }); // sweeps: the expired paths are removed
    for (const [i, k] of keep.entries()) {
      rig.toEngine(k.peer.seal(ipv4([10, 99, 0, 1], 60, i & 0xff)));
      rig.turn();
      assert.ok(rig.fromTun(), `kept path ${k.id.toString(16)} still opens`);
    }
    const before = rig.global('unknownPath');
    for (const g of gone.slice(0, 20)) rig.toEngine(g.peer.seal(ipv4([10, 99, 0, 1])));
    rig.turn();
    await new Promise((r) => setTimeout(r, 20));
    rig.turn();
    assert.equal(rig.global('unknownPath') - before, 20, 'expired paths are forgotten');
  } finally {
    rig.close();
  }
});

/** An IPv4 packet from `src` to `dst`. */
function ipv4From(src: number[], dst: number[], bytes = 60): Buffer {
  const p = ipv4(dst, bytes);
  Buffer.from(src).copy(p, 12);
  return p;
}

test('dpRemove frees a slot for another peer: sessions, routes and counters go; the new peer is routed and source-checked', { skip }, () => {
  const rig = new Rig();
  try {
    const a = sessions(0xa1n);
    rig.install(3, a.engine, { vip4: [10, 99, 0, 2] });
    rig.atPeer();
    rig.toEngine(a.peer.seal(ipv4From([10, 99, 0, 2], [10, 99, 0, 1])));
    rig.turn();
    assert.ok(rig.fromTun(), 'peer A reaches us');
    assert.ok(rig.stats.peer(3).rxBytes > 0);

    rig.n.dpRemove(rig.engine, 3);
    assert.deepEqual(rig.stats.peer(3), { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, pmtu: 0 }, 'counters start again for the next peer');
    rig.toEngine(a.peer.seal(ipv4From([10, 99, 0, 2], [10, 99, 0, 1])));
    rig.turn();
    assert.equal(rig.fromTun(50), null, "A's path is gone");
    assert.equal(rig.global('unknownPath'), 1);
    rig.toTun(ipv4From([10, 99, 0, 1], [10, 99, 0, 2]));
    rig.turn();
    assert.equal(rig.global('miss'), 1, "A's address is no longer routed");

    // Peer B takes slot 3 with its own address; A's old address is not B's to use.
    const b = sessions(0xb2n);
    rig.install(3, b.engine, { vip4: [10, 99, 0, 3] });
    rig.atPeer();
    rig.toTun(ipv4From([10, 99, 0, 1], [10, 99, 0, 3], 120));
    rig.turn();
    const [capsule] = rig.atPeer();
    assert.ok(capsule, 'sealed for B');
    assert.equal(open(b.peer, capsule).length, 120);
    rig.toEngine(b.peer.seal(ipv4From([10, 99, 0, 3], [10, 99, 0, 1])));
    rig.toEngine(b.peer.seal(ipv4From([10, 99, 0, 2], [10, 99, 0, 1])));
    rig.turn();
    assert.ok(rig.fromTun(), "B's own source passes");
    assert.equal(rig.fromTun(50), null);
    assert.equal(rig.global('spoofed'), 1, "B speaking with A's old address is dropped");
    assert.equal(rig.global('miss'), 1);
  } finally {
    rig.close();
  }
});

test('removing peers keeps every other route findable, and freed route entries are reused (no "route table full")', { skip }, () => {
  const rig = new Rig();
  try {
    const vip = (slot: number, gen: number): number[] => [10, 100 + gen, slot >> 8, slot & 0xff];
    // 1000 peers with one IPv4 address each, then every other one removed and replaced by a peer with a new address,
    // seven times over: 4500 distinct addresses pass through the 4096-entry table (one that never deletes fills up).
    for (let slot = 0; slot < 1000; slot++) rig.install(slot, sessions(BigInt(slot + 1)).engine, { vip4: vip(slot, 0) });
    for (let gen = 1; gen <= 7; gen++) {
      for (let slot = 0; slot < 1000; slot += 2) {
        rig.n.dpRemove(rig.engine, slot);
        rig.install(slot, sessions(BigInt(gen * 1000 + slot + 1)).engine, { vip4: vip(slot, gen) });
      }
      rig.atPeer(0);
    }
    rig.atPeer(0);
    const sent = (slot: number): number => rig.stats.peer(slot).txPackets;
    let misses = rig.global('miss');
    for (let slot = 1; slot < 1000; slot += 38) {
      const before = sent(slot);
      rig.toTun(ipv4From([10, 99, 0, 1], vip(slot, 0)));
      rig.turn();
      assert.equal(sent(slot), before + 1, `odd slot ${slot} keeps its route`);
    }
    for (let slot = 0; slot < 1000; slot += 38) {
      const before = sent(slot);
      rig.toTun(ipv4From([10, 99, 0, 1], vip(slot, 7)));
      rig.turn();
      assert.equal(sent(slot), before + 1, `even slot ${slot} is routed to its newest peer`);
      rig.toTun(ipv4From([10, 99, 0, 1], vip(slot, 1)));
      rig.turn();
      assert.equal(rig.global('miss'), ++misses, `a removed peer's address (slot ${slot}) is a miss`);
    }
    assert.equal(rig.global('miss'), misses);
  } finally {
    rig.close();
  }
});

// ---- UDP segmentation offload through the engine (a fake TUN that carries virtio_net_hdr) ----

const VNET = 10;
const GSO_UDP_L4 = 5;

/** An IPv4 UDP datagram between 10.99.0.1 and 10.99.0.2 (to `dst`), checksums complete. */
function udp4(dst: number[], payload: Buffer): Buffer {
  const p = Buffer.alloc(28 + payload.length);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p.writeUInt16BE(0x4000, 6);
  p[8] = 64;
  p[9] = 17;
  Buffer.from([dst[0]!, dst[1]!, dst[2]!, dst[3] === 1 ? 2 : 1]).copy(p, 12);
  Buffer.from(dst).copy(p, 16);
  p.writeUInt16BE(0xffff - fold(sum16(p.subarray(0, 20))), 10);
  p.writeUInt16BE(4433, 20);
  p.writeUInt16BE(443, 22);
  p.writeUInt16BE(8 + payload.length, 24);
  payload.copy(p, 28);
  p.writeUInt16BE(0xffff - fold(sum16(p.subarray(20), sum16(p.subarray(12, 20)) + 17 + 8 + payload.length)) || 0xffff, 26);
  return p;
}
function udpOk(p: Buffer): boolean {
  return fold(sum16(p.subarray(0, 20))) === 0xffff && p.readUInt16BE(24) === p.length - 20 && fold(sum16(p.subarray(20), sum16(p.subarray(12, 20)) + 17 + p.length - 20)) === 0xffff;
}
function vnetHdr(gso: number, gsoSize: number, hdrLen: number, csumStart: number, csumOffset: number, flags = 1): Buffer {
  const h = Buffer.alloc(VNET);
  h[0] = flags;
  h[1] = gso;
  h.writeUInt16LE(hdrLen, 2);
  h.writeUInt16LE(gsoSize, 4);
  h.writeUInt16LE(csumStart, 6);
  h.writeUInt16LE(csumOffset, 8);
  return h;
}

test('a USO super-frame from the TUN leaves as one capsule per datagram; hostile ones are counted and the engine keeps serving', { skip }, () => {
  const rig = new Rig(undefined, { vnet: true });
  try {
    const { engine, peer } = sessions(0x5505n);
    rig.install(3, engine, { vip4: [10, 99, 0, 2] });
    rig.atPeer();
    const payload = Buffer.from(Array.from({ length: 5 * 1000 + 300 }, (_, i) => (i * 7) % 256));
    const big = udp4([10, 99, 0, 2], payload);
    big.writeUInt16BE(0, 26); // the kernel leaves the checksum partial
    rig.toTun(Buffer.concat([vnetHdr(GSO_UDP_L4, 1000, 28, 20, 6), big]));
    rig.turn();
    const caps = rig.atPeer();
    assert.equal(caps.length, 6, 'six datagrams, six capsules');
    caps.forEach((c, i) => {
      const d = open(peer, c);
      const chunk = i < 5 ? 1000 : 300;
      assert.equal(d.length, 28 + chunk);
      assert.ok(udpOk(d), `datagram ${i}: lengths and checksums`);
      assert.deepEqual(d.subarray(28), payload.subarray(i * 1000, i * 1000 + chunk));
    });
    assert.equal(rig.global('usoFrames'), 1);

    const hostile = [
      Buffer.concat([vnetHdr(GSO_UDP_L4, 0, 28, 20, 6), big]), // gso_size 0
      Buffer.concat([vnetHdr(GSO_UDP_L4, 1000, 60000, 20, 6), big]), // hdr_len beyond the frame
      Buffer.concat([vnetHdr(GSO_UDP_L4, 8, 28, 20, 6), big]), // 663 datagrams: more than the engine cuts
      Buffer.concat([vnetHdr(GSO_UDP_L4, 1000, 28, 20, 16), big]), // checksum offset of TCP
      Buffer.concat([vnetHdr(GSO_UDP_L4, 1000, 28, 20, 6), big.subarray(0, 1500)]), // IP length disagrees
    ];
    for (const h of hostile) rig.toTun(h);
    rig.turn();
    assert.equal(rig.global('tsoDropped'), hostile.length, 'each refused super-frame counted once');
    assert.deepEqual(rig.atPeer(50), [], 'none of them sent');
    const plain = udp4([10, 99, 0, 2], Buffer.alloc(100, 1));
    rig.toTun(Buffer.concat([Buffer.alloc(VNET), plain]));
    rig.turn();
    const [after] = rig.atPeer();
    assert.ok(after, 'the engine keeps serving');
    assert.deepEqual(open(peer, after), plain);
  } finally {
    rig.close();
  }
});

test('with USO, opened datagrams of one UDP flow reach the TUN as one USO write; without it, one write each', { skip }, () => {
  for (const uso of [true, false]) {
    const rig = new Rig(undefined, { vnet: true, uso });
    try {
      const { engine, peer } = sessions(0x5506n);
      rig.install(2, engine, { vip4: [10, 99, 0, 2] });
      rig.atPeer();
      const dgrams = [0, 1, 2, 3].map((k) => udp4([10, 99, 0, 1], Buffer.alloc(k === 3 ? 500 : 1000, k + 1)));
      for (const d of dgrams) rig.toEngine(peer.seal(d));
      rig.turn();
      const writes: Buffer[] = [];
      for (let w = rig.fromTun(200, 70_000); w; w = rig.fromTun(50, 70_000)) writes.push(w);
      if (uso) {
        assert.equal(writes.length, 1, 'one write');
        const w = writes[0]!;
        assert.equal(w[1], GSO_UDP_L4);
        assert.equal(w.readUInt16LE(4), 1000, 'gso_size');
        assert.equal(w.length, VNET + 28 + 3500);
        assert.deepEqual(w.subarray(VNET + 28), Buffer.concat(dgrams.map((d) => d.subarray(28))));
        assert.equal(rig.global('tunGsoWrites'), 1);
      } else {
        assert.equal(writes.length, 4, 'one write per datagram');
        writes.forEach((w, i) => assert.deepEqual(w, Buffer.concat([Buffer.alloc(VNET), dgrams[i]!])));
        assert.equal(rig.global('tunGsoWrites'), 0);
      }
      assert.equal(rig.stats.peer(2).rxPackets, 4);
    } finally {
      rig.close();
    }
  }
});
