// Handover benchmark: how long after a node's new address appears do packets reach it again through the overlay,
// for each kind of move, as the median of repeated moves. Runs in its own namespaces and removes them.
//
//   [cloud] ── global ── [beta] dual-stack: UDP probe every 2 ms to alpha's virtual IPv4
//                   └─── [home] NAPT (eim) ── LAN
//   [alpha] moves round: global v4 → home (NAPT) → global v6-only → global dual → global v4 → …
//   then, each round, alpha and beta move at once (both to fresh global dual-stack addresses).
//
// t0 = the first netlink event announcing alpha's new global address (`ip -o monitor address` in alpha's
// namespace, timestamped as its line arrives here); t1 = arrival (in alpha's namespace) of the first probe after
// the outage. handover = t1 − t0. The node's own figure (first netlink event → first EndpointUpdateAck) is
// printed beside it. Namespaces share one clock, so the times compare directly.
//
// usage: node dist/bench/handover.js [--rounds N]   (default 5, at most 20)

import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO, CloudProc, NodeProc, waitFor, workDir } from '../test/harness/cluster.js';
import { Testbed, type Site } from '../test/harness/netns/index.js';
import { median } from './lib/measure.js';

const roundsArg = process.argv.indexOf('--rounds');
const ROUNDS = Math.min(20, Math.max(1, roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : 5));
const PROBE = join(REPO, 'dist', 'bench', 'lib', 'probe.js');
const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)');
  const tb = await Testbed.create();
  const work = workDir('handover');
  const stops: (() => void)[] = [];
  try {
    const cloud = new CloudProc(await tb.addHost('cloud', { site: tb.global, family: 'dual' }), work.dir);
    await cloud.init();
    await cloud.start();
    stops.push(() => cloud.child?.kill('SIGKILL'));
    const home = await tb.addSite('home', { kind: 'napt', nat: 'eim' });
    const beta = new NodeProc(await tb.addHost('beta', { site: tb.global, family: 'dual' }), work.dir, 'beta');
    const alpha = new NodeProc(await tb.addHost('alpha', { site: tb.global, family: 'v4' }), work.dir, 'alpha');
    for (const n of [beta, alpha]) {
      n.start(await cloud.enroll(n.name));
      stops.push(() => n.child?.kill('SIGKILL'));
    }
    const [, a] = await Promise.all([beta.waitRegistered(), alpha.waitRegistered()]);
    await waitFor('tunnel', async () => (await beta.host.exec('ping', ['-c', '1', '-W', '1', a.vip4!])).code === 0, 20_000);

    // Arrivals after a silence, as seen in alpha's namespace.
    const recv = alpha.host.spawn(process.execPath, [PROBE, 'recv', a.vip4!, '9999', '20']);
    stops.push(() => recv.kill('SIGKILL'));
    const arrivals: number[] = [];
    createInterface({ input: recv.stdout! }).on('line', (l) => arrivals.push(Number(l)));
    recv.stderr!.resume();
    // Netlink events in alpha's namespace: new global addresses, timestamped here.
    const mon = alpha.host.spawn('ip', ['-o', 'monitor', 'address']);
    stops.push(() => mon.kill('SIGKILL'));
    const added: number[] = [];
    const addedBeta: number[] = [];
    for (const [host, list] of [[alpha.host, added], [beta.host, addedBeta]] as const) {
      const m = host === alpha.host ? mon : host.spawn('ip', ['-o', 'monitor', 'address']);
      if (m !== mon) stops.push(() => m.kill('SIGKILL'));
      createInterface({ input: m.stdout! }).on('line', (l) => {
        if (!l.startsWith('Deleted') && / scope global/.test(l) && !/cyp0/.test(l)) list.push(now());
      });
      m.stderr!.resume();
    }
    await sleep(300);
    const send = beta.host.spawn(process.execPath, [PROBE, 'send', a.vip4!, '9999', '2', String(60 + ROUNDS * 40)]);
    stops.push(() => send.kill('SIGKILL'));
    send.stdout!.resume();
    send.stderr!.resume();
    await sleep(500);

    const kinds: { to: Site; family: 'v4' | 'v6' | 'dual'; label: string }[] = [
      { to: home, family: 'v4', label: 'global v4 → behind NAPT (eim)' },
      { to: tb.global, family: 'v6', label: 'NAPT → global IPv6-only' },
      { to: tb.global, family: 'dual', label: 'IPv6-only → dual-stack' },
      { to: tb.global, family: 'v4', label: 'dual-stack → global IPv4' },
    ];
    const BOTH = 'both ends at once (fresh global dual)';
    const results = new Map<string, { ext: number[]; node: number[]; lost: number }>();
    for (const k of [...kinds.map((x) => x.label), BOTH]) results.set(k, { ext: [], node: [], lost: 0 });
    for (let r = 0; r < ROUNDS; r++) {
      for (const k of kinds) {
        const start = now();
        await tb.moveHost(alpha.host, k.to, { family: k.family });
        // Up to 3 s for packets to flow again; a move that never recovers counts as lost.
        const t0 = await waitFor('netlink event', async () => added.find((t) => t >= start) ?? null, 3000).catch(() => null);
        const t1 = t0 === null ? null : await waitFor('first probe', async () => arrivals.find((t) => t >= t0) ?? null, 3000).catch(() => null);
        const res = results.get(k.label)!;
        if (t0 === null || t1 === null) res.lost++;
        else res.ext.push(t1 - t0);
        const st = await alpha.status();
        if (st.mobility?.lastHandoverMs != null) res.node.push(st.mobility.lastHandoverMs);
        await sleep(600);
      }
      // Both move: each one's update goes to the other's old address; they meet again through the NMS.
      // t0 = the later of the two new-address events.
      const start = now();
      await Promise.all([tb.moveHost(alpha.host, tb.global, { family: 'dual' }), tb.moveHost(beta.host, tb.global, { family: 'dual' })]);
      const ta = await waitFor('alpha event', async () => added.find((t) => t >= start) ?? null, 3000).catch(() => null);
      const tbeta = await waitFor('beta event', async () => addedBeta.find((t) => t >= start) ?? null, 3000).catch(() => null);
      const t0 = ta === null || tbeta === null ? null : Math.max(ta, tbeta);
      const t1 = t0 === null ? null : await waitFor('first probe', async () => arrivals.find((t) => t >= t0) ?? null, 5000).catch(() => null);
      const res = results.get(BOTH)!;
      if (t0 === null || t1 === null) res.lost++;
      else res.ext.push(t1 - t0);
      await sleep(800);
      await tb.moveHost(alpha.host, tb.global, { family: 'v4' }); // the round starts from global IPv4 again
      await sleep(800);
    }

    const fmt = (x: number | null): string => (x === null ? '—' : x.toFixed(1));
    const rows = [...results.entries()].map(([label, r]) => [label, String(r.ext.length), fmt(r.ext.length ? median(r.ext) : null), fmt(r.ext.length ? Math.max(...r.ext) : null), fmt(r.node.length ? median(r.node) : null), String(r.lost)]);
    const head = ['move', 'n', 'handover median ms', 'max ms', 'node: event→ack median ms', 'not recovered'];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
    const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
    console.log(`handover: first netlink event of the new address → first probe delivered (probe every 2 ms; target ≤ 100 ms), ${ROUNDS} rounds`);
    console.log('(both ends at once: no ack at the stale addresses, so a new route through the NMS and a new handshake)');
    console.log(line(head));
    for (const row of rows) console.log(line(row));
  } finally {
    for (const s of stops.reverse()) s();
    await tb.cleanup();
    work.remove();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
