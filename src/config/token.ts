// The enrollment token printed by `cyphonic cloud enroll`: everything a node needs to find and trust the cloud.
// Format: "cyp1." + base64url(JSON {v, name, secret, as: ["host:port"...], ca: sha256-hex of the root CA}).

import { ConfigError } from '../util/errors.js';

export const TOKEN_PREFIX = 'cyp1.';
const MAX_TOKEN_LEN = 4096;

export interface EnrollmentToken {
  /** Node name the token enrolls (the AS binds the certificate to it). */
  name: string;
  /** One-time secret, base64url; the AS stores only its SHA-256. */
  secret: string;
  /** AS endpoints, "198.18.0.10:4501" or "[2001:db8::10]:4501". */
  as: string[];
  /** SHA-256 fingerprint (hex) of the root CA certificate the node must trust. */
  ca: string;
}

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Node names are DNS labels: lowercase letters, digits, inner hyphens, at most 63 characters. */
export function validateNodeName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new ConfigError(`invalid node name ${JSON.stringify(name)}: use a DNS label (a-z, 0-9, '-', 1-63 chars)`, 'ERR_NAME');
  }
  return name;
}

export function encodeToken(t: EnrollmentToken): string {
  const json = JSON.stringify({ v: 1, name: t.name, secret: t.secret, as: t.as, ca: t.ca });
  return TOKEN_PREFIX + Buffer.from(json, 'utf8').toString('base64url');
}

export function decodeToken(s: string): EnrollmentToken {
  const bad = (why: string): never => {
    throw new ConfigError(`malformed enrollment token: ${why}`, 'ERR_TOKEN_MALFORMED');
  };
  const str = s.trim();
  if (str.length > MAX_TOKEN_LEN) bad('too long');
  if (!str.startsWith(TOKEN_PREFIX)) bad(`must start with ${TOKEN_PREFIX}`);
  const b64 = str.slice(TOKEN_PREFIX.length);
  if (!/^[A-Za-z0-9_-]+$/.test(b64)) bad('not base64url');
  let obj: unknown;
  try {
    obj = JSON.parse(Buffer.from(b64, 'base64url').toString('utf8'));
  } catch {
    return bad('not JSON');
  }
  if (typeof obj !== 'object' || obj === null) return bad('not an object');
  const o = obj as Record<string, unknown>;
  if (o['v'] !== 1) bad('unsupported version');
  const name = o['name'];
  const secret = o['secret'];
  const as = o['as'];
  const ca = o['ca'];
  if (typeof name !== 'string') return bad('name missing');
  validateNodeName(name);
  if (typeof secret !== 'string' || !/^[A-Za-z0-9_-]{16,128}$/.test(secret)) return bad('secret missing or malformed');
  if (!Array.isArray(as) || as.length === 0 || as.length > 16 || !as.every((a) => typeof a === 'string' && a.length < 64)) {
    return bad('AS addresses missing');
  }
  if (typeof ca !== 'string' || !/^[0-9a-f]{64}$/.test(ca)) return bad('CA fingerprint missing or malformed');
  return { name, secret, as: as as string[], ca };
}
