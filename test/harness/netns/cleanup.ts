// Cleanup machinery of the netns testbed: owner marker files, synchronous teardown on exit/signals,
// and the stale sweep that removes namespaces left behind by earlier runs that died (even by SIGKILL).

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';

/** Directory holding one `<prefix>.pid` marker per live testbed: "<pid> <starttime>". */
export const MARKER_DIR = '/run/cyphonic-testbed';
/** Namespaces made by a testbed with a generated prefix: `cy` + 4 base36 chars + `-` + name. */
export const STALE_NS_RE = /^(cy[0-9a-z]{4})-/;
/** Interfaces a testbed may leave in the root namespace: `<prefix>v<counter>[ab]`. */
const STALE_LINK_RE = /^\d+:\s+(cy[0-9a-z]{4})v\d+[ab][@:]/;

function markerPath(prefix: string): string {
  return `${MARKER_DIR}/${prefix}.pid`;
}

/** Fields 3.. of /proc/<pid>/stat (after "pid (comm)"), or null when the process does not exist. */
function procStat(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** Process start time (clock ticks since boot, field 22 of /proc/<pid>/stat) to defeat pid reuse. */
export function procStartTime(pid: number): string | null {
  return procStat(pid)?.[19] ?? null;
}

/** True when `pid` exists and is not a zombie. */
export function pidAlive(pid: number): boolean {
  const st = procStat(pid);
  return st !== null && st[0] !== 'Z' && st[0] !== 'X';
}

export function writeMarker(prefix: string): void {
  mkdirSync(MARKER_DIR, { recursive: true });
  writeFileSync(markerPath(prefix), `${process.pid} ${procStartTime(process.pid) ?? '?'}\n`, { flag: 'wx' });
}

export function removeMarker(prefix: string): void {
  rmSync(markerPath(prefix), { force: true });
}

export function markerExists(prefix: string): boolean {
  try {
    statSync(markerPath(prefix));
    return true;
  } catch {
    return false;
  }
}

/** True when the process that owns `prefix` is still running (same pid and start time). */
export function ownerAlive(prefix: string): boolean {
  let text: string;
  try {
    text = readFileSync(markerPath(prefix), 'utf8');
  } catch {
    return false;
  }
  const [pidStr, start] = text.trim().split(/\s+/);
  const pid = Number(pidStr);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (!pidAlive(pid)) return false; // a zombie owner is dead too
  const now = procStartTime(pid);
  return start === undefined || start === '?' || now === null || now === start;
}

/** Names from `ip netns list` (which prints "name (id: N)" lines). */
export function listNetnsSync(): string[] {
  try {
    const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
    return out
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0] ?? '')
      .filter((n) => n.length > 0);
  } catch {
    return [];
  }
}

/** SIGKILLs every process whose network namespace is one of the named ones (found via /proc). */
export function killProcessesInNetns(names: string[]): number {
  const inodes = new Set<string>();
  for (const n of names) {
    try {
      inodes.add(`net:[${statSync(`/run/netns/${n}`).ino}]`);
    } catch {
      /* gone already */
    }
  }
  if (inodes.size === 0) return 0;
  let killed = 0;
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    try {
      if (inodes.has(readlinkSync(`/proc/${e}/ns/net`))) {
        process.kill(pid, 'SIGKILL');
        killed++;
      }
    } catch {
      /* raced with exit */
    }
  }
  return killed;
}

/** Kills the namespaces' processes and deletes them, synchronously. Never throws. */
export function deleteNetnsSync(names: string[]): void {
  if (names.length === 0) return;
  killProcessesInNetns(names);
  try {
    execFileSync('ip', ['-force', '-batch', '-'], {
      input: names.map((n) => `netns del ${n}\n`).join(''),
      stdio: ['pipe', 'ignore', 'ignore'],
      timeout: 20_000,
    });
  } catch {
    /* -force reports failures (e.g. already deleted) via the exit code; nothing to do */
  }
}

/**
 * Deletes namespaces (and root-namespace veths and marker files) of testbeds whose owning
 * process is dead. `keep` is the prefix of the caller, never swept. Returns the deleted namespaces.
 */
export function sweepStale(keep?: string): string[] {
  const alive = new Map<string, boolean>();
  const isDead = (prefix: string): boolean => {
    if (prefix === keep) return false;
    let a = alive.get(prefix);
    if (a === undefined) {
      a = ownerAlive(prefix);
      alive.set(prefix, a);
    }
    return !a;
  };
  const stale = listNetnsSync().filter((n) => {
    const m = STALE_NS_RE.exec(n);
    return m !== null && isDead(m[1]!);
  });
  deleteNetnsSync(stale);
  try {
    const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
    for (const line of links.split('\n')) {
      const m = STALE_LINK_RE.exec(line);
      if (m && isDead(m[1]!)) {
        const name = line.split(':')[1]!.trim().split('@')[0]!;
        try {
          execFileSync('ip', ['link', 'del', name], { stdio: 'ignore', timeout: 10_000 });
        } catch {
          /* peer deletion may have removed it */
        }
      }
    }
  } catch {
    /* no ip: nothing to sweep */
  }
  try {
    for (const f of readdirSync(MARKER_DIR)) {
      const m = /^(.+)\.pid$/.exec(f);
      if (m && isDead(m[1]!)) removeMarker(m[1]!);
    }
  } catch {
    /* no marker dir yet */
  }
  return stale;
}

// ---- process-wide teardown registry -------------------------------------------------------

const teardowns = new Set<() => void>();
let installed = false;

function runAll(): void {
  for (const t of [...teardowns]) {
    try {
      t();
    } catch {
      /* keep going: the other testbeds must still be removed */
    }
  }
  teardowns.clear();
}

const onSignal = (signal: NodeJS.Signals, code: number) => (): void => {
  runAll();
  process.exit(code);
};
const handlers: Array<[NodeJS.Signals, () => void]> = [
  ['SIGINT', onSignal('SIGINT', 130)],
  ['SIGTERM', onSignal('SIGTERM', 143)],
  ['SIGHUP', onSignal('SIGHUP', 129)],
];

/** Registers a synchronous teardown run on exit, SIGINT/SIGTERM/SIGHUP and uncaught exceptions. */
export function registerTeardown(fn: () => void): () => void {
  teardowns.add(fn);
  if (!installed) {
    installed = true;
    process.on('exit', runAll);
    // The monitor variant observes crashes without changing Node's default crash behaviour;
    // 'exit' then fires as well and finds nothing left to do.
    process.on('uncaughtExceptionMonitor', runAll);
    for (const [sig, h] of handlers) process.on(sig, h);
  }
  return () => {
    teardowns.delete(fn);
    if (teardowns.size === 0 && installed) {
      installed = false;
      process.off('exit', runAll);
      process.off('uncaughtExceptionMonitor', runAll);
      for (const [sig, h] of handlers) process.off(sig, h);
    }
  };
}
