// The cloud's factory: `init` lays out DIR (CA, AS intermediate, TLS cert, config, store), `start` runs the roles,
// and the admin operations behind `cloud enroll / nodes / revoke / relays`. AS, NMS and TRS run together or apart.

import { bumpPolicyRev } from '../policy/store.js';
import { mkdirSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, isAbsolute } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createIntermediateCa, createRootCa, fingerprint, hasAsPurpose, issueServerCertificate, toDer, type CaMaterial } from '../crypto/index.js';
import { CLOUD_CONFIG_FILE, CLOUD_DEFAULTS, loadCloudConfig, saveCloudConfig, validateCloudConfig, type CloudConfig } from '../config/cloud.js';
import { encodeToken, validateNodeName } from '../config/token.js';
import { DEFAULT_PORTS } from '../protocol/constants.js';
import { formatEndpoint, type Endpoint } from '../protocol/endpoint.js';
import { parseCidr, randomUlaPrefix48 } from '../net/addr/cidr.js';
import { isPostgresUrl, openStore } from '../store/index.js';
import type { Store } from '../store/types.js';
import { ConfigError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fsx.js';
import type { Logger } from '../util/log.js';
import { serveControl, type ControlServer } from '../util/control.js';
import { AsService, tokenHash } from './as/service.js';
import { AsTransport } from './as/transport.js';
import { NmsService } from './nms/service.js';
import { NmsTransport } from './nms/transport.js';
import type { RelayAllocator } from './nms/routes.js';
import { allocateRelay, RelayClient, relayTickets, revokeAtRelays } from './trs/client.js';
import { loadRelayKey } from './trs/control.js';
import { isLiveRelay, RelayRegistry } from './trs/registry.js';
import { TrsService, type TrsStatus } from './trs/service.js';
import { InstanceRegistry, liveEndpoints, newInstanceId } from './instances.js';
import { GeneralNodeWatcher } from './nms/general-push.js';
import { rotateAdminToken } from './api/admin-token.js';
import { apiRoutes } from './api/routes.js';
import { ApiServer } from './api/server.js';
import type { PeerDeps } from './console/peers.js';
import { cloudMetrics, handleTimes, metricsRoute, timedNms } from './api/metrics.js';
import { type HotHistogram, latencyHistogram, newRegistry } from '../metrics/prom.js';
import { MAX_ENDPOINTS } from '../protocol/messages.js';
import { advertisedEndpoints, TrsTransport } from './trs/transport.js';

export interface CloudInitOptions {
  dir: string;
  advertise: string[];
  domain?: string;
  ipv4Pool?: string;
  ipv6Pool?: string;
  /**
   * Where the root CA key goes (0600, must not exist yet) instead of DIR/ca/root.key.pem: the cloud only ever signs
   * with the AS intermediate, so the root key can live offline (it is needed again only to renew the intermediate).
   */
  rootKeyOut?: string;
  /** Store URL recorded in DIR/cloud.json (postgres://… for a cloud of several instances). @default DIR/cyphonic.db */
  db?: string;
  /** Lifetime of node certificates in days (nodes renew them with 1/3 left). @default CLOUD_DEFAULTS.certValidDays */
  certDays?: number;
}

const paths = (dir: string) => ({
  config: join(dir, CLOUD_CONFIG_FILE),
  rootCert: join(dir, 'ca', 'root.pem'),
  rootKey: join(dir, 'ca', 'root.key.pem'),
  asCert: join(dir, 'ca', 'as.pem'),
  asKey: join(dir, 'ca', 'as.key.pem'),
  tlsCert: join(dir, 'tls', 'server.pem'),
  tlsKey: join(dir, 'tls', 'server.key.pem'),
  control: join(dir, 'cloud.sock'),
  /** A process running only the TRS role has its own control socket, so several can share DIR. */
  trsControl: (port: number) => join(dir, `trs-${port}.sock`),
});

export async function initCloud(o: CloudInitOptions): Promise<CloudConfig> {
  const p = paths(o.dir);
  if (existsSync(p.config)) throw new ConfigError(`${o.dir} already holds a cloud (${CLOUD_CONFIG_FILE} exists)`, 'ERR_EXISTS');
  if (o.rootKeyOut !== undefined && existsSync(o.rootKeyOut)) throw new ConfigError(`--root-key-out ${o.rootKeyOut} exists already`, 'ERR_EXISTS');
  const v4 = o.ipv4Pool ?? CLOUD_DEFAULTS.pools.v4;
  const v6 = o.ipv6Pool ?? randomUlaPrefix48();
  if (parseCidr(v4).family !== 4) throw new ConfigError(`--ipv4-pool ${v4} is not an IPv4 CIDR`);
  if (parseCidr(v6).family !== 6) throw new ConfigError(`--ipv6-pool ${v6} is not an IPv6 CIDR`);
  const cfg: CloudConfig = {
    version: 1,
    domain: o.domain ?? CLOUD_DEFAULTS.domain,
    pools: { v4, v6 },
    advertise: o.advertise,
    ports: { ...CLOUD_DEFAULTS.ports },
    commonKeyTtlSec: CLOUD_DEFAULTS.commonKeyTtlSec,
    tokenTtlSec: CLOUD_DEFAULTS.tokenTtlSec,
    certValidDays: o.certDays ?? CLOUD_DEFAULTS.certValidDays,
    keepaliveNatSec: CLOUD_DEFAULTS.keepaliveNatSec,
    keepaliveOpenSec: CLOUD_DEFAULTS.keepaliveOpenSec,
    db: o.db ?? CLOUD_DEFAULTS.db,
  };
  validateCloudConfig(cfg); // before touching the disk
  for (const sub of ['', 'ca', 'tls']) mkdirSync(join(o.dir, sub), { recursive: true, mode: 0o700 });
  const root = await createRootCa({ commonName: `cyphonic root CA (${cfg.domain})` });
  const as = await createIntermediateCa(root, { commonName: `cyphonic AS (${cfg.domain})` });
  const server = await issueServerCertificate(as, { commonName: `as.${cfg.domain}`, ipAddresses: cfg.advertise, dnsNames: [`as.${cfg.domain}`] });
  writeFileAtomic(o.rootKeyOut ?? p.rootKey, root.keyPem, 0o600);
  writeFileAtomic(p.rootCert, root.certPem, 0o644);
  writeFileAtomic(p.asKey, as.keyPem, 0o600);
  writeFileAtomic(p.asCert, as.certPem, 0o644);
  writeFileAtomic(p.tlsKey, server.keyPem, 0o600);
  writeFileAtomic(p.tlsCert, server.certPem, 0o644);
  const store = await openCloudStore(o.dir, cfg);
  await store.setMeta('domain', cfg.domain);
  await loadRelayKey(store); // the NMS↔TRS key, made once here (or by the first process that needs it)
  await store.close();
  rotateAdminToken(o.dir); // DIR/admin-token (0600): the REST API's bearer token
  saveCloudConfig(p.config, cfg); // last: its presence means "initialised"
  return cfg;
}

export function openCloudStore(dir: string, cfg: CloudConfig, dbOverride?: string): Promise<Store> {
  const db = dbOverride ?? cfg.db;
  const url = isPostgresUrl(db) || db.startsWith('sqlite:') || isAbsolute(db) || db === ':memory:' ? db : join(dir, db);
  return openStore(url);
}

/**
 * A cloud made before the AS server purpose existed has a TLS certificate without it, which current nodes refuse:
 * issue a new one (same names) once, at start.
 */
async function upgradeAsServerCertificate(p: ReturnType<typeof paths>, issuer: CaMaterial, cfg: CloudConfig): Promise<void> {
  if (hasAsPurpose(toDer(readFileSync(p.tlsCert, 'utf8')))) return;
  const server = await issueServerCertificate(issuer, { commonName: `as.${cfg.domain}`, ipAddresses: cfg.advertise, dnsNames: [`as.${cfg.domain}`] });
  writeFileAtomic(p.tlsKey, server.keyPem, 0o600);
  writeFileAtomic(p.tlsCert, server.certPem, 0o644);
}

function endpointsFor(cfg: CloudConfig, port: number, advertise: string[] = cfg.advertise): Endpoint[] {
  return advertise.map((address) => ({ address, port }));
}

export interface RunningCloud {
  config: CloudConfig;
  store: Store;
  as: AsService | null;
  nms: NmsService | null;
  trs: TrsService | null;
  /** This instance's id in the store's cloud_instances (null for a TRS-only process). */
  instanceId: string | null;
  stop(): Promise<void>;
}

export type Role = 'as' | 'nms' | 'trs';

export interface CloudStartOptions {
  dir: string;
  db?: string;
  roles?: Role[];
  logger: Logger;
  /** Bind address for every listener. @default '::' (dual-stack) */
  host?: string;
  /** Override ports (tests use 0 for ephemeral ports); nmsProbe: the NAT mapping probe. @default DEFAULT_PORTS.nmsProbe */
  ports?: Partial<CloudConfig['ports'] & { nmsProbe: number }>;
  /** Addresses the TRS advertises (with its port). @default the bind address, or the host's addresses when bound to a wildcard */
  trsAdvertise?: string[];
  /** TRS heartbeat interval into the store (ms). @default RELAY_HEARTBEAT_MS */
  relayHeartbeatMs?: number;
  /** Addresses nodes reach THIS instance at (another host running the same cloud). @default config's advertise */
  advertise?: string[];
  /**
   * Where the REST API (/api/v1/) listens (`--console`; AS/NMS processes only): HTTP on loopback, HTTPS with the
   * cloud's TLS certificate elsewhere. @default none (the CLI passes 127.0.0.1:4580)
   */
  console?: { host: string; port: number; authFailures?: { max: number; windowMs: number } };
}

/** The TRS part of `cloud stats`. */
export interface TrsMetrics extends TrsStatus {
  counters: Record<string, number>;
}

export async function startCloud(o: CloudStartOptions): Promise<RunningCloud & { ports: { as: number; nms: number; trs: number }; console: { url: string; port: number } | null }> {
  const cfg = loadCloudConfig(paths(o.dir).config);
  const p = paths(o.dir);
  const roles = new Set(o.roles ?? ['as', 'nms']);
  const store = await openCloudStore(o.dir, cfg, o.db);
  const ports: CloudConfig['ports'] & { nmsProbe?: number } = { ...cfg.ports, ...o.ports };
  const stops: (() => Promise<void>)[] = [];
  const advertise = o.advertise?.length ? o.advertise : cfg.advertise;
  // AS/NMS processes are instances of the cloud (registered in the store); a TRS-only process registers as a relay.
  const instanceId = !roles.has('as') && !roles.has('nms')
    ? null
    : (roles.has('nms') ? ports.nms : ports.as) === 0
      ? newInstanceId()
      : newInstanceId(JSON.stringify({ advertise: [...advertise].sort(), as: roles.has('as') ? ports.as : 0, nms: roles.has('nms') ? ports.nms : 0 }));
  const nmsEndpointsNow = (): Endpoint[] => (roles.has('nms') ? endpointsFor(cfg, nmsPort || ports.nms, advertise) : []);
  let as: AsService | null = null;
  let nms: NmsService | null = null;
  let trs: TrsService | null = null;
  let asPort = 0;
  let nmsPort = 0;
  let trsPort = 0;
  let consoleAt: { url: string; port: number } | null = null;
  const metrics = newRegistry(); // GET /metrics on the API port (cloudMetrics below)
  let nmsTimes: HotHistogram | null = null; // the NMS's handling times, for `cloud stats` too (nmsHandle)
  try {
    if (roles.has('nms')) {
      let transport: NmsTransport | null = null;
      // Relayed paths: the NMS asks a live TRS (from the store) to relay, over its own socket (see trs/client.ts).
      const relayKey = await loadRelayKey(store);
      const relayClient = new RelayClient({ relayKey, host: o.host ?? '::' });
      await relayClient.start();
      stops.push(() => relayClient.stop());
      const relays: RelayAllocator = {
        allocate: (req, avoid) =>
          allocateRelay(
            { store, client: relayClient, ...(o.relayHeartbeatMs ? { heartbeatMs: o.relayHeartbeatMs } : {}), avoid: (r) => r.endpoints.some((e) => avoid.some((a) => a.port === e.port && a.address === e.address)) },
            req,
          ),
        revoke: (nodeIds) => revokeAtRelays({ store, client: relayClient, ...(o.relayHeartbeatMs ? { heartbeatMs: o.relayHeartbeatMs } : {}) }, nodeIds),
        tickets: () => relayTickets({ store, relayKey, ...(o.relayHeartbeatMs ? { heartbeatMs: o.relayHeartbeatMs } : {}) }),
      };
      nms = new NmsService(
        { domain: cfg.domain, keepaliveNatSec: cfg.keepaliveNatSec, keepaliveOpenSec: cfg.keepaliveOpenSec, ...(instanceId ? { instanceId } : {}) },
        { store, logger: o.logger.child({ component: 'nms' }), send: (d, to) => transport?.send(d, to), relays },
      );
      await nms.restoreSequence();
      nms.watchPolicy(); // policy and tag changes reach running nodes (PolicyUpdate)
      nms.logSummaries(); // a `registrations` line a minute (each registration is a debug line)
      const nmsService = nms;
      const general = new GeneralNodeWatcher({ store, logger: o.logger.child({ component: 'nms' }), counters: nms.counters, notify: (id) => nmsService.policy.pushGeneralNodes(id) });
      general.start(); // a running adapter learns of general-node changes at once (PolicyUpdate.generalNodes)
      stops.push(async () => general.stop());
      await nms.listenToInstances();
      const service = nms;
      stops.push(async () => service.close());
      const { timed, times } = timedNms(nms, metrics); // the NMS's handling time per message type (cyphonic_nms_handle_seconds)
      nmsTimes = times;
      const t = (transport = new NmsTransport({ host: o.host ?? '::', port: ports.nms }, timed, o.logger.child({ component: 'nms' })));
      nmsPort = (await t.start()).port;
      stops.push(() => t.stop());
      // The NAT mapping probe (DEFAULT_PORTS.nmsProbe, 4505; ephemeral when the NMS port is): see NmsService.probe.
      const probe = new NmsTransport({ host: o.host ?? '::', port: ports.nms === 0 ? 0 : (ports.nmsProbe ?? DEFAULT_PORTS.nmsProbe), via: 'probe' }, nms, o.logger.child({ component: 'nms' }));
      nms.probePort = (await probe.start()).port;
      stops.push(() => probe.stop());
    }
    if (roles.has('trs')) {
      const logger = o.logger.child({ component: 'trs' });
      const host = o.host ?? '::';
      let transport: TrsTransport | null = null;
      const service = (trs = new TrsService({}, { relayKey: await loadRelayKey(store), logger, send: (d, port, address) => transport?.send(d, port, address) }));
      const t = (transport = new TrsTransport({ host, port: ports.trs }, service, logger));
      trsPort = (await t.start()).port;
      stops.push(() => t.stop());
      service.advertise(advertisedEndpoints(trsPort, host, o.trsAdvertise ?? [], cfg.advertise));
      service.start();
      stops.push(async () => service.stop());
      const registry = new RelayRegistry({ heartbeatMs: o.relayHeartbeatMs }, { store, server: service, logger });
      await registry.start();
      stops.push(() => registry.stop());
      logger.info('TRS started', { relay: service.id, udpAddr: service.advertised.map(formatEndpoint).join(',') });
    }
    if (roles.has('as')) {
      const issuer: CaMaterial = { certPem: readFileSync(p.asCert, 'utf8'), keyPem: readFileSync(p.asKey, 'utf8') };
      const rootPem = readFileSync(p.rootCert, 'utf8');
      await upgradeAsServerCertificate(p, issuer, cfg);
      as = new AsService(
        {
          domain: cfg.domain,
          pools: cfg.pools,
          nmsEndpoints: endpointsFor(cfg, nmsPort || ports.nms, advertise),
          commonKeyTtlSec: cfg.commonKeyTtlSec,
          certValidDays: cfg.certValidDays,
        },
        { liveNmsEndpoints: () => liveEndpoints(store, 'nms', nmsEndpointsNow()), store, issuer, chainDer: [toDer(issuer.certPem), toDer(rootPem)], rootPem, logger: o.logger.child({ component: 'as' }) },
      );
      const t = new AsTransport(
        {
          host: o.host ?? '::',
          port: ports.as,
          certChainPem: readFileSync(p.tlsCert, 'utf8') + issuer.certPem + rootPem,
          keyPem: readFileSync(p.tlsKey, 'utf8'),
          rootPem,
        },
        as,
        o.logger.child({ component: 'as' }),
      );
      asPort = (await t.start()).port;
      stops.push(() => t.stop());
    }
    if (instanceId) {
      const registry = new InstanceRegistry(
        instanceId,
        { as: asPort ? endpointsFor(cfg, asPort, advertise) : [], nms: nmsEndpointsNow(), trs: trs ? trs.advertised : [] },
        { store, logger: o.logger.child({ component: 'instance' }) },
      );
      await registry.start();
      stops.push(() => registry.stop());
    }
    cloudMetrics(metrics, as, nms, trs);
    const trsService = trs;
    const trsMetrics = (): TrsMetrics | null => (trsService ? { ...trsService.status(), counters: trsService.metrics() } : null);
    // AS/NMS processes own DIR/cloud.sock; a TRS-only process gets DIR/trs-PORT.sock, so several share one DIR.
    const controlPath = roles.has('as') || roles.has('nms') ? p.control : p.trsControl(trsPort);
    const control: ControlServer = await serveControl(controlPath, {
      '/metrics': () => ({ as: as?.counters.toJSON() ?? null, nms: nms?.counters.toJSON() ?? null, trs: trsMetrics(), ...(nmsTimes ? { nmsHandle: handleTimes(nmsTimes) } : {}) }),
      '/nodes': () => listNodes(store, cfg),
      '/relays': () => listRelays(store),
    });
    stops.push(() => control.close());
    if (o.console && (roles.has('as') || roles.has('nms'))) {
      const tls = { certPem: readFileSync(p.tlsCert, 'utf8') + readFileSync(p.asCert, 'utf8'), keyPem: readFileSync(p.tlsKey, 'utf8') };
      const apiSeconds = latencyHistogram(metrics, 'cyphonic_api_request_seconds', 'REST API requests: time to answer', ['route', 'status']);
      const api = new ApiServer({
        ...o.console,
        dir: o.dir,
        tls,
        routes: [...apiRoutes({ store, config: cfg, dir: o.dir, peers: consolePeers(nms, trs) }), metricsRoute(metrics)],
        logger: o.logger.child({ component: 'api' }),
        observe: (route, status, seconds) => apiSeconds.observe({ route, status: String(status) }, seconds),
      });
      consoleAt = await api.start();
      stops.push(() => api.stop());
      o.logger.info('API listening', { url: consoleAt.url });
    }
  } catch (err) {
    for (const s of stops.reverse()) await s();
    await store.close();
    throw err;
  }
  o.logger.info('cloud started', { roles: [...roles], as: asPort, nms: nmsPort, trs: trsPort, domain: cfg.domain, ...(instanceId ? { instance: instanceId } : {}) });
  return {
    config: cfg,
    store,
    as,
    nms,
    trs,
    instanceId,
    ports: { as: asPort, nms: nmsPort, trs: trsPort },
    console: consoleAt,
    async stop() {
      for (const s of stops.reverse()) await s();
      await store.close();
    },
  };
}

/** The console's view of paths: the nodes' own reports and selections at this process's NMS, its TRS's relayed counts. */
function consolePeers(nms: NmsService | null, trs: TrsService | null): PeerDeps {
  return {
    ...(nms ? { paths: (id: number) => nms.selectedPaths(id), reports: (id: number) => nms.peerReport(id) } : {}),
    ...(trs ? { relayStats: (relayId: string, pathId: bigint) => (relayId === trs.id ? trs.pathStats(pathId) : null) } : {}),
  };
}

/** `cloud enroll NAME`: a one-time token bound to NAME. */
export async function createEnrollment(dir: string, name: string, db?: string): Promise<string> {
  validateNodeName(name);
  const cfg = loadCloudConfig(paths(dir).config);
  const store = await openCloudStore(dir, cfg, db);
  try {
    return await enrollmentToken(store, cfg, dir, name);
  } finally {
    await store.close();
  }
}

/** A one-time enrollment token for NAME (validated) in `store` (the CLI's `cloud enroll` and the REST API). */
export async function enrollmentToken(store: Store, cfg: CloudConfig, dir: string, name: string): Promise<string> {
  validateNodeName(name);
  const secret = randomBytes(32).toString('base64url');
  const now = Date.now();
  await store.createEnrollmentToken({ name, tokenHash: tokenHash(secret), expiresAt: now + cfg.tokenTtlSec * 1000, createdAt: now });
  const rootPem = readFileSync(paths(dir).rootCert, 'utf8');
  // Several instances: the AS of every live one (a node tries them in order); none live: the configured ones.
  const as = await liveEndpoints(store, 'as', []);
  return encodeToken({ name, secret, as: (as.length ? as : endpointsFor(cfg, cfg.ports.as)).slice(0, MAX_ENDPOINTS).map(formatEndpoint), ca: fingerprint(rootPem) });
}

export interface NodeRow {
  id: number;
  name: string;
  fqdn: string;
  vip4: string;
  vip6: string;
  online: boolean;
  nat: boolean | null;
  observed: string | null;
  /** Underlay address families the node registered with (its reported endpoints and the observed one). */
  families: ('v4' | 'v6')[];
  /** NAT mapping learned by the NMS's probe: 'independent' (punchable), 'dependent', or null (not behind NAT / not probed). */
  mapping: 'independent' | 'dependent' | null;
  lastSeen: string | null;
  /** Policy tags (`cloud tags`), sorted. */
  tags: string[];
  /** Id of the cloud instance whose NMS holds the registration (null: none, or a cloud from before instances). */
  nms: string | null;
}

function underlayFamilies(endpoints: Endpoint[]): ('v4' | 'v6')[] {
  const has = (v6: boolean): boolean => endpoints.some((e) => e.address.includes(':') === v6);
  return [...(has(false) ? (['v4'] as const) : []), ...(has(true) ? (['v6'] as const) : [])];
}

/** How many missed keepalive intervals before a node counts as offline. */
const OFFLINE_AFTER_INTERVALS = 3;

export async function listNodes(store: Store, cfg: CloudConfig, now = Date.now()): Promise<NodeRow[]> {
  const regs = new Map((await store.listRegistrations()).map((r) => [r.nodeId, r]));
  const nodes = await store.listNodes();
  const tags = await store.listNodeTags();
  const out: NodeRow[] = [];
  for (const n of nodes) {
    const r = regs.get(n.id);
    const key = await store.getCommonKey(n.id);
    out.push({
      id: n.id,
      name: n.name,
      fqdn: `${n.name}.${cfg.domain}`,
      vip4: n.vip4,
      vip6: n.vip6,
      online: !!r && now - r.lastSeen <= r.keepaliveSec * 1000 * OFFLINE_AFTER_INTERVALS && !!key && key.expiresAt > now,
      nat: r ? r.nat : null,
      observed: r ? formatEndpoint(r.observed) : null,
      families: r ? underlayFamilies([r.observed, ...r.reported]) : [],
      mapping: r?.mapping ?? null,
      lastSeen: r ? new Date(r.lastSeen).toISOString() : null,
      tags: tags.get(n.name) ?? [],
      nms: r?.nms ?? null,
    });
  }
  return out;
}

export async function adminNodes(dir: string, db?: string): Promise<NodeRow[]> {
  const cfg = loadCloudConfig(paths(dir).config);
  const store = await openCloudStore(dir, cfg, db);
  try {
    return await listNodes(store, cfg);
  } finally {
    await store.close();
  }
}

/** `cloud revoke NAME`: revokes the node's certificates and voids its Common Key. */
export async function revokeNode(dir: string, name: string, db?: string): Promise<number> {
  const cfg = loadCloudConfig(paths(dir).config);
  const store = await openCloudStore(dir, cfg, db);
  try {
    return await revokeNodeIn(store, name);
  } finally {
    await store.close();
  }
}

/** revokeNode on an open store (the REST API): the number of certificates revoked; ConfigError ERR_UNKNOWN_NODE. */
export async function revokeNodeIn(store: Store, name: string): Promise<number> {
  {
    const node = await store.getNodeByName(name);
    if (!node) throw new ConfigError(`no node named ${name}`, 'ERR_UNKNOWN_NODE');
    const now = Date.now();
    const n = await store.revokeNodeCertificates(node.id, 'revoked by administrator', now);
    const key = await store.getCommonKey(node.id);
    if (key) await store.putCommonKey({ ...key, expiresAt: now - 1 });
    await store.deleteRegistration(node.id);
    await bumpPolicyRev(store); // running NMSs tell the node's peers to close their tunnels to it (PolicyUpdate)
    return n;
  }
}

export interface RelayRow {
  id: string;
  endpoints: string[];
  load: number;
  live: boolean;
  startedAt: string;
  heartbeatAt: string;
}

/** Registered TRS processes (`cloud relays`), live or not. */
export async function listRelays(store: Store, now = Date.now()): Promise<RelayRow[]> {
  return (await store.listRelayServers()).map((r) => ({
    id: r.id,
    endpoints: r.endpoints.map(formatEndpoint),
    load: r.load,
    live: isLiveRelay(r, now),
    startedAt: new Date(r.startedAt).toISOString(),
    heartbeatAt: new Date(r.heartbeatAt).toISOString(),
  }));
}

export async function adminRelays(dir: string, db?: string): Promise<RelayRow[]> {
  const cfg = loadCloudConfig(paths(dir).config);
  const store = await openCloudStore(dir, cfg, db);
  try {
    return await listRelays(store);
  } finally {
    await store.close();
  }
}

export function cloudControlPath(dir: string): string {
  return paths(dir).control;
}

/** Control sockets of TRS-only processes in DIR (`trs-PORT.sock`), for `cloud stats`. */
export function trsControlPaths(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => /^trs-\d+\.sock$/.test(n)).sort().map((n) => join(dir, n));
}
