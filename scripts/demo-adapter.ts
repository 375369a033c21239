// The demo's adapter part: a device without cyphonic ("printer", a namespace running Debian's dhclient) on the LAN
// of an adapter node, brought into the overlay: it gets its virtual addresses by DHCP, resolves and pings a node by
// name through the adapter, and the node reaches it back by its FQDN.

import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { CLI, type CloudProc, cyphonic, type NodeProc, waitFor } from '../test/harness/cluster.js';
import { dhclient, Lan } from '../test/harness/lan.js';
import type { Testbed } from '../test/harness/netns/index.js';
import { controlGet } from '../src/util/control.js';
import type { AdapterStatus } from '../src/adapter/daemon.js';

const say = (s: string): void => void process.stdout.write(s + '\n');

/** Runs the adapter part; returns a cleanup for the LAN namespaces and the adapter. */
export async function adapterDemo(tb: Testbed, cloud: CloudProc, peer: NodeProc, dir: string): Promise<() => void> {
  const gwHost = await tb.addHost('gw', { site: tb.global, family: 'dual' });
  const lan = await Lan.create(tb, gwHost, 'lan0');
  let gw: ChildProcess | null = null;
  const cleanup = (): void => {
    gw?.kill('SIGTERM');
    lan.cleanup();
  };
  try {
    const mac = '02:70:72:69:6e:74';
    const printer = await lan.addDevice('printer', mac);
    const state = join(dir, 'gw');
    say(`\n== an adapter (gw) with a device that runs no cyphonic (printer, ${mac}) on its LAN`);
    say(`$ cyphonic adapter up --token … --state ${state} --lan lan0   (in ${gwHost.ns})`);
    gw = gwHost.spawn(process.execPath, [CLI, 'adapter', 'up', '--state', state, '--lan', 'lan0', '--token', await cloud.enroll('gw'), '--info-interval', '1'], { logFile: join(dir, 'gw.log') });
    const status = (): Promise<AdapterStatus> => controlGet(join(state, 'adapter.sock'), '/status') as Promise<AdapterStatus>;
    await waitFor('adapter registered', async () => (await status()).registered, 30_000);
    say(`$ cyphonic cloud general-node add printer --mac ${mac} --adapter gw --dir DIR`);
    say((await cyphonic(cloud.host, ['cloud', 'general-node', 'add', 'printer', '--dir', cloud.dir, '--mac', mac, '--adapter', 'gw'])).trim());
    await waitFor('printer registered', async () => (await status()).generalNodes[0]?.registered === true, 30_000);
    say('$ dhclient -4 eth0 && dhclient -6 eth0      (in printer)');
    await dhclient(printer, join(dir, 'printer'), 4);
    await dhclient(printer, join(dir, 'printer'), 6);
    say((await printer.run('ip', ['-br', 'addr', 'show', 'dev', 'eth0'])).trim());
    const st = await status();
    const name = `${peer.name}.cyphonic.internal`;
    say(`$ dig @${st.vip4} ${name} A +short      (in printer: the adapter's DNS)`);
    say((await printer.run('dig', [`@${st.vip4}`, name, 'A', '+short'])).trim());
    const p = await peer.status();
    say(`$ ping -c 3 ${p.vip4}      (in printer)`);
    say((await printer.run('ping', ['-n', '-c', '3', '-i', '0.2', p.vip4!])).trimEnd());
    say(`$ dig @${p.dns} printer.cyphonic.internal AAAA +short && ping -6 …      (in ${peer.name})`);
    const v6 = (await peer.host.run('dig', [`@${p.dns}`, 'printer.cyphonic.internal', 'AAAA', '+short'])).trim();
    say(v6);
    say((await peer.host.run('ping', ['-6', '-n', '-c', '3', '-i', '0.2', v6])).trimEnd());
    say(`\n$ cyphonic adapter status --state ${state}`);
    say((await cyphonic(gwHost, ['adapter', 'status', '--state', state])).trimEnd());
  } catch (err) {
    cleanup();
    throw err;
  }
  return cleanup;
}
