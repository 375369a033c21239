// Ping RTT through the data plane against plain veth, interleaved in rounds on one testbed (the machine is shared
// and noisy: alternating them and taking medians keeps the comparison fair). Also the CPU the two node daemons
// burn per ping, so a latency trick that spins shows its price. With --floor, two more columns: the same ping
// through bench/floor/relay.c, a bare C TUN ⇄ UDP relay, without crypto and with AES-256-GCM — what any user-space
// tunnel pays on this machine in wake-ups and kernel crossings, and with a cipher (built here with gcc against
// Node's OpenSSL headers and the system libcrypto).
//
//   round i:  ping a -> b (veth)  ─►  [C relay plain, C relay GCM]  ─►  ping a -> b's virtual IP (cyphonic)
//   … R rounds, medians of medians
//
// usage: node dist/bench/rtt.js [--rounds N (5)] [--count N (100)] [--interval S (0.01)] [--no-offload] [--floor]
// needs root (network namespaces).

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Testbed, type Host } from '../test/harness/netns/index.js';
import { workDir } from '../test/harness/cluster.js';
import { cpuDelta, cpuSnapshot, median, pingMedian } from './lib/measure.js';
import { setupOverlay, type Overlay } from './lib/cyphonic.js';

interface Options {
  rounds: number;
  count: number;
  interval: string;
  nodeArgs: string[];
  floor: boolean;
}

/** Floor relays: TUN, private /30 on it, UDP port, and mode (see bench/floor/relay.c). */
const FLOORS = [
  { tun: 'flr0', a: '10.254.0.1', b: '10.254.0.2', port: '40000', plain: true },
  { tun: 'flr1', a: '10.254.0.5', b: '10.254.0.6', port: '40001', plain: false },
] as const;
type Floor = (typeof FLOORS)[number];

/** Builds bench/floor/relay.c into `dir`; throws with the compiler's message when it cannot. */
function buildFloorRelay(dir: string): string {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const src = join(root, 'bench', 'floor', 'relay.c');
  const out = join(dir, 'floor-relay');
  const include = join(dirname(dirname(process.execPath)), 'include', 'node');
  execFileSync('gcc', ['-O2', '-I', include, '-o', out, src, '-l:libcrypto.so.3'], { stdio: ['ignore', 'ignore', 'inherit'] });
  return out;
}

/** Starts one floor relay in a and b (bounded: it exits by itself after `seconds`) and addresses its TUNs. */
async function startFloor(bin: string, f: Floor, a: Host, b: Host, seconds: number): Promise<void> {
  const key = randomBytes(32).toString('hex');
  const mode = f.plain ? ['plain'] : [];
  a.spawn(bin, [f.tun, b.addr4!, f.port, key, String(seconds), ...mode], { stdio: 'ignore' });
  b.spawn(bin, [f.tun, a.addr4!, f.port, key, String(seconds), ...mode], { stdio: 'ignore' });
  for (const [h, addr] of [[a, f.a], [b, f.b]] as const) {
    for (let i = 0; ; i++) {
      const r = await h.exec('ip', ['link', 'set', f.tun, 'up']);
      if (r.code === 0) break;
      if (i > 50) throw new Error(`floor relay did not create ${f.tun} in ${h.name}`);
      await new Promise((res) => setTimeout(res, 20));
    }
    await h.run('ip', ['addr', 'add', `${addr}/30`, 'dev', f.tun]);
  }
}

function parseArgs(argv: string[]): Options {
  const o: Options = { rounds: 5, count: 100, interval: '0.01', nodeArgs: [], floor: false };
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
    else if (a === '--floor') o.floor = true;
    else throw new Error(`unknown argument ${a}\nusage: node dist/bench/rtt.js [--rounds N] [--count N] [--interval S] [--no-offload] [--floor]`);
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
    if (o.floor) {
      const cellSeconds = (o.count + 3) * Number(o.interval) + 2;
      const bin = buildFloorRelay(work.dir);
      for (const f of FLOORS) await startFloor(bin, f, a, b, Math.ceil(o.rounds * 4 * cellSeconds + 30));
    }
    const veth: number[] = [];
    const floors: number[][] = FLOORS.map(() => []);
    const cyp: number[] = [];
    let cpuTotal = 0;
    process.stdout.write(`ping a -> b, ${o.count} pings every ${o.interval} s per cell, ${o.rounds} rounds${o.nodeArgs.length ? ` (node ${o.nodeArgs.join(' ')})` : ''}\n`);
    process.stdout.write(`round  veth ms${o.floor ? '  C plain ms  C GCM ms' : ''}  cyphonic ms  added us  node CPU us/ping\n`);
    for (let r = 0; r < o.rounds; r++) {
      const v = await pingMedian(a, b.addr4!, o.count, o.interval);
      let fcol = '';
      if (o.floor) {
        for (const [i, f] of FLOORS.entries()) {
          const m = (await pingMedian(a, f.b, o.count, o.interval)).median;
          floors[i]!.push(m);
          fcol += `  ${m.toFixed(3).padStart(i === 0 ? 10 : 8)}`;
        }
      }
      const before = cpuSnapshot(roots);
      const c = await pingMedian(a, vipB, o.count, o.interval);
      const secs = cpuDelta(before, cpuSnapshot(roots));
      cpuTotal += secs;
      const cpu = (secs * 1e6) / (o.count + 3); // pingMedian sends 3 warm-up pings; clock ticks are 10 ms
      veth.push(v.median);
      cyp.push(c.median);
      process.stdout.write(`${String(r + 1).padStart(5)}  ${v.median.toFixed(3).padStart(7)}${fcol}  ${c.median.toFixed(3).padStart(11)}  ${((c.median - v.median) * 1000).toFixed(0).padStart(8)}  ${cpu.toFixed(0).padStart(16)}\n`);
    }
    const added = cyp.map((c, i) => (c - veth[i]!) * 1000);
    const floorText = o.floor
      ? FLOORS.map((f, i) => `, C relay ${f.plain ? 'plain' : 'GCM'} ${median(floors[i]!).toFixed(3)} ms (adds ${median(floors[i]!.map((x, j) => (x - veth[j]!) * 1000)).toFixed(0)} us)`).join('')
      : '';
    process.stdout.write(`median: veth ${median(veth).toFixed(3)} ms${floorText}, cyphonic ${median(cyp).toFixed(3)} ms, added ${median(added).toFixed(0)} us, node CPU ${((cpuTotal * 1e6) / (o.rounds * (o.count + 3))).toFixed(0)} us per ping over all rounds (both daemons, incl. idle wake-ups)\n`);
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
