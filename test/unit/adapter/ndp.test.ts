// Unit tests for the Neighbor Discovery codec and the router advertiser: hand-built RS/NS/NA/RA from
// RFC 4861's formats, every validity check, RDNSS/DNSSL (RFC 8106), RA contents and timing, fuzzing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildIcmpv6, decodeIpv6 } from '../../../src/adapter/lan/ip.js';
import { decodeNdp, encodeNdp, emptyNdOptions } from '../../../src/adapter/lan/ndp.js';
import type { NdMessage, RouterAdvertisement } from '../../../src/adapter/lan/ndp.js';
import { RouterAdvertiser } from '../../../src/adapter/lan/router.js';
import { decodeEthernet } from '../../../src/adapter/lan/ethernet.js';
import { ADAPTER_IP6, ADAPTER_LL, ADAPTER_MAC, GN_DUAL, PEER6, SEED, fuzz, hex, isDecodeError, mutate, randomBytes } from './fixtures.js';

const isNdpError = isDecodeError('ERR_NDP_DECODE');
const NODE_LL = 'fe80::5054:ff:fe12:3456';

/** An IPv6 packet carrying ICMPv6 `type` with `body` (after type/code/checksum); checksum computed. */
function nd(src: string, dst: string, type: number, body: string, opts: { hopLimit?: number; code?: number } = {}) {
  return decodeIpv6(buildIcmpv6({ src, dst, type, code: opts.code ?? 0, body: hex(body), hopLimit: opts.hopLimit ?? 255 }));
}

// NS from the general node for a peer's virtual address, with its source link-layer address option.
const NS_BODY = `00000000 fd123456789a00000000000000000020  01 01 525400123456`;

test('decodes a Neighbor Solicitation for a peer (target, source link-layer address)', () => {
  const m = decodeNdp(nd(GN_DUAL.vip6!, 'ff02::1:ff00:20', 135, NS_BODY));
  assert.deepEqual(m, { type: 'ns', target: PEER6, options: { ...emptyNdOptions(), sourceLinkAddr: GN_DUAL.mac } });
});

test('decodes a Router Solicitation, an NA and an RA with every option', () => {
  assert.deepEqual(decodeNdp(nd(NODE_LL, 'ff02::2', 133, '00000000 01 01 525400123456')), {
    type: 'rs',
    options: { ...emptyNdOptions(), sourceLinkAddr: GN_DUAL.mac },
  });
  assert.deepEqual(decodeNdp(nd(PEER6, NODE_LL, 136, 'e0000000 fd123456789a00000000000000000020 02 01 020000000001')), {
    type: 'na',
    router: true,
    solicited: true,
    override: true,
    target: PEER6,
    options: { ...emptyNdOptions(), targetLinkAddr: ADAPTER_MAC },
  });
  const ra = decodeNdp(
    nd(
      ADAPTER_LL,
      'ff02::1',
      134,
      `40 c0 0708 00000000 00000000
       01 01 020000000001
       05 01 0000 00000578
       03 04 30 80 ffffffff ffffffff 00000000 fd123456789a00000000000000000000
       19 03 0000 00000258 fd123456789a00000000000000000001
       1f 04 0000 00000258 08 ${Buffer.from('cyphonic').toString('hex')} 08 ${Buffer.from('internal').toString('hex')} 00 0000000000
       63 01 000000000000`,
    ),
  );
  assert.deepEqual(ra, {
    type: 'ra',
    curHopLimit: 64,
    managed: true,
    other: true,
    routerLifetime: 1800,
    reachableTime: 0,
    retransTimer: 0,
    options: {
      sourceLinkAddr: ADAPTER_MAC,
      mtu: 1400,
      prefixes: [{ prefix: 'fd12:3456:789a::', prefixLength: 48, onLink: true, autonomous: false, validLifetime: 0xffffffff, preferredLifetime: 0xffffffff }],
      rdnss: [{ lifetime: 600, servers: [ADAPTER_IP6] }],
      dnssl: [{ lifetime: 600, domains: ['cyphonic.internal'] }],
    },
  });
});

test('encodeNdp round-trips every message type through buildIcmpv6 and decodeNdp', () => {
  const opts = { ...emptyNdOptions(), sourceLinkAddr: ADAPTER_MAC, mtu: 1280, rdnss: [{ lifetime: 1, servers: [ADAPTER_IP6, 'fd00::53'] }], dnssl: [{ lifetime: 2, domains: ['a.example', 'b'] }] };
  const cases: [string, string, NdMessage][] = [
    [NODE_LL, 'ff02::2', { type: 'rs', options: { ...emptyNdOptions(), sourceLinkAddr: GN_DUAL.mac } }],
    [ADAPTER_LL, 'ff02::1', { type: 'ra', curHopLimit: 0, managed: false, other: true, routerLifetime: 0, reachableTime: 30000, retransTimer: 1000, options: opts }],
    [NODE_LL, 'ff02::1:ff00:20', { type: 'ns', target: PEER6, options: emptyNdOptions() }],
    [PEER6, 'ff02::1', { type: 'na', router: false, solicited: false, override: true, target: PEER6, options: { ...emptyNdOptions(), targetLinkAddr: ADAPTER_MAC } }],
  ];
  for (const [src, dst, m] of cases) {
    const { type, body } = encodeNdp(m);
    assert.deepEqual(decodeNdp(decodeIpv6(buildIcmpv6({ src, dst, type, body }))), m, m.type);
  }
});

test('RFC 4861 validity checks refuse invalid ND messages', () => {
  const bad: [string, () => unknown][] = [
    ['hop limit 64', () => nd(NODE_LL, 'ff02::1:ff00:20', 135, NS_BODY, { hopLimit: 64 })],
    ['code 1', () => nd(NODE_LL, 'ff02::1:ff00:20', 135, NS_BODY, { code: 1 })],
    ['NS shorter than 24 bytes', () => nd(NODE_LL, 'ff02::1:ff00:20', 135, '00000000 fd123456789a000000000000000000')],
    ['RS shorter than 8 bytes', () => nd(NODE_LL, 'ff02::2', 133, '000000')],
    ['RA shorter than 16 bytes', () => nd(ADAPTER_LL, 'ff02::1', 134, '40c00708 00000000 000000')],
    ['NA shorter than 24 bytes', () => nd(PEER6, NODE_LL, 136, '60000000')],
    ['multicast NS target', () => nd(NODE_LL, 'ff02::1:ff00:1', 135, '00000000 ff020000000000000000000000000001')],
    ['multicast NA target', () => nd(PEER6, 'ff02::1', 136, '20000000 ff020000000000000000000000000001')],
    ['solicited NA to multicast', () => nd(PEER6, 'ff02::1', 136, '60000000 fd123456789a00000000000000000020')],
    ['RA from a global address', () => nd(ADAPTER_IP6, 'ff02::1', 134, '40c00708 00000000 00000000')],
    ['DAD probe to the wrong group', () => nd('::', 'ff02::1', 135, '00000000 fd123456789a00000000000000000020')],
    ['DAD probe with a source link-layer option', () => nd('::', 'ff02::1:ff00:20', 135, NS_BODY)],
    ['RS from :: with a source link-layer option', () => nd('::', 'ff02::2', 133, '00000000 01 01 525400123456')],
    ['option of length 0', () => nd(NODE_LL, 'ff02::2', 133, '00000000 01 00 525400123456')],
    ['option past the end', () => nd(NODE_LL, 'ff02::2', 133, '00000000 01 02 525400123456')],
    ['link-layer option of 16 bytes', () => nd(NODE_LL, 'ff02::2', 133, '00000000 01 02 525400123456 0000000000000000')],
    ['two source link-layer options', () => nd(NODE_LL, 'ff02::2', 133, '00000000 01 01 525400123456 01 01 525400123456')],
    ['prefix option of 24 bytes', () => nd(ADAPTER_LL, 'ff02::1', 134, `40c00708 00000000 00000000 03 03 ${'00'.repeat(22)}`)],
    ['prefix length 129', () => nd(ADAPTER_LL, 'ff02::1', 134, `40c00708 00000000 00000000 03 04 81 c0 ${'00'.repeat(28)}`)],
    ['RDNSS without a server', () => nd(ADAPTER_LL, 'ff02::1', 134, '40c00708 00000000 00000000 19 01 000000000000')],
    ['RDNSS of 32 bytes', () => nd(ADAPTER_LL, 'ff02::1', 134, `40c00708 00000000 00000000 19 04 ${'00'.repeat(30)}`)],
    ['DNSSL without a domain', () => nd(ADAPTER_LL, 'ff02::1', 134, '40c00708 00000000 00000000 1f 02 0000 00000001 0000000000000000')],
    ['DNSSL with junk padding', () => nd(ADAPTER_LL, 'ff02::1', 134, '40c00708 00000000 00000000 1f 02 0000 00000001 01 61 00 00 0000 0001')],
    ['MTU option twice', () => nd(ADAPTER_LL, 'ff02::1', 134, '40c00708 00000000 00000000 05 01 0000 00000500 05 01 0000 00000500')],
    ['not an ND type', () => nd(NODE_LL, PEER6, 128, '00010001')],
  ];
  for (const [what, make] of bad) assert.throws(() => decodeNdp(make() as ReturnType<typeof nd>), isNdpError, what);
  const corrupt = buildIcmpv6({ src: NODE_LL, dst: 'ff02::2', type: 133, body: hex('00000000') });
  corrupt[corrupt.length - 1] = 1;
  assert.throws(() => decodeNdp(decodeIpv6(corrupt)), isDecodeError('ERR_IP_CHECKSUM'));
});

test('the encoder refuses bad fields', () => {
  const ra = (o: Partial<RouterAdvertisement>): RouterAdvertisement => ({ type: 'ra', curHopLimit: 64, managed: true, other: true, routerLifetime: 0, reachableTime: 0, retransTimer: 0, options: emptyNdOptions(), ...o });
  assert.throws(() => encodeNdp(ra({ routerLifetime: 70000 })), RangeError);
  assert.throws(() => encodeNdp(ra({ options: { ...emptyNdOptions(), rdnss: [{ lifetime: 1, servers: [] }] } })), RangeError);
  assert.throws(() => encodeNdp(ra({ options: { ...emptyNdOptions(), dnssl: [{ lifetime: 1, domains: [] }] } })), RangeError);
  assert.throws(() => encodeNdp(ra({ options: { ...emptyNdOptions(), sourceLinkAddr: 'x' } })), RangeError);
  assert.throws(() => encodeNdp({ type: 'ns', target: '1.2.3.4', options: emptyNdOptions() }), RangeError);
});

test('RouterAdvertiser: M and O set, router lifetime, MTU, source link-layer, RDNSS and DNSSL; no prefix unless told', () => {
  const r = new RouterAdvertiser({ adapterMac: ADAPTER_MAC, dnsServers: [ADAPTER_IP6], domains: ['cyphonic.internal'] });
  assert.equal(r.linkLocal, ADAPTER_LL);
  const f = decodeEthernet(r.frame());
  assert.deepEqual([f.src, f.dst], [ADAPTER_MAC, '33:33:00:00:00:01']);
  const ip = decodeIpv6(f.payload);
  assert.deepEqual([ip.src, ip.dst, ip.hopLimit], [ADAPTER_LL, 'ff02::1', 255]);
  const ra = decodeNdp(ip);
  assert.deepEqual(ra, {
    type: 'ra',
    curHopLimit: 64,
    managed: true,
    other: true,
    routerLifetime: 600,
    reachableTime: 0,
    retransTimer: 0,
    options: { sourceLinkAddr: ADAPTER_MAC, mtu: 1400, prefixes: [], rdnss: [{ lifetime: 600, servers: [ADAPTER_IP6] }], dnssl: [{ lifetime: 600, domains: ['cyphonic.internal'] }] },
  });
  const withPrefix = new RouterAdvertiser({ adapterMac: ADAPTER_MAC, dnsServers: [ADAPTER_IP6], onLinkPrefix: 'FD12:3456:789a::/48', mtu: 1280, routerLifetimeSec: 0 });
  const ra2 = withPrefix.advertisement;
  assert.deepEqual(ra2.options.prefixes, [{ prefix: 'fd12:3456:789a::', prefixLength: 48, onLink: true, autonomous: false, validLifetime: 0xffffffff, preferredLifetime: 0xffffffff }]);
  assert.equal(ra2.routerLifetime, 0);
  assert.equal(ra2.options.mtu, 1280);
  const uni = decodeEthernet(withPrefix.frame({ ip: NODE_LL, mac: GN_DUAL.mac }));
  assert.equal(uni.dst, GN_DUAL.mac);
  assert.equal(decodeIpv6(uni.payload).dst, NODE_LL);
  for (const bad of [{ onLinkPrefix: 'fd00::' }, { onLinkPrefix: 'fd00::/129' }, { maxIntervalSec: 2 }, { routerLifetimeSec: 9001 }, { dnsServers: ['10.0.0.1'] }, { mtu: -1 }]) {
    assert.throws(() => new RouterAdvertiser({ adapterMac: ADAPTER_MAC, dnsServers: [ADAPTER_IP6], ...bad }), RangeError, JSON.stringify(bad));
  }
});

test('RouterAdvertiser timing: first RAs at most 16 s apart, then Min..Max; RS answered by unicast or by an earlier multicast', () => {
  let x = 0.999;
  const r = new RouterAdvertiser({ adapterMac: ADAPTER_MAC, dnsServers: [ADAPTER_IP6], maxIntervalSec: 200 }, () => x);
  r.start(1000);
  assert.equal(r.dueAt, 1000);
  let now = 1000;
  for (let i = 0; i < 3; i++) {
    r.sentMulticast(now);
    assert.ok(r.dueAt - now <= 16_000, `initial RA ${i}`);
    now = r.dueAt;
  }
  r.sentMulticast(now);
  assert.ok(r.dueAt - now > 16_000 && r.dueAt - now <= 200_000);
  x = 0;
  r.sentMulticast(now);
  assert.equal(r.dueAt - now, 66_000, 'MinRtrAdvInterval = 0.33 × 200 s');

  // RS from a host with an address: unicast now, then rate-limited for 3 s per host.
  assert.deepEqual(r.solicited(now + 10, NODE_LL, GN_DUAL.mac), { kind: 'unicast', ip: NODE_LL, mac: GN_DUAL.mac });
  assert.deepEqual(r.solicited(now + 2000, NODE_LL, GN_DUAL.mac), { kind: 'rate-limited' });
  assert.equal(r.solicited(now + 3010, NODE_LL, GN_DUAL.mac).kind, 'unicast');
  // RS from ::: the next multicast comes forward, but not within 3 s of the last one.
  assert.deepEqual(r.solicited(now + 100, '::', GN_DUAL.mac), { kind: 'multicast', at: now + 3000 });
  assert.deepEqual(r.solicited(now + 10_000, '::', GN_DUAL.mac), { kind: 'multicast', at: now + 3000 }, 'already earlier');
  const quiet = new RouterAdvertiser({ adapterMac: ADAPTER_MAC, dnsServers: [], unicastSolicited: false }, () => 0.5);
  quiet.start(0);
  quiet.sentMulticast(0);
  assert.deepEqual(quiet.solicited(10_000, NODE_LL, GN_DUAL.mac), { kind: 'multicast', at: 10_250 });
});

test('fuzz: random and mutated ND messages decode or throw DecodeError; decoded ones re-encode', () => {
  const types = [133, 134, 135, 136];
  const optTypes = [1, 2, 3, 5, 25, 31, 99];
  const gen = (rnd: () => number): Uint8Array => {
    const type = types[Math.floor(rnd() * types.length)]!;
    const fixed = type === 133 ? 4 : type === 134 ? 12 : 20;
    const parts = [Buffer.alloc(fixed)];
    if (type >= 135) ((hex('fd123456789a00000000000000000020')).copy(parts[0]!, 4));
    const n = Math.floor(rnd() * 4);
    for (let i = 0; i < n; i++) {
      const t = optTypes[Math.floor(rnd() * optTypes.length)]!;
      const units = 1 + Math.floor(rnd() * 4);
      const o = Buffer.from(Array.from({ length: units * 8 }, () => (rnd() < 0.5 ? 0 : Math.floor(rnd() * 256))));
      o[0] = t;
      o[1] = rnd() < 0.95 ? units : Math.floor(rnd() * 4);
      parts.push(o);
    }
    const src = type === 134 ? ADAPTER_LL : rnd() < 0.2 ? '::' : NODE_LL;
    const dst = type === 135 ? 'ff02::1:ff00:20' : 'ff02::1';
    const pkt = buildIcmpv6({ src, dst, type, body: Buffer.concat(parts), hopLimit: rnd() < 0.95 ? 255 : 64 });
    return rnd() < 0.3 ? mutate(rnd, pkt) : pkt;
  };
  const decode = (b: Uint8Array): NdMessage => decodeNdp(decodeIpv6(b));
  const roundTrip = (m: NdMessage, input: Uint8Array): void => {
    const ip = decodeIpv6(input);
    const { type, body } = encodeNdp(m);
    assert.deepEqual(decodeNdp(decodeIpv6(buildIcmpv6({ src: ip.src, dst: ip.dst, type, body }))), m);
  };
  const n1 = fuzz(SEED, 6000, gen, decode, roundTrip);
  const n2 = fuzz(SEED + 1, 2000, (rnd) => randomBytes(rnd, 100), decode);
  assert.ok(n1 > 1000, `${n1} ${n2}`);
});
