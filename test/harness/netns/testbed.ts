// Network-namespace testbed for cyphonic e2e tests and the demo: builds a small "Internet" out of
// Linux netns, veth pairs, bridges and nftables NAPT routers, runs commands inside it, and tears it down.
//
//  (example: what the self-test builds, plus a cloud host)
//                         namespace <prefix>-inet  (the "global" segment, forwards v4+v6)
//                  br0 = 198.18.0.1/24 + 2001:db8::1/64  (RFC 2544 / documentation ranges)
//        .------------------+---------------------+-------------------------+--------------------.
//        |                  |                     |                         |                    |
//   eth0 .10 / ::10     eth0 .11 / ::11      eth0 ::12 (v6-only)       wan0 .13 / ::13       wan0 .14 / ::14
//  [<p>-cloud]          [<p>-a] dual-stack   [<p>-b6]                 [<p>-siteA] router    [<p>-siteB] router
//   AS/NMS/TRS           node on global       node on global           nft masquerade        nft masquerade random
//                                                                     ("eim": keeps ports)  (random ports, symmetric)
//                                                                      br0 = 10.1.0.1/24     br0 = 10.2.0.1/24
//                                                                          |                     |
//                                                                      eth0 10.1.0.10        eth0 10.2.0.10
//                                                                      [<p>-n1] v4-only      [<p>-n2] v4-only
//
// Host numbers start at 10 on every segment (.1 is the gateway, .2-.9 reserved) and only grow;
// freed numbers are reused only once a range is exhausted, so moved hosts get fresh addresses
// (no stale ARP/ND entries elsewhere). Routers forward LAN->WAN and established/related replies
// only: unsolicited inbound traffic is dropped, as behind a real NAPT.
// Every namespace: `<prefix>-<name>`; every veth is created with `<prefix>v<n>{a,b}` directly in
// its target namespaces, then the host end is renamed `eth0` (hosts) or `wan0` (routers).
//
// WAN emulation (wan.ts, wan/wanem.c): a host's uplink can sit behind a user-space emulator, a bump in the
// wire in its own namespace `<prefix>-<host>_w` (no addresses, IPv6 off), at addHost (`wan: PROFILE`) or
// later (`impair(host, PROFILE)` re-plugs the running host; `impair(host, null)` plugs it back):
//
//   [<p>-host] eth0 ── lan0 [<p>-host_w: wanem] wan0 ── br0 of the site
//
// The host keeps its addresses; moveHost takes the emulator along. NAPT sites can answer unsolicited inbound
// UDP with ICMP port unreachable (`addSite(..., { unsolicited: 'reject' })`) instead of dropping it silently.

import { execFileSync, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { formatV4, parseV4Cidr, v4Host, v4Overlaps, v6Host, type V4Net } from './addr.js';
import { deleteNetnsSync, listNetnsSync, markerExists, registerTeardown, removeMarker, sweepStale, writeMarker } from './cleanup.js';
import { execBounded, GroupTracker, runChecked, type ExecOptions, type ExecResult } from './proc.js';
import { Wanem, wanProfile, type WanProfile, type WanProfileName, type WanStats } from './wan.js';

export type { ExecResult, ExecOptions } from './proc.js';

export type Family = 'dual' | 'v4' | 'v6';
export type NatKind = 'eim' | 'random';

export const GLOBAL_V4 = '198.18.0.0/24';
export const GLOBAL_V6 = '2001:db8::/64';

export interface Site {
  readonly name: string;
  readonly kind: 'global' | 'napt';
  /** Namespace holding the segment's bridge `br0` (the router's namespace for NAPT sites). */
  readonly ns: string;
  /** The NAPT router (absent for the global segment; see `Testbed.inet` for its namespace). */
  readonly router?: Host;
  /** IPv4 prefix of the segment, e.g. '198.18.0.0/24' or '10.1.0.0/24'. */
  readonly v4?: string;
  /** IPv6 prefix of the segment (global only: NAPT LANs are IPv4-only). */
  readonly v6?: string;
  /** Gateway addresses on the segment (default routes of its hosts). */
  readonly gw4?: string;
  readonly gw6?: string;
  /** Router's public (global-segment) addresses, NAPT sites only. */
  readonly wan4?: string;
  readonly wan6?: string;
  /** NAPT flavour, NAPT sites only. */
  readonly nat?: NatKind;
  /** What the NAPT router does with unsolicited inbound UDP: drop it silently (default) or answer port unreachable. */
  readonly unsolicited?: 'drop' | 'reject';
}

export interface SpawnOpts {
  /** Merged over process.env (a key set to undefined is dropped). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** stdout and stderr are appended to this file (then the ChildProcess has no stdout/stderr streams). */
  logFile?: string;
  /** Without logFile: 'pipe' (default; the caller must consume the streams), 'inherit' or 'ignore'. */
  stdio?: 'pipe' | 'inherit' | 'ignore';
}

interface SiteState {
  site: Site;
  net4: V4Net | null;
  v6: string | null;
  next: number;
  max: number;
  used: Set<number>;
}

const FIRST_HOST = 10;
const NAME_RE = /^[a-z0-9][a-z0-9_]{0,30}$/i;

/** A network namespace with (usually) one uplink; commands run inside it via `ip netns exec`. */
export class Host {
  readonly name: string;
  readonly ns: string;
  /** @internal */ _addr4: string | null = null;
  /** @internal */ _addr6: string | null = null;
  /** @internal */ _site: Site | null = null;
  /** @internal */ _num = 0;
  /** @internal */ _family: Family = 'dual';
  /** @internal family asked for at addHost (what a move back to the global segment restores). */
  _baseFamily: Family = 'dual';
  /** @internal name of the uplink veth's other end (on the site bridge, or lan0 in the emulator namespace). */
  _peer: string | null = null;
  /** @internal the WAN emulator in front of the uplink (null: plugged straight into the site). */
  _wan: { profile: WanProfile; em: Wanem | null } | null = null;
  /** @internal the emulator namespace, once made (kept for reuse). */
  _wanNs: Host | null = null;
  private readonly tracker: GroupTracker;

  /** @internal use Testbed.addHost */
  constructor(name: string, ns: string, tracker: GroupTracker) {
    this.name = name;
    this.ns = ns;
    this.tracker = tracker;
  }

  /** Current uplink IPv4 address (null when v6-only or detached). */
  get addr4(): string | null {
    return this._addr4;
  }
  /** Current uplink IPv6 address (null when v4-only or detached). */
  get addr6(): string | null {
    return this._addr6;
  }
  /** Site the uplink is attached to (null when detached or for the inet namespace itself). */
  get site(): Site | null {
    return this._site;
  }
  get family(): Family {
    return this._family;
  }
  /** The WAN profile in front of the uplink, or null. */
  get wan(): WanProfile | null {
    return this._wan?.profile ?? null;
  }

  /** `ip netns exec <ns> cmd args`; default timeout 30 s; never throws on a non-zero exit. */
  exec(cmd: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    return execBounded('ip', ['netns', 'exec', this.ns, cmd, ...args], opts, this.tracker);
  }

  /** Like exec but throws (with stderr) on a non-zero exit; returns stdout. */
  run(cmd: string, args: string[] = [], opts: ExecOptions = {}): Promise<string> {
    return runChecked('ip', ['netns', 'exec', this.ns, cmd, ...args], opts, this.tracker);
  }

  /**
   * Starts a long-running process inside the namespace, detached in its own process group.
   * It is SIGKILLed (whole group) at cleanup; kill it earlier with `killGroup(child.pid)`.
   */
  spawn(cmd: string, args: string[] = [], opts: SpawnOpts = {}): ChildProcess {
    let fd: number | null = null;
    let stdio: StdioOptions;
    if (opts.logFile) {
      fd = openSync(opts.logFile, 'a');
      stdio = ['ignore', fd, fd];
    } else {
      const s = opts.stdio ?? 'pipe';
      stdio = [s === 'pipe' ? 'pipe' : 'ignore', s, s];
    }
    try {
      const child = spawn('ip', ['netns', 'exec', this.ns, cmd, ...args], {
        detached: true,
        stdio,
        env: { ...process.env, ...(opts.env ?? {}) },
        ...(opts.cwd ? { cwd: opts.cwd } : {}),
      });
      this.tracker.add(child);
      return child;
    } finally {
      if (fd !== null) closeSync(fd);
    }
  }
}

export class Testbed {
  readonly prefix: string;
  private readonly tracker = new GroupTracker();
  private readonly nsList: string[] = [];
  private readonly names = new Set<string>();
  private readonly siteStates = new Map<Site, SiteState>();
  private readonly hostMap = new Map<string, Host>();
  private readonly siteMap = new Map<string, Site>();
  private linkCounter = 0;
  private lanCounter = 0;
  private closed = false;
  private unregister: () => void = () => undefined;
  private _global!: Site;
  private _inet!: Host;

  private constructor(prefix: string) {
    this.prefix = prefix;
  }

  /**
   * Why a testbed cannot be built here (not root, missing tools), or null when it can.
   * Tests use it as `{ skip: Testbed.unavailableReason() ?? false }`.
   */
  static unavailableReason(): string | null {
    if (process.platform !== 'linux') return 'netns testbed needs Linux';
    if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'netns testbed needs root';
    const tools: Array<[string, string[], string]> = [
      ['ip', ['-V'], 'iproute2'],
      ['nft', ['--version'], 'nftables'],
      ['sysctl', ['--version'], 'procps'],
    ];
    for (const [cmd, args, pkg] of tools) {
      try {
        execFileSync(cmd, args, { stdio: 'ignore', timeout: 5000 });
      } catch {
        return `netns testbed needs \`${cmd}\` (apt-get install ${pkg})`;
      }
    }
    return null;
  }

  /** Builds the global segment. Sweeps namespaces of dead earlier runs first. */
  static async create(opts: { prefix?: string } = {}): Promise<Testbed> {
    const why = Testbed.unavailableReason();
    if (why) throw new Error(why);
    let prefix = opts.prefix;
    if (prefix !== undefined) {
      if (!/^[a-z][a-z0-9]{1,7}$/.test(prefix)) throw new Error(`testbed prefix must be 2-8 chars [a-z0-9]: ${prefix}`);
    } else {
      const existing = listNetnsSync();
      for (let i = 0; i < 50 && prefix === undefined; i++) {
        const p = 'cy' + Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, '0');
        if (!markerExists(p) && !existing.some((n) => n.startsWith(`${p}-`))) prefix = p;
      }
      if (prefix === undefined) throw new Error('could not pick an unused testbed prefix');
    }
    sweepStale(prefix);
    writeMarker(prefix);
    const tb = new Testbed(prefix);
    tb.unregister = registerTeardown(() => tb.cleanupSync());
    try {
      await tb.buildGlobal();
    } catch (err) {
      await tb.cleanup();
      throw err;
    }
    return tb;
  }

  /** The global segment (bridge in `<prefix>-inet`). */
  get global(): Site {
    return this._global;
  }
  /** The `<prefix>-inet` namespace as a Host (198.18.0.1 / 2001:db8::1): capture or probe the global segment. */
  get inet(): Host {
    return this._inet;
  }
  get hosts(): ReadonlyMap<string, Host> {
    return this.hostMap;
  }
  get sites(): ReadonlyMap<string, Site> {
    return this.siteMap;
  }
  /** Every namespace this testbed made, in creation order. */
  get namespaces(): readonly string[] {
    return this.nsList;
  }
  host(name: string): Host {
    const h = this.hostMap.get(name);
    if (!h) throw new Error(`no host ${name}`);
    return h;
  }

  /** A NAPT site: router namespace with `wan0` on the global segment and a LAN bridge `br0`. */
  async addSite(name: string, opts: { kind: 'napt'; nat: NatKind; v4Lan?: string; unsolicited?: 'drop' | 'reject' }): Promise<Site> {
    this.checkOpen();
    const ns = this.claimName(name);
    let net4: V4Net;
    if (opts.v4Lan) {
      net4 = parseV4Cidr(opts.v4Lan);
      for (const st of this.siteStates.values()) {
        if (st.net4 && v4Overlaps(st.net4, net4)) throw new Error(`LAN ${opts.v4Lan} overlaps site ${st.site.name}`);
      }
    } else {
      net4 = this.autoLan();
    }
    const lanCidr = `${formatV4(net4.base)}/${net4.len}`;
    const router = new Host(name, ns, this.tracker);
    const wanNum = this.alloc(this._global);
    const gw4 = v4Host(net4, 1);
    const site: Site = { name, kind: 'napt', ns, router, v4: lanCidr, gw4, wan4: v4Host(parseV4Cidr(GLOBAL_V4), wanNum), wan6: v6Host(GLOBAL_V6, wanNum), nat: opts.nat, unsolicited: opts.unsolicited ?? 'drop' };
    this.siteStates.set(site, { site, net4, v6: null, next: FIRST_HOST, max: Math.min(2 ** (32 - net4.len) - 2, 9999), used: new Set() });
    this.siteMap.set(name, site);
    await this.makeNs(ns, { forward4: true, forward6: false });
    await this.attach(router, this._global, 'wan0', 'dual', wanNum);
    const lan = [
      'link add br0 type bridge',
      `addr add ${gw4}/${net4.len} dev br0`,
    ];
    await this.ipBatch(ns, lan);
    await this.sysctl(ns, ['net.ipv6.conf.br0.disable_ipv6=1']);
    await this.ipBatch(ns, ['link set br0 up']);
    const masq = opts.nat === 'random' ? 'masquerade random' : 'masquerade';
    // Unsolicited UDP from outside is dropped silently by default, as many real NAPTs do. Answering it (port
    // unreachable, what other NAPTs and plain hosts do) confirms a conntrack entry for it, which pushes a later
    // outgoing flow of a LAN host to the same peer onto another public port.
    const unsolicited = opts.unsolicited === 'reject' ? 'reject with icmpx type port-unreachable' : 'drop';
    const rules = `
table ip cyphonic_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" ${masq}
  }
}
table inet cyphonic_filter {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "br0" accept
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan0" ct state new meta l4proto udp counter ${unsolicited}
  }
}
`;
    await runChecked('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: rules }, this.tracker);
    return site;
  }

  /**
   * A host namespace with one uplink `eth0` on `site` (default: global). Family defaults to
   * 'dual' on the global segment and 'v4' behind NAPT (NAPT LANs are IPv4-only).
   */
  async addHost(name: string, opts: { site?: Site; family?: Family; wan?: WanProfile | WanProfileName } = {}): Promise<Host> {
    this.checkOpen();
    const site = opts.site ?? this._global;
    const family = this.resolveFamily(site, opts.family, opts.family ?? 'dual');
    const ns = this.claimName(name);
    const host = new Host(name, ns, this.tracker);
    host._baseFamily = opts.family ?? 'dual';
    this.hostMap.set(name, host);
    const num = this.alloc(site);
    await this.makeNs(ns, { forward4: false, forward6: false });
    if (opts.wan) {
      await this.wanNs(host);
      host._wan = { profile: wanProfile(opts.wan), em: null };
    }
    await this.attach(host, site, 'eth0', family, num);
    return host;
  }

  /**
   * Puts the host's uplink behind the WAN emulator with `profile` (re-plugging the running host: addresses,
   * routes and sockets stay), changes the profile of an emulator already there at runtime, or with null
   * plugs the uplink straight into its site again.
   */
  async impair(host: Host, profile: WanProfile | WanProfileName | null, opts: { seed?: number } = {}): Promise<void> {
    this.checkOpen();
    this.ownHost(host);
    const site = host._site;
    if (profile === null) {
      const w = host._wan;
      if (!w) return;
      await w.em?.stop();
      host._wan = null;
      if (site && host._peer) {
        const wns = host._wanNs!.ns;
        await this.ipBatch(wns, ['link set lan0 down', `link set lan0 name ${host._peer}`, `link set ${host._peer} netns ${site.ns}`, 'link del wan0']);
        await this.ipBatch(site.ns, [`link set ${host._peer} master br0`, `link set ${host._peer} up`]);
      }
      return;
    }
    const p = wanProfile(profile);
    if (host._wan) {
      host._wan.profile = p;
      if (host._wan.em?.alive) await host._wan.em.set(p);
      return;
    }
    const wns = await this.wanNs(host);
    host._wan = { profile: p, em: null };
    if (!site || !host._peer) return; // detached: the emulator comes with the next attach
    await this.plugWanUplink(host, site);
    await runChecked('ip', ['-n', site.ns, 'link', 'set', host._peer, 'netns', wns.ns], {}, this.tracker);
    await this.ipBatch(wns.ns, [`link set ${host._peer} name lan0`]);
    await this.sysctl(wns.ns, ['net.ipv6.conf.lan0.disable_ipv6=1']);
    await this.ipBatch(wns.ns, ['link set lan0 up']);
    host._wan.em = await Wanem.start(wns, p, opts);
  }

  /** Counters of the host's WAN emulator (up = host -> network), or null without one. */
  async wanStats(host: Host): Promise<WanStats | null> {
    const em = host._wan?.em;
    return em?.alive ? em.stats() : null;
  }

  /** Removes the host's uplink (it is then offline, addr4/addr6 null). */
  async detachHost(host: Host): Promise<void> {
    this.checkOpen();
    this.ownHost(host);
    const old = host._site;
    if (!old) return;
    this.release(old, host._num);
    host._site = null;
    host._addr4 = null;
    host._addr6 = null;
    host._num = 0;
    if (host._wan) {
      await host._wan.em?.stop();
      host._wan.em = null;
      await execBounded('ip', ['-n', host._wanNs!.ns, 'link', 'del', 'wan0'], {}, this.tracker);
    }
    await execBounded('ip', ['-n', host.ns, 'link', 'del', 'eth0'], {}, this.tracker);
    host._peer = null;
  }

  /**
   * Moves the host's uplink to another site: deletes its veth, creates a new one to `site`,
   * assigns fresh addresses and default routes. Family default: 'v4' behind NAPT, the family
   * given at addHost on the global segment.
   */
  async moveHost(host: Host, site: Site, opts: { family?: Family } = {}): Promise<void> {
    this.checkOpen();
    this.ownHost(host);
    if (!this.siteStates.has(site)) throw new Error(`site ${site.name} is not part of this testbed`);
    const family = this.resolveFamily(site, opts.family, host._baseFamily);
    await this.detachHost(host);
    const num = this.alloc(site);
    await this.attach(host, site, 'eth0', family, num, false);
  }

  /** Waits until the host's IPv6 addresses (and its gateway's) passed duplicate address detection (after a move). */
  async settled(host: Host): Promise<void> {
    this.ownHost(host);
    await this.waitDad(host._site ? [host.ns, host._site.ns] : [host.ns]);
  }

  /** Idempotent: kills spawned process groups and every process in our namespaces, deletes them. */
  async cleanup(): Promise<void> {
    this.cleanupSync();
  }

  /** Synchronous teardown (what the exit/signal handlers run). */
  cleanupSync(): void {
    if (this.closed) return;
    this.closed = true;
    this.tracker.killAll();
    deleteNetnsSync([...this.nsList].reverse());
    removeMarker(this.prefix);
    this.unregister();
  }

  // ---- internals ------------------------------------------------------------------------

  private checkOpen(): void {
    if (this.closed) throw new Error(`testbed ${this.prefix} is cleaned up`);
  }

  private ownHost(host: Host): void {
    if (this.hostMap.get(host.name) !== host) throw new Error(`host ${host.name} is not part of this testbed`);
  }

  private claimName(name: string): string {
    if (!NAME_RE.test(name)) throw new Error(`bad testbed name "${name}" (letters, digits, _; max 31)`);
    if (name === 'inet' || this.names.has(name)) throw new Error(`testbed name "${name}" already used`);
    this.names.add(name);
    return `${this.prefix}-${name}`;
  }

  private resolveFamily(site: Site, asked: Family | undefined, fallback: Family): Family {
    if (site.kind === 'napt') {
      if (asked && asked !== 'v4') throw new Error(`site ${site.name} is a NAPT site with an IPv4-only LAN; family '${asked}' impossible`);
      return 'v4';
    }
    return asked ?? fallback;
  }

  private autoLan(): V4Net {
    for (let i = 0; i < 254; i++) {
      const idx = ++this.lanCounter;
      if (idx > 254) break;
      const net = parseV4Cidr(`10.${idx}.0.0/24`);
      if (![...this.siteStates.values()].some((st) => st.net4 && v4Overlaps(st.net4, net))) return net;
    }
    throw new Error('no free 10.x.0.0/24 LAN left');
  }

  /** Next host number on a site: increasing; the lowest free one once the range is exhausted. */
  private alloc(site: Site): number {
    const st = this.siteStates.get(site);
    if (!st) throw new Error(`site ${site.name} is not part of this testbed`);
    let n: number | null = null;
    if (st.next <= st.max) n = st.next++;
    else for (let i = FIRST_HOST; i <= st.max && n === null; i++) if (!st.used.has(i)) n = i;
    if (n === null) throw new Error(`site ${site.name} has no free host number`);
    st.used.add(n);
    return n;
  }

  private release(site: Site, n: number): void {
    this.siteStates.get(site)?.used.delete(n);
  }

  private async buildGlobal(): Promise<void> {
    const ns = `${this.prefix}-inet`;
    const net4 = parseV4Cidr(GLOBAL_V4);
    const gw4 = v4Host(net4, 1);
    const gw6 = v6Host(GLOBAL_V6, 1);
    this._global = { name: 'global', kind: 'global', ns, v4: GLOBAL_V4, v6: GLOBAL_V6, gw4, gw6 };
    this.siteStates.set(this._global, { site: this._global, net4, v6: GLOBAL_V6, next: FIRST_HOST, max: 254, used: new Set() });
    this.siteMap.set('global', this._global);
    this._inet = new Host('inet', ns, this.tracker);
    this._inet._addr4 = gw4;
    this._inet._addr6 = gw6;
    await this.makeNs(ns, { forward4: true, forward6: true });
    await this.ipBatch(ns, [
      'link add br0 type bridge',
      `addr add ${gw4}/24 dev br0`,
      `addr add ${gw6}/64 dev br0`,
      'link set br0 up',
    ]);
  }

  private async makeNs(ns: string, opts: { forward4: boolean; forward6: boolean }): Promise<void> {
    this.nsList.push(ns); // recorded first, so a failure below is still cleaned up
    await runChecked('ip', ['netns', 'add', ns], {}, this.tracker);
    // Duplicate address detection stays on (the kernel's default): a new IPv6 address is tentative for a second or
    // two. addHost/addSite wait for it (a booted host); moveHost does not (the product copes). rp_filter loose.
    await this.sysctl(ns, [
      'net.ipv6.conf.all.accept_ra=0',
      'net.ipv6.conf.default.accept_ra=0',
      'net.ipv4.conf.all.rp_filter=2',
      'net.ipv4.conf.default.rp_filter=2',
      'net.ipv4.conf.all.arp_notify=1',
      'net.ipv4.conf.default.arp_notify=1',
      'net.ipv6.conf.all.ndisc_notify=1',
      'net.ipv6.conf.default.ndisc_notify=1',
      `net.ipv4.ip_forward=${opts.forward4 ? 1 : 0}`,
      `net.ipv6.conf.all.forwarding=${opts.forward6 ? 1 : 0}`,
    ]);
    await this.ipBatch(ns, ['link set lo up']);
  }

  /** The host's emulator namespace `<prefix>-<host>_w` (made on first use): no addresses, IPv6 off, no forwarding. */
  private async wanNs(host: Host): Promise<Host> {
    if (host._wanNs) return host._wanNs;
    const ns = this.claimName(`${host.name}_w`);
    await this.makeNs(ns, { forward4: false, forward6: false });
    await this.sysctl(ns, ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    host._wanNs = new Host(`${host.name}_w`, ns, this.tracker);
    return host._wanNs;
  }

  /** The emulator namespace's network side: `wan0` there, its peer on the site's bridge. */
  private async plugWanUplink(host: Host, site: Site): Promise<void> {
    const wns = host._wanNs!.ns;
    const n = ++this.linkCounter;
    const a = `${this.prefix}v${n}a`;
    const b = `${this.prefix}v${n}b`;
    await runChecked('ip', ['link', 'add', a, 'netns', wns, 'type', 'veth', 'peer', 'name', b, 'netns', site.ns], {}, this.tracker);
    await this.ipBatch(wns, [`link set ${a} name wan0`]);
    await this.sysctl(wns, ['net.ipv6.conf.wan0.disable_ipv6=1']);
    await this.ipBatch(wns, ['link set wan0 up']);
    await this.ipBatch(site.ns, [`link set ${b} master br0`, `link set ${b} up`]);
  }

  /** Creates a veth between `host.ns` (named `ifname`) and the site's bridge (or its emulator); addresses and routes. */
  private async attach(host: Host, site: Site, ifname: string, family: Family, num: number, settle = true): Promise<void> {
    const st = this.siteStates.get(site)!;
    const n = ++this.linkCounter;
    const a = `${this.prefix}v${n}a`;
    const b = `${this.prefix}v${n}b`;
    const wan = ifname === 'eth0' ? host._wan : null;
    if (wan) {
      const wns = host._wanNs!.ns;
      await this.plugWanUplink(host, site);
      await runChecked('ip', ['link', 'add', a, 'netns', host.ns, 'type', 'veth', 'peer', 'name', b, 'netns', wns], {}, this.tracker);
      await this.ipBatch(wns, [`link set ${b} name lan0`]);
      await this.sysctl(wns, ['net.ipv6.conf.lan0.disable_ipv6=1']);
      await this.ipBatch(wns, ['link set lan0 up']);
      wan.em = await Wanem.start(host._wanNs!, wan.profile);
    } else {
      await runChecked('ip', ['link', 'add', a, 'netns', host.ns, 'type', 'veth', 'peer', 'name', b, 'netns', site.ns], {}, this.tracker);
      await this.ipBatch(site.ns, [`link set ${b} master br0`, `link set ${b} up`]);
    }
    host._peer = b;
    await this.ipBatch(host.ns, [`link set ${a} name ${ifname}`]);
    const want4 = family !== 'v6' && st.net4 !== null;
    const want6 = family !== 'v4' && st.v6 !== null;
    if (!want6) await this.sysctl(host.ns, [`net.ipv6.conf.${ifname}.disable_ipv6=1`]);
    const cmds: string[] = [];
    const addr4 = want4 ? v4Host(st.net4!, num) : null;
    const addr6 = want6 ? v6Host(st.v6!, num) : null;
    if (addr4) cmds.push(`addr add ${addr4}/${st.net4!.len} dev ${ifname}`);
    if (addr6) cmds.push(`addr add ${addr6}/64 dev ${ifname}`);
    cmds.push(`link set ${ifname} up`);
    if (addr4 && site.gw4) cmds.push(`route replace default via ${site.gw4} dev ${ifname}`);
    if (addr6 && site.gw6) cmds.push(`route replace default via ${site.gw6} dev ${ifname}`);
    await this.ipBatch(host.ns, cmds);
    host._site = site;
    host._num = num;
    host._family = family;
    host._addr4 = addr4;
    host._addr6 = addr6;
    // A host set up fresh starts with settled addresses (its own and its gateway's); one that moved does not.
    if (addr6 && settle) await this.waitDad([host.ns, site.ns]);
  }

  /** Waits (≤ 10 s) until no IPv6 address in `namespaces` is tentative; throws if one failed DAD. */
  private async waitDad(namespaces: string[]): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      let pending = false;
      for (const ns of namespaces) {
        const out = await runChecked('ip', ['-n', ns, '-6', '-o', 'addr', 'show'], {}, this.tracker);
        if (/dadfailed/.test(out)) throw new Error(`duplicate address detection failed in ${ns}: ${out.trim()}`);
        pending ||= /tentative/.test(out);
      }
      if (!pending) return;
      if (Date.now() > deadline) throw new Error(`IPv6 addresses still tentative after 10 s in ${namespaces.join(', ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async ipBatch(ns: string, cmds: string[]): Promise<void> {
    await runChecked('ip', ['-n', ns, '-batch', '-'], { input: cmds.join('\n') + '\n' }, this.tracker);
  }

  private async sysctl(ns: string, settings: string[]): Promise<void> {
    await runChecked('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', ...settings], {}, this.tracker);
  }
}
