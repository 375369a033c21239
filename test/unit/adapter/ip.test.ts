// Unit tests for the LAN layer's IPv4/IPv6/UDP/ICMPv6 codec: hand-built packets from the RFC 791 /
// RFC 8200 layouts, checksum and length errors, extension headers, address helpers, seeded fuzzing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildIcmpv6,
  buildUdp,
  decodeIcmpv6,
  decodeIp,
  decodeIpv4,
  decodeIpv6,
  decodeUdp,
  encodeIpv4,
  encodeIpv6,
  isLinkLocal6,
  isMulticast6,
  linkLocalFromMac,
  multicastMac,
  peekPorts,
  solicitedNodeAddress,
} from '../../../src/adapter/lan/ip.js';
import type { Ipv6Packet } from '../../../src/adapter/lan/ip.js';
import { pseudoHeader4, pseudoHeader6 } from '../../../src/adapter/lan/checksum.js';
import { SEED, fuzz, hex, isDecodeError, mutate, naiveChecksum, randomBytes } from './fixtures.js';

// 192.168.0.1:1234 → 192.168.0.199:5678, payload "hi!", TTL 64, DF, then 4 bytes of link padding.
function udp4Known(): Buffer {
  const seg = hex('04d2 162e 000b 0000 686921');
  const pseudo = pseudoHeader4(hex('c0a80001'), hex('c0a800c7'), 17, seg.length);
  seg.writeUInt16BE(naiveChecksum(Buffer.concat([pseudo, seg])), 6);
  const h = hex('4500 001f 1234 4000 4011 0000 c0a80001 c0a800c7');
  h.writeUInt16BE(naiveChecksum(h), 10);
  return Buffer.concat([h, seg, Buffer.alloc(4)]);
}

test('IPv4: a hand-built UDP packet decodes; link padding is stripped', () => {
  const buf = udp4Known();
  const ip = decodeIpv4(buf);
  assert.equal(ip.src, '192.168.0.1');
  assert.equal(ip.dst, '192.168.0.199');
  assert.equal(ip.protocol, 17);
  assert.equal(ip.ttl, 64);
  assert.equal(ip.id, 0x1234);
  assert.ok(ip.dontFragment);
  assert.ok(!ip.fragment);
  assert.equal(ip.packet.length, 31);
  const udp = decodeUdp(ip);
  assert.deepEqual({ s: udp.srcPort, d: udp.dstPort, p: Buffer.from(udp.payload).toString() }, { s: 1234, d: 5678, p: 'hi!' });
  assert.deepEqual(peekPorts(ip), { srcPort: 1234, dstPort: 5678 });
  assert.deepEqual(buildUdp({ src: '192.168.0.1', dst: '192.168.0.199', srcPort: 1234, dstPort: 5678, payload: Buffer.from('hi!') }).subarray(12), buf.subarray(12, 31));
});

test('IPv4: header errors and checksum errors have their own codes', () => {
  const good = udp4Known();
  const bad = (off: number, v: number): Buffer => {
    const b = Buffer.from(good);
    b[off] = v;
    return b;
  };
  assert.throws(() => decodeIpv4(good.subarray(0, 19)), isDecodeError('ERR_IP_DECODE'));
  assert.throws(() => decodeIpv4(bad(0, 0x65)), isDecodeError('ERR_IP_DECODE')); // version 6
  assert.throws(() => decodeIpv4(bad(0, 0x44)), isDecodeError('ERR_IP_DECODE')); // IHL 4
  assert.throws(() => decodeIpv4(bad(3, 0x13)), isDecodeError('ERR_IP_DECODE')); // total 19 < IHL
  assert.throws(() => decodeIpv4(bad(3, 0xff)), isDecodeError('ERR_IP_DECODE')); // longer than buffer
  assert.throws(() => decodeIpv4(bad(8, 0x3f)), isDecodeError('ERR_IP_CHECKSUM')); // TTL changed
  // UDP: bad checksum, bad length; checksum 0 means "none" over IPv4.
  const ip = decodeIpv4(good);
  const seg = Buffer.from(ip.payload);
  seg[8] = seg[8]! ^ 1;
  assert.throws(() => decodeUdp({ ...ip, payload: seg }), isDecodeError('ERR_IP_CHECKSUM'));
  seg.writeUInt16BE(0, 6);
  assert.equal(Buffer.from(decodeUdp({ ...ip, payload: seg }).payload).toString(), 'ii!');
  seg.writeUInt16BE(7, 4);
  assert.throws(() => decodeUdp({ ...ip, payload: seg }), isDecodeError('ERR_IP_DECODE'));
  seg.writeUInt16BE(12, 4);
  assert.throws(() => decodeUdp({ ...ip, payload: seg }), isDecodeError('ERR_IP_DECODE'));
  assert.throws(() => decodeUdp({ ...ip, protocol: 6 }), isDecodeError('ERR_IP_DECODE'));
  assert.throws(() => decodeUdp({ ...ip, fragment: true }), isDecodeError('ERR_IP_DECODE'));
});

test('IPv4 fragments are flagged and their ports are not peeked past the first', () => {
  const first = encodeIpv4({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 17, payload: hex('0035 0035 0010 0000'), dontFragment: false });
  first.writeUInt16BE(0x2000, 6); // MF
  first.writeUInt16BE(0, 10);
  first.writeUInt16BE(naiveChecksum(first.subarray(0, 20)), 10);
  const ip = decodeIpv4(first);
  assert.ok(ip.fragment);
  assert.deepEqual(peekPorts(ip), { srcPort: 53, dstPort: 53 });
  const later = Buffer.from(first);
  later.writeUInt16BE(0x0001, 6); // offset 8 bytes, last fragment
  later.writeUInt16BE(0, 10);
  later.writeUInt16BE(naiveChecksum(later.subarray(0, 20)), 10);
  const ip2 = decodeIpv4(later);
  assert.ok(ip2.fragment);
  assert.equal(ip2.fragmentOffset, 8);
  assert.equal(peekPorts(ip2), null);
});

// fe80::1 → ff02::2, ICMPv6 Router Solicitation (type 133) with hop limit 255.
function rsKnown(): Buffer {
  const src = hex('fe800000000000000000000000000001');
  const dst = hex('ff020000000000000000000000000002');
  const msg = hex('85 00 0000 00000000');
  msg.writeUInt16BE(naiveChecksum(Buffer.concat([pseudoHeader6(src, dst, 58, msg.length), msg])), 2);
  return Buffer.concat([hex('6000 0000 0008 3a ff'), src, dst, msg]);
}

test('IPv6: a hand-built ICMPv6 packet decodes and its checksum verifies', () => {
  const buf = rsKnown();
  const ip = decodeIpv6(buf);
  assert.equal(ip.src, 'fe80::1');
  assert.equal(ip.dst, 'ff02::2');
  assert.equal(ip.hopLimit, 255);
  assert.equal(ip.protocol, 58);
  const icmp = decodeIcmpv6(ip);
  assert.equal(icmp.type, 133);
  assert.equal(icmp.code, 0);
  assert.equal(icmp.body.length, 4);
  assert.deepEqual(buildIcmpv6({ src: 'fe80::1', dst: 'ff02::2', type: 133, body: Buffer.alloc(4) }), buf);
  const corrupt = Buffer.from(buf);
  corrupt[corrupt.length - 1] = corrupt[corrupt.length - 1]! ^ 0x10;
  assert.throws(() => decodeIcmpv6(decodeIpv6(corrupt)), isDecodeError('ERR_IP_CHECKSUM'));
  assert.equal(decodeIp(buf).version, 6);
  assert.equal(decodeIp(udp4Known()).version, 4);
  assert.throws(() => decodeIp(hex('50')), isDecodeError('ERR_IP_DECODE'));
  assert.throws(() => decodeIp(new Uint8Array(0)), isDecodeError('ERR_IP_DECODE'));
});

test('IPv6: traffic class, flow label, padding, truncation', () => {
  const p = encodeIpv6({ src: '2001:db8::1', dst: '2001:db8::2', nextHeader: 59, payload: Buffer.alloc(0), trafficClass: 0xb8, flowLabel: 0xabcde, hopLimit: 7 });
  const ip = decodeIpv6(Buffer.concat([p, Buffer.alloc(10)]));
  assert.deepEqual([ip.trafficClass, ip.flowLabel, ip.hopLimit, ip.packet.length], [0xb8, 0xabcde, 7, 40]);
  assert.throws(() => decodeIpv6(p.subarray(0, 39)), isDecodeError('ERR_IP_DECODE'));
  const long = Buffer.from(p);
  long.writeUInt16BE(1, 4);
  assert.throws(() => decodeIpv6(long), isDecodeError('ERR_IP_DECODE'));
  const v4 = Buffer.from(p);
  v4[0] = 0x40;
  assert.throws(() => decodeIpv6(v4), isDecodeError('ERR_IP_DECODE'));
});

test('IPv6 extension headers: Hop-by-Hop (router alert) is walked, a Fragment header marks a fragment', () => {
  const udp = buildUdp({ src: 'fe80::1', dst: 'ff02::1:2', srcPort: 546, dstPort: 547, payload: Buffer.from('x') });
  const seg = udp.subarray(40);
  const hbh = hex('11 00 05 02 0000 01 00'); // next = UDP, len 0, router alert, PadN
  const pkt = encodeIpv6({ src: 'fe80::1', dst: 'ff02::1:2', nextHeader: 0, payload: Buffer.concat([hbh, seg]) });
  const ip = decodeIpv6(pkt);
  assert.equal(ip.nextHeader, 0);
  assert.equal(ip.protocol, 17);
  assert.equal(Buffer.from(decodeUdp(ip).payload).toString(), 'x');
  const frag = encodeIpv6({ src: 'fe80::1', dst: 'ff02::1:2', nextHeader: 44, payload: Buffer.concat([hex('11 00 0001 12345678'), seg]) });
  const f = decodeIpv6(frag);
  assert.ok(f.fragment);
  assert.equal(f.protocol, 17);
  assert.equal(peekPorts(f), null);
  assert.throws(() => decodeUdp(f), isDecodeError('ERR_IP_DECODE'));
  // Hop-by-Hop after another header; a header running past the end; too many headers.
  const late = encodeIpv6({ src: 'fe80::1', dst: 'ff02::1', nextHeader: 60, payload: Buffer.concat([hex('00 00 0000 00000000'), hbh]) });
  assert.throws(() => decodeIpv6(late), isDecodeError('ERR_IP_DECODE'));
  const cut = encodeIpv6({ src: 'fe80::1', dst: 'ff02::1', nextHeader: 60, payload: hex('11 01 0000 00000000') });
  assert.throws(() => decodeIpv6(cut), isDecodeError('ERR_IP_DECODE'));
  const chain = encodeIpv6({ src: 'fe80::1', dst: 'ff02::1', nextHeader: 60, payload: Buffer.concat(Array.from({ length: 9 }, () => hex('3c 00 0000 00000000'))) });
  assert.throws(() => decodeIpv6(chain), isDecodeError('ERR_IP_DECODE'));
});

test('UDP over IPv6: zero checksum is refused; a computed zero is sent as 0xffff', () => {
  const pkt = buildUdp({ src: 'fe80::1', dst: 'fe80::2', srcPort: 1, dstPort: 2, payload: Buffer.alloc(0) });
  const ip = decodeIpv6(pkt);
  const seg = Buffer.from(ip.payload);
  seg.writeUInt16BE(0, 6);
  assert.throws(() => decodeUdp({ ...ip, payload: seg } as Ipv6Packet), isDecodeError('ERR_IP_CHECKSUM'));
  // With source port = the checksum computed for port 0, the sum becomes 0xffff and the checksum 0.
  const c0 = buildUdp({ src: '10.0.0.1', dst: '10.0.0.2', srcPort: 0, dstPort: 0, payload: Buffer.alloc(0) }).readUInt16BE(26);
  const p = buildUdp({ src: '10.0.0.1', dst: '10.0.0.2', srcPort: c0, dstPort: 0, payload: Buffer.alloc(0) });
  assert.equal(p.readUInt16BE(26), 0xffff);
  assert.equal(decodeUdp(decodeIpv4(p)).srcPort, c0);
});

test('encoders refuse bad fields with RangeError', () => {
  assert.throws(() => encodeIpv4({ src: '10.0.0.1', dst: '::1', protocol: 17, payload: Buffer.alloc(0) }), RangeError);
  assert.throws(() => encodeIpv4({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 256, payload: Buffer.alloc(0) }), RangeError);
  assert.throws(() => encodeIpv4({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 17, payload: Buffer.alloc(65516) }), RangeError);
  assert.throws(() => encodeIpv6({ src: '::1', dst: '1.2.3.4', nextHeader: 17, payload: Buffer.alloc(0) }), RangeError);
  assert.throws(() => encodeIpv6({ src: '::1', dst: '::2', nextHeader: 17, payload: Buffer.alloc(0), flowLabel: 1 << 20 }), RangeError);
  assert.throws(() => buildUdp({ src: '10.0.0.1', dst: '10.0.0.2', srcPort: 65536, dstPort: 1, payload: Buffer.alloc(0) }), RangeError);
  assert.throws(() => buildIcmpv6({ src: '::1', dst: '::2', type: 300, body: Buffer.alloc(0) }), RangeError);
});

test('IPv6 address helpers: EUI-64 link-local, solicited-node group, multicast MAC, scopes', () => {
  assert.equal(linkLocalFromMac('52:54:00:12:34:56'), 'fe80::5054:ff:fe12:3456');
  assert.equal(linkLocalFromMac('02:00:00:00:00:01'), 'fe80::ff:fe00:1');
  assert.equal(solicitedNodeAddress('fd12:3456:789a::20'), 'ff02::1:ff00:20');
  assert.equal(solicitedNodeAddress('2001:db8::abcd:ef12'), 'ff02::1:ffcd:ef12');
  assert.equal(multicastMac('ff02::1'), '33:33:00:00:00:01');
  assert.equal(multicastMac('ff02::1:ffcd:ef12'), '33:33:ff:cd:ef:12');
  assert.ok(isMulticast6('ff02::1') && isMulticast6('ff0e::101') && !isMulticast6('fe80::1') && !isMulticast6('f::'));
  assert.ok(isLinkLocal6('fe80::1') && isLinkLocal6('febf::1') && !isLinkLocal6('fec0::1') && !isLinkLocal6('fd00::1'));
});

test('fuzz: random and mutated IP packets decode (IP, UDP, ICMPv6) or throw DecodeError', () => {
  const all = (b: Uint8Array): void => {
    const ip = decodeIp(b);
    if (ip.protocol === 17) decodeUdp(ip);
    if (ip.version === 6 && ip.protocol === 58) decodeIcmpv6(ip);
    peekPorts(ip);
  };
  const seeds = [udp4Known(), rsKnown(), buildUdp({ src: 'fe80::1', dst: 'ff02::1:2', srcPort: 546, dstPort: 547, payload: Buffer.alloc(30, 1) })];
  const n1 = fuzz(SEED, 3000, (rnd) => randomBytes(rnd, 120), all);
  const n2 = fuzz(SEED + 1, 6000, (rnd, i) => mutate(rnd, seeds[i % seeds.length]!), all);
  // Mutations that keep the version nibble and lengths must still reach the checksum checks.
  const headers = fuzz(SEED + 2, 3000, (rnd) => mutate(rnd, rsKnown()).subarray(0, 48), decodeIp);
  assert.ok(n2 > 100 && headers > 100, `${n1} ${n2} ${headers}`);
});
