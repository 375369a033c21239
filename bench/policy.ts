// Policy benchmark: what the data-plane filter costs. Two nodes on one testbed; TCP throughput a → b (iperf3, 1
// stream) under (1) the fresh cloud's allow-all policy (the filter's "*" fast path), (2) a 100-rule policy whose
// rules all concern a → b (b's filter: a flow-table lookup, then one bit of its port bitmap per packet; tcp:5201 is
// the last rule), alternating, each repeated; also how long a policy change takes to reach b's filter (PolicyUpdate,
// no restart). Prints a table.
//
// usage: node dist/bench/policy.js [--seconds N (8)] [--repeat N (3)]   (prints each mode's median, spread and runs)
// needs root and iperf3.
//
// With --fanout N (no root needed): time from `policy set` to enforcement on N nodes. One NMS in this process on an
// in-memory SQLite store, N simulated nodes speaking the real sealed protocol (NmsClient: registration, Direction
// Requests to their ring neighbour, Route Confirmations, PolicyUpdate acks); each policy change is timed until every
// node holds the new rules for each of its peers. Repeated --repeat times.
//
// With --micro [--gbps G (2)] (no root needed): the C filter alone, ns per packet for no rules / "*" / 8 / 100 port
// ranges, inbound and outbound, and that cost as a share of one 1400-byte packet's time at G Gbit/s.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Testbed } from '../test/harness/netns/index.js';
import { cyphonic, waitFor, workDir } from '../test/harness/cluster.js';
import { IperfServer, iperfTcp } from './lib/iperf.js';
import { median } from './lib/measure.js';
import { setupOverlay } from './lib/cyphonic.js';
import { randomBytes } from 'node:crypto';
import { NmsService } from '../src/cloud/nms/service.js';
import { deliverRouteDirections, NmsClient } from '../src/node/signaling.js';
import { endpointKey, type Endpoint } from '../src/protocol/endpoint.js';
import { setPolicy } from '../src/policy/store.js';
import { openStore } from '../src/store/index.js';
import { silentLogger } from '../src/util/log.js';
import { loadNativeAddon, nativeLoadError } from '../src/native/addon.js';
import { createFilterStats, rulesFromAllowIn } from '../src/node/dataplane/filter.js';
import { intArg } from './lib/args.js';

/** `policy set` → every one of `n` simulated nodes holds the new rules for all its peers (ms per change). */
async function fanout(n: number, repeat: number): Promise<void> {
  const store = await openStore(':memory:');
  const clients = new Map<string, NmsClient>();
  const service = new NmsService({ domain: 'cyphonic.internal' }, { store, logger: silentLogger, send: (d, to) => clients.get(endpointKey(to))?.handleDatagram(d) });
  service.watchPolicy(); // the real interval
  /** node name → peer id → allowIn it last heard. */
  const heard = new Map<string, Map<number, string>>();
  const names: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const name = `n${i}`;
      const ep: Endpoint = { address: `198.18.${(i >> 8) & 255}.${i & 255}`, port: 30000 };
      const node = await store.createNode({ name, kind: 'node' }, { v4: '100.64.0.0/10', v6: 'fd00:1:2::/48' });
      await store.setNodeTags(name, ['fleet']);
      const key = randomBytes(32);
      await store.putCommonKey({ nodeId: node.id, key, expiresAt: Date.now() + 3_600_000, createdAt: Date.now() });
      await store.addCertificate({ serial: randomBytes(16).toString('hex'), nodeId: node.id, der: Buffer.from(`cert-${name}`), notAfter: Date.now() + 86_400_000, createdAt: Date.now() });
      const client = new NmsClient({ nodeId: node.id, commonKey: key, nms: { address: '198.18.255.1', port: 4502 } }, { send: (m) => void service.handle(m, ep).then((r) => r && client.handleDatagram(r)) });
      const mine = new Map<number, string>();
      heard.set(name, mine);
      deliverRouteDirections(client, (rd) => void client.confirm(rd.pathId, true), silentLogger, (entries) => {
        for (const e of entries) mine.set(e.peerNodeId, e.allowIn);
      });
      clients.set(endpointKey(ep), client);
      await client.register([ep], false);
      names.push(name);
    }
    // A ring: each node has paths with two neighbours.
    for (let i = 0; i < n; i++) {
      await clients.get(endpointKey({ address: `198.18.${(i >> 8) & 255}.${i & 255}`, port: 30000 }))!.direction({ targetFqdn: `${names[(i + 1) % n]}.cyphonic.internal` });
    }
    const times: number[] = [];
    for (let r = 0; r < repeat; r++) {
      const port = 1000 + r;
      const want = `tcp:${port}`;
      const t0 = Date.now();
      await setPolicy(store, JSON.stringify({ allow: [{ from: ['tag:fleet'], to: ['tag:fleet'], ports: [want] }] }));
      await waitFor(`${n} nodes hold the policy`, async () => [...heard.values()].every((m) => m.size >= 2 && [...m.values()].every((v) => v === want)), 20_000, 5);
      times.push(Date.now() - t0);
      process.stderr.write(`bench: change ${r + 1}: ${times.at(-1)} ms\n`);
    }
    process.stdout.write(`policy set → enforced on ${n} nodes (PolicyUpdate to every node, acked; NMS watch every 500 ms): median ${median(times)} ms, max ${Math.max(...times)} ms, ${times.length} changes; pushes ${service.counters.get('policy.push')}, acked ${service.counters.get('policy.acked')}\n`);
  } finally {
    service.close();
    await store.close();
  }
}

/**
 * The filter alone (--micro): ns per 1400-byte TCP segment through the C filter (filterPacket: one N-API call per
 * packet, the same for every mode), inbound (what b does for each segment a sends: flow lookup, then the rules) and
 * outbound (a's side: the flow table keeps its flow alive), for a slot without rules, "*", 8 port ranges (the linear
 * scan) and the bench's 100 ranges (the port bitmap). Modes alternate, `repeat` rounds, median and spread; the cost
 * over "no rules" is then set against the time one packet takes at `gbps`.
 */
function micro(repeat: number, gbps: number): void {
  const native = loadNativeAddon();
  if (!native) throw new Error(`native addon: ${nativeLoadError()}`);
  const modes: Record<string, string | null> = {
    'no rules': null,
    'allow-all "*"': '*',
    '8 port ranges': Array.from({ length: 8 }, (_, i) => (i === 7 ? 'tcp:5201' : `tcp:${10_000 + i}`)).join(','),
    '100 port ranges': Array.from({ length: 100 }, (_, i) => (i === 99 ? 'tcp:5201' : `tcp:${10_000 + 2 * i}`)).join(','),
  };
  const seg = (src: string, dst: string, sport: number, dport: number, flags: number): Buffer => {
    const b = Buffer.alloc(1400);
    b[0] = 0x45;
    b.writeUInt16BE(1400, 2);
    b[8] = 64;
    b[9] = 6;
    Buffer.from(src.split('.').map(Number)).copy(b, 12);
    Buffer.from(dst.split('.').map(Number)).copy(b, 16);
    b.writeUInt16BE(sport, 20);
    b.writeUInt16BE(dport, 22);
    b[32] = 0x50;
    b[33] = flags;
    return b;
  };
  const inbound = seg('100.64.0.1', '100.64.0.2', 40_000, 5201, 0x10);
  const outbound = seg('100.64.0.1', '100.64.0.2', 40_000, 5201, 0x10);
  const N = 1_000_000;
  const ns: Record<string, { in: number[]; out: number[] }> = {};
  for (const [name, allowIn] of Object.entries(modes)) {
    const f = native.filterCreate(4, new Float64Array(createFilterStats()));
    native.filterSet(f, 1, rulesFromAllowIn(allowIn));
    native.filterPacket(f, 1, seg('100.64.0.1', '100.64.0.2', 40_000, 5201, 0x02), true, Date.now()); // a's SYN: the flow
    ns[name] = { in: [], out: [] };
    (ns[name] as unknown as { f: unknown }).f = f;
  }
  for (let r = 0; r < repeat; r++) {
    for (const name of Object.keys(modes)) {
      const f = (ns[name] as unknown as { f: Parameters<typeof native.filterPacket>[0] }).f;
      const now = Date.now();
      for (const [dir, pkt, out] of [['in', inbound, false], ['out', outbound, true]] as const) {
        let pass = 0;
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < N; i++) if (native.filterPacket(f, 1, pkt, out, now)) pass++;
        const t = Number(process.hrtime.bigint() - t0) / N;
        if (pass !== N) throw new Error(`${name}: ${N - pass} packets dropped`);
        ns[name]![dir].push(t);
      }
    }
  }
  const base = { in: median(ns['no rules']!.in), out: median(ns['no rules']!.out) };
  const perPacket = (1400 * 8) / gbps; // ns per 1400-byte packet at `gbps`
  process.stdout.write(`\nC filter, one 1400-byte TCP segment per call, ${N} calls × ${repeat} rounds (median ns; spread = max - min)\n`);
  for (const [name, m] of Object.entries(ns)) {
    const mi = median(m.in);
    const mo = median(m.out);
    const cost = mi - base.in + (mo - base.out);
    process.stdout.write(`  ${name.padEnd(16)} in ${mi.toFixed(1)} (±${(Math.max(...m.in) - Math.min(...m.in)).toFixed(1)})  out ${mo.toFixed(1)} (±${(Math.max(...m.out) - Math.min(...m.out)).toFixed(1)})  filter work over no rules: ${cost.toFixed(1)} ns = ${((100 * cost) / perPacket).toFixed(2)} % of a packet's ${perPacket.toFixed(0)} ns at ${gbps} Gbit/s\n`);
  }
}

const arg = (flag: string, def: number): number => intArg(flag, def, 1, 600);

async function main(): Promise<void> {
  if (process.argv.includes('--fanout')) return fanout(arg('--fanout', 50), arg('--repeat', 5));
  if (process.argv.includes('--micro')) return micro(arg('--repeat', 5), arg('--gbps', 2));
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
    // Spread: (max - min) / median of each mode's runs; a cost smaller than the spread is not told from the noise.
    const spread = (xs: number[], m: number): string => `${((100 * (Math.max(...xs) - Math.min(...xs))) / m).toFixed(1)} %`;
    process.stdout.write(`  allow-all policy           ${m0.toFixed(3)}   spread ${spread(results.allowAll, m0)}   runs ${results.allowAll.map((x) => x.toFixed(2)).join(' ')}\n`);
    process.stdout.write(`  100-rule policy (filtered) ${m1.toFixed(3)}   spread ${spread(results.hundred, m1)}   runs ${results.hundred.map((x) => x.toFixed(2)).join(' ')}\n`);
    process.stdout.write(`  cost of the filter         ${(100 * (1 - m1 / m0)).toFixed(1)} % (median against median; paired runs alternate)\n`);
    const pairs = results.allowAll.map((x, i) => 100 * (1 - results.hundred[i]! / x));
    process.stdout.write(`  per pair                   ${pairs.map((x) => `${x.toFixed(1)} %`).join(' ')} (median ${median(pairs).toFixed(1)} %)\n`);
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
