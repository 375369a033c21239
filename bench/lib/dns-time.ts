// One DNS query timed in microseconds (dig's "Query time" ticks in 4 ms on this machine), run inside a testbed
// namespace by bench/first-contact: `node dns-time.js SERVER NAME [WARM]` first asks for WARM (untimed: it warms
// this fresh process's own socket and code path, which otherwise cost more than the answer), then times NAME; prints
// `{"us": N, "rcode": R, "answers": ["…"]}` or exits 1 when an answer is 2 s late.

import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { decodeResponse, encodeQuery } from '../../src/net/dns/codec.js';

const [server, name, warm] = process.argv.slice(2);
if (!server || !name) {
  process.stderr.write('usage: dns-time.js SERVER NAME [WARM]\n');
  process.exit(2);
}
const sock = dgram.createSocket(isIPv6(server) ? 'udp6' : 'udp4');
const timer = setTimeout(() => {
  process.stderr.write('no answer within 2 s\n');
  process.exit(1);
}, 4000);

function ask(q: string): Promise<{ us: number; msg: Buffer }> {
  return new Promise((resolve) => {
    sock.once('message', (msg) => resolve({ us: Number(process.hrtime.bigint() - t0) / 1000, msg }));
    const t0 = process.hrtime.bigint();
    sock.send(encodeQuery(q, 'A'), 53, server!);
  });
}

sock.bind(0, () => {
  void (async () => {
    if (warm) await ask(warm);
    const { us, msg } = await ask(name);
    clearTimeout(timer);
    const r = decodeResponse(msg);
    process.stdout.write(`${JSON.stringify({ us: Math.round(us), rcode: r.rcode, answers: r.answers.map((a) => a.address) })}\n`);
    sock.close();
  })();
});
