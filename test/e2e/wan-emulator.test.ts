// Self-test of the testbed's user-space WAN emulator (test/harness/wan/wanem.c, test/harness/netns/wan.ts):
// measured RTT under each named profile, loss within a statistical bound, reordering and duplicates seen by a
// receiver, a rate limit seen by iperf3, and TCP with the kernel's default offloads across the emulator (TSO
// super-frames cut into wire packets: checksums right, nothing stalls). No cyphonic processes: plain hosts.
//
//            global segment 198.18.0.0/24, 2001:db8::/64
//   [a] ─────────────┬──────────────────────────────┐
//   dual          [b] eth0 ── [b_w: wanem] ── br0   [c] re-plugged behind an emulator and back at runtime

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { REPO } from '../harness/cluster.js';
import { Testbed, type Host, type WanProfile } from '../harness/netns/index.js';
import { e2eSkip } from '../harness/requires.js';

const skip = e2eSkip('gcc');
const TOOLS = join(REPO, 'dist', 'test', 'e2e', 'tools');

interface Rtt {
  sent: number;
  got: number;
  min: number;
  avg: number;
  max: number;
  mdev: number;
  /** Each reply's RTT, ms. */
  samples: number[];
}

async function ping(from: Host, to: string, count: number, interval: number): Promise<Rtt> {
  const r = await from.exec('ping', ['-n', '-c', String(count), '-i', String(interval), '-W', '3', to], { timeoutMs: 60_000 });
  const n = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  const m = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(r.stdout);
  assert.ok(n && m, `ping output: ${r.stdout} ${r.stderr}`);
  const samples = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((x) => Number(x[1]));
  return { sent: Number(n[1]), got: Number(n[2]), min: Number(m[1]), avg: Number(m[2]), max: Number(m[3]), mdev: Number(m[4]), samples };
}

describe('WAN emulator self-test (netns)', { skip, timeout: 300_000 }, () => {
  let tb: Testbed;
  let a: Host;
  let b: Host;

  before(async () => {
    tb = await Testbed.create();
    a = await tb.addHost('a', { site: tb.global, family: 'dual' });
    b = await tb.addHost('b', { site: tb.global, family: 'dual', wan: 'clean' });
  });

  after(async () => {
    await tb?.cleanup();
  });

  /** UDP probe a -> b: COUNT numbered datagrams at PPS; what b received. */
  async function probe(count: number, pps: number, port: number): Promise<{ received: number; unique: number; duplicates: number; reordered: number }> {
    const recv = b.exec(process.execPath, [join(TOOLS, 'udp-probe.js'), 'recv', b.addr4!, String(port), '1500'], { timeoutMs: 90_000 });
    await new Promise((r) => setTimeout(r, 400));
    const s = await a.exec(process.execPath, [join(TOOLS, 'udp-probe.js'), 'send', b.addr4!, String(port), String(count), String(pps)], { timeoutMs: 60_000 });
    assert.equal(s.code, 0, s.stderr);
    const r = await recv;
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { received: number; unique: number; duplicates: number; reordered: number };
  }

  test('RTT under each profile (the profile is changed at runtime, the emulator stays in the path)', async (t) => {
    await ping(a, b.addr4!, 2, 0.2); // neighbours resolved before measuring
    const clean = await ping(a, b.addr4!, 20, 0.05);
    t.diagnostic(`clean: ${JSON.stringify(clean)}`);
    assert.equal(clean.got, clean.sent, 'clean: no loss');
    assert.ok(clean.avg < 5, `clean RTT ${clean.avg} ms`);

    await tb.impair(b, 'satellite');
    assert.equal(b.wan?.name, 'satellite');
    const sat = await ping(a, b.addr4!, 10, 0.2);
    t.diagnostic(`satellite: ${JSON.stringify(sat)}`);
    assert.ok(sat.got >= 6, `satellite: ${sat.got}/${sat.sent} answered`);
    assert.ok(sat.min >= 599 && sat.avg <= 640, `satellite RTT ${sat.min}/${sat.avg} ms, want ~600`);

    await tb.impair(b, 'mobile');
    const mob = await ping(a, b.addr4!, 60, 0.05);
    t.diagnostic(`mobile: ${JSON.stringify(mob)}`);
    assert.ok(mob.got >= 45, `mobile: ${mob.got}/${mob.sent} answered`);
    // 100..200 ms, except that 1 % of packets skip one direction's delay line (explicit reordering): 50 ms at least
    // then. Each direction decides alone, so once in ~10 000 pings both skip and the RTT is ~0: at most one such.
    assert.equal(mob.samples.length, mob.got, 'one RTT per reply');
    const skippedBoth = mob.samples.filter((x) => x < 49).length;
    assert.ok(skippedBoth <= 1 && mob.max <= 215, `mobile RTT range ${mob.min}..${mob.max} ms (${skippedBoth} under 49), want 100..200 (50 when reordered)`);
    assert.ok(mob.avg >= 130 && mob.avg <= 170, `mobile RTT avg ${mob.avg} ms, want ~150`);
    assert.ok(mob.mdev >= 8, `mobile RTT varies (mdev ${mob.mdev} ms)`);

    await tb.impair(b, 'wifi');
    const wifi = await ping(a, b.addr4!, 60, 0.02);
    t.diagnostic(`wifi: ${JSON.stringify(wifi)}`);
    assert.ok(wifi.min >= 2.9 && wifi.avg <= 9, `wifi RTT ${wifi.min}/${wifi.avg} ms, want ~5`);
    // IPv6 crosses the same bump in the wire.
    const w6 = await ping(a, b.addr6!, 10, 0.05);
    assert.ok(w6.got >= 5 && w6.min >= 2.9, `wifi over IPv6: ${JSON.stringify(w6)}`);
  });

  test('loss ratio within a statistical bound (wifi, 5 % per direction), counted by the emulator as well', async (t) => {
    await tb.impair(b, 'wifi');
    const before = (await tb.wanStats(b))!;
    const N = 4000;
    const r = await probe(N, 2000, 7001);
    const after = (await tb.wanStats(b))!;
    const lost = N - r.unique;
    // Binomial(4000, 0.05): mean 200, sd 13.8; ±5 sd is a bound a correct emulator fails about once in 3 million runs.
    t.diagnostic(`wifi: ${lost}/${N} lost at the receiver (${((100 * lost) / N).toFixed(2)} %), emulator counted ${after.down.lost - before.down.lost}`);
    assert.ok(lost >= 131 && lost <= 269, `lost ${lost} of ${N}, want 200 ± 69`);
    assert.ok(Math.abs(after.down.lost - before.down.lost - lost) <= 5, 'the emulator counted what the receiver missed');
    assert.equal(r.duplicates, 0);
  });

  test('jitter reorders packets and duplication duplicates them, as the receiver sees', async (t) => {
    const prof: WanProfile = { name: 'jittery', up: {}, down: { delayMs: 10, jitterMs: 5, dist: 'normal', dupPct: 5, reorderPct: 2 } };
    await tb.impair(b, prof);
    const N = 3000;
    const r = await probe(N, 1500, 7002);
    const st = (await tb.wanStats(b))!;
    t.diagnostic(`jitter 5 ms (normal) + 2 % reorder + 5 % dup: ${JSON.stringify(r)}; emulator: dup ${st.down.duplicated}, reordered ${st.down.reordered}`);
    assert.equal(r.unique, N, 'nothing lost');
    // Binomial(3000, 0.05): mean 150, sd 11.9.
    assert.ok(r.duplicates >= 90 && r.duplicates <= 210, `duplicates ${r.duplicates}, want 150 ± 60`);
    assert.ok(r.reordered >= 300, `reordered ${r.reordered}: at 1500 pps a 5 ms jitter lets most packets overtake`);
    // Without jitter, only the explicit reordering: 2 % of packets skip the 10 ms delay line.
    await tb.impair(b, 'clean');
    await tb.impair(b, null); // fresh counters on the next re-plug
    await tb.impair(b, { name: 'reorder-only', up: {}, down: { delayMs: 10, reorderPct: 2 } });
    const r2 = await probe(N, 1500, 7003);
    t.diagnostic(`2 % explicit reordering: ${JSON.stringify(r2)}`);
    assert.equal(r2.unique, N);
    // ~60 packets skip the line, and each arrives ahead of the ~15 sent in the 10 ms before it: those ~15 come late.
    const skipped = (await tb.wanStats(b))!.down.reordered;
    assert.ok(skipped >= 30 && skipped <= 95, `the emulator let ${skipped} of ${N} skip the line, want ~60`);
    assert.ok(r2.reordered >= skipped * 8 && r2.reordered <= skipped * 22, `${r2.reordered} arrived after a later one, want ~15 per skip`);
  });

  test('the rate limit holds (iperf3 TCP through a 20 Mbit/s limit with a 64 KiB queue)', async (t) => {
    await tb.impair(b, { name: 'rate', up: { delayMs: 5 }, down: { delayMs: 5, rateKbit: 20_000, queueBytes: 65_536 } });
    const srv = b.spawn('iperf3', ['-s', '-1', '-B', b.addr4!], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 500));
      const out = await a.run('iperf3', ['-c', b.addr4!, '-t', '4', '-J'], { timeoutMs: 30_000 });
      const bps = (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
      const st = (await tb.wanStats(b))!;
      t.diagnostic(`TCP through 20 Mbit/s: ${(bps / 1e6).toFixed(2)} Mbit/s; queue drops ${st.down.queueDrops}`);
      assert.ok(bps >= 14e6 && bps <= 21e6, `${(bps / 1e6).toFixed(2)} Mbit/s`);
    } finally {
      srv.kill('SIGKILL');
    }
  });

  test('TCP with default offloads across the emulator: super-frames cut into wire packets, 64 MB intact, no stall', async (t) => {
    await tb.impair(b, { name: 'lan10', up: { delayMs: 5, lossPct: 0.1 }, down: { delayMs: 5, lossPct: 0.1 } });
    const before = (await tb.wanStats(b))!;
    const BYTES = 64 * 1024 * 1024;
    const server = b.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'server', b.addr4!, '5001'], { timeoutMs: 100_000 });
    await new Promise((r) => setTimeout(r, 400));
    const t0 = Date.now();
    const c = await a.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'client', b.addr4!, '5001', String(BYTES)], { timeoutMs: 100_000 });
    const s = await server;
    const ms = Date.now() - t0;
    assert.equal(c.code, 0, c.stderr);
    assert.equal(s.code, 0, s.stderr);
    assert.deepEqual(JSON.parse(s.stdout), JSON.parse(c.stdout), 'bytes and checksum at the far end');
    const st = (await tb.wanStats(b))!;
    const d = (k: keyof typeof st.down): number => st.down[k] - before.down[k];
    t.diagnostic(`64 MB in ${ms} ms (${((BYTES * 8) / ms / 1000).toFixed(0)} Mbit/s); a -> b: ${d('rxSuper')} super-frames cut into ${d('segments')} segments, ${d('lost')} lost; b -> a: ${st.up.rx - before.up.rx} frames`);
    assert.ok(d('rxSuper') > 0, 'the veth handed the emulator TSO super-frames');
    assert.ok(d('segments') > 2 * d('rxSuper'), 'and they were cut into wire packets');
    assert.equal(d('bad'), 0);
    assert.equal(d('tooBig'), 0, 'every frame sent fits the MTU');
    assert.ok(ms < 60_000, `no stall: ${ms} ms`);
  });

  test('a running host is re-plugged behind an emulator and back: addresses kept, RTT follows', async () => {
    const c = await tb.addHost('c', { site: tb.global, family: 'dual' });
    const addr = c.addr4!;
    const plain = await ping(a, addr, 5, 0.05);
    assert.ok(plain.avg < 5);
    await tb.impair(c, { name: 'd40', up: { delayMs: 20 }, down: { delayMs: 20 } });
    assert.equal(c.addr4, addr);
    const slow = await ping(a, addr, 5, 0.05);
    assert.ok(slow.min >= 39 && slow.got === 5, JSON.stringify(slow));
    await tb.impair(c, null);
    assert.equal(c.wan, null);
    const back = await ping(a, addr, 5, 0.05);
    assert.ok(back.avg < 5 && back.got === 5, JSON.stringify(back));
    // Moving a host takes its emulator along.
    await tb.impair(c, { name: 'd40', up: { delayMs: 20 }, down: { delayMs: 20 } });
    const site = await tb.addSite('home', { kind: 'napt', nat: 'eim' });
    await tb.moveHost(c, site);
    const moved = await ping(c, a.addr4!, 5, 0.05);
    assert.ok(moved.min >= 39 && moved.got === 5, `behind NAPT, still through the emulator: ${JSON.stringify(moved)}`);
  });
});
