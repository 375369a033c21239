// The native policy filter (native/filter.c) on hand-made packets, both families: new flows need a rule, replies to
// flows we opened pass (TCP, UDP, ICMP echo, ICMP errors quoting our packets), entries expire, later fragments and
// truncated headers are dropped, "*" and unset slots pass everything, and every outcome is counted.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadNativeAddon } from '../../../src/native/addon.js';
import { BLOCK_RULES, createFilterStats, filterCounters, rulesFromAllowIn } from '../../../src/node/dataplane/filter.js';

const native = loadNativeAddon();
const ME4 = [100, 64, 0, 1];
const PEER4 = [100, 64, 0, 2];
const ME6 = Buffer.from('fd000000000000000000000000000001', 'hex');
const PEER6 = Buffer.from('fd000000000000000000000000000002', 'hex');

type Proto = 'tcp' | 'udp' | 'icmp';
interface Pkt {
  fam: 4 | 6;
  proto: Proto;
  src?: 'me' | 'peer';
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpId?: number;
  inner?: Buffer;
  fragOffset?: number;
  /** TCP flags (default SYN). */
  flags?: number;
}

function l4(p: Pkt): Buffer {
  if (p.proto === 'icmp') {
    const b = Buffer.alloc(8 + (p.inner?.length ?? 0));
    b[0] = p.icmpType ?? (p.fam === 4 ? 8 : 128);
    b.writeUInt16BE(p.icmpId ?? 7, 4);
    p.inner?.copy(b, 8);
    return b;
  }
  const b = Buffer.alloc(p.proto === 'tcp' ? 20 : 8);
  b.writeUInt16BE(p.sport ?? 40000, 0);
  b.writeUInt16BE(p.dport ?? 22, 2);
  if (p.proto === 'tcp') b[13] = p.flags ?? 0x02;
  return b;
}

function pkt(p: Pkt): Buffer {
  const body = l4(p);
  const fromPeer = (p.src ?? 'peer') === 'peer';
  if (p.fam === 4) {
    const h = Buffer.alloc(20);
    h[0] = 0x45;
    h.writeUInt16BE(20 + body.length, 2);
    if (p.fragOffset) h.writeUInt16BE(p.fragOffset, 6);
    h[8] = 64;
    h[9] = p.proto === 'tcp' ? 6 : p.proto === 'udp' ? 17 : 1;
    Buffer.from(fromPeer ? PEER4 : ME4).copy(h, 12);
    Buffer.from(fromPeer ? ME4 : PEER4).copy(h, 16);
    return Buffer.concat([h, body]);
  }
  const nh = p.proto === 'tcp' ? 6 : p.proto === 'udp' ? 17 : 58;
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h[7] = 64;
  (fromPeer ? PEER6 : ME6).copy(h, 8);
  (fromPeer ? ME6 : PEER6).copy(h, 24);
  let ext = Buffer.alloc(0);
  if (p.fragOffset !== undefined) {
    ext = Buffer.alloc(8);
    ext[0] = nh;
    ext.writeUInt16BE(p.fragOffset << 3, 2);
    h[6] = 44;
  } else h[6] = nh;
  h.writeUInt16BE(ext.length + body.length, 4);
  return Buffer.concat([h, ext, body]);
}

describe('native policy filter', { skip: native ? false : 'native addon not built' }, () => {
  function rig(allowIn: string | null) {
    const sab = createFilterStats();
    const f = native!.filterCreate(4, new Float64Array(sab));
    native!.filterSet(f, 1, rulesFromAllowIn(allowIn));
    let now = 1_000_000;
    return {
      in: (p: Pkt) => native!.filterPacket(f, 1, pkt(p), false, now),
      out: (p: Pkt) => native!.filterPacket(f, 1, pkt({ ...p, src: 'me' }), true, now),
      raw: (b: Buffer) => native!.filterPacket(f, 1, b, false, now),
      advance: (ms: number) => (now += ms),
      counters: () => filterCounters(sab),
      f,
    };
  }

  for (const fam of [4, 6] as const) {
    test(`IPv${fam}: new flows need a rule (icmp, tcp:22); other ports, UDP and later fragments are dropped`, () => {
      const r = rig('icmp,tcp:22');
      assert.equal(r.in({ fam, proto: 'icmp' }), true, 'echo request: icmp rule');
      assert.equal(r.in({ fam, proto: 'tcp', dport: 22 }), true);
      assert.equal(r.in({ fam, proto: 'tcp', dport: 23 }), false);
      assert.equal(r.in({ fam, proto: 'udp', dport: 22 }), false, 'tcp:22 is not udp:22');
      assert.equal(r.in({ fam, proto: 'tcp', dport: 22, fragOffset: 100 }), false, 'a later fragment has no ports');
      const c = r.counters();
      assert.equal(c['passRule'], 2);
      assert.equal(c['dropNoRule'], 2);
      assert.equal(c['dropFragment'], 1);
    });

    test(`IPv${fam}: replies to flows we opened pass, nothing else from the peer does, and entries expire`, () => {
      const r = rig('');
      assert.equal(r.in({ fam, proto: 'tcp', sport: 80, dport: 40001 }), false, 'nothing opened yet');
      r.out({ fam, proto: 'tcp', sport: 40001, dport: 80 });
      assert.equal(r.in({ fam, proto: 'tcp', sport: 80, dport: 40001 }), true, 'the reply');
      assert.equal(r.in({ fam, proto: 'tcp', sport: 80, dport: 40002 }), false, 'another local port');
      assert.equal(r.in({ fam, proto: 'tcp', sport: 81, dport: 40001 }), false, 'another remote port');
      assert.equal(r.in({ fam, proto: 'udp', sport: 80, dport: 40001 }), false, 'another protocol');
      assert.equal(r.in({ fam: fam === 4 ? 6 : 4, proto: 'tcp', sport: 80, dport: 40001 }), false, 'another family');
      // Our answers to a TCP connection the peer opened (SYN-ACK, ACK) open no flow of ours.
      r.out({ fam, proto: 'tcp', sport: 2222, dport: 50000, flags: 0x12 });
      r.out({ fam, proto: 'tcp', sport: 2222, dport: 50000, flags: 0x10 });
      assert.equal(r.in({ fam, proto: 'tcp', sport: 50000, dport: 2222, flags: 0x10 }), false, 'the peer\'s connection is no flow of ours');
      r.out({ fam, proto: 'udp', sport: 5000, dport: 53 });
      assert.equal(r.in({ fam, proto: 'udp', sport: 53, dport: 5000 }), true);
      r.out({ fam, proto: 'icmp', icmpId: 99 });
      assert.equal(r.in({ fam, proto: 'icmp', icmpType: fam === 4 ? 0 : 129, icmpId: 99 }), true, 'echo reply');
      assert.equal(r.in({ fam, proto: 'icmp', icmpType: fam === 4 ? 0 : 129, icmpId: 98 }), false, 'another echo id');
      assert.equal(r.in({ fam, proto: 'icmp', icmpType: fam === 4 ? 8 : 128, icmpId: 99 }), false, 'an echo request is a new flow');
      // An ICMP error quoting the UDP datagram we sent passes; one quoting something we never sent does not.
      const quoted = pkt({ fam, proto: 'udp', src: 'me', sport: 5000, dport: 53 });
      assert.equal(r.in({ fam, proto: 'icmp', icmpType: fam === 4 ? 3 : 1, inner: quoted }), true);
      const forged = pkt({ fam, proto: 'udp', src: 'me', sport: 5001, dport: 53 });
      assert.equal(r.in({ fam, proto: 'icmp', icmpType: fam === 4 ? 3 : 1, inner: forged }), false);
      r.advance(121_000);
      assert.equal(r.in({ fam, proto: 'udp', sport: 53, dport: 5000 }), false, 'the UDP flow expired after 2 min idle');
      assert.equal(r.in({ fam, proto: 'tcp', sport: 80, dport: 40001 }), true, 'TCP lives longer');
    });
  }

  test('"*" and unset slots pass everything; truncated headers are dropped', () => {
    const any = rig('*');
    assert.equal(any.in({ fam: 4, proto: 'udp', dport: 9 }), true);
    assert.equal(any.counters()['passAny'], 1);
    const unset = rig(null);
    assert.equal(unset.in({ fam: 6, proto: 'udp', dport: 9 }), true);
    const r = rig('tcp:22');
    assert.equal(r.raw(pkt({ fam: 4, proto: 'tcp' }).subarray(0, 22)), false);
    assert.equal(r.raw(Buffer.from([0x45, 0, 0])), false);
    assert.equal(r.counters()['dropMalformed'], 2);
  });

  test('a long rule list (port bitmap) decides like a short one', () => {
    const many = Array.from({ length: 40 }, (_, i) => `tcp:${1000 + 10 * i}-${1000 + 10 * i + 4}`).concat(['udp:53', 'icmp', 'udp:60000-65535']).join(',');
    const r = rig(many);
    for (const [proto, port, want] of [['tcp', 1000, true], ['tcp', 1004, true], ['tcp', 1005, false], ['tcp', 1394, true], ['tcp', 1395, false], ['udp', 53, true], ['udp', 54, false], ['udp', 65535, true], ['tcp', 53, false]] as const) {
      assert.equal(r.in({ fam: 4, proto, dport: port }), want, `${proto}:${port}`);
    }
    assert.equal(r.in({ fam: 6, proto: 'icmp' }), true);
    assert.equal(rig(many.replace(',icmp', '')).in({ fam: 6, proto: 'icmp' }), false);
  });

  test('flows opened under "*" keep their replies when a narrower policy replaces it', () => {
    const r = rig('*');
    r.out({ fam: 4, proto: 'tcp', sport: 40005, dport: 22 });
    r.out({ fam: 6, proto: 'udp', sport: 5005, dport: 53 });
    native!.filterSet(r.f, 1, rulesFromAllowIn(''));
    assert.equal(r.in({ fam: 4, proto: 'tcp', sport: 22, dport: 40005, flags: 0x12 }), true);
    assert.equal(r.in({ fam: 6, proto: 'udp', sport: 53, dport: 5005 }), true);
    assert.equal(r.in({ fam: 4, proto: 'tcp', sport: 22, dport: 40006, flags: 0x12 }), false);
  });

  test('a revoked peer\'s slot passes nothing either way', () => {
    const r = rig('*');
    native!.filterSet(r.f, 1, BLOCK_RULES);
    assert.equal(r.in({ fam: 4, proto: 'icmp' }), false);
    assert.equal(r.out({ fam: 6, proto: 'tcp', sport: 40000, dport: 22 }), false, 'nothing is sent to it');
    assert.equal(r.counters()['dropRevoked'], 1);
    assert.equal(r.counters()['dropRevokedOut'], 1);
    native!.filterSet(r.f, 1, rulesFromAllowIn('icmp'));
    assert.equal(r.in({ fam: 4, proto: 'icmp' }), true, 'new rules (a re-enrolled node) replace the block');
  });

  test('a slot given to another peer (filterForget) keeps neither the old rules nor the old flows', () => {
    const r = rig('');
    r.out({ fam: 4, proto: 'tcp', sport: 40007, dport: 22 });
    assert.equal(r.in({ fam: 4, proto: 'tcp', sport: 22, dport: 40007, flags: 0x12 }), true, 'the old peer\'s reply');
    native!.filterSet(r.f, 1, BLOCK_RULES);
    native!.filterForget(r.f, 1);
    native!.filterSet(r.f, 1, rulesFromAllowIn(''));
    assert.equal(r.in({ fam: 4, proto: 'tcp', sport: 22, dport: 40007, flags: 0x12 }), false, 'the new peer cannot answer the old flow');
    assert.equal(r.in({ fam: 4, proto: 'icmp' }), false);
    r.out({ fam: 4, proto: 'tcp', sport: 40007, dport: 22 });
    assert.equal(r.in({ fam: 4, proto: 'tcp', sport: 22, dport: 40007, flags: 0x12 }), true, 'its own flows work, and the block is gone');
  });

  test('bad rules are refused', () => {
    const r = rig('');
    assert.throws(() => native!.filterSet(r.f, 1, Buffer.alloc(4)), RangeError);
    assert.throws(() => native!.filterSet(r.f, 1, Buffer.from([2, 0, 0, 0, 0])), RangeError);
    assert.throws(() => native!.filterSet(r.f, 1, Buffer.from([254, 0, 0, 0, 0])), RangeError);
    assert.throws(() => native!.filterSet(r.f, 9, null), RangeError);
  });
});
