// Scenario tests for the DHCPv4 server state machine: DORA, renew/rebind, init-reboot, NAKs,
// RELEASE/DECLINE/INFORM, unknown and IPv6-only devices, and the Ethernet/IP framing of replies.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BOOTREQUEST, Dhcp4Type, decodeDhcp4 } from '../../../src/adapter/lan/dhcpv4.js';
import type { Dhcp4Message, Dhcp4Options } from '../../../src/adapter/lan/dhcpv4.js';
import { Dhcp4Server, dhcp4ReplyFrame } from '../../../src/adapter/lan/dhcpv4-server.js';
import type { Dhcp4ServerOptions } from '../../../src/adapter/lan/dhcpv4-server.js';
import { decodeEthernet } from '../../../src/adapter/lan/ethernet.js';
import { decodeIpv4, decodeUdp } from '../../../src/adapter/lan/ip.js';
import { createLogger } from '../../../src/util/log.js';
import { ADAPTER_IP4, ADAPTER_MAC, GN_DUAL, GN_V4, GN_V6, STRANGER_MAC, lanTable } from './fixtures.js';

const T0 = 1_700_000_000_000;
const OPTS: Dhcp4ServerOptions = { serverIp: ADAPTER_IP4, subnetMask: '255.192.0.0', domainName: 'cyphonic.internal', mtu: 1400 };

function setup(opts: Partial<Dhcp4ServerOptions> = {}) {
  const leases = lanTable();
  const lines: string[] = [];
  const log = createLogger({}, { write: (l) => lines.push(l) });
  const server = new Dhcp4Server({ ...OPTS, ...opts }, { leases, log });
  return { leases, server, lines };
}

function req(mac: string, type: number, over: Partial<Dhcp4Message> = {}, opts: Partial<Dhcp4Options> = {}): Dhcp4Message {
  return {
    op: BOOTREQUEST,
    hops: 0,
    xid: 0x1234,
    secs: 0,
    broadcast: false,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr: mac,
    sname: '',
    file: '',
    ...over,
    options: { messageType: type, paramRequestList: [1, 3, 6, 12, 15, 26], other: [], ...opts },
  };
}

test('DORA: DISCOVER → OFFER of the virtual IPv4, REQUEST → ACK and a bound lease', () => {
  const { server, leases } = setup();
  const offer = server.handle(req(GN_DUAL.mac, Dhcp4Type.DISCOVER), GN_DUAL.mac, T0)!;
  assert.equal(offer.options.messageType, Dhcp4Type.OFFER);
  assert.equal(offer.yiaddr, GN_DUAL.vip4);
  assert.equal(offer.xid, 0x1234);
  assert.deepEqual(
    { ...offer.options, other: undefined },
    {
      messageType: Dhcp4Type.OFFER,
      serverId: ADAPTER_IP4,
      leaseTime: 3600,
      renewalTime: 1800,
      rebindingTime: 3150,
      subnetMask: '255.192.0.0',
      routers: [ADAPTER_IP4],
      dnsServers: [ADAPTER_IP4],
      domainName: 'cyphonic.internal',
      interfaceMtu: 1400,
      hostname: 'plc1',
      other: undefined,
    },
  );
  assert.equal(leases.lease(GN_DUAL.mac, 4), undefined, 'an OFFER records nothing');

  const ack = server.handle(req(GN_DUAL.mac, Dhcp4Type.REQUEST, {}, { serverId: ADAPTER_IP4, requestedIp: GN_DUAL.vip4, hostname: 'plc-1', clientId: new Uint8Array([1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]) }), GN_DUAL.mac, T0 + 10)!;
  assert.equal(ack.options.messageType, Dhcp4Type.ACK);
  assert.equal(ack.yiaddr, GN_DUAL.vip4);
  assert.deepEqual(ack.options.clientId, new Uint8Array([1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]), 'client id echoed (RFC 6842)');
  const l = leases.lease(GN_DUAL.mac, 4)!;
  assert.deepEqual(l, { mac: GN_DUAL.mac, family: 4, address: GN_DUAL.vip4, boundAt: T0 + 10, expiresAt: T0 + 10 + 3600_000, hostname: 'plc-1', clientId: '01525400123456' });
  assert.equal(leases.active(GN_DUAL.mac, 4, T0 + 20), GN_DUAL.vip4);
  assert.equal(server.counters.get('dhcp4.tx.offer'), 1);
  assert.equal(server.counters.get('dhcp4.tx.ack'), 1);
});

test('renew (unicast, ciaddr) and rebind extend the lease; a wrong ciaddr is NAKed', () => {
  const { server, leases } = setup();
  server.handle(req(GN_V4.mac, Dhcp4Type.REQUEST, {}, { serverId: ADAPTER_IP4, requestedIp: GN_V4.vip4 }), GN_V4.mac, T0);
  const renew = server.handle(req(GN_V4.mac, Dhcp4Type.REQUEST, { ciaddr: GN_V4.vip4! }), GN_V4.mac, T0 + 1800_000)!;
  assert.equal(renew.options.messageType, Dhcp4Type.ACK);
  assert.equal(renew.ciaddr, GN_V4.vip4);
  assert.equal(leases.lease(GN_V4.mac, 4)!.expiresAt, T0 + 1800_000 + 3600_000);
  const rebind = server.handle(req(GN_V4.mac, Dhcp4Type.REQUEST, { ciaddr: GN_V4.vip4!, broadcast: true }), GN_V4.mac, T0 + 3200_000)!;
  assert.equal(rebind.options.messageType, Dhcp4Type.ACK);
  const wrong = server.handle(req(GN_V4.mac, Dhcp4Type.REQUEST, { ciaddr: '100.64.9.9' }), GN_V4.mac, T0)!;
  assert.equal(wrong.options.messageType, Dhcp4Type.NAK);
  assert.equal(wrong.yiaddr, '0.0.0.0');
  assert.equal(wrong.ciaddr, '0.0.0.0');
  assert.equal(wrong.options.leaseTime, undefined);
  assert.ok(wrong.broadcast);
});

test('INIT-REBOOT: the remembered address is ACKed if right, NAKed if not', () => {
  const { server } = setup();
  const ok = server.handle(req(GN_DUAL.mac, Dhcp4Type.REQUEST, {}, { requestedIp: GN_DUAL.vip4 }), GN_DUAL.mac, T0)!;
  assert.equal(ok.options.messageType, Dhcp4Type.ACK);
  const nak = server.handle(req(GN_DUAL.mac, Dhcp4Type.REQUEST, {}, { requestedIp: '192.168.1.50' }), GN_DUAL.mac, T0)!;
  assert.equal(nak.options.messageType, Dhcp4Type.NAK);
  assert.equal(nak.options.serverId, ADAPTER_IP4);
  assert.match(nak.options.message!, /not this client/);
  assert.equal(server.handle(req(GN_DUAL.mac, Dhcp4Type.REQUEST), GN_DUAL.mac, T0), null, 'no address at all');
  assert.equal(server.counters.get('dhcp4.ignored.bad-request'), 1);
});

test('SELECTING with another server id: NAK when authoritative (default), silence otherwise (RFC 2131)', () => {
  const other = req(GN_DUAL.mac, Dhcp4Type.REQUEST, {}, { serverId: '192.168.1.1', requestedIp: '192.168.1.77' });
  const nak = setup().server.handle(other, GN_DUAL.mac, T0)!;
  assert.equal(nak.options.messageType, Dhcp4Type.NAK);
  const polite = setup({ authoritative: false }).server;
  assert.equal(polite.handle(other, GN_DUAL.mac, T0), null);
  assert.equal(polite.counters.get('dhcp4.ignored.other-server'), 1);
  // Our server id but a different address: NAK either way.
  const wrongAddr = req(GN_DUAL.mac, Dhcp4Type.REQUEST, {}, { serverId: ADAPTER_IP4, requestedIp: '100.64.0.99' });
  assert.equal(polite.handle(wrongAddr, GN_DUAL.mac, T0)!.options.messageType, Dhcp4Type.NAK);
  assert.equal(polite.handle(req(GN_DUAL.mac, Dhcp4Type.REQUEST, {}, { serverId: ADAPTER_IP4 }), GN_DUAL.mac, T0), null);
});

test('unknown MACs get nothing: null, a counter, and one log line per interval', () => {
  const { server, leases, lines } = setup();
  for (let i = 0; i < 5; i++) assert.equal(server.handle(req(STRANGER_MAC, Dhcp4Type.DISCOVER), STRANGER_MAC, T0 + i * 1000), null);
  assert.equal(server.counters.get('dhcp4.ignored.unknown-mac'), 5);
  assert.equal(lines.length, 1);
  assert.equal(JSON.parse(lines[0]!).mac, STRANGER_MAC);
  assert.equal(server.handle(req(STRANGER_MAC, Dhcp4Type.DISCOVER), STRANGER_MAC, T0 + 3600_000), null);
  assert.equal(lines.length, 2);
  assert.equal(leases.leases().length, 0);
});

test('an IPv6-only general node gets no DHCPv4 lease', () => {
  const { server } = setup();
  assert.equal(server.handle(req(GN_V6.mac, Dhcp4Type.DISCOVER), GN_V6.mac, T0), null);
  assert.equal(server.counters.get('dhcp4.ignored.no-vip4'), 1);
});

test('chaddr must be the frame source; relayed, BOOTP and reply messages are ignored', () => {
  const { server } = setup();
  assert.equal(server.handle(req(GN_DUAL.mac, Dhcp4Type.DISCOVER), STRANGER_MAC, T0), null);
  assert.equal(server.handle(req(GN_DUAL.mac, Dhcp4Type.DISCOVER, { giaddr: '10.0.0.1' }), GN_DUAL.mac, T0), null);
  const bootp = req(GN_DUAL.mac, Dhcp4Type.DISCOVER);
  delete bootp.options.messageType;
  assert.equal(server.handle(bootp, GN_DUAL.mac, T0), null);
  assert.equal(server.handle({ ...req(GN_DUAL.mac, Dhcp4Type.DISCOVER), op: 2 }, GN_DUAL.mac, T0), null);
  assert.equal(server.handle(req(GN_DUAL.mac, Dhcp4Type.OFFER), GN_DUAL.mac, T0), null);
  for (const r of ['chaddr-mismatch', 'relayed', 'bootp', 'not-a-request', 'unexpected-type']) assert.equal(server.counters.get(`dhcp4.ignored.${r}`), 1, r);
});

test('RELEASE and DECLINE forget the lease (only for the node\'s own address); DECLINE is logged', () => {
  const { server, leases, lines } = setup();
  const bind = (): void => void server.handle(req(GN_DUAL.mac, Dhcp4Type.REQUEST, {}, { requestedIp: GN_DUAL.vip4 }), GN_DUAL.mac, T0);
  bind();
  assert.equal(server.handle(req(GN_DUAL.mac, Dhcp4Type.RELEASE, { ciaddr: '100.64.0.99' }, { serverId: ADAPTER_IP4 }), GN_DUAL.mac, T0), null);
  assert.ok(leases.lease(GN_DUAL.mac, 4), 'another address: ignored');
  assert.equal(server.handle(req(GN_DUAL.mac, Dhcp4Type.RELEASE, { ciaddr: GN_DUAL.vip4! }, { serverId: '10.9.9.9' }), GN_DUAL.mac, T0), null);
  assert.ok(leases.lease(GN_DUAL.mac, 4), 'another server: ignored');
  // A RELEASE forged by another device (its own IP source) leaves the lease alone.
  assert.equal(server.handle(req(GN_DUAL.mac, Dhcp4Type.RELEASE, { ciaddr: GN_DUAL.vip4! }, { serverId: ADAPTER_IP4 }), GN_DUAL.mac, T0, '100.64.0.77'), null);
  assert.ok(leases.lease(GN_DUAL.mac, 4), 'a RELEASE not sent from the address it gives back: ignored');
  assert.equal(server.counters.get('dhcp4.ignored.release-not-from-its-address'), 1);
  assert.equal(server.handle(req(GN_DUAL.mac, Dhcp4Type.RELEASE, { ciaddr: GN_DUAL.vip4! }, { serverId: ADAPTER_IP4 }), GN_DUAL.mac, T0, GN_DUAL.vip4), null);
  assert.equal(leases.lease(GN_DUAL.mac, 4), undefined);
  bind();
  assert.equal(server.handle(req(GN_DUAL.mac, Dhcp4Type.DECLINE, {}, { serverId: ADAPTER_IP4, requestedIp: GN_DUAL.vip4 }), GN_DUAL.mac, T0), null);
  assert.equal(leases.lease(GN_DUAL.mac, 4), undefined);
  assert.equal(server.counters.get('dhcp4.declined'), 1);
  assert.match(lines.join(''), /declined/);
});

test('INFORM: ACK with configuration but no address and no lease times', () => {
  const { server, leases } = setup();
  const ack = server.handle(req(GN_DUAL.mac, Dhcp4Type.INFORM, { ciaddr: GN_DUAL.vip4! }), GN_DUAL.mac, T0)!;
  assert.equal(ack.options.messageType, Dhcp4Type.ACK);
  assert.equal(ack.yiaddr, '0.0.0.0');
  assert.equal(ack.ciaddr, GN_DUAL.vip4);
  assert.equal(ack.options.leaseTime, undefined);
  assert.equal(ack.options.renewalTime, undefined);
  assert.deepEqual(ack.options.dnsServers, [ADAPTER_IP4]);
  assert.equal(leases.leases().length, 0);
});

test('reply framing (RFC 2131 §4.1): unicast to yiaddr at chaddr, broadcast on request, NAK broadcast, renew to ciaddr', () => {
  const { server } = setup();
  const link = { adapterMac: ADAPTER_MAC, serverIp: ADAPTER_IP4 };
  const where = (reply: Dhcp4Message, request: Dhcp4Message) => {
    const f = decodeEthernet(dhcp4ReplyFrame(reply, request, link));
    const ip = decodeIpv4(f.payload);
    const udp = decodeUdp(ip);
    assert.deepEqual([f.src, ip.src, udp.srcPort, udp.dstPort], [ADAPTER_MAC, ADAPTER_IP4, 67, 68]);
    assert.deepEqual(decodeDhcp4(udp.payload), reply);
    return [f.dst, ip.dst];
  };
  const d1 = req(GN_DUAL.mac, Dhcp4Type.DISCOVER);
  assert.deepEqual(where(server.handle(d1, GN_DUAL.mac, T0)!, d1), [GN_DUAL.mac, GN_DUAL.vip4]);
  const d2 = req(GN_DUAL.mac, Dhcp4Type.DISCOVER, { broadcast: true });
  assert.deepEqual(where(server.handle(d2, GN_DUAL.mac, T0)!, d2), ['ff:ff:ff:ff:ff:ff', '255.255.255.255']);
  const r1 = req(GN_DUAL.mac, Dhcp4Type.REQUEST, {}, { requestedIp: '1.2.3.4' });
  assert.deepEqual(where(server.handle(r1, GN_DUAL.mac, T0)!, r1), ['ff:ff:ff:ff:ff:ff', '255.255.255.255']);
  const r2 = req(GN_DUAL.mac, Dhcp4Type.REQUEST, { ciaddr: GN_DUAL.vip4!, broadcast: true });
  assert.deepEqual(where(server.handle(r2, GN_DUAL.mac, T0)!, r2), [GN_DUAL.mac, GN_DUAL.vip4]);
});

test('constructor refuses bad options', () => {
  const leases = lanTable();
  assert.throws(() => new Dhcp4Server({ ...OPTS, serverIp: 'x' }, { leases }), RangeError);
  assert.throws(() => new Dhcp4Server({ ...OPTS, subnetMask: '255.0' }, { leases }), RangeError);
  assert.throws(() => new Dhcp4Server({ ...OPTS, leaseTimeSec: 10 }, { leases }), RangeError);
  assert.throws(() => new Dhcp4Server({ ...OPTS, mtu: 100 }, { leases }), RangeError);
});
