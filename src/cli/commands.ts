// Every `cyphonic …` command: cloud init/start/enroll/nodes/revoke/relays/stats, node up/status.
// Commands are thin: they parse options and call the cloud's or the node's factory and control API.

import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { isIP } from 'node:net';
import {
  adminNodes,
  adminRelays,
  cloudControlPath,
  createEnrollment,
  initCloud,
  revokeNode,
  startCloud,
  trsControlPaths,
  type NodeRow,
  type Role,
} from '../cloud/cloud.js';
import { adminTokenPath, rotateAdminToken } from '../cloud/api/admin-token.js';
import { parseListen } from '../cloud/api/server.js';
import { adapterMetrics, nodeMetrics } from '../metrics/daemons.js';
import { nodePing } from './ping.js';
import { formatNetcheck, nodeNetcheck } from './netcheck.js';
import { newRegistry, serveMetrics } from '../metrics/prom.js';
import { adminAddGeneralNode, adminListGeneralNodes, adminRemoveGeneralNode, parseFamily } from '../cloud/general-nodes.js';
import { adminCheck, adminSetPolicy, adminSetTags, adminShowPolicy, parseTags } from '../policy/admin.js';
import { MAX_POLICY_BYTES, policyJson } from '../policy/policy.js';
import { AdapterDaemon, offlineAdapterStatus, type AdapterStatus } from '../adapter/daemon.js';
import { NodeDaemon, type NodeStatus } from '../node/daemon.js';
import { StateDir } from '../node/state.js';
import { controlGet } from '../util/control.js';
import { ConfigError, CyphonicError } from '../util/errors.js';
import { createLogger } from '../util/log.js';
import type { Command } from './args.js';

const dirOpt = { type: 'string', help: 'cloud directory (CA, config, SQLite store)' } as const;
const dbOpt = { type: 'string', help: 'store URL (default: DIR/cyphonic.db; postgres://… when several instances share one)' } as const;
const tagsOpt = { type: 'string', help: 'policy tags, comma-separated (a-z, 0-9, -)' } as const;
const metricsOpt = { type: 'string', help: 'ADDR:PORT to serve Prometheus metrics on (GET /metrics, no auth: bind it to loopback or a private address)' } as const;
const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);
const list = (v: string | boolean | undefined): string[] =>
  typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : [];

/** The --metrics listener of a daemon: a registry filled by `fill`, served on `at`. */
async function daemonMetrics(at: { host: string; port: number }, fill: (reg: ReturnType<typeof newRegistry>) => void, logger: ReturnType<typeof createLogger>): Promise<{ close(): Promise<void> }> {
  const reg = newRegistry();
  fill(reg);
  const s = await serveMetrics(reg, at, logger);
  logger.info('metrics listening', { host: at.host, port: s.port });
  return s;
}

function out(s: string): void {
  process.stdout.write(s + '\n');
}

/** Runs until SIGINT/SIGTERM, then stops cleanly. */
function untilSignal(stop: () => Promise<void>): Promise<number> {
  return new Promise((resolve) => {
    const done = (sig: NodeJS.Signals): void => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      void stop().then(() => resolve(sig === 'SIGINT' ? 130 : 0));
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
}

function table(rows: Record<string, unknown>[], cols: string[]): string {
  const cells = [cols, ...rows.map((r) => cols.map((c) => (r[c] === null || r[c] === undefined ? '-' : String(r[c]))))];
  const widths = cols.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  return cells.map((row) => row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

export const commands: Command[] = [
  {
    name: 'cloud init',
    summary: 'Create a cloud: root CA, AS intermediate CA, TLS certificate, config and store in DIR.',
    options: {
      dir: dirOpt,
      domain: { type: 'string', help: 'overlay domain', default: 'cyphonic.internal' },
      'ipv4-pool': { type: 'string', help: 'virtual IPv4 pool', default: '100.64.0.0/10' },
      'ipv6-pool': { type: 'string', help: 'virtual IPv6 pool (default: a random ULA /48)' },
      advertise: { type: 'string', help: 'addresses nodes reach the cloud at, comma-separated' },
      'root-key-out': { type: 'string', help: 'write the root CA key to this file (keep it offline) instead of DIR/ca; the cloud never needs it to run' },
      db: { type: 'string', help: 'store URL recorded in DIR (default: DIR/cyphonic.db; postgres://user:password@host/db for several instances)' },
      'cert-days': { type: 'string', help: 'lifetime of node certificates in days; nodes renew theirs with a third left', default: '365' },
    },
    required: ['dir', 'advertise'],
    async run(o) {
      const advertise = list(o['advertise']);
      for (const a of advertise) if (isIP(a) === 0) throw new ConfigError(`--advertise: ${a} is not an IP address`);
      const cfg = await initCloud({
        dir: str(o['dir'])!,
        advertise,
        domain: str(o['domain']),
        ipv4Pool: str(o['ipv4-pool']),
        ipv6Pool: str(o['ipv6-pool']),
        rootKeyOut: str(o['root-key-out']),
        db: str(o['db']),
        certDays: certDays(str(o['cert-days'])),
      });
      out(`cloud initialised in ${str(o['dir'])}: domain ${cfg.domain}, pools ${cfg.pools.v4} ${cfg.pools.v6}, advertise ${cfg.advertise.join(',')}`);
      out(`REST API admin token: ${adminTokenPath(str(o["dir"])!)}`);
    },
  },
  {
    name: 'cloud start',
    summary: 'Run cloud services in the foreground: AS (TCP 4501), NMS (UDP 4502), TRS (UDP 4503; several may share DIR), REST API (TCP 4580).',
    options: {
      dir: dirOpt,
      db: dbOpt,
      roles: { type: 'string', help: 'roles to run, comma-separated: as, nms, trs (a TRS-only process may run beside another in DIR)', default: 'as,nms,trs' },
      'trs-port': { type: 'string', help: 'UDP port of the TRS (0 = any free port) [default: ports.trs of cloud.json, 4503]' },
      'trs-advertise': { type: 'string', help: 'addresses the TRS hands out to nodes, comma-separated [default: the host\'s addresses]' },
      'nms-port': { type: 'string', help: 'UDP port of the NMS (0 = any free port, its NAT probe port too) [default: ports.nms of cloud.json, 4502]' },
      advertise: { type: 'string', help: 'addresses nodes reach THIS instance at, comma-separated (another instance of the same cloud on another host) [default: advertise of cloud.json]' },
      console: { type: 'string', help: 'ADDR:PORT of the REST API (/api/v1/, bearer token DIR/admin-token; HTTPS unless loopback), or "off"', default: '127.0.0.1:4580' },
    },
    required: ['dir'],
    async run(o) {
      const consoleText = str(o['console'])!;
      const consoleAt = consoleText === 'off' ? undefined : parseListen(consoleText, '--console');
      const roles = list(o['roles']);
      for (const r of roles) if (!['as', 'nms', 'trs'].includes(r)) throw new ConfigError(`--roles: unknown role ${r}`);
      if (roles.length === 0) throw new ConfigError('--roles: name at least one of as, nms, trs');
      const trsPortText = str(o['trs-port']);
      const trsPort = trsPortText === undefined ? undefined : Number(trsPortText);
      if (trsPort !== undefined && !(/^[0-9]{1,5}$/.test(trsPortText!) && trsPort <= 65535)) throw new ConfigError(`--trs-port: invalid ${trsPortText}`);
      const trsAdvertise = list(o['trs-advertise']);
      for (const a of trsAdvertise) if (isIP(a) === 0) throw new ConfigError(`--trs-advertise: ${a} is not an IP address`);
      const advertise = list(o['advertise']);
      for (const a of advertise) if (isIP(a) === 0) throw new ConfigError(`--advertise: ${a} is not an IP address`);
      const nmsPortText = str(o['nms-port']);
      const nmsPort = nmsPortText === undefined ? undefined : Number(nmsPortText);
      if (nmsPort !== undefined && !(/^[0-9]{1,5}$/.test(nmsPortText!) && nmsPort <= 65535)) throw new ConfigError(`--nms-port: invalid ${nmsPortText}`);
      const logger = createLogger({ component: 'cloud' });
      const cloud = await startCloud({
        dir: str(o['dir'])!,
        db: str(o['db']),
        roles: roles as Role[],
        logger,
        ports: { ...(trsPort === undefined ? {} : { trs: trsPort }), ...(nmsPort === undefined ? {} : { nms: nmsPort }) },
        trsAdvertise,
        advertise,
        ...(consoleAt ? { console: consoleAt } : {}),
      });
      return untilSignal(() => cloud.stop());
    },
  },
  {
    name: 'cloud admin-token',
    summary: 'Replace the REST API admin token in DIR/admin-token (0600) with --rotate and print the new one; a running cloud takes it at once.',
    options: { dir: dirOpt, rotate: { type: 'boolean', help: 'make a new token (the old one stops working)' } },
    required: ['dir'],
    async run(o) {
      if (!o['rotate']) throw new ConfigError(`missing --rotate (the token is in ${adminTokenPath(str(o['dir'])!)})`, 'ERR_USAGE');
      if (!existsSync(join(str(o['dir'])!, 'cloud.json'))) throw new ConfigError(`${str(o['dir'])!} holds no cloud (cloud init first)`, 'ERR_NO_CONFIG');
      out(rotateAdminToken(str(o['dir'])!));
    },
  },
  {
    name: 'cloud enroll',
    summary: 'Print a one-time enrollment token for node NAME (re-enrolling a known NAME keeps its addresses).',
    positionals: ['NAME'],
    options: { dir: dirOpt, db: dbOpt, tags: tagsOpt },
    required: ['dir'],
    async run(o, [name]) {
      const tags = o['tags'] === undefined ? null : parseTags(list(o['tags']));
      const token = await createEnrollment(str(o['dir'])!, name!, str(o['db']));
      if (tags !== null) await adminSetTags(str(o['dir'])!, name!, tags, str(o['db']));
      out(token);
    },
  },
  {
    name: 'cloud nodes',
    summary: 'List nodes: name, fqdn, vip4, vip6, online, nat, observed address, NAT mapping, last seen.',
    options: { dir: dirOpt, db: dbOpt, json: { type: 'boolean', help: 'print JSON' } },
    required: ['dir'],
    async run(o) {
      const rows: NodeRow[] = await adminNodes(str(o['dir'])!, str(o['db']));
      if (o['json']) out(JSON.stringify(rows, null, 2));
      else out(table(rows.map((r) => ({ ...r, tags: r.tags.join(',') })) as unknown as Record<string, unknown>[], ['name', 'fqdn', 'vip4', 'vip6', 'online', 'nat', 'observed', 'mapping', 'lastSeen', 'tags']));
    },
  },
  {
    name: 'cloud revoke',
    summary: "Revoke node NAME's certificates; it can no longer log in or register.",
    positionals: ['NAME'],
    options: { dir: dirOpt, db: dbOpt },
    required: ['dir'],
    async run(o, [name]) {
      const n = await revokeNode(str(o['dir'])!, name!, str(o['db']));
      out(`revoked ${n} certificate(s) of ${name}`);
    },
  },
  {
    name: 'cloud tags',
    summary: 'Set the policy tags of node (or general node) NAME; --set "" removes them. Running nodes learn it at their next route selection.',
    positionals: ['NAME'],
    options: { dir: dirOpt, db: dbOpt, set: { type: 'string', help: 'the tags, comma-separated (replaces the old ones)' } },
    required: ['dir'],
    async run(o, [name]) {
      if (o['set'] === undefined) throw new ConfigError('missing --set a,b (use --set "" to remove every tag)', 'ERR_USAGE');
      const tags = await adminSetTags(str(o['dir'])!, name!, list(o['set']), str(o['db']));
      out(`${name} tags: ${tags.join(',') || '(none)'}`);
    },
  },
  {
    name: 'cloud policy set',
    summary: 'Make the JSON policy in FILE the running one (refused with the problem named if it is invalid; the old one stays).',
    positionals: ['FILE'],
    options: { dir: dirOpt, db: dbOpt },
    required: ['dir'],
    async run(o, [file]) {
      const buf = readFileSync(file!);
      if (buf.length > MAX_POLICY_BYTES) throw new ConfigError(`${file}: larger than ${MAX_POLICY_BYTES} bytes`, 'ERR_POLICY');
      const p = await adminSetPolicy(str(o['dir'])!, buf.toString('utf8'), str(o['db']));
      out(`policy set: ${p.allow.length} rule(s)`);
    },
  },
  {
    name: 'cloud policy show',
    summary: 'Print the running policy (a fresh cloud allows everything).',
    options: { dir: dirOpt, db: dbOpt, json: { type: 'boolean', help: 'print JSON' } },
    required: ['dir'],
    async run(o) {
      const p = await adminShowPolicy(str(o['dir'])!, str(o['db']));
      if (o['json']) out(policyJson(p, true));
      else if (p.allow.length === 0) out('no rule: everything is denied');
      else p.allow.forEach((r, i) => out(`rule ${i}: ${r.from.join(',')} -> ${r.to.join(',')} ports ${r.ports.join(',')}`));
    },
  },
  {
    name: 'cloud policy check',
    summary: 'Would FROM be allowed to open a flow to TO on PORT (icmp, tcp:N, udp:N)? Prints the deciding rule; exit 0 allowed, 1 denied.',
    positionals: ['FROM', 'TO', 'PORT'],
    options: { dir: dirOpt, db: dbOpt, json: { type: 'boolean', help: 'print JSON' } },
    required: ['dir'],
    async run(o, [from, to, port]) {
      const r = await adminCheck(str(o['dir'])!, from!, to!, port!, str(o['db']));
      if (o['json']) out(JSON.stringify(r, null, 2));
      else if (r.allowed) out(`allowed: ${from} -> ${to} ${port} by rule ${r.rule} ${r.ruleText} (port ${r.port})`);
      else out(`denied: ${from} -> ${to} ${port}: no rule allows it`);
      return r.allowed ? 0 : 1;
    },
  },
  {
    name: 'cloud relays',
    summary: 'List registered TRS processes: id, endpoints, load (active paths), live (heartbeat within 15 s), heartbeat.',
    options: { dir: dirOpt, db: dbOpt, json: { type: 'boolean', help: 'print JSON' } },
    required: ['dir'],
    async run(o) {
      const rows = await adminRelays(str(o['dir'])!, str(o['db']));
      if (o['json']) out(JSON.stringify(rows, null, 2));
      else out(table(rows.map((r) => ({ ...r, endpoints: r.endpoints.join(',') })), ['id', 'endpoints', 'load', 'live', 'heartbeatAt']));
    },
  },
  {
    name: 'cloud stats',
    summary: 'Counters of the running cloud processes in DIR (requests served, refusals and drops by reason), TRS-only processes included.',
    options: { dir: dirOpt },
    required: ['dir'],
    async run(o) {
      const dir = str(o['dir'])!;
      let main: unknown = null;
      let mainErr: unknown = null;
      try {
        main = await controlGet(cloudControlPath(dir), '/metrics');
      } catch (err) {
        mainErr = err;
      }
      // TRS-only processes (`--roles trs`) answer on DIR/trs-PORT.sock; sockets left by killed ones are skipped.
      const relays: Record<string, unknown> = {};
      for (const path of trsControlPaths(dir)) {
        try {
          relays[basename(path, '.sock')] = ((await controlGet(path, '/metrics')) as { trs?: unknown }).trs ?? null;
        } catch (err) {
          if (!(err instanceof CyphonicError) || err.code !== 'ERR_NOT_RUNNING') throw err;
        }
      }
      if (mainErr !== null && Object.keys(relays).length === 0) throw mainErr;
      const shown = (main ?? { as: null, nms: null, trs: null }) as Record<string, unknown>;
      out(JSON.stringify(Object.keys(relays).length ? { ...shown, trsProcesses: relays } : shown, null, 2));
    },
  },
  {
    name: 'cloud general-node add',
    summary: 'Define general node NAME (a device without cyphonic) served by adapter node A: MAC -> virtual IPv4/IPv6, FQDN.',
    positionals: ['NAME'],
    options: {
      dir: dirOpt,
      db: dbOpt,
      mac: { type: 'string', help: "the device's MAC address (aa:bb:cc:dd:ee:ff)" },
      adapter: { type: 'string', help: 'name of the adapter node that serves it (enrolled now or later)' },
      family: { type: 'string', help: 'address families it gets: dual, v4 or v6', default: 'dual' },
      tags: tagsOpt,
      json: { type: 'boolean', help: 'print JSON' },
    },
    required: ['dir', 'mac', 'adapter'],
    async run(o, [name]) {
      const tags = o['tags'] === undefined ? null : parseTags(list(o['tags']));
      const r = await adminAddGeneralNode(str(o['dir'])!, { name: name!, mac: str(o['mac'])!, adapter: str(o['adapter'])!, family: parseFamily(str(o['family'])) }, str(o['db']));
      if (tags !== null) await adminSetTags(str(o['dir'])!, name!, tags, str(o['db']));
      if (o['json']) out(JSON.stringify({ ...r, tags: tags ?? [] }, null, 2));
      else out(`general node ${r.name} (${r.fqdn}) mac ${r.mac} adapter ${r.adapter} vip4 ${r.vip4 ?? '-'} vip6 ${r.vip6 ?? '-'}${tags?.length ? ` tags ${tags.join(',')}` : ''}`);
    },
  },
  {
    name: 'cloud general-node list',
    summary: 'List general nodes: name, fqdn, mac, adapter, family, vip4, vip6.',
    options: { dir: dirOpt, db: dbOpt, json: { type: 'boolean', help: 'print JSON' } },
    required: ['dir'],
    async run(o) {
      const rows = await adminListGeneralNodes(str(o['dir'])!, str(o['db']));
      if (o['json']) out(JSON.stringify(rows, null, 2));
      else out(table(rows as unknown as Record<string, unknown>[], ['name', 'fqdn', 'mac', 'adapter', 'family', 'vip4', 'vip6']));
    },
  },
  {
    name: 'cloud general-node remove',
    summary: 'Remove general node NAME: its adapter stops serving it (lease dropped) and its peers close their tunnels within about a second.',
    positionals: ['NAME'],
    options: { dir: dirOpt, db: dbOpt, json: { type: 'boolean', help: 'print JSON' } },
    required: ['dir'],
    async run(o, [name]) {
      const r = await adminRemoveGeneralNode(str(o['dir'])!, name!, str(o['db']));
      if (o['json']) out(JSON.stringify(r, null, 2));
      else out(`general node ${r.name} (${r.fqdn}) removed from adapter ${r.adapter}; vip4 ${r.vip4 ?? '-'} vip6 ${r.vip6 ?? '-'} are free again`);
    },
  },
  {
    name: 'node up',
    summary: 'Run the node daemon in the foreground: enroll (first start), log in, register, keep alive.',
    options: {
      token: { type: 'string', help: 'enrollment token from `cyphonic cloud enroll` (first start only)' },
      'token-file': { type: 'string', help: 'read the token from a file' },
      state: { type: 'string', help: 'state directory (keys, certificate, session)' },
      cloud: { type: 'string', help: 'AS address(es) HOST:PORT overriding the token, comma-separated' },
      port: { type: 'string', help: 'UDP port for signaling and data', default: '30000' },
      tun: { type: 'string', help: 'TUN device name', default: 'cyp0' },
      'no-tun': { type: 'boolean', help: 'signaling only: no TUN device, data plane or overlay DNS (no root needed)' },
      'rekey-after': { type: 'string', help: 'seconds between re-handshakes with each peer', default: '120' },
      'session-limit': { type: 'string', help: 'hard age limit of a session in seconds: the data plane stops sealing with it then (for tests; rekey-after comes first)', default: '180' },
      'path-keepalive': { type: 'string', help: 'seconds of idleness after which a path through a NAT gets a keepalive', default: '20' },
      'punch-retry': { type: 'string', help: 'seconds before a relay that replaced a failed hole punch tries the punch again (doubling after each failure)', default: '30' },
      'no-offload': { type: 'boolean', help: 'move one packet per read/write/datagram: no TSO, UDP GSO or GRO (portable path)' },
      metrics: metricsOpt,
    },
    required: ['state'],
    async run(o) {
      const port = Number(o['port']);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`--port: invalid ${String(o['port'])}`);
      const rekey = Number(o['rekey-after']);
      if (!(rekey >= 1 && rekey <= 120)) throw new ConfigError(`--rekey-after: ${String(o['rekey-after'])} is not 1..120 seconds`);
      const limit = Number(o['session-limit']);
      if (!(limit >= 1 && limit <= 180)) throw new ConfigError(`--session-limit: ${String(o['session-limit'])} is not 1..180 seconds`);
      const keepalive = Number(o['path-keepalive']);
      if (!(keepalive >= 1 && keepalive <= 120)) throw new ConfigError(`--path-keepalive: ${String(o['path-keepalive'])} is not 1..120 seconds`);
      const punchRetry = Number(o['punch-retry']);
      if (!(punchRetry >= 1 && punchRetry <= 3600)) throw new ConfigError(`--punch-retry: ${String(o['punch-retry'])} is not 1..3600 seconds`);
      let token = str(o['token']);
      if (!token && str(o['token-file'])) token = readFileSync(str(o['token-file'])!, 'utf8').trim();
      const logger = createLogger({ component: 'node' });
      const d = new NodeDaemon({ stateDir: str(o['state'])!, token, cloud: list(o['cloud']), port, tun: !o['no-tun'], tunName: str(o['tun']), rekeyAfterMs: rekey * 1000, rejectAfterMs: Math.round(limit * 1000), pathKeepaliveMs: keepalive * 1000, punchRetryMs: punchRetry * 1000, offload: !o['no-offload'] }, logger);
      const metricsAt = str(o['metrics']) === undefined ? null : parseListen(str(o['metrics'])!, '--metrics');
      await d.start();
      const served = metricsAt ? await daemonMetrics(metricsAt, (reg) => nodeMetrics(reg, () => d.status()), logger) : null;
      return untilSignal(async () => {
        await served?.close();
        await d.stop();
      });
    },
  },
  {
    name: 'node status',
    summary: 'Show the node: identity, virtual addresses, registration, peers.',
    options: { state: { type: 'string', help: 'state directory' }, json: { type: 'boolean', help: 'print JSON' } },
    required: ['state'],
    async run(o) {
      const state = new StateDir(str(o['state'])!);
      let st: NodeStatus & { running: boolean };
      try {
        st = { ...((await controlGet(state.controlPath, '/status')) as NodeStatus), running: true };
      } catch (err) {
        if (!(err instanceof CyphonicError) || err.code !== 'ERR_NOT_RUNNING' || !state.enrolled()) throw err;
        const id = state.readIdentity();
        const s = state.readSession();
        st = {
          name: id.name, nodeId: id.nodeId, fqdn: id.fqdn, vip4: s?.vip4 ?? null, vip6: s?.vip6 ?? null,
          registered: false, nat: null, observed: null, nms: null, keepaliveSec: null,
          commonKeyExpiresAt: s ? new Date(s.expiresAt).toISOString() : null, lastRegistration: null,
          dns: null, tun: null, offload: null, peers: [], counters: {}, running: false,
        };
      }
      if (o['json']) out(JSON.stringify(st, null, 2));
      else {
        out(`${st.name} (${st.fqdn})  ${st.running ? 'running' : 'not running'}`);
        out(`  vip4 ${st.vip4 ?? '-'}  vip6 ${st.vip6 ?? '-'}`);
        out(`  registered ${st.registered}  nat ${st.nat ?? '-'}  observed ${st.observed ?? '-'}  nms ${st.nms ?? '-'}`);
        out(`  dns ${st.dns ?? '-'}  tun ${st.tun ?? '-'}`);
        for (const p of st.peers) out(`  peer ${p.name} ${p.vip4} ${p.vip6} ${p.path}${p.relay ? ` via ${p.relay}` : ''} ${p.endpoint ?? '-'} rx ${p.rxBytes} tx ${p.txBytes} ${p.state} allowed ${p.revoked ? 'revoked' : p.allowed === null ? '*' : p.allowed.join(',') || 'replies only'}`);
      }
    },
  },
  {
    name: 'node ping',
    summary: 'Probe NAME through the overlay (ICMP echo to its virtual address); print each probe\'s RTT and the path: direct, punched, or relayed via a TRS.',
    positionals: ['NAME'],
    options: {
      state: { type: 'string', help: 'state directory of the running node' },
      count: { type: 'string', help: 'probes to send', default: '4' },
      timeout: { type: 'string', help: 'seconds to wait for each answer', default: '2' },
      json: { type: 'boolean', help: 'print JSON' },
    },
    required: ['state'],
    async run(o, [name]) {
      const count = Number(o['count']);
      if (!(Number.isInteger(count) && count >= 1 && count <= 100)) throw new ConfigError(`--count: ${String(o['count'])} is not 1..100`);
      const timeout = Number(o['timeout']);
      if (!(Number.isInteger(timeout) && timeout >= 1 && timeout <= 30)) throw new ConfigError(`--timeout: ${String(o['timeout'])} is not 1..30 seconds`);
      const json = o['json'] === true;
      const r = await nodePing(str(o['state'])!, name!, count, timeout, (p) => {
        if (!json) out(`probe ${p.seq}: ${p.rttMs === null ? 'no answer' : `${p.rttMs} ms`}`);
      });
      if (json) out(JSON.stringify(r, null, 2));
      else out(`${r.name} (${r.address}) path ${r.path ?? 'none'}${r.relay ? ` via ${r.relay}` : ''}: ${r.probes.filter((p) => p.rttMs !== null).length}/${r.probes.length} answered`);
      return r.probes.some((p) => p.rttMs !== null) ? 0 : 1;
    },
  },
  {
    name: 'node netcheck',
    summary: 'What the network allows: address families and default routes, NAT and its mapping behaviour, each AS, NMS and TRS with its latency (asks the running node; else probes standalone).',
    options: { state: { type: 'string', help: 'state directory of the node' }, json: { type: 'boolean', help: 'print JSON' } },
    required: ['state'],
    async run(o) {
      const r = await nodeNetcheck(str(o['state'])!);
      if (o['json']) out(JSON.stringify(r, null, 2));
      else for (const l of formatNetcheck(r)) out(l);
      return r.nms.some((n) => n.rttMs !== null) ? 0 : 1;
    },
  },
  {
    name: 'adapter up',
    summary: 'Run the adapter daemon: a node that brings the general nodes on LAN interface IFACE into the overlay.',
    options: {
      token: { type: 'string', help: 'enrollment token of the adapter node (first start only)' },
      'token-file': { type: 'string', help: 'read the token from a file' },
      state: { type: 'string', help: 'state directory (keys, certificates, leases)' },
      lan: { type: 'string', help: 'the LAN interface the general nodes are on (owned by the adapter while it runs)' },
      cloud: { type: 'string', help: 'AS address(es) HOST:PORT overriding the token, comma-separated' },
      port: { type: 'string', help: "UDP port of the adapter's own node", default: '30000' },
      tun: { type: 'string', help: 'TUN device name', default: 'cyp0' },
      'info-interval': { type: 'string', help: 'seconds between fetches of the general-node list from the AS', default: '30' },
      'ra-interval': { type: 'string', help: 'MaxRtrAdvInterval of the periodic Router Advertisements, seconds (4..1800)', default: '200' },
      'path-keepalive': { type: 'string', help: 'seconds of idleness after which a path through a NAT gets a keepalive (adapter and general nodes)', default: '20' },
      'no-lan-fast': { type: 'boolean', help: "carry every LAN packet through the main thread (no IP fast path on the reader threads; for comparisons)" },
      metrics: metricsOpt,
    },
    required: ['state', 'lan'],
    async run(o) {
      const port = Number(o['port']);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`--port: invalid ${String(o['port'])}`);
      const infoSec = Number(o['info-interval']);
      if (!(infoSec >= 1 && infoSec <= 3600)) throw new ConfigError(`--info-interval: ${String(o['info-interval'])} is not 1..3600 seconds`);
      const raSec = Number(o['ra-interval']);
      if (!(Number.isInteger(raSec) && raSec >= 4 && raSec <= 1800)) throw new ConfigError(`--ra-interval: ${String(o['ra-interval'])} is not 4..1800 seconds`);
      const keepalive = Number(o['path-keepalive']);
      if (!(keepalive >= 1 && keepalive <= 120)) throw new ConfigError(`--path-keepalive: ${String(o['path-keepalive'])} is not 1..120 seconds`);
      let token = str(o['token']);
      if (!token && str(o['token-file'])) token = readFileSync(str(o['token-file'])!, 'utf8').trim();
      const logger = createLogger({ component: 'adapter' });
      const d = new AdapterDaemon({ stateDir: str(o['state'])!, ...(token ? { token } : {}), cloud: list(o['cloud']), lan: str(o['lan'])!, port, tunName: str(o['tun']), infoIntervalMs: infoSec * 1000, raMaxIntervalSec: raSec, pathKeepaliveMs: keepalive * 1000, lanFast: !o['no-lan-fast'] }, logger);
      const metricsAt = str(o['metrics']) === undefined ? null : parseListen(str(o['metrics'])!, '--metrics');
      await d.start();
      const served = metricsAt ? await daemonMetrics(metricsAt, (reg) => adapterMetrics(reg, () => d.status()), logger) : null;
      return untilSignal(async () => {
        await served?.close();
        await d.stop();
      });
    },
  },
  {
    name: 'adapter status',
    summary: 'Show the adapter: its node fields (as `node status`) and its general nodes (MAC, addresses, leases, peers).',
    options: { state: { type: 'string', help: 'state directory' }, json: { type: 'boolean', help: 'print JSON' } },
    required: ['state'],
    async run(o) {
      const dir = str(o['state'])!;
      let st: AdapterStatus & { running: boolean };
      try {
        st = { ...((await controlGet(join(dir, 'adapter.sock'), '/status')) as AdapterStatus), running: true };
      } catch (err) {
        const state = new StateDir(dir);
        if (!(err instanceof CyphonicError) || err.code !== 'ERR_NOT_RUNNING' || !state.enrolled()) throw err;
        st = { ...offlineAdapterStatus(dir), running: false };
      }
      if (o['json']) out(JSON.stringify(st, null, 2));
      else {
        out(`${st.name} (${st.fqdn})  adapter on ${st.lan || '-'} ${st.mac || '-'}  ${st.running ? 'running' : 'not running'}`);
        out(`  vip4 ${st.vip4 ?? '-'}  vip6 ${st.vip6 ?? '-'}  registered ${st.registered}`);
        for (const g of st.generalNodes) {
          out(`  general ${g.name} ${g.mac} vip4 ${g.vip4 ?? '-'} (${g.lease.v4?.state ?? 'no lease'}) vip6 ${g.vip6 ?? '-'} (${g.lease.v6?.state ?? 'no lease'}) registered ${g.registered}`);
          for (const p of g.peers) out(`    peer ${p.name} ${p.vip4} ${p.vip6} ${p.endpoint ?? '-'} rx ${p.rxBytes} tx ${p.txBytes} ${p.state}`);
        }
      }
    },
  },
];

/** `--cert-days N`: a whole number of days, 1 to 3650. */
function certDays(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 3650) throw new ConfigError(`--cert-days: ${v} is not a whole number of days from 1 to 3650`);
  return n;
}
