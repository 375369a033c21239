// Unit tests for the overlay DNS resolver service: overlay answers, forwarding through a fake upstream, hostile traffic.
// Everything runs on 127.0.0.1 with ephemeral ports; dig is exercised too when it is installed.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeQuery, decodeResponse, encodeQuery, encodeResponse, type DnsResponse } from '../../../src/net/dns/codec.js';
import { createResolver, readSystemUpstreams, type Resolver, type ResolverInit } from '../../../src/net/dns/resolver.js';
import { silentLogger } from '../../../src/util/log.js';

const NODES: Record<string, { vip4: string | null; vip6: string | null }> = {
  alpha: { vip4: '100.64.0.5', vip6: 'fd00:1:2::5' },
  beta: { vip4: '100.64.0.6', vip6: null },
  'db.site': { vip4: null, vip6: 'fd00:1:2::7' },
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function udpSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return s;
}

/** Sends `query` and resolves with the first response carrying the same id (others are ignored). */
async function ask(port: number, query: Buffer, timeoutMs = 1500, sock?: dgram.Socket): Promise<DnsResponse> {
  const s = sock ?? (await udpSocket());
  const id = query.readUInt16BE(0);
  try {
    return await new Promise<DnsResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        s.off('message', onMsg);
        reject(new Error('no answer'));
      }, timeoutMs);
      const onMsg = (msg: Buffer): void => {
        try {
          const r = decodeResponse(msg);
          if (r.id !== id || r.question === null) return;
          clearTimeout(timer);
          s.off('message', onMsg);
          resolve(r);
        } catch {
          // not ours
        }
      };
      s.on('message', onMsg);
      s.send(query, port, '127.0.0.1');
    });
  } finally {
    if (!sock) s.close();
  }
}

async function startResolver(init: Partial<ResolverInit> = {}, onQuery?: (n: string) => void): Promise<{ r: Resolver; port: number; lookups: string[] }> {
  const lookups: string[] = [];
  const r = createResolver(
    { listen: [{ address: '127.0.0.1', port: 0 }], domain: 'Cyphonic.Internal.', upstream: [], ...init },
    {
      lookup: async (name) => {
        lookups.push(name);
        if (name === 'slow') await sleep(50);
        if (name === 'broken') throw new Error('directory down');
        if (name === 'weird') return { vip4: 'not-an-ip', vip6: null };
        return NODES[name] ?? null;
      },
      ...(onQuery ? { onQuery } : {}),
      logger: silentLogger,
    },
  );
  await r.start();
  return { r, port: r.addresses()[0]!.port, lookups };
}

describe('overlay answers', () => {
  let r: Resolver;
  let port: number;
  let lookups: string[];
  const seen: string[] = [];
  before(async () => {
    ({ r, port, lookups } = await startResolver({}, (n) => seen.push(n)));
  });
  after(() => r.stop());

  test('A and AAAA from the lookup, authoritative, TTL 5', async () => {
    const a = await ask(port, encodeQuery('alpha.cyphonic.internal', 'A', 11));
    assert.equal(a.rcode, 0);
    assert.equal(a.flags.aa, true);
    assert.equal(a.flags.ra, true);
    assert.deepEqual(a.answers, [{ name: 'alpha.cyphonic.internal', type: 'A', address: '100.64.0.5', ttl: 5 }]);
    const aaaa = await ask(port, encodeQuery('alpha.cyphonic.internal.', 'AAAA', 12));
    assert.deepEqual(aaaa.answers.map((x) => x.address), ['fd00:1:2::5']);
    const multi = await ask(port, encodeQuery('db.site.cyphonic.internal', 'AAAA', 13));
    assert.deepEqual(multi.answers.map((x) => x.address), ['fd00:1:2::7']);
    assert.ok(lookups.includes('db.site'));
  });

  test('case-insensitive names, question echoed in the client case', async () => {
    const q = encodeQuery('ALPHA.Cyphonic.INTERNAL', 'A', 14);
    const s = await udpSocket();
    const raw = new Promise<Buffer>((res) => s.once('message', (m) => res(m)));
    s.send(q, port, '127.0.0.1');
    const buf = await raw;
    s.close();
    assert.ok(buf.toString('latin1').includes('ALPHA'));
    assert.deepEqual(decodeResponse(buf).answers.map((x) => x.address), ['100.64.0.5']);
  });

  test('NODATA for a missing family and for other qtypes; NXDOMAIN for unknown names', async () => {
    const noV6 = await ask(port, encodeQuery('beta.cyphonic.internal', 'AAAA', 21));
    assert.equal(noV6.rcode, 0);
    assert.equal(noV6.flags.aa, true);
    assert.deepEqual(noV6.answers, []);
    const mx = await ask(port, encodeQuery('alpha.cyphonic.internal', 15, 22));
    assert.equal(mx.rcode, 0);
    assert.deepEqual(mx.answers, []);
    const nx = await ask(port, encodeQuery('gamma.cyphonic.internal', 'A', 23));
    assert.equal(nx.rcode, 3);
    assert.equal(nx.flags.aa, true);
    const apex = await ask(port, encodeQuery('cyphonic.internal', 'A', 24));
    assert.equal(apex.rcode, 0);
    assert.deepEqual(apex.answers, []);
    assert.ok(r.counters.get('overlay.nxdomain') >= 1);
    assert.ok(r.counters.get('overlay.nodata') >= 3);
  });

  test('onQuery is called for overlay A/AAAA queries only', async () => {
    seen.length = 0;
    await ask(port, encodeQuery('alpha.cyphonic.internal', 'A', 31));
    await ask(port, encodeQuery('gamma.cyphonic.internal', 'AAAA', 32));
    await ask(port, encodeQuery('alpha.cyphonic.internal', 16, 33));
    await ask(port, encodeQuery('cyphonic.internal', 'A', 34));
    assert.deepEqual(seen, ['alpha', 'gamma']);
  });

  test('lookup failures and bad lookup data give SERVFAIL; non-IN class REFUSED; EDNS version 1 BADVERS', async () => {
    assert.equal((await ask(port, encodeQuery('broken.cyphonic.internal', 'A', 41))).rcode, 2);
    assert.equal((await ask(port, encodeQuery('weird.cyphonic.internal', 'A', 42))).rcode, 2);
    assert.equal((await ask(port, encodeQuery('alpha.cyphonic.internal', 'A', 43, { qclass: 3 }))).rcode, 5);
    const q = encodeQuery('alpha.cyphonic.internal', 'A', 44, { udpSize: 1232 });
    q[q.length - 5] = 1; // OPT version
    const bad = await ask(port, q);
    assert.equal(bad.rcode, 0);
    assert.equal(bad.answers.length, 0);
    assert.equal(r.counters.get('refused.edns-version'), 1);
  });

  test('names with escaped bytes under the domain are NXDOMAIN without a lookup', async () => {
    const before = lookups.length;
    const q = Buffer.from([0, 51, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 0x61, 0x2e, 0x62, 8, ...Buffer.from('cyphonic'), 8, ...Buffer.from('internal'), 0, 0, 1, 0, 1]);
    const r2 = await ask(port, q);
    assert.equal(r2.rcode, 3);
    assert.equal(lookups.length, before);
  });

  test('2000 garbage datagrams, then a good query is still answered; FORMERR and NOTIMP where the header is readable', async () => {
    const s = await udpSocket();
    try {
      let seed = 7;
      const rnd = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
      const received: Buffer[] = [];
      s.on('message', (m) => received.push(m));
      for (let i = 0; i < 2000; i++) {
        const buf = Buffer.alloc(Math.floor(rnd() * 300));
        for (let j = 0; j < buf.length; j++) buf[j] = Math.floor(rnd() * 256);
        if (buf.length >= 12 && i % 2 === 0) buf[2]! &= 0x87; // query, opcode 0
        s.send(buf, port, '127.0.0.1');
        if (i % 50 === 49) await sleep(2); // paced: a burst beyond the socket buffer is dropped by the kernel
      }
      await sleep(20);
      const good = await ask(port, encodeQuery('alpha.cyphonic.internal', 'A', 0xabcd), 3000, s);
      assert.deepEqual(good.answers.map((x) => x.address), ['100.64.0.5']);
      await sleep(20);
      received.length = 0;
      // a question whose name is a pointer to itself: header readable, so FORMERR (with no question)
      s.send(Buffer.from([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]), port, '127.0.0.1');
      await sleep(50);
      const fe = received.map((m) => decodeResponse(m)).find((m) => m.id === 0x1234);
      assert.equal(fe?.rcode, 1);
      s.send(Buffer.from([0x55, 0x66, 0x28, 0, 0, 1, 0, 0, 0, 0, 0, 0]), port, '127.0.0.1'); // UPDATE
      await sleep(50);
      assert.equal(received.map((m) => decodeResponse(m)).find((m) => m.id === 0x5566)?.rcode, 4);
      assert.ok(r.counters.get('refused.decode') > 500, JSON.stringify(r.counters));
    } finally {
      s.close();
    }
  });

  test('dig resolves alpha.cyphonic.internal', async (t) => {
    const out = await new Promise<string | null>((resolve) => {
      execFile('dig', ['@127.0.0.1', '-p', String(port), 'alpha.cyphonic.internal', 'A', '+short', '+time=2', '+tries=1'], (err, stdout) => {
        if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') resolve(null);
        else if (err) resolve(`error: ${err.message}`);
        else resolve(stdout);
      });
    });
    if (out === null) {
      t.skip('dig is not installed');
      return;
    }
    assert.equal(out.trim(), '100.64.0.5');
  });
});

/** A fake upstream: answers A queries with `answer` unless told to drop or to spoof first. */
async function fakeUpstream(answer: string) {
  const sock = await udpSocket();
  const spoofer = await udpSocket();
  const state = { mode: 'answer' as 'answer' | 'drop' | 'spoof' | 'wrong-id', ids: [] as number[], ports: [] as number[], seen: 0 };
  sock.on('message', (msg, rinfo) => {
    state.seen++;
    state.ports.push(rinfo.port);
    const q = decodeQuery(msg);
    state.ids.push(q.id);
    if (state.mode === 'drop') return;
    const reply = encodeResponse(q, { rcode: 'NOERROR', answers: [{ type: 'A', address: answer, ttl: 60 }] });
    if (state.mode === 'spoof') {
      spoofer.send(encodeResponse(q, { rcode: 'NOERROR', answers: [{ type: 'A', address: '6.6.6.6', ttl: 60 }] }), rinfo.port, rinfo.address);
      setTimeout(() => sock.send(reply, rinfo.port, rinfo.address), 30);
      return;
    }
    if (state.mode === 'wrong-id') {
      const wrong = Buffer.from(reply);
      wrong.writeUInt16BE((q.id + 1) & 0xffff, 0);
      sock.send(wrong, rinfo.port, rinfo.address);
      setTimeout(() => sock.send(reply, rinfo.port, rinfo.address), 30);
      return;
    }
    sock.send(reply, rinfo.port, rinfo.address);
  });
  return {
    port: sock.address().port,
    state,
    close: () => {
      sock.close();
      spoofer.close();
    },
  };
}

describe('forwarding', () => {
  let up: Awaited<ReturnType<typeof fakeUpstream>>;
  let r: Resolver;
  let port: number;
  before(async () => {
    up = await fakeUpstream('93.184.216.34');
    ({ r, port } = await startResolver({ upstream: [{ address: '127.0.0.1', port: up.port }], forwardTimeoutMs: 300 }));
  });
  after(async () => {
    await r.stop();
    up.close();
  });

  test('other names are forwarded with a fresh id and the reply mapped back', async () => {
    up.state.mode = 'answer';
    up.state.ids.length = 0;
    for (let i = 0; i < 8; i++) {
      const res = await ask(port, encodeQuery('example.com', 'A', 0x1234));
      assert.equal(res.id, 0x1234);
      assert.deepEqual(res.answers.map((x) => x.address), ['93.184.216.34']);
    }
    assert.equal(up.state.ids.length, 8);
    assert.ok(up.state.ids.some((id) => id !== 0x1234), `upstream ids ${up.state.ids.join(',')}`);
    assert.ok(new Set(up.state.ids).size > 1);
  });

  test('every forwarded query leaves from a fresh source port (a spoofer must guess port and id)', async () => {
    up.state.mode = 'answer';
    up.state.ports.length = 0;
    for (let i = 0; i < 8; i++) await ask(port, encodeQuery(`n${i}.example.com`, 'A', 0x4444));
    assert.equal(up.state.ports.length, 8);
    assert.ok(new Set(up.state.ports).size >= 7, `source ports ${up.state.ports.join(',')}`);
  });

  test('a reply from the wrong port is ignored; the real one gets through', async () => {
    up.state.mode = 'spoof';
    const res = await ask(port, encodeQuery('example.org', 'A', 0x2222));
    assert.deepEqual(res.answers.map((x) => x.address), ['93.184.216.34']);
    assert.equal(r.counters.get('forward.stray.source'), 1);
  });

  test('a reply with an unknown id is ignored', async () => {
    up.state.mode = 'wrong-id';
    const res = await ask(port, encodeQuery('example.net', 'A', 0x3333));
    assert.deepEqual(res.answers.map((x) => x.address), ['93.184.216.34']);
    assert.equal(r.counters.get('forward.stray.id'), 1);
  });

  test('no reply within forwardTimeoutMs: SERVFAIL', async () => {
    up.state.mode = 'drop';
    const t0 = Date.now();
    const res = await ask(port, encodeQuery('slow.example', 'A', 0x4444));
    assert.equal(res.rcode, 2);
    assert.ok(Date.now() - t0 >= 250);
    assert.equal(r.counters.get('forward.timeout'), 1);
  });

  test('the next upstream is tried when the first stays silent', async () => {
    const silent = await udpSocket();
    const { r: r2, port: p2 } = await startResolver({
      upstream: [{ address: '127.0.0.1', port: silent.address().port }, { address: '127.0.0.1', port: up.port }],
      forwardTimeoutMs: 400,
    });
    up.state.mode = 'answer';
    const res = await ask(p2, encodeQuery('example.com', 'A', 0x5555));
    assert.deepEqual(res.answers.map((x) => x.address), ['93.184.216.34']);
    assert.equal(r2.counters.get('forward.retry'), 1);
    // the answering upstream is now preferred
    await ask(p2, encodeQuery('example.com', 'A', 0x5556));
    assert.equal(r2.counters.get('forward.retry'), 1);
    await r2.stop();
    silent.close();
  });

  test('bounded pending table: overflow answered with SERVFAIL at once', async () => {
    up.state.mode = 'drop';
    const { r: r3, port: p3 } = await startResolver({ upstream: [{ address: '127.0.0.1', port: up.port }], maxPendingForwards: 2, forwardTimeoutMs: 1000 });
    const s = await udpSocket();
    s.send(encodeQuery('a.example', 'A', 1), p3, '127.0.0.1');
    s.send(encodeQuery('b.example', 'A', 2), p3, '127.0.0.1');
    await sleep(30);
    const t0 = Date.now();
    const res = await ask(p3, encodeQuery('c.example', 'A', 3), 500, s);
    assert.equal(res.rcode, 2);
    assert.ok(Date.now() - t0 < 500);
    assert.equal(r3.counters.get('forward.overflow'), 1);
    s.close();
    await r3.stop();
  });

  test('no upstream: REFUSED', async () => {
    const { r: r4, port: p4 } = await startResolver();
    assert.equal((await ask(p4, encodeQuery('example.com', 'A', 9))).rcode, 5);
    await r4.stop();
  });
});

describe('readSystemUpstreams', () => {
  test('nameserver lines in order, comments and junk skipped, own addresses excluded', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cyphonic-dns-'));
    const file = join(dir, 'resolv.conf');
    writeFileSync(
      file,
      [
        '# generated',
        'search lan',
        'nameserver 192.0.2.53',
        'nameserver   2001:db8::53 # v6',
        '; nameserver 192.0.2.99',
        'nameserver not-an-address',
        'nameserver 100.64.0.5',
        'nameserver 192.0.2.53',
        'nameserver fe80::1%eth0',
        'options edns0',
      ].join('\n'),
    );
    try {
      assert.deepEqual(readSystemUpstreams(file, ['100.64.0.5']), [
        { address: '192.0.2.53', port: 53 },
        { address: '2001:db8::53', port: 53 },
        { address: 'fe80::1%eth0', port: 53 },
      ]);
      assert.deepEqual(readSystemUpstreams(join(dir, 'missing')), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a resolver whose upstream list contains itself drops that entry', async () => {
    const probe = await udpSocket();
    const port = probe.address().port;
    probe.close();
    const { r, port: p } = await startResolver({ listen: [{ address: '127.0.0.1', port }], upstream: [{ address: '127.0.0.1', port }] });
    assert.equal(p, port);
    assert.equal((await ask(p, encodeQuery('example.com', 'A', 10))).rcode, 5);
    await r.stop();
  });
});
