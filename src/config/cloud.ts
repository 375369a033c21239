// The cloud's configuration (DIR/cloud.json): one schema, every default in one place, strict loader.
// Written by `cloud init`, read by `cloud start` and the admin commands; see docs/CONFIG.md.

import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { ConfigError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fsx.js';

export interface CloudConfig {
  version: 1;
  /** Overlay domain; nodes are `<name>.<domain>`. */
  domain: string;
  pools: { v4: string; v6: string };
  /** Addresses nodes use to reach this cloud (IPv4 and/or IPv6 literals). */
  advertise: string[];
  ports: { as: number; nms: number; trs: number };
  /** Lifetime of a Common Key handed out at login. */
  commonKeyTtlSec: number;
  /** Lifetime of an enrollment token. */
  tokenTtlSec: number;
  /** Lifetime of a node certificate in days (`cloud init --cert-days`; fractions allowed). Nodes renew at 1/3 left. */
  certValidDays: number;
  /** Keepalive interval asked of nodes behind NAT (keeps the mapping and the push path open). */
  keepaliveNatSec: number;
  /** Keepalive interval asked of reachable nodes (liveness only). */
  keepaliveOpenSec: number;
  /** Store URL: a SQLite file path relative to the dir, or postgres://… */
  db: string;
}

export const CLOUD_DEFAULTS = {
  domain: 'cyphonic.internal',
  pools: { v4: '100.64.0.0/10' },
  ports: { as: 4501, nms: 4502, trs: 4503 },
  commonKeyTtlSec: 24 * 3600, // a day: a stolen Common Key is useful for at most that long
  tokenTtlSec: 24 * 3600, // a day to install a device after `cloud enroll`
  certValidDays: 365, // re-enrollment once a year; revocation covers the rest
  keepaliveNatSec: 5, // UDP NAT mappings commonly expire after 30 s or more; 5 s leaves room for loss
  keepaliveOpenSec: 20, // liveness only: offline after three missed intervals
  db: 'cyphonic.db',
} as const;

export const CLOUD_CONFIG_FILE = 'cloud.json';

const DOMAIN_RE = /^(?=.{1,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

export function validateCloudConfig(raw: unknown): CloudConfig {
  const bad = (why: string): never => {
    throw new ConfigError(`cloud config: ${why}`);
  };
  if (typeof raw !== 'object' || raw === null) return bad('not an object');
  const o = raw as Record<string, unknown>;
  if (o['version'] !== 1) bad('unsupported version');
  const domain = o['domain'];
  if (typeof domain !== 'string' || !DOMAIN_RE.test(domain)) return bad(`invalid domain ${String(domain)}`);
  const pools = o['pools'] as Record<string, unknown> | undefined;
  if (!pools || typeof pools['v4'] !== 'string' || typeof pools['v6'] !== 'string') return bad('pools.v4 and pools.v6 required');
  const advertise = o['advertise'];
  if (!Array.isArray(advertise) || advertise.length === 0 || !advertise.every((a) => typeof a === 'string' && isIP(a) !== 0)) {
    return bad('advertise must list IP addresses');
  }
  const ports = o['ports'] as Record<string, unknown> | undefined;
  const port = (k: string): number => {
    const v = ports?.[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) return bad(`ports.${k} invalid`);
    return v;
  };
  const posInt = (k: string): number => {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) return bad(`${k} must be a positive integer`);
    return v;
  };
  /** A positive number (certificate lifetimes may be fractions of a day: tests use seconds). */
  const posNum = (k: string): number => {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return bad(`${k} must be a positive number`);
    return v;
  };
  const db = o['db'];
  if (typeof db !== 'string' || db.length === 0) return bad('db required');
  return {
    version: 1,
    domain,
    pools: { v4: pools['v4'] as string, v6: pools['v6'] as string },
    advertise: advertise as string[],
    ports: { as: port('as'), nms: port('nms'), trs: port('trs') },
    commonKeyTtlSec: posInt('commonKeyTtlSec'),
    tokenTtlSec: posInt('tokenTtlSec'),
    certValidDays: posNum('certValidDays'),
    keepaliveNatSec: o['keepaliveNatSec'] === undefined ? CLOUD_DEFAULTS.keepaliveNatSec : posInt('keepaliveNatSec'),
    keepaliveOpenSec: o['keepaliveOpenSec'] === undefined ? CLOUD_DEFAULTS.keepaliveOpenSec : posInt('keepaliveOpenSec'),
    db,
  };
}

export function loadCloudConfig(path: string): CloudConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${path}: ${(err as Error).message} (run \`cyphonic cloud init\` first)`, 'ERR_NO_CONFIG');
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${path}: invalid JSON: ${(err as Error).message}`);
  }
  return validateCloudConfig(raw);
}

export function saveCloudConfig(path: string, cfg: CloudConfig): void {
  writeFileAtomic(path, JSON.stringify(cfg, null, 2) + '\n', 0o600);
}
