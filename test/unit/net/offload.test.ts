// The addon's packet offload helpers without a TUN device: vnetSegment cuts a TSO super-packet (virtio_net_hdr +
// TCP segment) into packets whose IP and TCP checksums verify and whose sequence numbers, IP ids and flags are what a
// NIC would produce; tunWriteMany merges such packets back into one GSO write (captured in a file) and writes
// anything that cannot be merged singly. Hostile headers are refused, never read past.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadNativeAddon } from '../../../src/native/addon.js';
import { prng } from '../../harness/prng.js';

const native = loadNativeAddon();
const skip = native ? false : 'native addon not built';

const VNET = 10;
const GSO_NONE = 0;
const GSO_TCPV4 = 1;
const GSO_TCPV6 = 4;
const F_NEEDS_CSUM = 1;
const SLOT = 1500;

/** RFC 1071 checksum over big-endian 16-bit words (plain JS, independent of the addon). */
function sum16(b: Uint8Array, s = 0): number {
  for (let i = 0; i + 1 < b.length; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (b.length % 2) s += b[b.length - 1]! << 8;
  return s;
}
function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}
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
function writeMany(packets: Buffer[], vnet: boolean): { bytes: Buffer; written: number } {
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
    const written = native!.tunWriteMany(fd, buf, offs, lens, packets.length, vnet, Buffer.alloc(65546 + 64));
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
