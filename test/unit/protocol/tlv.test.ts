// Unit tests for the TLV body codec, IP text conversion and endpoint helpers.
// Every field kind round-trips; malformed TLVs (duplicates, bad UTF-8/bool/family, sizes, truncation) are rejected.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { DecodeError } from '../../../src/util/errors.js';
import { type Schema, decodeTlv, encodeTlv, encodeTlvTransient, readTlvs } from '../../../src/protocol/tlv.js';
import { type Endpoint, endpointKey, endpointsEqual, formatEndpoint, parseEndpoint } from '../../../src/protocol/endpoint.js';
import { formatIp6, ipFamily, normalizeIp, parseIp, parseIp4, parseIp6 } from '../../../src/protocol/ip.js';
import { prng } from '../../harness/prng.js';

const SEED = Number(process.env['CYPHONIC_SEED'] ?? 0x71f);

function isDecodeError(err: unknown): boolean {
  return err instanceof DecodeError && err.code === 'ERR_DECODE_BODY';
}

interface All {
  a8: number;
  a16: number;
  a32: number;
  a64: bigint;
  id: number;
  flag: boolean;
  blob: Buffer;
  key: Buffer;
  text: string;
  v4: string;
  v6: string;
  any: string;
  ep: Endpoint;
  eps: Endpoint[];
  opt?: string;
  names: string[];
}

const ALL: Schema<All> = [
  { tag: 1, name: 'a8', kind: 'u8' },
  { tag: 2, name: 'a16', kind: 'u16' },
  { tag: 3, name: 'a32', kind: 'u32' },
  { tag: 4, name: 'a64', kind: 'u64' },
  { tag: 5, name: 'id', kind: 'id' },
  { tag: 6, name: 'flag', kind: 'bool' },
  { tag: 7, name: 'blob', kind: 'bytes', maxSize: 8 },
  { tag: 8, name: 'key', kind: 'bytes', size: 4 },
  { tag: 9, name: 'text', kind: 'string', maxSize: 16 },
  { tag: 10, name: 'v4', kind: 'ip4' },
  { tag: 11, name: 'v6', kind: 'ip6' },
  { tag: 12, name: 'any', kind: 'ip' },
  { tag: 13, name: 'ep', kind: 'endpoint' },
  { tag: 14, name: 'eps', kind: 'endpoint', repeated: true, maxCount: 3 },
  { tag: 15, name: 'opt', kind: 'string', optional: true },
  { tag: 16, name: 'names', kind: 'string', repeated: true },
];

const value: All = {
  a8: 255,
  a16: 65535,
  a32: 0xffffffff,
  a64: (1n << 64n) - 1n,
  id: Number.MAX_SAFE_INTEGER,
  flag: true,
  blob: Buffer.from('abc'),
  key: Buffer.from([1, 2, 3, 4]),
  text: 'héllo ✓ 🙂',
  v4: '198.18.0.1',
  v6: '2001:db8::1',
  any: '10.0.0.1',
  ep: { address: '2001:db8::2', port: 30000 },
  eps: [
    { address: '192.0.2.1', port: 1 },
    { address: '::ffff:192.0.2.1', port: 65535 },
  ],
  opt: '',
  names: ['x', 'y'],
};

/** Raw TLV bytes helper: tlv(tag, bytes) */
function tlv(tag: number, v: Uint8Array | number[]): Buffer {
  const b = Buffer.alloc(3);
  b[0] = tag;
  b.writeUInt16BE(v.length, 1);
  return Buffer.concat([b, Buffer.from(v)]);
}

/** Encoded `value` with TLVs of `tag` replaced by `replacement` (or removed). */
function withTag(tag: number, replacement?: Buffer): Buffer {
  const parts: Buffer[] = [];
  let done = false;
  for (const [t, v] of readTlvs(encodeTlv(ALL, value))) {
    if (t !== tag) parts.push(tlv(t, v));
    else if (!done && replacement) {
      parts.push(replacement);
      done = true;
    }
  }
  return Buffer.concat(parts);
}

test('every kind round-trips', () => {
  const enc = encodeTlv(ALL, value);
  assert.deepEqual(decodeTlv(ALL, enc), value);
  const minimal = { ...value, opt: undefined, eps: [], names: [] };
  delete minimal.opt;
  assert.deepEqual(decodeTlv(ALL, encodeTlv(ALL, minimal)), minimal);
});

test('a transient encoding has the bytes of encodeTlv and is overwritten by the next encode', () => {
  const enc = encodeTlv(ALL, value);
  const view = encodeTlvTransient(ALL, value);
  assert.deepEqual(Buffer.from(view), enc);
  const before = Buffer.from(view);
  encodeTlv(ALL, { ...value, eps: [], names: [] });
  assert.notDeepEqual(Buffer.from(view), before, 'a view of the shared scratch, not a buffer of its own');
  assert.deepEqual(encodeTlv(ALL, value), enc, 'the encoder\'s own output is unaffected');
});

test('encoding is byte-exact and follows schema order, not object key order', () => {
  const s: Schema<{ a: number; b: boolean; c: string[] }> = [
    { tag: 2, name: 'a', kind: 'u16' },
    { tag: 1, name: 'b', kind: 'bool' },
    { tag: 9, name: 'c', kind: 'string', repeated: true },
  ];
  const enc = encodeTlv(s, { c: ['p', 'q'], b: false, a: 0x0102 });
  assert.equal(enc.toString('hex'), '020002' + '0102' + '010001' + '00' + '090001' + '70' + '090001' + '71');
  assert.deepEqual(encodeTlv(s, { a: 0x0102, b: false, c: ['p', 'q'] }), enc);
  assert.deepEqual(encodeTlv([], {}), Buffer.alloc(0));
});

test('endpoint and ip wire forms', () => {
  const s: Schema<{ e: Endpoint; i: string }> = [
    { tag: 1, name: 'e', kind: 'endpoint' },
    { tag: 2, name: 'i', kind: 'ip' },
  ];
  const enc = encodeTlv(s, { e: { address: '1.2.3.4', port: 0x1234 }, i: '::1' });
  assert.equal(enc.toString('hex'), '010007' + '04' + '01020304' + '1234' + '020010' + '0'.repeat(31) + '1');
});

test('duplicate non-repeated tag is rejected; repeated tags accumulate in order', () => {
  const enc = encodeTlv(ALL, value);
  assert.throws(() => decodeTlv(ALL, Buffer.concat([enc, tlv(1, [7])])), isDecodeError);
  assert.throws(() => decodeTlv(ALL, Buffer.concat([enc, tlv(15, [])])), isDecodeError);
  const more = decodeTlv(ALL, Buffer.concat([enc, tlv(16, Buffer.from('z'))]));
  assert.deepEqual(more.names, ['x', 'y', 'z']);
});

test('repeated maxCount enforced both ways', () => {
  const ep = tlv(14, [4, 1, 1, 1, 1, 0, 9]);
  const enc = Buffer.concat([withTag(14), ep, ep, ep]);
  assert.equal(decodeTlv(ALL, enc).eps.length, 3);
  assert.throws(() => decodeTlv(ALL, Buffer.concat([enc, ep])), isDecodeError);
  const four = Array.from({ length: 4 }, () => ({ address: '1.1.1.1', port: 9 }));
  assert.throws(() => encodeTlv(ALL, { ...value, eps: four }), RangeError);
});

test('missing required fields are rejected', () => {
  for (const f of ALL) {
    if (f.optional || f.repeated) continue;
    assert.throws(() => decodeTlv(ALL, withTag(f.tag)), isDecodeError, f.name);
    const v: Record<string, unknown> = { ...value };
    delete v[f.name];
    assert.throws(() => encodeTlv(ALL, v as unknown as All), RangeError, f.name);
  }
});

test('unknown tags are skipped but must be well formed', () => {
  const enc = encodeTlv(ALL, value);
  const withUnknown = Buffer.concat([tlv(200, [1, 2, 3]), enc, tlv(0, []), tlv(255, Buffer.alloc(300))]);
  assert.deepEqual(decodeTlv(ALL, withUnknown), value);
  const broken = Buffer.concat([enc, Buffer.from([200, 0, 5, 1, 2])]);
  assert.throws(() => decodeTlv(ALL, broken), isDecodeError);
});

test('trailing partial TLV and every truncation are rejected', () => {
  const enc = encodeTlv(ALL, value);
  assert.throws(() => decodeTlv(ALL, Buffer.concat([enc, Buffer.from([1])])), isDecodeError);
  assert.throws(() => decodeTlv(ALL, Buffer.concat([enc, Buffer.from([1, 0])])), isDecodeError);
  assert.throws(() => decodeTlv(ALL, Buffer.concat([enc, Buffer.from([99, 0, 1])])), isDecodeError);
  // A cut is only valid at a TLV boundary after every required field (dropping trailing repeated entries).
  const required = ALL.filter((f) => !f.optional && !f.repeated).map((f) => f.tag);
  const okCuts = new Set<number>();
  let off = 0;
  const seen = new Set<number>();
  for (const [tag, v] of readTlvs(enc)) {
    off += 3 + v.length;
    seen.add(tag);
    if (required.every((t) => seen.has(t))) okCuts.add(off);
  }
  assert.ok(okCuts.size >= 2);
  for (let n = 0; n < enc.length; n++) {
    if (okCuts.has(n)) assert.doesNotThrow(() => decodeTlv(ALL, enc.subarray(0, n)));
    else assert.throws(() => decodeTlv(ALL, enc.subarray(0, n)), isDecodeError, `truncated to ${n}`);
  }
});

test('bad UTF-8 is rejected', () => {
  const bad = [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80], [0x80]];
  for (const b of bad) {
    assert.throws(() => decodeTlv(ALL, withTag(9, tlv(9, b))), isDecodeError, Buffer.from(b).toString('hex'));
  }
  // A BOM is content, not stripped.
  assert.equal(decodeTlv(ALL, withTag(9, tlv(9, [0xef, 0xbb, 0xbf]))).text, '\ufeff');
  assert.throws(() => encodeTlv(ALL, { ...value, text: 'a\ud800' }), RangeError);
});

test('bad bool is rejected', () => {
  for (const b of [[2], [0xff], [], [0, 0]]) {
    assert.throws(() => decodeTlv(ALL, withTag(6, tlv(6, b))), isDecodeError);
  }
  assert.equal(decodeTlv(ALL, withTag(6, tlv(6, [0]))).flag, false);
  assert.throws(() => encodeTlv(ALL, { ...value, flag: 1 as unknown as boolean }), RangeError);
});

test('bad endpoints are rejected', () => {
  const bad = [
    [], // empty
    [5, 1, 2, 3, 4, 0, 1], // family 5
    [0, 1, 2, 3, 4, 0, 1], // family 0
    [6, 1, 2, 3, 4, 0, 1], // family 6 with 4-byte address
    [4, ...Array<number>(16).fill(0), 0, 1], // family 4 with 16-byte address
    [4, 1, 2, 3, 4, 0], // short port
    [4, 1, 2, 3, 4, 0, 1, 0], // trailing byte
    [4, 1, 2, 3, 4, 0, 0], // port 0
  ];
  for (const b of bad) assert.throws(() => decodeTlv(ALL, withTag(13, tlv(13, b))), isDecodeError, JSON.stringify(b));
  const badEnc: unknown[] = [
    { address: '1.2.3.4', port: 0 },
    { address: '1.2.3.4', port: 65536 },
    { address: '1.2.3', port: 1 },
    { address: 'fe80::1%eth0', port: 1 },
    { address: 'example.com', port: 1 },
    { port: 1 },
    null,
    '1.2.3.4:5',
  ];
  for (const ep of badEnc) assert.throws(() => encodeTlv(ALL, { ...value, ep: ep as Endpoint }), RangeError);
});

test('sizes: fixed size, maxSize, ip lengths, integer widths', () => {
  assert.throws(() => decodeTlv(ALL, withTag(7, tlv(7, Buffer.alloc(9)))), isDecodeError);
  assert.equal(decodeTlv(ALL, withTag(7, tlv(7, Buffer.alloc(8)))).blob.length, 8);
  assert.throws(() => decodeTlv(ALL, withTag(8, tlv(8, Buffer.alloc(3)))), isDecodeError);
  assert.throws(() => decodeTlv(ALL, withTag(8, tlv(8, Buffer.alloc(5)))), isDecodeError);
  assert.throws(() => decodeTlv(ALL, withTag(9, tlv(9, Buffer.alloc(17, 0x61)))), isDecodeError);
  assert.throws(() => decodeTlv(ALL, withTag(10, tlv(10, Buffer.alloc(16)))), isDecodeError);
  assert.throws(() => decodeTlv(ALL, withTag(11, tlv(11, Buffer.alloc(4)))), isDecodeError);
  assert.throws(() => decodeTlv(ALL, withTag(12, tlv(12, Buffer.alloc(8)))), isDecodeError);
  assert.equal(decodeTlv(ALL, withTag(12, tlv(12, Buffer.alloc(16)))).any, '::');
  for (const [tag, ok] of [
    [1, 1],
    [2, 2],
    [3, 4],
    [4, 8],
    [5, 8],
  ] as const) {
    for (const len of [0, ok - 1, ok + 1]) {
      if (len < 0 || len === ok) continue;
      assert.throws(() => decodeTlv(ALL, withTag(tag, tlv(tag, Buffer.alloc(len)))), isDecodeError, `tag ${tag} len ${len}`);
    }
  }
  assert.throws(() => encodeTlv(ALL, { ...value, blob: Buffer.alloc(9) }), RangeError);
  assert.throws(() => encodeTlv(ALL, { ...value, key: Buffer.alloc(3) }), RangeError);
  assert.throws(() => encodeTlv(ALL, { ...value, text: 'é'.repeat(9) }), RangeError);
  assert.throws(() => encodeTlv(ALL, { ...value, a8: 256 }), RangeError);
  assert.throws(() => encodeTlv(ALL, { ...value, a16: -1 }), RangeError);
  assert.throws(() => encodeTlv(ALL, { ...value, a32: 2 ** 32 }), RangeError);
  assert.throws(() => encodeTlv(ALL, { ...value, a64: 1n << 64n }), RangeError);
  assert.throws(() => encodeTlv(ALL, { ...value, a64: 5 as unknown as bigint }), RangeError);
  assert.throws(() => encodeTlv(ALL, { ...value, v4: '2001:db8::1' }), RangeError);
  assert.throws(() => encodeTlv(ALL, { ...value, v6: '1.2.3.4' }), RangeError);
});

test("'id' rejects values above Number.MAX_SAFE_INTEGER", () => {
  const big = Buffer.alloc(8);
  big.writeBigUInt64BE(BigInt(Number.MAX_SAFE_INTEGER) + 1n);
  assert.throws(() => decodeTlv(ALL, withTag(5, tlv(5, big))), isDecodeError);
  assert.throws(() => encodeTlv(ALL, { ...value, id: Number.MAX_SAFE_INTEGER + 1 }), RangeError);
  assert.throws(() => encodeTlv(ALL, { ...value, id: -1 }), RangeError);
  assert.throws(() => encodeTlv(ALL, { ...value, id: 1.5 }), RangeError);
});

test('bad schemas are refused', () => {
  const dupTag = [
    { tag: 1, name: 'a', kind: 'u8' },
    { tag: 1, name: 'b', kind: 'u8' },
  ] as const;
  assert.throws(() => encodeTlv(dupTag, { a: 1, b: 2 }), TypeError);
  assert.throws(() => decodeTlv<{ a: number }>([{ tag: 0, name: 'a', kind: 'u8' }], Buffer.alloc(0)), TypeError);
  assert.throws(
    () => decodeTlv<{ a: number }>([{ tag: 1, name: 'a', kind: 'u8', maxSize: 3 }], Buffer.alloc(0)),
    TypeError,
  );
});

test('encoded body larger than 65535 bytes is refused', () => {
  const s: Schema<{ b: Buffer[] }> = [{ tag: 1, name: 'b', kind: 'bytes', repeated: true }];
  assert.throws(() => encodeTlv(s, { b: [Buffer.alloc(40000), Buffer.alloc(40000)] }), RangeError);
  assert.throws(() => encodeTlv(s, { b: [Buffer.alloc(65536)] }), RangeError);
});

test('decoded bytes do not alias the input', () => {
  const enc = encodeTlv(ALL, value);
  const dec = decodeTlv(ALL, enc);
  enc.fill(0);
  assert.deepEqual(dec.key, Buffer.from([1, 2, 3, 4]));
});

test('5000 random buffers decode to a valid object or throw DecodeError', () => {
  const rnd = prng(SEED);
  const tags = ALL.map((f) => f.tag);
  for (let i = 0; i < 5000; i++) {
    const parts: Buffer[] = [];
    const n = Math.floor(rnd() * 20);
    for (let k = 0; k < n; k++) {
      const tag = rnd() < 0.8 ? tags[Math.floor(rnd() * tags.length)]! : Math.floor(rnd() * 256);
      const len = Math.floor(rnd() * 20);
      const v = Buffer.alloc(len);
      for (let j = 0; j < len; j++) v[j] = rnd() < 0.3 ? 0 : Math.floor(rnd() * 256);
      parts.push(tlv(tag, v));
    }
    let b = Buffer.concat(parts);
    if (rnd() < 0.2) b = b.subarray(0, Math.floor(rnd() * b.length));
    try {
      const d = decodeTlv(ALL, b);
      assert.deepEqual(decodeTlv(ALL, encodeTlv(ALL, d)), d);
    } catch (err) {
      assert.ok(isDecodeError(err), `seed ${SEED} iteration ${i}: ${String(err)}`);
    }
  }
});

test('5000 mutations of a valid body decode to a valid object or throw DecodeError', () => {
  const rnd = prng(SEED + 1);
  const enc = encodeTlv(ALL, value);
  for (let i = 0; i < 5000; i++) {
    const m = Buffer.from(enc);
    const pos = Math.floor(rnd() * m.length);
    if (rnd() < 0.5) m[pos] = m[pos]! ^ (1 << Math.floor(rnd() * 8));
    else m[pos] = Math.floor(rnd() * 256);
    try {
      const d = decodeTlv(ALL, m);
      assert.deepEqual(decodeTlv(ALL, encodeTlv(ALL, d)), d);
    } catch (err) {
      assert.ok(isDecodeError(err), `seed ${SEED} iteration ${i}: ${String(err)}`);
    }
  }
});

// ───────────────────────────── ip / endpoint ─────────────────────────────

test('IPv6 formatting matches node:net for random addresses', () => {
  const rnd = prng(SEED + 2);
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.alloc(16);
    for (let w = 0; w < 8; w++) {
      const r = rnd();
      const word = r < 0.55 ? 0 : r < 0.6 ? 0xffff : r < 0.7 ? 1 : Math.floor(rnd() * 0x10000);
      b.writeUInt16BE(word, w * 2);
    }
    const full = Array.from({ length: 8 }, (_, w) => b.readUInt16BE(w * 2).toString(16)).join(':');
    const expected = new net.SocketAddress({ address: full, family: 'ipv6' }).address;
    const got = formatIp6(b);
    assert.equal(got, expected, full);
    assert.deepEqual(parseIp6(got), b, got);
  }
});

test('IP parsing agrees with node:net on random near-valid strings (validity, and the bytes through formatting)', () => {
  const rnd = prng(SEED + 3);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)]!;
  const parts = ['0', '1', '00', '01', '255', '256', '999', 'ffff', 'FFFF', '12345', 'g', 'a', 'db8', '', '1.2.3.4', '10.0.0.255', '1.2.3', '300.1.1.1'];
  const seps = [':', ':', ':', '::', '.', ':::'];
  let valid4 = 0;
  let valid6 = 0;
  for (let i = 0; i < 20_000; i++) {
    let t = pick(parts);
    const n = Math.floor(rnd() * 10);
    for (let k = 0; k < n; k++) t += pick(seps) + pick(parts);
    if (rnd() < 0.1) t = pick(seps) + t;
    const fam = net.isIP(t);
    assert.equal(ipFamily(t), fam, t);
    assert.equal(parseIp4(t) !== undefined, fam === 4, t);
    if (fam === 4) {
      valid4++;
      assert.deepEqual([...parseIp4(t)!], t.split('.').map(Number), t);
    }
    const b6 = parseIp6(t);
    assert.equal(b6 !== undefined, fam === 6, t);
    if (b6) {
      valid6++;
      assert.equal(formatIp6(b6), new net.SocketAddress({ address: t, family: 'ipv6' }).address, t);
    }
  }
  assert.ok(valid4 > 50 && valid6 > 200, `enough valid samples (${valid4} IPv4, ${valid6} IPv6)`);
});

test('IP parsing agrees with net.isIP on valid and near-valid strings', () => {
  const samples = [
    '0.0.0.0',
    '255.255.255.255',
    '256.1.1.1',
    '01.2.3.4',
    '1.2.3',
    '1.2.3.4.5',
    ' 1.2.3.4',
    '1.2.3.4 ',
    '1..3.4',
    '::',
    '::1',
    '1::',
    '1:2:3:4:5:6:7:8',
    '1:2:3:4:5:6:7::',
    '::2:3:4:5:6:7:8',
    '1:2:3:4:5:6:7:8:9',
    '1::2::3',
    ':::',
    ':1::2',
    '1::2:',
    '::ffff:1.2.3.4',
    '1:2:3:4:5:6:1.2.3.4',
    '1:2:3:4:5:6:7:1.2.3.4',
    '1.2.3.4::',
    '::1.2.3.4:5',
    '12345::',
    'g::1',
    '2001:DB8::1',
    '::ffff:256.1.1.1',
  ];
  for (const s of samples) {
    assert.equal(ipFamily(s), net.isIP(s), s);
    assert.equal(parseIp(s) !== undefined, net.isIP(s) !== 0, s);
  }
  assert.equal(parseIp('fe80::1%eth0'), undefined);
  assert.deepEqual([...parseIp4('10.1.2.3')!], [10, 1, 2, 3]);
  assert.equal(normalizeIp('2001:0DB8:0000:0000:0000:0000:0000:0001'), '2001:db8::1');
  assert.equal(normalizeIp('0:0:0:0:0:ffff:102:304'), '::ffff:1.2.3.4');
  assert.equal(normalizeIp('nope'), undefined);
});

test('formatEndpoint / parseEndpoint', () => {
  assert.equal(formatEndpoint({ address: '1.2.3.4', port: 5 }), '1.2.3.4:5');
  assert.equal(formatEndpoint({ address: '2001:db8::1', port: 5 }), '[2001:db8::1]:5');
  assert.deepEqual(parseEndpoint('1.2.3.4:5'), { address: '1.2.3.4', port: 5 });
  assert.deepEqual(parseEndpoint('[2001:DB8:0::1]:65535'), { address: '2001:db8::1', port: 65535 });
  for (const s of [
    '1.2.3.4',
    '1.2.3.4:',
    '1.2.3.4:0',
    '1.2.3.4:65536',
    '1.2.3.4:+5',
    '1.2.3.4:5x',
    '2001:db8::1:5',
    '[2001:db8::1]',
    '[2001:db8::1]5',
    '[1.2.3.4]:5',
    '[fe80::1%eth0]:5',
    'host:5',
    '',
  ]) {
    assert.throws(
      () => parseEndpoint(s),
      (err: unknown) => err instanceof DecodeError && err.code === 'ERR_DECODE_ENDPOINT',
      s,
    );
  }
});

test('endpointKey / endpointsEqual normalize addresses', () => {
  assert.ok(endpointsEqual({ address: '2001:DB8:0::1', port: 7 }, { address: '2001:db8::1', port: 7 }));
  assert.ok(endpointsEqual({ address: '::ffff:1.2.3.4', port: 7 }, { address: '1.2.3.4', port: 7 }));
  assert.ok(!endpointsEqual({ address: '1.2.3.4', port: 7 }, { address: '1.2.3.4', port: 8 }));
  assert.ok(!endpointsEqual({ address: '1.2.3.4', port: 7 }, { address: '1.2.3.5', port: 7 }));
  assert.equal(endpointKey({ address: '::FFFF:1.2.3.4', port: 9 }), '1.2.3.4:9');
  assert.equal(endpointKey({ address: '2001:db8:0:0::1', port: 9 }), '[2001:db8::1]:9');
});

test('each encoded body is its own buffer of its exact size (the shared scratch is never handed out)', () => {
  const s: Schema<{ b: Buffer; n: number }> = [
    { tag: 1, name: 'b', kind: 'bytes' },
    { tag: 2, name: 'n', kind: 'u16' },
  ];
  const first = encodeTlv(s, { b: Buffer.alloc(40, 0xaa), n: 7 });
  const copy = Buffer.from(first);
  const second = encodeTlv(s, { b: Buffer.alloc(3, 0x55), n: 9 });
  assert.deepEqual(first, copy, 'a later encode does not overwrite an earlier body');
  for (const b of [first, second]) {
    assert.equal(b.byteOffset, 0);
    assert.equal(b.buffer.byteLength, b.length, 'nothing else reachable through .buffer');
  }
  assert.throws(() => encodeTlv(s, { b: Buffer.alloc(65_535), n: 1 }), RangeError);
  assert.deepEqual(decodeTlv(s, encodeTlv(s, { b: Buffer.alloc(3, 1), n: 2 })), { b: Buffer.alloc(3, 1), n: 2 }, 'fine after a refused body');
});
