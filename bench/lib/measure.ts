// Measurement helpers for the data-plane benchmark: medians, ping/dig output parsing, path MTU and
// per-process CPU accounting from /proc/<pid>/stat (a process tree's utime+stime, all threads).

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { Host } from '../../test/harness/netns/index.js';

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of nothing');
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function errMsg(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.split('\n').map((l) => l.trim()).filter(Boolean).slice(0, 3).join(' | ');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---- ping -----------------------------------------------------------------------------------

/** Every `time=X ms` of a ping output, in order. */
export function parsePingTimes(out: string): number[] {
  const times: number[] = [];
  for (const m of out.matchAll(/time[=<]([\d.]+) ?ms/g)) times.push(Number(m[1]));
  return times;
}

/** Median RTT in ms of `ping -c count -i interval` from `host` to `target` (after a short warm-up). */
export async function pingMedian(host: Host, target: string, count = 50, interval = '0.01'): Promise<{ median: number; received: number }> {
  await host.exec('ping', ['-n', '-c', '3', '-i', '0.2', '-W', '1', target], { timeoutMs: 10_000 });
  const r = await host.exec('ping', ['-n', '-c', String(count), '-i', interval, '-W', '1', target], { timeoutMs: 30_000 });
  const times = parsePingTimes(r.stdout);
  if (times.length === 0) throw new Error(`ping ${target}: no replies (exit ${r.code}) ${r.stderr.trim()}`);
  return { median: median(times), received: times.length };
}

/**
 * First-contact time: `ping -c 1 -W 2` and its time= value (it includes any route selection and
 * tunnel setup the first packet triggers). When that first packet gets no reply, falls back to the
 * wall time from the first ping until the first reply (bounded by `limitMs`).
 */
export async function firstContactPing(host: Host, target: string, limitMs = 15_000): Promise<{ ms: number; how: string }> {
  const t0 = process.hrtime.bigint();
  const first = await host.exec('ping', ['-n', '-c', '1', '-W', '2', target], { timeoutMs: 10_000 });
  const t = parsePingTimes(first.stdout);
  if (first.code === 0 && t.length > 0) return { ms: t[0]!, how: 'time= of the first ping' };
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline) {
    const r = await host.exec('ping', ['-n', '-c', '1', '-W', '1', target], { timeoutMs: 10_000 });
    if (r.code === 0 && parsePingTimes(r.stdout).length > 0) {
      return { ms: Number(process.hrtime.bigint() - t0) / 1e6, how: 'first packet lost; wall time until the first reply' };
    }
  }
  throw new Error(`no ping reply from ${target} within ${limitMs} ms`);
}

// ---- path MTU -------------------------------------------------------------------------------

/** MTU towards `target` from `host`: the route's own mtu if it has one, else its device's MTU. */
export async function routeMtu(host: Host, target: string): Promise<number> {
  const route = await host.run('ip', ['-o', 'route', 'get', target], { timeoutMs: 5000 });
  const own = / mtu (?:lock )?(\d+)/.exec(route);
  if (own) return Number(own[1]);
  const dev = / dev (\S+)/.exec(route)?.[1];
  if (!dev) throw new Error(`ip route get ${target}: no device in "${route.trim()}"`);
  const link = await host.run('ip', ['-o', 'link', 'show', 'dev', dev], { timeoutMs: 5000 });
  const mtu = / mtu (\d+)/.exec(link);
  if (!mtu) throw new Error(`ip link show ${dev}: no mtu`);
  return Number(mtu[1]);
}

/** IPv4 fragments one UDP datagram of `payload` bytes becomes on a link of `mtu` (1 when it fits). */
export function udp4Fragments(payload: number, mtu: number): number {
  const l4 = payload + 8;
  if (l4 <= mtu - 20) return 1;
  const perFragment = Math.floor((mtu - 20) / 8) * 8; // all but the last fragment carry a multiple of 8 bytes
  return Math.ceil(l4 / perFragment);
}

// ---- dig ------------------------------------------------------------------------------------

export interface DigResult {
  queryMs: number;
  status: string;
  answers: string[];
}

/** `dig @server -p port name type +tries=1 +time=2`: dig's own "Query time", the rcode and the answer RDATA. */
export async function dig(host: Host, server: string, name: string, type = 'A', port = 53): Promise<DigResult> {
  const r = await host.exec('dig', [`@${server}`, '-p', String(port), name, type, '+tries=1', '+time=2', '+nocookie'], { timeoutMs: 10_000 });
  const q = /Query time: (\d+) msec/.exec(r.stdout);
  if (r.code !== 0 || !q) throw new Error(`dig @${server} ${name} ${type} failed (exit ${r.code}): ${(r.stdout + r.stderr).trim().split('\n').slice(-2).join(' ')}`);
  const status = /status: ([A-Z]+)/.exec(r.stdout)?.[1] ?? '?';
  const answers: string[] = [];
  const section = r.stdout.split(';; ANSWER SECTION:')[1];
  if (section) {
    for (const line of section.split('\n').slice(1)) {
      if (line.trim() === '' || line.startsWith(';')) break;
      const f = line.trim().split(/\s+/);
      if (f[3] === type) answers.push(f.slice(4).join(' '));
    }
  }
  return { queryMs: Number(q[1]), status, answers };
}

// ---- CPU ------------------------------------------------------------------------------------

let clkTck = 0;
function ticksPerSecond(): number {
  if (clkTck === 0) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

interface ProcStat {
  ppid: number;
  ticks: number;
}

function readStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // "pid (comm) state ppid ..." — comm may hold spaces and parentheses, so split after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
}

/** The pids of `roots` and all their live descendants. */
export function processTree(roots: readonly number[]): number[] {
  const children = new Map<number, number[]>();
  for (const ent of readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    const st = readStat(Number(ent));
    if (!st) continue;
    const list = children.get(st.ppid) ?? [];
    list.push(Number(ent));
    children.set(st.ppid, list);
  }
  const out: number[] = [];
  const seen = new Set<number>();
  const queue = [...roots];
  while (queue.length > 0) {
    const p = queue.shift()!;
    if (seen.has(p)) continue;
    seen.add(p);
    out.push(p);
    queue.push(...(children.get(p) ?? []));
  }
  return out;
}

/** user+system CPU seconds (all threads) of the process trees under `roots`, per pid. */
export function cpuSnapshot(roots: readonly number[]): Map<number, number> {
  const snap = new Map<number, number>();
  for (const pid of processTree(roots)) {
    const st = readStat(pid);
    if (st) snap.set(pid, st.ticks / ticksPerSecond());
  }
  return snap;
}

/** CPU seconds spent between two snapshots (a pid absent before counts from zero). */
export function cpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  for (const [pid, secs] of after) sum += secs - (before.get(pid) ?? 0);
  return sum;
}
