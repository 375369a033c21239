// End-to-end test (netns): a general node recovers by itself when its NMS goes silent, as a node does.
//
// The NMS answers a frame sealed with an expired Common Key with a NACK (the node logs in again), but it drops
// without a word what it cannot authenticate at all: a key the cloud no longer holds. Here the adapter loses its
// NMS (nftables drops UDP to the NMS port on the adapter's host); meanwhile the general node's Common Key is
// replaced at the AS (another login with its identity) and the cloud restarts, so nothing sealed with the key the
// general node holds is accepted any more. Once the NMS is reachable again the general node must notice the silence
// and log in again — the node lifecycle re-logs in after every NMS failed twice. (Before the shared lifecycle, the
// general node kept retrying with the old key until its local expiry — a day by default — and this test failed.)
//
//   [cloud] AS/NMS/TRS ── global segment ── [gw] adapter (nft: udp dport 4502 drop, then removed) ── lan0 ── br0

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { CLI, CloudProc, cyphonic, REPO, waitFor, workDir } from '../harness/cluster.js';
import { Lan } from '../harness/lan.js';
import { Testbed, type Host } from '../harness/netns/index.js';
import { controlGet } from '../../src/util/control.js';
import type { AdapterStatus, GeneralNodeView } from '../../src/adapter/daemon.js';
import { e2eSkip } from '../harness/requires.js';

const skip = e2eSkip('nft');
const TOOLS = join(REPO, 'dist', 'test', 'e2e', 'tools');
const MAC = '02:c0:ff:ee:01:01';
const CUT = 'cyp_nms_cut';

describe('adapter: a general node whose NMS goes silent logs in again by itself', { skip, timeout: 300_000 }, () => {
  let tb: Testbed;
  let lan: Lan;
  let work: ReturnType<typeof workDir>;
  let cloud: CloudProc;
  let gwHost: Host;
  let gw: ChildProcess;
  let gwState: string;

  const status = (): Promise<AdapterStatus> => controlGet(join(gwState, 'adapter.sock'), '/status') as Promise<AdapterStatus>;
  const g1 = async (): Promise<GeneralNodeView | undefined> => (await status()).generalNodes.find((g) => g.name === 'g1');
  const gwLog = (): string => (existsSync(join(work.dir, 'gw.log')) ? readFileSync(join(work.dir, 'gw.log'), 'utf8').split('\n').slice(-40).join('\n') : '');

  before(async () => {
    tb = await Testbed.create();
    work = workDir('adapter-relogin');
    cloud = new CloudProc(await tb.addHost('cloud', { site: tb.global, family: 'dual' }), work.dir);
    await cloud.init();
    // Short keepalives, so a silent NMS is noticed within seconds.
    await cloud.patchConfig({ keepaliveNatSec: 1, keepaliveOpenSec: 2 });
    await cloud.start();
    gwHost = await tb.addHost('gw', { site: tb.global, family: 'dual' });
    lan = await Lan.create(tb, gwHost, 'lan0');
    gwState = join(work.dir, 'gw');
    gw = gwHost.spawn(process.execPath, [CLI, 'adapter', 'up', '--state', gwState, '--lan', 'lan0', '--token', await cloud.enroll('gw'), '--info-interval', '1'], { logFile: join(work.dir, 'gw.log') });
    await waitFor('adapter registered', async () => {
      if (gw.exitCode !== null) throw new Error(`adapter exited: ${gwLog()}`);
      return (await status()).registered;
    }, 30_000);
    await cyphonic(cloud.host, ['cloud', 'general-node', 'add', 'g1', '--dir', cloud.dir, '--mac', MAC, '--adapter', 'gw']);
    await waitFor('general node registered', async () => (await g1())?.registered === true, 30_000);
  });

  after(async () => {
    await gwHost?.exec('nft', ['delete', 'table', 'inet', CUT]);
    gw?.kill('SIGTERM');
    lan?.cleanup();
    await tb?.cleanup();
    work?.remove();
  });

  test('NMS unreachable, then its Common Key unknown to the cloud: the general node logs in again and registers', async () => {
    const before = (await g1())!;
    await gwHost.run('nft', ['-f', '-'], { input: `table inet ${CUT} {\n  chain output { type filter hook output priority 0; policy accept; udp dport 4502 counter drop; }\n}\n` });
    await waitFor('the general node sees its NMS gone', async () => (await g1())?.registered === false, 30_000, 250);
    // The key it holds is superseded at the AS, and the restarted NMS has nothing cached: from now on what the
    // general node seals with its old key cannot be authenticated and is dropped without an answer.
    const other = JSON.parse(await gwHost.run(process.execPath, [join(TOOLS, 'as-login.js'), join(gwState, 'general', 'g1'), gwState])) as { expiresAt: number };
    await cloud.stop();
    await cloud.start();
    await gwHost.run('nft', ['delete', 'table', 'inet', CUT]);
    const t0 = Date.now();
    const now = await waitFor('the general node registered again', async () => {
      if (gw.exitCode !== null) throw new Error(`adapter exited: ${gwLog()}`);
      const g = await g1();
      return g?.registered ? g : null;
    }, 90_000, 500).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${gwLog()}`);
    });
    process.stdout.write(`# general node registered again ${((Date.now() - t0) / 1000).toFixed(1)} s after the NMS came back\n`);
    // It logged in again: a Common Key neither the one it had nor the one that replaced it.
    assert.ok(now.commonKeyExpiresAt);
    assert.notEqual(now.commonKeyExpiresAt, before.commonKeyExpiresAt);
    assert.notEqual(now.commonKeyExpiresAt, new Date(other.expiresAt).toISOString());
    assert.match(readFileSync(join(work.dir, 'gw.log'), 'utf8'), /no NMS answers; logging in again/);
    const row = (await cloud.nodes()).find((n) => n.name === 'g1');
    assert.equal(row?.online, true, 'online at the cloud again');
    // The adapter's own node came back too (the same lifecycle).
    await waitFor('adapter node registered again', async () => (await status()).registered, 30_000, 500);
  });
});
