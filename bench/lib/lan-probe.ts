// Times the adapter's ARP and ND proxies from a device on its LAN: sends COUNT ARP requests (or Neighbor
// Solicitations) for TARGET through a packet socket and waits for each answer; prints {"samples":[µs...],"lost":N}.
// Runs inside the device's namespace (bench/adapter.ts).
//
//   node lan-probe.js arp IFACE MY_IP4 TARGET_IP4 COUNT
//   node lan-probe.js nd  IFACE MY_IP6 TARGET_IP6 COUNT

import { readFileSync } from 'node:fs';
import { requireNative } from '../../src/net/tun/native.js';
import {
  ARP_REQUEST,
  buildIcmpv6,
  decodeArp,
  decodeEthernet,
  encodeArp,
  encodeEthernet,
  encodeNdp,
  emptyNdOptions,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV6,
  multicastMac,
  solicitedNodeAddress,
} from '../../src/adapter/lan/index.js';

const [mode, ifname, me, target, countStr] = process.argv.slice(2);
const native = requireNative();
const fd = native.packetOpen!(ifname!);
const mac = readFileSync(`/sys/class/net/${ifname}/address`, 'utf8').trim();
const buf = Buffer.alloc(2048);
const status = new Uint32Array(1);

function request(): Buffer {
  if (mode === 'arp') {
    const arp = encodeArp({ op: ARP_REQUEST, senderMac: mac, senderIp: me!, targetMac: '00:00:00:00:00:00', targetIp: target! });
    return encodeEthernet({ dst: 'ff:ff:ff:ff:ff:ff', src: mac, ethertype: ETHERTYPE_ARP, payload: arp });
  }
  const options = emptyNdOptions();
  options.sourceLinkAddr = mac;
  const { type, body } = encodeNdp({ type: 'ns', target: target!, options });
  const dst = solicitedNodeAddress(target!);
  return encodeEthernet({ dst: multicastMac(dst), src: mac, ethertype: ETHERTYPE_IPV6, payload: buildIcmpv6({ src: me!, dst, type, body }) });
}

/** Whether `frame` answers our request: an ARP reply from TARGET, or a Neighbor Advertisement for it. */
function isAnswer(frame: Buffer): boolean {
  try {
    const eth = decodeEthernet(frame);
    if (eth.dst !== mac) return false;
    if (mode === 'arp') return eth.ethertype === ETHERTYPE_ARP && decodeArp(eth.payload).senderIp === target && decodeArp(eth.payload).op === 2;
    const p = eth.payload;
    return eth.ethertype === ETHERTYPE_IPV6 && p[6] === 58 && p[40] === 136;
  } catch {
    return false;
  }
}

const samples: number[] = [];
let lost = 0;
const frame = request();
for (let i = 0; i < Number(countStr); i++) {
  const t0 = process.hrtime.bigint();
  native.tunWrite(fd, frame, 0, frame.length);
  let got = false;
  while (!got) {
    const left = 1000 - Number(process.hrtime.bigint() - t0) / 1e6;
    if (left <= 0) break;
    const n = native.packetRead!(fd, buf, Math.max(1, Math.floor(left)), status);
    if (n > 0 && isAnswer(buf.subarray(0, n))) got = true;
  }
  if (got) samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  else lost++;
  const pause = Date.now() + 5;
  while (Date.now() < pause) {
    /* 5 ms between probes */
  }
}
native.fdClose(fd);
process.stdout.write(JSON.stringify({ samples, lost }) + '\n');
