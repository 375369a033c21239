// A LAN for an adapter in the netns testbed: one switch namespace with a bridge, the adapter's LAN interface and one
// namespace per general node (a device that runs no cyphonic, only Debian's DHCP clients, dig, ping).
//
//   [adapter host]──lan0 ═══ br0 in <prefix>-sw ═══ eth0──[<prefix>-<device>]  (one per general node, fixed MAC)
//
// Namespaces are named with the testbed's prefix, so a crashed run's leftovers are swept with the testbed's; cleanup()
// kills every process in them (DHCP clients included) and deletes them.

import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
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
