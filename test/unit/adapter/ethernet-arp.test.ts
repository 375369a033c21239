// Unit tests for the Ethernet II and ARP codecs: hand-built frames from the IEEE 802.3 / RFC 826
// layouts, 802.1Q handling, MAC helpers, every ARP rejection, and seeded fuzzing of both decoders.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BROADCAST_MAC,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  decodeEthernet,
  encodeEthernet,
  formatMac,
  isMulticastMac,
  macBytes,
  normalizeMac,
  parseMac,
} from '../../../src/adapter/lan/ethernet.js';
import { ARP_REPLY, ARP_REQUEST, decodeArp, encodeArp, isArpProbe, isGratuitousArp } from '../../../src/adapter/lan/arp.js';
import { SEED, fuzz, hex, isDecodeError, mutate, randomBytes } from './fixtures.js';

// who-has 100.64.0.20 tell 100.64.0.10, from 52:54:00:12:34:56, padded to the 60-byte minimum.
const ARP_REQ = hex(`
  0001 0800 06 04 0001
  525400123456 6440000a
  000000000000 64400014`);
const FRAME = Buffer.concat([hex('ffffffffffff 525400123456 0806'), ARP_REQ, Buffer.alloc(18)]);

test('decodes an Ethernet II frame carrying an ARP request', () => {
  const f = decodeEthernet(FRAME);
  assert.equal(f.dst, BROADCAST_MAC);
  assert.equal(f.src, '52:54:00:12:34:56');
  assert.equal(f.ethertype, ETHERTYPE_ARP);
  assert.equal(f.vlan, null);
  assert.equal(f.payload.length, 46);
  const a = decodeArp(f.payload);
  assert.deepEqual(a, { op: ARP_REQUEST, senderMac: '52:54:00:12:34:56', senderIp: '100.64.0.10', targetMac: '00:00:00:00:00:00', targetIp: '100.64.0.20' });
  assert.ok(!isGratuitousArp(a));
  assert.ok(!isArpProbe(a));
});

test('Ethernet and ARP round trips reproduce the bytes', () => {
  const a = decodeArp(ARP_REQ);
  assert.deepEqual(encodeArp(a), ARP_REQ);
  const f = decodeEthernet(FRAME);
  assert.deepEqual(encodeEthernet(f), FRAME);
  const reply = { op: ARP_REPLY, senderMac: '02:00:00:00:00:01', senderIp: '100.64.0.20', targetMac: a.senderMac, targetIp: a.senderIp } as const;
  assert.deepEqual(decodeArp(encodeArp(reply)), reply);
});

test('one 802.1Q tag is decoded and re-encoded; stacked tags and QinQ are refused', () => {
  const tagged = Buffer.concat([hex('ffffffffffff 525400123456 8100 a00a 0806'), ARP_REQ]);
  const f = decodeEthernet(tagged);
  assert.deepEqual(f.vlan, { pcp: 5, dei: false, vid: 10 });
  assert.equal(f.ethertype, ETHERTYPE_ARP);
  assert.deepEqual(encodeEthernet(f), tagged);
  assert.throws(() => decodeEthernet(hex('ffffffffffff 525400123456 8100 000a 8100 000b 0806')), isDecodeError('ERR_ETH_DECODE'));
  assert.throws(() => decodeEthernet(hex('ffffffffffff 525400123456 88a8 000a 8100 000b 0806')), isDecodeError('ERR_ETH_DECODE'));
  assert.throws(() => decodeEthernet(hex('ffffffffffff 525400123456 8100 00')), isDecodeError('ERR_ETH_DECODE'));
  assert.throws(() => encodeEthernet({ ...f, vlan: { pcp: 8, dei: false, vid: 1 } }), RangeError);
});

test('short frames are refused; 802.3 length frames decode with their length as type', () => {
  for (let n = 0; n < 14; n++) assert.throws(() => decodeEthernet(FRAME.subarray(0, n)), isDecodeError('ERR_ETH_DECODE'));
  assert.equal(decodeEthernet(hex('0180c2000000 525400123456 0026 4242')).ethertype, 0x26);
  assert.equal(decodeEthernet(FRAME.subarray(0, 14)).payload.length, 0);
});

test('MAC helpers: parse, format, normalise, multicast bit', () => {
  assert.deepEqual(parseMac('52:54:00:AB:cd:ef'), hex('525400abcdef'));
  assert.deepEqual(parseMac('52-54-00-ab-cd-ef'), hex('525400abcdef'));
  for (const bad of ['52:54:00:ab:cd', '52:54-00:ab:cd:ef', '5254.00ab.cdef', '52:54:00:ab:cd:eg', '', ' 52:54:00:ab:cd:ef']) {
    assert.equal(parseMac(bad), undefined, bad);
  }
  assert.equal(normalizeMac('52-54-00-AB-CD-EF'), '52:54:00:ab:cd:ef');
  assert.equal(formatMac(hex('0000525400abcdef'), 2), '52:54:00:ab:cd:ef');
  assert.throws(() => macBytes('nope'), RangeError);
  assert.ok(isMulticastMac(BROADCAST_MAC));
  assert.ok(isMulticastMac('33:33:00:00:00:01'));
  assert.ok(isMulticastMac('01:00:5e:00:00:fb'));
  assert.ok(!isMulticastMac('52:54:00:12:34:56'));
});

test('ARP: everything but Ethernet/IPv4 with opcode 1 or 2 is refused', () => {
  const bad = (offset: number, bytes: string): Buffer => {
    const b = Buffer.from(ARP_REQ);
    hex(bytes).copy(b, offset);
    return b;
  };
  const cases = [
    bad(0, '0006'), // htype IEEE 802
    bad(2, '86dd'), // ptype IPv6
    bad(4, '08'), // hlen 8
    bad(5, '10'), // plen 16
    bad(6, '0003'), // RARP request
    bad(6, '0000'),
    ARP_REQ.subarray(0, 27),
    Buffer.alloc(0),
  ];
  for (const c of cases) assert.throws(() => decodeArp(c), isDecodeError('ERR_ARP_DECODE'), c.toString('hex'));
  assert.throws(() => encodeArp({ ...decodeArp(ARP_REQ), op: 3 as 1 }), RangeError);
  assert.throws(() => encodeArp({ ...decodeArp(ARP_REQ), senderIp: '1.2.3' }), RangeError);
});

test('gratuitous ARP and ARP probes are recognised', () => {
  const a = decodeArp(ARP_REQ);
  assert.ok(isGratuitousArp({ ...a, targetIp: a.senderIp }));
  assert.ok(isArpProbe({ ...a, senderIp: '0.0.0.0' }));
  assert.ok(!isArpProbe({ ...a, op: ARP_REPLY, senderIp: '0.0.0.0' }));
});

test('fuzz: random and mutated frames decode or throw DecodeError', () => {
  const n1 = fuzz(SEED, 4000, (rnd) => randomBytes(rnd, 80), decodeEthernet, (f) => assert.ok(f.payload.length >= 0));
  const n2 = fuzz(SEED + 1, 4000, (rnd) => mutate(rnd, FRAME), decodeEthernet, (f) => assert.deepEqual(decodeEthernet(encodeEthernet(f)), f));
  assert.ok(n1 > 100 && n2 > 1000, `${n1} ${n2}`);
});

test('fuzz: random and mutated ARP packets decode or throw DecodeError; decoded ones re-encode', () => {
  const n1 = fuzz(SEED + 2, 4000, (rnd) => randomBytes(rnd, 40), decodeArp);
  const n2 = fuzz(SEED + 3, 4000, (rnd) => mutate(rnd, ARP_REQ), decodeArp, (a) => assert.deepEqual(decodeArp(encodeArp(a)), a));
  assert.ok(n2 > 1000, `${n1} ${n2}`);
  assert.equal(ETHERTYPE_IPV4, 0x0800);
});
