// The adapter's LAN frames in C (native/lan_frames.c, through lanSegment): a frame read with PACKET_VNET_HDR comes
// out as wire-size frames with full checksums — TCP super-frames (GRO/TSO, IPv4 and IPv6, with a VLAN tag) cut into
// segments exactly as a NIC would, UDP GSO super-datagrams into datagrams, partial checksums completed (Ethernet
// padding left out) — and hostile headers (offsets outside the frame, zero or huge gso_size, types we do not cut,
// more segments than slots, random bytes) are counted drops that never write outside the output.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildUdp, encodeEthernet, encodeIpv4, encodeIpv6, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ipv4HeaderChecksum, transportChecksum } from '../../../src/adapter/lan/index.js';
import { LAN_STATS, LAN_STATS_LEN, lanNative, MAX_FRAME, type LanNative } from '../../../src/adapter/lan-port.js';
import { nativeAvailable } from '../../../src/net/tun/native.js';
import { prng } from '../../harness/prng.js';
import { ADAPTER_MAC, GN_DUAL, PEER4, PEER6, SEED } from './fixtures.js';

const skip = nativeAvailable() ? false : 'native addon not built';
const native: LanNative | null = nativeAvailable() ? lanNative() : null;

const GSO_NONE = 0;
const GSO_TCPV4 = 1;
const GSO_UDP = 3;
const GSO_TCPV6 = 4;
const GSO_UDP_L4 = 5;
const NEEDS_CSUM = 1;

function vnet(h: { flags?: number; gso?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number }): Buffer {
  const b = Buffer.alloc(10);
  b[0] = h.flags ?? 0;
  b[1] = h.gso ?? GSO_NONE;
  b.writeUInt16LE(h.hdrLen ?? 0, 2);
  b.writeUInt16LE(h.gsoSize ?? 0, 4);
  b.writeUInt16LE(h.csumStart ?? 0, 6);
  b.writeUInt16LE(h.csumOffset ?? 0, 8);
  return b;
}

/** A TCP segment (32-byte header: NOP NOP timestamps) with the checksum field as given (null: the full checksum). */
function tcpPacket(v: 4 | 6, seq: number, flags: number, payload: Buffer, opts: { id?: number; partial?: boolean } = {}): Buffer {
  const seg = Buffer.alloc(32 + payload.length);
  seg.writeUInt16BE(40000, 0);
  seg.writeUInt16BE(5001, 2);
  seg.writeUInt32BE(seq >>> 0, 4);
  seg.writeUInt32BE(0x01020304, 8);
  seg[12] = 8 << 4;
  seg[13] = flags;
  seg.writeUInt16BE(502, 14);
  seg.set([1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9], 20);
  payload.copy(seg, 32);
  const [src, dst] = v === 4 ? [GN_DUAL.vip4!, PEER4] : [GN_DUAL.vip6!, PEER6];
  const ip = v === 4 ? encodeIpv4({ src, dst, protocol: 6, payload: seg, id: opts.id ?? 0 }) : encodeIpv6({ src, dst, nextHeader: 6, payload: seg });
  const l4 = v === 4 ? 20 : 40;
  const s = ip.subarray(l4);
  const full = transportChecksum(ip.subarray(v === 4 ? 12 : 8, v === 4 ? 16 : 24), ip.subarray(v === 4 ? 16 : 24, v === 4 ? 20 : 40), 6, s);
  // CHECKSUM_PARTIAL leaves the folded pseudo-header sum in the field: complement of the checksum of a zero segment.
  const zero = Buffer.alloc(s.length);
  const pseudo = ~transportChecksum(ip.subarray(v === 4 ? 12 : 8, v === 4 ? 16 : 24), ip.subarray(v === 4 ? 16 : 24, v === 4 ? 20 : 40), 6, zero) & 0xffff;
  s.writeUInt16BE(opts.partial ? pseudo : full, 16);
  return ip;
}

function frameOf(ip: Buffer, vlan = false): Buffer {
  const v = ip[0]! >> 4;
  return encodeEthernet({ dst: ADAPTER_MAC, src: GN_DUAL.mac, ethertype: v === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6, payload: ip, ...(vlan ? { vlan: { pcp: 0, dei: false, vid: 7 } } : {}) });
}

function run(input: Buffer, slots = 64): { n: number; frames: Buffer[]; stats: Record<string, number> } {
  const out = Buffer.alloc(slots * MAX_FRAME + 18);
  const lengths = new Uint32Array(slots);
  const st = new Uint32Array(LAN_STATS_LEN);
  const copy = Buffer.from(input);
  const n = native!.lanSegment(input, 0, input.length, out, MAX_FRAME, lengths, st);
  assert.deepEqual(input, copy, 'the input is not modified');
  const frames: Buffer[] = [];
  for (let i = 0; i < Math.max(n, 0); i++) {
    assert.ok(lengths[i]! <= MAX_FRAME);
    frames.push(Buffer.from(out.subarray(i * MAX_FRAME, i * MAX_FRAME + lengths[i]!)));
  }
  const stats: Record<string, number> = {};
  LAN_STATS.forEach((k, i) => {
    if (st[i]) stats[k] = st[i]!;
  });
  return { n, frames, stats };
}

function payloadBytes(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + 3) & 255;
  return b;
}

for (const v of [4, 6] as const) {
  for (const vlan of [false, true]) {
    test(`a TCP super-frame over IPv${v}${vlan ? ' (VLAN-tagged)' : ''} is cut into wire-size segments, as a NIC's TSO would`, { skip }, () => {
      const mss = 1348;
      const data = payloadBytes(10 * mss + 123);
      const ip = tcpPacket(v, 0xfffff000, 0x18 | 0x80, data, { id: 0xfffe, partial: true }); // ACK|PSH|CWR, seq wraps
      const eth = frameOf(ip, vlan);
      const l2 = vlan ? 18 : 14;
      const hdr = vnet({ flags: NEEDS_CSUM, gso: v === 4 ? GSO_TCPV4 : GSO_TCPV6, hdrLen: l2 + (v === 4 ? 20 : 40) + 32, gsoSize: mss, csumStart: l2 + (v === 4 ? 20 : 40), csumOffset: 16 });
      const { n, frames, stats } = run(Buffer.concat([hdr, eth]));
      assert.equal(n, 11);
      assert.deepEqual(stats, { 'lan.rx.frames': 11, 'lan.rx.gso.tcp': 1, 'lan.rx.segments': 11 });
      const got: Buffer[] = [];
      frames.forEach((f, i) => {
        assert.deepEqual(f.subarray(0, l2), eth.subarray(0, l2), 'the Ethernet header (and tag) of the super-frame');
        const p = f.subarray(l2);
        const ihl = v === 4 ? 20 : 40;
        const body = i < 10 ? mss : 123;
        assert.equal(p.length, ihl + 32 + body);
        if (v === 4) {
          assert.equal(p.readUInt16BE(2), p.length);
          assert.equal(p.readUInt16BE(4), (0xfffe + i) & 0xffff, 'IPv4 ids count up');
          assert.equal(ipv4HeaderChecksum(p.subarray(0, 20)), p.readUInt16BE(10));
        } else assert.equal(p.readUInt16BE(4), 32 + body);
        const tcp = p.subarray(ihl);
        assert.equal(tcp.readUInt32BE(4), (0xfffff000 + i * mss) >>> 0);
        assert.equal(tcp[13], i === 10 ? 0x18 : i === 0 ? 0x10 | 0x80 : 0x10, 'PSH on the last, CWR on the first only');
        const src = v === 4 ? p.subarray(12, 16) : p.subarray(8, 24);
        const dst = v === 4 ? p.subarray(16, 20) : p.subarray(24, 40);
        assert.equal(transportChecksum(src, dst, 6, tcp), 0, `segment ${i} checksum`);
        got.push(Buffer.from(tcp.subarray(32)));
      });
      assert.deepEqual(Buffer.concat(got), data);
    });
  }

  test(`a UDP GSO super-datagram over IPv${v} is cut into its datagrams`, { skip }, () => {
    const size = 1200;
    const data = payloadBytes(5 * size + 77);
    const ip = buildUdp({ src: v === 4 ? GN_DUAL.vip4! : GN_DUAL.vip6!, dst: v === 4 ? PEER4 : PEER6, srcPort: 5353, dstPort: 9999, payload: data });
    const eth = frameOf(ip);
    const { n, frames, stats } = run(Buffer.concat([vnet({ flags: NEEDS_CSUM, gso: GSO_UDP_L4, gsoSize: size, csumStart: 14 + (v === 4 ? 20 : 40), csumOffset: 6 }), eth]));
    assert.equal(n, 6);
    assert.deepEqual(stats, { 'lan.rx.frames': 6, 'lan.rx.gso.udp': 1, 'lan.rx.segments': 6 });
    const got: Buffer[] = [];
    frames.forEach((f, i) => {
      const p = f.subarray(14);
      const ihl = v === 4 ? 20 : 40;
      const want = buildUdp({ src: v === 4 ? GN_DUAL.vip4! : GN_DUAL.vip6!, dst: v === 4 ? PEER4 : PEER6, srcPort: 5353, dstPort: 9999, payload: data.subarray(i * size, Math.min((i + 1) * size, data.length)) });
      if (v === 4) {
        assert.equal(p.readUInt16BE(4), i, 'IPv4 ids count up');
        assert.equal(ipv4HeaderChecksum(p.subarray(0, 20)), p.readUInt16BE(10));
        assert.deepEqual(p.subarray(ihl), want.subarray(ihl), 'the datagram a sender without GSO would have sent');
      } else assert.deepEqual(p, want);
      got.push(Buffer.from(p.subarray(ihl + 8)));
    });
    assert.deepEqual(Buffer.concat(got), data);
  });
}

test('a partial checksum (CHECKSUM_PARTIAL) is completed; Ethernet padding is not summed', { skip }, () => {
  const good = buildUdp({ src: GN_DUAL.vip4!, dst: PEER4, srcPort: 1234, dstPort: 53, payload: Buffer.from('hi!') });
  const eth = frameOf(good);
  const want = Buffer.from(eth);
  // The field holds the pseudo-header sum (folded, not complemented), as a local sender leaves it.
  const pseudo = [0x6440, 0x000a, 0x6440, 0x0014, 17, 8 + 3].reduce((s, x) => s + x, 0);
  const partial = Buffer.concat([eth, Buffer.alloc(60 - eth.length, 0xee)]); // padded to the Ethernet minimum
  partial.writeUInt16BE(((pseudo & 0xffff) + (pseudo >>> 16)) & 0xffff, 14 + 20 + 6);
  const { n, frames, stats } = run(Buffer.concat([vnet({ flags: NEEDS_CSUM, csumStart: 34, csumOffset: 6 }), partial]));
  assert.equal(n, 1);
  assert.deepEqual(frames[0]!.subarray(0, want.length), want);
  assert.deepEqual(stats, { 'lan.rx.frames': 1, 'lan.rx.csum-completed': 1 });
  // A TCP segment over IPv6 too.
  const tcp = frameOf(tcpPacket(6, 1, 0x10, payloadBytes(100), { partial: true }));
  const r6 = run(Buffer.concat([vnet({ flags: NEEDS_CSUM, csumStart: 54, csumOffset: 16 }), tcp]));
  assert.deepEqual(r6.frames[0], frameOf(tcpPacket(6, 1, 0x10, payloadBytes(100))));
  // Without NEEDS_CSUM a frame passes untouched.
  assert.deepEqual(run(Buffer.concat([vnet({}), partial])).frames[0], partial);
});

test('hostile headers are counted drops: offsets outside the frame, zero/huge gso_size, uncut types, too many segments', { skip }, () => {
  const ip = tcpPacket(4, 1, 0x10, payloadBytes(5000));
  const eth = frameOf(ip);
  const drop = (h: Buffer, body = eth, slots = 64): Record<string, number> => {
    const r = run(Buffer.concat([h, body]), slots);
    assert.ok(r.n <= 0, `dropped (${r.n})`);
    return r.stats;
  };
  assert.deepEqual(drop(vnet({ flags: NEEDS_CSUM, csumStart: 9000, csumOffset: 16 }), frameOf(tcpPacket(4, 1, 0x10, payloadBytes(10)))), { 'lan.rx.drop.malformed': 1 });
  assert.deepEqual(drop(vnet({ flags: NEEDS_CSUM, csumStart: 34, csumOffset: 0xffff }), frameOf(tcpPacket(4, 1, 0x10, payloadBytes(10)))), { 'lan.rx.drop.malformed': 1 });
  assert.deepEqual(drop(vnet({ gso: GSO_TCPV4, gsoSize: 0 })), { 'lan.rx.drop.malformed': 1 });
  assert.deepEqual(drop(vnet({ gso: GSO_TCPV4, gsoSize: 9000 })), { 'lan.rx.drop.too-big': 1 });
  assert.deepEqual(drop(vnet({ gso: GSO_TCPV6, gsoSize: 1000 })), { 'lan.rx.drop.malformed': 1 }, 'GSO type and ethertype disagree');
  assert.deepEqual(drop(vnet({ gso: GSO_UDP, gsoSize: 1000 })), { 'lan.rx.drop.gso-unsupported': 1 });
  assert.deepEqual(drop(vnet({ gso: GSO_UDP_L4, gsoSize: 1000 })), { 'lan.rx.drop.malformed': 1 }, 'UDP GSO on a TCP packet');
  assert.deepEqual(drop(vnet({}), Buffer.concat([eth, eth])), { 'lan.rx.drop.too-big': 1 }, 'a plain frame longer than a slot');
  // A lying IPv4 length.
  const liar = Buffer.from(eth);
  liar.writeUInt16BE(60000, 16);
  assert.deepEqual(drop(vnet({ gso: GSO_TCPV4, gsoSize: 1000 }), liar), { 'lan.rx.drop.malformed': 1 });
  // More segments than slots: -2, nothing counted (lanRecv keeps the frame for its next call).
  const r = run(Buffer.concat([vnet({ gso: GSO_TCPV4, gsoSize: 100 }), eth]), 8);
  assert.equal(r.n, -2);
});

test('random headers and frames never write outside the output and are all accounted for', { skip }, () => {
  const rnd = prng(SEED);
  const base = [frameOf(tcpPacket(4, 5, 0x10, payloadBytes(3000))), frameOf(tcpPacket(6, 5, 0x10, payloadBytes(3000))),
    frameOf(buildUdp({ src: GN_DUAL.vip6!, dst: PEER6, srcPort: 1, dstPort: 2, payload: payloadBytes(3000) }))];
  const slots = 16;
  for (let i = 0; i < 3000; i++) {
    const f = Buffer.from(base[i % base.length]!.subarray(0, 14 + Math.floor(rnd() * (base[i % base.length]!.length - 13))));
    for (let k = Math.floor(rnd() * 4); k > 0; k--) f[Math.floor(rnd() * f.length)] = Math.floor(rnd() * 256);
    const h = vnet({ flags: Math.floor(rnd() * 4), gso: [0, 1, 3, 4, 5, 0x81, 0x84, 9][Math.floor(rnd() * 8)]!, gsoSize: Math.floor(rnd() * 3000), csumStart: Math.floor(rnd() * 3100), csumOffset: Math.floor(rnd() * 40), hdrLen: Math.floor(rnd() * 200) });
    const out = Buffer.alloc(slots * MAX_FRAME + 18 + 64, 0xab);
    const lengths = new Uint32Array(slots);
    const st = new Uint32Array(LAN_STATS_LEN);
    const input = Buffer.concat([h, f]);
    const n = native!.lanSegment(input, 0, input.length, out, MAX_FRAME, lengths, st);
    assert.ok(n === -2 || (n >= 0 && n <= slots));
    assert.ok(out.subarray(slots * MAX_FRAME + 18).every((b) => b === 0xab), 'nothing written past the output');
    for (let k = 0; k < n; k++) assert.ok(lengths[k]! >= 14 && lengths[k]! <= MAX_FRAME);
    const drops = st[5]! + st[6]! + st[7]! + st[8]!;
    assert.ok(n !== 0 || drops === 1, `a dropped frame is counted once (${Array.from(st).join(',')})`);
  }
});
