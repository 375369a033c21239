// TCP transfer with an end-to-end checksum, run inside namespaces by the e2e suites and the demo.
//
//   node tcp-check.js server ADDR PORT            -> prints {"bytes":N,"sha256":"…"} when the sender closes
//   node tcp-check.js client ADDR PORT BYTES [MARKER] -> sends BYTES deterministic bytes (MARKER repeated
//                                                     inside them when given), prints {"bytes":N,"sha256":"…"}

import net from 'node:net';
import { createHash } from 'node:crypto';

const [mode, addr, portStr, bytesStr, marker] = process.argv.slice(2);
const port = Number(portStr);
const deadline = setTimeout(() => {
  process.stderr.write('tcp-check: timed out\n');
  process.exit(2);
}, 120_000);

function done(bytes: number, hash: string): void {
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify({ bytes, sha256: hash }) + '\n');
}

if (mode === 'server') {
  const server = net.createServer((sock) => {
    const h = createHash('sha256');
    let n = 0;
    sock.on('data', (c: Buffer) => {
      h.update(c);
      n += c.length;
    });
    sock.on('end', () => {
      done(n, h.digest('hex'));
      sock.end();
      server.close();
    });
  });
  server.listen(port, addr, () => process.stderr.write('listening\n'));
} else if (mode === 'client') {
  const total = Number(bytesStr);
  const chunk = Buffer.alloc(64 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 131 + 7) & 255;
  if (marker) for (let off = 0; off + marker.length < chunk.length; off += 4096) chunk.write(marker, off, 'latin1');
  const h = createHash('sha256');
  let sent = 0;
  const sock = net.connect({ host: addr!, port }, () => {
    const pump = (): void => {
      while (sent < total) {
        const piece = chunk.subarray(0, Math.min(chunk.length, total - sent));
        h.update(piece);
        sent += piece.length;
        if (!sock.write(piece)) return void sock.once('drain', pump);
      }
      sock.end();
    };
    pump();
  });
  sock.on('close', () => done(sent, h.digest('hex')));
  sock.on('error', (err) => {
    process.stderr.write(`tcp-check: ${err.message}\n`);
    process.exit(1);
  });
} else {
  process.stderr.write('usage: tcp-check server ADDR PORT | client ADDR PORT BYTES [MARKER]\n');
  process.exit(2);
}
