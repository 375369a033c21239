// The router's answers at the adapter's LAN MTU (src/adapter/lan/mtu.ts): TCP SYN MSS clamping (IPv4 and IPv6, with
// the checksum redone, left alone when already small, not a SYN, or not understood), and for oversize packets ICMP
// "fragmentation needed" (DF), fragments (no DF) and ICMPv6 "packet too big" — never about an ICMP error, a later
// fragment or to a multicast source — plus the LanService wiring both ways, counted.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildIcmpv6,
  clampMss,
  decodeEthernet,
  encodeEthernet,
  encodeIpv4,
  encodeIpv6,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  fitMtu,
  internetChecksum,
  ipv4HeaderChecksum,
  MemoryLeaseTable,
  transportChecksum,
} from '../../../src/adapter/lan/index.js';
import { ICMP_ERROR_RATE, LanService, LAN_MTU, type GeneralNodePort } from '../../../src/adapter/lan-service.js';
import type { LanLink } from '../../../src/adapter/lan-port.js';
import { silentLogger } from '../../../src/util/log.js';
import { prng } from '../../harness/prng.js';
import { ADAPTER_IP4, ADAPTER_IP6, ADAPTER_MAC, GN_DUAL, PEER4, PEER6, SEED } from './fixtures.js';

function syn(v: 4 | 6, mss: number | null, flags = 0x02, opts: number[] = []): Buffer {
  const options = [...(mss === null ? [] : [2, 4, mss >> 8, mss & 255]), ...opts];
  while (options.length % 4) options.push(1);
  const seg = Buffer.alloc(20 + options.length);
  seg.writeUInt16BE(40000, 0);
  seg.writeUInt16BE(443, 2);
  seg.writeUInt32BE(1234, 4);
  seg[12] = ((20 + options.length) / 4) << 4;
  seg[13] = flags;
  seg.writeUInt16BE(64240, 14);
  seg.set(options, 20);
  const [src, dst] = v === 4 ? [GN_DUAL.vip4!, PEER4] : [GN_DUAL.vip6!, PEER6];
  const p = v === 4 ? encodeIpv4({ src, dst, protocol: 6, payload: seg }) : encodeIpv6({ src, dst, nextHeader: 6, payload: seg });
  const l4 = v === 4 ? 20 : 40;
  p.writeUInt16BE(tcpChecksum(p), l4 + 16);
  return p;
}

function tcpChecksum(p: Buffer): number {
  const v4 = p[0]! >> 4 === 4;
  return v4 ? transportChecksum(p.subarray(12, 16), p.subarray(16, 20), 6, p.subarray(20)) : transportChecksum(p.subarray(8, 24), p.subarray(24, 40), 6, p.subarray(40));
}

function mssOf(p: Buffer): number {
  const l4 = p[0]! >> 4 === 4 ? 20 : 40;
  for (let o = l4 + 20; o < l4 + (p[l4 + 12]! >> 4) * 4; ) {
    if (p[o] === 1) o++;
    else if (p[o] === 2) return p.readUInt16BE(o + 2);
    else o += p[o + 1]!;
  }
  return -1;
}

test('clampMss lowers the MSS of SYN and SYN-ACK to what the MTU carries and redoes the checksum', () => {
  for (const v of [4, 6] as const) {
    const limit = 1400 - (v === 4 ? 40 : 60);
    for (const flags of [0x02, 0x12]) {
      // An odd offset for the MSS value (a NOP before it) must not matter: the checksum is redone over the segment.
      for (const lead of [[], [1]]) {
        const p = syn(v, 1460, flags);
        if (lead.length) {
          const q = syn(v, null, flags, [1, 2, 4, 1460 >> 8, 1460 & 255]);
          assert.equal(clampMss(q, 1400), true);
          assert.equal(mssOf(q), limit);
          assert.equal(tcpChecksum(q), 0);
          continue;
        }
        assert.equal(clampMss(p, 1400), true);
        assert.equal(mssOf(p), limit);
        assert.equal(tcpChecksum(p), 0, 'the checksum verifies');
      }
    }
    assert.equal(clampMss(syn(v, 1200), 1400), false, 'already small');
    assert.equal(clampMss(syn(v, 1460, 0x10), 1400), false, 'not a SYN');
    assert.equal(clampMss(syn(v, null), 1400), false, 'no MSS option');
    const bad = syn(v, 1460);
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 0xff;
    bad.writeUInt16BE(0x1234, (v === 4 ? 20 : 40) + 16);
    assert.equal(clampMss(bad, 1400), false, 'a corrupt segment is left for its receiver to drop');
    const trunc = syn(v, null, 0x02, [3, 9]); // a window-scale option claiming 9 bytes
    assert.equal(clampMss(trunc, 1400), false);
  }
  assert.equal(clampMss(Buffer.alloc(0), 1400), false);
  assert.equal(clampMss(Buffer.from([0x45, 0, 0, 20]), 1400), false);
});

test('clampMss on random bytes never throws and never writes past the packet', () => {
  const rnd = prng(SEED);
  for (let i = 0; i < 5000; i++) {
    const p = syn(i % 2 ? 4 : 6, 1460, 0x02, [3, 3, 7, 4, 2, 8, 10]);
    for (let k = Math.floor(rnd() * 6); k > 0; k--) p[Math.floor(rnd() * p.length)] = Math.floor(rnd() * 256);
    const cut = p.subarray(0, Math.floor(rnd() * (p.length + 1)));
    const copy = Buffer.from(p.subarray(cut.length));
    clampMss(cut, 1400);
    assert.deepEqual(p.subarray(cut.length), copy);
  }
});

test('fitMtu: a packet that fits passes; IPv4 with DF gets "fragmentation needed" with the MTU, to its source', () => {
  const small = encodeIpv4({ src: GN_DUAL.vip4!, dst: PEER4, protocol: 17, payload: Buffer.alloc(1380) });
  assert.deepEqual(fitMtu(small, 1400, ADAPTER_IP4), { kind: 'fits' });
  const big = encodeIpv4({ src: GN_DUAL.vip4!, dst: PEER4, protocol: 17, payload: Buffer.alloc(1480, 7) });
  const r = fitMtu(big, 1400, ADAPTER_IP4);
  assert.equal(r.kind, 'too-big');
  if (r.kind !== 'too-big') return;
  const ip = r.reply;
  assert.equal(ipv4HeaderChecksum(ip.subarray(0, 20)), ip.readUInt16BE(10));
  assert.equal(ip[9], 1);
  assert.equal(ip.subarray(12, 16).join('.'), ADAPTER_IP4);
  assert.equal(ip.subarray(16, 20).join('.'), GN_DUAL.vip4);
  const icmp = ip.subarray(20);
  assert.deepEqual([icmp[0], icmp[1], icmp.readUInt16BE(6)], [3, 4, 1400]);
  assert.equal(internetChecksum(icmp), 0);
  assert.deepEqual(icmp.subarray(8, 36), big.subarray(0, 28), 'quotes the header and the start of the payload');
  assert.ok(ip.length <= 576);
  // Not about a later fragment, an ICMP error, or from a broadcast/multicast source.
  const frag = Buffer.from(big);
  frag.writeUInt16BE(0x4000 | 100, 6);
  assert.deepEqual(fitMtu(frag, 1400, ADAPTER_IP4), { kind: 'drop', reason: 'no-error-allowed' });
  const err = encodeIpv4({ src: GN_DUAL.vip4!, dst: PEER4, protocol: 1, payload: Buffer.concat([Buffer.from([3, 1, 0, 0]), Buffer.alloc(1476)]) });
  assert.deepEqual(fitMtu(err, 1400, ADAPTER_IP4), { kind: 'drop', reason: 'no-error-allowed' });
  const mcast = encodeIpv4({ src: '224.0.0.9', dst: PEER4, protocol: 17, payload: Buffer.alloc(1480) });
  assert.deepEqual(fitMtu(mcast, 1400, ADAPTER_IP4), { kind: 'drop', reason: 'no-error-allowed' });
  // An echo request with DF is answered (only errors are exempt).
  const echo = encodeIpv4({ src: GN_DUAL.vip4!, dst: PEER4, protocol: 1, payload: Buffer.concat([Buffer.from([8, 0, 0, 0]), Buffer.alloc(1476)]) });
  assert.equal(fitMtu(echo, 1400, ADAPTER_IP4).kind, 'too-big');
});

test('fitMtu: IPv4 without DF is fragmented (8-byte offsets, MF, checksums) and reassembles to the packet', () => {
  const payload = Buffer.alloc(2900);
  for (let i = 0; i < payload.length; i++) payload[i] = i & 255;
  const p = encodeIpv4({ src: GN_DUAL.vip4!, dst: PEER4, protocol: 17, payload, id: 77, dontFragment: false });
  const r = fitMtu(p, 1400, ADAPTER_IP4);
  assert.equal(r.kind, 'fragments');
  if (r.kind !== 'fragments') return;
  assert.equal(r.packets.length, 3);
  const parts: Buffer[] = [];
  r.packets.forEach((f, i) => {
    assert.ok(f.length <= 1400);
    assert.equal(f.readUInt16BE(2), f.length);
    assert.equal(f.readUInt16BE(4), 77);
    assert.equal(ipv4HeaderChecksum(f.subarray(0, 20)), f.readUInt16BE(10));
    const flags = f.readUInt16BE(6);
    assert.equal((flags & 0x2000) !== 0, i < 2, 'MF on all but the last');
    assert.equal((flags & 0x1fff) * 8, parts.reduce((s, b) => s + b.length, 0));
    parts.push(f.subarray(20));
  });
  assert.deepEqual(Buffer.concat(parts), payload);
  // A fragment that is fragmented again keeps its offset and its MF.
  const mid = Buffer.from(r.packets[0]!);
  const again = fitMtu(Buffer.concat([mid.subarray(0, 20), Buffer.alloc(0)]), 1400, ADAPTER_IP4);
  assert.equal(again.kind, 'fits');
  const r2 = fitMtu(r.packets[0]!, 700, ADAPTER_IP4);
  assert.equal(r2.kind, 'fragments');
  if (r2.kind === 'fragments') assert.ok(r2.packets.every((f) => (f.readUInt16BE(6) & 0x2000) !== 0), 'MF stays on: more fragments follow');
});

test('fitMtu: IPv6 gets "packet too big" with the MTU (the error fits 1280 bytes), never about an error or from multicast', () => {
  const big = encodeIpv6({ src: GN_DUAL.vip6!, dst: PEER6, nextHeader: 17, payload: Buffer.alloc(1460, 9) });
  const r = fitMtu(big, 1400, ADAPTER_IP6);
  assert.equal(r.kind, 'too-big');
  if (r.kind !== 'too-big') return;
  const ip = r.reply;
  assert.ok(ip.length <= 1280);
  assert.equal(ip[6], 58);
  const icmp = ip.subarray(40);
  assert.deepEqual([icmp[0], icmp[1], icmp.readUInt32BE(4)], [2, 0, 1400]);
  assert.equal(transportChecksum(ip.subarray(8, 24), ip.subarray(24, 40), 58, icmp), 0);
  assert.deepEqual(icmp.subarray(8, 48), big.subarray(0, 40));
  const err = buildIcmpv6({ src: GN_DUAL.vip6!, dst: PEER6, type: 1, body: Buffer.alloc(1456) });
  assert.deepEqual(fitMtu(err, 1400, ADAPTER_IP6), { kind: 'drop', reason: 'no-error-allowed' });
  const fromMcast = Buffer.from(big);
  fromMcast[8] = 0xff;
  assert.deepEqual(fitMtu(fromMcast, 1400, ADAPTER_IP6), { kind: 'drop', reason: 'no-error-allowed' });
  assert.deepEqual(fitMtu(Buffer.alloc(1500), 1400, ADAPTER_IP6), { kind: 'drop', reason: 'malformed' });
});

class FakeLink implements LanLink {
  readonly mac = ADAPTER_MAC;
  onFrames: (frames: Buffer[]) => void = () => {};
  readonly sent: Buffer[] = [];
  send(frame: Buffer): void {
    this.sent.push(Buffer.from(frame));
  }
  async close(): Promise<void> {}
}

class FakeAgent implements GeneralNodePort {
  onPacket: (packet: Buffer) => void = () => {};
  readonly out: Buffer[] = [];
  sendPacket(_dst: string, packet: Buffer): void {
    this.out.push(packet);
  }
  async resolve(): Promise<null> {
    return null;
  }
}

test('LanService: oversize packets from the device and from the overlay get the router\'s answers, SYNs are clamped, all counted', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-mtu-'));
  try {
    const link = new FakeLink();
    const table = new MemoryLeaseTable([]);
    const lan = new LanService({ vip4: ADAPTER_IP4, vip6: ADAPTER_IP6, pool4: '100.64.0.0/10', pool6: 'fd12:3456:789a::/48', domain: 'cyphonic.internal', leaseFile: join(dir, 'l.json'), upstreamDns: [] }, link, table, silentLogger);
    lan.setNodes([GN_DUAL]);
    const now = Date.now();
    table.bind({ mac: GN_DUAL.mac, family: 4, address: GN_DUAL.vip4!, boundAt: now, expiresAt: now + 3600_000 });
    table.bind({ mac: GN_DUAL.mac, family: 6, address: GN_DUAL.vip6!, boundAt: now, expiresAt: now + 3600_000 });
    const agent = new FakeAgent();
    lan.attach(GN_DUAL.mac, agent);
    const fromDevice = (ip: Buffer): void => link.onFrames([encodeEthernet({ dst: ADAPTER_MAC, src: GN_DUAL.mac, ethertype: ip[0]! >> 4 === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6, payload: ip })]);
    // Device → overlay.
    fromDevice(syn(4, 1460));
    assert.equal(mssOf(agent.out.at(-1)!), LAN_MTU - 40);
    fromDevice(encodeIpv4({ src: GN_DUAL.vip4!, dst: PEER4, protocol: 17, payload: Buffer.alloc(1480) }));
    const icmp = decodeEthernet(link.sent.at(-1)!);
    assert.equal(icmp.dst, GN_DUAL.mac);
    assert.deepEqual([icmp.payload[20], icmp.payload[21]], [3, 4]);
    fromDevice(encodeIpv4({ src: GN_DUAL.vip4!, dst: PEER4, protocol: 17, payload: Buffer.alloc(1480), dontFragment: false }));
    fromDevice(encodeIpv6({ src: GN_DUAL.vip6!, dst: PEER6, nextHeader: 17, payload: Buffer.alloc(1460) }));
    assert.equal(decodeEthernet(link.sent.at(-1)!).payload[40], 2, 'packet too big to the device');
    assert.ok(agent.out.every((p) => p.length <= LAN_MTU));
    assert.equal(agent.out.length, 3, 'the SYN and two fragments');
    // Overlay → device: clamp the SYN-ACK, fragment without DF, "too big" back into the overlay with DF.
    const before = link.sent.length;
    const synack = Buffer.from(syn(4, 1460, 0x12));
    synack.set([100, 64, 0, 20], 12);
    synack.set([100, 64, 0, 10], 16);
    synack.writeUInt16BE(0, 36);
    synack.writeUInt16BE(tcpChecksum(synack), 36);
    agent.onPacket(synack);
    assert.equal(mssOf(Buffer.from(decodeEthernet(link.sent.at(-1)!).payload)), LAN_MTU - 40);
    agent.onPacket(encodeIpv4({ src: PEER4, dst: GN_DUAL.vip4!, protocol: 17, payload: Buffer.alloc(1480), dontFragment: false }));
    assert.ok(link.sent.slice(before).every((f) => f.length <= 14 + LAN_MTU));
    const nOut = agent.out.length;
    agent.onPacket(encodeIpv6({ src: PEER6, dst: GN_DUAL.vip6!, nextHeader: 17, payload: Buffer.alloc(1460) }));
    assert.equal(agent.out.length, nOut + 1);
    const ptb = agent.out.at(-1)!;
    assert.equal(ptb[40], 2, 'packet too big back into the overlay');
    assert.deepEqual([...ptb.subarray(8, 24)], [...encodeIpv6({ src: GN_DUAL.vip6!, dst: PEER6, nextHeader: 0, payload: Buffer.alloc(0) }).subarray(8, 24)], 'from the device\'s own address');
    const c = lan.lanCounters();
    assert.equal(c['mtu.mss-clamped.out'], 1);
    assert.equal(c['mtu.mss-clamped.in'], 1);
    assert.equal(c['mtu.too-big.out.v4'], 1);
    assert.equal(c['mtu.too-big.out.v6'], 1);
    assert.equal(c['mtu.fragmented.out'], 1);
    assert.equal(c['mtu.fragmented.in'], 1);
    assert.equal(c['mtu.too-big.in.v6'], 1);
    // A device flooding oversize DF packets gets at most the budget's ICMP errors back; the rest are counted drops.
    const sent = link.sent.length;
    const t0 = Date.now();
    for (let i = 0; i < 500; i++) fromDevice(encodeIpv4({ src: GN_DUAL.vip4!, dst: PEER4, protocol: 17, payload: Buffer.alloc(1480) }));
    const errors = link.sent.length - sent;
    const refill = Math.ceil(((Date.now() - t0 + 1) / 1000) * ICMP_ERROR_RATE.perSec);
    assert.ok(errors >= ICMP_ERROR_RATE.burst - 10 && errors <= ICMP_ERROR_RATE.burst + refill, `errors sent: ${errors}`);
    assert.equal(lan.lanCounters()['mtu.drop.out.rate-limited'], 500 - errors);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
