// Unit tests for the CIDR helpers of src/net/addr: parsing, offset/address mapping, ULA generation, usability.
// IPv6 formatting is checked against node:net's own printing of the same addresses.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { SocketAddress } from 'node:net';
import { describe, test } from 'node:test';
import {
  addressAt,
  contains,
  formatCidr,
  isUsableOffset,
  isUsableV4Offset,
  nextUsableOffset,
  normalizeAddress,
  offsetOf,
  parseCidr,
  randomUlaPrefix48,
} from '../../../src/net/addr/cidr.js';
import { ConfigError } from '../../../src/util/errors.js';

const CGNAT = '100.64.0.0/10';
const ULA = 'fd12:3456:789a::/48';

describe('parseCidr', () => {
  test('IPv4 CGNAT /10', () => {
    assert.deepEqual(parseCidr(CGNAT), { family: 4, network: 0x64400000n, prefix: 10, size: 1n << 22n });
  });

  test('IPv6 ULA /48', () => {
    assert.deepEqual(parseCidr(ULA), { family: 6, network: 0xfd123456789an << 80n, prefix: 48, size: 1n << 80n });
  });

  test('extremes: /0, /32, /128, uncompressed and uppercase IPv6', () => {
    assert.equal(parseCidr('0.0.0.0/0').size, 1n << 32n);
    assert.equal(parseCidr('10.1.2.3/32').size, 1n);
    assert.equal(parseCidr('::/0').size, 1n << 128n);
    assert.equal(parseCidr('::1/128').network, 1n);
    assert.deepEqual(parseCidr('FD12:3456:789A:0000:0000:0000:0000:0000/48'), parseCidr(ULA));
    assert.equal(parseCidr('::ffff:10.0.0.0/104').network, (0xffffn << 32n) | (10n << 24n));
  });

  test('bad input throws ConfigError with a clear message', () => {
    const bad = [
      '',
      '100.64.0.0',
      '100.64.0.0/',
      '100.64.0.0/33',
      '100.64.0.0/-1',
      '100.64.0.0/1a',
      '100.64.0.0/ 10',
      '::/129',
      '256.0.0.0/8',
      '1.2.3/24',
      '01.2.3.0/24',
      'fd00::g/64',
      'fd00:::/64',
      'fe80::%eth0/64',
      'not-an-ip/8',
      '/8',
      '10.0.0.0/8/8',
    ];
    for (const s of bad) assert.throws(() => parseCidr(s), ConfigError, s);
  });

  test('host bits set are rejected, with a suggestion', () => {
    assert.throws(() => parseCidr('100.64.0.1/10'), /host bits are set.*100\.64\.0\.0\/10/);
    assert.throws(() => parseCidr('fd12:3456:789a::1/48'), /host bits are set.*fd12:3456:789a::\/48/);
  });

  test('formatCidr canonicalises', () => {
    assert.equal(formatCidr('FD12:3456:789A:0:0:0:0:0/48'), ULA);
    assert.equal(formatCidr(parseCidr(CGNAT)), CGNAT);
  });
});

describe('addressAt / offsetOf / contains', () => {
  test('IPv4 offsets', () => {
    assert.equal(addressAt(CGNAT, 0n), '100.64.0.0');
    assert.equal(addressAt(CGNAT, 1n), '100.64.0.1');
    assert.equal(addressAt(CGNAT, 256n), '100.64.1.0');
    assert.equal(addressAt(CGNAT, (1n << 22n) - 1n), '100.127.255.255');
    assert.equal(offsetOf(CGNAT, '100.64.1.1'), 257n);
    assert.equal(offsetOf(CGNAT, '100.127.255.255'), (1n << 22n) - 1n);
    assert.equal(offsetOf(CGNAT, '100.128.0.0'), null);
    assert.equal(offsetOf(CGNAT, '100.63.255.255'), null);
    assert.equal(offsetOf(CGNAT, 'fd12:3456:789a::1'), null);
    assert.equal(offsetOf(CGNAT, 'garbage'), null);
    assert.equal(contains(CGNAT, '100.100.100.100'), true);
    assert.equal(contains(CGNAT, '10.0.0.1'), false);
  });

  test('IPv6 offsets print compressed and lowercase', () => {
    assert.equal(addressAt(ULA, 0n), 'fd12:3456:789a::');
    assert.equal(addressAt(ULA, 1n), 'fd12:3456:789a::1');
    assert.equal(addressAt(ULA, 0xabcdn << 16n), 'fd12:3456:789a::abcd:0');
    assert.equal(addressAt(ULA, (1n << 80n) - 1n), 'fd12:3456:789a:ffff:ffff:ffff:ffff:ffff');
    assert.equal(addressAt(ULA, 1n << 64n), 'fd12:3456:789a:1::');
    assert.equal(offsetOf(ULA, 'FD12:3456:789A::0:1'), 1n);
    assert.equal(offsetOf(ULA, 'fd12:3456:789b::1'), null);
    assert.equal(offsetOf(ULA, '100.64.0.1'), null);
    assert.equal(contains(ULA, 'fd12:3456:789a:ffff::'), true);
  });

  test('out-of-range offsets throw', () => {
    assert.throws(() => addressAt(CGNAT, -1n), ConfigError);
    assert.throws(() => addressAt(CGNAT, 1n << 22n), ConfigError);
    assert.throws(() => addressAt('10.0.0.1/32', 1n), ConfigError);
    assert.equal(addressAt('10.0.0.1/32', 0n), '10.0.0.1');
  });

  test('round trip at random offsets', () => {
    const v6 = parseCidr(ULA);
    for (let i = 0; i < 200; i++) {
      const off = BigInt('0x' + randomBytes(10).toString('hex'));
      assert.equal(offsetOf(v6, addressAt(v6, off)), off);
      const off4 = off % (1n << 22n);
      assert.equal(offsetOf(CGNAT, addressAt(CGNAT, off4)), off4);
    }
  });
});

describe('IPv6 text matches node:net', () => {
  const nodePrint = (a: string): string => new SocketAddress({ address: a, family: 'ipv6' }).address;

  test('fixed cases', () => {
    const cases = [
      '::',
      '::1',
      '::2',
      '1::',
      'fd00:0:0:0:1:0:0:1',
      '1:0:0:2:0:0:0:3',
      '2001:db8:0:0:1:0:0:1',
      '2001:db8::',
      '1:2:3:4:5:6:7:8',
      '0:1:0:1:0:1:0:1',
      '::ffff:1.2.3.4',
      '::1.2.3.4',
      '::ffff:0:1.2.3.4',
      '64:ff9b::1.2.3.4',
      '1:2:3:4:5:6:1.2.3.4',
      'fd12:3456:789a::abcd:0',
    ];
    for (const a of cases) assert.equal(normalizeAddress(a), nodePrint(a), a);
  });

  test('random addresses with many zero words', () => {
    for (let i = 0; i < 500; i++) {
      const words = Array.from({ length: 8 }, () => (Math.random() < 0.5 ? 0 : Math.floor(Math.random() * 0x10000)));
      const a = words.map((w) => w.toString(16)).join(':');
      assert.equal(normalizeAddress(a), nodePrint(a), a);
    }
  });

  test('normalizeAddress rejects non-addresses and keeps IPv4', () => {
    assert.equal(normalizeAddress('10.0.0.1'), '10.0.0.1');
    assert.equal(normalizeAddress('10.0.0.256'), null);
    assert.equal(normalizeAddress('hello'), null);
    assert.equal(normalizeAddress(''), null);
    assert.equal(normalizeAddress('fe80::1%eth0'), null);
  });
});

describe('randomUlaPrefix48', () => {
  test('fdXX:XXXX:XXXX::/48 with random global id', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const p = randomUlaPrefix48();
      const c = parseCidr(p);
      assert.equal(c.family, 6);
      assert.equal(c.prefix, 48);
      assert.equal(c.network >> 120n, 0xfdn);
      assert.equal(formatCidr(c), p);
      assert.match(p, /^fd[0-9a-f]{2}(:[0-9a-f]{1,4}){0,2}::\/48$/);
      seen.add(p);
    }
    assert.ok(seen.size >= 49, 'prefixes should be random');
  });
});

describe('usable offsets', () => {
  test('IPv4: skip network, broadcast, .0 and .255', () => {
    assert.equal(isUsableV4Offset(CGNAT, 0n), false);
    assert.equal(isUsableV4Offset(CGNAT, 1n), true);
    assert.equal(isUsableV4Offset(CGNAT, 254n), true);
    assert.equal(isUsableV4Offset(CGNAT, 255n), false);
    assert.equal(isUsableV4Offset(CGNAT, 256n), false);
    assert.equal(isUsableV4Offset(CGNAT, 257n), true);
    assert.equal(isUsableV4Offset(CGNAT, (1n << 22n) - 1n), false);
    assert.equal(isUsableV4Offset(CGNAT, (1n << 22n) - 2n), true);
    assert.equal(isUsableV4Offset(CGNAT, 1n << 22n), false);
    assert.equal(isUsableV4Offset(CGNAT, -5n), false);
    // a /29 not aligned to .0: broadcast is .7, everything else in between usable
    assert.equal(isUsableV4Offset('10.0.0.248/29', 7n), false);
    assert.equal(isUsableV4Offset('10.0.0.248/29', 6n), true); // .254
    assert.equal(isUsableV4Offset('10.0.0.248/29', 1n), true);
    assert.throws(() => isUsableV4Offset(ULA, 1n), ConfigError);
  });

  test('IPv6: only offset 0 is skipped', () => {
    assert.equal(isUsableOffset(ULA, 0n), false);
    assert.equal(isUsableOffset(ULA, 1n), true);
    assert.equal(isUsableOffset(ULA, 0xffn), true);
    assert.equal(isUsableOffset(ULA, 0x100n), true);
    assert.equal(isUsableOffset(ULA, (1n << 80n) - 1n), true);
    assert.equal(isUsableOffset(ULA, 1n << 80n), false);
  });

  test('nextUsableOffset', () => {
    assert.equal(nextUsableOffset(CGNAT, 0n), 1n);
    assert.equal(nextUsableOffset(CGNAT, 255n), 257n);
    assert.equal(nextUsableOffset(CGNAT, (1n << 22n) - 2n), (1n << 22n) - 2n);
    assert.equal(nextUsableOffset(CGNAT, (1n << 22n) - 1n), null);
    assert.equal(nextUsableOffset('10.0.0.0/30', 3n), null);
    assert.equal(nextUsableOffset('10.0.0.0/31', 0n), null);
    assert.equal(nextUsableOffset(ULA, 0n), 1n);
    assert.equal(nextUsableOffset('fd00::/127', 1n), 1n);
    assert.equal(nextUsableOffset('fd00::/127', 2n), null);
  });
});
