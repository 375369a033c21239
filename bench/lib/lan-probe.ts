// Times the adapter's ARP and ND proxies from a device on its LAN: sends COUNT ARP requests (or Neighbor
// Solicitations) for TARGET through a packet socket and waits for each answer. Two figures per answer:
//   - wire: device-side, kernel timestamps. A second packet socket on the interface (packetStampOn) is a capture
//     point, as tcpdump on the device would be: it sees the request as it left for the driver and the answer as it
//     arrived, each with the kernel's software timestamp (SO_TIMESTAMPNS); wire = answer - request. No JavaScript,
//     syscall or wake-up of this process is in it (the probe reads that socket after the round trip).
//   - samples: the probe process round trip, as before: process.hrtime before the send until this process has
//     read and parsed the answer (its own syscalls, JavaScript and wake-up included).
// Prints {"samples":[µs...],"wire":[µs...],"lost":N,"unstamped":N}. Runs inside the device's namespace
// (bench/adapter.ts).
//
//   node lan-probe.js arp IFACE MY_IP4 TARGET_IP4 COUNT
//   node lan-probe.js nd  IFACE MY_IP6 TARGET_IP6 COUNT
//
// Watch mode (bench/adapter.ts --adapter-side) runs on the adapter's host instead: a stamped capture socket on its
// LAN interface times each request arriving there to the answer leaving there, the adapter's own reaction (the
// switch excluded); prints {"adapter":[µs...]} after COUNT pairs or TIMEOUT_MS:
//   node lan-probe.js watch-arp|watch-nd IFACE - TARGET COUNT TIMEOUT_MS

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
const fd = mode!.startsWith('watch-') ? -1 : native.packetOpen!(ifname!); // watch mode only captures
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

/** Packet type of a frame this host sent (sll_pkttype PACKET_OUTGOING). */
const PACKET_OUTGOING = 4;
const cap = native.packetOpen!(ifname!);
native.packetStampOn!(cap);
const capBuf = Buffer.alloc(70_000); // a GRO super-frame must not stop the drain (an oversized read reads as 0)
const info = new Uint32Array(4);

/** Kernel time of `info` in ns relative to `base` seconds (a Number keeps ns exactly this way). */
function stampNs(base: number): number {
  return (info[0]! - base) * 1e9 + info[1]!;
}

/**
 * The capture socket's kernel times of our request leaving and of its answer arriving (µs apart), read after the
 * round trip; null when either is missing or unstamped. Frames queued there belong to this probe only (the
 * previous one drained them), at most 64 are read.
 */
function wireTime(frame: Buffer, base: number): number | null {
  let sent: number | null = null;
  let answered: number | null = null;
  for (let i = 0; i < 64 && (sent === null || answered === null); i++) {
    const n = native.packetReadStamped!(cap, capBuf, answered === null || sent === null ? 20 : 0, info);
    if (n === 0) break;
    if (info[3] !== 1) continue;
    const f = capBuf.subarray(0, n);
    if (info[2] === PACKET_OUTGOING) {
      if (sent === null && f.equals(frame)) sent = stampNs(base);
    } else if (answered === null && isAnswer(f)) {
      answered = stampNs(base);
    }
  }
  return sent !== null && answered !== null && answered >= sent ? (answered - sent) / 1000 : null;
}

function drainCapture(): void {
  for (let i = 0; i < 256 && native.packetReadStamped!(cap, capBuf, 0, info) > 0; i++) {
    /* frames from before this probe */
  }
}

/** Watch mode: the adapter's reaction time at its own LAN interface (request in → answer out), kernel stamps. */
function watch(): void {
  const arp = mode === 'watch-arp';
  const timeoutMs = Number(process.argv[7]);
  const isRequest = (f: Buffer): boolean => {
    try {
      const eth = decodeEthernet(f);
      if (arp) return eth.ethertype === ETHERTYPE_ARP && decodeArp(eth.payload).op === 1 && decodeArp(eth.payload).targetIp === target;
      return eth.ethertype === ETHERTYPE_IPV6 && eth.payload[6] === 58 && eth.payload[40] === 135;
    } catch {
      return false;
    }
  };
  const isReply = (f: Buffer): boolean => {
    try {
      const eth = decodeEthernet(f);
      if (arp) return eth.ethertype === ETHERTYPE_ARP && decodeArp(eth.payload).op === 2 && decodeArp(eth.payload).senderIp === target;
      return eth.ethertype === ETHERTYPE_IPV6 && eth.payload[6] === 58 && eth.payload[40] === 136;
    } catch {
      return false;
    }
  };
  const adapter: number[] = [];
  const base = Math.floor(Date.now() / 1000) - 60;
  const end = Date.now() + timeoutMs;
  let req: number | null = null;
  while (adapter.length < Number(countStr) && Date.now() < end) {
    const n = native.packetReadStamped!(cap, capBuf, 100, info);
    if (n === 0 || info[3] !== 1) continue;
    const f = capBuf.subarray(0, n);
    if (info[2] !== PACKET_OUTGOING && isRequest(f)) req = stampNs(base);
    else if (info[2] === PACKET_OUTGOING && req !== null && isReply(f)) {
      adapter.push((stampNs(base) - req) / 1000);
      req = null;
    }
  }
  process.stdout.write(JSON.stringify({ adapter }) + '\n');
}

function probe(): void {
  const samples: number[] = [];
  const wire: number[] = [];
  let lost = 0;
  let unstamped = 0;
  const frame = request();
  const base = Math.floor(Date.now() / 1000) - 60; // seconds origin for the kernel stamps (CLOCK_REALTIME)
  for (let i = 0; i < Number(countStr); i++) {
    drainCapture();
    const t0 = process.hrtime.bigint();
    native.tunWrite(fd, frame, 0, frame.length);
    let got = false;
    while (!got) {
      const left = 1000 - Number(process.hrtime.bigint() - t0) / 1e6;
      if (left <= 0) break;
      const n = native.packetRead!(fd, buf, Math.max(1, Math.floor(left)), status);
      if (n > 0 && isAnswer(buf.subarray(0, n))) got = true;
    }
    if (got) {
      samples.push(Number(process.hrtime.bigint() - t0) / 1000);
      const w = wireTime(frame, base);
      if (w === null) unstamped++;
      else wire.push(w);
    } else {
      lost++;
    }
    const pause = Date.now() + 5;
    while (Date.now() < pause) {
      /* 5 ms between probes */
    }
  }
  process.stdout.write(JSON.stringify({ samples, wire, lost, unstamped }) + '\n');
}

if (mode!.startsWith('watch-')) watch();
else probe();
if (fd >= 0) native.fdClose(fd);
native.fdClose(cap);
