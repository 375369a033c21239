// UDP probe stream for the handover benchmark, run inside testbed namespaces.
//
//   node probe.js send ADDR PORT INTERVAL_MS SECONDS   -> one small datagram every INTERVAL_MS for SECONDS, then exits
//   node probe.js recv ADDR PORT GAP_MS                -> prints the arrival time (unix ms, fractional) of every
//                                                        datagram that follows a silence longer than GAP_MS
//
// All namespaces share the host's clock, so the bench compares these times with its own.

import dgram from 'node:dgram';

const [mode, addr, portStr, aStr, bStr] = process.argv.slice(2);
const port = Number(portStr);
const now = (): number => performance.timeOrigin + performance.now();

if (mode === 'send') {
  const interval = Math.max(1, Number(aStr));
  const until = Date.now() + Math.min(3600, Number(bStr)) * 1000;
  const sock = dgram.createSocket(addr!.includes(':') ? 'udp6' : 'udp4');
  sock.on('error', () => {}); // no route for a moment during a move: keep going
  const payload = Buffer.alloc(32);
  let n = 0;
  const t = setInterval(() => {
    if (Date.now() > until) {
      clearInterval(t);
      sock.close();
      return;
    }
    payload.writeUInt32BE(n++, 0);
    sock.send(payload, port, addr!, () => {});
  }, interval);
} else if (mode === 'recv') {
  const gap = Number(aStr);
  const sock = dgram.createSocket(addr!.includes(':') ? 'udp6' : 'udp4');
  let last = 0;
  sock.on('message', () => {
    const t = now();
    if (t - last > gap) process.stdout.write(`${t.toFixed(3)}\n`);
    last = t;
  });
  sock.bind(port, addr, () => process.stderr.write('listening\n'));
  void bStr;
} else {
  process.stderr.write('usage: probe send ADDR PORT INTERVAL_MS SECONDS | recv ADDR PORT GAP_MS\n');
  process.exit(2);
}
