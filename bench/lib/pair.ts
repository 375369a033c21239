// What the reference tunnels of the data-plane benchmark (wireguard-go, Nebula) have in common: a pair of
// tunnel addresses, the daemon pids for CPU accounting, and stopping their process groups politely, then not.

import type { ChildProcess } from 'node:child_process';
import { killGroup } from '../../test/harness/netns/index.js';
import { sleep } from './measure.js';

export interface TunnelPair {
  /** Tunnel address of the two ends (a, b). */
  addrA: string;
  addrB: string;
  /** Tunnel daemon process ids (a, b) for CPU accounting. */
  pids: number[];
  stop(): Promise<void>;
}

/** SIGTERM to each still-running child's process group, SIGKILL after `graceMs`; takes them out of `ends`. */
export async function stopChildren(ends: { child: ChildProcess | null }[], graceMs = 3000): Promise<void> {
  for (const e of ends) {
    const c = e.child;
    e.child = null;
    if (!c || c.pid === undefined || c.exitCode !== null || c.signalCode !== null) continue;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    killGroup(c.pid, 'SIGTERM');
    await Promise.race([gone, sleep(graceMs)]);
    if (c.exitCode === null && c.signalCode === null) killGroup(c.pid, 'SIGKILL');
  }
}
