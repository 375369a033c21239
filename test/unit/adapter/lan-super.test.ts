// TCP super-frames and UDP GSO super-datagrams between the LAN and a general node's engine whose packet pair carries
// virtio_net_hdr (the engine opened with offloads), through the addon: native/lan_frames.c's lanRecv on an AF_UNIX pair standing in for
// the LAN packet socket, native/lan_fast.c, a real data-plane engine (engine-rig.ts) and the TypeScript PairHost.
// - out: a GRO super-frame (IPv4 and IPv6) from the node's leased source to a known peer goes into the pair whole
//   (one datagram, a virtio_net_hdr describing it at IP offsets), and the engine cuts it and seals one capsule per
//   segment: the peer opens segments with the original headers, consecutive sequence numbers, valid IP and TCP
//   checksums and the payload in order;
// - a super-frame whose header disagrees with its bytes (gso_size 0, hdr_len past the frame, the checksum offsets
//   elsewhere than TCP's, the gso type of the other IP version, unknown flags, an IP length other than the frame's,
//   a bad IPv4 header checksum, a TCP header past the end, no payload) is dropped and counted, nothing reaching the
//   engine; sound ones the fast path must not carry whole (spoofed source, unknown peer, a SYN, segments over
//   1400 bytes) are cut by the segmenter as before and handed out or carried as plain packets, never whole;
// - a UDP GSO super-datagram (IPv4 and IPv6; UDP_SEGMENT's header with the checksum partial, or UDP GRO
//   forwarding's with it valid) from the leased source to a known peer goes into the pair whole too, and the engine
//   cuts it (one USO frame) into datagrams of gso_size with their own IP/UDP lengths and checksums, one capsule
//   each; one whose header or lengths disagree (gso_size 0, hdr_len past the frame, checksum offsets not UDP's, the
//   ECN bit, unknown flags, IP or UDP length other than the frame's, a fragment, a bad IPv4 header checksum, the
//   other transport, no payload) is dropped and counted; sound ones it must not carry whole (spoofed source,
//   unknown peer, datagrams over 1400 bytes, IPv4 options) are cut as before, and those the segmenter refuses
//   (IPv6 extension headers, more datagrams than it has slots) are dropped and counted there;
// - a run of plain UDP datagrams of one flow read in one lanRecv (IPv4 and IPv6, the last one shorter) goes into the
//   pair as one UDP GSO super-datagram (the USO header the engine expects), which the engine cuts into exactly the
//   datagrams read and seals one per capsule; the run ends at another flow, a larger datagram, after a shorter one,
//   at a frame left to TypeScript (spoofed source), an IPv4 id gap, a wrong or absent UDP checksum, another TTL, TOS
//   or flow label, a TCP segment; it holds at most 128 datagrams and 65535 IP bytes; a lone datagram, and any
//   datagram into a plain pair, goes as one plain write as before; datagrams read before a super-datagram go into
//   the pair before it;
// - a node whose pair is plain (offloads off) gets the segments one by one, as before;
// - in: the engine's merged TCP packet (vnet_coalesce) for the node leaves on the LAN as one GSO frame whole;
//   one whose header is not exactly vnet_coalesce's is left for the reader (nothing on the LAN);
//   a UDP GSO packet from the engine (none is written while a pair has no USO) is never sent whole on the LAN: the
//   pair reader cuts it into its datagrams;
//   PairHost writes an empty header before each packet and its reader hands on plain packets only (empty headers
//   stripped, GSO packets cut; a malformed one counted and dropped).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { DataSession } from '../../../src/crypto/data-session.js';
import { FAST_STATS, fastPathWire, lanNative, type FastPathTable } from '../../../src/adapter/lan-port.js';
import { encodeEthernet, ETHERTYPE_IPV4, ETHERTYPE_IPV6, internetChecksum, macBytes } from '../../../src/adapter/lan/index.js';
import { ip4Bytes, ip6Bytes } from '../../../src/adapter/lan/wire.js';
import { PairHost } from '../../../src/node/dataplane/pair-host.js';
import { Rig } from '../node/engine-rig.js';
import { loadNativeAddon } from '../../../src/native/addon.js';
import { fold, sum16 } from '../../harness/checksum.js';

const skip = loadNativeAddon() ? false : 'native addon not built';
const ADAPTER = '02:00:00:00:00:aa';
const G1 = '02:00:00:00:00:01';
const G1_4 = '100.64.0.20';
const G1_6 = 'fd00:1:2::20';
const PEER4 = '100.64.0.9';
const PEER6 = 'fd00:1:2::9';
const UNKNOWN4 = '100.64.0.99';
const VNET = 10;
const NEEDS_CSUM = 1;
const GSO_TCPV4 = 1;
const GSO_TCPV6 = 4;
const GSO_UDP_L4 = 5;
const GSO_ECN = 0x80;
const DATA_VALID = 2;
const LAN_ST_LEN = 13;
const LAN_ST_DROP_MALFORMED = 5;
const LAN_ST_DROP_TOO_MANY = 8;


/** A TCP packet (ACK unless flags say otherwise) from src to dst, `payload` after a 20-byte TCP header, checksums complete. */
/**
 * A packet of `l4len` bytes of protocol `proto` after its IP header (IPv4 with `opts` and a complete header
 * checksum, or IPv6), from src to dst; the bytes after the header are left for the caller.
 */
function ipPacket(src: string, dst: string, proto: number, l4len: number, o: { id?: number; frag?: number; opts?: Buffer } = {}): { p: Buffer; iphl: number } {
  const v6 = src.includes(':');
  const iphl = v6 ? 40 : 20 + (o.opts?.length ?? 0);
  const p = Buffer.alloc(iphl + l4len);
  if (v6) {
    p[0] = 0x60;
    p.writeUInt16BE(l4len, 4);
    p[6] = proto;
    p[7] = 64;
    p.set(ip6Bytes(src), 8);
    p.set(ip6Bytes(dst), 24);
  } else {
    p[0] = 0x40 | (iphl / 4);
    p.writeUInt16BE(p.length, 2);
    p.writeUInt16BE(o.id ?? 0, 4);
    p.writeUInt16BE(o.frag ?? 0x4000, 6);
    p[8] = 64;
    p[9] = proto;
    p.set(ip4Bytes(src), 12);
    p.set(ip4Bytes(dst), 16);
    if (o.opts) o.opts.copy(p, 20);
    p.writeUInt16BE(internetChecksum(p.subarray(0, iphl)), 10);
  }
  return { p, iphl };
}

function tcp(src: string, dst: string, payload: Buffer, o: { seq?: number; flags?: number; id?: number } = {}): Buffer {
  const { p, iphl } = ipPacket(src, dst, 6, 20 + payload.length, o.id === undefined ? {} : { id: o.id });
  p.writeUInt16BE(40000, iphl);
  p.writeUInt16BE(5001, iphl + 2);
  p.writeUInt32BE(o.seq ?? 1000, iphl + 4);
  p.writeUInt32BE(77, iphl + 8);
  p[iphl + 12] = 5 << 4;
  p[iphl + 13] = o.flags ?? 0x10;
  p.writeUInt16BE(1000, iphl + 14);
  payload.copy(p, iphl + 20);
  p.writeUInt16BE(0xffff - fold(sum16(p.subarray(iphl), pseudo(p))), iphl + 16);
  return p;
}
/** The TCP pseudo-header sum of packet p (its length as carried). */
function pseudo(p: Buffer): number {
  const v6 = p[0]! >> 4 === 6;
  return v6 ? sum16(p.subarray(8, 40)) + 6 + (p.length - 40) : sum16(p.subarray(12, 20)) + 6 + (p.length - 20);
}
/** IP header checksum (IPv4) and TCP checksum are right, and the IP length is the packet's. */
function tcpOk(p: Buffer): boolean {
  const v6 = p[0]! >> 4 === 6;
  const iphl = v6 ? 40 : 20;
  const lenOk = v6 ? p.readUInt16BE(4) + 40 === p.length : p.readUInt16BE(2) === p.length && fold(sum16(p.subarray(0, 20))) === 0xffff;
  return lenOk && fold(sum16(p.subarray(iphl), pseudo(p))) === 0xffff;
}

function vnetHdr(o: { flags?: number; gso: number; hdrLen: number; gsoSize: number; csumStart: number; csumOffset?: number }): Buffer {
  const h = Buffer.alloc(VNET);
  h[0] = o.flags ?? NEEDS_CSUM;
  h[1] = o.gso;
  h.writeUInt16LE(o.hdrLen, 2);
  h.writeUInt16LE(o.gsoSize, 4);
  h.writeUInt16LE(o.csumStart, 6);
  h.writeUInt16LE(o.csumOffset ?? 16, 8);
  return h;
}

/** A super-frame as the packet socket reads it: virtio_net_hdr (offsets from the Ethernet header) + Ethernet + IP. */
function superFrame(ip: Buffer, mss: number, over: Partial<Parameters<typeof vnetHdr>[0]> = {}, src = G1): Buffer {
  const v6 = ip[0]! >> 4 === 6;
  const iphl = v6 ? 40 : 20;
  const h = vnetHdr({ gso: v6 ? GSO_TCPV6 : GSO_TCPV4, hdrLen: 14 + iphl + 20, gsoSize: mss, csumStart: 14 + iphl, ...over });
  return Buffer.concat([h, encodeEthernet({ dst: ADAPTER, src, ethertype: v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4, payload: ip })]);
}

/** A UDP datagram from src to dst (ports 40000 → 5201) with `payload`, lengths and checksums complete; `opts`: IPv4 header options. */
function udp(src: string, dst: string, payload: Buffer, o: { id?: number; frag?: number; opts?: Buffer } = {}): Buffer {
  const { p, iphl } = ipPacket(src, dst, 17, 8 + payload.length, o);
  p.writeUInt16BE(40000, iphl);
  p.writeUInt16BE(5201, iphl + 2);
  p.writeUInt16BE(8 + payload.length, iphl + 4);
  payload.copy(p, iphl + 8);
  p.writeUInt16BE(0xffff - fold(sum16(p.subarray(iphl), udpPseudo(p, iphl))), iphl + 6);
  return p;
}
function udpPseudo(p: Buffer, iphl: number): number {
  const v6 = p[0]! >> 4 === 6;
  return (v6 ? sum16(p.subarray(8, 40)) : sum16(p.subarray(12, 20))) + 17 + (p.length - iphl);
}
/** IP length (and IPv4 header checksum), UDP length and UDP checksum of datagram p are right. */
function udpOk(p: Buffer): boolean {
  const v6 = p[0]! >> 4 === 6;
  const iphl = v6 ? 40 : (p[0]! & 15) * 4;
  const lenOk = v6 ? p.readUInt16BE(4) + 40 === p.length : p.readUInt16BE(2) === p.length && fold(sum16(p.subarray(0, iphl))) === 0xffff;
  return lenOk && p.readUInt16BE(iphl + 4) === p.length - iphl && p.readUInt16BE(iphl + 6) !== 0 && fold(sum16(p.subarray(iphl), udpPseudo(p, iphl))) === 0xffff;
}
/** A UDP GSO super-datagram as the packet socket reads it from a UDP_SEGMENT sender (checksum partial). */
function udpSuper(ip: Buffer, size: number, over: Partial<Parameters<typeof vnetHdr>[0]> = {}, src = G1): Buffer {
  const v6 = ip[0]! >> 4 === 6;
  const iphl = v6 ? 40 : (ip[0]! & 15) * 4;
  const h = vnetHdr({ gso: GSO_UDP_L4, hdrLen: 14 + iphl + 8, gsoSize: size, csumStart: 14 + iphl, csumOffset: 6, ...over });
  return Buffer.concat([h, encodeEthernet({ dst: ADAPTER, src, ethertype: v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4, payload: ip })]);
}

const pattern = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 13 + seed) % 251));

describe('Super-frames (TCP, UDP GSO) between the LAN and a general node\'s engine (vnet pair)', { skip }, () => {
  const native = skip ? null! : lanNative();
  let lanA = -1, lanB = -1;
  let rig: Rig;
  let peer: DataSession;
  const future = Date.now() + 3_600_000;
  const scratch = Buffer.alloc(65536 + 64);
  const SLOT = 2048;
  const out = Buffer.alloc(SLOT * 128 + 18);
  const lens = new Uint32Array(128);
  const st = new Uint32Array(LAN_ST_LEN);
  const table = (pairVnet = true, peers = [PEER4, PEER6]): FastPathTable => ({
    nodes: [{ mac: G1, pairFd: rig.tunTest, pairVnet, lease4: { address: G1_4, expiresAt: future }, lease6: { address: G1_6, expiresAt: future }, vip4: G1_4, vip6: G1_6 }],
    peers,
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
  /** Writes frames (virtio_net_hdr first) on the stand-in LAN socket, then one lanRecv: the frames it hands out. */
  const recv = (...frames: Buffer[]): Buffer[] => {
    for (const f of frames) native.tunWrite(lanB, f, 0, f.length);
    const n = native.lanRecv(lanA, scratch, out, SLOT, lens, st, 100);
    return Array.from({ length: n }, (_, i) => Buffer.from(out.subarray(i * SLOT, i * SLOT + lens[i]!)));
  };
  /**
   * Each super-frame in `cases` is sound but not one the fast path carries: lanRecv cuts it into the given number of
   * packets (each complete by `ok`) for TypeScript, none goes in whole, none is counted as bad.
   */
  const expectCut = (cases: [string, Buffer, number][], ok: (ip: Buffer) => boolean): void => {
    for (const [what, f, n] of cases) {
      const before = stats();
      const got = recv(f);
      assert.equal(got.length, n, `${what}: cut and handed out to TypeScript (${JSON.stringify(st)})`);
      for (const g of got) assert.ok(ok(g.subarray(14)), `${what}: each packet complete`);
      assert.equal(stats()['lan.fast.out.gso']! - before['lan.fast.out.gso']!, 0, `${what}: not carried whole`);
      assert.equal(stats()['lan.fast.out.bad-gso']! - before['lan.fast.out.bad-gso']!, 0, `${what}: not counted as bad`);
    }
  };
  /** What the engine sealed for the peer, opened. */
  const atPeer = (): Buffer[] => {
    rig.turn();
    return rig.atPeer(100).map((c) => {
      const r = peer.tryOpen(c);
      assert.ok(Buffer.isBuffer(r), `the peer opens the capsule: ${String(r)}`);
      return r;
    });
  };

  before(() => {
    [lanA, lanB] = native.packetPair();
    native.setNonblocking(lanB);
    rig = new Rig(undefined, { vnet: true });
    const a = randomBytes(32);
    const b = randomBytes(32);
    rig.install(1, { pathId: 0x5e9n, send: a, recv: b, initiator: true }, { vip4: [...ip4Bytes(PEER4)], vip6: Buffer.from(ip6Bytes(PEER6)) });
    peer = new DataSession({ pathId: 0x5e9n, peerNodeId: 1, peerCertDer: Buffer.alloc(1), establishedAt: Date.now(), initiator: false, send: b, recv: a });
    set(table());
    rig.turn();
    rig.atPeer(); // what the install sent on its own
  });
  after(() => {
    native.lanFastClear(lanA);
    rig.close();
    for (const fd of [lanA, lanB]) native.fdClose(fd);
  });

  for (const [family, src, dst, mss] of [
    ['IPv4', G1_4, PEER4, 1000],
    ['IPv6', G1_6, PEER6, 1200],
  ] as const) {
    it(`a GRO super-frame (${family}) goes into the pair whole; the engine seals one correct segment per capsule`, () => {
      const payload = pattern(10 * mss + 300, family.length);
      const ip = tcp(src, dst, payload, { seq: 5000 });
      const iphl = family === 'IPv4' ? 20 : 40;
      native.lanFastHits(lanA);
      const before = stats();
      assert.deepEqual(recv(superFrame(ip, mss)), [], 'nothing handed out');
      assert.equal(stats()['lan.fast.out.gso']! - before['lan.fast.out.gso']!, 1);
      assert.equal(stats()['lan.fast.out']! - before['lan.fast.out']!, 11, 'counted as the segments it carries');
      const segs = atPeer();
      assert.equal(segs.length, 11, 'eleven segments, eleven capsules');
      segs.forEach((s, i) => {
        const chunk = i < 10 ? mss : 300;
        assert.equal(s.length, iphl + 20 + chunk, `segment ${i} length`);
        assert.ok(tcpOk(s), `segment ${i}: IP length and checksums`);
        assert.equal(s.readUInt32BE(iphl + 4), 5000 + i * mss, `segment ${i} seq`);
        assert.deepEqual(s.subarray(iphl + 20), payload.subarray(i * mss, i * mss + chunk), `segment ${i} payload`);
        assert.deepEqual(s.subarray(0, family === 'IPv4' ? 2 : 4), ip.subarray(0, family === 'IPv4' ? 2 : 4));
      });
      assert.equal(native.lanFastHits(lanA).length, 18, 'the peer is seen');
    });
  }

  it('drops and counts a super-frame whose virtio_net_hdr disagrees with its bytes; nothing reaches the engine', () => {
    const ip = tcp(G1_4, PEER4, pattern(5000, 1));
    const badSum = Buffer.from(ip);
    badSum[10]! ^= 1;
    const shortIp = Buffer.from(ip);
    shortIp.writeUInt16BE(ip.length - 100, 2); // the IP length says less than the frame holds
    shortIp.writeUInt16BE(0, 10);
    shortIp.writeUInt16BE(internetChecksum(shortIp.subarray(0, 20)), 10);
    const thl = tcp(G1_4, PEER4, Buffer.alloc(20));
    thl[32] = 15 << 4; // a 60-byte TCP header in a 40-byte TCP part
    const noPayload = tcp(G1_4, PEER4, Buffer.alloc(0));
    const ip6 = tcp(G1_6, PEER6, pattern(5000, 2));
    const cases: [string, Buffer][] = [
      ['gso_size 0', superFrame(ip, 0)],
      ['hdr_len beyond the frame', superFrame(ip, 1000, { hdrLen: 60000 })],
      ['csum_start not at TCP', superFrame(ip, 1000, { csumStart: 14 + 12 })],
      ['csum_offset not TCP\'s', superFrame(ip, 1000, { csumOffset: 6 })],
      ['TCPV6 type on an IPv4 frame', superFrame(ip, 1000, { gso: GSO_TCPV6 })],
      ['TCPV4 type on an IPv6 frame', superFrame(ip6, 1000, { gso: GSO_TCPV4 })],
      ['unknown header flags', superFrame(ip, 1000, { flags: NEEDS_CSUM | 0x40 })],
      ['IP length other than the frame\'s', superFrame(shortIp, 1000)],
      ['bad IPv4 header checksum', superFrame(badSum, 1000)],
      ['TCP header past the end', superFrame(thl, 1000)],
      ['no payload', superFrame(noPayload, 1000)],
    ];
    for (const [what, f] of cases) {
      const before = stats();
      assert.deepEqual(recv(f), [], `${what}: nothing handed out`);
      const d = stats()['lan.fast.out.bad-gso']! - before['lan.fast.out.bad-gso']!;
      assert.equal(d, 1, `${what}: counted`);
      assert.equal(stats()['lan.fast.out']! - before['lan.fast.out']!, 0, `${what}: nothing carried`);
    }
    assert.deepEqual(atPeer(), [], 'the engine got none of them');
    assert.equal(rig.global('tsoDropped'), 0);
  });

  it('leaves sound super-frames it must not carry whole to the segmenter: spoofed, unknown peer, SYN, segments over 1400 bytes', () => {
    const cases: [string, Buffer, number][] = [
      ['a spoofed source', superFrame(tcp('100.64.0.21', PEER4, pattern(3000, 3)), 1000), 3],
      ['an unknown peer', superFrame(tcp(G1_4, UNKNOWN4, pattern(3000, 4)), 1000), 3],
      ['a SYN', superFrame(tcp(G1_4, PEER4, pattern(3000, 5), { flags: 0x02 }), 1000), 3],
      ['segments over 1400 bytes', superFrame(tcp(G1_4, PEER4, pattern(2800, 6)), 1400), 2],
    ];
    expectCut(cases, tcpOk);
    assert.deepEqual(atPeer(), []);
  });

  for (const [family, src, dst, size, how] of [
    ['IPv4', G1_4, PEER4, 1000, 'UDP_SEGMENT: checksum partial'],
    ['IPv6', G1_6, PEER6, 1200, 'UDP_SEGMENT: checksum partial'],
    ['IPv4', G1_4, PEER4, 1372, 'GRO forwarding: checksum valid'],
  ] as const) {
    it(`a UDP GSO super-datagram (${family}, ${how}) goes into the pair whole; the engine cuts it into sealed datagrams`, () => {
      const payload = pattern(12 * size + 77, size);
      const ip = udp(src, dst, payload, { id: 700 });
      const iphl = family === 'IPv4' ? 20 : 40;
      const over = how.startsWith('GRO') ? { flags: DATA_VALID, csumStart: 0, csumOffset: 0 } : {};
      native.lanFastHits(lanA);
      const before = stats();
      const uso = rig.global('usoFrames');
      assert.deepEqual(recv(udpSuper(ip, size, over)), [], 'nothing handed out');
      assert.equal(st[2], 0, 'not cut in the reader (lan.rx.gso.udp)');
      assert.equal(stats()['lan.fast.out.gso']! - before['lan.fast.out.gso']!, 1);
      assert.equal(stats()['lan.fast.out.gso.udp']! - before['lan.fast.out.gso.udp']!, 1);
      assert.equal(stats()['lan.fast.out']! - before['lan.fast.out']!, 13, 'counted as the datagrams it carries');
      const dgrams = atPeer();
      assert.equal(rig.global('usoFrames') - uso, 1, 'the engine read one USO frame');
      assert.equal(dgrams.length, 13, 'thirteen datagrams, thirteen capsules');
      dgrams.forEach((d, i) => {
        const chunk = i < 12 ? size : 77;
        assert.equal(d.length, iphl + 8 + chunk, `datagram ${i} length`);
        assert.ok(udpOk(d), `datagram ${i}: IP and UDP lengths and checksums`);
        if (family === 'IPv4') assert.equal(d.readUInt16BE(4), 700 + i, `datagram ${i} IP id`);
        assert.deepEqual(d.subarray(iphl, iphl + 4), ip.subarray(iphl, iphl + 4), `datagram ${i} ports`);
        assert.deepEqual(d.subarray(iphl + 8), payload.subarray(i * size, i * size + chunk), `datagram ${i} payload`);
      });
      assert.equal(native.lanFastHits(lanA).length, 18, 'the peer is seen');
    });
  }

  it('drops and counts a UDP super-datagram whose header or lengths disagree; nothing reaches the engine', () => {
    const payload = pattern(4000, 11);
    const ip = udp(G1_4, PEER4, payload);
    const ip6 = udp(G1_6, PEER6, payload);
    const mod = (p: Buffer, f: (q: Buffer) => void, v4sum = true): Buffer => {
      const q = Buffer.from(p);
      f(q);
      if (v4sum && q[0]! >> 4 === 4) {
        q.writeUInt16BE(0, 10);
        q.writeUInt16BE(internetChecksum(q.subarray(0, 20)), 10);
      }
      return q;
    };
    const cases: [string, Buffer][] = [
      ['gso_size 0', udpSuper(ip, 0)],
      ['hdr_len beyond the frame', udpSuper(ip, 1000, { hdrLen: 60000 })],
      ['csum_start not at UDP', udpSuper(ip, 1000, { csumStart: 14 + 12 })],
      ['csum_offset TCP\'s', udpSuper(ip, 1000, { csumOffset: 16 })],
      ['the ECN bit on UDP', udpSuper(ip, 1000, { gso: GSO_UDP_L4 | GSO_ECN })],
      ['unknown header flags', udpSuper(ip, 1000, { flags: NEEDS_CSUM | 0x40 })],
      ['IP length shorter than the frame', udpSuper(mod(ip, (q) => q.writeUInt16BE(q.length - 100, 2)), 1000)],
      ['IP length past the frame', udpSuper(mod(ip, (q) => q.writeUInt16BE(q.length + 100, 2)), 1000)],
      ['IPv6 payload length past the frame', udpSuper(mod(ip6, (q) => q.writeUInt16BE(q.length, 4)), 1000)],
      ['UDP length of one datagram', udpSuper(mod(ip, (q) => q.writeUInt16BE(8 + 1000, 24)), 1000)],
      ['UDP length past the frame', udpSuper(mod(ip6, (q) => q.writeUInt16BE(q.length, 44)), 1000)],
      ['an IPv4 fragment (MF)', udpSuper(udp(G1_4, PEER4, payload, { frag: 0x2000 }), 1000)],
      ['an IPv4 fragment (offset)', udpSuper(udp(G1_4, PEER4, payload, { frag: 0x0010 }), 1000)],
      ['bad IPv4 header checksum', udpSuper(mod(ip, (q) => (q[10]! ^= 1), false), 1000)],
      ['TCP under a UDP gso type', udpSuper(tcp(G1_4, PEER4, payload), 1000)],
      ['IPv6 TCP under a UDP gso type', udpSuper(tcp(G1_6, PEER6, payload), 1000)],
      ['UDP under a TCP gso type', superFrame(ip, 1000)],
      ['no payload', udpSuper(udp(G1_4, PEER4, Buffer.alloc(0)), 1000)],
      ['no room for the UDP header', udpSuper(mod(ip.subarray(0, 24), (q) => q.writeUInt16BE(24, 2)), 1000)],
    ];
    const uso = rig.global('usoFrames');
    for (const [what, f] of cases) {
      const before = stats();
      assert.deepEqual(recv(f), [], `${what}: nothing handed out`);
      assert.equal(stats()['lan.fast.out.bad-gso']! - before['lan.fast.out.bad-gso']!, 1, `${what}: counted`);
      assert.equal(stats()['lan.fast.out']! - before['lan.fast.out']!, 0, `${what}: nothing carried`);
    }
    assert.deepEqual(atPeer(), [], 'the engine got none of them');
    assert.equal(rig.global('usoFrames'), uso);
    assert.equal(rig.global('tsoDropped'), 0);
  });

  it('leaves sound UDP super-datagrams it must not carry whole to the segmenter, which cuts or refuses them', () => {
    const hbh = (p: Buffer, next: number): Buffer => {
      // An IPv6 extension header (8 bytes) between the fixed header and UDP.
      const ext = Buffer.alloc(8);
      ext[0] = 17;
      const q = Buffer.concat([p.subarray(0, 40), ext, p.subarray(40)]);
      q[6] = next;
      q.writeUInt16BE(q.length - 40, 4);
      return q;
    };
    const cut: [string, Buffer, number][] = [
      ['a spoofed source', udpSuper(udp('100.64.0.21', PEER4, pattern(3000, 3)), 1000), 3],
      ['an unknown peer', udpSuper(udp(G1_4, UNKNOWN4, pattern(3000, 4)), 1000), 3],
      ['datagrams over 1400 bytes', udpSuper(udp(G1_4, PEER4, pattern(2800, 6)), 1400), 2],
      ['IPv4 options', udpSuper(udp(G1_4, PEER4, pattern(3000, 7), { opts: Buffer.from([1, 1, 1, 0]) }), 1000), 3],
    ];
    expectCut(cut, udpOk);
    const refused: [string, Buffer, number][] = [
      ['an IPv6 hop-by-hop header', udpSuper(hbh(udp(G1_6, PEER6, pattern(3000, 8)), 0), 1000), LAN_ST_DROP_MALFORMED],
      ['an IPv6 fragment header', udpSuper(hbh(udp(G1_6, PEER6, pattern(3000, 9)), 44), 1000), LAN_ST_DROP_MALFORMED],
      ['more datagrams than the reader has slots (129 of 64 bytes)', udpSuper(udp(G1_4, PEER4, pattern(129 * 64, 10)), 64), LAN_ST_DROP_TOO_MANY],
    ];
    for (const [what, f, counter] of refused) {
      const before = stats();
      const was = st[counter]!;
      assert.deepEqual(recv(f), [], `${what}: nothing handed out`);
      assert.equal(st[counter]! - was, 1, `${what}: counted by the reader`);
      assert.equal(stats()['lan.fast.out']! - before['lan.fast.out']!, 0, `${what}: nothing carried`);
    }
    assert.deepEqual(atPeer(), []);
  });

  /** A plain frame as the packet socket reads it: an empty virtio_net_hdr, Ethernet from `src` to the adapter, IP packet `ip`. */
  const plainFrame = (ip: Buffer, src = G1): Buffer =>
    Buffer.concat([Buffer.alloc(VNET), encodeEthernet({ dst: ADAPTER, src, ethertype: ip[0]! >> 4 === 6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4, payload: ip })]);
  /** Datagrams of one flow as a connected socket sends them: `n` of `size` payload bytes (then one of `last`), IPv4 ids from `id`. */
  const udpRun = (src: string, dst: string, n: number, size: number, o: { last?: number; id?: number; seed?: number } = {}): Buffer[] =>
    [...Array.from({ length: n }, () => size), ...(o.last ? [o.last] : [])].map((len, i) => udp(src, dst, pattern(len, (o.seed ?? 0) + i), { id: ((o.id ?? 1) + i) & 0xffff }));
  /** Datagram p changed by f, then its IPv4 header checksum and UDP checksum made right again. */
  const udpMod = (p: Buffer, f: (q: Buffer) => void): Buffer => {
    const q = Buffer.from(p);
    f(q);
    const iphl = q[0]! >> 4 === 6 ? 40 : 20;
    if (iphl === 20) {
      q.writeUInt16BE(0, 10);
      q.writeUInt16BE(internetChecksum(q.subarray(0, 20)), 10);
    }
    q.writeUInt16BE(0, iphl + 6);
    q.writeUInt16BE(0xffff - fold(sum16(q.subarray(iphl), udpPseudo(q, iphl))), iphl + 6);
    return q;
  };
  /**
   * Runs `body` with g1's pair replaced by a fresh vnet pair whose engine end the test reads itself: `writes()` is
   * every write lanRecv made there, each as the packets it carries — a plain packet (empty virtio_net_hdr) as [it],
   * a merged UDP write as the datagrams its header cuts it into (vnetSegment, as the engine does) — and checks a
   * merged write's header is exactly the USO one the engine expects.
   */
  const ownPair = (body: (writes: () => Buffer[][]) => void, pairVnet = true): void => {
    const [eng, host] = native.packetPair();
    native.setNonblocking(eng);
    const writes = (): Buffer[][] => {
      const got: Buffer[][] = [];
      const buf = Buffer.alloc(70000);
      for (let n; (n = native.tunRead(eng, buf, 20)) > 0; ) {
        if (!pairVnet) {
          got.push([Buffer.from(buf.subarray(0, n))]);
          continue;
        }
        const m = Buffer.from(buf.subarray(0, n));
        if (m.subarray(0, VNET).equals(Buffer.alloc(VNET))) {
          got.push([m.subarray(VNET)]);
          continue;
        }
        const ip = m.subarray(VNET);
        const iphl = ip[0]! >> 4 === 6 ? 40 : 20;
        assert.deepEqual([m[0], m[1], m.readUInt16LE(2), m.readUInt16LE(6), m.readUInt16LE(8)], [NEEDS_CSUM, GSO_UDP_L4, iphl + 8, iphl, 6], 'a USO header at IP offsets');
        assert.equal(iphl === 20 ? ip.readUInt16BE(2) : ip.readUInt16BE(4) + 40, ip.length, 'IP length: the whole write');
        if (iphl === 20) assert.equal(fold(sum16(ip.subarray(0, 20))), 0xffff, 'IPv4 header checksum');
        assert.equal(ip.readUInt16BE(iphl + 4), ip.length - iphl, 'UDP length: the whole write');
        assert.equal(ip.readUInt16BE(iphl + 6), fold(udpPseudo(ip, iphl)), 'UDP checksum field: the pseudo-header sum (partial)');
        const seg = Buffer.alloc(160 * 1500);
        const sl = new Uint32Array(160);
        const k = native.vnetSegment(m, 0, m.length, seg, 1500, sl);
        assert.ok(k >= 2, `a merged write carries two or more datagrams (${k})`);
        got.push(Array.from({ length: k }, (_, i) => Buffer.from(seg.subarray(i * 1500, i * 1500 + sl[i]!))));
      }
      return got;
    };
    try {
      set({ ...table(pairVnet), nodes: [{ ...table(pairVnet).nodes[0]!, pairFd: host }] });
      body(writes);
    } finally {
      set(table());
      native.fdClose(eng);
      native.fdClose(host);
    }
  };

  for (const [family, src, dst, size] of [
    ['IPv4', G1_4, PEER4, 1372],
    ['IPv6', G1_6, PEER6, 1000],
  ] as const) {
    it(`a run of plain UDP datagrams (${family}) goes into the pair as one super-datagram; the engine seals the same datagrams, byte for byte`, () => {
      const dgrams = udpRun(src, dst, 20, size, { last: 77, id: 900, seed: size });
      const before = stats();
      const uso = rig.global('usoFrames');
      assert.deepEqual(recv(...dgrams.map((d) => plainFrame(d))), [], 'nothing handed out');
      assert.equal(stats()['lan.fast.out.merged.udp']! - before['lan.fast.out.merged.udp']!, 1, 'one merged write');
      assert.equal(stats()['lan.fast.out.merged.udp.datagrams']! - before['lan.fast.out.merged.udp.datagrams']!, 21);
      assert.equal(stats()['lan.fast.out']! - before['lan.fast.out']!, 21, 'counted as the datagrams it carries');
      assert.equal(stats()['lan.fast.out.gso']! - before['lan.fast.out.gso']!, 0, 'no super-frame from the LAN');
      const got = atPeer();
      assert.equal(rig.global('usoFrames') - uso, 1, 'the engine read one USO frame');
      assert.equal(got.length, 21, 'twenty-one datagrams, twenty-one capsules');
      got.forEach((g, i) => assert.deepEqual(g, dgrams[i], `datagram ${i} as the device sent it`));
    });
  }

  it('the merged write is one USO datagram whose segmentation gives back the run; a lone datagram goes plain, as before', () => {
    ownPair((writes) => {
      for (const [what, ds] of [
        ['IPv4, a shorter last one', udpRun(G1_4, PEER4, 6, 1000, { last: 1, id: 40 })],
        ['IPv6', udpRun(G1_6, PEER6, 5, 1232)],
        ['IPv4 ids wrapping past 65535', udpRun(G1_4, PEER4, 4, 300, { id: 65534 })],
        ['no DF', udpRun(G1_4, PEER4, 3, 500).map((d) => udpMod(d, (q) => q.writeUInt16BE(0, 6)))],
      ] as const) {
        assert.deepEqual(recv(...ds.map((d) => plainFrame(d))), [], `${what}: nothing handed out`);
        assert.deepEqual(writes(), [ds], `${what}: one write, the datagrams byte for byte`);
      }
      const lone = udp(G1_4, PEER4, pattern(700, 3), { id: 5 });
      const before = stats();
      assert.deepEqual(recv(plainFrame(lone)), []);
      assert.deepEqual(writes(), [[lone]], 'a lone datagram: one plain write');
      assert.equal(stats()['lan.fast.out.merged.udp']! - before['lan.fast.out.merged.udp']!, 0);
    });
  });

  it('a run ends at another flow, a larger or shorter datagram, a frame left to TypeScript, an id gap, a bad or no checksum, other IP fields', () => {
    ownPair((writes) => {
      const a = udpRun(G1_4, PEER4, 6, 1000, { id: 100 });
      const port = (p: Buffer): Buffer => udpMod(p, (q) => q.writeUInt16BE(5202, 22));
      const other = port(udp(G1_4, PEER4, pattern(1000, 9), { id: 300 }));
      const big = udp(G1_4, PEER4, pattern(1200, 8), { id: 102 });
      const short = udp(G1_4, PEER4, pattern(500, 7), { id: 102 });
      const spoofed = udp('100.64.0.21', PEER4, pattern(1000, 6), { id: 102 });
      const badSum = Buffer.from(a[2]!);
      badSum[40]! ^= 0xff;
      const noSum = Buffer.from(a[2]!);
      noSum.writeUInt16BE(0, 26);
      const ttl = udpMod(a[2]!, (q) => (q[8] = 63));
      const tos = udpMod(a[2]!, (q) => (q[1] = 0x10));
      const seg = tcp(G1_4, PEER4, pattern(1000, 5));
      const v6 = udpRun(G1_6, PEER6, 4, 1000);
      const label = udpMod(v6[2]!, (q) => (q[3] = 7));
      const cases: [string, Buffer[], Buffer[][], Buffer[]?][] = [
        ['another flow in the middle', [a[0]!, a[1]!, other, a[2]!, a[3]!], [[a[0]!, a[1]!], [other], [a[2]!, a[3]!]]],
        ['a larger datagram starts a run of its own (a shorter one may end it)', [a[0]!, a[1]!, big, a[3]!, a[4]!], [[a[0]!, a[1]!], [big, a[3]!], [a[4]!]]],
        ['a shorter datagram is the last of its run', [a[0]!, a[1]!, short, a[3]!, a[4]!], [[a[0]!, a[1]!, short], [a[3]!, a[4]!]]],
        ['a spoofed source, left to TypeScript', [a[0]!, a[1]!, spoofed, a[3]!, a[4]!], [[a[0]!, a[1]!], [a[3]!, a[4]!]], [spoofed]],
        ['an IPv4 id out of sequence', [a[0]!, a[1]!, a[3]!, a[4]!], [[a[0]!, a[1]!], [a[3]!, a[4]!]]],
        ['a wrong UDP checksum', [a[0]!, a[1]!, badSum, a[3]!, a[4]!], [[a[0]!, a[1]!], [badSum], [a[3]!, a[4]!]]],
        ['a wrong UDP checksum on the first', [badSum, a[3]!, a[4]!], [[badSum], [a[3]!, a[4]!]]],
        ['no UDP checksum', [a[0]!, a[1]!, noSum, a[3]!, a[4]!], [[a[0]!, a[1]!], [noSum], [a[3]!, a[4]!]]],
        ['another TTL', [a[0]!, a[1]!, ttl, a[3]!], [[a[0]!, a[1]!], [ttl], [a[3]!]]],
        ['another TOS', [a[0]!, a[1]!, tos, a[3]!, a[4]!], [[a[0]!, a[1]!], [tos], [a[3]!, a[4]!]]],
        ['a TCP segment in the middle', [a[0]!, a[1]!, seg, a[2]!, a[3]!], [[a[0]!, a[1]!], [seg], [a[2]!, a[3]!]]],
        ['another IPv6 flow label', [v6[0]!, v6[1]!, label, v6[3]!], [[v6[0]!, v6[1]!], [label], [v6[3]!]]],
      ];
      for (const [what, sent, want, handed = []] of cases) {
        const got = recv(...sent.map((d) => plainFrame(d)));
        assert.deepEqual(got.map((f) => f.subarray(14)), handed, `${what}: handed out`);
        assert.deepEqual(writes(), want, `${what}: the writes, in order, each datagram byte for byte`);
      }
    });
  });

  it('datagrams read before a UDP super-datagram of the same flow go into the pair before it, and those after it after', () => {
    ownPair((writes) => {
      const a = udpRun(G1_4, PEER4, 7, 1000, { id: 100 });
      const chunks = [0, 1, 2].map((i) => pattern(1000, 50 + i));
      const sup = udp(G1_4, PEER4, Buffer.concat(chunks), { id: 102 });
      sup.writeUInt16BE(fold(udpPseudo(sup, 20)), 26); // UDP_SEGMENT leaves the checksum partial
      const cut = chunks.map((c, i) => udp(G1_4, PEER4, c, { id: 102 + i }));
      assert.deepEqual(recv(plainFrame(a[0]!), plainFrame(a[1]!), udpSuper(sup, 1000), plainFrame(a[5]!), plainFrame(a[6]!)), []);
      assert.deepEqual(writes(), [[a[0]!, a[1]!], cut, [a[5]!, a[6]!]], 'in the order read');
    });
  });

  it('a merged write holds at most 128 datagrams and 65535 IP bytes; a plain pair gets the datagrams one by one', () => {
    /** lanFastOut on the frames of `ds` (one call: as one lanRecv batch); returns how many were left. */
    const fastOut = (ds: Buffer[]): number => {
      const slot = 1536;
      const buf = Buffer.alloc(slot * ds.length);
      ds.forEach((d, i) => encodeEthernet({ dst: ADAPTER, src: G1, ethertype: ETHERTYPE_IPV4, payload: d }).copy(buf, i * slot));
      return native.lanFastOut(lanA, buf, slot, Uint32Array.from(ds, (d) => 14 + d.length), ds.length);
    };
    ownPair((writes) => {
      const small = udpRun(G1_4, PEER4, 130, 64);
      assert.equal(fastOut(small), 0);
      assert.deepEqual(writes(), [small.slice(0, 128), small.slice(128)], '128 datagrams, then the rest');
      const full = udpRun(G1_4, PEER4, 50, 1372);
      assert.equal(fastOut(full), 0);
      assert.deepEqual(writes(), [full.slice(0, 47), full.slice(47)], '47 datagrams of 1400 bytes fit 65535, 48 do not');
    });
    ownPair((writes) => {
      const ds = udpRun(G1_4, PEER4, 3, 1000);
      const before = stats();
      assert.deepEqual(recv(...ds.map((d) => plainFrame(d))), []);
      assert.deepEqual(writes(), ds.map((d) => [d]));
      assert.equal(stats()['lan.fast.out.merged.udp']! - before['lan.fast.out.merged.udp']!, 0);
    }, false);
  });

  it('a node whose pair is plain (offloads off) gets the segments one by one, as before', () => {
    // A plain pair of its own (the rig's engine reads virtio headers): what lanRecv writes there is one packet each.
    const [eng, host] = native.packetPair();
    native.setNonblocking(eng);
    try {
      set({ ...table(false), nodes: [{ ...table(false).nodes[0]!, pairFd: host }] });
      const payload = pattern(3 * 1000, 7);
      const before = stats();
      assert.deepEqual(recv(superFrame(tcp(G1_4, PEER4, payload, { seq: 1 }), 1000)), []);
      assert.equal(stats()['lan.fast.out']! - before['lan.fast.out']!, 3);
      assert.equal(stats()['lan.fast.out.gso']! - before['lan.fast.out.gso']!, 0);
      const buf = Buffer.alloc(4096);
      for (let i = 0; i < 3; i++) {
        const n = native.tunRead(eng, buf, 100);
        assert.equal(n, 20 + 20 + 1000, `segment ${i}: a plain packet, no header`);
        assert.ok(tcpOk(Buffer.from(buf.subarray(0, n))));
        assert.deepEqual(buf.subarray(40, n), payload.subarray(i * 1000, (i + 1) * 1000));
      }
    } finally {
      set(table());
      native.fdClose(eng);
      native.fdClose(host);
    }
  });

  it('a plain packet from the LAN reaches a vnet pair behind an empty virtio_net_hdr', () => {
    const ip = tcp(G1_4, PEER4, pattern(200, 8));
    assert.deepEqual(recv(Buffer.concat([Buffer.alloc(VNET), encodeEthernet({ dst: ADAPTER, src: G1, ethertype: ETHERTYPE_IPV4, payload: ip })])), []);
    const [got] = atPeer();
    assert.deepEqual(got, ip);
  });

  it('the engine\'s merged TCP packet for the node leaves on the LAN as one GSO frame, offsets moved past Ethernet', () => {
    const segs = [0, 1, 2].map((i) => tcp(PEER4, G1_4, pattern(1000, 20 + i), { seq: 9000 + i * 1000, id: i }));
    for (const s of segs) rig.toEngine(peer.seal(s));
    rig.turn();
    const slot = 65536 + 512;
    const batch = Buffer.alloc(slot * 2);
    const lengths = new Uint32Array(2);
    assert.equal(native.tunReadBatch(rig.tunTest, batch, slot, lengths, 200), 1, 'the engine merged them: one write');
    assert.equal(batch[1], GSO_TCPV4);
    const before = stats();
    assert.equal(native.lanFastIn(rig.tunTest, batch, slot, lengths, 1, true), 1);
    assert.equal(lengths[0], 0);
    assert.equal(stats()['lan.fast.in.gso']! - before['lan.fast.in.gso']!, 1);
    assert.equal(stats()['lan.fast.in']! - before['lan.fast.in']!, 3);
    const f = Buffer.alloc(70000);
    const n = native.tunRead(lanB, f, 100);
    assert.equal(n, VNET + 14 + 20 + 20 + 3000);
    assert.deepEqual([f[0], f[1], f.readUInt16LE(2), f.readUInt16LE(4), f.readUInt16LE(6), f.readUInt16LE(8)], [NEEDS_CSUM, GSO_TCPV4, 14 + 40, 1000, 14 + 20, 16]);
    const cut = Buffer.alloc(8 * 2048 + 64);
    const cl = new Uint32Array(8);
    assert.equal(native.lanSegment(f, 0, n, cut, 2048, cl, new Uint32Array(16)), 3);
    segs.forEach((s, i) => assert.deepEqual(cut.subarray(i * 2048 + 14, i * 2048 + cl[i]!), s, `segment ${i} as the peer sent it`));
    // A merged packet the fast path does not take (not for the node's address) is left for the reader to cut.
    const other = [0, 1].map((i) => tcp(PEER4, '100.64.0.30', pattern(1000, 30 + i), { seq: 100 + i * 1000 }));
    for (const s of other) rig.toEngine(peer.seal(s));
    rig.turn();
    assert.equal(native.tunReadBatch(rig.tunTest, batch, slot, lengths, 200), 1);
    assert.equal(native.lanFastIn(rig.tunTest, batch, slot, lengths, 1, true), 0);
    assert.ok(lengths[0]! > VNET + 2000, 'left whole');
  });

  it('leaves a UDP GSO packet from the engine for the pair reader: never sent whole on the LAN', () => {
    const dgrams = [0, 1, 2].map((i) => udp(PEER4, G1_4, pattern(1000, 50 + i), { id: i }));
    const merged = udp(PEER4, G1_4, Buffer.concat(dgrams.map((d) => d.subarray(28))));
    merged.writeUInt16BE(fold(udpPseudo(merged, 20)), 26); // CHECKSUM_PARTIAL, as vnet_coalesce writes it
    const d = Buffer.concat([vnetHdr({ gso: GSO_UDP_L4, hdrLen: 28, gsoSize: 1000, csumStart: 20, csumOffset: 6 }), merged]);
    const before = stats();
    assert.equal(native.lanFastIn(rig.tunTest, d, d.length, Uint32Array.of(d.length), 1, true), 0);
    assert.equal(stats()['lan.fast.in']! - before['lan.fast.in']!, 0);
    assert.equal(native.tunRead(lanB, Buffer.alloc(70000), 50), 0, 'nothing on the LAN');
    // What the pair reader then does with it (vnetSegment): the three datagrams, complete.
    const seg = Buffer.alloc(8 * 1464);
    const sl = new Uint32Array(8);
    assert.equal(native.vnetSegment(d, 0, d.length, seg, 1464, sl), 3);
    dgrams.forEach((g, i) => {
      const got = Buffer.from(seg.subarray(i * 1464, i * 1464 + sl[i]!));
      assert.ok(udpOk(got), `datagram ${i} complete`);
      assert.deepEqual(got.subarray(20), g.subarray(20), `datagram ${i} as the peer sent it`);
    });
  });

  it('leaves a GSO packet from the engine whose header is not exactly vnet_coalesce\'s: nothing on the LAN', () => {
    const segs = [0, 1, 2].map((i) => tcp(PEER4, G1_4, pattern(1000, 40 + i), { seq: 300 + i * 1000, id: i }));
    const merged = tcp(PEER4, G1_4, Buffer.concat(segs.map((s) => s.subarray(40))), { seq: 300 });
    merged.writeUInt16BE(fold(pseudo(merged)), 36);
    const good = { gso: GSO_TCPV4, hdrLen: 40, gsoSize: 1000, csumStart: 20 };
    const cases: [string, Buffer][] = [
      ['gso_size 0', Buffer.concat([vnetHdr({ ...good, gsoSize: 0 }), merged])],
      ['hdr_len other than IP + TCP', Buffer.concat([vnetHdr({ ...good, hdrLen: 54 }), merged])],
      ['csum_start elsewhere', Buffer.concat([vnetHdr({ ...good, csumStart: 14 }), merged])],
      ['checksum not left partial', Buffer.concat([vnetHdr({ ...good, flags: 2 }), merged])],
      ['TCPV6 on IPv4', Buffer.concat([vnetHdr({ ...good, gso: GSO_TCPV6 }), merged])],
      ['segments over 1400 bytes', Buffer.concat([vnetHdr({ ...good, gsoSize: 1400 }), merged])],
      ['IP length other than the packet\'s', Buffer.concat([vnetHdr(good), merged.subarray(0, merged.length - 1)])],
      ['a UDP gso type', Buffer.concat([vnetHdr({ ...good, gso: 5, csumOffset: 6 }), merged])],
    ];
    const slot = 4096;
    const batch = Buffer.alloc(slot * cases.length);
    cases.forEach(([, d], i) => d.copy(batch, i * slot));
    const lengths = Uint32Array.from(cases.map(([, d]) => d.length));
    const before = stats();
    assert.equal(native.lanFastIn(rig.tunTest, batch, slot, lengths, cases.length, true), 0);
    cases.forEach(([what, d], i) => assert.equal(lengths[i], d.length, `${what}: left`));
    assert.equal(stats()['lan.fast.in']! - before['lan.fast.in']!, 0);
    assert.equal(native.tunRead(lanB, Buffer.alloc(70000), 50), 0, 'nothing on the LAN');
    // The same packet with vnet_coalesce's header is taken.
    const ok = Buffer.concat([vnetHdr(good), merged]);
    ok.copy(batch, 0);
    assert.equal(native.lanFastIn(rig.tunTest, batch, slot, Uint32Array.of(ok.length), 1, true), 1);
    assert.ok(native.tunRead(lanB, Buffer.alloc(70000), 50) > 3000);
  });
});

describe('PairHost on a vnet pair', { skip }, () => {
  it('writes an empty virtio_net_hdr before each packet; hands on plain packets only (GSO packets cut, malformed ones counted)', async () => {
    const native = lanNative();
    const [eng, hostFd] = native.packetPair();
    native.setNonblocking(eng);
    const host = new PairHost(native, hostFd, 1400, true);
    const got: Buffer[] = [];
    host.onPackets = (ps) => got.push(...ps);
    try {
      const p = tcp(G1_4, PEER4, pattern(100, 1));
      assert.equal(host.write(p), true);
      const buf = Buffer.alloc(4096);
      const n = native.tunRead(eng, buf, 200);
      assert.deepEqual(buf.subarray(0, n), Buffer.concat([Buffer.alloc(VNET), p]));

      // From the engine: a plain packet, a merged one (as vnet_coalesce writes it), a malformed one, a plain one.
      const a = tcp(PEER4, G1_4, pattern(50, 2));
      const segs = [0, 1, 2].map((i) => tcp(PEER4, G1_4, pattern(1000, 3 + i), { seq: 100 + i * 1000, id: i }));
      const merged = tcp(PEER4, G1_4, Buffer.concat(segs.map((s) => s.subarray(40))), { seq: 100 });
      merged.writeUInt16BE(fold(pseudo(merged)), 36); // CHECKSUM_PARTIAL: the pseudo-header sum
      const gso = Buffer.concat([vnetHdr({ gso: GSO_TCPV4, hdrLen: 40, gsoSize: 1000, csumStart: 20 }), merged]);
      const bad = Buffer.concat([vnetHdr({ gso: GSO_TCPV4, hdrLen: 40, gsoSize: 0, csumStart: 20 }), merged]);
      const z = tcp(PEER4, G1_4, pattern(60, 9));
      for (const d of [Buffer.concat([Buffer.alloc(VNET), a]), gso, bad, Buffer.concat([Buffer.alloc(VNET), z])]) native.tunWrite(eng, d, 0, d.length);
      for (let i = 0; i < 50 && got.length < 5; i++) await sleep(20);
      assert.equal(got.length, 5);
      assert.deepEqual(got[0], a);
      segs.forEach((s, i) => assert.deepEqual(got[1 + i], s, `segment ${i}`));
      assert.deepEqual(got[4], z);
      assert.equal(host.refusedGso, 1);
    } finally {
      await host.close();
      native.fdClose(eng);
    }
  });
});
