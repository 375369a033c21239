// A LAN for an adapter in the netns testbed: one switch namespace with a bridge, the adapter's LAN interface and one
// namespace per general node (a device that runs no cyphonic, only Debian's DHCP clients, dig, ping).
//
//   [adapter host]──lan0 ═══ br0 in <prefix>-sw ═══ eth0──[<prefix>-<device>]  (one per general node, fixed MAC)
//
// The switch is an MLD-snooping one (RFC 4541) with a querier, as many real ones are: multicast to a group no port
// reported (ff02::1:2, ff02::2, solicited-node groups) reaches only the ports that joined it, so the adapter must
// send MLD reports for what it wants to hear, and answer the querier's queries (30 s apart here) to stay in the
// mdb (membership interval 62 s). br0 has an IPv6 link-local address (the querier's source) and
// takes no RAs. Devices run IPv6 duplicate address detection as real hosts do: addDevice returns once the
// link-local address has passed it, and the dhclient script waits for DAD on the address it adds.
//
// Namespaces are named with the testbed's prefix, so a crashed run's leftovers are swept with the testbed's; cleanup()
// kills every process in them (DHCP clients included) and deletes them.

import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Host, type Testbed } from './netns/index.js';
import { deleteNetnsSync } from './netns/cleanup.js';
import { GroupTracker, runChecked } from './netns/proc.js';

/** Tunable: the switch's MLD Query Response Interval (centiseconds; the kernel's default is 10 s). */
const QUERY_RESPONSE_CS = 200;
/**
 * The switch's MLD timers (centiseconds), shorter than the defaults (125 s queries, 260 s membership) but in the
 * RFC 3810 §9 relation (membership = robustness 2 × query interval + response interval): a listener that does not
 * answer queries drops out of the mdb within about a minute, i.e. during the e2e run.
 */
const MLD_TIMERS = [
  'mcast_query_response_interval', String(QUERY_RESPONSE_CS),
  'mcast_query_interval', '3000',
  'mcast_startup_query_interval', '750',
  'mcast_membership_interval', String(2 * 3000 + QUERY_RESPONSE_CS),
];
/** Tunable: how long a device may take for DAD of one address (ms): RFC 4862 defaults take ~1-2 s. */
const DAD_WAIT_MS = 10_000;

export class Lan {
  /** The switch port (in the switch namespace) of the adapter's LAN interface. */
  readonly adapterPort = 'p1';
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
    await runChecked('ip', ['-n', sw, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0', 'mcast_snooping', '1', 'mcast_mld_version', '2', 'mcast_querier', '0', ...MLD_TIMERS]);
    await runChecked('ip', ['netns', 'exec', sw, 'sysctl', '-q', '-w', 'net.ipv6.conf.br0.accept_ra=0']);
    await runChecked('ip', ['-n', sw, 'link', 'set', 'br0', 'up']);
    await lan.plug(adapter.ns, ifname, null);
    // The querier needs a usable (non-tentative) IPv6 source; turning it on then sends the first query at once. The
    // bridge floods unregistered multicast for one Query Response Interval more (listeners' time to report), then
    // filters: wait that out, so nothing after create() runs on a flooding switch.
    await waitDad(sw, 'br0');
    await runChecked('ip', ['-n', sw, 'link', 'set', 'br0', 'type', 'bridge', 'mcast_querier', '1']);
    await new Promise((r) => setTimeout(r, QUERY_RESPONSE_CS * 10 + 500));
    return lan;
  }

  /** A device namespace `<prefix>-<name>` with eth0 (MAC `mac`) on the LAN, IPv6 RAs accepted by the kernel. */
  async addDevice(name: string, mac: string): Promise<Host> {
    const ns = `${this.tb.prefix}-${name}`;
    await this.ns(ns);
    await runChecked('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.accept_ra=1', 'net.ipv6.conf.default.accept_ra=1', 'net.ipv6.conf.all.forwarding=0']);
    await this.plug(ns, 'eth0', mac);
    await runChecked('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.eth0.accept_ra=1']);
    await waitDad(ns, 'eth0');
    // `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf: DHCP client scripts write there.
    const etc = join('/etc/netns', ns);
    mkdirSync(etc, { recursive: true });
    writeFileSync(join(etc, 'resolv.conf'), '');
    this.etc.push(etc);
    return new Host(name, ns, this.tracker);
  }

  /** `bridge mdb show` of the switch: the groups each port reported (and the router ports). */
  mdb(): Promise<string> {
    return runChecked('bridge', ['-n', this.sw, 'mdb', 'show', 'dev', 'br0']);
  }

  /** `ip -d link show br0`: the bridge's snooping and querier settings. */
  bridgeDetails(): Promise<string> {
    return runChecked('ip', ['-n', this.sw, '-d', 'link', 'show', 'br0']);
  }

  /** The groups the switch forwards to `port` (default: the adapter's), from its mdb. */
  async portGroups(port = this.adapterPort): Promise<string[]> {
    const out: string[] = [];
    for (const line of (await this.mdb()).split('\n')) {
      const m = /\bport (\S+) grp (\S+)/.exec(line);
      if (m && m[1] === port) out.push(m[2]!);
    }
    return out;
  }

  /**
   * Whether the switch's port toward the adapter sends what a wire carries: `true` turns its TSO off, so a device's
   * TCP super-frames are cut to MTU-sized frames there, as a physical link delivers them, and a veth then lets the
   * adapter's `lan0` run GRO on what arrives (a veth receives through its NAPI, where GRO runs, only frames its peer
   * could not have sent whole). `false` gives the default back: super-frames pass through to the adapter.
   */
  async wireToAdapter(on: boolean): Promise<void> {
    await runChecked('ip', ['netns', 'exec', this.sw, 'ethtool', '-K', this.adapterPort, 'tso', on ? 'off' : 'on']);
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
    // Default offloads: a device's veth hands the adapter TSO super-frames (up to 64 KiB) and leaves checksums to
    // offload, as a NIC's GRO and a local sender would; the adapter must cut and complete them.
    await runChecked('ip', ['-n', ns, 'link', 'set', ifname, 'up']);
  }
}

/**
 * Waits until `ifname` in `ns` has IPv6 addresses and none is tentative (DAD done); throws on a dadfailed one.
 * `address`: wait for that address only (it must be present).
 */
export async function waitDad(ns: string, ifname: string, address?: string, timeoutMs = DAD_WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = (await runChecked('ip', ['-n', ns, '-6', '-o', 'addr', 'show', 'dev', ifname])).split('\n').filter((l) => l.includes('inet6 '));
    const mine = address ? lines.filter((l) => l.includes(`inet6 ${address}/`)) : lines;
    const failed = mine.find((l) => l.includes('dadfailed'));
    if (failed) throw new Error(`DAD failed in ${ns}: ${failed.trim()}`);
    if (mine.length && !mine.some((l) => l.includes('tentative'))) return;
    if (Date.now() > deadline) throw new Error(`DAD not done in ${ns} on ${ifname} after ${timeoutMs} ms:\n${lines.join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A dhclient -sf script that sets the address (and default route) it is given and records what it got. Like
 * Debian's, it waits for DAD: on the link-local before DHCPv6 starts (PREINIT6), on the leased address after adding
 * it (BOUND6…); a duplicate is recorded as DADFAILED and the script exits 3.
 */
function dhclientScript(dir: string): { script: string; record: string } {
  const record = join(dir, 'dhclient.record');
  const script = join(dir, 'dhclient-script.sh');
  writeFileSync(
    script,
    `#!/bin/sh
echo "$reason ip=$new_ip_address mask=$new_subnet_mask routers=$new_routers dns=$new_domain_name_servers domain=$new_domain_name ip6=$new_ip6_address plen=$new_ip6_prefixlen dns6=$new_dhcp6_name_servers search6=$new_dhcp6_domain_search" >> ${record}
dad_wait() {
  i=0
  while [ $i -lt 100 ]; do
    out=$(ip -6 -o addr show dev "$interface" $1)
    case "$out" in *dadfailed*) return 1 ;; esac
    case "$out" in *tentative*) ;; *) [ -n "$out" ] && return 0 ;; esac
    sleep 0.1; i=$((i+1))
  done
  return 1
}
case "$reason" in
  PREINIT6)
    dad_wait "scope link" || { echo "DADFAILED link-local" >> ${record}; exit 3; } ;;
  BOUND|RENEW|REBIND|REBOOT)
    ip -4 addr flush dev "$interface" scope global
    ip -4 addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
    for r in $new_routers; do ip -4 route replace default via "$r" dev "$interface"; break; done ;;
  BOUND6|RENEW6|REBIND6|REBOOT6)
    ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface"
    dad_wait "to $new_ip6_address" || { echo "DADFAILED ip6=$new_ip6_address" >> ${record}; exit 3; } ;;
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
