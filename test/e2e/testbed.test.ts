// Self-test of the netns testbed harness (test/harness/netns): topology, reachability, NAPT
// behaviour, moveHost, and cleanup including the stale sweep after a SIGKILLed run. Needs root.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { killGroup, pidAlive, Testbed, type Host } from '../harness/netns/index.js';
import { verdict } from '../harness/requires.js';

const skip = verdict(Testbed.unavailableReason());

/** UDP echo server: replies "<src addr>:<src port>" to each datagram; exits after `max` datagrams or 20 s. */
const ECHO_SERVER = `
const s = require('node:dgram').createSocket('udp4');
const port = Number(process.argv[1]); const max = Number(process.argv[2]); let n = 0;
s.on('error', (e) => { console.error(String(e)); process.exit(1); });
s.on('message', (_m, r) => { s.send(r.address + ':' + r.port, r.port, r.address); if (++n >= max) setTimeout(() => process.exit(0), 200); });
s.bind(port, '0.0.0.0', () => console.log('ready'));
setTimeout(() => process.exit(0), 20000);
`;

/** UDP client: from local port argv[3], asks argv[1]:argv[2] what it sees; up to 3 tries of 1 s. */
const ECHO_CLIENT = `
const s = require('node:dgram').createSocket('udp4');
const [host, port, local] = process.argv.slice(1);
let tries = 0;
const send = () => { if (tries++ >= 3) { console.error('no reply'); process.exit(2); } s.send('hi', Number(port), host); setTimeout(send, 1000); };
s.on('message', (m) => { console.log(JSON.stringify({ local: s.address().port, seen: m.toString() })); process.exit(0); });
s.bind(Number(local), send);
`;

/** Starts the echo server in `h` and waits for it to listen; returns a function that stops it. */
async function startEcho(h: Host, port: number, max: number): Promise<() => void> {
  const child = h.spawn(process.execPath, ['-e', ECHO_SERVER, String(port), String(max)]);
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('echo server did not start')), 10_000);
    child.stdout!.on('data', (b: Buffer) => {
      if (b.toString().includes('ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`echo server exited ${code}: ${stderr}`)));
  });
  return () => killGroup(child.pid!);
}

async function askSeen(from: Host, to: string, port: number, localPort: number): Promise<{ local: number; addr: string; port: number }> {
  const out = await from.run(process.execPath, ['-e', ECHO_CLIENT, to, String(port), String(localPort)], { timeoutMs: 10_000 });
  const r = JSON.parse(out) as { local: number; seen: string };
  const i = r.seen.lastIndexOf(':');
  return { local: r.local, addr: r.seen.slice(0, i), port: Number(r.seen.slice(i + 1)) };
}

async function ping(from: Host, to: string): Promise<void> {
  const r = await from.exec('ping', ['-c1', '-W2', to], { timeoutMs: 5000 });
  assert.equal(r.code, 0, `${from.name} -> ${to} ping failed:\n${r.stdout}${r.stderr}`);
}

function nsWithPrefix(prefix: string): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(`${prefix}-`));
}

test('netns testbed', { skip, timeout: 60_000 }, async (t) => {
  const tb = await Testbed.create();
  try {
    const a = await tb.addHost('a', { site: tb.global });
    const b6 = await tb.addHost('b6', { site: tb.global, family: 'v6' });
    const siteE = await tb.addSite('sitee', { kind: 'napt', nat: 'eim' });
    const siteR = await tb.addSite('siter', { kind: 'napt', nat: 'random' });
    const [n1, n2] = await Promise.all([tb.addHost('n1', { site: siteE }), tb.addHost('n2', { site: siteR })]);

    await t.test('addresses follow the plan', () => {
      assert.equal(a.addr4, '198.18.0.10');
      assert.equal(a.addr6, '2001:db8::10');
      assert.equal(b6.addr4, null);
      assert.equal(b6.addr6, '2001:db8::11');
      assert.match(siteE.wan4 ?? '', /^198\.18\.0\.\d+$/);
      assert.match(siteE.wan6 ?? '', /^2001:db8::\d+$/);
      assert.equal(siteE.v4, '10.1.0.0/24');
      assert.equal(n1.addr4, '10.1.0.10');
      assert.equal(n1.addr6, null);
      assert.equal(n2.addr4, '10.2.0.10');
      for (const h of [a, b6, n1, n2]) assert.equal(h.ns, `${tb.prefix}-${h.name}`);
    });

    await t.test('reachability: v6 on global, v4 out of both NAPT sites', async () => {
      await Promise.all([ping(a, b6.addr6!), ping(n1, a.addr4!), ping(n2, a.addr4!)]);
      const noV4 = await b6.exec('ping', ['-c1', '-W1', a.addr4!], { timeoutMs: 5000 });
      assert.notEqual(noV4.code, 0, 'IPv6-only host must not reach IPv4');
      const noInbound = await a.exec('ping', ['-c1', '-W1', n1.addr4!], { timeoutMs: 5000 });
      assert.notEqual(noInbound.code, 0, 'private LAN must not be reachable from the global segment');
    });

    await t.test('NAPT mappings', async () => {
      const stop = await startEcho(a, 7000, 3);
      const e = await askSeen(n1, a.addr4!, 7000, 41001);
      assert.equal(e.addr, siteE.wan4, 'eim: source is the router WAN address');
      assert.equal(e.port, e.local, 'eim: fresh mapping keeps the local port');
      const r1 = await askSeen(n2, a.addr4!, 7000, 41002);
      const r2 = await askSeen(n2, a.addr4!, 7000, 41003);
      assert.equal(r1.addr, siteR.wan4, 'random: source is the router WAN address');
      assert.equal(r2.addr, siteR.wan4);
      t.diagnostic(`random NAPT: 41002 -> ${r1.port}, 41003 -> ${r2.port}`);
      stop();
    });

    await t.test('moveHost: n1 to the global segment', async () => {
      const before = n1.addr4;
      await tb.moveHost(n1, tb.global);
      assert.equal(n1.site, tb.global);
      assert.match(n1.addr4 ?? '', /^198\.18\.0\.\d+$/);
      assert.notEqual(n1.addr4, before);
      assert.ok(n1.addr6, 'dual-stack again on the global segment');
      // DAD is on: right after the move the new IPv6 address is tentative, and settles by itself.
      assert.match(await n1.run('ip', ['-6', '-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'global']), /tentative/);
      await tb.settled(n1);
      assert.doesNotMatch(await n1.run('ip', ['-6', '-o', 'addr', 'show', 'dev', 'eth0']), /tentative|dadfailed/);
      await ping(n1, a.addr4!);
      await ping(n1, b6.addr6!);
      const stop = await startEcho(a, 7001, 1);
      const seen = await askSeen(n1, a.addr4!, 7001, 41004);
      stop();
      assert.equal(seen.addr, n1.addr4);
      assert.equal(seen.port, 41004);
      await tb.moveHost(n1, siteR);
      assert.equal(n1.addr4, '10.2.0.11');
      await ping(n1, a.addr4!);
    });
  } finally {
    const prefix = tb.prefix;
    await tb.cleanup();
    await tb.cleanup(); // idempotent
    assert.deepEqual(nsWithPrefix(prefix), [], 'no namespace left after cleanup');
  }
});

test('stale sweep after a SIGKILLed run', { skip, timeout: 30_000 }, async () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const lib = pathToFileURL(join(here, '../harness/netns/index.js')).href;
  const script = `
    import { Testbed } from ${JSON.stringify(lib)};
    const tb = await Testbed.create();
    const h = await tb.addHost('victim');
    const sleeper = h.spawn('sleep', ['300'], { stdio: 'ignore' });
    await tb.addSite('victims', { kind: 'napt', nat: 'eim' });
    console.log(tb.prefix + ' ' + sleeper.pid);
    process.kill(process.pid, 'SIGKILL');
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  const [prefix = '', sleeperPid = ''] = r.stdout.trim().split(' ');
  assert.match(prefix, /^cy[0-9a-z]{4}$/);
  assert.ok(pidAlive(Number(sleeperPid)), 'the killed run left its process behind');
  assert.equal(nsWithPrefix(prefix).length, 3, 'the killed run left its namespaces behind');
  const tb = await Testbed.create();
  try {
    assert.deepEqual(nsWithPrefix(prefix), [], 'create() swept the dead run');
    for (let i = 0; i < 40 && pidAlive(Number(sleeperPid)); i++) await new Promise((res) => setTimeout(res, 50));
    assert.ok(!pidAlive(Number(sleeperPid)), 'the sweep killed the process left in the namespace');
  } finally {
    await tb.cleanup();
  }
});
