// The adapter's LAN service wired to a fake link and fake general-node agents: a DHCP exchange binds a lease (and
// saves it), the ARP proxy answers for peers, an overlay packet from the leased source reaches the agent and a
// spoofed one is dropped, packets from the overlay are framed for the device's MAC only when addressed to it, DNS
// for overlay names goes through the agent, and garbage is counted. MLD: the adapter's groups reported on start,
// a peer's solicited-node group joined before the DNS answer or overlay packet that makes a device ask for it,
// queries answered, hostile queries counted, and DAD probes answered only for known peers. (The MTU handling is in
// mtu.test.ts, partial checksums and super-frames in lan-frames.test.ts.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ARP_REPLY,
  ARP_REQUEST,
  BOOTREQUEST,
  buildUdp,
  decodeArp,
  decodeDhcp4,
  decodeEthernet,
  decodeIpv4,
  decodeUdp,
  Dhcp4Type,
  encodeArp,
  encodeDhcp4,
  encodeEthernet,
  encodeIpv4,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  type Dhcp4Message,
  buildIcmpv6,
  decodeIpv6,
  decodeNdp,
  emptyNdOptions,
  encodeIpv6,
  encodeNdp,
  ETHERTYPE_IPV6,
  solicitedNodeAddress,
} from '../../../src/adapter/lan/index.js';
import { ip6Bytes } from '../../../src/adapter/lan/wire.js';
import { transportChecksum } from '../../../src/adapter/lan/checksum.js';
import { formatIp6 } from '../../../src/protocol/ip.js';
import { LanService, persistLeases, type GeneralNodePort } from '../../../src/adapter/lan-service.js';
import type { FastPathTable, LanLink } from '../../../src/adapter/lan-port.js';
import { MemoryLeaseTable } from '../../../src/adapter/lan/leases.js';
import { decodeResponse, encodeQuery } from '../../../src/net/dns/codec.js';
import { silentLogger } from '../../../src/util/log.js';
import { ADAPTER_IP4, ADAPTER_IP6, ADAPTER_MAC, GN_DUAL, PEER4, PEER6 } from './fixtures.js';

class FakeLink implements LanLink {
  readonly mac = ADAPTER_MAC;
  onFrames: (frames: Buffer[]) => void = () => {};
  readonly sent: Buffer[] = [];
  send(frame: Buffer): void {
    this.sent.push(Buffer.from(frame));
  }
  async close(): Promise<void> {}
  deliver(frame: Buffer): void {
    this.onFrames([frame]);
  }
}

class FakeAgent implements GeneralNodePort {
  onPacket: (packet: Buffer) => void = () => {};
  readonly out: { dst: string; packet: Buffer }[] = [];
  sendPacket(dst: string, packet: Buffer): void {
    this.out.push({ dst, packet });
  }
  async resolve(fqdn: string): Promise<{ vip4: string; vip6: string } | null> {
    return fqdn === 'peer.cyphonic.internal' ? { vip4: PEER4, vip6: PEER6 } : null;
  }
}

function dhcp(type: number, over: Partial<Dhcp4Message> = {}): Buffer {
  const m: Dhcp4Message = {
    op: BOOTREQUEST, hops: 0, xid: 0x42, secs: 0, broadcast: false, ciaddr: '0.0.0.0', yiaddr: '0.0.0.0', siaddr: '0.0.0.0', giaddr: '0.0.0.0',
    chaddr: GN_DUAL.mac, sname: '', file: '', ...over,
    options: { messageType: type, paramRequestList: [1, 3, 6], other: [], ...(type === Dhcp4Type.REQUEST ? { requestedIp: GN_DUAL.vip4!, serverId: ADAPTER_IP4 } : {}) },
  };
  const packet = buildUdp({ src: '0.0.0.0', dst: '255.255.255.255', srcPort: 68, dstPort: 67, payload: encodeDhcp4(m) });
  return encodeEthernet({ dst: 'ff:ff:ff:ff:ff:ff', src: GN_DUAL.mac, ethertype: ETHERTYPE_IPV4, payload: packet });
}

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-lan-'));
  const leaseFile = join(dir, 'leases.json');
  const link = new FakeLink();
  const table: MemoryLeaseTable = new MemoryLeaseTable([], { onChange: () => persistLeases(leaseFile, table) });
  const lan = new LanService(
    { vip4: ADAPTER_IP4, vip6: ADAPTER_IP6, pool4: '100.64.0.0/10', pool6: 'fd12:3456:789a::/48', domain: 'cyphonic.internal', leaseFile, upstreamDns: [] },
    link,
    table,
    silentLogger,
  );
  lan.setNodes([GN_DUAL]);
  const agent = new FakeAgent();
  lan.attach(GN_DUAL.mac, agent);
  return { dir, leaseFile, link, lan, agent, table };
}

test('DHCPv4 DORA through the service binds the virtual IPv4 and saves the lease file', () => {
  const { dir, leaseFile, link, lan } = setup();
  try {
    link.deliver(dhcp(Dhcp4Type.DISCOVER));
    const offer = decodeDhcp4(decodeUdp(decodeIpv4(decodeEthernet(link.sent.at(-1)!).payload)).payload);
    assert.equal(offer.options.messageType, Dhcp4Type.OFFER);
    assert.equal(offer.yiaddr, GN_DUAL.vip4);
    assert.deepEqual(offer.options.routers, [ADAPTER_IP4]);
    link.deliver(dhcp(Dhcp4Type.REQUEST));
    const ack = decodeDhcp4(decodeUdp(decodeIpv4(decodeEthernet(link.sent.at(-1)!).payload)).payload);
    assert.equal(ack.options.messageType, Dhcp4Type.ACK);
    assert.equal(lan.leases.lease(GN_DUAL.mac, 4)?.address, GN_DUAL.vip4);
    const saved = JSON.parse(readFileSync(leaseFile, 'utf8')) as { leases: { address: string }[] };
    assert.deepEqual(saved.leases.map((l) => l.address), [GN_DUAL.vip4]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a DHCP flood from one MAC is dropped past its budget: few replies, few lease writes, the adapter keeps serving', () => {
  const { dir, link, lan, table } = setup();
  let writes = 0;
  const t = table as unknown as { onChange: (what: string) => void };
  const original = t.onChange;
  t.onChange = (what) => {
    if (what === 'change') writes++;
    original(what);
  };
  try {
    const before = link.sent.length;
    for (let i = 0; i < 500; i++) link.deliver(dhcp(i % 2 ? Dhcp4Type.REQUEST : Dhcp4Type.DISCOVER, { xid: i }));
    const replies = link.sent.length - before;
    assert.ok(replies <= 25, `replies to the flood: ${replies}`);
    assert.ok(lan.counters.get('lan.drop.dhcp-rate') >= 475, `dropped: ${lan.counters.get('lan.drop.dhcp-rate')}`);
    assert.ok(writes <= 1, `urgent lease writes: ${writes} (renewals on the same address are not urgent)`);
    assert.equal(lan.leases.lease(GN_DUAL.mac, 4)?.address, GN_DUAL.vip4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ARP proxy, anti-spoof, overlay both ways, DNS through the agent, garbage counted', async () => {
  const { dir, link, lan, agent } = setup();
  try {
    link.deliver(dhcp(Dhcp4Type.DISCOVER));
    link.deliver(dhcp(Dhcp4Type.REQUEST));
    // ARP for a peer's virtual address: answered with the adapter's MAC.
    const who = encodeArp({ op: ARP_REQUEST, senderMac: GN_DUAL.mac, senderIp: GN_DUAL.vip4!, targetMac: '00:00:00:00:00:00', targetIp: PEER4 });
    link.deliver(encodeEthernet({ dst: 'ff:ff:ff:ff:ff:ff', src: GN_DUAL.mac, ethertype: ETHERTYPE_ARP, payload: who }));
    const ans = decodeArp(decodeEthernet(link.sent.at(-1)!).payload);
    assert.equal(ans.op, ARP_REPLY);
    assert.equal(ans.senderMac, ADAPTER_MAC);
    assert.equal(ans.senderIp, PEER4);
    // An overlay packet from the leased source goes to the agent; the same with a forged source is dropped.
    const pkt = (src: string): Buffer => encodeIpv4({ src, dst: PEER4, protocol: 17, payload: Buffer.from([0, 1, 0, 2, 0, 9, 0, 0, 7]) });
    link.deliver(encodeEthernet({ dst: ADAPTER_MAC, src: GN_DUAL.mac, ethertype: ETHERTYPE_IPV4, payload: pkt(GN_DUAL.vip4!) }));
    link.deliver(encodeEthernet({ dst: ADAPTER_MAC, src: GN_DUAL.mac, ethertype: ETHERTYPE_IPV4, payload: pkt('100.64.0.99') }));
    assert.equal(agent.out.length, 1);
    assert.equal(agent.out[0]!.dst, PEER4);
    assert.equal(lan.lanCounters()['lan.drop.spoofed-source'], 1);
    // From the overlay: framed to the device only when addressed to its virtual address.
    const before = link.sent.length;
    agent.onPacket(encodeIpv4({ src: PEER4, dst: GN_DUAL.vip4!, protocol: 17, payload: Buffer.from([0, 2, 0, 1, 0, 8, 0, 0]) }));
    agent.onPacket(encodeIpv4({ src: PEER4, dst: '100.64.0.77', protocol: 17, payload: Buffer.from([0, 2, 0, 1, 0, 8, 0, 0]) }));
    assert.equal(link.sent.length, before + 1);
    assert.equal(decodeEthernet(link.sent.at(-1)!).dst, GN_DUAL.mac);
    assert.equal(lan.lanCounters()['lan.in.refused'], 1);
    // DNS for an overlay name is answered from the agent's lookup.
    const q = encodeQuery('peer.cyphonic.internal', 'A', 77);
    link.deliver(encodeEthernet({ dst: ADAPTER_MAC, src: GN_DUAL.mac, ethertype: ETHERTYPE_IPV4, payload: buildUdp({ src: GN_DUAL.vip4!, dst: ADAPTER_IP4, srcPort: 40000, dstPort: 53, payload: q }) }));
    await new Promise((r) => setTimeout(r, 20));
    // The adapter's own timers (MLD reports) may have sent IPv6 frames meanwhile: take the last IPv4 frame.
    const dnsFrame = link.sent.filter((f) => decodeEthernet(f).ethertype === ETHERTYPE_IPV4).at(-1)!;
    const res = decodeResponse(decodeUdp(decodeIpv4(decodeEthernet(dnsFrame).payload)).payload);
    assert.equal(res.id, 77);
    assert.deepEqual(res.answers.map((x) => x.address), [PEER4]);
    // Garbage: counted, never thrown.
    for (const junk of [Buffer.alloc(0), Buffer.alloc(13), Buffer.from('ffffffffffff' + GN_DUAL.mac.replace(/:/g, '') + '0800450000', 'hex')]) link.deliver(junk);
    assert.ok((lan.lanCounters()['lan.drop.malformed'] ?? 0) >= 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The MLD reports in `frames`: [ICMPv6 type, record types and groups]. */
function reports(frames: Buffer[]): [number, string][] {
  const out: [number, string][] = [];
  for (const f of frames) {
    const e = decodeEthernet(f);
    if (e.ethertype !== ETHERTYPE_IPV6) continue;
    const ip = decodeIpv6(e.payload);
    if (ip.protocol !== 58 || ip.payload[0] !== 143) continue;
    const m = Buffer.from(ip.payload);
    for (let i = 0, p = 8; i < m.readUInt16BE(6); i++, p += 20) out.push([m[p]!, formatIp6(m.subarray(p + 4, p + 20))]);
  }
  return out;
}

/** Whether `frame` is an MLDv2 report of only state-change joins (CHANGE_TO_EXCLUDE) of groups in `joined`. */
function isJoinRepeat(frame: Buffer, joined: string[]): boolean {
  const e = decodeEthernet(frame);
  if (e.ethertype !== ETHERTYPE_IPV6) return false;
  const ip = decodeIpv6(e.payload);
  if (ip.protocol !== 58 || ip.payload[0] !== 143) return false;
  const records = reports([frame]);
  return records.length > 0 && records.every(([type, group]) => type === 4 && joined.includes(group));
}

function dadProbe(target: string): Buffer {
  const { type, body } = encodeNdp({ type: 'ns', target, options: emptyNdOptions() });
  const sol = solicitedNodeAddress(target);
  return encodeEthernet({ dst: '33:33:ff:00:00:20', src: GN_DUAL.mac, ethertype: ETHERTYPE_IPV6, payload: buildIcmpv6({ src: '::', dst: sol, type, body }) });
}

function mldQuery(hopLimit = 1): Buffer {
  const m = Buffer.alloc(28);
  m[0] = 130;
  m.writeUInt16BE(1, 4); // Max Response Delay 1 ms
  m[24] = 2;
  m[25] = 125;
  m.writeUInt16BE(transportChecksum(ip6Bytes('fe80::1'), ip6Bytes('ff02::1'), 58, m), 2);
  const hbh = Buffer.from([58, 0, 5, 2, 0, 0, 1, 0]);
  const ip = encodeIpv6({ src: 'fe80::1', dst: 'ff02::1', nextHeader: 0, hopLimit, payload: Buffer.concat([hbh, m]) });
  return encodeEthernet({ dst: '33:33:00:00:00:01', src: '02:00:00:00:00:99', ethertype: ETHERTYPE_IPV6, payload: ip });
}

test('MLD: own groups on start, peer groups before the frames that need them, queries, DAD only for known peers', async () => {
  const { dir, link, lan, agent } = setup();
  try {
    lan.start();
    // The link-local's and vip6's solicited-node groups coincide here (both end in ::1): one record.
    const fixed = [...new Set(['ff02::2', 'ff02::1:2', solicitedNodeAddress('fe80::ff:fe00:1'), solicitedNodeAddress(ADAPTER_IP6)])];
    assert.deepEqual(reports(link.sent), fixed.map((g) => [4, g]));
    assert.deepEqual(lan.groups(), fixed);
    // A DAD probe for PEER6 before the adapter knows it as a peer: not answered (a device may own it).
    link.sent.length = 0;
    link.deliver(dadProbe(PEER6));
    assert.equal(link.sent.length, 0);
    assert.equal(lan.lanCounters()['proxy.nd.skip.dad-undefended'], 1);
    // DNS answers PEER6 to the device: its group is joined, and the report goes out before the DNS answer.
    const q = encodeQuery('peer.cyphonic.internal', 'AAAA', 78);
    link.deliver(dhcp(Dhcp4Type.DISCOVER));
    link.deliver(dhcp(Dhcp4Type.REQUEST));
    link.sent.length = 0;
    link.deliver(encodeEthernet({ dst: ADAPTER_MAC, src: GN_DUAL.mac, ethertype: ETHERTYPE_IPV4, payload: buildUdp({ src: GN_DUAL.vip4!, dst: ADAPTER_IP4, srcPort: 40000, dstPort: 53, payload: q }) }));
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(reports(link.sent.slice(0, 1)), [[4, solicitedNodeAddress(PEER6)]], 'report first');
    assert.ok(link.sent.findIndex((f) => decodeEthernet(f).ethertype === ETHERTYPE_IPV4) > 0, 'then the DNS answer');
    // Now a DAD probe for the known peer's address is defended.
    link.sent.length = 0;
    link.deliver(dadProbe(PEER6));
    const na = decodeNdp(decodeIpv6(decodeEthernet(link.sent.at(-1)!).payload));
    assert.ok(na.type === 'na' && na.target === PEER6 && !na.solicited);
    // A packet from another peer through the overlay: its group is joined before the packet is framed.
    link.sent.length = 0;
    const other = 'fd12:3456:789a::4:5:6';
    agent.onPacket(encodeIpv6({ src: other, dst: GN_DUAL.vip6!, nextHeader: 59, payload: Buffer.alloc(0) }));
    assert.deepEqual(reports(link.sent.slice(0, 1)), [[4, solicitedNodeAddress(other)]], 'report first');
    assert.equal(decodeEthernet(link.sent.at(-1)!).dst, GN_DUAL.mac, 'then the packet');
    assert.equal(link.sent.length, 2);
    // A general query: every group reported (Max Response Delay 1 ms).
    link.sent.length = 0;
    link.deliver(mldQuery());
    await new Promise((r) => setTimeout(r, 20));
    // (Only the current-state records: a state-change repeat may fall in these 20 ms.)
    assert.deepEqual(reports(link.sent).filter(([t]) => t === 2), [...fixed, solicitedNodeAddress(PEER6), solicitedNodeAddress(other)].map((g) => [2, g]));
    // A hostile query (hop limit 255): counted, not answered.
    link.sent.length = 0;
    link.deliver(mldQuery(255));
    await new Promise((r) => setTimeout(r, 20));
    // (The repeat of a join's state-change report is due at a random time within 1 s of the join: on a loaded
    // machine it may fall in these 20 ms. It is not an answer; anything else is.)
    assert.deepEqual(link.sent.filter((f) => !isJoinRepeat(f, lan.groups())).map((f) => f.toString('hex')), []);
    assert.equal(lan.lanCounters()['lan.drop.malformed.ERR_MLD_DECODE'], 1);
    // Stop leaves every group.
    lan.stop();
    assert.equal(reports(link.sent).filter(([t]) => t === 3).length, 5);
  } finally {
    lan.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the IP fast path table: a node with a running engine, only its unexpired leases as sources, only known peers no device here holds', () => {
  const { dir, link, lan, agent, table } = setup();
  const tables: FastPathTable[] = [];
  const fastLink = link as FakeLink & Pick<LanLink, 'setFastPath' | 'takeFastHits'>;
  fastLink.setFastPath = (t) => tables.push(structuredClone(t));
  const fastAgent = agent as FakeAgent & Pick<GeneralNodePort, 'deviceFd' | 'deviceVnet' | 'onDevice'>;
  let fd: number | null = null;
  fastAgent.deviceFd = () => fd;
  fastAgent.deviceVnet = () => true; // the engine's pair carries virtio headers: the table says so
  try {
    lan.attach(GN_DUAL.mac, fastAgent); // attach again: the agent now has a device hook
    assert.equal(tables.at(-1)?.nodes.length ?? 0, 0, 'no engine yet: no node');
    fd = 7;
    fastAgent.onDevice!();
    assert.deepEqual(tables.at(-1)!.nodes, [{ mac: GN_DUAL.mac, pairFd: 7, pairVnet: true, lease4: null, lease6: null, vip4: GN_DUAL.vip4, vip6: GN_DUAL.vip6 }]);
    link.deliver(dhcp(Dhcp4Type.DISCOVER));
    link.deliver(dhcp(Dhcp4Type.REQUEST));
    const l4 = tables.at(-1)!.nodes[0]!.lease4!;
    assert.equal(l4.address, GN_DUAL.vip4);
    assert.equal(l4.expiresAt, table.lease(GN_DUAL.mac, 4)!.expiresAt);
    // An overlay packet to a peer makes it known, and so a destination of the fast path.
    const udp = buildUdp({ src: GN_DUAL.vip4!, dst: PEER4, srcPort: 1000, dstPort: 2000, payload: Buffer.from('x') });
    link.deliver(encodeEthernet({ dst: ADAPTER_MAC, src: GN_DUAL.mac, ethertype: ETHERTYPE_IPV4, payload: udp }));
    assert.equal(agent.out.length, 1);
    assert.deepEqual(tables.at(-1)!.peers, [PEER4]);
    // A device here taking that address (a general node added with it) removes it at once: never carried as a peer.
    lan.setNodes([GN_DUAL, { mac: '52:54:00:00:00:99', name: 'x', vip4: PEER4 }]);
    assert.deepEqual(tables.at(-1)!.peers, []);
    lan.setNodes([GN_DUAL]);
    // The engine stops, or the agent is detached: the node leaves the table.
    fd = null;
    fastAgent.onDevice!();
    assert.equal(tables.at(-1)!.nodes.length, 0);
    fd = 7;
    fastAgent.onDevice!();
    assert.equal(tables.at(-1)!.nodes.length, 1);
    lan.attach(GN_DUAL.mac, null);
    assert.equal(tables.at(-1)!.nodes.length, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the IP fast path can be switched off: the link gets no table', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-lan-'));
  const link = new FakeLink() as FakeLink & Pick<LanLink, 'setFastPath'>;
  let calls = 0;
  link.setFastPath = () => calls++;
  const lan = new LanService(
    { vip4: ADAPTER_IP4, vip6: ADAPTER_IP6, pool4: '100.64.0.0/10', pool6: 'fd12:3456:789a::/48', domain: 'cyphonic.internal', leaseFile: join(dir, 'l.json'), upstreamDns: [], fastPath: false },
    link,
    new MemoryLeaseTable([]),
    silentLogger,
  );
  try {
    lan.setNodes([GN_DUAL]);
    lan.attach(GN_DUAL.mac, Object.assign(new FakeAgent(), { deviceFd: () => 7 }));
    assert.equal(calls, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
