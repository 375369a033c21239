// Policy benchmark: what the data-plane filter costs. Two nodes on one testbed; TCP throughput a → b (iperf3, 1
// stream) under (1) the fresh cloud's allow-all policy (the filter's "*" fast path), (2) a 100-rule policy whose
// rules all concern a → b (b's filter scans 100 port ranges per packet; tcp:5201 is the last), alternating, each
// repeated; also how long a policy change takes to reach b's filter (PolicyUpdate, no restart). Prints a table.
//
// usage: node dist/bench/policy.js [--seconds N (8)] [--repeat N (3)]
// needs root and iperf3.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Testbed } from '../test/harness/netns/index.js';
import { cyphonic, waitFor, workDir } from '../test/harness/cluster.js';
import { IperfServer, iperfTcp } from './lib/iperf.js';
import { median } from './lib/measure.js';
import { setupOverlay } from './lib/cyphonic.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return dflt;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 1 || n > 600) throw new Error(`${name} must be an integer 1..600`);
  return n;
}

async function main(): Promise<void> {
  const seconds = arg('--seconds', 8);
  const repeat = arg('--repeat', 3);
  const work = workDir('bench-policy');
  const tb = await Testbed.create();
  try {
    const cloudHost = await tb.addHost('cloud', { site: tb.global, family: 'dual' });
    const a = await tb.addHost('a', { site: tb.global, family: 'dual' });
    const b = await tb.addHost('b', { site: tb.global, family: 'dual' });
    const overlay = await setupOverlay(cloudHost, [a, b], work.dir);
    const dir = overlay.cloud.dir;
    await cyphonic(cloudHost, ['cloud', 'tags', 'a', '--set', 'src', '--dir', dir]);
    await cyphonic(cloudHost, ['cloud', 'tags', 'b', '--set', 'dst', '--dir', dir]);
    const rules = Array.from({ length: 100 }, (_, i) => ({ from: ['tag:src'], to: ['tag:dst'], ports: [i === 99 ? 'tcp:5201' : `tcp:${10_000 + i}`] }));
    const files = { allowAll: join(work.dir, 'all.json'), hundred: join(work.dir, '100.json') };
    writeFileSync(files.allowAll, JSON.stringify({ allow: [{ from: ['*'], to: ['*'], ports: ['*'] }] }));
    writeFileSync(files.hundred, JSON.stringify({ allow: rules }));
    const server = new IperfServer(b, join(work.dir, 'iperf3.log'));
    await server.start();
    const vipB = overlay.nodes.get('b')!.vip4;
    // The first packet sets up the tunnel.
    await waitFor('tunnel a → b', async () => (await a.exec('ping', ['-c', '1', '-W', '1', vipB])).code === 0, 20_000);
    const allowed = async (): Promise<string[] | null | undefined> => ((await overlay.nodes.get('b')!.proc.status()).peers.find((p) => p.name === 'a') as { allowed?: string[] | null } | undefined)?.allowed;
    const results: Record<'allowAll' | 'hundred', number[]> = { allowAll: [], hundred: [] };
    const propagation: number[] = [];
    for (let r = 0; r < repeat; r++) {
      for (const which of ['allowAll', 'hundred'] as const) {
        const t0 = Date.now();
        await cyphonic(cloudHost, ['cloud', 'policy', 'set', files[which], '--dir', dir]);
        await waitFor(`b's filter takes the ${which} policy`, async () => {
          const al = await allowed();
          return which === 'allowAll' ? al?.[0] === '*' : al?.length === 100;
        }, 10_000, 50);
        propagation.push(Date.now() - t0);
        const res = await iperfTcp(a, vipB, seconds);
        results[which].push(res.gbps);
        process.stderr.write(`bench: ${which} run ${r + 1}: ${res.gbps.toFixed(3)} Gbit/s (retransmits ${res.retransmits})\n`);
      }
    }
    const filter = (await overlay.nodes.get('b')!.proc.status()).counters;
    await server.stop();
    await overlay.stop();
    const m0 = median(results.allowAll);
    const m1 = median(results.hundred);
    process.stdout.write(`\nTCP a → b, 1 stream, ${seconds} s × ${repeat} (median Gbit/s)\n`);
    process.stdout.write(`  allow-all policy           ${m0.toFixed(3)}   runs ${results.allowAll.map((x) => x.toFixed(2)).join(' ')}\n`);
    process.stdout.write(`  100-rule policy (filtered) ${m1.toFixed(3)}   runs ${results.hundred.map((x) => x.toFixed(2)).join(' ')}\n`);
    process.stdout.write(`  cost of the filter         ${(100 * (1 - m1 / m0)).toFixed(1)} %\n`);
    process.stdout.write(`policy set → b's filter updated: median ${median(propagation)} ms (max ${Math.max(...propagation)} ms, ${propagation.length} changes)\n`);
    process.stdout.write(`b's filter counters: ${JSON.stringify(Object.fromEntries(Object.entries(filter).filter(([k]) => k.startsWith('filter.'))))}\n`);
  } finally {
    await tb.cleanup();
    work.remove();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/policy: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
