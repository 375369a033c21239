// Scenario tests for the stateful DHCPv6 server: solicit/advertise/request, rapid commit, renew,
// rebind, confirm, release, decline, information-request, unknown devices, DUID fallback, framing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Dhcp6Status, Dhcp6Type, decodeDhcp6, decodeDuid, duidLl } from '../../../src/adapter/lan/dhcpv6.js';
import type { Dhcp6Message, IaNa } from '../../../src/adapter/lan/dhcpv6.js';
import { Dhcp6Server, dhcp6ReplyFrame } from '../../../src/adapter/lan/dhcpv6-server.js';
import type { Dhcp6ServerOptions } from '../../../src/adapter/lan/dhcpv6-server.js';
import { decodeEthernet } from '../../../src/adapter/lan/ethernet.js';
import { decodeIpv6, decodeUdp } from '../../../src/adapter/lan/ip.js';
import { createLogger } from '../../../src/util/log.js';
import { ADAPTER_IP6, ADAPTER_LL, ADAPTER_MAC, GN_DUAL, GN_V4, GN_V6, STRANGER_MAC, hex, lanTable } from './fixtures.js';

const T0 = 1_700_000_000_000;
const OPTS: Dhcp6ServerOptions = { adapterMac: ADAPTER_MAC, dnsServers: [ADAPTER_IP6], domainList: ['cyphonic.internal'] };
const DUID = decodeDuid(hex('0001 0001 2b6a1c3d 525400123456')); // GN_DUAL's MAC
const SERVER = duidLl(ADAPTER_MAC);

function setup(opts: Partial<Dhcp6ServerOptions> = {}) {
  const leases = lanTable();
  const lines: string[] = [];
  const server = new Dhcp6Server({ ...OPTS, ...opts }, { leases, log: createLogger({}, { write: (l) => lines.push(l) }) });
  return { leases, server, lines };
}

const ia = (iaid: number, addresses: string[] = []): IaNa => ({ iaid, t1: 0, t2: 0, addresses: addresses.map((address) => ({ address, preferred: 0, valid: 0, other: [] })), other: [] });

function msg(type: number, over: Partial<Dhcp6Message> = {}): Dhcp6Message {
  return { type, txid: 0xabcdef, clientId: DUID, iaNa: [ia(1)], elapsedTime: 0, oro: [23, 24], rapidCommit: false, other: [], ...over };
}

test('SOLICIT → ADVERTISE with the virtual IPv6, DNS and domain list, preference 255; nothing bound yet', () => {
  const { server, leases } = setup();
  const adv = server.handle(msg(Dhcp6Type.SOLICIT), GN_DUAL.mac, T0)!;
  assert.equal(adv.type, Dhcp6Type.ADVERTISE);
  assert.equal(adv.txid, 0xabcdef);
  assert.deepEqual(adv.serverId, SERVER);
  assert.deepEqual(adv.clientId, DUID);
  assert.equal(adv.preference, 255);
  assert.deepEqual(adv.iaNa, [{ iaid: 1, t1: 1800, t2: 2880, addresses: [{ address: GN_DUAL.vip6, preferred: 3600, valid: 7200, other: [] }], other: [] }]);
  assert.deepEqual(adv.dnsServers, [ADAPTER_IP6]);
  assert.deepEqual(adv.domainList, ['cyphonic.internal']);
  assert.equal(leases.lease(GN_DUAL.mac, 6), undefined);
});

test('full exchange: SOLICIT, REQUEST → REPLY binds; RENEW extends; REBIND extends; stale addresses get lifetime 0', () => {
  const { server, leases } = setup();
  server.handle(msg(Dhcp6Type.SOLICIT), GN_DUAL.mac, T0);
  const reply = server.handle(msg(Dhcp6Type.REQUEST, { serverId: SERVER, iaNa: [ia(1, [GN_DUAL.vip6!])] }), GN_DUAL.mac, T0 + 5)!;
  assert.equal(reply.type, Dhcp6Type.REPLY);
  assert.equal(reply.iaNa[0]!.addresses[0]!.address, GN_DUAL.vip6);
  assert.deepEqual(leases.lease(GN_DUAL.mac, 6), {
    mac: GN_DUAL.mac,
    family: 6,
    address: GN_DUAL.vip6,
    boundAt: T0 + 5,
    expiresAt: T0 + 5 + 7200_000,
    duid: '000100012b6a1c3d525400123456',
    iaid: 1,
  });
  const renew = server.handle(msg(Dhcp6Type.RENEW, { serverId: SERVER, iaNa: [ia(1, [GN_DUAL.vip6!, 'fd00::99'])] }), GN_DUAL.mac, T0 + 1800_000)!;
  assert.deepEqual(renew.iaNa[0]!.addresses.map((a) => [a.address, a.valid]), [[GN_DUAL.vip6, 7200], ['fd00::99', 0]]);
  assert.equal(leases.lease(GN_DUAL.mac, 6)!.expiresAt, T0 + 1800_000 + 7200_000);
  const rebind = server.handle(msg(Dhcp6Type.REBIND, { iaNa: [ia(1, [GN_DUAL.vip6!])] }), GN_DUAL.mac, T0 + 3000_000)!;
  assert.equal(rebind.type, Dhcp6Type.REPLY);
  assert.equal(leases.lease(GN_DUAL.mac, 6)!.expiresAt, T0 + 3000_000 + 7200_000);
  assert.equal(leases.active(GN_DUAL.mac, 6, T0 + 3000_001), GN_DUAL.vip6);
});

test('rapid commit: SOLICIT with the option → REPLY with it and a bound lease; without server support → ADVERTISE', () => {
  const { server, leases } = setup();
  const r = server.handle(msg(Dhcp6Type.SOLICIT, { rapidCommit: true }), GN_V6.mac, T0)!;
  assert.equal(r.type, Dhcp6Type.REPLY);
  assert.ok(r.rapidCommit);
  assert.equal(r.preference, undefined);
  assert.equal(leases.active(GN_V6.mac, 6, T0 + 1), GN_V6.vip6);
  const off = setup({ rapidCommit: false }).server.handle(msg(Dhcp6Type.SOLICIT, { rapidCommit: true }), GN_V6.mac, T0)!;
  assert.equal(off.type, Dhcp6Type.ADVERTISE);
  assert.ok(!off.rapidCommit);
});

test('INFORMATION-REQUEST → REPLY with DNS servers and domain list only', () => {
  const { server, leases } = setup();
  const r = server.handle(msg(Dhcp6Type.INFORMATION_REQUEST, { iaNa: [], clientId: undefined }), GN_DUAL.mac, T0)!;
  assert.deepEqual(r, { type: Dhcp6Type.REPLY, txid: 0xabcdef, serverId: SERVER, iaNa: [], rapidCommit: false, other: [], dnsServers: [ADAPTER_IP6], domainList: ['cyphonic.internal'] });
  assert.equal(leases.leases().length, 0);
  assert.equal(server.handle(msg(Dhcp6Type.INFORMATION_REQUEST), GN_DUAL.mac, T0), null, 'IA options are not allowed');
});

test('CONFIRM: Success for the node\'s own address, NotOnLink otherwise, silence without addresses', () => {
  const { server } = setup();
  const ok = server.handle(msg(Dhcp6Type.CONFIRM, { iaNa: [ia(1, [GN_DUAL.vip6!])] }), GN_DUAL.mac, T0)!;
  assert.equal(ok.status!.code, Dhcp6Status.Success);
  const moved = server.handle(msg(Dhcp6Type.CONFIRM, { iaNa: [ia(1, ['2001:db8:1::5'])] }), GN_DUAL.mac, T0)!;
  assert.equal(moved.status!.code, Dhcp6Status.NotOnLink);
  assert.equal(server.handle(msg(Dhcp6Type.CONFIRM), GN_DUAL.mac, T0), null);
});

test('RELEASE and DECLINE: REPLY Success, the lease is forgotten; a DECLINE is logged', () => {
  const { server, leases, lines } = setup();
  const bind = (): void => void server.handle(msg(Dhcp6Type.REQUEST, { serverId: SERVER }), GN_DUAL.mac, T0);
  bind();
  const rel = server.handle(msg(Dhcp6Type.RELEASE, { serverId: SERVER, iaNa: [ia(1, [GN_DUAL.vip6!]), ia(2, ['fd00::1'])] }), GN_DUAL.mac, T0)!;
  assert.equal(rel.status!.code, Dhcp6Status.Success);
  assert.deepEqual(rel.iaNa.map((x) => [x.iaid, x.status?.code]), [[2, Dhcp6Status.NoBinding]]);
  assert.equal(leases.lease(GN_DUAL.mac, 6), undefined);
  bind();
  const dec = server.handle(msg(Dhcp6Type.DECLINE, { serverId: SERVER, iaNa: [ia(1, [GN_DUAL.vip6!])] }), GN_DUAL.mac, T0)!;
  assert.equal(dec.status!.code, Dhcp6Status.Success);
  assert.equal(leases.lease(GN_DUAL.mac, 6), undefined);
  assert.equal(server.counters.get('dhcp6.declined'), 1);
  assert.match(lines.join(''), /declined/);
});

test('two IA_NAs: the one holding the lease keeps the address, the other gets NoAddrsAvail / NoBinding', () => {
  const { server } = setup();
  server.handle(msg(Dhcp6Type.REQUEST, { serverId: SERVER, iaNa: [ia(7)] }), GN_DUAL.mac, T0);
  const r = server.handle(msg(Dhcp6Type.REQUEST, { serverId: SERVER, iaNa: [ia(1), ia(7)] }), GN_DUAL.mac, T0)!;
  assert.deepEqual(r.iaNa.map((x) => [x.iaid, x.addresses.length, x.status?.code]), [[1, 0, Dhcp6Status.NoAddrsAvail], [7, 1, undefined]]);
  const rn = server.handle(msg(Dhcp6Type.RENEW, { serverId: SERVER, iaNa: [ia(7), ia(8)] }), GN_DUAL.mac, T0)!;
  assert.deepEqual(rn.iaNa.map((x) => x.status?.code), [undefined, Dhcp6Status.NoBinding]);
});

test('unknown devices, IPv4-only nodes and messages for other servers get null and a counter', () => {
  const { server, lines, leases } = setup();
  const strangerDuid = decodeDuid(hex(`0003 0001 ${STRANGER_MAC.replace(/:/g, '')}`));
  assert.equal(server.handle(msg(Dhcp6Type.SOLICIT, { clientId: strangerDuid }), STRANGER_MAC, T0), null);
  assert.equal(server.handle(msg(Dhcp6Type.INFORMATION_REQUEST, { iaNa: [], clientId: strangerDuid }), STRANGER_MAC, T0), null);
  assert.equal(server.counters.get('dhcp6.ignored.unknown-mac'), 2);
  assert.equal(lines.length, 1, 'rate-limited log');
  assert.equal(server.handle(msg(Dhcp6Type.SOLICIT), GN_V4.mac, T0), null);
  assert.equal(server.counters.get('dhcp6.ignored.no-vip6'), 1);
  const other = decodeDuid(hex('0003 0001 0a0b0c0d0e0f'));
  assert.equal(server.handle(msg(Dhcp6Type.REQUEST, { serverId: other }), GN_DUAL.mac, T0), null);
  assert.equal(server.handle(msg(Dhcp6Type.REQUEST), GN_DUAL.mac, T0), null);
  assert.equal(server.handle(msg(Dhcp6Type.SOLICIT, { serverId: SERVER }), GN_DUAL.mac, T0), null);
  assert.equal(server.handle(msg(Dhcp6Type.REBIND, { serverId: SERVER }), GN_DUAL.mac, T0), null);
  assert.equal(server.handle(msg(Dhcp6Type.SOLICIT, { clientId: undefined }), GN_DUAL.mac, T0), null);
  assert.equal(server.handle(msg(Dhcp6Type.SOLICIT, { iaNa: [] }), GN_DUAL.mac, T0), null);
  assert.equal(server.handle(msg(Dhcp6Type.ADVERTISE), GN_DUAL.mac, T0), null);
  for (const r of ['other-server', 'missing-server-id', 'unexpected-server-id', 'missing-client-id', 'no-ia-na', 'unexpected-type']) {
    assert.ok(server.counters.get(`dhcp6.ignored.${r}`) >= 1, r);
  }
  assert.equal(leases.leases().length, 0);
});

test('the DUID\'s MAC identifies the node when the frame MAC is unknown (and only then)', () => {
  const { server, leases } = setup();
  const r = server.handle(msg(Dhcp6Type.SOLICIT, { rapidCommit: true }), STRANGER_MAC, T0)!;
  assert.equal(r.iaNa[0]!.addresses[0]!.address, GN_DUAL.vip6);
  assert.equal(leases.lease(GN_DUAL.mac, 6)!.address, GN_DUAL.vip6, 'the lease is the node\'s');
  assert.equal(server.counters.get('dhcp6.matched-by-duid'), 1);
  // A known frame MAC wins over the DUID.
  const v6 = server.handle(msg(Dhcp6Type.SOLICIT), GN_V6.mac, T0)!;
  assert.equal(v6.iaNa[0]!.addresses[0]!.address, GN_V6.vip6);
  assert.equal(setup({ matchDuidMac: false }).server.handle(msg(Dhcp6Type.SOLICIT), STRANGER_MAC, T0), null);
});

test('reply frame: adapter link-local → client link-local, UDP 547 → 546, to the client MAC', () => {
  const { server } = setup();
  const adv = server.handle(msg(Dhcp6Type.SOLICIT), GN_DUAL.mac, T0)!;
  const f = decodeEthernet(dhcp6ReplyFrame(adv, { ip: 'fe80::5054:ff:fe12:3456', mac: GN_DUAL.mac }, { adapterMac: ADAPTER_MAC, linkLocal: ADAPTER_LL }));
  assert.deepEqual([f.src, f.dst], [ADAPTER_MAC, GN_DUAL.mac]);
  const ip = decodeIpv6(f.payload);
  assert.deepEqual([ip.src, ip.dst], [ADAPTER_LL, 'fe80::5054:ff:fe12:3456']);
  const udp = decodeUdp(ip);
  assert.deepEqual([udp.srcPort, udp.dstPort], [547, 546]);
  assert.deepEqual(decodeDhcp6(udp.payload), adv);
});

test('constructor refuses bad options', () => {
  const leases = lanTable();
  assert.throws(() => new Dhcp6Server({ ...OPTS, adapterMac: 'x' }, { leases }), RangeError);
  assert.throws(() => new Dhcp6Server({ ...OPTS, dnsServers: ['1.2.3.4'] }, { leases }), RangeError);
  assert.throws(() => new Dhcp6Server({ ...OPTS, preferredLifetimeSec: 100, validLifetimeSec: 50 }, { leases }), RangeError);
});
