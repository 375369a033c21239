// Paced TCP sender for transfers that must stay open across network moves (mobility e2e, demo): the same
// deterministic stream as tcp-check.ts's client, at a steady rate in 20 ms steps, so tcp-check's server verifies it.
//
//   node tcp-paced.js ADDR PORT BYTES RATE   -> sends BYTES at RATE bytes/s, prints {"bytes":N,"sha256":"…"}

import net from 'node:net';
import { createHash } from 'node:crypto';

const [addr, portStr, bytesStr, rateStr] = process.argv.slice(2);
const total = Number(bytesStr);
const rate = Number(rateStr);
if (!addr || !(Number(portStr) > 0) || !(total > 0) || !(rate > 0)) {
  process.stderr.write('usage: tcp-paced ADDR PORT BYTES RATE\n');
  process.exit(2);
}
const deadline = setTimeout(() => {
  process.stderr.write('tcp-paced: timed out\n');
  process.exit(2);
}, 120_000);
// tcp-check.ts's client stream: byte i of every 64 KiB chunk is (i * 131 + 7) & 255.
const CHUNK = 64 * 1024;
const byteAt = (i: number): number => ((i % CHUNK) * 131 + 7) & 255;
const h = createHash('sha256');
let sent = 0;
const sock = net.connect({ host: addr, port: Number(portStr) }, () => {
  const step = Math.max(1, Math.round((rate * 20) / 1000));
  const timer = setInterval(() => {
    const n = Math.min(step, total - sent);
    const piece = Buffer.alloc(n);
    for (let i = 0; i < n; i++) piece[i] = byteAt(sent + i);
    h.update(piece);
    sent += n;
    sock.write(piece);
    if (sent >= total) {
      clearInterval(timer);
      sock.end();
    }
  }, 20);
});
sock.on('close', () => {
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify({ bytes: sent, sha256: h.digest('hex') }) + '\n');
});
sock.on('error', (err) => {
  process.stderr.write(`tcp-paced: ${err.message}\n`);
  process.exit(1);
});
