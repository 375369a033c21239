// End-to-end test of general nodes behind adapters at different NAPT sites (issues #5 and #7): each general-node
// agent registers, probes its NAT mapping and binds to the TRS from its own UDP socket like any node, so two general
// nodes behind two EIM NAPTs get a punched path, and one behind an EIM NAPT against one behind a random-port NAPT
// a path relayed through the TRS. The devices run only Debian tools: dhclient, dig, ping, a TCP checksum tool.
//
//                     global segment
//   [cloud] AS+NMS, TRS :4503 ──┬───────────────────┬───────────────────┐
//                      [siteA] NAPT eim     [siteB] NAPT eim     [siteC] NAPT random
//                          [gwA] adapter        [gwB] adapter        [gwC] adapter
//                            │ lan0               │ lan0               │ lan0
//                          [ga] dhclient        [gb] dhclient        [gc] dhclient
//
//   ga ⇄ gb: punched (both mappings endpoint-independent)     ga ⇄ gc: relayed (a random-port mapping cannot be punched)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { CLI, CloudProc, cyphonic, REPO, waitFor, workDir } from '../harness/cluster.js';
import { dhclient, Lan } from '../harness/lan.js';
import { Testbed, type Host, type Site } from '../harness/netns/index.js';
import { controlGet } from '../../src/util/control.js';
import type { AdapterStatus } from '../../src/adapter/daemon.js';
import { e2eSkip } from '../harness/requires.js';

const skip = e2eSkip('dhclient', 'dig', 'nft');
const TOOLS = join(REPO, 'dist', 'test', 'e2e', 'tools');
const DOMAIN = 'cyphonic.internal';

interface Branch {
  gw: ChildProcess;
  state: string;
  lan: Lan;
  dev: Host;
  /** The general node's overlay identity, from `cloud general-node add`. */
  gen: { vip4: string; vip6: string; fqdn: string };
  status(): Promise<AdapterStatus>;
}

describe('adapter: general nodes behind adapters at two NAPT sites reach each other (punched, relayed; netns)', { skip, timeout: 300_000 }, () => {
  let tb: Testbed;
  let work: ReturnType<typeof workDir>;
  let cloud: CloudProc;
  let trs: ChildProcess | undefined;
  const br: Record<'a' | 'b' | 'c', Branch> = {} as Record<'a' | 'b' | 'c', Branch>;

  const log = (name: string): string => {
    const f = join(work.dir, `${name}.log`);
    return existsSync(f) ? readFileSync(f, 'utf8').split('\n').slice(-25).join('\n') : '';
  };

  async function branch(key: 'a' | 'b' | 'c', site: Site, mac: string): Promise<Branch> {
    const host = await tb.addHost(`gw${key}`, { site });
    const lan = await Lan.create(tb, host, 'lan0');
    const dev = await lan.addDevice(`g${key}`, mac);
    const state = join(work.dir, `gw${key}`);
    const gw = host.spawn(process.execPath, [CLI, 'adapter', 'up', '--state', state, '--lan', 'lan0', '--token', await cloud.enroll(`gw${key}`), '--info-interval', '1', '--ra-interval', '4', '--path-keepalive', '2'], { logFile: join(work.dir, `gw${key}.log`) });
    const status = (): Promise<AdapterStatus> => controlGet(join(state, 'adapter.sock'), '/status') as Promise<AdapterStatus>;
    await waitFor(`adapter gw${key} registered`, async () => {
      if (gw.exitCode !== null) throw new Error(`adapter gw${key} exited: ${log(`gw${key}`)}`);
      return (await status()).registered;
    }, 40_000);
    const gen = JSON.parse(await cyphonic(cloud.host, ['cloud', 'general-node', 'add', `g${key}`, '--dir', cloud.dir, '--mac', mac, '--adapter', `gw${key}`, '--family', 'dual', '--json'])) as Branch['gen'];
    return { gw, state, lan, dev, gen, status };
  }

  before(async () => {
    tb = await Testbed.create();
    work = workDir('adapter-nat');
    cloud = new CloudProc(await tb.addHost('cloud', { site: tb.global, family: 'dual' }), work.dir);
    await cloud.init();
    await cloud.start();
    trs = await cloud.startTrs(4503);
    const [siteA, siteB, siteC] = [await tb.addSite('siteA', { kind: 'napt', nat: 'eim' }), await tb.addSite('siteB', { kind: 'napt', nat: 'eim' }), await tb.addSite('siteC', { kind: 'napt', nat: 'random' })];
    const [a, b, c] = await Promise.all([branch('a', siteA, '02:c0:ff:ee:0a:01'), branch('b', siteB, '02:c0:ff:ee:0b:01'), branch('c', siteC, '02:c0:ff:ee:0c:01')]);
    Object.assign(br, { a, b, c });
    for (const [k, x] of Object.entries(br)) {
      await waitFor(`g${k} registered behind its adapter's NAPT`, async () => {
        const g = (await x.status()).generalNodes[0];
        return g?.registered === true && g.nat === true;
      }, 40_000).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}\n${log(`gw${k}`)}`);
      });
    }
    // Each device takes both leases (DHCPv4, and DHCPv6 after the RA) from its adapter.
    await Promise.all(Object.entries(br).map(async ([k, x]) => {
      await dhclient(x.dev, join(work.dir, `g${k}`), 4);
      await dhclient(x.dev, join(work.dir, `g${k}`), 6);
    }));
  });

  after(async () => {
    for (const x of Object.values(br)) {
      x.gw.kill('SIGTERM');
      x.lan.cleanup();
    }
    trs?.kill('SIGKILL');
    await tb?.cleanup();
    work?.remove();
  });

  /** from resolves to's FQDN through its adapter's DNS, pings it on both families and sends it 4 MB over TCP (sha256). */
  async function reach(from: Branch, to: Branch, name: string): Promise<void> {
    const st = await from.status();
    const dig = (server: string, type: string): Promise<string> => from.dev.run('dig', [`@${server}`, `${name}.${DOMAIN}`, type, '+short', '+tries=2', '+time=3']).then((o) => o.trim());
    assert.equal(await dig(st.vip4!, 'A'), to.gen.vip4);
    assert.equal(await dig(st.vip6!, 'AAAA'), to.gen.vip6);
    await waitFor(`ping ${name} over IPv4`, () => from.dev.exec('ping', ['-c', '1', '-W', '2', to.gen.vip4]).then((r) => r.code === 0), 30_000, 500).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}\n${JSON.stringify((await from.status()).generalNodes[0])}\n${JSON.stringify((await to.status()).generalNodes[0])}`);
    });
    assert.match(await from.dev.run('ping', ['-c', '3', '-i', '0.2', '-W', '2', to.gen.vip4]), / 0% packet loss/);
    await waitFor(`ping ${name} over IPv6`, () => from.dev.exec('ping', ['-6', '-c', '1', '-W', '2', to.gen.vip6]).then((r) => r.code === 0), 20_000, 500);
    assert.match(await from.dev.run('ping', ['-6', '-c', '3', '-i', '0.2', '-W', '2', to.gen.vip6]), / 0% packet loss/);
    const bytes = 4 * 1024 * 1024;
    const server = to.dev.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'server', to.gen.vip4, '5001'], { timeoutMs: 60_000 });
    await new Promise((r) => setTimeout(r, 500));
    const sent = JSON.parse(await from.dev.run(process.execPath, [join(TOOLS, 'tcp-check.js'), 'client', to.gen.vip4, '5001', String(bytes)], { timeoutMs: 60_000 })) as { bytes: number; sha256: string };
    const got = JSON.parse((await server).stdout) as { bytes: number; sha256: string };
    assert.equal(got.bytes, bytes);
    assert.equal(got.sha256, sent.sha256);
  }

  /** The path both agents report for each other (`adapter status` generalNodes[].peers[]). */
  async function pathsOf(x: Branch, y: Branch, xName: string, yName: string): Promise<{ x: AdapterStatus['generalNodes'][0]['peers'][0]; y: AdapterStatus['generalNodes'][0]['peers'][0] }> {
    const px = (await x.status()).generalNodes[0]!.peers.find((p) => p.name === yName);
    const py = (await y.status()).generalNodes[0]!.peers.find((p) => p.name === xName);
    assert.ok(px && py, `both agents know each other: ${JSON.stringify({ px, py })}`);
    return { x: px, y: py };
  }

  test('two general nodes behind two EIM NAPTs: resolved by FQDN, ping on both families, TCP intact, over a punched path', async () => {
    await reach(br.a, br.b, 'gb');
    const p = await pathsOf(br.a, br.b, 'ga', 'gb');
    assert.equal(p.x.path, 'punched', JSON.stringify(p.x));
    assert.equal(p.y.path, 'punched', JSON.stringify(p.y));
    assert.equal(p.x.relay, null);
    assert.equal(p.x.state, 'established');
    assert.ok(p.x.txBytes > 4 * 1024 * 1024 && p.y.rxBytes > 4 * 1024 * 1024, JSON.stringify(p));
    // Mobility on the new path: each agent announced its endpoints (EndpointUpdate) and the other one acknowledged.
    for (const x of [br.a, br.b]) {
      const c = (await x.status()).generalNodes[0]!.counters;
      assert.ok((c['mobility.update.accepted'] ?? 0) >= 1 && (c['mobility.update.acked'] ?? 0) >= 1, JSON.stringify(c));
    }
  });

  test('EIM against a random-port NAPT: the same, relayed through the TRS from the agents\' own sockets', async () => {
    await reach(br.a, br.c, 'gc');
    const p = await pathsOf(br.a, br.c, 'ga', 'gc');
    assert.equal(p.x.path, 'relayed', JSON.stringify(p.x));
    assert.equal(p.y.path, 'relayed', JSON.stringify(p.y));
    assert.match(p.x.relay ?? '', /:4503$/);
    assert.match(p.y.relay ?? '', /:4503$/);
    // Both agents bound to the TRS themselves (RelayBind answered by RelayBindAck on their sockets).
    for (const x of [br.a, br.c]) {
      const c = (await x.status()).generalNodes[0]!.counters;
      assert.ok((c['relay.ack.ok'] ?? 0) >= 1, JSON.stringify(c));
    }
    // And the reverse direction over the same path: gc reaches ga.
    assert.match(await br.c.dev.run('ping', ['-c', '3', '-i', '0.2', '-W', '2', br.a.gen.vip4]), / 0% packet loss/);
  });

  test('idle paths through the NAPTs get sealed keepalives from the agents, and still carry traffic afterwards', async () => {
    const sent = async (): Promise<number> => (await br.a.status()).generalNodes[0]!.counters['tx.path-keepalive'] ?? 0;
    const rxFromB = async (): Promise<number> => (await pathsOf(br.a, br.b, 'ga', 'gb')).x.rxBytes;
    const before = await sent();
    const rx0 = await rxFromB();
    // --path-keepalive 2: a few seconds of idleness on the punched path (relayed ones are kept by their TRS binds).
    await waitFor('path keepalives sent', async () => (await sent()) >= before + 2, 20_000, 500);
    // Only keepalives (and the answers of gb's kernel) moved on the idle path: they went through the tunnel both ways.
    assert.ok((await rxFromB()) > rx0, 'something came back over the idle punched path');
    assert.match(await br.a.dev.run('ping', ['-c', '2', '-i', '0.2', '-W', '2', br.b.gen.vip4]), / 0% packet loss/);
    assert.match(await br.a.dev.run('ping', ['-c', '2', '-i', '0.2', '-W', '2', br.c.gen.vip4]), / 0% packet loss/);
  });
});
