// A wireguard-go (userspace) tunnel between two testbed hosts, the reference row of the data-plane
// benchmark: 10.200.0.1 <-> 10.200.0.2 over UDP 51820; the processes die at stop() or testbed cleanup.

import type { ChildProcess } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Host } from '../../test/harness/netns/index.js';
import { waitFor } from '../../test/harness/cluster.js';
import { stopChildren, type TunnelPair } from './pair.js';

export const WG_PORT = 51820;
const SOCK_DIR = '/var/run/wireguard';

export type WgPair = TunnelPair;

interface End {
  host: Host;
  ifname: string;
  tunAddr: string;
  keyFile: string;
  pub: string;
  child: ChildProcess | null;
}

/**
 * Sets up wireguard-go on `a` and `b` (both with an IPv4 on a shared segment). The UAPI sockets in
 * /var/run/wireguard are not namespaced, so each end gets a testbed-unique interface name.
 */
export async function setupWireguard(prefix: string, a: Host, b: Host, dir: string): Promise<WgPair> {
  if (!a.addr4 || !b.addr4) throw new Error('wireguard row needs IPv4 on both hosts');
  const ends: End[] = [];
  for (const [host, n] of [[a, 1], [b, 2]] as const) {
    const priv = (await host.run('wg', ['genkey'])).trim();
    const pub = (await host.run('wg', ['pubkey'], { input: priv + '\n' })).trim();
    const keyFile = join(dir, `wg-${host.name}.key`);
    writeFileSync(keyFile, priv + '\n', { mode: 0o600 });
    ends.push({ host, ifname: `${prefix}wg${host.name}`.slice(0, 15), tunAddr: `10.200.0.${n}`, keyFile, pub, child: null });
  }
  const socks = ends.map((e) => join(SOCK_DIR, `${e.ifname}.sock`));
  const removeSockets = (): void => {
    for (const s of socks) rmSync(s, { force: true });
  };
  process.once('exit', removeSockets); // SIGKILLed at cleanup, wireguard-go leaves its socket behind

  const stop = async (): Promise<void> => {
    await stopChildren(ends);
    removeSockets();
    process.off('exit', removeSockets);
  };

  try {
    for (const e of ends) {
      rmSync(join(SOCK_DIR, `${e.ifname}.sock`), { force: true });
      const child = e.host.spawn('wireguard-go', [e.ifname], {
        env: { WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'error' },
        logFile: join(dir, `wireguard-go-${e.host.name}.log`),
      });
      e.child = child;
      await waitFor(`wireguard-go ${e.ifname} UAPI socket`, async () => {
        if (child.exitCode !== null) throw new Error(`wireguard-go exited (${child.exitCode}); see ${join(dir, `wireguard-go-${e.host.name}.log`)}`);
        return existsSync(join(SOCK_DIR, `${e.ifname}.sock`));
      }, 10_000, 100);
    }
    for (const [me, peer] of [[ends[0]!, ends[1]!], [ends[1]!, ends[0]!]] as const) {
      await me.host.run('wg', [
        'set', me.ifname, 'listen-port', String(WG_PORT), 'private-key', me.keyFile,
        'peer', peer.pub, 'allowed-ips', `${peer.tunAddr}/32`, 'endpoint', `${peer.host.addr4}:${WG_PORT}`,
      ]);
      await me.host.run('ip', ['addr', 'add', `${me.tunAddr}/24`, 'dev', me.ifname]);
      await me.host.run('ip', ['link', 'set', me.ifname, 'up', 'mtu', '1420']);
    }
    // First packet triggers the handshake; wait until the tunnel carries traffic.
    await waitFor('wireguard tunnel up', async () => (await a.exec('ping', ['-n', '-c', '1', '-W', '1', ends[1]!.tunAddr], { timeoutMs: 5000 })).code === 0, 15_000, 200);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    addrA: ends[0]!.tunAddr,
    addrB: ends[1]!.tunAddr,
    pids: ends.map((e) => e.child?.pid).filter((p): p is number => p !== undefined),
    stop,
  };
}
