// The demo (README's first command): a cloud (AS+NMS, and a TRS) and four nodes in network namespaces, registered
// and talking: alpha on the global segment, beta and delta behind two NAPT routers, gamma IPv6-only. alpha reaches
// gamma directly, beta and delta meet through a hole punched in both NAPTs, gamma and beta (IPv6-only against an
// IPv4 NAPT) through the TRS; then alpha moves networks under a running TCP transfer (scripts/demo-mobility.ts),
// and an adapter brings a device without cyphonic into the overlay (scripts/demo-adapter.ts).
//
// usage: node dist/scripts/demo.js [--keep]   (--keep: leave everything running until Ctrl-C)

import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CloudProc, cyphonic, NodeProc, waitFor, workDir } from '../test/harness/cluster.js';
import { Testbed } from '../test/harness/netns/index.js';
import { demoMobility } from './demo-mobility.js';
import { adapterDemo } from './demo-adapter.js';

const say = (s: string): void => void process.stdout.write(s + '\n');

async function main(): Promise<void> {
  const why = Testbed.unavailableReason();
  if (why) throw new Error(`the demo builds network namespaces: ${why}`);
  const keep = process.argv.includes('--keep');
  const tb = await Testbed.create();
  const work = workDir('demo');
  let undoAdapter = (): void => {};
  try {
    say('== building the testbed: global segment 198.18.0.0/24 + 2001:db8::/64, two NAPT sites');
    const cloudHost = await tb.addHost('cloud', { site: tb.global, family: 'dual' });
    const site = await tb.addSite('home', { kind: 'napt', nat: 'eim' });
    const office = await tb.addSite('office', { kind: 'napt', nat: 'eim' });
    const hosts = {
      alpha: await tb.addHost('alpha', { site: tb.global, family: 'dual' }),
      beta: await tb.addHost('beta', { site, family: 'v4' }),
      gamma: await tb.addHost('gamma', { site: tb.global, family: 'v6' }),
      delta: await tb.addHost('delta', { site: office, family: 'v4' }),
    };
    say(`   cloud ${cloudHost.addr4} ${cloudHost.addr6}; alpha ${hosts.alpha.addr4} (global); beta ${hosts.beta.addr4} behind NAPT ${site.wan4}; gamma ${hosts.gamma.addr6} (IPv6-only); delta ${hosts.delta.addr4} behind NAPT ${office.wan4}`);

    say('\n$ cyphonic cloud init --dir DIR --advertise ' + [cloudHost.addr4, cloudHost.addr6].join(','));
    const cloud = new CloudProc(cloudHost, work.dir);
    await cloud.init();
    say('$ cyphonic cloud start --dir DIR   (AS on TCP 4501 with TLS 1.3, NMS on UDP 4502, NAT mapping probe on UDP 4505,');
    say('                                     TRS on UDP 4503, REST API and metrics on 127.0.0.1:4580)');
    await cloud.start([]);
    await waitFor('the TRS to register', async () => (JSON.parse(await cyphonic(cloudHost, ['cloud', 'relays', '--dir', cloud.dir, '--json'])) as { live: boolean }[]).some((r) => r.live));

    const nodes: NodeProc[] = [];
    for (const [name, host] of Object.entries(hosts)) {
      const token = await cloud.enroll(name);
      say(`$ cyphonic cloud enroll ${name}  ->  ${token.slice(0, 32)}…`);
      const n = new NodeProc(host, work.dir, name);
      say(`$ cyphonic node up --token … --state ${n.state}   (in ${host.ns})`);
      n.start(token);
      nodes.push(n);
    }
    const t0 = Date.now();
    await Promise.all(nodes.map((n) => n.waitRegistered()));
    say(`\n== all nodes enrolled, logged in and registered in ${Date.now() - t0} ms\n`);

    say('$ cyphonic cloud nodes --dir DIR');
    say(await cyphonic(cloudHost, ['cloud', 'nodes', '--dir', cloud.dir]));
    // Nodes talking by name: each namespace's resolver is its node's overlay DNS (on the node's virtual IPv4).
    // alpha (dual-stack) -> gamma (IPv6-only underlay), and beta (behind NAPT) -> alpha.
    const [alpha, beta, gamma, delta] = nodes as [NodeProc, NodeProc, NodeProc, NodeProc];
    const talk = async (from: NodeProc, to: NodeProc, families: ('4' | '6')[]): Promise<void> => {
      const st = await from.status();
      const etc = join('/etc/netns', from.host.ns);
      mkdirSync(etc, { recursive: true });
      writeFileSync(join(etc, 'resolv.conf'), `nameserver ${st.dns}\n`);
      try {
        const name = `${to.name}.cyphonic.internal`;
        say(`\n$ dig @${st.dns} ${name} AAAA +short      (in ${from.name}: the overlay resolver)`);
        say((await from.host.run('dig', [`@${st.dns}`, name, 'AAAA', '+short'])).trim());
        for (const f of families) {
          say(`$ ping -${f} -c 3 ${name}      (in ${from.name})`);
          say((await from.host.run('ping', [`-${f}`, '-n', '-c', '3', '-i', '0.2', name])).trimEnd());
        }
      } finally {
        rmSync(etc, { recursive: true, force: true });
      }
    };
    await talk(alpha, gamma, ['4', '6']);
    await talk(beta, alpha, ['4']);
    say('\n== beta and delta sit behind two different NAPTs that keep ports: the NMS has both punch a hole');
    await talk(beta, delta, ['4', '6']);
    say('\n== gamma (IPv6-only) and beta (IPv4 behind NAPT) share no family: the NMS relays them through the TRS');
    await talk(gamma, beta, ['6', '4']);
    for (const n of [alpha, beta, gamma]) {
      say(`\n$ cyphonic node status --state ${n.state}   (${n.name})`);
      say((await cyphonic(n.host, ['node', 'status', '--state', n.state])).trimEnd());
    }
    await demoMobility(tb, alpha, gamma, say);
    undoAdapter = await adapterDemo(tb, cloud, alpha, work.dir);
    if (keep) {
      say(`\n--keep: running; state and logs in ${work.dir}. Ctrl-C to stop and clean up.`);
      await new Promise<void>((r) => process.once('SIGINT', () => r()));
    }
  } finally {
    undoAdapter();
    await tb.cleanup();
    work.remove();
  }
  say('\n== cleaned up');
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
