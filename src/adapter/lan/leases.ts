// The adapter's general nodes (MAC → virtual IPv4/IPv6, from the AS) and the leases the DHCP
// servers granted them: the LeaseTable interface, an in-memory table, and its JSON state file.
//
// Addresses are not allocated here: each general node has exactly one virtual IPv4 and/or IPv6,
// assigned by the cloud. A lease records that the node took its address by DHCP and until when;
// the classifier's anti-spoof rule and the proxies read the table, the servers write it.
// The file (`leases.json` in the adapter's state directory) is written with writeFileAtomic, so
// leases survive kill -9; a missing file loads as an empty table, a corrupt one is refused with
// DecodeError('ERR_LEASES_CORRUPT') rather than silently dropping leases.

import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../../util/fsx.js';
import { normalizeIp, parseIp4, parseIp6 } from '../../protocol/ip.js';
import type { GeneralNodeInfo } from '../../protocol/messages.js';
import { formatMac, normalizeMac } from './ethernet.js';
import { LAN_ERR, fail } from './wire.js';

export type Family = 4 | 6;

/** A device behind the adapter, as the AS describes it. */
export interface GeneralNode {
  /** Canonical MAC text (lowercase, colons). */
  mac: string;
  name: string;
  fqdn?: string;
  vip4?: string;
  vip6?: string;
}

export interface Lease {
  mac: string;
  family: Family;
  address: string;
  /** Unix ms when the lease was last granted or extended. */
  boundAt: number;
  /** Unix ms. */
  expiresAt: number;
  /** DHCPv4 hostname option, as the client sent it. */
  hostname?: string;
  /** DHCPv4 client identifier (option 61), hex. */
  clientId?: string;
  /** DHCPv6 client DUID, hex. */
  duid?: string;
  /** DHCPv6 IA_NA identifier. */
  iaid?: number;
}

/** What the DHCP servers need from a lease table. */
export interface LeaseTable {
  /** The general node with this MAC, or undefined: unknown devices get nothing. */
  node(mac: string): GeneralNode | undefined;
  /** The recorded lease (possibly expired), if any. */
  lease(mac: string, family: Family): Lease | undefined;
  /** Records or extends a lease. */
  bind(lease: Lease): void;
  /** Forgets a lease (RELEASE, DECLINE). */
  release(mac: string, family: Family): void;
}

export const LEASE_FILE_VERSION = 1;

export interface LeaseSnapshot {
  version: typeof LEASE_FILE_VERSION;
  nodes: GeneralNode[];
  leases: Lease[];
}

export interface MemoryLeaseTableOptions {
  /**
   * Called after every change (bind, release, expiry, new node list): the integrator persists. `renewal` is a bind
   * that only moved the expiry of a lease on the same address (what every DHCP renewal does): losing it in a crash
   * keeps the address (it is the general node's for good) and at worst lets the saved lease run out before the
   * device's next renewal, so it may be written lazily; `change` may not.
   */
  onChange?: (what: 'change' | 'renewal') => void;
}

const key = (mac: string, family: Family): string => `${mac}/${family}`;

/** The general node record for an AS InfoResponse entry. */
export function generalNodeFromInfo(info: GeneralNodeInfo): GeneralNode {
  const n: GeneralNode = { mac: formatMac(info.mac), name: info.name, fqdn: info.fqdn };
  if (info.vip4) n.vip4 = info.vip4;
  if (info.vip6) n.vip6 = info.vip6;
  return n;
}

function checkedNode(n: GeneralNode): GeneralNode {
  const mac = normalizeMac(n.mac);
  if (!mac) throw new RangeError(`general node ${n.name}: bad MAC ${String(n.mac)}`);
  const out: GeneralNode = { mac, name: n.name };
  if (n.fqdn !== undefined) out.fqdn = n.fqdn;
  if (n.vip4 !== undefined) {
    if (!parseIp4(n.vip4)) throw new RangeError(`general node ${n.name}: bad vip4 ${n.vip4}`);
    out.vip4 = n.vip4;
  }
  if (n.vip6 !== undefined) {
    if (!parseIp6(n.vip6)) throw new RangeError(`general node ${n.name}: bad vip6 ${n.vip6}`);
    out.vip6 = normalizeIp(n.vip6)!;
  }
  return out;
}

/** The in-memory lease table; `snapshot()` / `fromSnapshot()` are its persistence boundary. */
export class MemoryLeaseTable implements LeaseTable {
  private readonly byMac = new Map<string, GeneralNode>();
  private readonly byAddress = new Map<string, string>();
  private readonly leaseMap = new Map<string, Lease>();
  private readonly onChange: (what: 'change' | 'renewal') => void;

  constructor(nodes: readonly GeneralNode[] = [], opts: MemoryLeaseTableOptions = {}) {
    this.onChange = opts.onChange ?? (() => {});
    this.load(nodes);
  }

  static fromSnapshot(s: LeaseSnapshot, opts: MemoryLeaseTableOptions = {}): MemoryLeaseTable {
    const t = new MemoryLeaseTable(s.nodes, opts);
    for (const l of s.leases) {
      const n = t.byMac.get(l.mac);
      if (n && (l.family === 4 ? n.vip4 : n.vip6) === l.address) t.leaseMap.set(key(l.mac, l.family), { ...l });
    }
    return t;
  }

  private load(nodes: readonly GeneralNode[]): void {
    const byMac = new Map<string, GeneralNode>();
    const byAddress = new Map<string, string>();
    for (const raw of nodes) {
      const n = checkedNode(raw);
      if (byMac.has(n.mac)) throw new RangeError(`duplicate general node MAC ${n.mac}`);
      byMac.set(n.mac, n);
      for (const a of [n.vip4, n.vip6]) {
        if (a === undefined) continue;
        if (byAddress.has(a)) throw new RangeError(`address ${a} assigned to two general nodes`);
        byAddress.set(a, n.mac);
      }
    }
    this.byMac.clear();
    this.byAddress.clear();
    for (const [k, v] of byMac) this.byMac.set(k, v);
    for (const [k, v] of byAddress) this.byAddress.set(k, v);
  }

  /**
   * Replaces the general node list (a fresh fetch from the AS). Leases of nodes that are gone, or
   * whose address changed, are dropped. RangeError on a bad or duplicate MAC or address.
   */
  setNodes(nodes: readonly GeneralNode[]): void {
    this.load(nodes);
    for (const [k, l] of this.leaseMap) {
      const n = this.byMac.get(l.mac);
      if (!n || (l.family === 4 ? n.vip4 : n.vip6) !== l.address) this.leaseMap.delete(k);
    }
    this.onChange('change');
  }

  node(mac: string): GeneralNode | undefined {
    return this.byMac.get(mac);
  }

  nodes(): GeneralNode[] {
    return [...this.byMac.values()];
  }

  lease(mac: string, family: Family): Lease | undefined {
    return this.leaseMap.get(key(mac, family));
  }

  leases(): Lease[] {
    return [...this.leaseMap.values()];
  }

  bind(lease: Lease): void {
    const k = key(lease.mac, lease.family);
    const renewal = this.leaseMap.get(k)?.address === lease.address;
    this.leaseMap.set(k, { ...lease });
    this.onChange(renewal ? 'renewal' : 'change');
  }

  release(mac: string, family: Family): void {
    if (this.leaseMap.delete(key(mac, family))) this.onChange('change');
  }

  /** The address `mac` holds an unexpired lease on, for `family` (the anti-spoof rule). */
  active(mac: string, family: Family, now: number): string | undefined {
    const l = this.leaseMap.get(key(mac, family));
    return l && l.expiresAt > now ? l.address : undefined;
  }

  /** The MAC of the general node on this LAN that owns `address` (leased or not); the proxies never answer for it. */
  holderOf(address: string): string | undefined {
    return this.byAddress.get(address);
  }

  /** Drops expired leases; returns them. */
  expire(now: number): Lease[] {
    const gone: Lease[] = [];
    for (const [k, l] of this.leaseMap) {
      if (l.expiresAt <= now) {
        this.leaseMap.delete(k);
        gone.push(l);
      }
    }
    if (gone.length) this.onChange('change');
    return gone;
  }

  snapshot(): LeaseSnapshot {
    return { version: LEASE_FILE_VERSION, nodes: this.nodes().map((n) => ({ ...n })), leases: this.leases().map((l) => ({ ...l })) };
  }
}

// ───────────────────────────── the state file ─────────────────────────────

const ERR = LAN_ERR.leases;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Record<string, unknown>, k: string, where: string, optional = false): string | undefined {
  const v = o[k];
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'string') fail(ERR, `${where}: "${k}" is not a string`);
  return v;
}

function time(o: Record<string, unknown>, k: string, where: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(ERR, `${where}: "${k}" is not a timestamp`);
  return v;
}

function hex(o: Record<string, unknown>, k: string, where: string): string | undefined {
  const v = str(o, k, where, true);
  if (v !== undefined && !/^([0-9a-f]{2})+$/.test(v)) fail(ERR, `${where}: "${k}" is not hex`);
  return v;
}

function parseNode(v: unknown, i: number): GeneralNode {
  const where = `nodes[${i}]`;
  if (!isObject(v)) fail(ERR, `${where} is not an object`);
  const raw: GeneralNode = { mac: str(v, 'mac', where)!, name: str(v, 'name', where)! };
  for (const k of ['fqdn', 'vip4', 'vip6'] as const) {
    const s = str(v, k, where, true);
    if (s !== undefined) raw[k] = s;
  }
  try {
    const n = checkedNode(raw);
    if (n.mac !== raw.mac || (raw.vip6 !== undefined && n.vip6 !== raw.vip6)) fail(ERR, `${where}: not in canonical form`);
    return n;
  } catch (err) {
    if (err instanceof RangeError) fail(ERR, `${where}: ${err.message}`);
    throw err;
  }
}

function parseLease(v: unknown, i: number): Lease {
  const where = `leases[${i}]`;
  if (!isObject(v)) fail(ERR, `${where} is not an object`);
  const mac = str(v, 'mac', where)!;
  if (normalizeMac(mac) !== mac) fail(ERR, `${where}: bad MAC`);
  const family = v['family'];
  if (family !== 4 && family !== 6) fail(ERR, `${where}: bad family`);
  const address = str(v, 'address', where)!;
  if (!(family === 4 ? parseIp4(address) : parseIp6(address)) || normalizeIp(address) !== address) fail(ERR, `${where}: bad address`);
  const l: Lease = { mac, family, address, boundAt: time(v, 'boundAt', where), expiresAt: time(v, 'expiresAt', where) };
  const hostname = str(v, 'hostname', where, true);
  if (hostname !== undefined) l.hostname = hostname;
  const clientId = hex(v, 'clientId', where);
  if (clientId !== undefined) l.clientId = clientId;
  const duid = hex(v, 'duid', where);
  if (duid !== undefined) l.duid = duid;
  const iaid = v['iaid'];
  if (iaid !== undefined) {
    if (typeof iaid !== 'number' || !Number.isInteger(iaid) || iaid < 0 || iaid > 0xffffffff) fail(ERR, `${where}: bad iaid`);
    l.iaid = iaid;
  }
  return l;
}

/** Validates the text of a lease file. DecodeError('ERR_LEASES_CORRUPT') on anything unexpected. */
export function parseLeaseFile(text: string): LeaseSnapshot {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    fail(ERR, `lease file is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) fail(ERR, 'lease file is not a JSON object');
  if (doc['version'] !== LEASE_FILE_VERSION) fail(ERR, `lease file version ${String(doc['version'])}, expected ${LEASE_FILE_VERSION}`);
  const nodes = doc['nodes'];
  const leases = doc['leases'];
  if (!Array.isArray(nodes) || !Array.isArray(leases)) fail(ERR, 'lease file lacks "nodes" or "leases"');
  const snap: LeaseSnapshot = { version: LEASE_FILE_VERSION, nodes: nodes.map(parseNode), leases: leases.map(parseLease) };
  try {
    new MemoryLeaseTable(snap.nodes); // duplicate MACs or addresses
  } catch (err) {
    if (err instanceof RangeError) fail(ERR, err.message);
    throw err;
  }
  return snap;
}

/** Reads the lease file; a missing file is an empty table. */
export function loadLeaseFile(path: string): LeaseSnapshot {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: LEASE_FILE_VERSION, nodes: [], leases: [] };
    throw err;
  }
  return parseLeaseFile(text);
}

/** Writes the lease file crash-safely (temp file, fsync, rename). */
export function saveLeaseFile(path: string, snapshot: LeaseSnapshot): void {
  writeFileAtomic(path, JSON.stringify(snapshot, null, 2) + '\n');
}
