// A LAN for an adapter in the netns testbed: one switch namespace with a bridge, the adapter's LAN interface and one
// namespace per general node (a device that runs no cyphonic, only Debian's DHCP clients, dig, ping).
//
//   [adapter host]──lan0 ═══ br0 in <prefix>-sw ═══ eth0──[<prefix>-<device>]  (one per general node, fixed MAC)
//
// Namespaces are named with the testbed's prefix, so a crashed run's leftovers are swept with the testbed's; cleanup()
// kills every process in them (DHCP clients included) and deletes them.

import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Host, type Testbed } from './netns/index.js';
import { deleteNetnsSync } from './netns/cleanup.js';
import { GroupTracker, runChecked } from './netns/proc.js';

export class Lan {
  private readonly namespaces: string[] = [];
  private readonly tracker = new GroupTracker();
  private readonly etc: string[] = [];
  private links = 0;

  private constructor(
    readonly tb: Testbed,
    readonly sw: string,
  ) {}

  /** The switch, and `ifname` on `adapter` plugged into it (no addresses: the adapter owns it). */
  static async create(tb: Testbed, adapter: Host, ifname = 'lan0'): Promise<Lan> {
    const sw = `${tb.prefix}-sw${Math.floor(Math.random() * 1000)}`;
    const lan = new Lan(tb, sw);
    await lan.ns(sw);
    await runChecked('ip', ['-n', sw, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0', 'stp_state', '0', 'forward_delay', '0']);
    await runChecked('ip', ['-n', sw, 'link', 'set', 'br0', 'up']);
    await runChecked('ip', ['netns', 'exec', sw, 'sysctl', '-q', '-w', 'net.ipv6.conf.br0.disable_ipv6=1']);
    await lan.plug(adapter.ns, ifname, null);
    return lan;
  }

  /** A device namespace `<prefix>-<name>` with eth0 (MAC `mac`) on the LAN, IPv6 RAs accepted by the kernel. */
  async addDevice(name: string, mac: string): Promise<Host> {
    const ns = `${this.tb.prefix}-${name}`;
    await this.ns(ns);
    await runChecked('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.accept_ra=1', 'net.ipv6.conf.default.accept_ra=1', 'net.ipv6.conf.all.forwarding=0', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    await this.plug(ns, 'eth0', mac);
    await runChecked('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.eth0.accept_ra=1', 'net.ipv6.conf.eth0.accept_dad=0']);
    // `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf: DHCP client scripts write there.
    const etc = join('/etc/netns', ns);
    mkdirSync(etc, { recursive: true });
    writeFileSync(join(etc, 'resolv.conf'), '');
    this.etc.push(etc);
    return new Host(name, ns, this.tracker);
  }

  cleanup(): void {
    this.tracker.killAll();
    deleteNetnsSync([...this.namespaces].reverse());
    for (const e of this.etc) rmSync(e, { recursive: true, force: true });
  }

  private async ns(name: string): Promise<void> {
    await runChecked('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    await runChecked('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  }

  private async plug(ns: string, ifname: string, mac: string | null): Promise<void> {
    const port = `p${++this.links}`;
    await runChecked('ip', ['link', 'add', port, 'netns', this.sw, 'type', 'veth', 'peer', 'name', ifname, 'netns', ns, ...(mac ? ['address', mac] : [])]);
    await runChecked('ip', ['-n', this.sw, 'link', 'set', port, 'master', 'br0', 'up']);
    // Wire-size frames only: a veth peer would otherwise hand the adapter 64 KiB TSO super-frames.
    if (mac) await runChecked('ip', ['-n', ns, 'link', 'set', 'dev', ifname, 'gso_max_segs', '1', 'gso_max_size', '1500']);
    await runChecked('ip', ['-n', ns, 'link', 'set', ifname, 'up']);
  }
}

/** A dhclient -sf script that sets the address (and default route) it is given and records what it got. */
function dhclientScript(dir: string): { script: string; record: string } {
  const record = join(dir, 'dhclient.record');
  const script = join(dir, 'dhclient-script.sh');
  writeFileSync(
    script,
    `#!/bin/sh
echo "$reason ip=$new_ip_address mask=$new_subnet_mask routers=$new_routers dns=$new_domain_name_servers domain=$new_domain_name ip6=$new_ip6_address plen=$new_ip6_prefixlen dns6=$new_dhcp6_name_servers search6=$new_dhcp6_domain_search" >> ${record}
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    ip -4 addr flush dev "$interface" scope global
    ip -4 addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
    for r in $new_routers; do ip -4 route replace default via "$r" dev "$interface"; break; done ;;
  BOUND6|RENEW6|REBIND6|REBOOT6)
    ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" nodad ;;
esac
exit 0
`,
  );
  chmodSync(script, 0o755);
  return { script, record };
}

/** dhclient once in `family` with its own lease/pid/config files; resolves when it has bound (it then stays as a daemon). */
export async function dhclient(host: Host, dir: string, family: 4 | 6): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const { script, record } = dhclientScript(dir);
  const conf = join(dir, 'dhclient.conf');
  writeFileSync(conf, 'timeout 20;\nretry 5;\nrequest subnet-mask, routers, domain-name, domain-name-servers, dhcp6.name-servers, dhcp6.domain-search;\n');
  const r = await host.exec('dhclient', [`-${family}`, '-1', '-v', '-cf', conf, '-sf', script, '-lf', join(dir, `lease${family}`), '-pf', join(dir, `pid${family}`), 'eth0'], { timeoutMs: 40_000 });
  if (r.code !== 0) throw new Error(`dhclient -${family} failed (${r.code}): ${r.stderr.slice(-800)}`);
  return readFileSync(record, 'utf8');
}
