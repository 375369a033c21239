// Mobility with an IPv4-only peer: the moving node's IPv6-only leg can reach the peer only through the TRS, so
// the move must re-select the route (NMS: relayed path, issue #5) while the TCP transfer keeps running.
//
//   [cloud] dual (AS+NMS, TRS :4503) ── global ── [beta] IPv4-only
//                                     └──── [home] NAPT (eim) ── LAN
//   [alpha] moves: global v4 → home (NAPT) → global v6-only (via the TRS) → global dual → global v4

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { CLI, CloudProc, NodeProc, REPO, waitFor, workDir, type NodeStatusJson } from '../harness/cluster.js';
import { Testbed, type Site } from '../harness/netns/index.js';
import { e2eSkip } from '../harness/requires.js';

const skip = e2eSkip();
const TOOLS = join(REPO, 'dist', 'test', 'e2e', 'tools');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('mobility with an IPv4-only peer: the IPv6-only leg goes through the TRS (netns)', { skip, timeout: 300_000 }, () => {
  let tb: Testbed;
  let work: ReturnType<typeof workDir>;
  let cloud: CloudProc;
  let home: Site;
  let alpha: NodeProc;
  let beta: NodeProc;
  let b: NodeStatusJson & { vip4: string; vip6: string };
  let trs: ChildProcess | null = null;

  const peerOf = async (n: NodeProc, name: string): Promise<NodeStatusJson['peers'][number] | undefined> => (await n.status()).peers.find((p) => p.name === name);

  before(async () => {
    tb = await Testbed.create();
    work = workDir('mobility-relay');
    cloud = new CloudProc(await tb.addHost('cloud', { site: tb.global, family: 'dual' }), work.dir);
    await cloud.init();
    await cloud.start();
    trs = cloud.host.spawn(process.execPath, [CLI, 'cloud', 'start', '--dir', cloud.dir, '--roles', 'trs', '--trs-port', '4503'], { logFile: join(work.dir, 'trs.log') });
    await waitFor('a live TRS', async () => {
      const out = await cloud.host.run(process.execPath, [CLI, 'cloud', 'relays', '--dir', cloud.dir, '--json']);
      return (JSON.parse(out) as { live: boolean }[]).some((r) => r.live);
    }, 20_000);
    home = await tb.addSite('home', { kind: 'napt', nat: 'eim' });
    beta = new NodeProc(await tb.addHost('beta', { site: tb.global, family: 'v4' }), work.dir, 'beta');
    alpha = new NodeProc(await tb.addHost('alpha', { site: tb.global, family: 'v4' }), work.dir, 'alpha');
    for (const n of [beta, alpha]) n.start(await cloud.enroll(n.name));
    [b] = (await Promise.all([beta.waitRegistered(), alpha.waitRegistered()])) as [typeof b, NodeStatusJson];
    await waitFor('alpha → beta tunnel', async () => (await alpha.host.exec('ping', ['-c', '1', '-W', '1', b.vip4])).code === 0, 20_000);
  });

  after(async () => {
    trs?.kill('SIGKILL');
    await tb?.cleanup();
    work?.remove();
  });

  test('global v4 → NAPT → IPv6-only (relayed) → dual → back: the TCP transfer survives, data intact; ping answered', async () => {
    const RATE = 48 * 1024;
    const BYTES = RATE * 28;
    const server = beta.host.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'server', b.vip4, '5001'], { timeoutMs: 120_000 });
    await sleep(400);
    const client = alpha.host.exec(process.execPath, [join(TOOLS, 'tcp-paced.js'), b.vip4, '5001', String(BYTES), String(RATE)], { timeoutMs: 120_000 });
    const pinger = alpha.host.exec('ping', ['-n', '-q', '-c', '250', '-i', '0.1', '-W', '1', b.vip4], { timeoutMs: 60_000 });
    await sleep(1500);
    const moves: { to: Site; family: 'v4' | 'v6' | 'dual'; path: 'direct' | 'relayed' }[] = [
      { to: home, family: 'v4', path: 'direct' },
      { to: tb.global, family: 'v6', path: 'relayed' },
      { to: tb.global, family: 'dual', path: 'direct' },
      { to: tb.global, family: 'v4', path: 'direct' },
    ];
    for (const m of moves) {
      await tb.moveHost(alpha.host, m.to, { family: m.family });
      if (m.path === 'relayed') await waitFor('a relayed path to beta', async () => (await peerOf(alpha, 'beta'))?.path === 'relayed', 8000);
      await waitFor('traffic to beta', async () => (await alpha.host.exec('ping', ['-c', '1', '-W', '1', b.vip4])).code === 0, 8000);
      await sleep(2000);
    }
    const sent = JSON.parse((await client).stdout) as { bytes: number; sha256: string };
    const got = await server;
    assert.equal(got.code, 0, got.stderr);
    assert.deepEqual(JSON.parse(got.stdout), sent, 'every byte arrived, in order and intact');
    const m = /(\d+) packets transmitted, (\d+) received/.exec((await pinger).stdout);
    assert.ok(m && Number(m[2]) >= Number(m[1]) * 0.8, `ping answered across the moves: ${m?.[0]}`);
    assert.ok(((await alpha.status()).counters['peers.reselect.family'] ?? 0) >= 1, 'the IPv6-only leg needed a new route');
  });
});
