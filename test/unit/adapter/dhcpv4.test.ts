// Unit tests for the DHCPv4 codec: a DHCPDISCOVER laid out byte by byte as ISC dhclient sends it,
// a server OFFER checked against RFC 2131/2132 offsets, RFC 3396 long options, overload, rejections, fuzzing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BOOTREPLY, BOOTREQUEST, DHCP4_MIN_LEN, Dhcp4Type, decodeDhcp4, encodeDhcp4 } from '../../../src/adapter/lan/dhcpv4.js';
import type { Dhcp4Message } from '../../../src/adapter/lan/dhcpv4.js';
import { SEED, fuzz, hex, isDecodeError, mutate, randomBytes } from './fixtures.js';

const isDhcpError = isDecodeError('ERR_DHCP_DECODE');

/** The 236 fixed bytes (RFC 2131 figure 1) followed by the magic cookie. */
function fixed(op: number, xid: string, secs: string, flags: string, addrs: string, chaddr: string): Buffer {
  return Buffer.concat([
    hex(`${op.toString(16).padStart(2, '0')} 01 06 00`),
    hex(xid),
    hex(secs + flags),
    hex(addrs), // ciaddr, yiaddr, siaddr, giaddr
    hex(chaddr),
    Buffer.alloc(10), // rest of chaddr
    Buffer.alloc(64), // sname
    Buffer.alloc(128), // file
    hex('63825363'),
  ]);
}

/** DHCPDISCOVER as dhclient 4.4 sends it: message type, host name, its default parameter request list, END, zero padding to 300 bytes. */
const DISCOVER = (() => {
  const head = fixed(1, '3903f326', '0003', '0000', '00000000 00000000 00000000 00000000', '525400123456');
  const opts = hex(`
    35 01 01
    0c 04 706c6331
    37 0d 01 1c 02 03 0f 06 77 0c 2c 2f 1a 79 2a
    ff`);
  return Buffer.concat([head, opts, Buffer.alloc(300 - head.length - opts.length)]);
})();

test('decodes a dhclient DHCPDISCOVER', () => {
  const m = decodeDhcp4(DISCOVER);
  assert.equal(m.op, BOOTREQUEST);
  assert.equal(m.xid, 0x3903f326);
  assert.equal(m.secs, 3);
  assert.equal(m.broadcast, false);
  assert.equal(m.chaddr, '52:54:00:12:34:56');
  assert.deepEqual([m.ciaddr, m.yiaddr, m.siaddr, m.giaddr], ['0.0.0.0', '0.0.0.0', '0.0.0.0', '0.0.0.0']);
  assert.equal(m.sname, '');
  assert.equal(m.options.messageType, Dhcp4Type.DISCOVER);
  assert.equal(m.options.hostname, 'plc1');
  assert.deepEqual(m.options.paramRequestList, [1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42]);
  assert.deepEqual(m.options.other, []);
});

test('re-encoding the DISCOVER reproduces dhclient\'s bytes exactly (option order, END, 300-byte padding)', () => {
  assert.deepEqual(encodeDhcp4(decodeDhcp4(DISCOVER)), DISCOVER);
});

test('an OFFER is laid out as RFC 2131/2132 say', () => {
  const offer: Dhcp4Message = {
    op: BOOTREPLY,
    hops: 0,
    xid: 0x3903f326,
    secs: 0,
    broadcast: true,
    ciaddr: '0.0.0.0',
    yiaddr: '100.64.0.10',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr: '52:54:00:12:34:56',
    sname: '',
    file: '',
    options: {
      messageType: Dhcp4Type.OFFER,
      serverId: '100.64.0.1',
      leaseTime: 3600,
      renewalTime: 1800,
      rebindingTime: 3150,
      subnetMask: '255.192.0.0',
      routers: ['100.64.0.1'],
      dnsServers: ['100.64.0.1'],
      domainName: 'cyphonic.internal',
      interfaceMtu: 1400,
      other: [],
    },
  };
  const b = encodeDhcp4(offer);
  const expectHead = fixed(2, '3903f326', '0000', '8000', '00000000 6440000a 00000000 00000000', '525400123456');
  assert.deepEqual(b.subarray(0, 240), expectHead);
  const expectOpts = hex(`
    35 01 02
    36 04 64400001
    33 04 00000e10
    3a 04 00000708
    3b 04 00000c4e
    01 04 ffc00000
    03 04 64400001
    06 04 64400001
    0f 11 ${Buffer.from('cyphonic.internal').toString('hex')}
    1a 02 0578
    ff`);
  assert.deepEqual(b.subarray(240, 240 + expectOpts.length), expectOpts);
  assert.equal(b.length, Math.max(DHCP4_MIN_LEN, 240 + expectOpts.length));
  assert.equal(encodeDhcp4({ ...offer, options: { messageType: Dhcp4Type.NAK, other: [] } }).length, DHCP4_MIN_LEN);
  assert.deepEqual(decodeDhcp4(b), offer);
});

test('RFC 3396: repeated options are concatenated; long values are split on encode', () => {
  const head = fixed(1, '00000001', '0000', '0000', '00000000 00000000 00000000 00000000', '525400123456');
  const m = decodeDhcp4(Buffer.concat([head, hex('35 01 03  06 04 01020304  0c 02 6162  06 04 05060708  0c 01 63  ff')]));
  assert.deepEqual(m.options.dnsServers, ['1.2.3.4', '5.6.7.8']);
  assert.equal(m.options.hostname, 'abc');
  const many = Array.from({ length: 70 }, (_, i) => `10.0.${i}.1`);
  const enc = encodeDhcp4({ ...m, options: { ...m.options, dnsServers: many } });
  assert.deepEqual([enc[243], enc[244]], [6, 255]); // after option 53: DNS servers, 255 bytes…
  assert.deepEqual([enc[243 + 257], enc[244 + 257]], [6, 25]); // …then the other 25
  assert.deepEqual(decodeDhcp4(enc).options.dnsServers, many);
});

test('option overload (52): options in file then sname are read; the fields are then empty', () => {
  const b = fixed(1, '00000002', '0000', '0000', '00000000 00000000 00000000 00000000', '525400123456');
  hex('0c 03 66696c ff').copy(b, 108); // hostname "fil" in file
  hex('0f 02 736e ff').copy(b, 44); // domain "sn" in sname
  const m = decodeDhcp4(Buffer.concat([b, hex('35 01 01 34 01 03 ff')]));
  assert.equal(m.options.hostname, 'fil');
  assert.equal(m.options.domainName, 'sn');
  assert.equal(m.sname, '');
  assert.equal(m.file, '');
  const again = decodeDhcp4(encodeDhcp4(m));
  assert.deepEqual(again, m);
  assert.throws(() => decodeDhcp4(Buffer.concat([b, hex('35 01 01 34 01 04 ff')])), isDhcpError);
  hex('34 01 01 ff').copy(b, 108);
  assert.throws(() => decodeDhcp4(Buffer.concat([b, hex('35 01 01 34 01 01 ff')])), isDhcpError);
});

test('sname/file text, missing END, PAD bytes and bytes after END', () => {
  const b = fixed(1, '00000003', '0000', '0000', '00000000 00000000 00000000 00000000', '525400123456');
  Buffer.from('boot.example').copy(b, 44);
  Buffer.from('pxelinux.0').copy(b, 108);
  const m = decodeDhcp4(Buffer.concat([b, hex('00 00 35 01 01')]));
  assert.equal(m.sname, 'boot.example');
  assert.equal(m.file, 'pxelinux.0');
  assert.equal(m.options.messageType, 1);
  assert.equal(decodeDhcp4(Buffer.concat([b, hex('35 01 01 ff 35 ff ff')])).options.messageType, 1);
  assert.deepEqual(decodeDhcp4(encodeDhcp4(m)), m);
});

test('malformed messages are refused with ERR_DHCP_DECODE', () => {
  const head = (): Buffer => fixed(1, '00000004', '0000', '0000', '00000000 00000000 00000000 00000000', '525400123456');
  const withOpts = (o: string): Buffer => Buffer.concat([head(), hex(o)]);
  const mod = (off: number, v: number): Buffer => {
    const b = Buffer.from(DISCOVER);
    b[off] = v;
    return b;
  };
  const cases: Buffer[] = [
    DISCOVER.subarray(0, 239),
    mod(0, 3), // op
    mod(1, 6), // htype IEEE 802
    mod(2, 8), // hlen
    mod(239, 0x64), // cookie
    withOpts('35 02 01 01'), // message type of length 2
    withOpts('35'), // truncated header
    withOpts('35 05 01'), // value past the end
    withOpts('32 03 010203'), // requested IP of 3 bytes
    withOpts('36 00'), // empty server id
    withOpts('03 05 0102030405'), // routers not a multiple of 4
    withOpts('06 00'), // empty DNS list
    withOpts('33 02 0000'), // lease time of 2 bytes
    withOpts('39 02 0100'), // max message size 256 < 576
    withOpts('3d 01 01'), // client id of 1 byte
    withOpts('37 00'), // empty parameter request list
    withOpts('0c 00'), // empty hostname
    withOpts('0c 02 0000'), // hostname of NULs only
    withOpts('1a 02 0010'), // MTU 16
  ];
  for (const c of cases) assert.throws(() => decodeDhcp4(c), isDhcpError, c.subarray(236).toString('hex'));
});

test('the encoder refuses what it cannot represent', () => {
  const m = decodeDhcp4(DISCOVER);
  const bad: Partial<Dhcp4Message>[] = [
    { xid: 2 ** 32 },
    { secs: -1 },
    { hops: 256 },
    { chaddr: 'x' },
    { ciaddr: '::1' },
    { sname: 'x'.repeat(65) },
    { file: '☃' },
    { op: 3 as 1 },
  ];
  for (const b of bad) assert.throws(() => encodeDhcp4({ ...m, ...b }), RangeError, JSON.stringify(b));
  const badOpts = [
    { messageType: 256 },
    { routers: [] },
    { hostname: '' },
    { clientId: new Uint8Array([1]) },
    { paramRequestList: [300] },
    { maxMessageSize: 100 },
    { interfaceMtu: 20 },
    { other: [{ code: 53, data: new Uint8Array(1) }] },
    { other: [{ code: 255, data: new Uint8Array(0) }] },
    { other: [{ code: 52, data: new Uint8Array(1) }] },
  ];
  for (const o of badOpts) assert.throws(() => encodeDhcp4({ ...m, options: { ...m.options, ...o } }), RangeError, JSON.stringify(o));
});

test('fuzz: random option areas and mutated DISCOVERs decode (and round-trip) or throw DecodeError', () => {
  const head = fixed(1, '00000005', '0000', '0000', '00000000 00000000 00000000 00000000', '525400123456');
  const codes = [0, 1, 3, 6, 12, 15, 26, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 61, 81, 119, 255];
  const options = (rnd: () => number): Buffer => {
    const parts: Buffer[] = [];
    const n = Math.floor(rnd() * 12);
    for (let i = 0; i < n; i++) {
      const code = rnd() < 0.85 ? codes[Math.floor(rnd() * codes.length)]! : Math.floor(rnd() * 256);
      const len = rnd() < 0.5 ? [1, 2, 4, 8][Math.floor(rnd() * 4)]! : Math.floor(rnd() * 20);
      parts.push(Buffer.from([code, len]), Buffer.from(Array.from({ length: len }, () => Math.floor(rnd() * 256))));
    }
    return Buffer.concat(parts);
  };
  const roundTrip = (m: Dhcp4Message): void => assert.deepEqual(decodeDhcp4(encodeDhcp4(m)), m);
  const n1 = fuzz(SEED, 5000, (rnd) => Buffer.concat([head, options(rnd)]), decodeDhcp4, roundTrip);
  const n2 = fuzz(SEED + 1, 5000, (rnd) => mutate(rnd, DISCOVER), decodeDhcp4, roundTrip);
  const n3 = fuzz(SEED + 2, 2000, (rnd) => randomBytes(rnd, 400), decodeDhcp4);
  assert.ok(n1 > 500 && n2 > 1000, `${n1} ${n2} ${n3}`);
});
