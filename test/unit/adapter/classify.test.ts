// Tests for the LAN classifier: every kind and drop reason from hand-built frames, the anti-spoof
// rule (source must be the frame MAC's lease), and fuzzing that classify never throws on any bytes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classify } from '../../../src/adapter/lan/classify.js';
import type { ClassifyContext, LanPacket } from '../../../src/adapter/lan/classify.js';
import { BOOTREQUEST, Dhcp4Type, encodeDhcp4 } from '../../../src/adapter/lan/dhcpv4.js';
import { Dhcp6Type, encodeDhcp6, duidLl } from '../../../src/adapter/lan/dhcpv6.js';
import { ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, encodeEthernet } from '../../../src/adapter/lan/ethernet.js';
import { buildIcmpv6, buildUdp, encodeIpv4, encodeIpv6, multicastMac } from '../../../src/adapter/lan/ip.js';
import { emptyNdOptions, encodeNdp } from '../../../src/adapter/lan/ndp.js';
import { encodeArp } from '../../../src/adapter/lan/arp.js';
import { prng } from '../../harness/prng.js';
import { ADAPTER_IP4, ADAPTER_IP6, ADAPTER_LL, ADAPTER_MAC, GN_DUAL, GN_V4, PEER4, PEER6, SEED, STRANGER_MAC, lanTable, mutate, randomBytes } from './fixtures.js';

const T0 = 1_700_000_000_000;
const NODE_LL = 'fe80::5054:ff:fe12:3456';

function context(): ClassifyContext {
  const leases = lanTable();
  leases.bind({ mac: GN_DUAL.mac, family: 4, address: GN_DUAL.vip4!, boundAt: T0, expiresAt: T0 + 3600_000 });
  leases.bind({ mac: GN_DUAL.mac, family: 6, address: GN_DUAL.vip6!, boundAt: T0, expiresAt: T0 + 3600_000 });
  const own = new Set([ADAPTER_IP4, ADAPTER_IP6, ADAPTER_LL]);
  const overlay = new Set([PEER4, PEER6]);
  return {
    adapterMac: ADAPTER_MAC,
    isAdapterAddress: (a) => own.has(a),
    isOverlay: (a) => overlay.has(a),
    leasedAddress: (mac, family) => leases.active(mac, family, T0 + 1),
  };
}
const CTX = context();

const eth4 = (packet: Uint8Array, dst = ADAPTER_MAC, src = GN_DUAL.mac): Buffer => encodeEthernet({ dst, src, ethertype: ETHERTYPE_IPV4, payload: packet });
const eth6 = (packet: Uint8Array, dst = ADAPTER_MAC, src = GN_DUAL.mac): Buffer => encodeEthernet({ dst, src, ethertype: ETHERTYPE_IPV6, payload: packet });
const udp = (src: string, dst: string, srcPort: number, dstPort: number, payload: Uint8Array = Buffer.from('x')): Buffer => buildUdp({ src, dst, srcPort, dstPort, payload });

function kindOf(p: LanPacket): string {
  return p.kind === 'drop' ? `drop:${p.reason}` : p.kind;
}

const DISCOVER = encodeDhcp4({
  op: BOOTREQUEST,
  hops: 0,
  xid: 1,
  secs: 0,
  broadcast: false,
  ciaddr: '0.0.0.0',
  yiaddr: '0.0.0.0',
  siaddr: '0.0.0.0',
  giaddr: '0.0.0.0',
  chaddr: GN_DUAL.mac,
  sname: '',
  file: '',
  options: { messageType: Dhcp4Type.DISCOVER, other: [] },
});
const SOLICIT = encodeDhcp6({ type: Dhcp6Type.SOLICIT, txid: 7, clientId: duidLl(GN_DUAL.mac), iaNa: [{ iaid: 1, t1: 0, t2: 0, addresses: [], other: [] }], rapidCommit: false, other: [] });

function nd(src: string, dst: string, msg: Parameters<typeof encodeNdp>[0], ethDst: string, ethSrc = GN_DUAL.mac): Buffer {
  const { type, body } = encodeNdp(msg);
  return eth6(buildIcmpv6({ src, dst, type, body }), ethDst, ethSrc);
}

test('ARP, DHCPv4, DHCPv6, RS and NS are recognised and decoded', () => {
  const arp = classify(
    encodeEthernet({ dst: 'ff:ff:ff:ff:ff:ff', src: GN_DUAL.mac, ethertype: ETHERTYPE_ARP, payload: encodeArp({ op: 1, senderMac: GN_DUAL.mac, senderIp: GN_DUAL.vip4!, targetMac: '00:00:00:00:00:00', targetIp: PEER4 }) }),
    CTX,
  );
  assert.ok(arp.kind === 'arp' && arp.arp.targetIp === PEER4);

  const d4 = classify(eth4(udp('0.0.0.0', '255.255.255.255', 68, 67, DISCOVER), 'ff:ff:ff:ff:ff:ff'), CTX);
  assert.ok(d4.kind === 'dhcp4' && d4.message.options.messageType === Dhcp4Type.DISCOVER && d4.frame.src === GN_DUAL.mac);
  const renew = classify(eth4(udp(GN_DUAL.vip4!, ADAPTER_IP4, 68, 67, DISCOVER)), CTX);
  assert.equal(renew.kind, 'dhcp4');

  const d6 = classify(eth6(udp(NODE_LL, 'ff02::1:2', 546, 547, SOLICIT), '33:33:00:01:00:02'), CTX);
  assert.ok(d6.kind === 'dhcp6' && d6.message.type === Dhcp6Type.SOLICIT && d6.ip.src === NODE_LL);

  const rs = classify(nd(NODE_LL, 'ff02::2', { type: 'rs', options: { ...emptyNdOptions(), sourceLinkAddr: GN_DUAL.mac } }, '33:33:00:00:00:02'), CTX);
  assert.ok(rs.kind === 'rs' && rs.rs.options.sourceLinkAddr === GN_DUAL.mac);

  const ns = classify(nd(GN_DUAL.vip6!, 'ff02::1:ff00:20', { type: 'ns', target: PEER6, options: emptyNdOptions() }, '33:33:ff:00:00:20'), CTX);
  assert.ok(ns.kind === 'ns' && ns.ns.target === PEER6);
});

test('DNS to the adapter over UDP and TCP, IPv4 and IPv6; a link-local IPv6 source is fine', () => {
  const d4 = classify(eth4(udp(GN_DUAL.vip4!, ADAPTER_IP4, 40000, 53, Buffer.from('query'))), CTX);
  assert.ok(d4.kind === 'dns' && d4.family === 4 && d4.transport === 'udp' && d4.srcPort === 40000);
  assert.equal(Buffer.from(d4.payload!).toString(), 'query');
  const tcpSeg = Buffer.alloc(20);
  tcpSeg.writeUInt16BE(40001, 0);
  tcpSeg.writeUInt16BE(53, 2);
  const t4 = classify(eth4(encodeIpv4({ src: GN_DUAL.vip4!, dst: ADAPTER_IP4, protocol: 6, payload: tcpSeg })), CTX);
  assert.ok(t4.kind === 'dns' && t4.transport === 'tcp' && t4.payload === null);
  const d6 = classify(eth6(udp(GN_DUAL.vip6!, ADAPTER_IP6, 40000, 53)), CTX);
  assert.ok(d6.kind === 'dns' && d6.family === 6);
  assert.equal(classify(eth6(udp(NODE_LL, ADAPTER_LL, 40000, 53)), CTX).kind, 'dns');
});

test('overlay: packets to peers\' virtual addresses from the leased source are carried, link padding stripped', () => {
  const p4 = udp(GN_DUAL.vip4!, PEER4, 1000, 2000);
  const o4 = classify(Buffer.concat([eth4(p4), Buffer.alloc(10)]), CTX);
  assert.ok(o4.kind === 'overlay' && o4.family === 4 && o4.src === GN_DUAL.vip4 && o4.dst === PEER4);
  assert.deepEqual(Buffer.from(o4.packet), p4);
  const echo = buildIcmpv6({ src: GN_DUAL.vip6!, dst: PEER6, type: 128, body: Buffer.from('0001000170696e67', 'hex'), hopLimit: 64 });
  const o6 = classify(eth6(echo), CTX);
  assert.ok(o6.kind === 'overlay' && o6.family === 6);
  assert.deepEqual(Buffer.from(o6.packet), echo);
});

test('anti-spoof: a source that is not the lease of the frame\'s MAC is dropped as spoofed-source', () => {
  const cases = [
    eth4(udp('100.64.0.99', PEER4, 1, 2)), // someone else's address
    eth4(udp(GN_DUAL.vip4!, PEER4, 1, 2), ADAPTER_MAC, GN_V4.mac), // another node's MAC (no lease)
    eth4(udp(GN_DUAL.vip4!, PEER4, 1, 2), ADAPTER_MAC, STRANGER_MAC), // unknown device
    eth6(udp('fd12:3456:789a::11', PEER6, 1, 2)),
    eth6(udp(NODE_LL, PEER6, 1, 2)), // link-local source into the overlay
    eth4(udp('10.0.0.5', ADAPTER_IP4, 1, 53)), // DNS from a spoofed source
  ];
  for (const f of cases) {
    const r = classify(f, CTX);
    assert.equal(kindOf(r), 'drop:spoofed-source');
  }
});

test('drops with stable reasons', () => {
  const other = '52:54:00:99:99:99';
  const ra = nd(NODE_LL, 'ff02::1', { type: 'ra', curHopLimit: 64, managed: false, other: false, routerLifetime: 1800, reachableTime: 0, retransTimer: 0, options: emptyNdOptions() }, '33:33:00:00:00:01');
  const na = nd(GN_DUAL.vip6!, 'ff02::1', { type: 'na', router: false, solicited: false, override: true, target: GN_DUAL.vip6!, options: emptyNdOptions() }, '33:33:00:00:00:01');
  const mld = eth6(buildIcmpv6({ src: NODE_LL, dst: 'ff02::16', type: 143, body: Buffer.alloc(4), hopLimit: 1 }), '33:33:00:00:00:16');
  const vlan = encodeEthernet({ dst: ADAPTER_MAC, src: GN_DUAL.mac, ethertype: ETHERTYPE_IPV4, payload: udp(GN_DUAL.vip4!, PEER4, 1, 2), vlan: { pcp: 0, dei: false, vid: 7 } });
  const ping = encodeIpv4({ src: GN_DUAL.vip4!, dst: ADAPTER_IP4, protocol: 1, payload: Buffer.from('0800f7ff00000000', 'hex') });
  const frag = udp('0.0.0.0', '255.255.255.255', 68, 67, DISCOVER);
  frag.writeUInt16BE(0x2000, 6);
  frag.writeUInt16BE(0, 10);
  frag.writeUInt16BE(ipHeaderSum(frag), 10);
  const cases: [string, Buffer][] = [
    ['own-frame', eth4(udp(ADAPTER_IP4, PEER4, 1, 2), ADAPTER_MAC, ADAPTER_MAC)],
    ['vlan-tagged', vlan],
    ['ethertype', encodeEthernet({ dst: '01:80:c2:00:00:0e', src: GN_DUAL.mac, ethertype: 0x88cc, payload: Buffer.alloc(30) })],
    ['not-for-us', eth4(udp(GN_DUAL.vip4!, PEER4, 1, 2), other)],
    ['foreign-ra', ra],
    ['link-icmpv6', na],
    ['link-icmpv6', mld],
    ['dhcp-server', eth4(udp('192.168.1.1', '255.255.255.255', 67, 68, DISCOVER), 'ff:ff:ff:ff:ff:ff', other)],
    ['dhcp-server', eth6(udp('fe80::1', NODE_LL, 547, 546, SOLICIT), ADAPTER_MAC, other)],
    ['fragment', eth4(frag, 'ff:ff:ff:ff:ff:ff')],
    ['multicast', eth4(udp(GN_DUAL.vip4!, '224.0.0.251', 5353, 5353), '01:00:5e:00:00:fb')],
    ['multicast', eth4(udp(GN_DUAL.vip4!, '100.127.255.255', 137, 137), 'ff:ff:ff:ff:ff:ff')],
    ['multicast', eth6(udp(NODE_LL, 'ff02::fb', 5353, 5353), multicastMac('ff02::fb'))],
    ['link-local', eth6(udp(NODE_LL, 'fe80::99', 1, 2))],
    ['to-adapter', eth4(ping)],
    ['to-adapter', eth6(udp(GN_DUAL.vip6!, ADAPTER_IP6, 1, 22))],
    ['not-overlay', eth4(udp(GN_DUAL.vip4!, '8.8.8.8', 1, 53))],
    ['not-overlay', eth6(udp(GN_DUAL.vip6!, '2001:4860:4860::8888', 1, 53))],
  ];
  for (const [reason, f] of cases) assert.equal(kindOf(classify(f, CTX)), `drop:${reason}`, reason);
});

function ipHeaderSum(p: Buffer): number {
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += p.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

test('malformed frames are drops with the decoder\'s error code', () => {
  const bad = (f: Buffer, code: string): void => {
    const r = classify(f, CTX);
    assert.ok(r.kind === 'drop' && r.reason === 'malformed' && r.code === code, `${code}: ${JSON.stringify(r)}`);
  };
  bad(Buffer.alloc(5), 'ERR_ETH_DECODE');
  bad(encodeEthernet({ dst: 'ff:ff:ff:ff:ff:ff', src: GN_DUAL.mac, ethertype: ETHERTYPE_ARP, payload: Buffer.alloc(10) }), 'ERR_ARP_DECODE');
  bad(eth4(udp(GN_DUAL.vip4!, PEER4, 1, 2).subarray(0, 15)), 'ERR_IP_DECODE');
  const sum = udp('0.0.0.0', '255.255.255.255', 68, 67, DISCOVER);
  sum[sum.length - 1] = sum[sum.length - 1]! ^ 0xff;
  bad(eth4(sum, 'ff:ff:ff:ff:ff:ff'), 'ERR_IP_CHECKSUM');
  bad(eth4(udp('0.0.0.0', '255.255.255.255', 68, 67, DISCOVER.subarray(0, 200)), 'ff:ff:ff:ff:ff:ff'), 'ERR_DHCP_DECODE');
  bad(eth6(udp(NODE_LL, 'ff02::1:2', 546, 547, Buffer.from([12, 0, 0, 1])), '33:33:00:01:00:02'), 'ERR_DHCP6_DECODE');
  bad(eth6(buildIcmpv6({ src: NODE_LL, dst: 'ff02::2', type: 133, body: Buffer.alloc(4), hopLimit: 64 }), '33:33:00:00:00:02'), 'ERR_NDP_DECODE');
  const badRa = nd(NODE_LL, 'ff02::1', { type: 'ra', curHopLimit: 0, managed: false, other: false, routerLifetime: 0, reachableTime: 0, retransTimer: 0, options: emptyNdOptions() }, '33:33:00:00:00:01');
  badRa[badRa.length - 1] = badRa[badRa.length - 1]! ^ 1;
  bad(badRa, 'ERR_IP_CHECKSUM');
  bad(eth6(encodeIpv6({ src: NODE_LL, dst: ADAPTER_LL, nextHeader: 0, payload: Buffer.alloc(4) })), 'ERR_IP_DECODE');
});

test('fuzz: classify never throws, whatever the bytes', () => {
  const seeds = [
    eth4(udp('0.0.0.0', '255.255.255.255', 68, 67, DISCOVER), 'ff:ff:ff:ff:ff:ff'),
    eth6(udp(NODE_LL, 'ff02::1:2', 546, 547, SOLICIT), '33:33:00:01:00:02'),
    nd(GN_DUAL.vip6!, 'ff02::1:ff00:20', { type: 'ns', target: PEER6, options: emptyNdOptions() }, '33:33:ff:00:00:20'),
    eth4(udp(GN_DUAL.vip4!, PEER4, 1000, 2000)),
    eth6(udp(GN_DUAL.vip6!, ADAPTER_IP6, 40000, 53)),
  ];
  const rnd = prng(SEED);
  const kinds = new Map<string, number>();
  for (let i = 0; i < 8000; i++) {
    const input = i % 4 === 0 ? randomBytes(rnd, 120) : mutate(rnd, seeds[i % seeds.length]!);
    let r: LanPacket;
    try {
      r = classify(input, CTX);
    } catch (err) {
      assert.fail(`seed ${SEED} iteration ${i}: classify threw ${String(err)} for ${input.toString('hex')}`);
    }
    kinds.set(kindOf(r), (kinds.get(kindOf(r)) ?? 0) + 1);
  }
  for (const k of ['dhcp4', 'dhcp6', 'ns', 'overlay', 'dns', 'drop:malformed']) assert.ok((kinds.get(k) ?? 0) > 0, `${k}: ${JSON.stringify([...kinds])}`);
});
