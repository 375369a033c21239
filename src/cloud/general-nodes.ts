// Admin operations on general nodes (devices that cannot run cyphonic, served by an adapter node):
// `cloud general-node add NAME --mac MAC --adapter A [--family dual|v4|v6]`, `cloud general-node list` and
// `cloud general-node remove NAME`.
// A general node is a node record of kind 'general' owned by adapter A, with its own vip4/vip6 and FQDN;
// the adapter learns it through InfoRequest and gets its certificate with GeneralEnrollRequest.

import { join } from 'node:path';
import { CLOUD_CONFIG_FILE, loadCloudConfig, type CloudConfig } from '../config/cloud.js';
import { validateNodeName } from '../config/token.js';
import { ADDRESS_FAMILIES, type AddressFamily, type NodeRecord, type Pools, type Store } from '../store/types.js';
import { ConfigError } from '../util/errors.js';
import { bumpPolicyRev } from '../policy/store.js';
import { bumpDirectoryRev } from './nms/directory.js';
import { openCloudStore } from './cloud.js';
import { bumpGeneralRev } from './nms/general-push.js';

export interface GeneralNodeRow {
  id: number;
  name: string;
  fqdn: string;
  mac: string;
  adapter: string;
  family: AddressFamily;
  /** null when the family is not used. */
  vip4: string | null;
  vip6: string | null;
}

/** 'AA-BB-cc:dd:ee:ff' → 'aa:bb:cc:dd:ee:ff'; ConfigError for anything that is not a unicast MAC. */
export function normalizeGeneralMac(mac: string): string {
  const hex = mac.replace(/[:-]/g, '').toLowerCase();
  if (!/^[0-9a-f]{12}$/.test(hex) || !/^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$/i.test(mac)) throw new ConfigError(`--mac: ${mac} is not a MAC address (aa:bb:cc:dd:ee:ff)`, 'ERR_BAD_MAC');
  if (parseInt(hex.slice(0, 2), 16) & 1) throw new ConfigError(`--mac: ${mac} is a multicast address`, 'ERR_BAD_MAC');
  if (hex === '000000000000') throw new ConfigError(`--mac: ${mac} is the zero address`, 'ERR_BAD_MAC');
  return hex.match(/../g)!.join(':');
}

export function parseFamily(v: string | undefined): AddressFamily {
  const f = (v ?? 'dual') as AddressFamily;
  if (!ADDRESS_FAMILIES.includes(f)) throw new ConfigError(`--family: ${String(v)} is not one of ${ADDRESS_FAMILIES.join(', ')}`);
  return f;
}

function row(n: NodeRecord, adapter: string, domain: string): GeneralNodeRow {
  return {
    id: n.id,
    name: n.name,
    fqdn: `${n.name}.${domain}`,
    mac: n.mac ?? '',
    adapter,
    family: n.family,
    vip4: n.family === 'v6' ? null : n.vip4,
    vip6: n.family === 'v4' ? null : n.vip6,
  };
}

/**
 * Creates the general node record; a MAC may belong to one general node only. An adapter that has not enrolled yet
 * (`cloud enroll A` made its token, the device is not up) gets its node record now: its enrollment keeps that record
 * (and its addresses), so the general nodes are served as soon as the adapter is up. Running NMSs tell a running
 * adapter within about a second (bumpGeneralRev).
 */
export async function addGeneralNode(
  store: Store,
  pools: Pools,
  domain: string,
  input: { name: string; mac: string; adapter: string; family?: AddressFamily },
): Promise<GeneralNodeRow> {
  validateNodeName(input.name);
  const mac = normalizeGeneralMac(input.mac);
  validateNodeName(input.adapter);
  if (input.adapter === input.name) throw new ConfigError(`--adapter: a general node cannot be its own adapter`, 'ERR_BAD_ADAPTER');
  const nodes = await store.listNodes();
  const taken = nodes.find((n) => n.kind === 'general' && n.mac === mac);
  if (taken) throw new ConfigError(`--mac: ${mac} already belongs to general node ${taken.name}`, 'ERR_MAC_TAKEN');
  if (nodes.some((n) => n.name === input.name)) throw new ConfigError(`a node named ${input.name} exists already`, 'ERR_NAME_TAKEN');
  let adapter = nodes.find((n) => n.name === input.adapter) ?? null;
  if (adapter?.kind === 'general') throw new ConfigError(`--adapter: ${input.adapter} is a general node, not an adapter`, 'ERR_BAD_ADAPTER');
  adapter ??= await store.createNode({ name: input.adapter, kind: 'node' }, pools); // enrolls later: see above
  const n = await store.createNode({ name: input.name, kind: 'general', adapterId: adapter.id, mac, family: input.family ?? 'dual' }, pools);
  await bumpGeneralRev(store);
  await bumpDirectoryRev(store);
  return row(n, adapter.name, domain);
}

export async function listGeneralNodes(store: Store, domain: string): Promise<GeneralNodeRow[]> {
  const nodes = await store.listNodes();
  const names = new Map(nodes.map((n) => [n.id, n.name]));
  return nodes.filter((n) => n.kind === 'general').map((n) => row(n, names.get(n.adapterId ?? -1) ?? '-', domain));
}

/**
 * Removes general node NAME: its record, certificates, Common Key, registration and tags go in one transaction (it can
 * neither log in nor register again; its addresses may be given to a later node, its id never is). Running NMSs then
 * tell its adapter (which stops serving it: agent stopped, leases dropped) and the peers that had paths with it (a
 * PolicyUpdate entry marking it revoked: they close their tunnels) and the TRS (its relayed paths go), within about a
 * second. ConfigError ERR_UNKNOWN_NODE for no such node, ERR_NOT_GENERAL for a node that is not a general node.
 */
export async function removeGeneralNode(store: Store, domain: string, name: string): Promise<GeneralNodeRow> {
  validateNodeName(name);
  const n = await store.getNodeByName(name);
  if (!n) throw new ConfigError(`no general node named ${name}`, 'ERR_UNKNOWN_NODE');
  if (n.kind !== 'general') throw new ConfigError(`${name} is not a general node (cloud revoke removes a node's access)`, 'ERR_NOT_GENERAL');
  const adapter = n.adapterId !== null && n.adapterId !== undefined ? await store.getNodeById(n.adapterId) : null;
  if (!(await store.deleteNode(n.id))) throw new ConfigError(`no general node named ${name}`, 'ERR_UNKNOWN_NODE');
  await bumpGeneralRev(store);
  await bumpPolicyRev(store);
  return row(n, adapter?.name ?? '-', domain);
}

async function withStore<T>(dir: string, db: string | undefined, f: (store: Store, cfg: CloudConfig) => Promise<T>): Promise<T> {
  const cfg = loadCloudConfig(join(dir, CLOUD_CONFIG_FILE));
  const store = await openCloudStore(dir, cfg, db);
  try {
    return await f(store, cfg);
  } finally {
    await store.close();
  }
}

export function adminAddGeneralNode(dir: string, input: { name: string; mac: string; adapter: string; family?: AddressFamily }, db?: string): Promise<GeneralNodeRow> {
  return withStore(dir, db, (store, cfg) => addGeneralNode(store, cfg.pools, cfg.domain, input));
}

export function adminListGeneralNodes(dir: string, db?: string): Promise<GeneralNodeRow[]> {
  return withStore(dir, db, (store, cfg) => listGeneralNodes(store, cfg.domain));
}

export function adminRemoveGeneralNode(dir: string, name: string, db?: string): Promise<GeneralNodeRow> {
  return withStore(dir, db, (store, cfg) => removeGeneralNode(store, cfg.domain, name));
}
