// Path MTU benchmark (issue #15): TCP throughput through the overlay when both hosts' links have MTU 1500, 1400
// and 1280 (offloads on), next to wireguard-go and Nebula on the same links in the same run; then how long the
// probe search (src/node/dataplane/pmtu.ts) takes to find a black-holed 1280 path (beta's link narrow, no ICMP:
// what exceeds it vanishes at beta's veth).
//
// usage: node dist/bench/pmtu.js [--seconds N (5)] [--only cyphonic,wg,nebula] [--converge N (3 runs)]
// needs root and iperf3 (wireguard-go, wireguard-tools and nebula for those rows; scripts/setup.sh installs them).

import { join } from 'node:path';
import { Testbed, type Host } from '../test/harness/netns/index.js';
import { waitFor, workDir } from '../test/harness/cluster.js';
import { IperfServer, iperfTcp } from './lib/iperf.js';
import { errMsg, median } from './lib/measure.js';
import { setupWireguard } from './lib/wireguard.js';
import { setupNebula } from './lib/nebula.js';
import { setupOverlay } from './lib/cyphonic.js';

type RowKey = 'cyphonic' | 'wg' | 'nebula';
const LABEL: Record<RowKey, string> = { cyphonic: 'cyphonic', wg: 'wireguard-go', nebula: 'Nebula' };
const MTUS = [1500, 1400, 1280];

function parseArgs(argv: string[]): { seconds: number; only: RowKey[]; converge: number } {
  const o = { seconds: 5, only: ['cyphonic', 'wg', 'nebula'] as RowKey[], converge: 3 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (a === '--seconds' || a === '--converge') {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 600) throw new Error(`${a} must be an integer in 0..600`);
      if (a === '--seconds') o.seconds = Math.max(1, n);
      else o.converge = n;
    } else if (a === '--only') {
      const list = v.split(',').map((s) => s.trim());
      for (const r of list) if (!(r in LABEL)) throw new Error(`--only: unknown row "${r}"`);
      o.only = (Object.keys(LABEL) as RowKey[]).filter((r) => list.includes(r));
    } else throw new Error(`unknown option ${a}`);
  }
  return o;
}

async function setMtu(hosts: Host[], mtu: number): Promise<void> {
  for (const h of hosts) await h.run('ip', ['link', 'set', 'eth0', 'mtu', String(mtu)]);
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const work = workDir('bench-pmtu');
  const tb = await Testbed.create();
  const table: Record<RowKey, (string | null)[]> = { cyphonic: [], wg: [], nebula: [] };
  const errors: string[] = [];
  const converge: number[] = [];
  try {
    const cloudHost = await tb.addHost('cloud', { site: tb.global, family: 'dual' });
    const a = await tb.addHost('a', { site: tb.global, family: 'dual' });
    const b = await tb.addHost('b', { site: tb.global, family: 'dual' });
    const server = new IperfServer(b, join(work.dir, 'iperf3-server.log'));
    await server.start();
    let run = 0;
    for (const mtu of MTUS) {
      await setMtu([a, b], mtu);
      for (const key of o.only) {
        process.stderr.write(`bench: ${LABEL[key]} at MTU ${mtu} ...\n`);
        try {
          let target: string;
          let stop: () => Promise<void>;
          if (key === 'cyphonic') {
            const ov = await setupOverlay(cloudHost, [a, b], join(work.dir, `cyp-${run++}`));
            stop = () => ov.stop();
            target = ov.nodes.get('b')!.vip4;
            await waitFor('a reaches b', async () => (await a.exec('ping', ['-c', '1', '-W', '1', target])).code === 0, 20_000, 200);
          } else {
            const pair = key === 'wg' ? await setupWireguard(tb.prefix, a, b, work.dir) : await setupNebula(a, b, work.dir);
            stop = () => pair.stop();
            target = pair.addrB;
          }
          try {
            const r = await iperfTcp(a, target, o.seconds, 1);
            table[key].push(`${r.gbps.toFixed(2)} Gbit/s${r.retransmits !== null ? ` (${r.retransmits} retr)` : ''}`);
          } finally {
            await stop();
          }
        } catch (err) {
          table[key].push(null);
          errors.push(`${LABEL[key]} @${mtu}: ${errMsg(err)}`);
          await server.restart().catch(() => undefined);
        }
      }
    }
    await server.stop();

    // Convergence on a black-holed 1280 path: a stays at 1500, b's link is 1280 (frames over it are dropped there,
    // silently). From the first ping through the tunnel until a's usable MTU toward b fits 1280 (≤ 1208 bytes).
    await setMtu([a], 1500);
    await setMtu([b], 1280);
    for (let i = 0; i < o.converge; i++) {
      process.stderr.write(`bench: probe convergence run ${i + 1}/${o.converge} ...\n`);
      const ov = await setupOverlay(cloudHost, [a, b], join(work.dir, `conv-${i}`));
      try {
        const vip = ov.nodes.get('b')!.vip4;
        await waitFor('a reaches b', async () => (await a.exec('ping', ['-c', '1', '-W', '1', vip])).code === 0, 20_000, 50);
        const t0 = Date.now();
        await waitFor('a probes the path down', async () => {
          const p = (await ov.peers('a')).find((x) => x.name === 'b') as { pmtu?: number | null } | undefined;
          return p?.pmtu != null && p.pmtu <= 1280 - 20 - 52;
        }, 30_000, 50);
        converge.push(Date.now() - t0);
      } catch (err) {
        errors.push(`convergence run ${i + 1}: ${errMsg(err)}`);
      } finally {
        await ov.stop();
      }
    }
  } finally {
    await tb.cleanup();
    work.remove();
  }

  const w = 26;
  process.stdout.write(`\nTCP, 1 stream, ${o.seconds} s, a -> b, both links at the MTU shown (offloads on)\n`);
  process.stdout.write(`${'tunnel'.padEnd(16)}${MTUS.map((m) => `MTU ${m}`.padEnd(w)).join('')}\n`);
  for (const key of o.only) process.stdout.write(`${LABEL[key].padEnd(16)}${table[key].map((c) => (c ?? 'failed').padEnd(w)).join('')}\n`);
  if (converge.length > 0) {
    process.stdout.write(`\nPLPMTUD on a black-holed 1280 path (no ICMP): converged in ${converge.map((m) => `${m} ms`).join(', ')} (median ${median(converge)} ms)\n`);
  }
  for (const e of errors) process.stdout.write(`error: ${e}\n`);
}

main().catch((err) => {
  process.stderr.write(`bench/pmtu: ${errMsg(err)}\n`);
  process.exit(1);
});
