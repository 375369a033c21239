// Ping RTT through the data plane against plain veth, interleaved in rounds on one testbed (the machine is shared
// and noisy: alternating the two and taking medians keeps the comparison fair). Also the CPU the two node daemons
// burn per ping, so a latency trick that spins shows its price.
//
//   round i:  ping a -> b (veth)  ─►  ping a -> b's virtual IP (cyphonic)   … R rounds, medians of medians
//
// usage: node dist/bench/rtt.js [--rounds N (5)] [--count N (100)] [--interval S (0.01)] [--no-offload]
// needs root (network namespaces).

import { Testbed } from '../test/harness/netns/index.js';
import { workDir } from '../test/harness/cluster.js';
import { cpuDelta, cpuSnapshot, median, pingMedian } from './lib/measure.js';
import { setupOverlay, type Overlay } from './lib/cyphonic.js';

interface Options {
  rounds: number;
  count: number;
  interval: string;
  nodeArgs: string[];
}

function parseArgs(argv: string[]): Options {
  const o: Options = { rounds: 5, count: 100, interval: '0.01', nodeArgs: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const int = (min: number, max: number): number => {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${a} must be an integer in ${min}..${max}`);
      return n;
    };
    if (a === '--rounds') o.rounds = int(1, 50);
    else if (a === '--count') o.count = int(5, 10_000);
    else if (a === '--interval') {
      const v = argv[++i] ?? '';
      if (!/^\d+(\.\d+)?$/.test(v) || Number(v) < 0.002) throw new Error('--interval: seconds between pings, >= 0.002');
      o.interval = v;
    } else if (a === '--no-offload') o.nodeArgs.push('--no-offload');
    else throw new Error(`unknown argument ${a}\nusage: node dist/bench/rtt.js [--rounds N] [--count N] [--interval S] [--no-offload]`);
  }
  return o;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const why = Testbed.unavailableReason();
  if (why) throw new Error(why);
  const work = workDir('bench-rtt');
  const tb = await Testbed.create();
  let ov: Overlay | null = null;
  try {
    const a = await tb.addHost('a', { site: tb.global, family: 'dual' });
    const b = await tb.addHost('b', { site: tb.global, family: 'dual' });
    const cloud = await tb.addHost('cloud', { site: tb.global, family: 'dual' });
    ov = await setupOverlay(cloud, [a, b], work.dir, o.nodeArgs);
    const vipB = ov.nodes.get('b')!.vip4;
    const roots = ov.pids(['a', 'b']);
    const veth: number[] = [];
    const cyp: number[] = [];
    const cpuUs: number[] = [];
    let cpuTotal = 0;
    process.stdout.write(`ping a -> b, ${o.count} pings every ${o.interval} s per cell, ${o.rounds} rounds${o.nodeArgs.length ? ` (node ${o.nodeArgs.join(' ')})` : ''}\n`);
    process.stdout.write('round  veth ms  cyphonic ms  added us  node CPU us/ping\n');
    for (let r = 0; r < o.rounds; r++) {
      const v = await pingMedian(a, b.addr4!, o.count, o.interval);
      const before = cpuSnapshot(roots);
      const c = await pingMedian(a, vipB, o.count, o.interval);
      const secs = cpuDelta(before, cpuSnapshot(roots));
      cpuTotal += secs;
      const cpu = (secs * 1e6) / (o.count + 3); // pingMedian sends 3 warm-up pings; clock ticks are 10 ms
      veth.push(v.median);
      cyp.push(c.median);
      cpuUs.push(cpu);
      process.stdout.write(`${String(r + 1).padStart(5)}  ${v.median.toFixed(3).padStart(7)}  ${c.median.toFixed(3).padStart(11)}  ${((c.median - v.median) * 1000).toFixed(0).padStart(8)}  ${cpu.toFixed(0).padStart(16)}\n`);
    }
    const added = cyp.map((c, i) => (c - veth[i]!) * 1000);
    process.stdout.write(`median: veth ${median(veth).toFixed(3)} ms, cyphonic ${median(cyp).toFixed(3)} ms, added ${median(added).toFixed(0)} us, node CPU ${((cpuTotal * 1e6) / (o.rounds * (o.count + 3))).toFixed(0)} us per ping over all rounds (both daemons, incl. idle wake-ups)\n`);
  } finally {
    await ov?.stop();
    await tb.cleanup();
    work.remove();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
