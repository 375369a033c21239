// `cyphonic node netcheck --state DIR [--json]`: what the network around a node allows, measured on demand.
//   - address families: this host's global IPv4/IPv6 addresses (overlay addresses and the TUN left out) and whether
//     each family has a default route (`ip -j route show default`);
//   - NAT: whether the NMS sees another endpoint than the ones we have, and the NAT's mapping behaviour, judged as the
//     NMS judges it (src/node/nat-follow.ts, nms/service.ts probe): the public endpoint seen at the NMS's probe port is
//     the one seen at its main port → endpoint-independent (punchable), another port → endpoint-dependent;
//   - each AS (TCP connect time), each NMS (round trip of a sealed request, and of the probe) and each TRS with its
//     latency: every endpoint of every live TRS the NMS lists (a RelayProbe under a ticket the NMS issues; no relayed
//     path needed, src/node/relay-probe.ts), and any other TRS the node has a relayed path through (a RelayBind).
// A running node is asked over its control socket (GET /netcheck): it measures over its own socket and Common Key, so
// nothing it holds changes. Without one, a standalone probe logs in with the state directory's certificate (a new
// Common Key: only when no daemon uses the old one), registers once from a fresh socket and probes the same way; the
// NMS then shows the node online until its keepalive timeout.

import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { connect, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { promisify } from 'node:util';
import { contains } from '../net/addr/cidr.js';
import { MessageType } from '../protocol/constants.js';
import { formatEndpoint, parseEndpoint, type Endpoint } from '../protocol/endpoint.js';
import { decodeBody } from '../protocol/messages.js';
import { login } from '../node/as-client.js';
import type { NetcheckSignals } from '../node/lifecycle.js';
import { RelayProber } from '../node/relay-probe.js';
import { NmsClient } from '../node/signaling.js';
import { StateDir } from '../node/state.js';
import { unmapV4 } from '../util/addr.js';
import { controlGet } from '../util/control.js';
import { ConfigError, CyphonicError, describeError } from '../util/errors.js';

const run = promisify(execFile);

/** Tunable: how long one AS connect may take (ms). */
const AS_CONNECT_TIMEOUT_MS = 3000;

export interface FamilyReport {
  /** Global addresses of this host in the family (overlay addresses left out). */
  addresses: string[];
  /** The default route's gateway or device ('dev eth0'), or null when the family has none. */
  defaultRoute: string | null;
}

export interface NetcheckReport {
  name: string;
  /** 'daemon': measured by the running node; 'standalone': by this command (the node was not running). */
  source: 'daemon' | 'standalone';
  families: { v4: FamilyReport; v6: FamilyReport };
  nat: boolean | null;
  observed: string | null;
  mapping: NetcheckSignals['mapping'];
  as: { endpoint: string; rttMs: number | null; error: string | null }[];
  nms: NetcheckSignals['nms'];
  relays: NetcheckSignals['relays'];
  /** Why the NMS gave no TRS list, or null. */
  relayListError: string | null;
}

const ms = (t0: number): number => Math.round((performance.now() - t0) * 10) / 10;

function safeContains(cidr: string, addr: string): boolean {
  try {
    return contains(cidr, addr);
  } catch {
    return false;
  }
}

/** This host's global addresses by family, without the overlay (pools, own virtual addresses) and the TUN. */
export function localFamilies(exclude: { pools: string[]; ifname: string | null }): { v4: string[]; v6: string[] } {
  const out = { v4: [] as string[], v6: [] as string[] };
  for (const [ifname, list] of Object.entries(networkInterfaces())) {
    if (ifname === exclude.ifname) continue;
    for (const a of list ?? []) {
      if (a.internal) continue;
      const addr = unmapV4(a.address);
      if (a.family === 'IPv6' && (/^fe[89ab]/i.test(addr) || a.scopeid)) continue; // link-local
      if (a.family === 'IPv4' && addr.startsWith('169.254.')) continue;
      if (exclude.pools.some((p) => safeContains(p, addr))) continue;
      (a.family === 'IPv4' ? out.v4 : out.v6).push(addr);
    }
  }
  return out;
}

/** The default route of a family from `ip -j route show default` output, or null. */
export function parseDefaultRoute(json: string): string | null {
  let routes: unknown;
  try {
    routes = JSON.parse(json);
  } catch {
    return null;
  }
  if (!Array.isArray(routes)) return null;
  for (const r of routes as { dst?: string; gateway?: string; dev?: string }[]) {
    if (r.dst !== 'default') continue;
    if (r.gateway) return r.dev ? `${r.gateway} dev ${r.dev}` : r.gateway;
    if (r.dev) return `dev ${r.dev}`;
  }
  return null;
}

async function defaultRoute(family: 4 | 6): Promise<string | null> {
  try {
    return parseDefaultRoute((await run('ip', ['-j', `-${family}`, 'route', 'show', 'default'], { timeout: 3000 })).stdout);
  } catch {
    return null;
  }
}

/** TCP connect time to each AS endpoint (the AS speaks TLS there; the connection is closed at once). */
async function asLatency(endpoints: string[]): Promise<NetcheckReport['as']> {
  return Promise.all(
    endpoints.map(async (endpoint) => {
      let e: Endpoint;
      try {
        e = parseEndpoint(endpoint);
      } catch (err) {
        return { endpoint, rttMs: null, error: describeError(err) };
      }
      const t0 = performance.now();
      return new Promise<NetcheckReport['as'][number]>((resolve) => {
        const s = connect({ host: e.address, port: e.port, timeout: AS_CONNECT_TIMEOUT_MS });
        s.once('connect', () => {
          resolve({ endpoint, rttMs: ms(t0), error: null });
          s.destroy();
        });
        s.once('timeout', () => s.destroy(new Error('timeout')));
        s.once('error', (err) => resolve({ endpoint, rttMs: null, error: err.message }));
      });
    }),
  );
}

/** Mapping as the NMS judges it: the endpoint seen at the probe port equals the one seen at the main port. */
export function judgeMapping(nat: boolean, atMain: string | null, atProbe: string | null): NetcheckSignals['mapping'] {
  if (!nat) return null;
  if (atMain === null || atProbe === null) return 'unknown';
  return atMain === atProbe ? 'independent' : 'dependent';
}

/** The standalone probe (no daemon runs): log in, register once from fresh sockets, probe every NMS. */
async function standalone(state: StateDir): Promise<Omit<NetcheckSignals, 'local'> & { pools: string[] }> {
  const id = state.readIdentity();
  const res = await login({ endpoints: id.as, rootPem: state.readRoot(), certPem: state.readCert(), chainPem: state.readChain(), keyPem: state.readKey() });
  const pools = [res.pool4, res.pool6, res.vip4 ? `${res.vip4}/32` : null, res.vip6 ? `${res.vip6}/128` : null].filter((p): p is string => !!p);
  const socks: { 4?: dgram.Socket; 6?: dgram.Socket } = {};
  let client: NmsClient | null = null;
  let prober: RelayProber | null = null;
  const open = async (family: 4 | 6): Promise<dgram.Socket> => {
    const s = dgram.createSocket({ type: family === 4 ? 'udp4' : 'udp6', ipv6Only: family === 6 });
    s.on('message', (msg) => prober?.onDatagram(msg) || client?.handleDatagram(msg));
    s.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(0, () => resolve());
    });
    return s;
  };
  try {
    const candidates = res.nmsEndpoints.filter((e) => isIP(unmapV4(e.address)));
    if (candidates.length === 0) throw new ConfigError('the login named no NMS', 'ERR_NO_NMS');
    for (const f of [4, 6] as const) {
      if (candidates.some((e) => isIP(unmapV4(e.address)) === f)) socks[f] = await open(f).catch(() => undefined);
    }
    const send = (m: Buffer, to: Endpoint): void => {
      const f = isIP(unmapV4(to.address)) as 4 | 6;
      socks[f]?.send(m, to.port, unmapV4(to.address));
    };
    client = new NmsClient({ nodeId: res.nodeId, commonKey: res.commonKey, nms: candidates[0]!, retransmitMs: [500, 1000, 1500] }, { send });
    const c = client;
    const local = localFamilies({ pools, ifname: null });
    let reg: { main: Endpoint; nat: boolean; observed: Endpoint; probePort: number; rttMs: number } | null = null;
    const errors = new Map<string, string>();
    for (const e of candidates) {
      const f = isIP(unmapV4(e.address)) as 4 | 6;
      const sock = socks[f];
      if (!sock) continue;
      const port = sock.address().port;
      c.nms = e;
      const t0 = performance.now();
      try {
        const r = await c.register((f === 4 ? local.v4 : local.v6).map((address) => ({ address, port })), false);
        reg = { main: e, nat: r.nat, observed: r.observed, probePort: r.probePort ?? 0, rttMs: ms(t0) };
        break;
      } catch (err) {
        errors.set(formatEndpoint(e), describeError(err));
      }
    }
    const nms = await Promise.all(
      res.nmsEndpoints.map(async (e) => {
        const endpoint = formatEndpoint(e);
        const isMain = reg !== null && reg.main.address === e.address && reg.main.port === e.port;
        let probe: { port: number; rttMs: number | null; observed: string | null } | null = null;
        let probeError: string | null = null;
        if (reg?.probePort && socks[isIP(unmapV4(e.address)) as 4 | 6]) {
          const t0 = performance.now();
          try {
            const ack = decodeBody(MessageType.KeepaliveAck, await c.request(MessageType.Keepalive, {}, MessageType.KeepaliveAck, undefined, [300, 600], { address: e.address, port: reg.probePort }));
            probe = { port: reg.probePort, rttMs: ms(t0), observed: formatEndpoint(ack.observed) };
          } catch (err) {
            probe = { port: reg.probePort, rttMs: null, observed: null };
            probeError = describeError(err);
          }
        }
        return {
          endpoint,
          registered: isMain,
          rttMs: isMain ? reg!.rttMs : (probe?.rttMs ?? null),
          observed: isMain ? formatEndpoint(reg!.observed) : (probe?.observed ?? null),
          probe,
          error: isMain ? null : (errors.get(endpoint) ?? probeError ?? (socks[isIP(unmapV4(e.address)) as 4 | 6] ? null : 'no socket of this family')),
        };
      }),
    );
    if (!reg) return { nat: false, observed: '', mapping: null, nms, relays: [], relayListError: 'no NMS answered', pools };
    const atProbe = nms.find((n) => n.registered)?.probe?.observed ?? null;
    // Every live TRS, under tickets from the NMS we registered at, from the same fresh sockets.
    prober = new RelayProber({ nodeId: () => res.nodeId, send, unusable: (to) => (socks[isIP(unmapV4(to.address)) as 4 | 6] ? null : 'no socket of this family') });
    let relayListError: string | null = null;
    c.nms = reg.main;
    const relays = await prober.probeCloud(c).catch((err: unknown) => {
      relayListError = describeError(err);
      return [];
    });
    return { nat: reg.nat, observed: formatEndpoint(reg.observed), mapping: judgeMapping(reg.nat, formatEndpoint(reg.observed), atProbe), nms, relays, relayListError, pools };
  } finally {
    client?.close();
    for (const s of Object.values(socks)) s?.close();
  }
}

export async function nodeNetcheck(stateDir: string): Promise<NetcheckReport> {
  const state = new StateDir(stateDir);
  if (!state.enrolled()) throw new ConfigError(`${stateDir} holds no enrolled node (node up --token first)`, 'ERR_NOT_ENROLLED');
  const id = state.readIdentity();
  let signals: Omit<NetcheckSignals, 'local'>;
  let source: NetcheckReport['source'] = 'daemon';
  let exclude: { pools: string[]; ifname: string | null };
  try {
    const st = (await controlGet(state.controlPath, '/status')) as { vip4: string | null; vip6: string | null; tun: string | null };
    signals = (await controlGet(state.controlPath, '/netcheck', 10_000)) as NetcheckSignals;
    const s = state.readSession();
    exclude = { pools: [s?.pool4, s?.pool6, st.vip4 ? `${st.vip4}/32` : null, st.vip6 ? `${st.vip6}/128` : null].filter((p): p is string => !!p), ifname: st.tun };
  } catch (err) {
    if (!(err instanceof CyphonicError) || err.code !== 'ERR_NOT_RUNNING') throw err;
    source = 'standalone';
    const r = await standalone(state);
    signals = r;
    exclude = { pools: r.pools, ifname: null };
  }
  const fam = localFamilies(exclude);
  const [r4, r6, as] = await Promise.all([defaultRoute(4), defaultRoute(6), asLatency(id.as)]);
  return {
    name: id.name,
    source,
    families: { v4: { addresses: fam.v4, defaultRoute: r4 }, v6: { addresses: fam.v6, defaultRoute: r6 } },
    nat: signals.observed ? signals.nat : null,
    observed: signals.observed || null,
    mapping: signals.mapping,
    as,
    nms: signals.nms,
    relays: signals.relays,
    relayListError: signals.relayListError ?? null,
  };
}

/** The human-readable form of a report. */
export function formatNetcheck(r: NetcheckReport): string[] {
  const lat = (v: number | null, err?: string | null): string => (v === null ? `unreachable${err ? ` (${err})` : ''}` : `${v} ms`);
  const fam = (f: FamilyReport): string => `${f.addresses.length ? f.addresses.join(', ') : 'no global address'}; default route ${f.defaultRoute ?? 'none'}`;
  const out = [
    `${r.name}: measured ${r.source === 'daemon' ? 'by the running node' : 'standalone (the node is not running)'}`,
    `  IPv4: ${fam(r.families.v4)}`,
    `  IPv6: ${fam(r.families.v6)}`,
    `  NAT: ${r.nat === null ? 'unknown (no NMS answered)' : r.nat ? `yes, public endpoint ${r.observed}, mapping ${r.mapping === 'independent' ? 'endpoint-independent (hole punching works)' : r.mapping === 'dependent' ? 'endpoint-dependent (peers go through a relay)' : 'unknown (probe unanswered)'}` : `no (the NMS sees ${r.observed})`}`,
  ];
  for (const a of r.as) out.push(`  AS  ${a.endpoint}: ${lat(a.rttMs, a.error)}`);
  for (const n of r.nms) out.push(`  NMS ${n.endpoint}${n.registered ? ' (registered)' : ''}: ${lat(n.rttMs, n.error)}${n.probe ? `; probe port ${n.probe.port}: ${lat(n.probe.rttMs)}` : ''}`);
  if (r.relayListError) out.push(`  TRS: the NMS gave no list (${r.relayListError})`);
  else if (r.relays.length === 0) out.push('  TRS: none is live in the cloud (relayed paths are impossible now)');
  for (const t of r.relays) {
    const via = t.via === 'path' ? ' (relayed path; not listed by the NMS)' : '';
    out.push(`  TRS ${t.relay}${t.relayId ? ` ${t.relayId}` : ''}${via}: ${lat(t.rttMs, t.error)}${t.observed ? `; sees us as ${t.observed}` : ''}`);
  }
  return out;
}
