// Unit tests for the DHCPv6 codec: a SOLICIT laid out as ISC dhclient -6 sends it, an ADVERTISE
// checked byte by byte against RFC 8415's option formats, every DUID type, rejections, seeded fuzzing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Dhcp6Status, Dhcp6Type, decodeDhcp6, decodeDuid, duidLl, encodeDhcp6 } from '../../../src/adapter/lan/dhcpv6.js';
import type { Dhcp6Message } from '../../../src/adapter/lan/dhcpv6.js';
import { SEED, fuzz, hex, isDecodeError, mutate, randomBytes } from './fixtures.js';

const isDhcp6Error = isDecodeError('ERR_DHCP6_DECODE');
const CLIENT_DUID = '0001 0001 2b6a1c3d 525400123456'; // DUID-LLT, Ethernet, time, MAC

const SOLICIT = hex(`
  01 5f3e21
  0001 000e ${CLIENT_DUID}
  0008 0002 0000
  0006 0006 0017 0018 0027
  0003 000c 00123456 00000000 00000000`);

test('decodes a dhclient SOLICIT: DUID-LLT with the MAC, elapsed time, ORO, empty IA_NA', () => {
  const m = decodeDhcp6(SOLICIT);
  assert.equal(m.type, Dhcp6Type.SOLICIT);
  assert.equal(m.txid, 0x5f3e21);
  assert.deepEqual({ ...m.clientId, raw: undefined }, { raw: undefined, type: 1, kind: 'llt', hardwareType: 1, time: 0x2b6a1c3d, mac: '52:54:00:12:34:56' });
  assert.deepEqual(Buffer.from(m.clientId!.raw), hex(CLIENT_DUID));
  assert.equal(m.elapsedTime, 0);
  assert.deepEqual(m.oro, [23, 24, 39]);
  assert.deepEqual(m.iaNa, [{ iaid: 0x123456, t1: 0, t2: 0, addresses: [], other: [] }]);
  assert.equal(m.rapidCommit, false);
  assert.equal(m.serverId, undefined);
  assert.deepEqual(decodeDhcp6(encodeDhcp6(m)), m);
});

test('an ADVERTISE is laid out as RFC 8415 §21 and RFC 3646 say', () => {
  const adv: Dhcp6Message = {
    type: Dhcp6Type.ADVERTISE,
    txid: 0x5f3e21,
    clientId: decodeDuid(hex(CLIENT_DUID)),
    serverId: duidLl('02:00:00:00:00:01'),
    iaNa: [{ iaid: 0x123456, t1: 1800, t2: 2880, addresses: [{ address: 'fd12:3456:789a::10', preferred: 3600, valid: 7200, other: [] }], other: [] }],
    preference: 255,
    rapidCommit: false,
    dnsServers: ['fd12:3456:789a::1'],
    domainList: ['cyphonic.internal'],
    other: [],
  };
  const expected = hex(`
    02 5f3e21
    0001 000e ${CLIENT_DUID}
    0002 000a 0003 0001 020000000001
    0003 0028 00123456 00000708 00000b40
      0005 0018 fd123456789a00000000000000000010 00000e10 00001c20
    0007 0001 ff
    0017 0010 fd123456789a00000000000000000001
    0018 0013 08 ${Buffer.from('cyphonic').toString('hex')} 08 ${Buffer.from('internal').toString('hex')} 00`);
  assert.deepEqual(encodeDhcp6(adv), expected);
  assert.deepEqual(decodeDhcp6(expected), adv);
});

test('status codes, rapid commit and nested status in IA_NA / IAADDR round-trip', () => {
  const m: Dhcp6Message = {
    type: Dhcp6Type.REPLY,
    txid: 1,
    iaNa: [
      {
        iaid: 7,
        t1: 0,
        t2: 0,
        addresses: [{ address: '2001:db8::5', preferred: 0, valid: 0, status: { code: Dhcp6Status.NotOnLink, message: 'nope' }, other: [{ code: 99, data: new Uint8Array([1]) }] }],
        status: { code: Dhcp6Status.NoBinding, message: 'ünïcode ✓' },
        other: [{ code: 98, data: new Uint8Array(0) }],
      },
    ],
    status: { code: Dhcp6Status.Success, message: '' },
    rapidCommit: true,
    other: [{ code: 39, data: new Uint8Array([0, 4, 0x70, 0x6c, 0x63, 0x31]) }],
  };
  assert.deepEqual(decodeDhcp6(encodeDhcp6(m)), m);
});

test('every DUID type is parsed; the MAC only from Ethernet DUID-LLT/LL', () => {
  assert.deepEqual({ ...decodeDuid(hex('0003 0001 525400abcdef')), raw: 0 }, { raw: 0, type: 3, kind: 'll', hardwareType: 1, mac: '52:54:00:ab:cd:ef' });
  assert.deepEqual({ ...decodeDuid(hex('0002 00000009 0a0b')), raw: 0 }, { raw: 0, type: 2, kind: 'en', enterprise: 9 });
  assert.deepEqual({ ...decodeDuid(hex('0004 00112233445566778899aabbccddeeff')), raw: 0 }, { raw: 0, type: 4, kind: 'uuid', uuid: '00112233445566778899aabbccddeeff' });
  assert.deepEqual({ ...decodeDuid(hex('0001 0006 00000001 0102030405060708')), raw: 0 }, { raw: 0, type: 1, kind: 'llt', hardwareType: 6, time: 1 });
  assert.deepEqual({ ...decodeDuid(hex('0003 0001 5254')), raw: 0 }, { raw: 0, type: 3, kind: 'll', hardwareType: 1 });
  assert.deepEqual({ ...decodeDuid(hex('0099 ab')), raw: 0 }, { raw: 0, type: 0x99, kind: 'unknown' });
  assert.equal(duidLl('02:00:00:00:00:01').mac, '02:00:00:00:00:01');
  for (const bad of ['0001', '0001 0001 000000', '0002 000000', '0003 0001', '0004 00112233', '0004 00112233445566778899aabbccddeeff00', `0002 ${'00'.repeat(129)}`]) {
    assert.throws(() => decodeDuid(hex(bad)), isDhcp6Error, bad);
  }
});

test('malformed messages are refused with ERR_DHCP6_DECODE', () => {
  const msg = (opts: string, type = '01'): Buffer => hex(`${type} 000001 ${opts}`);
  const cases = [
    hex('01 0000'), // short header
    msg('', '00'), // type 0
    msg('', '0c'), // Relay-forward
    msg('', '0d'), // Relay-reply
    msg('0001'), // option header cut
    msg('0001 0010 0003 0001'), // value past the end
    msg(`0001 000e ${CLIENT_DUID} 0001 000e ${CLIENT_DUID}`), // two client ids
    msg('0003 000c 00000001 00000000 00000000 0003 000c 00000001 00000000 00000000'), // two IA_NA with one IAID
    msg('0003 000b 00000001 00000000 000000'), // IA_NA too short
    msg('0003 0010 00000001 00000000 00000000 0005 0000'), // empty IAADDR
    msg('0003 0016 00000001 00000000 00000000 000d 0006 0000 ff fe ff fe'), // IA status not UTF-8
    msg('000d 0001 00'), // status too short
    msg('0006 0003 001700'), // ORO of odd length
    msg('0008 0001 00'), // elapsed time of 1 byte
    msg('0007 0002 00ff'), // preference of 2 bytes
    msg('000e 0001 00'), // rapid commit with data
    msg('000e 0000 000e 0000'), // rapid commit twice
    msg('0017 000f 000000000000000000000000000000'), // DNS servers: 15 bytes
    msg('0018 0004 01 61 c0 0c'), // compression pointer in the domain list
    msg('0018 0001 00'), // root name in the domain list
    msg('0018 0003 02 61 00'), // label past its name
    msg('0018 0003 01 2e 00'), // '.' inside a label
    msg('0001 0002 0003'), // DUID of 2 bytes
  ];
  for (const c of cases) assert.throws(() => decodeDhcp6(c), isDhcp6Error, c.toString('hex'));
});

test('the encoder refuses what it cannot represent', () => {
  const m = decodeDhcp6(SOLICIT);
  const bad: Partial<Dhcp6Message>[] = [
    { txid: 0x1000000 },
    { type: 12 },
    { type: 0 },
    { other: [{ code: 1, data: new Uint8Array(0) }] },
    { other: [{ code: 70000, data: new Uint8Array(0) }] },
    { iaNa: [{ iaid: 1, t1: 0, t2: 0, addresses: [], other: [{ code: 5, data: new Uint8Array(0) }] }] },
    { iaNa: [{ iaid: 2 ** 32, t1: 0, t2: 0, addresses: [], other: [] }] },
    { clientId: { raw: new Uint8Array(2), type: 0, kind: 'unknown' } },
    { dnsServers: ['1.2.3.4'] },
    { domainList: ['a..b'] },
    { domainList: ['ünï.example'] },
    { preference: 256 },
    { oro: [-1] },
  ];
  for (const b of bad) assert.throws(() => encodeDhcp6({ ...m, ...b }), RangeError, JSON.stringify(b));
});

test('fuzz: random option lists and mutated SOLICITs decode (and round-trip) or throw DecodeError', () => {
  const codes = [1, 2, 3, 5, 6, 7, 8, 13, 14, 23, 24, 25, 39];
  const opt = (rnd: () => number, depth: number): Buffer => {
    const code = rnd() < 0.9 ? codes[Math.floor(rnd() * codes.length)]! : Math.floor(rnd() * 65536);
    let body: Buffer;
    if (code === 3 && depth < 2) body = Buffer.concat([randomBytes(rnd, 1), Buffer.alloc(12, 0), ...Array.from({ length: Math.floor(rnd() * 3) }, () => opt(rnd, depth + 1))]);
    else if (code === 5 && depth < 2) body = Buffer.concat([Buffer.alloc(24, 0xfd), ...Array.from({ length: Math.floor(rnd() * 2) }, () => opt(rnd, depth + 1))]);
    else if (code === 1 || code === 2) body = Buffer.concat([hex('0003 0001'), Buffer.from(Array.from({ length: Math.floor(rnd() * 8) }, () => Math.floor(rnd() * 256)))]);
    else body = Buffer.from(Array.from({ length: [0, 1, 2, 16, 20][Math.floor(rnd() * 5)]! }, () => Math.floor(rnd() * 128)));
    const h = Buffer.alloc(4);
    h.writeUInt16BE(code, 0);
    h.writeUInt16BE(body.length, 2);
    return Buffer.concat([h, body]);
  };
  const roundTrip = (m: Dhcp6Message): void => assert.deepEqual(decodeDhcp6(encodeDhcp6(m)), m);
  const n1 = fuzz(SEED, 5000, (rnd) => Buffer.concat([hex('03 abcdef'), ...Array.from({ length: Math.floor(rnd() * 6) }, () => opt(rnd, 0))]), decodeDhcp6, roundTrip);
  const n2 = fuzz(SEED + 1, 5000, (rnd) => mutate(rnd, SOLICIT), decodeDhcp6, roundTrip);
  const n3 = fuzz(SEED + 2, 3000, (rnd) => randomBytes(rnd, 60), decodeDhcp6, roundTrip);
  assert.ok(n1 > 500 && n2 > 1000, `${n1} ${n2} ${n3}`);
});
