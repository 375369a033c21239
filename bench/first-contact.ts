// First contact: what a user feels the first time one node reaches a peer it has never talked to. One cloud, one
// node `a` and 2×N peers on their own testbed hosts (namespaces on one global segment), all registered and idle.
//   - DNS first contact: an A query for pK.cyphonic.internal at a's overlay resolver, for N peers a has never asked
//     about, timed by a client in a's namespace (bench/lib/dns-time.ts: dig's Query time ticks in 4 ms here); the
//     answer is checked against the peer's vip4; and the same query once more at once;
//   - first ping: `ping` to the vip4 of N other peers a has never reached (route selection + tunnel + one RTT:
//     ping's time= when the first echo is answered, else the wall time to the first answered one);
//   - a's own split for each of those peers from `node status --json`: route selection (Direction Request → Route
//     Direction) and tunnel (Tunnel Request → Response, engine installed), ms;
//   - the ping's RTT once the tunnel is up (median of 5), for scale;
//   - where the first pings' milliseconds go, step by step across initiator, NMS and responder (medians): every
//     process runs with CYPHONIC_TRACE=1 and bench/lib/trace-split.ts reads the steps from their logs
//     (`--no-trace`: off).
// Prints medians, p90 and max over the peers. Peers are contacted one at a time, with a pause between them, so
// each contact is measured alone.
//
// usage: node dist/bench/first-contact.js [--peers N (20)] [--gap-ms MS (200)] [--no-trace]
// needs root (network namespaces).

import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Testbed, type Host } from '../test/harness/netns/index.js';
import { workDir } from '../test/harness/cluster.js';
import { setupOverlay, type Overlay, type PeerStatus } from './lib/cyphonic.js';
import { errMsg, firstContactPing, median, pingMedian } from './lib/measure.js';
import { intArg } from './lib/args.js';
import { firstContactSteps, PUSH_TRACE_STEPS, TRACE_STEPS, type Step } from './lib/trace-split.js';

const DOMAIN = 'cyphonic.internal';

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function summary(label: string, xs: number[], unit: string, digits = 2): string {
  if (xs.length === 0) return `${label.padEnd(60)} n/a`;
  const f = (v: number): string => v.toFixed(digits);
  return `${label.padEnd(60)} median ${f(median(xs))} ${unit}  p90 ${f(pct(xs, 90))}  max ${f(Math.max(...xs))}  (n=${xs.length})`;
}

interface Split {
  route: number[];
  tunnel: number[];
}

async function splitOf(ov: Overlay, peer: string, vip4: string, into: Split): Promise<void> {
  const p = (await ov.peers('a')).find((x: PeerStatus) => x.name === peer || x.vip4 === vip4) as (PeerStatus & { routeSelectionMs?: number | null; tunnelMs?: number | null }) | undefined;
  if (typeof p?.routeSelectionMs === 'number') into.route.push(p.routeSelectionMs);
  if (typeof p?.tunnelMs === 'number') into.tunnel.push(p.tunnelMs);
}

const DNS_TIME = join(dirname(fileURLToPath(import.meta.url)), 'lib', 'dns-time.js');

/** One A query from inside `host`, timed in µs by a client there after an untimed query for a's own name (bench/lib/dns-time.ts). */
async function dnsTime(host: Host, server: string, name: string): Promise<{ us: number; rcode: number; answers: string[] }> {
  const r = await host.exec(process.execPath, [DNS_TIME, server, name, `a.${DOMAIN}`], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`dns-time ${name}: exit ${r.code} ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as { us: number; rcode: number; answers: string[] };
}

async function main(): Promise<void> {
  const n = intArg('--peers', 20, 1, 100);
  const gapMs = intArg('--gap-ms', 200, 0, 10_000);
  const traced = !process.argv.includes('--no-trace');
  if (traced) process.env['CYPHONIC_TRACE'] = '1'; // inherited by the cloud and every node
  const tb = await Testbed.create();
  const work = workDir('bench-first-contact');
  let ov: Overlay | null = null;
  const errors: string[] = [];
  try {
    const cloudHost = await tb.addHost('cloud', { family: 'dual' });
    const hosts: Host[] = [await tb.addHost('a', { family: 'dual' })];
    for (let i = 1; i <= 2 * n; i++) hosts.push(await tb.addHost(`p${i}`, { family: 'dual' }));
    const t0 = Date.now();
    ov = await setupOverlay(cloudHost, hosts, work.dir);
    process.stdout.write(`overlay up: cloud + ${hosts.length} nodes in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    const a = hosts[0]!;
    const na = ov.nodes.get('a')!;
    const resolver = na.dns ?? na.vip4;
    await sleep(1000); // let the last registrations and any pushes settle

    const dnsMs: number[] = [];
    const dnsAgain: number[] = [];
    const dnsSplit: Split = { route: [], tunnel: [] };
    for (let i = 1; i <= n; i++) {
      const name = `p${i}`;
      const want = ov.nodes.get(name)!.vip4;
      try {
        const r = await dnsTime(a, resolver, `${name}.${DOMAIN}`);
        if (r.rcode !== 0 || !r.answers.includes(want)) throw new Error(`${name}.${DOMAIN} -> rcode ${r.rcode} [${r.answers.join(', ')}], want ${want}`);
        dnsMs.push(r.us / 1000);
        // The same name again at once: the query's own cost, with no first-contact work behind it.
        const again = await dnsTime(a, resolver, `${name}.${DOMAIN}`);
        if (again.rcode === 0) dnsAgain.push(again.us / 1000);
      } catch (err) {
        errors.push(`DNS ${name}: ${errMsg(err)}`);
      }
      await sleep(gapMs);
      await splitOf(ov, name, want, dnsSplit).catch(() => undefined);
    }

    const pingMs: number[] = [];
    const how = new Map<string, number>();
    const split: Split = { route: [], tunnel: [] };
    const warm: number[] = [];
    const pinged: string[] = [];
    for (let i = n + 1; i <= 2 * n; i++) {
      const name = `p${i}`;
      const vip4 = ov.nodes.get(name)!.vip4;
      pinged.push(vip4);
      try {
        const r = await firstContactPing(a, vip4);
        pingMs.push(r.ms);
        how.set(r.how, (how.get(r.how) ?? 0) + 1);
        await splitOf(ov, name, vip4, split);
        if (warm.length < 5) warm.push((await pingMedian(a, vip4, 5, '0.05')).median);
      } catch (err) {
        errors.push(`ping ${name}: ${errMsg(err)}`);
      }
      await sleep(gapMs);
    }

    const out: string[] = [];
    out.push('', `cyphonic first contact: node a to ${n} fresh peers by name and ${n} other fresh peers by address`);
    out.push(summary('DNS first contact (A query for pK, client-timed)', dnsMs, 'ms'));
    out.push(summary('DNS, the same name asked again at once', dnsAgain, 'ms'));
    out.push(summary('  route selection started by the query', dnsSplit.route, 'ms'));
    out.push(summary('first ping (route + tunnel + RTT)', pingMs, 'ms'));
    out.push(summary('  route selection (Direction Request -> Route Direction)', split.route, 'ms'));
    out.push(summary('  tunnel (Tunnel Request -> Response, installed)', split.tunnel, 'ms'));
    out.push(summary('ping RTT once the tunnel is up (median of 5)', warm, 'ms', 3));
    for (const [h, c] of how) out.push(`  first ping measured as: ${h} (${c}x)`);
    if (traced) {
      // a's log file is named after its host (test/harness/cluster.ts).
      const traces = [...firstContactSteps(work.dir, 'a', pinged).values()].filter((t) => t !== null);
      out.push('', `where the first pings' time goes (traced steps, medians over ${traces.length} of ${pinged.length} peers):`);
      const total: number[] = traces.map((t) => t.reduce((sum, st) => sum + st.ms, 0));
      // Steps within one thread also say how much of the step that thread spent on a CPU (the rest: waiting to run).
      const stepLines = (steps: readonly string[], of: Step[][]): void =>
        steps.forEach((step, k) => {
          const line = summary(`  ${step}`, of.map((t) => t[k]!.ms), 'ms');
          const cpu = of.map((t) => t[k]!.cpuMs).filter((c): c is number => c !== undefined);
          out.push(cpu.length > 0 ? `${line}  CPU ${median(cpu).toFixed(2)} ms` : line);
        });
      stepLines(TRACE_STEPS, traces);
      out.push(summary('  sum: asked -> session installed at the initiator', total, 'ms'));
      const push = [...firstContactSteps(work.dir, 'a', pinged, 'push').values()].filter((t) => t !== null);
      out.push(`meanwhile at the responder (medians over ${push.length} of ${pinged.length} peers):`);
      stepLines(PUSH_TRACE_STEPS, push);
    }
    for (const e of errors) out.push(`error: ${e}`);
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await ov?.stop();
    await tb.cleanup();
    work.remove();
  }
}

main().catch((err) => {
  process.stderr.write(`bench/first-contact: ${errMsg(err)}\n`);
  process.exitCode = 1;
});
