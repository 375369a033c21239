// Address watcher: a long-lived `ip -o monitor address route` child (netlink, pushed by the kernel — no polling)
// that tells the node, a few milliseconds after the fact, which usable addresses this host has now.
//
//   kernel ─RTM_NEWADDR/DELADDR/NEWROUTE/DELROUTE─► ip -o monitor ─lines─► parseMonitorLine ─► address table
//        (one dump at start: `ip -o addr show`)                                     │  any event re-arms
//                                                                                   ▼
//                                            debounce (DEBOUNCE_MS after the last event) ─► onChange(usable set)
//
// "Usable": scope global, not tentative / dadfailed / deprecated, not on an excluded interface (our TUN).
// Route lines only re-arm the debounce (the testbed and DHCP clients add the default route right after the
// address). The child is restarted (bounded backoff) if it dies, and killed on stop(). If the daemon itself is
// killed (-9), the orphaned child exits at its next event (its stdout pipe is gone: EPIPE).

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { DecodeError } from '../../util/errors.js';

/** Tunable: quiet time after the last netlink event before the new set is reported (ms). A move is a burst of
 *  events (addresses removed, added, link up, routes) within a few ms; longer would add straight to handover time. */
export const DEBOUNCE_MS = 15;
/** Tunable: restart delays of a dead `ip monitor` child (ms), the last one repeated. */
export const RESTART_MS = [100, 500, 2000, 5000] as const;
/** Longest monitor line we parse (ip prints one short line per event). */
const MAX_LINE = 4096;
/** Most addresses kept (a host with more is not one we serve better by tracking them all). */
const MAX_ADDRESSES = 256;

export interface LocalAddress {
  ifname: string;
  family: 4 | 6;
  address: string;
  prefixLen: number;
  scope: string;
  /** Flags ip prints after the scope: tentative, dadfailed, deprecated, nodad, temporary, … */
  flags: string[];
}

export type MonitorEvent =
  | { kind: 'address'; deleted: boolean; addr: LocalAddress }
  | { kind: 'route'; deleted: boolean; dst: string }
  | { kind: 'other' };

const ADDR_RE = /^(Deleted\s+)?(?:\[[A-Z]+\]\s*)?\d+:\s+(\S+)\s+(inet6?)\s+([0-9a-fA-F:.]+)\/(\d{1,3})(?:\s+brd\s+\S+)?(?:\s+peer\s+\S+)?\s+scope\s+(\S+)(.*)$/;

/**
 * One line of `ip -o monitor address route` (or of `ip -o addr show`): an address event, a route event, or
 * 'other' (link lines, blank). Throws DecodeError ERR_MONITOR_LINE for an address line it cannot read.
 */
export function parseMonitorLine(line: string): MonitorEvent {
  if (line.length > MAX_LINE) throw new DecodeError('monitor line too long', 'ERR_MONITOR_LINE');
  const text = line.replace(/\r?\n$/, '');
  const trimmed = text.trim();
  if (trimmed === '') return { kind: 'other' };
  if (/^(Deleted\s+)?(\[[A-Z]+\]\s*)?\d+:\s+\S+\s+inet6?\s/.test(trimmed)) {
    const m = ADDR_RE.exec(trimmed);
    if (!m) throw new DecodeError(`unreadable address line: ${trimmed.slice(0, 120)}`, 'ERR_MONITOR_LINE');
    const family = m[3] === 'inet6' ? 6 : 4;
    const address = m[4]!;
    const prefixLen = Number(m[5]);
    if ((family === 4 && (!/^\d{1,3}(\.\d{1,3}){3}$/.test(address) || prefixLen > 32)) || (family === 6 && (!address.includes(':') || prefixLen > 128))) {
      throw new DecodeError(`bad address in monitor line: ${address}/${prefixLen}`, 'ERR_MONITOR_LINE');
    }
    // Everything after the scope up to the `\` continuation (valid_lft …) is flags, then maybe a label.
    const rest = m[7]!.split('\\')[0]!.trim();
    const flags = rest === '' ? [] : rest.split(/\s+/).filter((f) => f !== m[2]);
    return { kind: 'address', deleted: !!m[1], addr: { ifname: m[2]!.replace(/@.*$/, ''), family, address: address.toLowerCase(), prefixLen, scope: m[6]!, flags } };
  }
  if (/^(Deleted\s+)?\d+:\s/.test(trimmed)) return { kind: 'other' }; // link lines ("3: eth0: <…> mtu …")
  const r = /^(Deleted\s+)?(?:\[[A-Z]+\]\s*)?(?:(?:local|broadcast|multicast|unicast|anycast|unreachable|blackhole|prohibit)\s+)?(default|[0-9a-fA-F:.]+(?:\/\d+)?)\s/.exec(trimmed);
  if (r) return { kind: 'route', deleted: !!r[1], dst: r[2]! };
  return { kind: 'other' };
}

/** True for an address a node can send from and be reached at: global scope, settled (DAD done), not deprecated. */
export function usable(a: LocalAddress): boolean {
  return a.scope === 'global' && !a.flags.some((f) => f === 'tentative' || f === 'dadfailed' || f === 'deprecated');
}

export interface AddressWatcherInit {
  /** Interfaces whose addresses do not count (our own TUN). */
  exclude?: (ifname: string, address: string) => boolean;
  /** @default DEBOUNCE_MS */
  debounceMs?: number;
  /** The `ip` binary. @default 'ip' */
  ipPath?: string;
}

/**
 * Tracks this host's usable addresses from netlink events. onChange gets the full usable set whenever it
 * differs from the last one reported (never for a burst that ends where it began).
 */
export class AddressWatcher {
  onChange: (addrs: LocalAddress[], at: number) => void = () => {};
  onError: (err: Error) => void = () => {};
  /** Parse failures and child restarts, for status counters. */
  readonly stats = { events: 0, badLines: 0, restarts: 0, changes: 0 };
  private readonly table = new Map<string, LocalAddress>();
  private child: ChildProcess | null = null;
  private timer: NodeJS.Timeout | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private lastKey = '';
  private stopped = false;
  /** performance.now() of the first event of the burst being debounced. */
  private burstStart = 0;
  /** Monitor lines that arrived while a dump was loading (null when none is). */
  private held: string[] | null = null;

  constructor(private readonly init: AddressWatcherInit = {}) {}

  /** Starts the monitor and loads the current addresses (reported as the initial set, without an onChange). */
  async start(): Promise<LocalAddress[]> {
    this.spawnMonitor();
    await this.resync();
    this.lastKey = keyOf(this.current());
    return this.current();
  }

  /** The usable addresses now. */
  current(): LocalAddress[] {
    const ex = this.init.exclude;
    return [...this.table.values()].filter((a) => usable(a) && !(ex && ex(a.ifname, a.address)));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.child?.kill('SIGKILL');
    this.child = null;
  }

  /** Feeds one line (the child's stdout; tests call it directly). */
  feed(line: string): void {
    if (this.held) {
      // A dump is being loaded: replay this after it (events are newer than, or repeat, what the dump shows).
      if (this.held.length < MAX_ADDRESSES * 4) this.held.push(line);
      return;
    }
    let ev: MonitorEvent;
    try {
      ev = parseMonitorLine(line);
    } catch (err) {
      this.stats.badLines++;
      this.onError(err as Error);
      return;
    }
    if (ev.kind === 'other') return;
    this.stats.events++;
    if (ev.kind === 'address') this.apply(ev.deleted, ev.addr);
    this.arm();
  }

  private apply(deleted: boolean, a: LocalAddress): void {
    const k = `${a.ifname} ${a.address}`;
    if (deleted) this.table.delete(k);
    else if (this.table.size < MAX_ADDRESSES || this.table.has(k)) this.table.set(k, a);
  }

  private arm(): void {
    if (!this.timer) this.burstStart = performance.now();
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.settle(), this.init.debounceMs ?? DEBOUNCE_MS);
  }

  private settle(): void {
    this.timer = null;
    const now = this.current();
    const k = keyOf(now);
    if (k === this.lastKey) return;
    this.lastKey = k;
    this.stats.changes++;
    this.onChange(now, this.burstStart);
  }

  /** Reloads the table from a dump (at start, and after the monitor restarts: events may have been missed). */
  private async resync(): Promise<void> {
    this.held = this.held ?? [];
    const out = await new Promise<string>((resolve) =>
      execFile(this.init.ipPath ?? 'ip', ['-o', 'addr', 'show'], { timeout: 5000, maxBuffer: 1 << 20 }, (err, stdout) => resolve(err ? '' : stdout)),
    );
    this.table.clear();
    for (const line of out.split('\n')) {
      try {
        const ev = parseMonitorLine(line);
        if (ev.kind === 'address') this.apply(false, ev.addr);
      } catch {
        this.stats.badLines++;
      }
    }
    const later = this.held;
    this.held = null;
    for (const line of later) this.feed(line);
  }

  private spawnMonitor(): void {
    if (this.stopped) return;
    const child = spawn(this.init.ipPath ?? 'ip', ['-o', 'monitor', 'address', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child = child;
    let buf = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        this.feed(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      if (buf.length > MAX_LINE) buf = ''; // bounded: a runaway line is dropped
    });
    child.on('error', (err) => this.onError(err)); // e.g. ENOENT: no `ip`; the dump is empty too
    child.on('exit', () => {
      if (this.stopped || this.child !== child) return;
      this.child = null;
      const wait = RESTART_MS[Math.min(this.stats.restarts, RESTART_MS.length - 1)]!;
      this.stats.restarts++;
      this.restartTimer = setTimeout(() => {
        this.spawnMonitor();
        void this.resync().then(() => this.arm());
      }, wait);
      this.restartTimer.unref();
    });
  }
}

function keyOf(addrs: LocalAddress[]): string {
  return addrs
    .map((a) => `${a.ifname} ${a.address}`)
    .sort()
    .join(',');
}
