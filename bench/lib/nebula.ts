// A Nebula tunnel between two testbed hosts, the second reference row of the data-plane benchmark:
// 10.201.0.1 <-> 10.201.0.2 over UDP 4242, no lighthouse; the processes die at stop() or testbed cleanup.

import type { ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Host } from '../../test/harness/netns/index.js';
import { waitFor } from '../../test/harness/cluster.js';
import { stopChildren, type TunnelPair } from './pair.js';

export const NEBULA_PORT = 4242;
/**
 * Tun MTU. Nebula 1.6.1 defaults to 1300; we give it 1400, the same as cyphonic's (wireguard-go: 1420), so the
 * benchmark's 1400-byte UDP packets cross every tunnel unfragmented. Its outer packets are then 1460 bytes on IPv4
 * (60 bytes of overhead), which a 1500-byte underlay carries.
 */
export const NEBULA_MTU = 1400;
/** Interface names are per namespace, so every end uses the same one. */
const IFNAME = 'neb1';

export type NebulaPair = TunnelPair;

interface End {
  host: Host;
  tunAddr: string;
  crt: string;
  key: string;
  config: string;
  log: string;
  child: ChildProcess | null;
}

/** One end's config: the CA, its own cert, the peer's underlay address, an allow-all firewall. */
function configYaml(caCrt: string, me: End, peerTunAddr: string, peerUnderlay: string): string {
  return [
    'pki:',
    `  ca: "${caCrt}"`,
    `  cert: "${me.crt}"`,
    `  key: "${me.key}"`,
    'static_host_map:',
    `  "${peerTunAddr}": ["${peerUnderlay}:${NEBULA_PORT}"]`,
    'lighthouse:',
    '  am_lighthouse: false',
    '  hosts: []',
    'listen:',
    '  host: 0.0.0.0',
    `  port: ${NEBULA_PORT}`,
    'punchy:',
    '  punch: false',
    'relay:',
    '  am_relay: false',
    '  use_relays: false',
    'tun:',
    '  disabled: false',
    `  dev: ${IFNAME}`,
    `  mtu: ${NEBULA_MTU}`,
    'logging:',
    '  level: warning',
    '  format: text',
    'firewall:',
    '  outbound:',
    '    - port: any',
    '      proto: any',
    '      host: any',
    '  inbound:',
    '    - port: any',
    '      proto: any',
    '      host: any',
    '',
  ].join('\n');
}

/** The last lines of a log file, for an error message. */
function logTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-2).join(' | ') || `(empty ${file})`;
  } catch {
    return `(no ${file})`;
  }
}

/**
 * Sets up Nebula on `a` and `b` (both with an IPv4 on a shared segment): a CA and two host certs
 * made with nebula-cert in `dir`, each end pointed at the other by static_host_map.
 */
export async function setupNebula(a: Host, b: Host, dir: string): Promise<NebulaPair> {
  if (!a.addr4 || !b.addr4) throw new Error('Nebula row needs IPv4 on both hosts');
  const caCrt = join(dir, 'nebula-ca.crt');
  const caKey = join(dir, 'nebula-ca.key');
  const ends: End[] = [[a, 1] as const, [b, 2] as const].map(([host, n]) => ({
    host,
    tunAddr: `10.201.0.${n}`,
    crt: join(dir, `nebula-${host.name}.crt`),
    key: join(dir, `nebula-${host.name}.key`),
    config: join(dir, `nebula-${host.name}.yml`),
    log: join(dir, `nebula-${host.name}.log`),
    child: null,
  }));
  // nebula-cert refuses to overwrite its outputs.
  for (const f of [caCrt, caKey, ...ends.flatMap((e) => [e.crt, e.key])]) rmSync(f, { force: true });
  await a.run('nebula-cert', ['ca', '-name', 'cyphonic-bench', '-out-crt', caCrt, '-out-key', caKey]);
  for (const e of ends) {
    await a.run('nebula-cert', ['sign', '-ca-crt', caCrt, '-ca-key', caKey, '-name', e.host.name, '-ip', `${e.tunAddr}/24`, '-out-crt', e.crt, '-out-key', e.key]);
  }
  for (const [me, peer] of [[ends[0]!, ends[1]!], [ends[1]!, ends[0]!]] as const) {
    writeFileSync(me.config, configYaml(caCrt, me, peer.tunAddr, peer.host.addr4!));
  }

  const stop = async (): Promise<void> => {
    await stopChildren(ends);
  };

  /** Why a nebula process has already exited (a bad config ends it right away), or null. */
  const exited = (): string | null => {
    for (const e of ends) {
      const c = e.child;
      if (c && (c.exitCode !== null || c.signalCode !== null)) return `nebula in ${e.host.name} exited (${c.exitCode ?? c.signalCode}): ${logTail(e.log)}`;
    }
    return null;
  };
  /** waitFor on `probe` that gives up at once when a nebula process is gone (waitFor polls through errors). */
  const until = async (what: string, probe: () => Promise<boolean>, timeoutMs: number, everyMs: number): Promise<void> => {
    const r = await waitFor(what, async () => exited() ?? ((await probe()) ? 'up' : false), timeoutMs, everyMs);
    if (r !== 'up') throw new Error(r);
  };

  try {
    for (const e of ends) {
      e.child = e.host.spawn('nebula', ['-config', e.config], { logFile: e.log });
      await until(`nebula ${IFNAME} in ${e.host.name}`, async () => {
        const r = await e.host.exec('ip', ['-o', 'addr', 'show', 'dev', IFNAME], { timeoutMs: 5000 });
        return r.code === 0 && r.stdout.includes(` ${e.tunAddr}/`);
      }, 10_000, 100);
    }
    // The first packet triggers the handshake; wait until the tunnel carries traffic.
    await until('Nebula tunnel up', async () => (await a.exec('ping', ['-n', '-c', '1', '-W', '1', ends[1]!.tunAddr], { timeoutMs: 5000 })).code === 0, 15_000, 200);
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
