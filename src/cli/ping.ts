// `cyphonic node ping NAME --state DIR`: probes a peer through the overlay and says which path the probes took.
// NAME (a node or general node name, or its FQDN) is resolved by the node's own overlay resolver (which starts route
// selection at the NMS), then ICMP echo requests go to its virtual address through the TUN — the system's `ping`
// (iputils) sends them, one per probe, so each probe's RTT is its own — and the node's status names the path:
// direct, punched, or relayed via which TRS.

import { execFile } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { promisify } from 'node:util';
import type { NodeStatus } from '../node/daemon.js';
import { StateDir } from '../node/state.js';
import { controlGet } from '../util/control.js';
import { ConfigError, CyphonicError } from '../util/errors.js';

const run = promisify(execFile);

export interface PingProbe {
  seq: number;
  /** Round-trip time in ms; null: no answer within the timeout. */
  rttMs: number | null;
}

export interface PingResult {
  name: string;
  address: string;
  path: string | null;
  relay: string | null;
  probes: PingProbe[];
}

async function status(state: StateDir): Promise<NodeStatus> {
  try {
    return (await controlGet(state.controlPath, '/status')) as NodeStatus;
  } catch (err) {
    if (err instanceof CyphonicError && err.code === 'ERR_NOT_RUNNING') throw new ConfigError('the node is not running (node up first)', 'ERR_NOT_RUNNING');
    throw err;
  }
}

export async function nodePing(stateDir: string, target: string, count: number, timeoutSec: number, onProbe: (p: PingProbe) => void): Promise<PingResult> {
  const state = new StateDir(stateDir);
  const st = await status(state);
  if (!st.dns || !st.vip4) throw new ConfigError('the node has no overlay resolver (started with --no-tun?)', 'ERR_NO_DNS');
  let address = isIP(target) ? target : '';
  if (!address) {
    if (!/^[a-z0-9.-]{1,253}$/i.test(target)) throw new ConfigError(`${target} is not a node name`, 'ERR_NAME');
    const fqdn = target.includes('.') ? target : st.fqdn.replace(/^[^.]+/, target); // NAME → NAME.<domain>
    const r = new Resolver({ timeout: 3000, tries: 2 });
    r.setServers([st.dns]);
    try {
      address = (await r.resolve4(fqdn))[0] ?? '';
    } catch {
      try {
        address = (await r.resolve6(fqdn))[0] ?? '';
      } catch (err) {
        throw new ConfigError(`${fqdn}: not resolved by the overlay (${(err as Error).message}); unknown name, or no rule allows it`, 'ERR_UNKNOWN_NODE');
      }
    }
  }
  const probes: PingProbe[] = [];
  for (let seq = 1; seq <= count; seq++) {
    const args = [isIP(address) === 6 ? '-6' : '-4', '-n', '-c', '1', '-W', String(timeoutSec), address];
    let rttMs: number | null = null;
    try {
      const { stdout } = await run('ping', args, { timeout: (timeoutSec + 2) * 1000 });
      const m = /time[=<]([0-9.]+) ms/.exec(stdout);
      rttMs = m ? Number(m[1]) : null;
    } catch {
      rttMs = null; // no answer (ping exits 1)
    }
    const p = { seq, rttMs };
    probes.push(p);
    onProbe(p);
  }
  const peer = (await status(state)).peers.find((p) => p.vip4 === address || p.vip6 === address);
  return { name: peer?.name ?? target, address, path: peer?.path ?? null, relay: peer?.relay ?? null, probes };
}
