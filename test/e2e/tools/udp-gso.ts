// Bursts of large UDP datagrams sent with UDP GSO (one sendmmsg per burst, UDP_SEGMENT through the native addon),
// run inside namespaces by the e2e suites: the receiver checks that every datagram arrives whole, with its own
// length and bytes (so a segmentation or coalescing that moved a boundary or a byte is caught).
//
//   node udp-gso.js recv PORT COUNT IDLE_MS           -> dual-stack socket on PORT; ends when COUNT distinct datagrams
//                                                       came or IDLE_MS after the last one; prints
//                                                       {"received","unique","corrupt","bytes"}
//   node udp-gso.js send ADDR PORT COUNT SIZE [BURST]  -> COUNT datagrams in bursts of BURST (default 40): SIZE bytes
//                                                       each, the last of a burst 100 bytes shorter; ~1 ms apart
//
// Datagram k: seq u32 BE, its length u16 BE, then bytes (seq * 31 + i) & 255.

import { isIPv6 } from 'node:net';
import { loadNativeAddon } from '../../../src/native/addon.js';
import { parseIp } from '../../../src/protocol/ip.js';

const native = loadNativeAddon();
if (!native) {
  process.stderr.write('udp-gso: native addon unavailable\n');
  process.exit(2);
}
const n = native;
const hardStop = setTimeout(() => {
  process.stderr.write('udp-gso: timed out\n');
  process.exit(2);
}, 60_000);

function fill(buf: Buffer, at: number, seq: number, len: number): void {
  buf.writeUInt32BE(seq, at);
  buf.writeUInt16BE(len, at + 4);
  for (let i = 6; i < len; i++) buf[at + i] = (seq * 31 + i) & 255;
}

function intact(d: Buffer): boolean {
  if (d.length < 6 || d.readUInt16BE(4) !== d.length) return false;
  const seq = d.readUInt32BE(0);
  for (let i = 6; i < d.length; i++) if (d[i] !== ((seq * 31 + i) & 255)) return false;
  return true;
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'recv') {
  const [portStr, countStr, idleStr] = args;
  const count = Number(countStr);
  const idle = Number(idleStr);
  const fd = n.udpOpen(Number(portStr), true);
  const buf = Buffer.alloc(64 * 2048);
  const offs = new Uint32Array(64);
  const lens = new Uint32Array(64);
  const metas = new Uint8Array(64 * 20);
  const seen = new Set<number>();
  let received = 0;
  let corrupt = 0;
  let bytes = 0;
  let last = Date.now();
  process.stderr.write('listening\n');
  const t0 = Date.now();
  while (seen.size < count && Date.now() - last < idle && Date.now() - t0 < 50_000) {
    const k = n.udpRecvMany(fd, buf, 2048, offs, lens, metas, 100, undefined, false);
    for (let i = 0; i < k; i++) {
      const d = buf.subarray(offs[i]!, offs[i]! + lens[i]!);
      received++;
      bytes += d.length;
      if (!intact(d)) corrupt++;
      else seen.add(d.readUInt32BE(0));
    }
    // The idle clock starts with the first datagram (the sender may start a little later).
    if (k > 0 || received === 0) last = Date.now();
  }
  clearTimeout(hardStop);
  n.fdClose(fd);
  process.stdout.write(JSON.stringify({ received, unique: seen.size, corrupt, bytes }) + '\n');
} else if (mode === 'send') {
  const [addr, portStr, countStr, sizeStr, burstStr] = args;
  const count = Number(countStr);
  const size = Number(sizeStr);
  const burst = Math.min(64, Number(burstStr ?? 40));
  const fd = n.udpOpen(0, isIPv6(addr!));
  const to = parseIp(addr!);
  if (!to) throw new Error(`udp-gso: bad address ${addr}`);
  const buf = Buffer.alloc(burst * size);
  const offs = new Uint32Array(burst);
  const lens = new Uint32Array(burst);
  let seq = 0;
  let sent = 0;
  const step = (): void => {
    const k = Math.min(burst, count - seq);
    for (let i = 0; i < k; i++) {
      const len = i === k - 1 && k > 1 ? size - 100 : size;
      offs[i] = i * size;
      lens[i] = len;
      fill(buf, i * size, seq + i, len);
    }
    const r = n.udpSendMany(fd, buf, offs, lens, k, to, Number(portStr), true);
    sent += Math.max(0, r);
    seq += k;
    if (seq < count) setTimeout(step, 1);
    else {
      clearTimeout(hardStop);
      n.fdClose(fd);
      process.stdout.write(JSON.stringify({ sent }) + '\n');
    }
  };
  step();
} else {
  process.stderr.write('usage: udp-gso.js recv PORT COUNT IDLE_MS | send ADDR PORT COUNT SIZE [BURST]\n');
  process.exit(2);
}
