// A paced UDP load sent with UDP GSO (UDP_SEGMENT through the native addon's udpSendMany), for the adapter bench's
// "UDP GSO sender" rows: what a QUIC stack or any UDP_SEGMENT sender on a general node hands the adapter (one
// super-datagram of BURST equal datagrams per send), which iperf3 3.12 cannot send. Run inside namespaces.
//
//   node udp-gso-load.js recv PORT IDLE_MS        -> IPv4 socket on PORT; counts datagrams until IDLE_MS after the
//                                                    last one (or 120 s); prints {"received","bytes"}
//   node udp-gso-load.js send ADDR PORT SECONDS MBPS SIZE BURST
//                                                 -> for SECONDS, bursts of BURST datagrams of SIZE payload bytes
//                                                    each (one GSO send per burst), paced to MBPS of IP bytes
//                                                    (SIZE + 28 per datagram; 0 = as fast as the socket takes them);
//                                                    prints {"sent","seconds"} (datagrams the kernel accepted)

import { loadNativeAddon } from '../../src/native/addon.js';
import { parseIp } from '../../src/protocol/ip.js';

const native = loadNativeAddon();
if (!native) {
  process.stderr.write('udp-gso-load: native addon unavailable\n');
  process.exit(2);
}
const n = native;
const hardStop = setTimeout(() => {
  process.stderr.write('udp-gso-load: timed out\n');
  process.exit(2);
}, 120_000);
const nap = new Int32Array(new SharedArrayBuffer(4));

const [mode, ...args] = process.argv.slice(2);
if (mode === 'recv') {
  const [portStr, idleStr] = args;
  const idle = Number(idleStr);
  const fd = n.udpOpen(Number(portStr), false);
  const buf = Buffer.alloc(64 * 2048);
  const offs = new Uint32Array(64);
  const lens = new Uint32Array(64);
  const metas = new Uint8Array(64 * 20);
  let received = 0;
  let bytes = 0;
  let last = Date.now();
  process.stderr.write('listening\n');
  for (;;) {
    const k = n.udpRecvMany(fd, buf, 2048, offs, lens, metas, 100, undefined, false);
    for (let i = 0; i < k; i++) bytes += lens[i]!;
    received += k;
    // The idle clock starts with the first datagram (the sender starts a little later).
    if (k > 0 || received === 0) last = Date.now();
    if (Date.now() - last >= idle) break;
  }
  clearTimeout(hardStop);
  n.fdClose(fd);
  process.stdout.write(JSON.stringify({ received, bytes }) + '\n');
} else if (mode === 'send') {
  const [addr, portStr, secStr, mbpsStr, sizeStr, burstStr] = args;
  const seconds = Number(secStr);
  const mbps = Number(mbpsStr);
  const size = Number(sizeStr);
  const burst = Math.max(1, Math.min(64, Number(burstStr)));
  const to = parseIp(addr!);
  if (!to || to.length !== 4 || !(seconds > 0) || !(mbps >= 0) || !(size >= 8 && size <= 1472) || burst * size > 65_000) {
    process.stderr.write('udp-gso-load: bad arguments\n');
    process.exit(2);
  }
  const fd = n.udpOpen(0, false);
  const buf = Buffer.alloc(burst * size, 0x5a);
  const offs = Uint32Array.from({ length: burst }, (_, i) => i * size);
  const lens = new Uint32Array(burst).fill(size);
  const burstsPerMs = mbps > 0 ? (mbps * 1e6) / (8 * burst * (size + 28)) / 1000 : Infinity;
  const t0 = performance.now();
  let bursts = 0;
  let sent = 0;
  let seq = 0;
  for (;;) {
    const now = performance.now() - t0;
    if (now >= seconds * 1000) break;
    const due = Math.min(Math.floor(now * burstsPerMs) + 1, bursts + 64); // catch up at most 64 bursts at once
    if (bursts >= due) {
      Atomics.wait(nap, 0, 0, 0.1); // ahead of the pace: a short nap
      continue;
    }
    for (let i = 0; i < burst; i++) buf.writeUInt32BE(seq++ >>> 0, i * size);
    const r = n.udpSendMany(fd, buf, offs, lens, burst, to, Number(portStr), true);
    if (r > 0) sent += r;
    bursts++;
  }
  clearTimeout(hardStop);
  n.fdClose(fd);
  process.stdout.write(JSON.stringify({ sent, seconds: (performance.now() - t0) / 1000 }) + '\n');
} else {
  process.stderr.write('usage: udp-gso-load.js recv PORT IDLE_MS | send ADDR PORT SECONDS MBPS SIZE BURST\n');
  process.exit(2);
}
