// Process helpers for the netns testbed: bounded command execution and process-group tracking.
// Every child runs detached in its own process group so a timeout or cleanup can SIGKILL the whole tree.

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  /** true when the command was killed because it exceeded its timeout (code is then 124). */
  timedOut?: boolean;
}

export interface ExecOptions {
  /** Kill the command's process group after this many ms (default 30 000). */
  timeoutMs?: number;
  /** Written to the command's stdin, which is then closed. */
  input?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

const MAX_CAPTURE = 16 * 1024 * 1024;
const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 };

/** Process groups (leader pids) that are alive and must be killed at cleanup. */
export class GroupTracker {
  private readonly pids = new Set<number>();

  add(child: ChildProcess): void {
    const pid = child.pid;
    if (pid === undefined) return;
    this.pids.add(pid);
    child.once('exit', () => this.pids.delete(pid));
  }

  /** SIGKILL every tracked process group. Synchronous, never throws. */
  killAll(): void {
    for (const pid of this.pids) killGroup(pid);
    this.pids.clear();
  }
}

export function killGroup(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  }
}

/** Runs `cmd args` in its own process group; resolves with its exit status, never rejects on failure. */
export function execBounded(cmd: string, args: string[], opts: ExecOptions = {}, tracker?: GroupTracker): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve) => {
    const spawnOpts: SpawnOptions = { detached: true, stdio: ['pipe', 'pipe', 'pipe'] };
    if (opts.env) spawnOpts.env = opts.env;
    if (opts.cwd) spawnOpts.cwd = opts.cwd;
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, spawnOpts);
    } catch (err) {
      resolve({ code: 127, stdout: '', stderr: String(err) });
      return;
    }
    tracker?.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    let timedOut = false;
    let settled = false;
    child.stdout!.on('data', (b: Buffer) => {
      if (outLen < MAX_CAPTURE) out.push(b);
      outLen += b.length;
    });
    child.stderr!.on('data', (b: Buffer) => {
      if (errLen < MAX_CAPTURE) err.push(b);
      errLen += b.length;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) killGroup(child.pid);
    }, timeoutMs);
    const finish = (code: number, extraErr = ''): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      let stderr = Buffer.concat(err).toString('utf8') + extraErr;
      if (timedOut) stderr += `\n[killed after ${timeoutMs} ms timeout]`;
      const res: ExecResult = { code: timedOut ? 124 : code, stdout: Buffer.concat(out).toString('utf8'), stderr };
      if (timedOut) res.timedOut = true;
      resolve(res);
    };
    child.on('error', (e) => finish(127, String(e)));
    child.on('close', (code, signal) => {
      finish(code ?? (signal ? 128 + (SIGNAL_NUMBERS[signal] ?? 0) : 1));
    });
    child.stdin!.on('error', () => {
      /* EPIPE when the command does not read its input */
    });
    child.stdin!.end(opts.input ?? '');
  });
}

/** Like execBounded but rejects (with the command line and stderr) on a non-zero exit. */
export async function runChecked(cmd: string, args: string[], opts: ExecOptions = {}, tracker?: GroupTracker): Promise<string> {
  const r = await execBounded(cmd, args, opts, tracker);
  if (r.code !== 0) {
    throw new Error(`command failed (exit ${r.code}): ${[cmd, ...args].join(' ')}\n${r.stderr.trim()}`);
  }
  return r.stdout;
}
