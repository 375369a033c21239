// Drives real cyphonic processes inside testbed namespaces: a cloud on the global segment, nodes anywhere.
// Shared by the e2e suites, the demo and the benchmarks; every wait is bounded in time.

import { mkdtempSync, mkdirSync, rmSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { controlGet } from '../../src/util/control.js';
import type { NodeRow, RelayRow } from '../../src/cloud/cloud.js';
import type { NodeStatus } from '../../src/node/daemon.js';
import type { Host } from './netns/index.js';

/** Repository root (this file runs from dist/test/harness/). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const CLI = join(REPO, 'bin', 'cyphonic.js');

export function workDir(label: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), `cyp-${label}-`));
  return { dir, remove: () => (process.env['CYPHONIC_KEEP'] ? undefined : rmSync(dir, { recursive: true, force: true })) };
}

/** Runs a CLI command inside `host` and returns stdout; throws with stderr on failure. */
export function cyphonic(host: Host, args: string[], timeoutMs = 60_000): Promise<string> {
  return host.run(process.execPath, [CLI, ...args], { timeoutMs });
}

/** Polls `fn` until it returns a truthy value; throws after `timeoutMs` with the last error or value. */
export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 20_000, everyMs = 150): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
}

/** A cyphonic daemon running in a namespace: kill -9 and clean stop. */
abstract class DaemonProc {
  child: ChildProcess | null = null;
  constructor(readonly host: Host) {}

  async kill9(): Promise<void> {
    await this.signal('SIGKILL');
  }

  async stop(): Promise<void> {
    await this.signal('SIGTERM');
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    const c = this.child;
    if (!c) return;
    c.kill(sig);
    await exited(c);
    this.child = null;
  }
}

export class CloudProc extends DaemonProc {
  readonly dir: string;
  constructor(host: Host, base: string) {
    super(host);
    this.dir = join(base, 'cloud');
  }

  get log(): string {
    return join(this.dir, '..', `cloud-${this.host.name}.log`);
  }

  async init(extra: string[] = []): Promise<void> {
    const advertise = [this.host.addr4, this.host.addr6].filter(Boolean).join(',');
    await cyphonic(this.host, ['cloud', 'init', '--dir', this.dir, '--advertise', advertise, ...extra]);
  }

  /** Edits DIR/cloud.json (tests shorten timers this way). */
  async patchConfig(patch: Record<string, unknown>): Promise<void> {
    const { writeFileSync } = await import('node:fs');
    const path = join(this.dir, 'cloud.json');
    writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, 'utf8')), ...patch }, null, 2));
  }

  /** `cloud start`; tests run AS and NMS only (and TRS processes of their own) unless they pass other flags ([] = the defaults). */
  async start(flags: string[] = ['--roles', 'as,nms']): Promise<void> {
    this.child = this.host.spawn(process.execPath, [CLI, 'cloud', 'start', '--dir', this.dir, ...flags], { logFile: this.log });
    await waitFor('cloud control socket', () => this.metrics().then(() => true), 20_000);
  }

  metrics(): Promise<{ as: Record<string, number> | null; nms: Record<string, number> | null }> {
    return controlGet(join(this.dir, 'cloud.sock'), '/metrics') as Promise<{ as: Record<string, number> | null; nms: Record<string, number> | null }>;
  }

  async enroll(name: string): Promise<string> {
    return (await cyphonic(this.host, ['cloud', 'enroll', name, '--dir', this.dir])).trim();
  }

  /** A TRS on this cloud host (its own process, log DIR/../trs-PORT.log); resolves once `cloud relays` lists it live. */
  async startTrs(port: number): Promise<ChildProcess> {
    const child = this.host.spawn(process.execPath, [CLI, 'cloud', 'start', '--dir', this.dir, '--roles', 'trs', '--trs-port', String(port)], { logFile: join(this.dir, '..', `trs-${port}.log`) });
    await waitFor(`TRS :${port} live`, async () => {
      const out = await this.host.run(process.execPath, [CLI, 'cloud', 'relays', '--dir', this.dir, '--json']);
      return (JSON.parse(out) as RelayRow[]).some((r) => r.live && r.endpoints.some((e) => e.endsWith(`:${port}`)));
    }, 20_000);
    return child;
  }

  async nodes(): Promise<NodeRow[]> {
    return JSON.parse(await cyphonic(this.host, ['cloud', 'nodes', '--dir', this.dir, '--json'])) as NodeRow[];
  }
}

export type NodeStatusJson = NodeStatus;

export class NodeProc extends DaemonProc {
  readonly state: string;
  constructor(
    host: Host,
    base: string,
    readonly name: string,
  ) {
    super(host);
    this.state = join(base, 'nodes', name);
  }

  get log(): string {
    return join(this.state, '..', `${this.name}.log`);
  }

  start(token?: string, extra: string[] = []): ChildProcess {
    mkdirSync(dirname(this.log), { recursive: true });
    const args = [CLI, 'node', 'up', '--state', this.state, ...(token ? ['--token', token] : []), ...extra];
    this.child = this.host.spawn(process.execPath, args, { logFile: this.log });
    return this.child;
  }

  status(): Promise<NodeStatusJson> {
    return controlGet(join(this.state, 'control.sock'), '/status') as Promise<NodeStatusJson>;
  }

  waitRegistered(timeoutMs = 30_000): Promise<NodeStatusJson> {
    return waitFor(`${this.name} registered`, async () => {
      if (this.child && this.child.exitCode !== null) throw new Error(`${this.name} exited: ${this.tail()}`);
      const s = await this.status();
      return s.registered ? s : null;
    }, timeoutMs);
  }

  tail(lines = 15): string {
    return existsSync(this.log) ? readFileSync(this.log, 'utf8').trim().split('\n').slice(-lines).join('\n') : '(no log)';
  }
}

/** Waits for a child to exit and returns its exit code. */
export async function exitCode(child: ChildProcess, timeoutMs = 30_000): Promise<number> {
  await Promise.race([exited(child), new Promise((_, rej) => setTimeout(() => rej(new Error('process did not exit')), timeoutMs))]);
  return child.exitCode ?? -1;
}

/** Points the namespace's resolver at a node's overlay DNS (ip netns exec bind-mounts /etc/netns/NS/); returns the undo. */
export function useOverlayDns(host: Host, dns: string): () => void {
  const dir = join('/etc/netns', host.ns);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'resolv.conf'), `nameserver ${dns}\noptions timeout:2 attempts:2\n`);
  return () => rmSync(dir, { recursive: true, force: true });
}
