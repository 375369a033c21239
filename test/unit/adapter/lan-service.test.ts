// The adapter's LAN service wired to a fake link and fake general-node agents: a DHCP exchange binds a lease (and
// saves it), the ARP proxy answers for peers, an overlay packet from the leased source reaches the agent and a
// spoofed one is dropped, packets from the overlay are framed for the device's MAC only when addressed to it, DNS
// for overlay names goes through the agent, and garbage is counted. Also the partial-checksum completion.

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
} from '../../../src/adapter/lan/index.js';
import { LanService, persistLeases, type GeneralNodePort } from '../../../src/adapter/lan-service.js';
import type { LanLink } from '../../../src/adapter/lan-port.js';
import { completePartialChecksum } from '../../../src/adapter/partial-checksum.js';
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
    const res = decodeResponse(decodeUdp(decodeIpv4(decodeEthernet(link.sent.at(-1)!).payload)).payload);
    assert.equal(res.id, 77);
    assert.deepEqual(res.answers.map((x) => x.address), [PEER4]);
    // Garbage: counted, never thrown.
    for (const junk of [Buffer.alloc(0), Buffer.alloc(13), Buffer.from('ffffffffffff' + GN_DUAL.mac.replace(/:/g, '') + '0800450000', 'hex')]) link.deliver(junk);
    assert.ok((lan.lanCounters()['lan.drop.malformed'] ?? 0) >= 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('completePartialChecksum fills in what checksum offload would have', () => {
  const good = buildUdp({ src: '100.64.0.10', dst: '100.64.0.20', srcPort: 1234, dstPort: 53, payload: Buffer.from('hello world!!') });
  const frame = encodeEthernet({ dst: ADAPTER_MAC, src: GN_DUAL.mac, ethertype: ETHERTYPE_IPV4, payload: good });
  const want = frame.readUInt16BE(14 + 20 + 6);
  // CHECKSUM_PARTIAL: the field holds the (uncomplemented) pseudo-header sum.
  const pseudo = [0x6440, 0x000a, 0x6440, 0x0014, 17, 8 + 13].reduce((s, v) => s + v, 0);
  const partial = Buffer.from(frame);
  partial.writeUInt16BE(((pseudo & 0xffff) + (pseudo >>> 16)) & 0xffff, 14 + 20 + 6);
  assert.equal(completePartialChecksum(partial), true);
  assert.equal(partial.readUInt16BE(14 + 20 + 6), want);
  assert.equal(completePartialChecksum(Buffer.alloc(10)), false);
  assert.equal(completePartialChecksum(encodeEthernet({ dst: ADAPTER_MAC, src: GN_DUAL.mac, ethertype: ETHERTYPE_ARP, payload: Buffer.alloc(28) })), false);
});
