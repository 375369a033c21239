// The adapter's IP fast path (native/lan_fast.c) through the addon, on real AF_UNIX packet pairs (the engine's
// device is one, and a second stands in for the LAN packet socket, which gets a virtio_net_hdr before each frame):
// - out: a plain TCP/UDP frame from a general node's MAC, sourced from its unexpired lease, to a known peer, lands in
//   that node's pair byte for byte (Ethernet padding stripped) and is counted; the peer is reported as seen; in a
//   batch mixing carried and left frames each pair gets its packets in order and the left frames stay in order;
// - everything the fast path must leave to TypeScript is left (not written anywhere): another node's or the adapter's
//   address as source, another node's MAC, an expired lease, an unknown or another general node's destination, SYNs,
//   packets over 1400 bytes, fragments, IPv4 options and bad header checksums, IPv6 extension headers, ICMP, group
//   and foreign destination MACs, 802.1Q tags, frames from the adapter's MAC, truncated frames;
// - 20 000 mutated frames: whatever the fast path takes, the TypeScript classifier also calls an overlay packet from
//   the leased source to a known peer, needing no MSS clamp and fitting 1400 bytes, and the pair gets exactly it;
// - in: an engine's packet from a known peer to the node's own address goes out on the LAN with the Ethernet header
//   (adapter MAC → the node's MAC); one to another address, from an unknown source, or a SYN is left to TypeScript;
//   consecutive segments of one TCP flow leave as one GSO frame that cuts back into the same segments;
// - a replaced table takes effect at once (the pair's dup stays valid after the caller closes its fd); a cleared one
//   carries nothing.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadNativeAddon } from '../../../src/native/addon.js';
import { FAST_STATS, fastPathWire, lanNative, type FastPathTable } from '../../../src/adapter/lan-port.js';
import { classify, clampMss, encodeEthernet, ETHERTYPE_IPV4, ETHERTYPE_IPV6, fitMtu, internetChecksum, macBytes, type ClassifyContext } from '../../../src/adapter/lan/index.js';
import { ip4Bytes, ip6Bytes } from '../../../src/adapter/lan/wire.js';
import { prng } from '../../harness/prng.js';

const skip = loadNativeAddon() ? false : 'native addon not built';
const ADAPTER = '02:00:00:00:00:aa';
const G1 = '02:00:00:00:00:01';
const G2 = '02:00:00:00:00:02';
const G1_4 = '100.64.0.20';
const G1_6 = 'fd00:1:2::20';
const G2_4 = '100.64.0.21';
const G2_6 = 'fd00:1:2::21';
const ADAPTER4 = '100.64.0.1';
const PEER4 = '100.64.0.9';
const PEER6 = 'fd00:1:2::9';
const UNKNOWN4 = '100.64.0.99';

/** An IPv4/IPv6 packet: TCP (flags, 20-byte header) or UDP (17) or another protocol, `payload` bytes after it. */
function packet(src: string, dst: string, o: { proto?: number; flags?: number; payload?: number } = {}): Buffer {
  const proto = o.proto ?? 6;
  const l4 = proto === 6 ? 20 : 8;
  const body = Buffer.alloc(l4 + (o.payload ?? 100), 0x5a);
  if (proto === 6) {
    body.writeUInt16BE(40000, 0);
    body.writeUInt16BE(5001, 2);
    body[12] = 5 << 4;
    body[13] = o.flags ?? 0x10; // ACK
  } else if (proto === 17) {
    body.writeUInt16BE(40000, 0);
    body.writeUInt16BE(5001, 2);
    body.writeUInt16BE(body.length, 4);
  }
  if (!src.includes(':')) {
    const h = Buffer.alloc(20);
    h[0] = 0x45;
    h.writeUInt16BE(20 + body.length, 2);
    h.writeUInt16BE(0x4000, 6);
    h[8] = 64;
    h[9] = proto;
    h.set(ip4Bytes(src), 12);
    h.set(ip4Bytes(dst), 16);
    h.writeUInt16BE(internetChecksum(h), 10);
    return Buffer.concat([h, body]);
  }
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(body.length, 4);
  h[6] = proto;
  h[7] = 64;
  h.set(ip6Bytes(src), 8);
  h.set(ip6Bytes(dst), 24);
  return Buffer.concat([h, body]);
}

function frame(ip: Buffer, srcMac = G1, dstMac = ADAPTER): Buffer {
  return encodeEthernet({ dst: dstMac, src: srcMac, ethertype: ip[0]! >> 4 === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6, payload: ip });
}

describe('LAN IP fast path (lan_fast.c)', { skip }, () => {
  const native = skip ? null! : lanNative();
  let lanA = -1, lanB = -1, g1Eng = -1, g1Host = -1, g2Eng = -1, g2Host = -1;
  const buf = Buffer.alloc(4096);
  const future = Date.now() + 3_600_000;
  const table = (over: Partial<FastPathTable> = {}): FastPathTable => ({
    nodes: [
      { mac: G1, pairFd: g1Host, lease4: { address: G1_4, expiresAt: future }, lease6: { address: G1_6, expiresAt: future }, vip4: G1_4, vip6: G1_6 },
      { mac: G2, pairFd: g2Host, lease4: { address: G2_4, expiresAt: future }, lease6: null, vip4: G2_4, vip6: G2_6 },
    ],
    peers: [PEER4, PEER6],
    ...over,
  });
  const set = (t: FastPathTable): void => {
    const w = fastPathWire(t);
    native.lanFastSet(lanA, macBytes(ADAPTER), w.nodes, w.peers);
  };
  const stats = (): Record<string, number> => {
    const s = new Uint32Array(FAST_STATS.length);
    native.lanFastStats(lanA, s);
    return Object.fromEntries(FAST_STATS.map((n, i) => [n, s[i]!]));
  };
  /** What is queued on fd now (one datagram), or null. */
  const take = (fd: number): Buffer | null => {
    const n = native.tunRead(fd, buf, 0);
    return n > 0 ? Buffer.from(buf.subarray(0, n)) : null;
  };
  /** 1 when the fast path carried frame f, else 0 (lanRecv's filter on a batch of one). */
  const out = (f: Buffer): number => {
    const slot = Math.max(64, f.length);
    const b = Buffer.alloc(slot);
    f.copy(b);
    return 1 - native.lanFastOut(lanA, b, slot, Uint32Array.of(f.length), 1);
  };

  before(() => {
    [lanA, lanB] = native.packetPair();
    [g1Eng, g1Host] = native.packetPair();
    [g2Eng, g2Host] = native.packetPair();
    for (const fd of [lanB, g1Eng, g2Eng]) native.setNonblocking(fd);
    set(table());
  });
  after(() => {
    native.lanFastClear(lanA);
    for (const fd of [lanA, lanB, g1Eng, g1Host, g2Eng, g2Host]) native.fdClose(fd);
  });

  it('carries a plain TCP/UDP frame from the leased source to a known peer into the node\'s pair, padding stripped', () => {
    const before = stats()['lan.fast.out']!;
    for (const ip of [packet(G1_4, PEER4), packet(G1_6, PEER6), packet(G1_4, PEER4, { proto: 17, payload: 1 }), packet(G1_4, PEER4, { payload: 1400 - 40 })]) {
      const f = Buffer.concat([frame(ip), Buffer.alloc(ip.length < 46 ? 46 - ip.length : 0)]);
      assert.equal(out(f), 1);
      assert.deepEqual(take(g1Eng), ip);
    }
    assert.equal(take(g2Eng), null);
    assert.equal(stats()['lan.fast.out']! - before, 4);
    const hits = native.lanFastHits(lanA);
    assert.equal(hits.length, 2 * 18, 'both peers seen');
    assert.equal(native.lanFastHits(lanA).length, 0, 'flags cleared');
  });

  it('a batch mixing carried and left frames: the carried ones reach their pairs in order, the rest stay in order', () => {
    const slot = 2048;
    const frames = [
      frame(packet(G1_4, PEER4, { payload: 10 })),
      frame(packet(G2_4, PEER4)), // spoofed: left
      frame(packet(G1_4, PEER4, { payload: 11 })),
      frame(packet(G2_4, PEER4, { payload: 12 }), G2),
      frame(packet(G1_4, PEER4, { flags: 0x02 })), // SYN: left
      frame(packet(G1_6, PEER6, { payload: 13 })),
      frame(packet(G1_4, UNKNOWN4)), // unknown: left
    ];
    const buf = Buffer.alloc(slot * frames.length);
    frames.forEach((f, i) => f.copy(buf, i * slot));
    const lengths = Uint32Array.from(frames.map((f) => f.length));
    assert.equal(native.lanFastOut(lanA, buf, slot, lengths, frames.length), 3);
    [1, 4, 6].forEach((j, k) => assert.deepEqual(buf.subarray(k * slot, k * slot + lengths[k]!), frames[j], `left frame ${k}`));
    for (const j of [0, 2, 5]) assert.deepEqual(take(g1Eng), frames[j]!.subarray(14), `g1 got frame ${j}`);
    assert.deepEqual(take(g2Eng), frames[3]!.subarray(14));
    assert.equal(take(g1Eng), null);
    assert.equal(take(g2Eng), null);
    native.lanFastHits(lanA);
  });

  it('leaves to TypeScript every frame it must not carry: spoofed sources, expired leases, unknown destinations, SYNs, oversize, odd headers', () => {
    const big = packet(G1_4, PEER4, { payload: 1400 - 40 + 1 });
    const frag = packet(G1_4, PEER4);
    frag.writeUInt16BE(0x2000, 6); // MF
    frag.writeUInt16BE(0, 10);
    frag.writeUInt16BE(internetChecksum(frag.subarray(0, 20)), 10);
    const badSum = packet(G1_4, PEER4);
    badSum[10]! ^= 1;
    const ext6 = packet(G1_6, PEER6);
    ext6[6] = 0; // hop-by-hop
    const tagged = Buffer.concat([frame(packet(G1_4, PEER4)).subarray(0, 12), Buffer.from([0x81, 0, 0, 5]), frame(packet(G1_4, PEER4)).subarray(12)]);
    const cases: [string, Buffer][] = [
      ['another node\'s address from g1', frame(packet(G2_4, PEER4))],
      ['another node\'s IPv6 address from g1', frame(packet(G2_6, PEER6))],
      ['the adapter\'s address from g1', frame(packet(ADAPTER4, PEER4))],
      ['g1\'s address from g2\'s MAC', frame(packet(G1_4, PEER4), G2)],
      ['g2 has no IPv6 lease', frame(packet(G2_6, PEER6), G2)],
      ['an unknown MAC', frame(packet(G1_4, PEER4), '02:00:00:00:00:77')],
      ['the adapter\'s own MAC as source', frame(packet(G1_4, PEER4), ADAPTER)],
      ['to an unknown address', frame(packet(G1_4, UNKNOWN4))],
      ['to another general node', frame(packet(G1_4, G2_4))],
      ['to the adapter', frame(packet(G1_4, ADAPTER4))],
      ['a SYN (MSS clamp)', frame(packet(G1_4, PEER4, { flags: 0x02 }))],
      ['a SYN-ACK over IPv6', frame(packet(G1_6, PEER6, { flags: 0x12 }))],
      ['over 1400 bytes', frame(big)],
      ['an IPv4 fragment', frame(frag)],
      ['a bad IPv4 header checksum', frame(badSum)],
      ['an IPv6 extension header', frame(ext6)],
      ['ICMP', frame(packet(G1_4, PEER4, { proto: 1 }))],
      ['to a group MAC', frame(packet(G1_4, PEER4), G1, 'ff:ff:ff:ff:ff:ff')],
      ['to another MAC', frame(packet(G1_4, PEER4), G1, '02:00:00:00:00:55')],
      ['802.1Q tagged', tagged],
      ['truncated', frame(packet(G1_4, PEER4)).subarray(0, 60)],
      ['IPv4 in an IPv6 ethertype', encodeEthernet({ dst: ADAPTER, src: G1, ethertype: ETHERTYPE_IPV6, payload: packet(G1_4, PEER4) })],
    ];
    const before = stats()['lan.fast.out'];
    for (const [what, f] of cases) assert.equal(out(f), 0, what);
    assert.equal(take(g1Eng), null);
    assert.equal(take(g2Eng), null);
    assert.equal(stats()['lan.fast.out'], before);
    // A lease that ran out is no longer a valid source, even before the service replaces the table.
    set(table({ nodes: [{ mac: G1, pairFd: g1Host, lease4: { address: G1_4, expiresAt: Date.now() - 1 }, lease6: null, vip4: G1_4, vip6: G1_6 }] }));
    assert.equal(out(frame(packet(G1_4, PEER4))), 0, 'expired lease');
    set(table());
  });

  it('takes nothing the TypeScript classifier would not carry the same way (20 000 mutated frames)', () => {
    const ctx: ClassifyContext = {
      adapterMac: ADAPTER,
      isAdapterAddress: (a) => a === ADAPTER4,
      isOverlay: (a) => a === PEER4 || a === PEER6,
      leasedAddress: (mac, family) => (mac === G1 ? (family === 4 ? G1_4 : G1_6) : mac === G2 && family === 4 ? G2_4 : undefined),
    };
    const rnd = prng(19);
    const seeds = [packet(G1_4, PEER4), packet(G1_6, PEER6), packet(G1_4, PEER4, { proto: 17 }), packet(G2_4, PEER4)];
    const macs = [G1, G2, ADAPTER, '02:00:00:00:00:77'];
    let taken = 0;
    for (let i = 0; i < 20_000; i++) {
      const ip = Buffer.from(seeds[i % seeds.length]!);
      const f = frame(ip, macs[Math.floor(rnd() * (i % 7 === 0 ? 4 : 2))]!);
      const flips = 1 + Math.floor(rnd() * 3);
      for (let k = 0; k < flips && rnd() < 0.9; k++) f[Math.floor(rnd() * Math.min(f.length, 14 + 60))] = Math.floor(rnd() * 256);
      const cut = rnd() < 0.1 ? f.subarray(0, Math.floor(rnd() * f.length)) : f;
      if (out(Buffer.from(cut)) === 0) continue;
      taken++;
      const got = take(cut.subarray(6, 12).equals(macBytes(G2)) ? g2Eng : g1Eng);
      const p = classify(cut, ctx);
      assert.equal(p.kind, 'overlay', `frame ${i} taken, classifier: ${JSON.stringify(p)}`);
      if (p.kind !== 'overlay') continue;
      assert.deepEqual(got, Buffer.from(p.packet), `frame ${i}: the pair got the classifier's packet`);
      assert.equal(clampMss(Buffer.from(p.packet), 1400), false, `frame ${i}: no MSS to clamp`);
      assert.equal(fitMtu(Buffer.from(p.packet), 1400, ADAPTER4).kind, 'fits', `frame ${i}: fits`);
    }
    assert.ok(taken > 1000, `some mutated frames still carried: ${taken}`);
    assert.equal(take(g1Eng), null);
  });

  it('sends an engine\'s packet for the node\'s own address framed on the LAN; leaves the rest', () => {
    const slot = 2048;
    const batch = Buffer.alloc(slot * 8);
    const lengths = new Uint32Array(8);
    const toLan = [packet(PEER4, G1_4), packet(PEER6, G1_6, { proto: 17 })];
    const leave = [packet(PEER4, G2_4), packet(UNKNOWN4, G1_4), packet(PEER4, G1_4, { flags: 0x12 }), packet(PEER4, G1_4, { proto: 1 })];
    for (const p of [...toLan, ...leave]) native.tunWrite(g1Eng, p, 0, p.length);
    const before = stats()['lan.fast.in']!;
    let n = 0;
    for (let tries = 0; n < 6 && tries < 10; tries++) n += native.tunReadBatch(g1Host, batch.subarray(n * slot), slot, lengths.subarray(n), 100);
    assert.equal(n, 6);
    assert.equal(native.lanFastIn(g1Host, batch, slot, lengths, n), 2);
    assert.deepEqual([...lengths.subarray(0, 6)], [0, 0, ...leave.map((p) => p.length)]);
    for (const p of toLan) {
      const got = take(lanB)!;
      assert.deepEqual(got.subarray(0, 10), Buffer.alloc(10), 'an empty virtio_net_hdr');
      assert.deepEqual(got.subarray(10), frame(p, ADAPTER, G1));
    }
    assert.equal(take(lanB), null);
    assert.equal(stats()['lan.fast.in']! - before, 2);
    // A pair no table holds: nothing happens.
    const p = packet(PEER4, G2_4);
    native.tunWrite(g2Eng, p, 0, p.length);
    set(table({ nodes: [] }));
    assert.equal(native.tunReadBatch(g2Host, batch, slot, lengths, 100), 1);
    assert.equal(native.lanFastIn(g2Host, batch, slot, lengths, 1), 0);
    set(table());
  });

  it('sends consecutive segments of one TCP flow as one GSO frame, which the LAN reader\'s splitter cuts back into them', () => {
    const slot = 2048;
    const batch = Buffer.alloc(slot * 8);
    const lengths = new Uint32Array(8);
    const segs = [0, 1, 2].map((i) => {
      const p = packet(PEER4, G1_4, { payload: 1000 });
      p.writeUInt32BE(1000 + i * 1000, 24); // sequence numbers follow each other
      p.fill(i + 1, 40);
      return p;
    });
    for (const p of segs) native.tunWrite(g1Eng, p, 0, p.length);
    let n = 0;
    for (let tries = 0; n < 3 && tries < 10; tries++) n += native.tunReadBatch(g1Host, batch.subarray(n * slot), slot, lengths.subarray(n), 100);
    const before = stats();
    assert.equal(native.lanFastIn(g1Host, batch, slot, lengths, n), 3);
    assert.equal(stats()['lan.fast.in.gso']! - before['lan.fast.in.gso']!, 1);
    assert.equal(stats()['lan.fast.in']! - before['lan.fast.in']!, 3);
    const got = take(lanB)!;
    assert.equal(take(lanB), null, 'one frame');
    const vh = { flags: got[0], gso: got[1], hdrLen: got.readUInt16LE(2), gsoSize: got.readUInt16LE(4), csumStart: got.readUInt16LE(6), csumOff: got.readUInt16LE(8) };
    assert.deepEqual(vh, { flags: 1, gso: 1, hdrLen: 14 + 40, gsoSize: 1000, csumStart: 14 + 20, csumOff: 16 });
    assert.deepEqual(got.subarray(10, 24), frame(Buffer.alloc(20, 0x45), ADAPTER, G1).subarray(0, 14));
    // What a wire would carry: the reader's splitter (lanSegment, the kernel's job on a real link) gives back the
    // three segments, headers as sent (checksums now filled in), payloads in order.
    const out = Buffer.alloc(8 * 2048 + 64);
    const lens = new Uint32Array(8);
    const st = new Uint32Array(16);
    assert.equal(native.lanSegment(got, 0, got.length, out, 2048, lens, st), 3);
    segs.forEach((p, i) => {
      const f = out.subarray(i * 2048, i * 2048 + lens[i]!);
      assert.deepEqual(f.subarray(14 + 40), p.subarray(40), `segment ${i} payload`);
      assert.equal(f.readUInt32BE(14 + 24), p.readUInt32BE(24), `segment ${i} seq`);
    });
  });

  it('a replaced table takes effect at once; the pair is kept by its dup; a cleared table carries nothing', () => {
    const [eng, host] = native.packetPair();
    native.setNonblocking(eng);
    set(table({ nodes: [{ mac: G1, pairFd: host, lease4: { address: G1_4, expiresAt: future }, lease6: null, vip4: G1_4, vip6: null }] }));
    native.fdClose(host); // the table holds its own descriptor: a reused number is never written to
    assert.equal(out(frame(packet(G1_4, PEER4))), 1);
    assert.ok(take(eng));
    assert.equal(out(frame(packet(G1_6, PEER6))), 0, 'no IPv6 lease in this table');
    set(table({ peers: [PEER6] }));
    assert.equal(out(frame(packet(G1_4, PEER4))), 0, 'PEER4 no longer known');
    assert.equal(out(frame(packet(G1_6, PEER6))), 1);
    assert.ok(take(g1Eng));
    native.lanFastClear(lanA);
    assert.equal(out(frame(packet(G1_6, PEER6))), 0);
    native.fdClose(eng);
    set(table());
  });

  it('refuses malformed tables with typed errors', () => {
    assert.throws(() => native.lanFastSet(lanA, Buffer.alloc(5), Buffer.alloc(0), Buffer.alloc(0)), { code: 'ERR_NATIVE_ARG' });
    assert.throws(() => native.lanFastSet(lanA, macBytes(ADAPTER), Buffer.alloc(71), Buffer.alloc(0)), { code: 'ERR_NATIVE_ARG' });
    assert.throws(() => native.lanFastSet(lanA, macBytes(ADAPTER), Buffer.alloc(0), Buffer.alloc(18)), { code: 'ERR_NATIVE_ARG' });
    const bad = fastPathWire(table({ nodes: [{ mac: G1, pairFd: 999_999, lease4: null, lease6: null, vip4: null, vip6: null }] }));
    assert.throws(() => native.lanFastSet(lanA, macBytes(ADAPTER), bad.nodes, bad.peers), { code: 'EBADF' });
    // The table in place is unchanged by a refused one.
    assert.equal(out(frame(packet(G1_4, PEER4))), 1);
    assert.ok(take(g1Eng));
  });
});
