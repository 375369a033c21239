// The NMS socket's own cost per datagram, without the service's work: a child process runs the real NmsTransport on
// [::] with a stand-in service (an async handle() that answers each datagram with 60 bytes through the send queue,
// or with nothing under --reply 0), and this process sends it --rate datagrams/s of 100 bytes over loopback from
// --sockets sources (127.0.0.x) for --seconds, each source in turn sending a burst of 8 (one sendmmsg). The child's
// CPU (utime + stime from /proc) is divided by the datagrams it handled. Each round runs the transport twice,
// alternated: receiving through dgram's 'message' event per datagram (CYPHONIC_NMS_RECV_BATCH=off, the receive path
// before the batch reader) and through the batch reader. Prints per run: handled/sent, CPU µs per datagram, the
// datagrams per recvmmsg. Method and figures: docs/PERFORMANCE.md "Cloud", fifth round.
//
// usage: node dist/bench/nms-recv.js [--rate PER_S (40000)] [--seconds S (5)] [--sockets K (64)] [--rounds R (3)]
//   [--reply 0|1 (1)]

import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { NmsTransport } from '../src/cloud/nms/transport.js';
import type { NmsService } from '../src/cloud/nms/service.js';
import { dgramFd } from '../src/cloud/udp-reader.js';
import { loadNativeAddon } from '../src/native/addon.js';
import { Counters } from '../src/util/counters.js';
import { silentLogger } from '../src/util/log.js';
import { intArg } from './lib/args.js';

const TICK = 100; // USER_HZ
/** Datagrams one source sends in one sendmmsg (what a busy node population looks like at the NMS: bursts). */
const BURST = 8;

function procCpu(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / TICK;
}

/** The child: an NMS transport with a stand-in service; prints its port, then its counts on 'report'. */
async function serve(reply: boolean): Promise<void> {
  let handled = 0;
  const answer = Buffer.alloc(60, 0x42);
  const svc = {
    counters: new Counters(),
    handle: async (): Promise<Buffer | null> => {
      handled++;
      return reply ? answer : null;
    },
  };
  const t = new NmsTransport({ host: '::', port: 0 }, svc as unknown as NmsService, silentLogger);
  const { port } = await t.start();
  process.stdout.write(JSON.stringify({ port }) + '\n');
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'count') process.stdout.write(JSON.stringify({ handled }) + '\n');
    if (line === 'report') {
      process.stdout.write(JSON.stringify({ handled, ...t.recvBatches }) + '\n');
      await t.stop();
      process.exit(0);
    }
  }
}

interface Run {
  sent: number;
  handled: number;
  cpuUs: number;
  batches: number;
  drained: number;
}

async function run(batch: boolean, o: { rate: number; seconds: number; sockets: number; reply: boolean }): Promise<Run> {
  const native = loadNativeAddon();
  if (!native) throw new Error('nms-recv: the native addon is needed for the sender');
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve', o.reply ? '1' : '0'], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, CYPHONIC_NMS_RECV_BATCH: batch ? 'on' : 'off' },
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, number>> => JSON.parse(((await lines.next()).value as string) ?? '{}') as Record<string, number>;
  const port = (await next())['port']!;
  const socks: dgram.Socket[] = [];
  for (let i = 0; i < o.sockets; i++) {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, `127.0.0.${1 + (i % 250)}`, () => r()));
    socks.push(s);
  }
  const fds = socks.map((s) => dgramFd(s));
  const to = Buffer.from([127, 0, 0, 1]);
  const burst = Buffer.alloc(BURST * 100, 0x5a);
  const offs = Uint32Array.from({ length: BURST }, (_, i) => i * 100);
  const lens = new Uint32Array(BURST).fill(100);
  const cpu0 = procCpu(child.pid!);
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const t0 = performance.now();
  let sent = 0;
  let k = 0;
  for (;;) {
    const now = performance.now() - t0;
    if (now >= o.seconds * 1000) break;
    const due = Math.floor((now * o.rate) / 1000);
    if (sent >= due) {
      Atomics.wait(nap, 0, 0, 0.2);
      continue;
    }
    // Bursts of up to BURST from one source at a time (one sendmmsg each), the sources in turn.
    for (let left = Math.min(due - sent, 1024); left > 0; ) {
      const n = Math.min(left, BURST);
      const r = native.udpSendMany(fds[k++ % fds.length]!, burst, offs, lens, n, to, port, false);
      left -= n;
      if (r > 0) sent += r;
    }
  }
  // Let the child finish what is queued (its count stops moving), then read its CPU.
  let last = -1;
  for (;;) {
    await new Promise((r) => setTimeout(r, 200));
    child.stdin!.write('count\n');
    const handled = (await next())['handled']!;
    if (handled === last || handled >= sent) break;
    last = handled;
  }
  const cpuUs = (procCpu(child.pid!) - cpu0) * 1e6;
  child.stdin!.write('report\n');
  const r = await next();
  for (const s of socks) s.close();
  await new Promise((res) => child.once('exit', res));
  return { sent, handled: r['handled']!, cpuUs, batches: r['batches']!, drained: r['drained']! };
}

async function main(): Promise<void> {
  const o = { rate: intArg('--rate', 40_000), seconds: intArg('--seconds', 5, 1, 600), sockets: intArg('--sockets', 64, 1, 1000), reply: intArg('--reply', 1, 0, 1) === 1 };
  const rounds = intArg('--rounds', 3, 1, 100);
  console.log(`NMS socket cost: ${o.rate} datagrams/s of 100 bytes for ${o.seconds} s from ${o.sockets} loopback sources, ${o.reply ? '60-byte replies' : 'no replies'}; load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  console.log('run            handled/sent     CPU µs/datagram  datagrams per recvmmsg (share batched)');
  for (let i = 1; i <= rounds; i++) {
    for (const batch of [false, true]) {
      const r = await run(batch, o);
      const per = r.handled > 0 ? r.cpuUs / r.handled : NaN;
      const share = r.handled > 0 ? ((100 * r.drained) / r.handled).toFixed(0) : '0';
      console.log(`${(batch ? 'batch' : 'dgram') + ' ' + i}`.padEnd(15) + `${r.handled}/${r.sent}`.padEnd(17) + per.toFixed(2).padEnd(17) + (r.batches ? `${(r.drained / r.batches).toFixed(1)} (${share} %)` : '-'));
    }
  }
  console.log(`load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
}

if (process.argv[2] === '--serve') await serve(process.argv[3] === '1');
else await main();
