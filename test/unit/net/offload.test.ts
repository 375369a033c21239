// The addon's packet offload helpers without a TUN device: vnetSegment cuts a TSO super-packet (virtio_net_hdr +
// TCP segment) into packets whose IP and TCP checksums verify and whose sequence numbers, IP ids and flags are what a
// NIC would produce; tunWriteMany merges such packets back into one GSO write (captured in a file) and writes
// anything that cannot be merged singly. The same for UDP segmentation offload: a USO super-frame is cut into its
// datagrams (own lengths, ids, checksums), and with uso equal-sized datagrams of one flow merge into one USO write.
// Hostile headers are refused, never read past.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadNativeAddon } from '../../../src/native/addon.js';
import { prng } from '../../harness/prng.js';
import { fold, sum16 } from '../../harness/checksum.js';

const native = loadNativeAddon();
const skip = native ? false : 'native addon not built';

const VNET = 10;
const GSO_NONE = 0;
const GSO_TCPV4 = 1;
const GSO_TCPV6 = 4;
const F_NEEDS_CSUM = 1;
const SLOT = 1500;

/** True when the IP header checksum (v4) and the TCP checksum of `p` verify. */
function checksumsOk(p: Buffer): boolean {
  const v6 = p[0]! >> 4 === 6;
  const iphl = v6 ? 40 : (p[0]! & 15) * 4;
  if (!v6 && fold(sum16(p.subarray(0, iphl))) !== 0xffff) return false;
  const l4 = p.subarray(iphl);
  const pseudo = v6 ? sum16(p.subarray(8, 40)) : sum16(p.subarray(12, 20));
  return fold(sum16(l4, pseudo + 6 + l4.length)) === 0xffff;
}

function ipTcp(v6: boolean, payload: Buffer, opts: { seq?: number; flags?: number; id?: number; options?: Buffer } = {}): Buffer {
  const tcpOpts = opts.options ?? Buffer.alloc(0);
  const thl = 20 + tcpOpts.length;
  const iphl = v6 ? 40 : 20;
  const p = Buffer.alloc(iphl + thl + payload.length);
  if (v6) {
    p[0] = 0x60;
    p.writeUInt16BE(thl + payload.length, 4);
    p[6] = 6;
    p[7] = 64;
    Buffer.from('fd00000000000000000000000000000a', 'hex').copy(p, 8);
    Buffer.from('fd00000000000000000000000000000b', 'hex').copy(p, 24);
  } else {
    p[0] = 0x45;
    p.writeUInt16BE(p.length, 2);
    p.writeUInt16BE(opts.id ?? 0x1234, 4);
    p.writeUInt16BE(0x4000, 6); // DF
    p[8] = 64;
    p[9] = 6;
    Buffer.from([100, 64, 0, 1, 100, 64, 0, 2]).copy(p, 12);
  }
  const t = iphl;
  p.writeUInt16BE(40000, t);
  p.writeUInt16BE(5201, t + 2);
  p.writeUInt32BE(opts.seq ?? 1000, t + 4);
  p.writeUInt32BE(777, t + 8);
  p[t + 12] = (thl / 4) << 4;
  p[t + 13] = opts.flags ?? 0x18; // ACK|PSH
  p.writeUInt16BE(500, t + 14);
  tcpOpts.copy(p, t + 20);
  payload.copy(p, iphl + thl);
  return p;
}

function vnetHdr(gso: number, gsoSize: number, hdrLen: number, csumStart = 0, csumOffset = 0, flags = 0): Buffer {
  const h = Buffer.alloc(VNET);
  h[0] = flags;
  h[1] = gso;
  h.writeUInt16LE(hdrLen, 2);
  h.writeUInt16LE(gsoSize, 4);
  h.writeUInt16LE(csumStart, 6);
  h.writeUInt16LE(csumOffset, 8);
  return h;
}

function segment(input: Buffer): Buffer[] | number {
  const out = Buffer.alloc(SLOT * 160);
  const lens = new Uint32Array(160);
  const n = native!.vnetSegment(input, 0, input.length, out, SLOT, lens);
  if (n <= 0) return n;
  return Array.from({ length: n }, (_, i) => Buffer.from(out.subarray(i * SLOT, i * SLOT + lens[i]!)));
}

/** Writes `packets` through tunWriteMany into a file and returns the file's bytes and the count written. */
function writeMany(packets: Buffer[], vnet: boolean, uso = false): { bytes: Buffer; written: number } {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-offload-'));
  const file = join(dir, 'tun');
  const fd = openSync(file, 'w');
  try {
    const buf = Buffer.alloc(packets.reduce((s, p) => s + p.length + VNET, 0));
    const offs = new Uint32Array(packets.length);
    const lens = new Uint32Array(packets.length);
    let at = 0;
    packets.forEach((p, i) => {
      at += VNET;
      p.copy(buf, at);
      offs[i] = at;
      lens[i] = p.length;
      at += p.length;
    });
    const written = native!.tunWriteMany(fd, buf, offs, lens, packets.length, vnet, Buffer.alloc(65546 + 64), uso);
    closeSync(fd);
    return { bytes: readFileSync(file), written };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Splits a capture of vnet writes into [header, packet] pairs using the IP length fields. */
function splitWrites(bytes: Buffer): { hdr: Buffer; pkt: Buffer }[] {
  const res: { hdr: Buffer; pkt: Buffer }[] = [];
  for (let at = 0; at < bytes.length; ) {
    const hdr = bytes.subarray(at, at + VNET);
    const ip = bytes.subarray(at + VNET);
    const len = ip[0]! >> 4 === 6 ? 40 + ip.readUInt16BE(4) : ip.readUInt16BE(2);
    res.push({ hdr, pkt: ip.subarray(0, len) });
    at += VNET + len;
  }
  return res;
}

for (const v6 of [false, true]) {
  const fam = v6 ? 'IPv6' : 'IPv4';
  test(`${fam}: a TSO segment is cut into packets with valid checksums, consecutive seqs and NIC-like flags`, { skip }, () => {
    const payload = Buffer.from(Array.from({ length: 3500 }, (_, i) => i % 251));
    const opts = Buffer.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]); // NOP NOP timestamps
    const big = ipTcp(v6, payload, { flags: 0x19 | 0x80, options: opts }); // ACK|PSH|FIN|CWR
    const hl = (v6 ? 40 : 20) + 32;
    const segs = segment(Buffer.concat([vnetHdr(v6 ? GSO_TCPV6 : GSO_TCPV4, 1000, hl, v6 ? 40 : 20, 16, F_NEEDS_CSUM), big]));
    assert.ok(Array.isArray(segs));
    assert.equal(segs.length, 4);
    const t = v6 ? 40 : 20;
    segs.forEach((s, i) => {
      const chunk = i < 3 ? 1000 : 500;
      assert.equal(s.length, hl + chunk);
      assert.ok(checksumsOk(s), `segment ${i} checksums verify`);
      assert.equal(s.readUInt32BE(t + 4), 1000 + i * 1000, 'sequence number');
      if (!v6) assert.equal(s.readUInt16BE(4), 0x1234 + i, 'IP id increments');
      const flags = s[t + 13]!;
      assert.equal(Boolean(flags & 0x80), i === 0, 'CWR only on the first');
      assert.equal(Boolean(flags & 0x09), i === 3, 'PSH and FIN only on the last');
      assert.deepEqual(s.subarray(t + 20, t + 32), opts, 'options copied');
      assert.deepEqual(s.subarray(hl), payload.subarray(i * 1000, i * 1000 + chunk));
    });
  });

  test(`${fam}: tunWriteMany merges the segments back into one GSO write`, { skip }, () => {
    const payload = Buffer.from(Array.from({ length: 4000 }, (_, i) => (i * 7) % 256));
    const hl = v6 ? 60 : 40;
    const big = ipTcp(v6, payload, { flags: 0x18 });
    const segs = segment(Buffer.concat([vnetHdr(v6 ? GSO_TCPV6 : GSO_TCPV4, 1200, hl), big])) as Buffer[];
    assert.equal(segs.length, 4);
    const { bytes, written } = writeMany(segs, true);
    assert.equal(written, 4, 'all four accounted for');
    const writes = splitWrites(bytes);
    assert.equal(writes.length, 1, 'one write');
    const { hdr, pkt } = writes[0]!;
    assert.equal(hdr[0], F_NEEDS_CSUM);
    assert.equal(hdr[1], v6 ? GSO_TCPV6 : GSO_TCPV4);
    assert.equal(hdr.readUInt16LE(2), hl, 'hdr_len');
    assert.equal(hdr.readUInt16LE(4), 1200, 'gso_size');
    assert.equal(hdr.readUInt16LE(6), v6 ? 40 : 20, 'csum_start');
    assert.equal(hdr.readUInt16LE(8), 16, 'csum_offset');
    assert.deepEqual(pkt.subarray(hl), payload, 'payload restored in order');
    assert.equal(pkt[hl - 20 + 13], 0x18, 'PSH of the last segment kept');
    if (!v6) assert.equal(fold(sum16(pkt.subarray(0, 20))), 0xffff, 'IPv4 header checksum');
  });
}

// The cut sums every payload byte (64-bit words into a 128-bit accumulator, then the 4-, 2- and 1-byte tail): payloads
// that carry out of every word (all 0xff), sum to zero, or are random, at odd segment sizes and odd last lengths.
test('TSO cut checksums verify for carrying, zero and random payloads at odd lengths', { skip }, () => {
  const next = prng(23);
  for (const v6 of [false, true]) {
    for (const fill of ['ff', '00', 'random'] as const) {
      for (const [len, mss] of [[4001, 1001], [2777, 1337], [65, 31], [1459, 1400]] as const) {
        const payload = fill === 'random' ? Buffer.from(Array.from({ length: len }, () => Math.floor(next() * 256))) : Buffer.alloc(len, fill === 'ff' ? 0xff : 0);
        const hl = v6 ? 60 : 40;
        const segs = segment(Buffer.concat([vnetHdr(v6 ? GSO_TCPV6 : GSO_TCPV4, mss, hl, v6 ? 40 : 20, 16, F_NEEDS_CSUM), ipTcp(v6, payload, { flags: 0x18 })]));
        assert.ok(Array.isArray(segs), `${fill} ${len}/${mss}`);
        assert.equal(segs.length, Math.ceil(len / mss));
        segs.forEach((s, i) => assert.ok(checksumsOk(s), `${v6 ? 'v6' : 'v4'} ${fill} ${len}/${mss}: segment ${i} checksums verify`));
        assert.deepEqual(Buffer.concat(segs.map((s) => s.subarray(hl))), payload);
      }
    }
  }
});

test('tunWriteMany leaves alone what GRO would not merge: gaps, other flows, SYN, short then long', { skip }, () => {
  const p = (seq: number, len: number, flags = 0x10, v6 = false): Buffer => ipTcp(v6, Buffer.alloc(len, 1), { seq, flags });
  const cases: { name: string; pkts: Buffer[]; writes: number }[] = [
    { name: 'in order', pkts: [p(0, 100), p(100, 100), p(200, 50)], writes: 1 },
    { name: 'gap', pkts: [p(0, 100), p(150, 100)], writes: 2 },
    { name: 'SYN', pkts: [p(0, 100, 0x12), p(100, 100)], writes: 2 },
    { name: 'short then long', pkts: [p(0, 50), p(50, 100)], writes: 2 },
    { name: 'other family', pkts: [p(0, 100), p(100, 100, 0x10, true)], writes: 2 },
    { name: 'pure ACKs', pkts: [p(0, 0), p(0, 0)], writes: 2 },
  ];
  for (const c of cases) {
    const { bytes, written } = writeMany(c.pkts, true);
    assert.equal(written, c.pkts.length, c.name);
    const writes = splitWrites(bytes);
    assert.equal(writes.length, c.writes, c.name);
    if (c.writes === c.pkts.length) {
      writes.forEach((w, i) => {
        assert.ok(w.hdr.equals(Buffer.alloc(VNET)), `${c.name}: empty header`);
        assert.deepEqual(w.pkt, c.pkts[i], `${c.name}: packet unchanged`);
      });
    }
  }
  const plain = writeMany([p(0, 100), p(100, 100)], false);
  assert.equal(plain.bytes.length, 2 * 140, 'without vnet: packets written as they are');
});

test('a non-GSO packet with NEEDS_CSUM gets its checksum completed', { skip }, () => {
  const pkt = ipTcp(false, Buffer.from('hello, checksum'));
  // The kernel leaves the pseudo-header sum in the field.
  const pseudo = fold(sum16(pkt.subarray(12, 20)) + 6 + (pkt.length - 20));
  pkt.writeUInt16BE(pseudo, 36);
  pkt.writeUInt16BE(0, 10);
  pkt.writeUInt16BE(0xffff - fold(sum16(pkt.subarray(0, 20))), 10);
  const segs = segment(Buffer.concat([vnetHdr(GSO_NONE, 0, 0, 20, 16, F_NEEDS_CSUM), pkt])) as Buffer[];
  assert.equal(segs.length, 1);
  assert.ok(checksumsOk(segs[0]!));
});

test('hostile virtio headers are refused, never read or written past the buffers', { skip }, () => {
  const good = ipTcp(false, Buffer.alloc(3000, 9));
  assert.equal(segment(Buffer.alloc(5)), -1, 'shorter than the header');
  assert.equal(segment(Buffer.concat([vnetHdr(GSO_TCPV4, 0, 40), good])), -1, 'gso_size 0');
  assert.equal(segment(Buffer.concat([vnetHdr(GSO_TCPV6, 1000, 40), good])), -1, 'IPv4 packet labelled TCPV6');
  assert.equal(segment(Buffer.concat([vnetHdr(3, 1000, 40), good])), -1, 'UDP (UFO) not asked for');
  assert.equal(segment(Buffer.concat([vnetHdr(GSO_TCPV4, 8, 40), good])), -2, 'more segments than slots');
  assert.equal(segment(Buffer.concat([vnetHdr(GSO_NONE, 0, 0, 60000, 16, F_NEEDS_CSUM), good])), -1, 'csum_start past the end');
  assert.equal(segment(Buffer.concat([vnetHdr(GSO_TCPV4, 1000, 40), good.subarray(0, 100)])), -1, 'IP length disagrees');
  const next = prng(4);
  const rnd = { int: (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1)) };
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.concat([vnetHdr(rnd.int(0, 5), rnd.int(0, 2000), rnd.int(0, 100), rnd.int(0, 100), rnd.int(0, 40), rnd.int(0, 3)), good]);
    for (let k = rnd.int(0, 6); k > 0; k--) b[rnd.int(0, 80)] = rnd.int(0, 255);
    const r = segment(b.subarray(0, rnd.int(0, b.length)));
    assert.ok(typeof r === 'number' ? r === -1 || r === -2 : r.length >= 1);
  }
});

// ---- UDP segmentation offload (USO): VIRTIO_NET_HDR_GSO_UDP_L4 super-frames in, merged datagrams out ----

const GSO_UDP_L4 = 5;

function ipUdp(v6: boolean, payload: Buffer, opts: { id?: number; sport?: number; tos?: number } = {}): Buffer {
  const iphl = v6 ? 40 : 20;
  const p = Buffer.alloc(iphl + 8 + payload.length);
  if (v6) {
    p[0] = 0x60;
    p.writeUInt16BE(8 + payload.length, 4);
    p[6] = 17;
    p[7] = 64;
    Buffer.from('fd00000000000000000000000000000a', 'hex').copy(p, 8);
    Buffer.from('fd00000000000000000000000000000b', 'hex').copy(p, 24);
  } else {
    p[0] = 0x45;
    p[1] = opts.tos ?? 0;
    p.writeUInt16BE(p.length, 2);
    p.writeUInt16BE(opts.id ?? 0x2000, 4);
    p.writeUInt16BE(0x4000, 6);
    p[8] = 64;
    p[9] = 17;
    Buffer.from([100, 64, 0, 1, 100, 64, 0, 2]).copy(p, 12);
    p.writeUInt16BE(0xffff - fold(sum16(p.subarray(0, 20))), 10);
  }
  p.writeUInt16BE(opts.sport ?? 40001, iphl);
  p.writeUInt16BE(5201, iphl + 2);
  p.writeUInt16BE(8 + payload.length, iphl + 4);
  payload.copy(p, iphl + 8);
  const l4 = p.subarray(iphl);
  const pseudo = v6 ? sum16(p.subarray(8, 40)) : sum16(p.subarray(12, 20));
  const c = 0xffff - fold(sum16(l4, pseudo + 17 + l4.length));
  p.writeUInt16BE(c === 0 ? 0xffff : c, iphl + 6);
  return p;
}

/** True when the IPv4 header checksum and the UDP checksum (with its length field) of `p` verify. */
function udpOk(p: Buffer): boolean {
  const v6 = p[0]! >> 4 === 6;
  const iphl = v6 ? 40 : 20;
  if (!v6 && fold(sum16(p.subarray(0, iphl))) !== 0xffff) return false;
  const l4 = p.subarray(iphl);
  if (p.readUInt16BE(iphl + 4) !== l4.length || p.readUInt16BE(iphl + 6) === 0) return false;
  const pseudo = v6 ? sum16(p.subarray(8, 40)) : sum16(p.subarray(12, 20));
  return fold(sum16(l4, pseudo + 17 + l4.length)) === 0xffff;
}

/** A USO super-frame as the kernel hands it to a TUN: one UDP header, the payload of every datagram after it. */
function usoFrame(v6: boolean, payload: Buffer, gsoSize: number, hdr: Partial<{ hdrLen: number; csumStart: number; csumOffset: number; flags: number }> = {}): Buffer {
  const iphl = v6 ? 40 : 20;
  const big = ipUdp(v6, payload);
  big.writeUInt16BE(0, iphl + 6); // partial checksum: what is there does not matter, every datagram gets its own
  return Buffer.concat([vnetHdr(GSO_UDP_L4, gsoSize, hdr.hdrLen ?? iphl + 8, hdr.csumStart ?? iphl, hdr.csumOffset ?? 6, hdr.flags ?? F_NEEDS_CSUM), big]);
}

for (const v6 of [false, true]) {
  const fam = v6 ? 'IPv6' : 'IPv4';
  test(`${fam}: a USO super-frame is cut into its datagrams, each with its own lengths and valid checksums`, { skip }, () => {
    const payload = Buffer.from(Array.from({ length: 4 * 1200 + 333 }, (_, i) => (i * 13) % 256));
    const segs = segment(usoFrame(v6, payload, 1200));
    assert.ok(Array.isArray(segs));
    assert.equal(segs.length, 5);
    const iphl = v6 ? 40 : 20;
    segs.forEach((s, i) => {
      const chunk = i < 4 ? 1200 : 333;
      assert.equal(s.length, iphl + 8 + chunk, `datagram ${i} length`);
      assert.ok(udpOk(s), `datagram ${i} checksums verify`);
      if (!v6) assert.equal(s.readUInt16BE(4), 0x2000 + i, 'IP id increments');
      else assert.equal(s.readUInt16BE(4), 8 + chunk, 'IPv6 payload length');
      assert.equal(s.readUInt16BE(iphl), 40001, 'ports kept');
      assert.deepEqual(s.subarray(iphl + 8), payload.subarray(i * 1200, i * 1200 + chunk), 'payload boundaries kept');
    });
  });

  test(`${fam}: tunWriteMany with uso merges equal-sized datagrams of one flow into one USO write`, { skip }, () => {
    const dgrams = [0, 1, 2, 3].map((k) => ipUdp(v6, Buffer.alloc(k === 3 ? 500 : 1000, k + 1), { id: 0x3000 + k }));
    const { bytes, written } = writeMany(dgrams, true, true);
    assert.equal(written, 4);
    const writes = splitWrites(bytes);
    assert.equal(writes.length, 1, 'one write');
    const { hdr, pkt } = writes[0]!;
    const iphl = v6 ? 40 : 20;
    assert.equal(hdr[0], F_NEEDS_CSUM);
    assert.equal(hdr[1], GSO_UDP_L4);
    assert.equal(hdr.readUInt16LE(2), iphl + 8, 'hdr_len');
    assert.equal(hdr.readUInt16LE(4), 1000, 'gso_size');
    assert.equal(hdr.readUInt16LE(6), iphl, 'csum_start');
    assert.equal(hdr.readUInt16LE(8), 6, 'csum_offset');
    assert.equal(pkt.length, iphl + 8 + 3500);
    assert.equal(pkt.readUInt16BE(iphl + 4), 8 + 3500, 'UDP length covers the merged payload');
    const pseudo = fold((v6 ? sum16(pkt.subarray(8, 40)) : sum16(pkt.subarray(12, 20))) + 17 + 8 + 3500);
    assert.equal(pkt.readUInt16BE(iphl + 6), pseudo, 'checksum field: the pseudo-header sum (CHECKSUM_PARTIAL)');
    if (!v6) assert.equal(fold(sum16(pkt.subarray(0, 20))), 0xffff, 'IPv4 header checksum');
    // The kernel's segmentation of this write gives back the datagrams (our splitter does what it does).
    const again = segment(Buffer.concat([hdr, pkt])) as Buffer[];
    assert.equal(again.length, 4);
    again.forEach((s, i) => assert.deepEqual(s.subarray(iphl + 8), dgrams[i]!.subarray(iphl + 8)));
  });
}

test('UDP datagrams are merged only where a USO write keeps them as they were', { skip }, () => {
  const d = (len: number, o: { sport?: number; tos?: number } = {}, v6 = false): Buffer => ipUdp(v6, Buffer.alloc(len, 3), o);
  const cases: { name: string; pkts: Buffer[]; writes: number }[] = [
    { name: 'equal sizes', pkts: [d(800), d(800), d(800)], writes: 1 },
    { name: 'short then long', pkts: [d(400), d(800)], writes: 2 },
    { name: 'other flow', pkts: [d(800), d(800, { sport: 1 })], writes: 2 },
    { name: 'other TOS', pkts: [d(800), d(800, { tos: 0x10 })], writes: 2 },
    { name: 'other family', pkts: [d(800), d(800, {}, true)], writes: 2 },
    { name: 'empty datagrams', pkts: [d(0), d(0)], writes: 2 },
  ];
  for (const c of cases) {
    const { bytes, written } = writeMany(c.pkts, true, true);
    assert.equal(written, c.pkts.length, c.name);
    assert.equal(splitWrites(bytes).length, c.writes, c.name);
  }
  const lying = d(800);
  lying.writeUInt16BE(100, 24); // UDP length says less than the packet holds
  assert.equal(splitWrites(writeMany([lying, d(800)], true, true).bytes).length, 2, 'a UDP length that disagrees is never merged');
  const sixty = Array.from({ length: 70 }, () => d(900));
  assert.equal(splitWrites(writeMany(sixty, true, true).bytes).length, 2, 'at most 64 datagrams per USO write');
  assert.equal(splitWrites(writeMany([d(800), d(800)], true, false).bytes).length, 2, 'without uso: one write each');
});

test('hostile USO super-frames are refused, never read or written past the buffers', { skip }, () => {
  const payload = Buffer.alloc(3000, 5);
  assert.equal(segment(usoFrame(false, payload, 0)), -1, 'gso_size 0');
  assert.equal(segment(usoFrame(false, payload, 1000, { hdrLen: 60000 })), -1, 'hdr_len beyond the frame');
  assert.equal(segment(usoFrame(false, payload, 8)), -2, 'segment count overflow (more datagrams than slots)');
  assert.equal(segment(usoFrame(false, payload, 1000, { csumOffset: 16 })), -1, 'checksum offset not the UDP one');
  assert.equal(segment(usoFrame(false, payload, 1000, { csumStart: 0 })), -1, 'checksum start not the UDP header');
  assert.equal(segment(usoFrame(true, payload, 1000, { csumStart: 20 })), -1, 'IPv6: checksum start of an IPv4 header');
  assert.equal(segment(usoFrame(false, payload, 1480)), -1, 'datagrams larger than a slot');
  const tcpAsUdp = Buffer.concat([vnetHdr(GSO_UDP_L4, 1000, 28, 20, 6, F_NEEDS_CSUM), ipTcp(false, payload)]);
  assert.equal(segment(tcpAsUdp), -1, 'a TCP packet labelled UDP_L4');
  const frag = usoFrame(false, payload, 1000);
  frag.writeUInt16BE(0x2001, VNET + 6); // MF + offset: a fragment is no datagram to cut
  assert.equal(segment(frag), -1, 'an IPv4 fragment');
  const tcpWithUdpCsum = Buffer.concat([vnetHdr(GSO_TCPV4, 1000, 40, 20, 6, F_NEEDS_CSUM), ipTcp(false, payload)]);
  assert.equal(segment(tcpWithUdpCsum), -1, 'TCP GSO with a checksum offset that is not TCP\'s');
  const next = prng(19);
  const rnd = { int: (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1)) };
  for (let i = 0; i < 3000; i++) {
    const v6 = rnd.int(0, 1) === 1;
    const b = usoFrame(v6, payload.subarray(0, rnd.int(0, 3000)), rnd.int(0, 2000), { hdrLen: rnd.int(0, 100), csumStart: rnd.int(0, 60), csumOffset: rnd.int(0, 20), flags: rnd.int(0, 3) });
    for (let k = rnd.int(0, 6); k > 0; k--) b[rnd.int(0, 80)] = rnd.int(0, 255);
    const r = segment(b.subarray(0, rnd.int(0, b.length)));
    if (typeof r !== 'number') for (const s of r) assert.ok(s.length <= SLOT);
    else assert.ok(r === -1 || r === -2);
  }
});
