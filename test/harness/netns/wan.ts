// WAN profiles and the driver of the user-space WAN emulator (test/harness/wan/wanem.c) for the netns testbed.
// The emulator runs in its own namespace between a host's uplink and its site's bridge (see Testbed.impair);
// this module compiles it with gcc on first use (again when the source is newer than the binary), starts it,
// changes its profile at runtime over stdin and reads its counters.
//
// A profile has one setting per direction: `up` is host -> network, `down` is network -> host. Round-trip
// figures are split across the two directions; a loss percentage applies to every wire packet in each direction.

import { execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killGroup } from './proc.js';
import type { Host } from './testbed.js';

export interface WanDirection {
  /** One-way delay, ms. */
  delayMs?: number;
  /** Delay varies by up to ±jitterMs (uniform) or with this standard deviation (normal, cut at 3σ); packets overtake. */
  jitterMs?: number;
  dist?: 'uniform' | 'normal';
  lossPct?: number;
  dupPct?: number;
  /** This share of packets skips the delay line (overtakes those ahead of it). */
  reorderPct?: number;
  /** Rate limit, kbit/s (0: none), with a drop-tail queue of queueBytes (default 100 ms at the rate, ≥ 32 KiB). */
  rateKbit?: number;
  queueBytes?: number;
}

export interface WanProfile {
  readonly name: string;
  readonly up: WanDirection;
  readonly down: WanDirection;
}

/** Counters of one direction of an emulator (see wanem.c). */
export interface WanDirStats {
  rx: number;
  rxSuper: number;
  segments: number;
  wire: number;
  lost: number;
  duplicated: number;
  reordered: number;
  queueDrops: number;
  poolDrops: number;
  sent: number;
  sendErrors: number;
  bad: number;
  tooBig: number;
  csumCompleted: number;
}
export interface WanStats {
  up: WanDirStats;
  down: WanDirStats;
  queued: number;
}

const sym = (name: string, d: WanDirection): WanProfile => ({ name, up: d, down: d });

/** The named profiles; RTT is split evenly across the directions. */
export const WAN_PROFILES = {
  /** The emulator in the path, impairing nothing (control runs). */
  clean: sym('clean', {}),
  /** Geostationary satellite: 600 ms RTT, 1 % loss per direction. */
  satellite: sym('satellite', { delayMs: 300, lossPct: 1 }),
  /** Congested mobile: 150 ms ± 50 ms RTT (75 ± 25 ms each way, uniform: packets overtake), 3 % loss, 1 % explicit reordering. */
  mobile: sym('mobile', { delayMs: 75, jitterMs: 25, lossPct: 3, reorderPct: 1 }),
  /** Lossy Wi-Fi: 5 ms RTT (± 1 ms each way), 5 % loss per direction. */
  wifi: sym('wifi', { delayMs: 2.5, jitterMs: 1, lossPct: 5 }),
} as const satisfies Record<string, WanProfile>;

export type WanProfileName = keyof typeof WAN_PROFILES;

export function wanProfile(p: WanProfile | WanProfileName): WanProfile {
  return typeof p === 'string' ? WAN_PROFILES[p] : p;
}

export function wanSpec(d: WanDirection): string {
  const parts = [
    `delay=${d.delayMs ?? 0}`,
    `jitter=${d.jitterMs ?? 0}`,
    `dist=${d.dist ?? 'uniform'}`,
    `loss=${d.lossPct ?? 0}`,
    `dup=${d.dupPct ?? 0}`,
    `reorder=${d.reorderPct ?? 0}`,
    `rate=${d.rateKbit ?? 0}`,
  ];
  if (d.queueBytes) parts.push(`queue=${d.queueBytes}`);
  return parts.join(' ');
}

/** dist/test/harness/netns -> repository root. */
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const SRC = join(REPO, 'test', 'harness', 'wan', 'wanem.c');
const BIN = join(REPO, 'dist', 'test', 'harness', 'wan', 'wanem');

/** Path of the emulator binary, compiled (gcc) when missing or older than its source. */
export function wanemBinary(): string {
  const fresh = existsSync(BIN) && statSync(BIN).mtimeMs >= statSync(SRC).mtimeMs;
  if (!fresh) {
    mkdirSync(dirname(BIN), { recursive: true });
    const tmp = `${BIN}.${process.pid}.tmp`;
    execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', tmp, SRC, '-lm'], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
    renameSync(tmp, BIN); // atomic: a concurrent build never runs a half-written file
  }
  return BIN;
}

/** A running emulator: `a` is the host side (lan0), `b` the network side (wan0). */
export class Wanem {
  private out = '';
  private err = '';
  private waiters: Array<{ match: (line: string) => boolean; resolve: (line: string) => void; reject: (e: Error) => void }> = [];
  private lines: string[] = [];
  private dead: Error | null = null;

  private constructor(
    readonly child: ChildProcess,
    public profile: WanProfile,
    readonly seed: number,
  ) {
    child.stdout!.on('data', (b: Buffer) => {
      this.out += b.toString('utf8');
      let i: number;
      while ((i = this.out.indexOf('\n')) >= 0) {
        const line = this.out.slice(0, i);
        this.out = this.out.slice(i + 1);
        const w = this.waiters.findIndex((x) => x.match(line));
        if (w >= 0) this.waiters.splice(w, 1)[0]!.resolve(line);
        else if (this.lines.length < 100) this.lines.push(line);
      }
    });
    child.stderr!.on('data', (b: Buffer) => {
      this.err = (this.err + b.toString('utf8')).slice(-4096);
    });
    child.stdin!.on('error', () => undefined);
    child.once('exit', (code, sig) => {
      this.dead = new Error(`wanem exited (${code ?? sig}): ${this.err.trim()}`);
      for (const w of this.waiters.splice(0)) w.reject(this.dead);
    });
  }

  /** Starts the emulator in `ns` (a Host for the emulator namespace) between lan0 and wan0. */
  static async start(ns: Host, profile: WanProfile, opts: { seed?: number; maxLifeS?: number } = {}): Promise<Wanem> {
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
    const args = ['lan0', 'wan0', '--a2b', wanSpec(profile.up), '--b2a', wanSpec(profile.down), '--seed', String(seed), '--max-life', String(opts.maxLifeS ?? 1800)];
    const child = ns.spawn(wanemBinary(), args, { stdio: 'pipe' });
    const em = new Wanem(child, profile, seed);
    await em.line((l) => l === 'ready', 10_000);
    return em;
  }

  get alive(): boolean {
    return this.dead === null;
  }

  /** Replaces both directions' settings at runtime (queued packets keep their release times). */
  async set(profile: WanProfile): Promise<void> {
    for (const [dir, d] of [['a2b', profile.up], ['b2a', profile.down]] as const) {
      const reply = this.line((l) => l === 'ok' || l.startsWith('error'), 5000);
      this.child.stdin!.write(`${dir} ${wanSpec(d)}\n`);
      const r = await reply;
      if (r !== 'ok') throw new Error(`wanem refused ${wanSpec(d)}: ${r}`);
    }
    this.profile = profile;
  }

  async stats(): Promise<WanStats> {
    const reply = this.line((l) => l.startsWith('{'), 5000);
    this.child.stdin!.write('stats\n');
    const j = JSON.parse(await reply) as { a2b: WanDirStats; b2a: WanDirStats; queued: number };
    return { up: j.a2b, down: j.b2a, queued: j.queued };
  }

  /** Ends the emulator (SIGKILL to its group) and waits for it. */
  async stop(): Promise<void> {
    if (this.dead) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    if (this.child.pid !== undefined) killGroup(this.child.pid);
    await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
  }

  private line(match: (l: string) => boolean, timeoutMs: number): Promise<string> {
    if (this.dead) return Promise.reject(this.dead);
    const early = this.lines.findIndex(match);
    if (early >= 0) return Promise.resolve(this.lines.splice(early, 1)[0]!);
    return new Promise((resolve, reject) => {
      const w = {
        match,
        resolve: (l: string) => {
          clearTimeout(t);
          resolve(l);
        },
        reject: (e: Error) => {
          clearTimeout(t);
          reject(e);
        },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`wanem: no answer in ${timeoutMs} ms (${this.err.trim()})`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }
}
