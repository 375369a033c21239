// Hostile device on the adapter's LAN, run inside a general node's namespace by the adapter e2e suite: writes
// malformed and forged frames straight onto the wire through a packet socket (native packetOpen) and prints one
// JSON line with how many of each kind it sent. Bounded: a fixed list plus COUNT seeded random frames.
//
//   node lan-inject.js IFACE ADAPTER_MAC ADAPTER_VIP4 MY_VIP4 PEER_VIP4 COUNT SEED OTHER_VIP4
//   (OTHER_VIP4: another general node's virtual address, used as a forged source)
//
// Kinds: DHCPv4 (truncated, bad cookie, option overrunning the packet, a rogue server's OFFER), DHCPv6 (option
// overrun, truncated), RS/RA (bad checksum, hop limit ≠ 255, a foreign RA), NS (truncated target), ARP (bad
// lengths, sender MAC ≠ frame source), DNS (garbage, a compression loop), an overlay packet with a spoofed
// source, and random bytes.

import { readFileSync } from 'node:fs';
import { requireNative } from '../../../src/net/tun/native.js';
import {
  buildIcmpv6,
  buildUdp,
  encodeEthernet,
  encodeIpv4,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  linkLocalFromMac,
  multicastMac,
} from '../../../src/adapter/lan/index.js';
import { prng } from '../../harness/prng.js';

const [ifname, adapterMac, vip4, myVip, peer4, countStr, seedStr, otherVip] = process.argv.slice(2);
const native = requireNative();
const fd = native.packetOpen!(ifname!);
const mac = readFileSync(`/sys/class/net/${ifname}/address`, 'utf8').trim();
const ll = linkLocalFromMac(mac);
const sent: Record<string, number> = {};

function send(kind: string, frame: Buffer): void {
  native.tunWrite(fd, frame, 0, frame.length);
  sent[kind] = (sent[kind] ?? 0) + 1;
}

const eth4 = (dst: string, payload: Buffer): Buffer => encodeEthernet({ dst, src: mac, ethertype: ETHERTYPE_IPV4, payload });
const eth6 = (dst: string, payload: Buffer): Buffer => encodeEthernet({ dst, src: mac, ethertype: ETHERTYPE_IPV6, payload });
const BCAST = 'ff:ff:ff:ff:ff:ff';

/** A BOOTREQUEST with `options` after the magic cookie (or a wrong cookie). */
function bootp(options: number[], cookie = 0x63825363, op = 1): Buffer {
  const b = Buffer.alloc(240 + options.length);
  b[0] = op;
  b[1] = 1;
  b[2] = 6;
  b.writeUInt32BE(0x12345678, 4);
  Buffer.from(mac.replace(/:/g, ''), 'hex').copy(b, 28);
  b.writeUInt32BE(cookie, 236);
  Buffer.from(options).copy(b, 240);
  return b;
}
const dhcp4 = (payload: Buffer, srcPort = 68, dstPort = 67): Buffer => eth4(BCAST, buildUdp({ src: '0.0.0.0', dst: '255.255.255.255', srcPort, dstPort, payload }));

// DHCPv4
send('dhcp4', dhcp4(bootp([53, 1, 1, 255]).subarray(0, 100))); // truncated BOOTP
send('dhcp4', dhcp4(bootp([53, 1, 1, 255], 0xdeadbeef))); // bad magic cookie
send('dhcp4', dhcp4(bootp([53, 1, 1, 61, 200, 1, 2, 3]))); // option length runs past the end
send('dhcp4', dhcp4(bootp([53, 1, 2, 54, 4, 10, 0, 0, 1, 255], 0x63825363, 2), 67, 68)); // a rogue server's OFFER

// DHCPv6 (Solicit = 1): an option whose length overruns, and a 2-byte message.
const d6 = (payload: Buffer): Buffer => eth6(multicastMac('ff02::1:2'), buildUdp({ src: ll, dst: 'ff02::1:2', srcPort: 546, dstPort: 547, payload }));
send('dhcp6', d6(Buffer.from([1, 0xaa, 0xbb, 0xcc, 0x00, 0x01, 0x10, 0x00, 1, 2, 3])));
send('dhcp6', d6(Buffer.from([1, 0])));

// RS with a broken checksum, RS with hop limit 64, a foreign RA, an NS cut short.
const rs = buildIcmpv6({ src: ll, dst: 'ff02::2', type: 133, body: Buffer.alloc(4) });
const badSum = Buffer.from(rs);
badSum[42] = badSum[42]! ^ 0xff;
send('rs', eth6(multicastMac('ff02::2'), badSum));
const lowHop = Buffer.from(rs);
lowHop[7] = 64;
send('rs', eth6(multicastMac('ff02::2'), lowHop));
send('ra', eth6(multicastMac('ff02::1'), buildIcmpv6({ src: ll, dst: 'ff02::1', type: 134, body: Buffer.from([64, 0xc0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]) })));
send('ns', eth6(multicastMac('ff02::1:ff00:1'), buildIcmpv6({ src: ll, dst: 'ff02::1:ff00:1', type: 135, body: Buffer.alloc(10) })));

// ARP: hardware length 7; and a request whose sender MAC is not the frame's source (cache poisoning attempt).
const arp = (hlen: number, senderMac: string): Buffer => {
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0);
  a.writeUInt16BE(0x0800, 2);
  a[4] = hlen;
  a[5] = 4;
  a.writeUInt16BE(1, 6);
  Buffer.from(senderMac.replace(/:/g, ''), 'hex').copy(a, 8);
  Buffer.from(vip4!.split('.').map(Number)).copy(a, 14);
  Buffer.from(peer4!.split('.').map(Number)).copy(a, 24);
  return encodeEthernet({ dst: BCAST, src: mac, ethertype: ETHERTYPE_ARP, payload: a });
};
send('arp', arp(7, mac));
send('arp', arp(6, '02:66:66:66:66:66'));

// DNS to the adapter: garbage, and a name whose compression pointer points at itself.
const dns = (payload: Buffer): Buffer => eth4(adapterMac!, buildUdp({ src: myVip!, dst: vip4!, srcPort: 5353, dstPort: 53, payload }));
send('dns', dns(Buffer.from('this is not a dns message')));
send('dns', dns(Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1])));

// Overlay packets claiming another general node's address, and an unassigned one (anti-spoof rule).
send('spoof', eth4(adapterMac!, encodeIpv4({ src: otherVip!, dst: peer4!, protocol: 17, payload: Buffer.from([0, 1, 0, 2, 0, 12, 0, 0, 1, 2, 3, 4]) })));
send('spoof', eth4(adapterMac!, encodeIpv4({ src: '100.64.0.250', dst: peer4!, protocol: 17, payload: Buffer.from([0, 1, 0, 2, 0, 12, 0, 0, 1, 2, 3, 4]) })));

// Random frames, addressed to the adapter or broadcast, of every ethertype it serves.
const rnd = prng(Number(seedStr));
for (let i = 0; i < Number(countStr); i++) {
  const len = 14 + Math.floor(rnd() * 300);
  const f = Buffer.alloc(len);
  for (let j = 0; j < len; j++) f[j] = Math.floor(rnd() * 256);
  Buffer.from((i % 2 ? adapterMac! : BCAST).replace(/:/g, ''), 'hex').copy(f, 0);
  Buffer.from(mac.replace(/:/g, ''), 'hex').copy(f, 6);
  f.writeUInt16BE([ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_ARP][i % 3]!, 12);
  send('random', f);
}
native.fdClose(fd);
process.stdout.write(JSON.stringify(sent) + '\n');
