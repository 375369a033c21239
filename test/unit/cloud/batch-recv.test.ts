// The cloud's batched receive (UdpBatchReader under NmsTransport and TrsTransport) on real loopback sockets. Bursts
// are queued on the socket before it reads (the senders send synchronously through the addon on their dgram sockets'
// fds), so the first datagram comes through dgram's 'message' event and the rest through recvmmsg. Checked: every
// datagram of a burst from many IPv4 and IPv6 sources is answered to its own source with its own bytes (the service
// reads them after an await, so a batch sharing or reusing its receive buffer would answer wrongly); sources are
// written as dgram writes them (a link-local one with its interface name: root, two namespaces over a veth pair);
// the 'probe' variant; an IPv4-only socket; a cut datagram is dropped and counted, an empty one handed on, a throwing
// handler counted and the rest served; at most the per-turn budget is drained before the event loop gets its turn;
// port 0 inside a burst (root: raw socket); plain dgram without the addon. The TRS: a burst sent back to each source
// with its own bytes, sources in the socket's raw form, a throwing handler counted.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import type { NmsService } from '../../../src/cloud/nms/service.js';
import { NmsTransport } from '../../../src/cloud/nms/transport.js';
import type { TrsService } from '../../../src/cloud/trs/service.js';
import { TrsTransport } from '../../../src/cloud/trs/transport.js';
import { dgramFd, UdpBatchReader } from '../../../src/cloud/udp-reader.js';
import { loadNativeAddon } from '../../../src/native/addon.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { parseIp } from '../../../src/protocol/ip.js';
import { Counters } from '../../../src/util/counters.js';
import { silentLogger } from '../../../src/util/log.js';
import { have } from '../../harness/requires.js';

const native = loadNativeAddon();
const nativeOnly = { skip: native ? false : 'no addon' };

/** Stands in for NmsService: answers 're:' + the datagram, read after an await as the real service does. */
class EchoService {
  readonly counters = new Counters();
  readonly seen: { from: Endpoint; via: string; len: number }[] = [];
  async handle(msg: Buffer, from: Endpoint, via: 'main' | 'probe' = 'main'): Promise<Buffer | null> {
    this.seen.push({ from, via, len: msg.length });
    await new Promise((r) => setImmediate(r));
    if (msg.toString('latin1').startsWith('throw')) throw new Error('handler failure (test)');
    return Buffer.concat([Buffer.from('re:'), msg]);
  }
}

async function bound(type: 'udp4' | 'udp6', address: string): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type, ipv6Only: type === 'udp6' && address !== '::', recvBufferSize: 4 << 20 });
  await new Promise<void>((r) => s.bind({ address, port: 0 }, () => r()));
  return s;
}

/** Sends `payload` from socket `s` to address:port at once (sendto through the addon, not dgram's queue). */
function sendNow(s: dgram.Socket, payload: Buffer, address: string, port: number): void {
  const fam = s.address().family;
  const a = parseIp(address)!;
  // A dual-stack udp6 socket sends to IPv4 as ::ffff:a.b.c.d.
  const addr = fam === 'IPv6' && a.length === 4 ? Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]), a]) : a;
  const r = native!.udpSend(dgramFd(s), payload, 0, payload.length, addr, port);
  assert.equal(r, payload.length, `sendto: ${r}`);
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
}

/** Collects what each socket receives. */
function collect(socks: dgram.Socket[]): Map<dgram.Socket, Buffer[]> {
  const got = new Map<dgram.Socket, Buffer[]>();
  for (const s of socks) {
    got.set(s, []);
    s.on('message', (m) => got.get(s)!.push(m));
  }
  return got;
}

describe('NMS batched receive', () => {
  test('a burst from many IPv4 and IPv6 sources: each datagram answered to its own source, bytes intact', nativeOnly, async () => {
    const svc = new EchoService();
    const nms = new NmsTransport({ host: '::', port: 0 }, svc as unknown as NmsService, silentLogger);
    const { port } = await nms.start();
    const senders: dgram.Socket[] = [];
    for (let i = 0; i < 24; i++) senders.push(await bound('udp4', `127.0.0.${1 + (i % 12)}`));
    for (let i = 0; i < 8; i++) senders.push(await bound('udp6', '::1'));
    const got = collect(senders);
    const sent = new Map<dgram.Socket, string[]>();
    try {
      const PER = 20;
      for (let k = 0; k < PER; k++) {
        for (const [j, s] of senders.entries()) {
          const payload = Buffer.concat([Buffer.from(`${j}:${k}:`), randomBytes(1 + ((j * 37 + k * 101) % 1200))]);
          sendNow(s, payload, s.address().family === 'IPv6' ? '::1' : '127.0.0.1', port);
          sent.set(s, [...(sent.get(s) ?? []), Buffer.concat([Buffer.from('re:'), payload]).toString('hex')]);
        }
      }
      const total = PER * senders.length;
      await until(() => [...got.values()].reduce((a, l) => a + l.length, 0) >= total);
      for (const s of senders) {
        assert.deepEqual(got.get(s)!.map((m) => m.toString('hex')).sort(), sent.get(s)!.sort(), `replies to ${s.address().address}:${s.address().port}`);
      }
      assert.equal(svc.seen.length, total);
      // The service sees IPv4 sources unmapped and each source's own port (an IPv4 and an IPv6 sender may share a
      // port number: the pair is what names a sender).
      const sources = new Set(senders.map((s) => `${s.address().address} ${s.address().port}`));
      for (const { from, via } of svc.seen) {
        assert.ok(sources.has(`${from.address} ${from.port}`), `source ${from.address} port ${from.port} is one of the senders`);
        assert.equal(via, 'main');
      }
      assert.equal(new Set(svc.seen.map((x) => `${x.from.address} ${x.from.port}`)).size, senders.length, 'every sender seen as itself');
      const { batches, drained } = nms.recvBatches;
      assert.ok(drained >= total / 2, `most of the burst read in batches (${drained} of ${total})`);
      assert.ok(batches > 0 && batches * 8 <= drained, `several datagrams per recvmmsg (${drained} in ${batches})`);
      assert.equal(svc.counters.get('refused.truncated'), 0);
    } finally {
      await nms.stop();
      for (const s of senders) s.close();
    }
  });

  test("the 'probe' socket hands its burst on as 'probe'; an IPv4-only NMS socket", nativeOnly, async () => {
    for (const [host, via] of [['::', 'probe'], ['127.0.0.1', 'main']] as const) {
      const svc = new EchoService();
      const nms = new NmsTransport({ host, port: 0, via }, svc as unknown as NmsService, silentLogger);
      const { port } = await nms.start();
      const senders = [await bound('udp4', '127.0.0.3'), await bound('udp4', '127.0.0.4')];
      const got = collect(senders);
      try {
        for (let k = 0; k < 10; k++) for (const s of senders) sendNow(s, Buffer.from(`${host} ${k}`), '127.0.0.1', port);
        await until(() => got.get(senders[0]!)!.length + got.get(senders[1]!)!.length >= 20);
        for (const s of senders) assert.equal(got.get(s)!.length, 10);
        assert.deepEqual(new Set(svc.seen.map((x) => x.via)), new Set([via]));
        assert.deepEqual(new Set(svc.seen.map((x) => x.from.address)), new Set(['127.0.0.3', '127.0.0.4']));
        assert.ok(nms.recvBatches.drained > 0, host);
      } finally {
        await nms.stop();
        for (const s of senders) s.close();
      }
    }
  });

  test('sources are written exactly as dgram writes them (dual-stack and IPv4 sockets)', nativeOnly, async () => {
    for (const [type, host] of [['udp6', '::'], ['udp4', '127.0.0.1']] as const) {
      const plain = await bound(type, host);
      const batched = await bound(type, host);
      const viaDgram: string[] = [];
      const viaReader: string[] = [];
      plain.on('message', (m, r) => viaDgram.push(`${r.address}|${r.port}|${m.toString()}`));
      const reader = UdpBatchReader.create(batched, { v6: type === 'udp6', handler: (m, a, p) => viaReader.push(`${a}|${p}|${m.toString()}`), onTruncated: () => assert.fail('cut'), onError: (e) => assert.fail(String(e)) })!;
      batched.on('message', (m, r) => reader.message(m, r.address, r.port));
      const senders = [await bound('udp4', '127.0.0.1'), await bound('udp4', '127.0.0.9'), await bound('udp4', '127.1.2.3')];
      if (type === 'udp6') senders.push(await bound('udp6', '::1'), await bound('udp6', '::'));
      try {
        for (let k = 0; k < 30; k++) {
          for (const s of senders) {
            const to = s.address().family === 'IPv6' ? '::1' : '127.0.0.1';
            sendNow(s, Buffer.from(`m${k}`), to, plain.address().port);
            sendNow(s, Buffer.from(`m${k}`), to, batched.address().port);
          }
        }
        const n = 30 * senders.length;
        await until(() => viaDgram.length >= n && viaReader.length >= n);
        assert.equal(viaReader.length, n);
        assert.deepEqual([...viaReader].sort(), [...viaDgram].sort());
        assert.ok(reader.drained > 0);
      } finally {
        reader.close();
        for (const s of [plain, batched, ...senders]) s.close();
      }
    }
  });

  test('a link-local IPv6 source is written with its interface name, as dgram writes it (root: two namespaces)', { skip: nativeOnly.skip || (process.getuid?.() !== 0 ? 'namespaces need root' : !have('ip') ? 'needs iproute2' : false) }, async () => {
    const tag = `nrecv${(process.pid % 46656).toString(36)}`;
    const [nsA, nsB] = [`${tag}a`, `${tag}b`];
    const dir = mkdtempSync(join(tmpdir(), 'cyp-batch-recv-'));
    const reader = new URL('../../../src/cloud/udp-reader.js', import.meta.url).href;
    // In nsA: a plain dgram socket and a batched one; 'hold' blocks the loop so that what is sent meanwhile queues up.
    writeFileSync(
      join(dir, 'recv.mjs'),
      `import dgram from 'node:dgram';
      import { createInterface } from 'node:readline';
      const { UdpBatchReader } = await import(${JSON.stringify(reader)});
      const mk = async () => { const s = dgram.createSocket({ type: 'udp6', ipv6Only: false }); await new Promise((r) => s.bind(0, '::', r)); return s; };
      const plain = await mk(), batched = await mk();
      const a = [], b = [];
      plain.on('message', (m, r) => a.push(r.address + '|' + r.port + '|' + m));
      const rd = UdpBatchReader.create(batched, { v6: true, handler: (m, addr, port) => b.push(addr + '|' + port + '|' + m), onTruncated: () => {}, onError: () => {} });
      batched.on('message', (m, r) => rd.message(m, r.address, r.port));
      console.log(JSON.stringify([plain.address().port, batched.address().port]));
      for await (const line of createInterface({ input: process.stdin })) {
        if (line === 'hold') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3000);
        if (line === 'report') setTimeout(() => { console.log(JSON.stringify({ plain: a.sort(), batched: b.sort(), drained: rd.drained })); process.exit(0); }, 300);
      }
      `,
    );
    const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
    let child: ReturnType<typeof spawn> | null = null;
    try {
      ip('netns', 'add', nsA);
      ip('netns', 'add', nsB);
      ip('link', 'add', `${tag}x`, 'netns', nsA, 'type', 'veth', 'peer', 'name', `${tag}y`, 'netns', nsB);
      ip('-n', nsA, 'addr', 'add', 'fe80::a/64', 'dev', `${tag}x`, 'nodad');
      ip('-n', nsB, 'addr', 'add', 'fe80::b/64', 'dev', `${tag}y`, 'nodad');
      ip('-n', nsA, 'link', 'set', `${tag}x`, 'up');
      ip('-n', nsB, 'link', 'set', `${tag}y`, 'up');
      const c = (child = spawn('ip', ['netns', 'exec', nsA, process.execPath, join(dir, 'recv.mjs')], { stdio: ['pipe', 'pipe', 'inherit'] }));
      const lines: string[] = [];
      let partial = '';
      c.stdout!.on('data', (d: Buffer) => {
        const parts = (partial + d.toString()).split('\n');
        partial = parts.pop()!;
        lines.push(...parts);
      });
      await until(() => lines.length >= 1, 10_000);
      const ports = JSON.parse(lines[0]!) as number[];
      c.stdin!.write('hold\n');
      await new Promise((r) => setTimeout(r, 100));
      const send = `const s = require('node:dgram').createSocket('udp6'); let n = 0;
        for (let k = 0; k < 40; k++) for (const p of ${JSON.stringify(ports)}) s.send('m' + k, p, 'fe80::a%${tag}y', () => { if (++n === ${2 * 40}) s.close(); });`;
      execFileSync('ip', ['netns', 'exec', nsB, process.execPath, '-e', send], { timeout: 10_000 });
      c.stdin!.write('report\n');
      await until(() => lines.length >= 2, 10_000);
      const res = JSON.parse(lines[1]!) as { plain: string[]; batched: string[]; drained: number };
      assert.equal(res.plain.length, 40);
      // fe80::b, or the address the kernel made for the interface: either way with nsA's interface name.
      assert.match(res.plain[0]!, new RegExp(`^fe80::[0-9a-f:]+%${tag}x\\|`), res.plain[0]);
      assert.deepEqual(res.batched, res.plain);
      assert.ok(res.drained > 0, 'read in batches');
    } finally {
      child?.kill();
      for (const ns of [nsA, nsB]) {
        try {
          execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
        } catch {
          // not created
        }
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a cut datagram is dropped and counted, an empty one handed on, a throwing handler counted; the rest served', nativeOnly, async () => {
    const sock = await bound('udp6', '::');
    const handed: Buffer[] = [];
    let cut = 0;
    let errors = 0;
    const reader = UdpBatchReader.create(sock, {
      v6: true,
      slotBytes: 512,
      handler: (m) => {
        if (m.toString() === 'throw') throw new Error('handler failure (test)');
        handed.push(m);
      },
      onTruncated: () => cut++,
      onError: () => errors++,
    })!;
    sock.on('message', (m, r) => reader.message(m, r.address, r.port));
    const tx = await bound('udp4', '127.0.0.1');
    try {
      const burst = [Buffer.from('first'), randomBytes(513), Buffer.alloc(0), Buffer.from('throw'), randomBytes(512), randomBytes(60000), Buffer.from('last')];
      for (let k = 0; k < 10; k++) burst.push(randomBytes(4000));
      burst.push(Buffer.from('after the big ones'));
      for (const d of burst) sendNow(tx, d, '127.0.0.1', sock.address().port);
      const want = burst.filter((d) => d.length <= 512 && d.toString() !== 'throw');
      await until(() => handed.length >= want.length && cut >= 12);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(cut, 12, 'the 513-, 60 000- and ten 4 000-byte datagrams');
      assert.equal(errors, 1);
      assert.deepEqual(handed.map((m) => m.toString('hex')), want.map((m) => m.toString('hex')));
    } finally {
      reader.close();
      sock.close();
      tx.close();
    }
  });

  test('at most the per-turn budget is drained before the event loop moves on; all is served', nativeOnly, async () => {
    const sock = await bound('udp6', '::');
    let handled = 0;
    const reader = UdpBatchReader.create(sock, { v6: true, perTurn: 64, handler: () => handled++, onTruncated: () => assert.fail('cut'), onError: (e) => assert.fail(String(e)) })!;
    sock.on('message', (m, r) => reader.message(m, r.address, r.port));
    const tx = await bound('udp4', '127.0.0.1');
    try {
      const N = 400;
      for (let k = 0; k < N; k++) sendNow(tx, Buffer.from(`d${k}`), '127.0.0.1', sock.address().port);
      let atImmediate = -1;
      setImmediate(() => (atImmediate = handled));
      await until(() => handled >= N);
      assert.equal(handled, N);
      // One poll phase: dgram's first datagram, the budget, then libuv's own reads (32 per poll); not the whole queue.
      assert.ok(atImmediate >= 0 && atImmediate <= 1 + 64 + 33, `handled before the check phase: ${atImmediate}`);
    } finally {
      reader.close();
      sock.close();
      tx.close();
    }
  });

  test('datagrams from port 0 inside a burst are refused and counted, the others answered', { skip: nativeOnly.skip || (process.getuid?.() !== 0 ? 'a raw socket needs root' : !have('python3') ? 'needs python3' : false) }, async () => {
    const svc = new EchoService();
    const nms = new NmsTransport({ host: '::', port: 0 }, svc as unknown as NmsService, silentLogger);
    const { port } = await nms.start();
    const rx = await bound('udp4', '127.0.0.1');
    const got = collect([rx]);
    try {
      // From rx's port and from port 0, alternating; python runs while this process waits, so all of it is queued.
      const script = [
        'import socket,struct,sys',
        'dport=int(sys.argv[1]); sport=int(sys.argv[2])',
        's=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_RAW)',
        'def send(src,p):',
        '  udp=struct.pack("!HHHH",src,dport,8+len(p),0)+p',
        '  ip=struct.pack("!BBHHHBBH4s4s",0x45,0,20+len(udp),0,0,64,17,0,socket.inet_aton("127.0.0.1"),socket.inet_aton("127.0.0.1"))',
        '  s.sendto(ip+udp,("127.0.0.1",0))',
        'for k in range(20): send(sport if k%2==0 else 0, b"k%d" % k)',
      ].join('\n');
      execFileSync('python3', ['-c', script, String(port), String(rx.address().port)], { timeout: 10_000 });
      await until(() => got.get(rx)!.length >= 10 && svc.counters.get('refused.port0') >= 10);
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(got.get(rx)!.map((m) => m.toString()).sort(), Array.from({ length: 10 }, (_, i) => `re:k${2 * i}`).sort());
      assert.equal(svc.counters.get('refused.port0'), 10);
      assert.ok(svc.seen.every((x) => x.from.port !== 0), 'port 0 never reaches the service');
      assert.ok(nms.recvBatches.drained > 0, 'the burst went through the batch reader');
    } finally {
      await nms.stop();
      rx.close();
    }
  });

  test('a handler that rejects is counted; the other datagrams of the batch are answered', nativeOnly, async () => {
    const svc = new EchoService();
    const nms = new NmsTransport({ host: '::', port: 0 }, svc as unknown as NmsService, silentLogger);
    const { port } = await nms.start();
    const tx = await bound('udp6', '::1');
    const got = collect([tx]);
    try {
      for (const m of ['a', 'throw', 'b', 'throw', 'c']) sendNow(tx, Buffer.from(m), '::1', port);
      await until(() => got.get(tx)!.length >= 3 && svc.counters.get('error.handler') >= 2);
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(got.get(tx)!.map((m) => m.toString()).sort(), ['re:a', 're:b', 're:c']);
      assert.equal(svc.counters.get('error.handler'), 2);
    } finally {
      await nms.stop();
      tx.close();
    }
  });

  test('without the addon the NMS receives through plain dgram events', async () => {
    const transport = new URL('../../../src/cloud/nms/transport.js', import.meta.url).href;
    const counters = new URL('../../../src/util/counters.js', import.meta.url).href;
    const log = new URL('../../../src/util/log.js', import.meta.url).href;
    const w = new Worker(
      `
      const { parentPort } = await import('node:worker_threads');
      const dgram = (await import('node:dgram')).default;
      const { NmsTransport } = await import(${JSON.stringify(transport)});
      const { Counters } = await import(${JSON.stringify(counters)});
      const { silentLogger } = await import(${JSON.stringify(log)});
      const svc = { counters: new Counters(), handle: async (m, from) => Buffer.concat([Buffer.from(from.address + ' '), m]) };
      const nms = new NmsTransport({ host: '::', port: 0 }, svc, silentLogger);
      const { port } = await nms.start();
      const c = dgram.createSocket('udp4');
      await new Promise((r) => c.bind(0, '127.0.0.1', r));
      const replies = [];
      c.on('message', (m) => replies.push(m.toString()));
      for (let k = 0; k < 5; k++) c.send('x' + k, port, '127.0.0.1');
      const end = Date.now() + 5000;
      while (replies.length < 5 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      parentPort.postMessage({ replies: replies.sort(), batches: nms.recvBatches });
      c.close();
      await nms.stop();
      `,
      { eval: true, env: { ...process.env, CYPHONIC_NATIVE: '/nonexistent/cyphonic_native.node' } },
    );
    const res = await new Promise<{ replies: string[]; batches: { batches: number; drained: number } }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    assert.deepEqual(res.replies, ['127.0.0.1 x0', '127.0.0.1 x1', '127.0.0.1 x2', '127.0.0.1 x3', '127.0.0.1 x4']);
    assert.deepEqual(res.batches, { batches: 0, drained: 0 }, 'no batch reader without the addon');
  });
});

describe('TRS batched receive', () => {
  test('a burst from IPv4 and IPv6 sources: each forwarded back to its source with its own bytes; a throwing handler counted', nativeOnly, async () => {
    let transport: TrsTransport | null = null;
    const seen: string[] = [];
    // Stands in for TrsService: sends each datagram back as it is (the socket's send keeps the Buffer until it goes).
    const svc = {
      counters: new Counters(),
      handle(msg: Buffer, address: string, port: number): void {
        seen.push(`${address}|${port}`);
        if (msg.toString('latin1').startsWith('throw')) throw new Error('handler failure (test)');
        transport!.send(msg, port, address);
      },
    };
    transport = new TrsTransport({ host: '::', port: 0 }, svc as unknown as TrsService, silentLogger);
    const { port } = await transport.start();
    const senders = [await bound('udp4', '127.0.0.5'), await bound('udp4', '127.0.0.6'), await bound('udp6', '::1')];
    const got = collect(senders);
    const sent = new Map<dgram.Socket, string[]>(senders.map((s) => [s, []]));
    try {
      for (let k = 0; k < 100; k++) {
        for (const s of senders) {
          const payload = k === 50 ? Buffer.from('throw') : Buffer.concat([Buffer.from(`${k}:`), randomBytes(1 + ((k * 53) % 1400))]);
          sendNow(s, payload, s.address().family === 'IPv6' ? '::1' : '127.0.0.1', port);
          if (k !== 50) sent.get(s)!.push(payload.toString('hex'));
        }
      }
      await until(() => senders.every((s) => got.get(s)!.length >= 99) && svc.counters.get('error.handler') >= 3);
      await new Promise((r) => setTimeout(r, 50));
      for (const s of senders) assert.deepEqual(got.get(s)!.map((m) => m.toString('hex')).sort(), sent.get(s)!.sort());
      assert.equal(svc.counters.get('error.handler'), 3);
      assert.deepEqual(new Set(seen), new Set([`::ffff:127.0.0.5|${senders[0]!.address().port}`, `::ffff:127.0.0.6|${senders[1]!.address().port}`, `::1|${senders[2]!.address().port}`]));
      assert.ok(transport.recvBatches.drained >= 150, `most of the burst read in batches (${transport.recvBatches.drained})`);
    } finally {
      await transport.stop();
      for (const s of senders) s.close();
    }
  });
});
