// Numbered UDP datagrams one way, for the WAN emulator's self-test: the receiver reports what arrived, how
// many were duplicates and how many came after a higher-numbered one (reordered).
//
//   node udp-probe.js recv ADDR PORT IDLE_MS      -> ends IDLE_MS after the last datagram (or 60 s without one);
//                                                    prints {"received","unique","duplicates","reordered","maxSeq"}
//   node udp-probe.js send ADDR PORT COUNT PPS [SIZE] -> sends COUNT datagrams (SIZE bytes, default 200) at PPS

import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';

const [mode, addr, portStr, a, b, c] = process.argv.slice(2);
const port = Number(portStr);
const type = isIPv6(addr ?? '') ? 'udp6' : 'udp4';
const hardStop = setTimeout(() => {
  process.stderr.write('udp-probe: timed out\n');
  process.exit(2);
}, 90_000);

if (mode === 'recv') {
  const idle = Number(a);
  const seen = new Uint8Array(1 << 20);
  let received = 0;
  let unique = 0;
  let duplicates = 0;
  let reordered = 0;
  let maxSeq = -1;
  const sock = dgram.createSocket(type);
  let timer = setTimeout(() => finish(), 60_000);
  const finish = (): void => {
    clearTimeout(hardStop);
    process.stdout.write(JSON.stringify({ received, unique, duplicates, reordered, maxSeq }) + '\n');
    sock.close();
  };
  sock.on('message', (m) => {
    if (m.length < 4) return;
    const seq = m.readUInt32BE(0);
    if (seq >= seen.length) return;
    received++;
    if (seen[seq]) duplicates++;
    else {
      seen[seq] = 1;
      unique++;
      if (seq < maxSeq) reordered++;
    }
    if (seq > maxSeq) maxSeq = seq;
    clearTimeout(timer);
    timer = setTimeout(() => finish(), idle);
  });
  sock.bind(port, addr, () => process.stderr.write('listening\n'));
} else if (mode === 'send') {
  const count = Math.min(Number(a), 1 << 20);
  const pps = Number(b);
  const size = Math.max(4, Number(c ?? 200));
  const sock = dgram.createSocket(type);
  let seq = 0;
  const t0 = Date.now();
  const tick = (): void => {
    const due = Math.min(count, Math.floor(((Date.now() - t0) * pps) / 1000) + 1);
    while (seq < due) {
      const m = Buffer.alloc(size); // its own buffer: send() is asynchronous
      m.writeUInt32BE(seq++, 0);
      sock.send(m, port, addr);
    }
    if (seq >= count) {
      clearInterval(iv);
      setTimeout(() => {
        clearTimeout(hardStop);
        sock.close();
        process.stdout.write(JSON.stringify({ sent: seq }) + '\n');
      }, 100);
    }
  };
  const iv = setInterval(tick, 2);
} else {
  process.stderr.write('usage: udp-probe recv ADDR PORT IDLE_MS | send ADDR PORT COUNT PPS [SIZE]\n');
  process.exit(2);
}
