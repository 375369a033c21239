// Path MTU in the native engine (native/pmtu.c, native/dataplane_pmtu.inc) on the TUN-less rig (engine-rig.ts):
// packets over a peer's usable MTU get ICMP "fragmentation needed" (DF) or are fragmented (no DF), SYNs are
// MSS-clamped, probes are padded to the probed size, answered, and their acks reach the worker as events; plus the
// packet helpers (ICMPv6 "packet too big", fragments, clamping) on their own. No root needed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DataSession } from '../../../src/crypto/data-session.js';
import { native, Rig } from './engine-rig.js';

const skip = native ? false : 'native addon not built';

function sessions(pathId: bigint): { engine: { pathId: bigint; send: Buffer; recv: Buffer; initiator: boolean }; peer: DataSession } {
  const a = randomBytes(32);
  const b = randomBytes(32);
  const base = { pathId, peerNodeId: 1, peerCertDer: Buffer.alloc(1), establishedAt: Date.now() };
  return { engine: { pathId, send: a, recv: b, initiator: true }, peer: new DataSession({ ...base, initiator: false, send: b, recv: a }) };
}

/** IPv4 packet 10.99.0.1 -> 10.99.0.2 of `bytes` bytes, protocol UDP (17), with or without DF; checksum filled. */
function ipv4(bytes: number, df: boolean): Buffer {
  const p = Buffer.alloc(bytes, 7);
  p[0] = 0x45;
  p[1] = 0;
  p.writeUInt16BE(bytes, 2);
  p.writeUInt16BE(0x1234, 4);
  p.writeUInt16BE(df ? 0x4000 : 0, 6);
  p[8] = 64;
  p[9] = 17;
  p.writeUInt16BE(0, 10);
  Buffer.from([10, 99, 0, 1]).copy(p, 12);
  Buffer.from([10, 99, 0, 2]).copy(p, 16);
  p.writeUInt16BE(csum(p.subarray(0, 20)), 10);
  return p;
}

/** TCP SYN 10.99.0.1 -> 10.99.0.2 with an MSS option. */
function syn(mss: number): Buffer {
  const p = Buffer.alloc(44);
  p[0] = 0x45;
  p.writeUInt16BE(44, 2);
  p.writeUInt16BE(0x4000, 6);
  p[8] = 64;
  p[9] = 6;
  Buffer.from([10, 99, 0, 1]).copy(p, 12);
  Buffer.from([10, 99, 0, 2]).copy(p, 16);
  p.writeUInt16BE(csum(p.subarray(0, 20)), 10);
  const t = p.subarray(20);
  t.writeUInt16BE(40000, 0);
  t.writeUInt16BE(80, 2);
  t[12] = 6 << 4;
  t[13] = 0x02;
  t.writeUInt16BE(65535, 14);
  t[20] = 2;
  t[21] = 4;
  t.writeUInt16BE(mss, 22);
  t.writeUInt16BE(tcpSum(p), 16);
  return p;
}

function sum(b: Buffer, s = 0): number {
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length % 2) s += b[b.length - 1]! << 8;
  return s;
}
function csum(b: Buffer, s = 0): number {
  s = sum(b, s);
  while (s >> 16) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}
function tcpSum(p: Buffer): number {
  const len = p.length - 20;
  return csum(p.subarray(20), sum(p.subarray(12, 20)) + 6 + len);
}

test('over the usable MTU: ICMP "fragmentation needed" for DF, fragments without DF; SYNs clamped both ways', { skip }, () => {
  const rig = new Rig();
  try {
    const { engine, peer } = sessions(0x77n);
    rig.install(3, engine, { vip4: [10, 99, 0, 2] });
    rig.atPeer();
    assert.equal(rig.stats.peer(3).pmtu, 1400, 'loopback: the TUN MTU is usable whole');
    assert.ok(rig.n.dpPmtu(rig.engine, 3, 1200) >= 1400, 'the kernel path MTU of loopback');
    assert.equal(rig.stats.peer(3).pmtu, 1200 - 20 - 52, 'PLPMTU 1200 over IPv4: 1128 inner bytes');

    rig.toTun(ipv4(1400, true));
    rig.turn();
    const icmp = rig.fromTun();
    assert.ok(icmp, 'an ICMP error comes back on the TUN');
    assert.equal(icmp[9], 1);
    assert.deepEqual([...icmp.subarray(12, 16)], [10, 99, 0, 2], 'from the destination');
    assert.deepEqual([...icmp.subarray(16, 20)], [10, 99, 0, 1], 'to the sender');
    assert.equal(icmp[20], 3);
    assert.equal(icmp[21], 4);
    assert.equal(icmp.readUInt16BE(26), 1128, 'next-hop MTU');
    assert.equal(csum(icmp.subarray(0, 20)), 0, 'IP checksum');
    assert.equal(csum(icmp.subarray(20)), 0, 'ICMP checksum');
    assert.equal(rig.atPeer(50).length, 0, 'nothing went to the peer');
    assert.equal(rig.global('pmtuIcmpSent'), 1);

    const big = ipv4(1400, false);
    rig.toTun(big);
    rig.turn();
    const caps = rig.atPeer();
    assert.equal(caps.length, 2, 'fragmented in two');
    const frags = caps.map((c) => peer.tryOpen(c) as Buffer);
    for (const f of frags) assert.ok(Buffer.isBuffer(f) && f.length <= 1128);
    assert.equal(frags[0]!.readUInt16BE(6), 0x2000, 'first: MF, offset 0');
    assert.equal(frags[1]!.readUInt16BE(6) & 0x2000, 0, 'last: no MF');
    assert.deepEqual(Buffer.concat([frags[0]!.subarray(20), frags[1]!.subarray(20)]), big.subarray(20));
    assert.equal(rig.global('pmtuFragmented'), 1);

    rig.toTun(syn(1360));
    rig.turn();
    const [sc] = rig.atPeer();
    const out = peer.tryOpen(sc!) as Buffer;
    assert.equal(out.readUInt16BE(20 + 22), 1128 - 40, 'MSS clamped to the usable MTU');
    const check = Buffer.from(out);
    check.writeUInt16BE(0, 36);
    assert.equal(tcpSum(check), out.readUInt16BE(36), 'TCP checksum still right');

    const back = syn(1460);
    Buffer.from([10, 99, 0, 2]).copy(back, 12);
    Buffer.from([10, 99, 0, 1]).copy(back, 16);
    back.writeUInt16BE(0, 10);
    back.writeUInt16BE(csum(back.subarray(0, 20)), 10);
    back.writeUInt16BE(0, 36);
    back.writeUInt16BE(tcpSum(back), 36);
    rig.toEngine(peer.seal(back));
    rig.turn();
    const inb = rig.fromTun();
    assert.ok(inb);
    assert.equal(inb.readUInt16BE(42), 1088, 'the peer\'s SYN is clamped too');
    assert.equal(rig.global('mssClamped'), 2);
  } finally {
    rig.close();
  }
});

test('probes: padded to the probed size, answered by the peer, acks reported as events', { skip }, () => {
  const rig = new Rig();
  try {
    const { engine, peer } = sessions(0x78n);
    rig.install(5, engine, { vip4: [10, 99, 0, 2] });
    rig.atPeer();
    assert.equal(rig.n.dpProbe(rig.engine, 5, 1300, 0xabcdef01), true);
    const [probe] = rig.atPeer();
    assert.ok(probe);
    assert.equal(probe.length + 20 + 8, 1300, 'outer IPv4 datagram of exactly the probed size');
    const m = peer.tryOpen(probe) as Buffer;
    assert.equal(m[0], 0);
    assert.equal(m[1], 1);
    assert.equal(m.readUInt32BE(4), 0xabcdef01);
    assert.equal(m.readUInt16BE(8), 1300);

    const ack = Buffer.alloc(10);
    ack[1] = 2;
    m.copy(ack, 4, 4, 10);
    rig.toEngine(peer.seal(ack));
    const t = rig.turn();
    assert.equal(t.events, 1);
    assert.equal(rig.events[0], 3, 'event kind 3: probe ack');
    assert.equal(rig.events.readUInt16BE(4), 5, 'for slot 5');
    assert.equal(rig.events.readUInt32BE(24 + 4), 0xabcdef01);

    const theirs = Buffer.alloc(900);
    theirs[1] = 1;
    theirs.writeUInt32BE(7, 4);
    theirs.writeUInt16BE(900 + 72, 8);
    rig.toEngine(peer.seal(theirs));
    rig.turn();
    const [answer] = rig.atPeer();
    const a = peer.tryOpen(answer!) as Buffer;
    assert.equal(a.length, 10, 'acks are not padded');
    assert.equal(a[1], 2);
    assert.equal(a.readUInt32BE(4), 7);
    assert.equal(rig.global('pmtuProbesAnswered'), 1);
    assert.equal(rig.global('spoofed'), 0, 'control messages are not inner packets');
  } finally {
    rig.close();
  }
});

test('packet helpers: ICMPv6 packet too big, no answer to ICMP errors, DF refuses fragmentation', { skip }, () => {
  const n = native!;
  const p6 = Buffer.alloc(1400, 1);
  p6[0] = 0x60;
  p6.writeUInt16BE(1360, 4);
  p6[6] = 17;
  p6[7] = 64;
  Buffer.from('fd000000000000000000000000000001', 'hex').copy(p6, 8);
  Buffer.from('fd000000000000000000000000000002', 'hex').copy(p6, 24);
  const tb = n.pmtuTooBig(p6, 1300)!;
  assert.equal(tb.length, 1280, 'quotes what fits in 1280 bytes');
  assert.equal(tb[6], 58);
  assert.equal(tb[40], 2);
  assert.equal(tb.readUInt32BE(44), 1300);
  assert.deepEqual(tb.subarray(8, 24), p6.subarray(24, 40));
  const pseudo = sum(tb.subarray(8, 40)) + (tb.length - 40) + 58;
  assert.equal(csum(tb.subarray(40), pseudo), 0, 'ICMPv6 checksum');
  const err = Buffer.from(tb);
  assert.equal(n.pmtuTooBig(err, 1280), null, 'never an error about an error');
  assert.equal(n.pmtuFragment4(ipv4(1400, true), 1000), null, 'DF packets are not fragmented');
  const f = n.pmtuFragment4(ipv4(3000, false), 1000)!;
  assert.equal(f.length, 4);
  for (const x of f) assert.equal(csum(x.subarray(0, 20)), 0);
  const s = syn(1000);
  assert.equal(n.pmtuClampMss(s, 1400), false, 'a small MSS stays');
});
