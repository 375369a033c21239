// End-to-end test of the hard session age limit in network namespaces: two nodes whose sessions may live 3 s
// (--session-limit 3) but would rekey only after 60 s (--rekey-after 60), so the limit bites. When a session
// reaches it, the engine stops sealing with it (data.sealExpired), the next packet is a miss, and the peer manager
// re-handshakes on the same path at once (peers.rekey.expired); packets held meanwhile (in the worker, and in the
// engine while the answering end waits for the initiator to use the new session) go out under the new one. A ping
// every 10 ms across several limits loses nothing. A capsule captured under an old session and replayed after the
// limit is dropped and counted.
//
//              global segment 198.18.0.0/24 (captured on the bridge in <p>-inet)
//   [cloud] ──────────┬───────────────┐
//                  [alpha]          [beta]        both: --session-limit 3 --rekey-after 60

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { CloudProc, NodeProc, REPO, waitFor, workDir, type NodeStatusJson } from '../harness/cluster.js';
import { Testbed } from '../harness/netns/index.js';
import { e2eSkip, needs } from '../harness/requires.js';

const skip = e2eSkip();
const TOOLS = join(REPO, 'dist', 'test', 'e2e', 'tools');
const LIMIT_S = 3;

describe('session age limit: refused at the limit and replaced without loss (netns)', { skip, timeout: 300_000 }, () => {
  let tb: Testbed;
  let work: ReturnType<typeof workDir>;
  let cloud: CloudProc;
  let alpha: NodeProc;
  let beta: NodeProc;
  let b: NodeStatusJson & { vip4: string };

  before(async () => {
    tb = await Testbed.create();
    work = workDir('session-limits');
    cloud = new CloudProc(await tb.addHost('cloud', { site: tb.global, family: 'dual' }), work.dir);
    await cloud.init();
    await cloud.start();
    alpha = new NodeProc(await tb.addHost('alpha', { site: tb.global, family: 'dual' }), work.dir, 'alpha');
    beta = new NodeProc(await tb.addHost('beta', { site: tb.global, family: 'dual' }), work.dir, 'beta');
    for (const n of [alpha, beta]) n.start(await cloud.enroll(n.name), ['--session-limit', String(LIMIT_S), '--rekey-after', '60']);
    await alpha.waitRegistered();
    b = (await beta.waitRegistered()) as typeof b;
  });

  after(async () => {
    await tb?.cleanup();
    work?.remove();
  });

  const counters = async (n: NodeProc): Promise<Record<string, number>> => (await n.status()).counters;
  const sum = (cs: Record<string, number>[], k: string): number => cs.reduce((s, c) => s + (c[k] ?? 0), 0);
  const interesting = (c: Record<string, number>): string =>
    JSON.stringify(Object.fromEntries(Object.entries(c).filter(([k, v]) => (k.startsWith('data.') || k.startsWith('peers.')) && v)));

  test('a ping every 10 ms across several limits: 0 % loss; sessions were refused at the limit and replaced', async (t) => {
    await waitFor('the tunnel', async () => (await alpha.host.exec('ping', ['-c', '1', '-W', '1', b.vip4])).code === 0, 20_000);
    const before = [await counters(alpha), await counters(beta)];
    const count = 900; // 9 s at 10 ms: at least two limits pass at each end
    const flood = await alpha.host.exec('ping', ['-n', '-q', '-c', String(count), '-i', '0.01', '-W', '1', b.vip4], { timeoutMs: 60_000 });
    const after = [await counters(alpha), await counters(beta)];
    const detail = `${flood.stdout}\nalpha ${interesting(after[0]!)}\nbeta ${interesting(after[1]!)}`;
    assert.match(flood.stdout, new RegExp(` ${count} received, 0% packet loss`), detail);
    const delta = (k: string): number => sum(after, k) - sum(before, k);
    assert.ok(delta('data.sealExpired') >= 2, `sessions reached the limit and were refused for sealing: ${delta('data.sealExpired')}\n${detail}`);
    assert.ok(delta('peers.rekey.expired') >= 2, `a miss past the limit re-handshook: ${delta('peers.rekey.expired')}\n${detail}`);
    assert.ok(delta('peers.handshake.ok') >= 2, `new sessions were established: ${delta('peers.handshake.ok')}\n${detail}`);
    assert.equal(delta('peers.rekey.failed'), 0, detail);
    const keys = ['data.sealExpired', 'peers.rekey.expired', 'peers.handshake.ok', 'data.queued', 'data.miss', 'data.badTag', 'data.expired'];
    t.diagnostic(`deltas (alpha+beta): ${JSON.stringify(Object.fromEntries(keys.map((k) => [k, delta(k)])))}`);
  });

  test('a capsule captured under an old session and replayed after the limit is dropped and counted', { skip: needs('tcpdump') }, async () => {
    const pcap = join(work.dir, 'old-session.pcap');
    const cap = tb.inet.spawn('tcpdump', ['-i', 'br0', '-n', '-U', '--immediate-mode', '-w', pcap, 'udp port 30000'], { logFile: join(work.dir, 'tcpdump.log') });
    await new Promise((r) => setTimeout(r, 1000));
    await alpha.host.exec('ping', ['-c', '3', '-i', '0.2', '-W', '2', b.vip4]);
    await new Promise((r) => setTimeout(r, 300));
    cap.kill('SIGINT');
    // Past the seal limit and the open grace (5 s) of the captured capsule's session.
    await new Promise((r) => setTimeout(r, (LIMIT_S + 5 + 1) * 1000));
    const dropped = (c: Record<string, number>): number => (c['data.expired'] ?? 0) + (c['data.badTag'] ?? 0) + (c['data.replayed'] ?? 0) + (c['data.tooOld'] ?? 0);
    const before = await counters(beta);
    const endpoint = (await alpha.status()).peers.find((p) => p.name === 'beta')!.endpoint!;
    const dst = endpoint.startsWith('[') ? endpoint.slice(1, endpoint.indexOf(']')) : endpoint.split(':')[0]!;
    const out = JSON.parse(await alpha.host.run(process.execPath, [join(TOOLS, 'capsules.js'), pcap, dst, '30000'])) as { found: boolean };
    assert.equal(out.found, true, 'a capsule was captured');
    let after: Record<string, number> = {};
    await waitFor('the replayed capsules counted', async () => {
      after = await counters(beta);
      return dropped(after) - dropped(before) >= 2;
    }, 5000).catch((err: Error) => assert.fail(`${err.message}: ${interesting(after)}`));
    const p = await alpha.host.exec('ping', ['-c', '2', '-i', '0.2', '-W', '2', b.vip4]);
    assert.equal(p.code, 0, 'traffic still flows');
  });
});
