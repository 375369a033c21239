// Input checks and row decoding shared by every Store backend (SQLite and PostgreSQL), so both refuse the same
// bad input with the same StoreError codes and read endpoints lists the same way.

import { parseCidr, type Cidr } from '../net/addr/cidr.js';
import { StoreError } from './errors.js';
import { ADDRESS_FAMILIES, MAX_INSTANCE_MESSAGE, NODE_KINDS, TAG_PATTERN } from './types.js';
import type { AddressFamily, CertificateRecord, CloudInstanceRecord, Endpoint, NewNode, NodeKind, NodeRecord, NodeSessionRecord, Pools, RelayServerRecord } from './types.js';

/** Upper bound on collisions skipped while allocating one address (only happens when pools overlap after a pool change). */
export const MAX_ALLOCATION_PROBES = 100_000;

/** Longest relay server id the store accepts (ids are short random text). */
export const MAX_RELAY_ID_LEN = 64;

export function decodeEndpoints(text: string, row = 'registration row: reported'): Endpoint[] {
  const parsed: unknown = JSON.parse(text);
  if (!Array.isArray(parsed)) throw new StoreError('ERR_STORE', `corrupt ${row} is not a list`);
  return parsed.map((e: unknown) => {
    const o = e as { address?: unknown; port?: unknown };
    if (typeof o?.address !== 'string' || typeof o.port !== 'number') {
      throw new StoreError('ERR_STORE', `corrupt ${row}: bad endpoint`);
    }
    return { address: o.address, port: o.port };
  });
}

export function checkEndpoint(e: Endpoint, what: string): Endpoint {
  if (typeof e?.address !== 'string' || !Number.isInteger(e.port) || e.port < 0 || e.port > 65535) {
    throw new StoreError('ERR_STORE_INVALID', `${what} must be { address: string, port: 0..65535 }`);
  }
  return { address: e.address, port: e.port };
}

export function checkRelay(rec: RelayServerRecord): { id: string; endpoints: string } {
  if (typeof rec?.id !== 'string' || rec.id === '' || rec.id.length > MAX_RELAY_ID_LEN) {
    throw new StoreError('ERR_STORE_INVALID', `relay server id must be 1..${MAX_RELAY_ID_LEN} characters`);
  }
  if (!Array.isArray(rec.endpoints)) throw new StoreError('ERR_STORE_INVALID', 'relay server endpoints must be a list');
  const endpoints = rec.endpoints.map((e, i) => checkEndpoint(e, `endpoints[${i}]`));
  if (!Number.isInteger(rec.load) || rec.load < 0) throw new StoreError('ERR_STORE_INVALID', 'relay server load must be a non-negative integer');
  if (!Number.isInteger(rec.startedAt) || !Number.isInteger(rec.heartbeatAt)) {
    throw new StoreError('ERR_STORE_INVALID', 'relay server startedAt/heartbeatAt must be integers (unix ms)');
  }
  return { id: rec.id, endpoints: JSON.stringify(endpoints) };
}

export function checkSeq(seq: bigint): string {
  if (typeof seq !== 'bigint' || seq < 0n) throw new StoreError('ERR_STORE_INVALID', 'lastSeq must be a non-negative bigint');
  return seq.toString();
}

/** Validates a NewNode and its pools before any allocation; returns the parsed pools and the defaults filled in. */
export function checkNewNode(
  input: NewNode,
  pools: Pools,
): { v4: Cidr; v6: Cidr; family: AddressFamily; adapterId: number | null; mac: string | null; createdAt: number } {
  if (typeof input.name !== 'string' || input.name === '') throw new StoreError('ERR_STORE_INVALID', 'node name must be a non-empty string');
  if (!NODE_KINDS.includes(input.kind)) throw new StoreError('ERR_STORE_INVALID', `unknown node kind "${String(input.kind)}"`);
  const v4 = parseCidr(pools.v4);
  const v6 = parseCidr(pools.v6);
  if (v4.family !== 4) throw new StoreError('ERR_STORE_INVALID', `v4 pool ${pools.v4} is not an IPv4 prefix`);
  if (v6.family !== 6) throw new StoreError('ERR_STORE_INVALID', `v6 pool ${pools.v6} is not an IPv6 prefix`);
  const family = input.family ?? 'dual';
  if (!ADDRESS_FAMILIES.includes(family)) throw new StoreError('ERR_STORE_INVALID', `unknown address family "${String(family)}"`);
  return { v4, v6, family, adapterId: input.adapterId ?? null, mac: input.mac ?? null, createdAt: input.createdAt ?? Date.now() };
}

export function checkInstance(rec: CloudInstanceRecord): { id: string; as: string; nms: string; trs: string } {
  if (typeof rec?.id !== 'string' || rec.id === '' || rec.id.length > MAX_RELAY_ID_LEN) {
    throw new StoreError('ERR_STORE_INVALID', `instance id must be 1..${MAX_RELAY_ID_LEN} characters`);
  }
  const list = (eps: Endpoint[], what: string): string => {
    if (!Array.isArray(eps)) throw new StoreError('ERR_STORE_INVALID', `instance ${what} endpoints must be a list`);
    return JSON.stringify(eps.map((e, i) => checkEndpoint(e, `${what}[${i}]`)));
  };
  if (!Number.isInteger(rec.startedAt) || !Number.isInteger(rec.heartbeatAt)) {
    throw new StoreError('ERR_STORE_INVALID', 'instance startedAt/heartbeatAt must be integers (unix ms)');
  }
  return { id: rec.id, as: list(rec.as, 'as'), nms: list(rec.nms, 'nms'), trs: list(rec.trs, 'trs') };
}

export interface InstanceRow {
  id: string;
  as_endpoints: string;
  nms_endpoints: string;
  trs_endpoints: string;
  started_at: number;
  heartbeat_at: number;
}

export function instanceFromRow(r: InstanceRow): CloudInstanceRecord {
  const what = 'cloud instance row: endpoints';
  return {
    id: r.id,
    as: decodeEndpoints(r.as_endpoints, what),
    nms: decodeEndpoints(r.nms_endpoints, what),
    trs: decodeEndpoints(r.trs_endpoints, what),
    startedAt: Number(r.started_at),
    heartbeatAt: Number(r.heartbeat_at),
  };
}

export function checkMessage(payload: string): void {
  if (typeof payload !== 'string' || Buffer.byteLength(payload) > MAX_INSTANCE_MESSAGE) {
    throw new StoreError('ERR_STORE_INVALID', `instance message must be text of at most ${MAX_INSTANCE_MESSAGE} bytes`);
  }
}

export function checkNms(nms: string | undefined): string | null {
  if (nms === undefined) return null;
  if (typeof nms !== 'string' || nms === '' || nms.length > MAX_RELAY_ID_LEN) throw new StoreError('ERR_STORE_INVALID', 'registration nms must be an instance id');
  return nms;
}

/** The validated, deduplicated and sorted tags for Store.setNodeTags; StoreError 'ERR_STORE_INVALID' otherwise. */
export function checkTags(name: string, tags: string[]): string[] {
  if (typeof name !== 'string' || name === '') throw new StoreError('ERR_STORE_INVALID', 'node name must be a non-empty string');
  if (!Array.isArray(tags)) throw new StoreError('ERR_STORE_INVALID', 'tags must be a list');
  for (const t of tags) if (typeof t !== 'string' || !TAG_PATTERN.test(t)) throw new StoreError('ERR_STORE_INVALID', `invalid tag ${JSON.stringify(t)}`);
  return [...new Set(tags)].sort();
}

// Rows both backends read the same way (column names and types agree).

/** One read for the NMS's first contact with a node (getNodeSession): the node's row plus its key and lastSeq. */
export const NODE_SESSION_SQL = (p: (i: number) => string): string =>
  `SELECT n.*, k.key AS ck_key, k.expires_at AS ck_expires_at, k.created_at AS ck_created_at, r.last_seq AS reg_last_seq
   FROM common_keys k JOIN nodes n ON n.id = k.node_id LEFT JOIN registrations r ON r.node_id = k.node_id WHERE k.node_id = ${p(1)}`;

export interface NodeSessionRow extends NodeRow {
  ck_key: Buffer;
  ck_expires_at: number;
  ck_created_at: number;
  reg_last_seq: string | null;
}

/**
 * A key read from a driver, as bytes of its own: the driver's Buffer when it has its ArrayBuffer to itself (SQLite's
 * BLOBs), else a copy outside Node's shared pool. A small Buffer.from() copy is a slice of an 8 KiB pool, and a key
 * the NMS keeps for as long as the node is registered would keep its whole pool alive (~0.3 kB per node measured).
 */
export function ownBytes(b: Uint8Array): Buffer {
  if (Buffer.isBuffer(b) && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength) return b;
  const out = Buffer.allocUnsafeSlow(b.byteLength);
  out.set(b);
  return out;
}

export function nodeSessionFromRow(r: NodeSessionRow): NodeSessionRecord {
  return {
    key: { nodeId: r.id, key: ownBytes(r.ck_key), expiresAt: Number(r.ck_expires_at), createdAt: Number(r.ck_created_at) },
    node: nodeFromRow(r),
    lastSeq: r.reg_last_seq === null ? null : BigInt(r.reg_last_seq),
  };
}

export interface NodeRow {
  id: number;
  name: string;
  kind: string;
  vip4: string;
  vip6: string;
  adapter_id: number | null;
  mac: string | null;
  family: string;
  created_at: number;
}

export interface CertRow {
  serial: string;
  node_id: number;
  der: Buffer;
  not_after: number;
  created_at: number;
  revoked_at: number | null;
  revoke_reason: string | null;
}

/**
 * The kinds and families as constants: a record's `kind` and `family` are then the one shared string each, not a
 * string per row read (the NMS keeps a record per registered node).
 */
const KINDS: Readonly<Record<string, NodeKind>> = { node: 'node', adapter: 'adapter', general: 'general' };
const FAMILIES: Readonly<Record<string, AddressFamily>> = { dual: 'dual', v4: 'v4', v6: 'v6' };

export function nodeFromRow(r: NodeRow): NodeRecord {
  return {
    id: r.id,
    name: r.name,
    kind: (Object.hasOwn(KINDS, r.kind) ? KINDS[r.kind] : r.kind) as NodeKind,
    vip4: r.vip4,
    vip6: r.vip6,
    adapterId: r.adapter_id,
    mac: r.mac,
    family: (Object.hasOwn(FAMILIES, r.family) ? FAMILIES[r.family] : r.family) as AddressFamily,
    createdAt: r.created_at,
  };
}

export function certFromRow(r: CertRow): CertificateRecord {
  return {
    serial: r.serial,
    nodeId: r.node_id,
    der: Buffer.isBuffer(r.der) ? r.der : Buffer.from(r.der), // a driver's Buffer is the row's own: no copy
    notAfter: r.not_after,
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
    revokeReason: r.revoke_reason,
  };
}
