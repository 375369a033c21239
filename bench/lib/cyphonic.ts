// A small cyphonic overlay for the data-plane benchmark: a cloud plus nodes on testbed hosts, each
// node up with its TUN device, virtual addresses and overlay DNS resolver; stop() ends every process.

import { CloudProc, NodeProc, waitFor, type NodeStatusJson } from '../../test/harness/cluster.js';
import type { Host } from '../../test/harness/netns/index.js';

export interface PeerStatus {
  name: string;
  fqdn?: string;
  vip4?: string | null;
  vip6?: string | null;
  path?: string | null;
  endpoint?: string | null;
  rxBytes?: number;
  txBytes?: number;
  lastHandshake?: string | number | null;
}

export interface ReadyNode {
  proc: NodeProc;
  status: NodeStatusJson;
  vip4: string;
  dns: string | null;
}

export interface Overlay {
  cloud: CloudProc;
  nodes: Map<string, ReadyNode>;
  /** Node daemon pids (CPU accounting roots). */
  pids(names: readonly string[]): number[];
  peers(name: string): Promise<PeerStatus[]>;
  stop(): Promise<void>;
}

/** `work`, or a rejection as soon as the node daemon exits (instead of polling a dead control socket). */
async function untilExit<T>(p: NodeProc, work: Promise<T>): Promise<T> {
  const child = p.child;
  if (!child) return work;
  let onExit: (() => void) | null = null;
  const died = new Promise<never>((_, reject) => {
    onExit = () => reject(new Error(`node ${p.name} exited (code ${child.exitCode ?? child.signalCode})`));
    if (child.exitCode !== null || child.signalCode !== null) onExit();
    else child.once('exit', onExit);
  });
  try {
    return await Promise.race([work, died]);
  } finally {
    if (onExit) child.off('exit', onExit);
    work.catch(() => undefined);
  }
}

/** Cloud on `cloudHost`, one node per host (named after the host), all registered with a vip4. */
export async function setupOverlay(cloudHost: Host, hosts: readonly Host[], dir: string, nodeArgs: readonly string[] = []): Promise<Overlay> {
  const cloud = new CloudProc(cloudHost, dir);
  const procs: NodeProc[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(procs.map((p) => p.stop().catch(() => undefined)));
    await cloud.stop().catch(() => undefined);
  };
  const nodes = new Map<string, ReadyNode>();
  try {
    await cloud.init();
    await cloud.start();
    for (const h of hosts) {
      const token = await cloud.enroll(h.name);
      const p = new NodeProc(h, dir, h.name);
      procs.push(p);
      p.start(token, [...nodeArgs]);
    }
    for (const p of procs) {
      try {
        await untilExit(p, p.waitRegistered(30_000));
        // The data plane (TUN with the virtual addresses, DNS resolver) may come up just after registration.
        const status = await untilExit(p, waitFor(`${p.name} vip4 on its TUN`, async () => {
          const s = await p.status();
          return s.vip4 ? s : null;
        }, 15_000));
        nodes.set(p.name, { proc: p, status, vip4: status.vip4!, dns: status.dns ?? null });
      } catch (err) {
        throw new Error(`${err instanceof Error ? err.message : String(err)}\n${p.name} log: ${p.tail(5)}`);
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    cloud,
    nodes,
    pids: (names) => names.map((n) => nodes.get(n)?.proc.child?.pid).filter((x): x is number => x !== undefined),
    peers: async (name) => ((await nodes.get(name)!.proc.status()).peers ?? []) as PeerStatus[],
    stop,
  };
}
