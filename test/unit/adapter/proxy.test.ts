// Scenario tests for the ARP and ND proxies: they answer only for proxied (peer) addresses, never for
// a general node's own or local addresses (so DAD and ARP probes tell the truth), never for gratuitous ARP; a DAD
// or ARP probe only for a defended address (the adapter's own, a known peer's), never for the rest of the pool.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ARP_REPLY, ARP_REQUEST, decodeArp, encodeArp } from '../../../src/adapter/lan/arp.js';
import type { ArpPacket } from '../../../src/adapter/lan/arp.js';
import { ETHERTYPE_ARP, ETHERTYPE_IPV6, decodeEthernet, encodeEthernet } from '../../../src/adapter/lan/ethernet.js';
import { buildIcmpv6, decodeIpv6, solicitedNodeAddress } from '../../../src/adapter/lan/ip.js';
import { decodeNdp, emptyNdOptions, encodeNdp } from '../../../src/adapter/lan/ndp.js';
import { answerArp, answerNs } from '../../../src/adapter/lan/proxy.js';
import { classify } from '../../../src/adapter/lan/classify.js';
import type { ProxyContext } from '../../../src/adapter/lan/proxy.js';
import { Counters } from '../../../src/util/counters.js';
import { ADAPTER_IP4, ADAPTER_LL, ADAPTER_MAC, GN_DUAL, GN_V4, PEER4, PEER6, isDecodeError, lanTable } from './fixtures.js';

/** Pool addresses the proxy answers for but no known peer holds (a device may own them). */
const POOL4 = '100.64.0.30';
const POOL6 = 'fd12:3456:789a::30';

function ctx(): ProxyContext & { counters: Counters } {
  const leases = lanTable();
  const proxied = new Set([PEER4, PEER6, ADAPTER_LL, ADAPTER_IP4, POOL4, POOL6]);
  const defended = new Set([PEER4, PEER6, ADAPTER_LL, ADAPTER_IP4]);
  return {
    adapterMac: ADAPTER_MAC,
    isProxied: (a) => proxied.has(a),
    isDefended: (a) => defended.has(a),
    holderOf: (a) => leases.holderOf(a),
    isRouter: (a) => a === ADAPTER_LL,
    counters: new Counters(),
  };
}

function arpFrame(p: Partial<ArpPacket>, frameSrc = GN_DUAL.mac, dst = 'ff:ff:ff:ff:ff:ff'): Buffer {
  const arp: ArpPacket = { op: ARP_REQUEST, senderMac: GN_DUAL.mac, senderIp: GN_DUAL.vip4!, targetMac: '00:00:00:00:00:00', targetIp: PEER4, ...p };
  return encodeEthernet({ dst, src: frameSrc, ethertype: ETHERTYPE_ARP, payload: Buffer.concat([encodeArp(arp), Buffer.alloc(18)]) });
}

test('ARP: a request for a peer\'s virtual IPv4 is answered with the adapter\'s MAC, unicast to the asker', () => {
  const c = ctx();
  const reply = decodeEthernet(answerArp(arpFrame({}), c)!);
  assert.deepEqual([reply.dst, reply.src, reply.ethertype], [GN_DUAL.mac, ADAPTER_MAC, ETHERTYPE_ARP]);
  assert.deepEqual(decodeArp(reply.payload), { op: ARP_REPLY, senderMac: ADAPTER_MAC, senderIp: PEER4, targetMac: GN_DUAL.mac, targetIp: GN_DUAL.vip4 });
  assert.equal(c.counters.get('proxy.arp.answered'), 1);
  // The decoded frame is accepted as well as bytes.
  assert.ok(answerArp(decodeEthernet(arpFrame({})), c));
  // The adapter's own gateway address, when configured as proxied, is answered too.
  assert.ok(answerArp(arpFrame({ targetIp: ADAPTER_IP4 }), c));
});

test('ARP: no answer for unproxied targets, local general nodes, gratuitous ARP, replies, own frames, spoofed senders', () => {
  const c = ctx();
  const none: [string, Buffer][] = [
    ['not-proxied', arpFrame({ targetIp: '100.64.0.99' })],
    ['local-target', arpFrame({ targetIp: GN_V4.vip4! })], // another general node on this LAN answers itself
    ['local-target', arpFrame({ senderIp: '0.0.0.0', targetIp: GN_DUAL.vip4! })], // the node's own probe (RFC 5227)
    ['gratuitous', arpFrame({ targetIp: GN_DUAL.vip4! })],
    ['gratuitous', arpFrame({ senderIp: PEER4, targetIp: PEER4 })], // even announcing a proxied address
    ['not-request', arpFrame({ op: ARP_REPLY })],
    ['own-frame', arpFrame({ senderMac: ADAPTER_MAC }, ADAPTER_MAC)],
    ['sender-mismatch', arpFrame({ senderMac: GN_V4.mac })],
  ];
  for (const [reason, f] of none) {
    const before = c.counters.get(`proxy.arp.skip.${reason}`);
    assert.equal(answerArp(f, c), null, reason);
    assert.equal(c.counters.get(`proxy.arp.skip.${reason}`), before + 1, reason);
  }
  assert.equal(c.counters.get('proxy.arp.answered'), 0);
});

test('ARP: a probe (from 0.0.0.0) for a peer\'s address is defended; for another pool address it is not', () => {
  const c = ctx();
  const reply = decodeEthernet(answerArp(arpFrame({ senderIp: '0.0.0.0' }), c)!);
  assert.deepEqual(decodeArp(reply.payload).targetIp, '0.0.0.0');
  assert.equal(answerArp(arpFrame({ senderIp: '0.0.0.0', targetIp: POOL4 }), c), null);
  assert.equal(c.counters.get('proxy.arp.skip.dad-undefended'), 1);
  // A real request for it is still answered.
  assert.ok(answerArp(arpFrame({ targetIp: POOL4 }), c));
});

test('ARP: malformed input throws DecodeError; non-ARP frames are skipped', () => {
  const c = ctx();
  const f = arpFrame({});
  f[14] = 9; // htype
  assert.throws(() => answerArp(f, c), isDecodeError('ERR_ARP_DECODE'));
  assert.throws(() => answerArp(f.subarray(0, 10), c), isDecodeError('ERR_ETH_DECODE'));
  assert.equal(answerArp(encodeEthernet({ dst: ADAPTER_MAC, src: GN_DUAL.mac, ethertype: 0x0800, payload: Buffer.alloc(20) }), c), null);
});

function nsFrame(target: string, o: { src?: string; dst?: string; sll?: boolean; frameSrc?: string } = {}): Buffer {
  const src = o.src ?? GN_DUAL.vip6!;
  const options = emptyNdOptions();
  if (o.sll ?? src !== '::') options.sourceLinkAddr = GN_DUAL.mac;
  const { type, body } = encodeNdp({ type: 'ns', target, options });
  const dst = o.dst ?? solicitedNodeAddress(target);
  const packet = buildIcmpv6({ src, dst, type, body });
  return encodeEthernet({ dst: '33:33:ff:00:00:20', src: o.frameSrc ?? GN_DUAL.mac, ethertype: ETHERTYPE_IPV6, payload: packet });
}

test('ND: an NS for a peer\'s virtual IPv6 gets a solicited, overriding NA with the adapter\'s MAC', () => {
  const c = ctx();
  const f = decodeEthernet(answerNs(nsFrame(PEER6), c)!);
  assert.deepEqual([f.dst, f.src], [GN_DUAL.mac, ADAPTER_MAC]);
  const ip = decodeIpv6(f.payload);
  assert.deepEqual([ip.src, ip.dst, ip.hopLimit], [PEER6, GN_DUAL.vip6, 255]);
  assert.deepEqual(decodeNdp(ip), { type: 'na', router: false, solicited: true, override: true, target: PEER6, options: { ...emptyNdOptions(), targetLinkAddr: ADAPTER_MAC } });
  // Unicast NS (neighbor unreachability detection) to the target itself.
  assert.ok(answerNs(nsFrame(PEER6, { dst: PEER6 }), c));
  // The adapter's link-local (its router address): R is set.
  const r = decodeNdp(decodeIpv6(decodeEthernet(answerNs(nsFrame(ADAPTER_LL, { src: 'fe80::5054:ff:fe12:3456' }), c)!).payload));
  assert.equal(r.type === 'na' && r.router, true);
  assert.equal(c.counters.get('proxy.nd.answered'), 3);
});

test('ND: duplicate address detection never succeeds falsely', () => {
  const c = ctx();
  // The node's DAD probe for its own leased address: silence, so DAD passes.
  assert.equal(answerNs(nsFrame(GN_DUAL.vip6!, { src: '::' }), c), null);
  assert.equal(c.counters.get('proxy.nd.skip.local-target'), 1);
  // A DAD probe for a peer's address is defended: NA to all-nodes, S=0.
  const f = decodeEthernet(answerNs(nsFrame(PEER6, { src: '::' }), c)!);
  assert.equal(f.dst, '33:33:00:00:00:01');
  const ip = decodeIpv6(f.payload);
  assert.equal(ip.dst, 'ff02::1');
  const na = decodeNdp(ip);
  assert.ok(na.type === 'na' && !na.solicited && na.override);
  assert.equal(c.counters.get('proxy.nd.defended'), 1);
  // A DAD probe for a pool address no known peer holds (a forgotten lease, a static address): silence, so the
  // device keeps it; a real NS for the same address is answered as for any proxied address.
  assert.equal(answerNs(nsFrame(POOL6, { src: '::' }), c), null);
  assert.equal(c.counters.get('proxy.nd.skip.dad-undefended'), 1);
  assert.ok(answerNs(nsFrame(POOL6), c));
  // Without isDefended, no DAD probe is ever answered.
  const bare: ProxyContext = { ...c, isDefended: undefined };
  delete bare.isDefended;
  assert.equal(answerNs(nsFrame(PEER6, { src: '::' }), bare), null);
});

test('ND: no answer for unproxied targets, local nodes, wrong destinations, own frames, non-NS', () => {
  const c = ctx();
  assert.equal(answerNs(nsFrame('fd12:3456:789a::99'), c), null);
  assert.equal(answerNs(nsFrame('fd12:3456:789a::11'), c), null); // GN_V6, a local general node
  assert.equal(answerNs(nsFrame(PEER6, { dst: 'ff02::1' }), c), null);
  assert.equal(answerNs(nsFrame(PEER6, { frameSrc: ADAPTER_MAC }), c), null);
  const rs = buildIcmpv6({ src: GN_DUAL.vip6!, dst: 'ff02::2', type: 133, body: Buffer.alloc(4) });
  assert.equal(answerNs(encodeEthernet({ dst: '33:33:00:00:00:02', src: GN_DUAL.mac, ethertype: ETHERTYPE_IPV6, payload: rs }), c), null);
  assert.equal(answerNs(arpFrame({}), c), null);
  for (const r of ['not-proxied', 'local-target', 'wrong-destination', 'own-frame', 'not-ns', 'not-ipv6']) assert.equal(c.counters.get(`proxy.nd.skip.${r}`), 1, r);
  const bad = nsFrame(PEER6);
  bad[bad.length - 1] = bad[bad.length - 1]! ^ 1;
  assert.throws(() => answerNs(bad, c), isDecodeError('ERR_IP_CHECKSUM'));
});

test('the classifier\'s arp and ns results are answered without decoding again', () => {
  const c = ctx();
  const cctx = { adapterMac: ADAPTER_MAC, isAdapterAddress: () => false, isOverlay: () => true, leasedAddress: () => undefined };
  const a = classify(arpFrame({}), cctx);
  const n = classify(nsFrame(PEER6), cctx);
  assert.ok(a.kind === 'arp' && n.kind === 'ns');
  assert.deepEqual(answerArp(a, c), answerArp(arpFrame({}), c));
  assert.deepEqual(answerNs(n, c), answerNs(nsFrame(PEER6), c));
  const own = classify(nsFrame(GN_DUAL.vip6!, { src: '::' }), cctx);
  assert.ok(own.kind === 'ns');
  assert.equal(answerNs(own, c), null);
});
