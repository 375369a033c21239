// Unit tests for the Internet checksum helpers: RFC 1071's worked example, a known IPv4 header,
// pseudo-header layouts, and agreement with an independent implementation on random data.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  internetChecksum,
  ipv4HeaderChecksum,
  pseudoHeader4,
  pseudoHeader6,
  transportChecksum,
} from '../../../src/adapter/lan/checksum.js';
import { prng } from '../../harness/prng.js';
import { SEED, hex, naiveChecksum, randomBytes } from './fixtures.js';

test('RFC 1071 §3 example: 0001 f203 f4f5 f6f7 sums to ddf2, checksum 220d', () => {
  assert.equal(internetChecksum(hex('0001 f203 f4f5 f6f7')), 0x220d);
  // Verifying: data followed by its checksum sums to zero.
  assert.equal(internetChecksum(hex('0001 f203 f4f5 f6f7 220d')), 0);
});

test('IPv4 header checksum of a known header (192.168.0.1 → 192.168.0.199, UDP)', () => {
  const h = hex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7');
  assert.equal(ipv4HeaderChecksum(h), 0xb861);
  assert.equal(internetChecksum(h), 0);
  h.writeUInt16BE(0, 10);
  assert.equal(ipv4HeaderChecksum(h), 0xb861);
  assert.throws(() => ipv4HeaderChecksum(h.subarray(0, 19)), RangeError);
});

test('odd lengths: padded with zero at the end; only the last part may be odd', () => {
  assert.equal(internetChecksum(hex('01')), naiveChecksum(hex('01')));
  assert.equal(internetChecksum(hex('0102'), hex('03')), naiveChecksum(hex('010203')));
  assert.throws(() => internetChecksum(hex('01'), hex('02')), RangeError);
  assert.equal(internetChecksum(new Uint8Array(0)), 0xffff);
});

test('pseudo-headers follow RFC 768 and RFC 8200 §8.1', () => {
  const v4 = pseudoHeader4(hex('c0a80001'), hex('c0a800c7'), 17, 0x1234);
  assert.deepEqual(Buffer.from(v4), hex('c0a80001 c0a800c7 00 11 1234'));
  const src6 = hex('fe800000000000000000000000000001');
  const dst6 = hex('ff020000000000000000000000000002');
  const v6 = pseudoHeader6(src6, dst6, 58, 0x10002);
  assert.deepEqual(Buffer.from(v6), Buffer.concat([src6, dst6, hex('00010002 000000 3a')]));
  assert.throws(() => pseudoHeader4(src6, dst6, 17, 8), RangeError);
  assert.throws(() => pseudoHeader6(hex('c0a80001'), hex('c0a800c7'), 17, 8), RangeError);
  assert.throws(() => pseudoHeader4(hex('c0a80001'), hex('c0a800c7'), 17, 0x10000), RangeError);
});

test('transportChecksum agrees with an independent implementation over pseudo-header + segment', () => {
  const rnd = prng(SEED);
  for (let i = 0; i < 2000; i++) {
    const v6 = rnd() < 0.5;
    const addr = (): Buffer => Buffer.from(Array.from({ length: v6 ? 16 : 4 }, () => Math.floor(rnd() * 256)));
    const src = addr();
    const dst = addr();
    const seg = randomBytes(rnd, 200);
    const proto = v6 ? 58 : 17;
    const pseudo = v6 ? pseudoHeader6(src, dst, proto, seg.length) : pseudoHeader4(src, dst, proto, seg.length);
    assert.equal(transportChecksum(src, dst, proto, seg), naiveChecksum(Buffer.concat([pseudo, seg])), `iteration ${i}`);
  }
});

test('transportChecksum refuses mixed address lengths and oversize IPv4 segments', () => {
  assert.throws(() => transportChecksum(Buffer.alloc(4), Buffer.alloc(16), 17, Buffer.alloc(8)), RangeError);
  assert.throws(() => transportChecksum(Buffer.alloc(4), Buffer.alloc(4), 17, Buffer.alloc(0x10000)), RangeError);
  const big = Buffer.alloc(0x10000, 1);
  const src = Buffer.alloc(16, 2);
  assert.equal(transportChecksum(src, src, 17, big), naiveChecksum(Buffer.concat([pseudoHeader6(src, src, 17, big.length), big])));
});

test('internetChecksum over 64 KiB of 0xff does not overflow', () => {
  const big = Buffer.alloc(65535, 0xff);
  assert.equal(internetChecksum(big), naiveChecksum(big));
});
