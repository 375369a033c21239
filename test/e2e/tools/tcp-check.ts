// TCP transfer with an end-to-end checksum, run inside namespaces by the e2e suites and the demo.
//
//   node tcp-check.js server ADDR PORT            -> prints {"bytes":N,"sha256":"…"} when the sender closes
//   node tcp-check.js client ADDR PORT BYTES [MARKER] -> sends BYTES deterministic bytes (MARKER repeated
//                                                     inside them when given), prints {"bytes":N,"sha256":"…"}
//   TCP_CHECK_PACE_MS=N (client): wait N ms after each 64 KiB, so a transfer lasts long enough to break something under it
//   TCP_CHECK_PROGRESS=1 (server): also prints when the first and last bytes came (ms after accept), the longest gap
//                         between two arrivals and every gap over TCP_CHECK_GAP_MS (default 250; at most 100 listed)
//   TCP_CHECK_DEADLINE_S=N: give up after N s (default 120)

import net from 'node:net';
import { createHash } from 'node:crypto';

const [mode, addr, portStr, bytesStr, marker] = process.argv.slice(2);
const port = Number(portStr);
const deadline = setTimeout(() => {
  process.stderr.write('tcp-check: timed out\n');
  process.exit(2);
}, Number(process.env['TCP_CHECK_DEADLINE_S'] ?? 120) * 1000);

function done(bytes: number, hash: string, extra: Record<string, unknown> = {}): void {
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify({ bytes, sha256: hash, ...extra }) + '\n');
}

if (mode === 'server') {
  const server = net.createServer((sock) => {
    const h = createHash('sha256');
    let n = 0;
    const progress = process.env['TCP_CHECK_PROGRESS'] === '1';
    const gapMin = Number(process.env['TCP_CHECK_GAP_MS'] ?? 250);
    const t0 = performance.now();
    let first = -1;
    let last = -1;
    let maxGap = 0;
    const gaps: [number, number][] = [];
    sock.on('data', (c: Buffer) => {
      h.update(c);
      n += c.length;
      if (!progress) return;
      const now = performance.now() - t0;
      if (first < 0) first = now;
      else {
        const gap = now - last;
        if (gap > maxGap) maxGap = gap;
        if (gap > gapMin && gaps.length < 100) gaps.push([Math.round(last), Math.round(gap)]);
      }
      last = now;
    });
    sock.on('end', () => {
      done(n, h.digest('hex'), progress ? { firstMs: Math.round(first), lastMs: Math.round(last), maxGapMs: Math.round(maxGap), gaps } : {});
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
  const pace = Number(process.env['TCP_CHECK_PACE_MS'] ?? 0);
  const sock = net.connect({ host: addr!, port }, () => {
    const pump = (): void => {
      while (sent < total) {
        const piece = chunk.subarray(0, Math.min(chunk.length, total - sent));
        h.update(piece);
        sent += piece.length;
        if (!sock.write(piece)) return void sock.once('drain', pump);
        if (pace > 0 && sent < total) return void setTimeout(pump, pace);
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
