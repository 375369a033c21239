// Unit tests for the DNS codec of src/net/dns: round trips, EDNS0, truncation, compression limits, hostile input.
// The fuzz cases use a seeded PRNG so a failure is reproducible; only DecodeError may ever escape the decoders.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  addressBytes,
  decodeQuery,
  decodeResponse,
  encodeHeaderOnlyResponse,
  encodeQuery,
  encodeResponse,
  formatAddress,
  peekHeader,
  TYPE_A,
  TYPE_AAAA,
} from '../../../src/net/dns/codec.js';
import { DecodeError } from '../../../src/util/errors.js';
import { prng } from '../../harness/prng.js';


function isDnsDecodeError(err: unknown): boolean {
  return err instanceof DecodeError && err.code === 'ERR_DNS_DECODE';
}

function assertDecodeError(fn: () => unknown, msg?: RegExp): void {
  assert.throws(fn, (err: unknown) => isDnsDecodeError(err) && (!msg || msg.test((err as Error).message)));
}

/** Header bytes: id, flags word, then the four counts. */
function header(id: number, flags: number, qd: number, an: number, ns: number, ar: number): number[] {
  const w = (n: number): number[] => [n >> 8, n & 0xff];
  return [...w(id), ...w(flags), ...w(qd), ...w(an), ...w(ns), ...w(ar)];
}

const Q_ALPHA = [5, ...Buffer.from('alpha'), 8, ...Buffer.from('cyphonic'), 8, ...Buffer.from('internal'), 0, 0, 1, 0, 1];

describe('decodeQuery', () => {
  test('round trip of encodeQuery, names normalised, question echoed in original case', () => {
    const q = decodeQuery(encodeQuery('Alpha.CYPHONIC.internal.', 'AAAA', 0xbeef));
    assert.equal(q.id, 0xbeef);
    assert.equal(q.name, 'alpha.cyphonic.internal');
    assert.equal(q.qtype, TYPE_AAAA);
    assert.equal(q.qclass, 1);
    assert.equal(q.flags.qr, false);
    assert.equal(q.flags.rd, true);
    assert.equal(q.flags.opcode, 0);
    assert.equal(q.edns, null);
    assert.equal(Buffer.from(q.question).subarray(0, 6).toString('latin1'), '\x05Alpha');
    assert.equal(decodeQuery(encodeQuery('x', 'A', 1, { rd: false })).flags.rd, false);
    assert.equal(decodeQuery(encodeQuery('.', 'A', 1)).name, '');
  });

  test('EDNS0 OPT: UDP size read, sizes under 512 raised to 512, DO bit and version seen', () => {
    assert.deepEqual(decodeQuery(encodeQuery('a.b', 'A', 1, { udpSize: 4096 })).edns, { udpSize: 4096, version: 0, dnssecOk: false });
    assert.equal(decodeQuery(encodeQuery('a.b', 'A', 1, { udpSize: 100 })).edns?.udpSize, 512);
    const raw = Buffer.from([...header(7, 0x0100, 1, 0, 0, 1), ...Q_ALPHA, 0, 0, 41, 0x05, 0xdc, 0, 1, 0x80, 0, 0, 0]);
    assert.deepEqual(decodeQuery(raw).edns, { udpSize: 1500, version: 1, dnssecOk: true });
  });

  test('OPT found after skipping answer and authority records that use compression', () => {
    const an = [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4];
    const ns = [3, ...Buffer.from('foo'), 0xc0, 18, 0, 16, 0, 1, 0, 0, 0, 0, 0, 2, 1, 0x41];
    const opt = [0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 0]; // one empty option passed over
    const raw = Buffer.from([...header(9, 0, 1, 1, 1, 2), ...Q_ALPHA, ...an, ...ns, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, ...opt]);
    assert.equal(decodeQuery(raw).edns?.udpSize, 4096);
  });

  test('trailing bytes after the last needed section are ignored (documented policy)', () => {
    const q = decodeQuery(Buffer.concat([encodeQuery('alpha', 'A', 3), Buffer.from('garbage')]));
    assert.equal(q.name, 'alpha');
  });

  test('labels with dots, backslashes and unprintable bytes are escaped, never confused with separators', () => {
    const raw = Buffer.from([...header(1, 0, 1, 0, 0, 0), 3, 0x61, 0x2e, 0x42, 2, 0x5c, 0x00, 8, ...Buffer.from('cyphonic'), 0, 0, 1, 0, 1]);
    assert.equal(decodeQuery(raw).name, 'a\\.b.\\\\\\000.cyphonic');
  });

  test('rejects responses, qdcount != 1, truncation at every length', () => {
    assertDecodeError(() => decodeQuery(Buffer.from([...header(1, 0x8000, 1, 0, 0, 0), ...Q_ALPHA])), /QR/);
    assertDecodeError(() => decodeQuery(Buffer.from(header(1, 0, 0, 0, 0, 0))), /qdcount/);
    assertDecodeError(() => decodeQuery(Buffer.from([...header(1, 0, 2, 0, 0, 0), ...Q_ALPHA, ...Q_ALPHA])), /qdcount/);
    const good = encodeQuery('alpha.cyphonic.internal', 'A', 5, { udpSize: 1232 });
    for (let n = 0; n < good.length; n++) assertDecodeError(() => decodeQuery(good.subarray(0, n)));
    assert.equal(decodeQuery(good).edns?.udpSize, 1232);
  });

  test('rejects reserved label types, names over 255 bytes, two OPT records, OPT not at the root', () => {
    assertDecodeError(() => decodeQuery(Buffer.from([...header(1, 0, 1, 0, 0, 0), 0x40, 0, 0, 1, 0, 1])), /reserved/);
    assertDecodeError(() => decodeQuery(Buffer.from([...header(1, 0, 1, 0, 0, 0), 0x80, 0, 0, 1, 0, 1])), /reserved/);
    const long: number[] = [];
    for (let i = 0; i < 5; i++) long.push(50, ...new Array<number>(50).fill(0x61)); // 5 * 51 + 1 = 256
    assertDecodeError(() => decodeQuery(Buffer.from([...header(1, 0, 1, 0, 0, 0), ...long, 0, 0, 1, 0, 1])), /too long/);
    const ok = long.slice(0, 4 * 51).concat([49, ...new Array<number>(49).fill(0x61)]); // 255 exactly
    assert.equal(decodeQuery(Buffer.from([...header(1, 0, 1, 0, 0, 0), ...ok, 0, 0, 1, 0, 1])).name.length, 253);
    const opt = [0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0];
    assertDecodeError(() => decodeQuery(Buffer.from([...header(1, 0, 1, 0, 0, 2), ...Q_ALPHA, ...opt, ...opt])), /OPT/);
    assertDecodeError(() => decodeQuery(Buffer.from([...header(1, 0, 1, 0, 0, 1), ...Q_ALPHA, 0xc0, 12, ...opt.slice(1)])), /root/);
  });

  test('compression: self loop, mutual loop and forward pointers rejected', () => {
    // question name is a pointer to itself
    assertDecodeError(() => decodeQuery(Buffer.from([...header(1, 0, 1, 0, 0, 0), 0xc0, 12, 0, 1, 0, 1])), /pointer/);
    // forward pointer out of bounds
    assertDecodeError(() => decodeQuery(Buffer.from([...header(1, 0, 1, 0, 0, 0), 0xff, 0xff, 0, 1, 0, 1])), /pointer/);
    // two names pointing at each other in the additional section
    const base = [...header(1, 0, 1, 0, 0, 2), ...Q_ALPHA];
    const a = base.length;
    const loop = [1, 0x61, 0xc0, a + 16, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x62, 0xc0, a];
    assertDecodeError(() => decodeQuery(Buffer.from([...base, ...loop, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0])), /pointer/);
  });

  test('compression: a backward chain of 128 pointer hops is accepted, 129 is not', () => {
    // An answer's rdata holds a root label then k pointers, each to the previous item; the OPT
    // owner points at the last one, so reading it takes k + 1 hops.
    const chain = (hops: number): Buffer => {
      const base = [...header(1, 0, 1, 1, 0, 1), ...Q_ALPHA, 0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 0];
      const rdStart = base.length + 2;
      const rdata = [0];
      let prev = rdStart;
      for (let i = 0; i < hops - 1; i++) {
        const here = rdStart + rdata.length;
        rdata.push(0xc0 | (prev >> 8), prev & 0xff);
        prev = here;
      }
      const rr = [0xc0 | (prev >> 8), prev & 0xff, 0, 41, 2, 0, 0, 0, 0, 0, 0, 0];
      return Buffer.from([...base, rdata.length >> 8, rdata.length & 0xff, ...rdata, ...rr]);
    };
    // the OPT owner is a pointer to the last of (hops - 1) pointers: `hops` jumps in all
    assertDecodeError(() => decodeQuery(chain(129)), /too many/);
    // within the limit the chain resolves to the root, so it is a valid OPT owner
    assert.equal(decodeQuery(chain(128)).edns?.udpSize, 512);
  });
});

describe('encodeResponse / decodeResponse', () => {
  const ask = (name: string, type: 'A' | 'AAAA' | number, udpSize?: number) =>
    decodeQuery(encodeQuery(name, type, 0x4242, udpSize === undefined ? {} : { udpSize }));

  test('A and AAAA answers, flags, id and question echoed, answers point at the question', () => {
    const q = ask('Alpha.cyphonic.internal', 'A');
    const buf = encodeResponse(q, { rcode: 'NOERROR', answers: [{ type: 'A', address: '100.64.0.7', ttl: 5 }], authoritative: true });
    assert.deepEqual([...buf.subarray(12 + q.question.length, 12 + q.question.length + 2)], [0xc0, 12]);
    const r = decodeResponse(buf);
    assert.equal(r.id, 0x4242);
    assert.equal(r.rcode, 0);
    assert.deepEqual(
      [r.flags.qr, r.flags.aa, r.flags.ra, r.flags.rd, r.flags.tc],
      [true, true, true, true, false],
    );
    assert.deepEqual(r.question, { name: 'alpha.cyphonic.internal', qtype: TYPE_A, qclass: 1 });
    assert.deepEqual(r.answers, [{ name: 'alpha.cyphonic.internal', type: 'A', address: '100.64.0.7', ttl: 5 }]);
    assert.equal(buf.toString('latin1').includes('Alpha'), true);

    const q6 = ask('beta.cyphonic.internal', 'AAAA');
    const r6 = decodeResponse(encodeResponse(q6, { rcode: 'NOERROR', answers: [{ type: 'AAAA', address: 'FD00:0:0:0::1:5', ttl: 300 }] }));
    assert.equal(r6.flags.aa, false);
    assert.deepEqual(r6.answers, [{ name: 'beta.cyphonic.internal', type: 'AAAA', address: 'fd00::1:5', ttl: 300 }]);
  });

  test('every rcode, RD copied from the query, OPT echoed with DO and our size', () => {
    for (const [rc, code] of [['NXDOMAIN', 3], ['SERVFAIL', 2], ['REFUSED', 5], ['FORMERR', 1], ['NOTIMP', 4]] as const) {
      const r = decodeResponse(encodeResponse(decodeQuery(encodeQuery('x.y', 'A', 1, { rd: false })), { rcode: rc, answers: [] }));
      assert.equal(r.rcode, code);
      assert.equal(r.flags.rd, false);
      assert.equal(r.answers.length, 0);
    }
    const q = decodeQuery(Buffer.from([...header(7, 0x0100, 1, 0, 0, 1), ...Q_ALPHA, 0, 0, 41, 0x05, 0xdc, 0, 0, 0x80, 0, 0, 0]));
    const buf = encodeResponse(q, { rcode: 'NOERROR', answers: [] });
    assert.deepEqual([...buf.subarray(buf.length - 11)], [0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
    const bad = encodeResponse(q, { rcode: 'BADVERS', answers: [] });
    assert.equal(decodeResponse(bad).rcode, 0); // low bits 0, extended bits 1 in the OPT TTL
    assert.equal(bad[bad.length - 6], 1);
    assert.throws(() => encodeResponse(ask('x', 'A'), { rcode: 'BADVERS', answers: [] }), TypeError);
  });

  test('TC set and answers dropped when over the client UDP size', () => {
    const many = Array.from({ length: 40 }, (_, i) => ({ type: 'AAAA' as const, address: `fd00::${i + 1}`, ttl: 5 }));
    const small = decodeResponse(encodeResponse(ask('n.cyphonic.internal', 'AAAA'), { rcode: 'NOERROR', answers: many }));
    assert.equal(small.flags.tc, true);
    assert.equal(small.answers.length, 0);
    const big = decodeResponse(encodeResponse(ask('n.cyphonic.internal', 'AAAA', 4096), { rcode: 'NOERROR', answers: many }));
    assert.equal(big.flags.tc, false);
    assert.equal(big.answers.length, 40);
  });

  test('refuses to encode an address of the wrong family', () => {
    assert.throws(() => encodeResponse(ask('x', 'A'), { rcode: 'NOERROR', answers: [{ type: 'A', address: 'fd00::1', ttl: 5 }] }), TypeError);
    assert.throws(() => encodeResponse(ask('x', 'A'), { rcode: 'NOERROR', answers: [{ type: 'A', address: 'nope', ttl: 5 }] }), TypeError);
  });

  test('header-only FORMERR/NOTIMP echo id, opcode and RD', () => {
    const h = peekHeader(Buffer.from(header(0x1234, 0x2100, 9, 9, 9, 9)))!;
    const r = decodeResponse(encodeHeaderOnlyResponse(h, 'NOTIMP'));
    assert.equal(r.id, 0x1234);
    assert.equal(r.flags.opcode, 4);
    assert.equal(r.flags.rd, true);
    assert.equal(r.rcode, 4);
    assert.equal(r.question, null);
    assert.equal(peekHeader(Buffer.alloc(11)), null);
  });

  test('decodeResponse skips other record types and rejects bad A/AAAA rdata lengths', () => {
    const base = [...header(1, 0x8180, 1, 2, 0, 0), ...Q_ALPHA];
    const cname = [0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 9, 0, 2, 0xc0, 12];
    const a = [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 10, 0, 0, 1];
    assert.deepEqual(decodeResponse(Buffer.from([...base, ...cname, ...a])).answers.map((x) => x.address), ['10.0.0.1']);
    const badA = [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 9, 0, 3, 10, 0, 0];
    assertDecodeError(() => decodeResponse(Buffer.from([...base, ...cname, ...badA])), /rdlength/);
    assertDecodeError(() => decodeResponse(encodeQuery('x', 'A')), /QR/);
  });
});

describe('address helpers', () => {
  test('IPv6 text forms parse and print canonically', () => {
    const cases: [string, string][] = [
      ['::', '::'],
      ['::1', '::1'],
      ['fd12:3456:789a:0:0:0:0:1', 'fd12:3456:789a::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:0db8:0000:0001:0001:0001:0001:0001', '2001:db8:0:1:1:1:1:1'],
      ['::ffff:192.0.2.1', '::ffff:192.0.2.1'],
      ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
      ['fe80::1%eth0', 'fe80::1'],
    ];
    for (const [input, out] of cases) assert.equal(formatAddress(addressBytes(input)), out, input);
    assert.deepEqual([...addressBytes('100.64.0.1')], [100, 64, 0, 1]);
    assert.throws(() => addressBytes('1.2.3'), TypeError);
  });
});

describe('hostile input', () => {
  const check = (buf: Uint8Array): void => {
    for (const fn of [decodeQuery, decodeResponse]) {
      try {
        fn(buf);
      } catch (err) {
        if (!isDnsDecodeError(err)) throw new Error(`non-DecodeError from ${fn.name} on ${Buffer.from(buf).toString('hex')}: ${String(err)}`);
      }
    }
  };

  test('5000 random buffers raise DecodeError only', () => {
    const rnd = prng(0xd15ea5e);
    for (let i = 0; i < 5000; i++) {
      const buf = new Uint8Array(Math.floor(rnd() * 600));
      for (let j = 0; j < buf.length; j++) buf[j] = Math.floor(rnd() * 256);
      // keep many of them past the header checks
      if (buf.length >= 12 && rnd() < 0.7) {
        buf[2]! &= 0x7f;
        buf[4] = 0;
        buf[5] = 1;
        if (rnd() < 0.5) buf.fill(0, 6, 10);
      }
      check(buf);
    }
  });

  test('5000 mutations of valid queries and responses raise DecodeError only', () => {
    const rnd = prng(42);
    const q = encodeQuery('Alpha.cyphonic.internal', 'AAAA', 77, { udpSize: 1232 });
    const seeds: Buffer[] = [
      q,
      encodeQuery('x.example.com', 'A', 1),
      Buffer.from([...header(9, 0, 1, 1, 1, 2), ...Q_ALPHA, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4, 3, 0x66, 0x6f, 0x6f, 0xc0, 18, 0, 16, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]),
      encodeResponse(decodeQuery(q), { rcode: 'NOERROR', answers: [{ type: 'AAAA', address: 'fd00::5', ttl: 5 }, { type: 'AAAA', address: 'fd00::6', ttl: 5 }] }),
    ];
    for (let i = 0; i < 5000; i++) {
      const seed = seeds[i % seeds.length]!;
      let buf = Buffer.from(seed);
      const edits = 1 + Math.floor(rnd() * 4);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(rnd() * Math.max(1, buf.length));
        switch (Math.floor(rnd() * 5)) {
          case 0: buf[at] = (buf[at] ?? 0) ^ (1 << Math.floor(rnd() * 8)); break;
          case 1: buf[at] = Math.floor(rnd() * 256); break;
          case 2: buf = buf.subarray(0, at); break;
          case 3: buf = Buffer.concat([buf.subarray(0, at), Buffer.from([0xc0 | Math.floor(rnd() * 64), Math.floor(rnd() * 256)]), buf.subarray(at)]); break;
          default: buf[at] = [0, 0x3f, 0x40, 0xc0, 0xff][Math.floor(rnd() * 5)]!; break;
        }
      }
      check(buf);
    }
  });
});
