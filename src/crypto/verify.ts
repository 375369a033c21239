// Certificate chain verification (leaf -> intermediates -> trusted root) on node's X509Certificate,
// plus certificate accessors: fingerprint, serial, common name, node id, PEM/DER conversion.
import { isIP } from 'node:net';
import { CertificateError } from '../util/errors.js';
import { OID_SERIAL_NUMBER_ATTR, commonNameFrom } from './der.js';
import { sha256Hex } from './hash.js';
import { parseCert, splitPemChain, toDer, toPem, type CertInput, type ParsedCert } from './pem.js';

export { splitPemChain, toDer, toPem, type CertInput, type ParsedCert };

/** Options of verifyChain. */
export interface VerifyOptions {
  /** Verification time (default: now). */
  now?: Date;
  /** Called with the lowercase hex serial of the leaf and of every intermediate on the path. */
  isRevoked?: (serial: string) => boolean;
}

/** What a verified leaf certificate tells its verifier. */
export interface VerifiedCertificate {
  serial: string;
  commonName: string;
  notAfter: Date;
  fingerprint: string;
}

/** Longest accepted path, leaf and anchor included. */
export const MAX_CHAIN_LENGTH = 6;
/** Most intermediates accepted in one call (they may come from an untrusted peer). */
export const MAX_INTERMEDIATES = 8;
/** Most complete candidate paths examined before giving up (bounds work on hostile input). */
const MAX_PATHS = 32;

function certError(code: string, message: string): CertificateError {
  return new CertificateError(message, code);
}

function serialFrom(cert: ParsedCert): string {
  return cert.x509.serialNumber.toLowerCase();
}

function describe(cert: ParsedCert): string {
  return JSON.stringify(commonNameFrom(cert.fields.subject));
}

/** True when `issuer`'s key signed `cert` and the names line up. */
function signedBy(cert: ParsedCert, issuer: ParsedCert): boolean {
  if (cert.x509.issuer !== issuer.x509.subject) return false;
  try {
    return cert.x509.verify(issuer.x509.publicKey);
  } catch {
    return false;
  }
}

interface Search {
  roots: ParsedCert[];
  intermediates: ParsedCert[];
  /** Memoized signedBy(cert, issuer): each pair costs at most one signature check (SIGNED, shared across calls). */
  signed: WeakMap<ParsedCert, Map<ParsedCert, boolean>>;
  /** Set when a signing certificate was found that may not act as a CA. */
  notCa?: string;
}

/**
 * Parsed trust anchors by DER buffer: a node verifies every peer against the same few CA certificates, so they are
 * parsed once, not per peer. Keyed by the Buffer object (long-lived in the caller's TrustAnchors) and re-checked
 * against its bytes on each hit, so a buffer changed in place is parsed again.
 */
const parsedAnchors = new WeakMap<Buffer, ParsedCert>();

function parseAnchor(input: CertInput): ParsedCert {
  if (!Buffer.isBuffer(input)) return parseCert(input);
  const hit = parsedAnchors.get(input);
  if (hit && hit.der.equals(input)) return hit;
  const parsed = parseCert(input);
  parsedAnchors.set(input, parsed);
  return parsed;
}

/**
 * Signature checks already made, per (certificate, issuer) object pair. The result depends only on the two
 * certificates' bytes, which a ParsedCert never changes, so it holds across calls: with anchors parsed once
 * (parseAnchor), an intermediate's signature by the root is checked once per process instead of per peer. Entries
 * go with their certificates (weak keys).
 */
const SIGNED = new WeakMap<ParsedCert, Map<ParsedCert, boolean>>();

function signedByCached(search: Search, cert: ParsedCert, issuer: ParsedCert): boolean {
  let row = search.signed.get(cert);
  if (!row) search.signed.set(cert, (row = new Map()));
  let ok = row.get(issuer);
  if (ok === undefined) row.set(issuer, (ok = signedBy(cert, issuer)));
  return ok;
}

/** Every path from `chain`'s last element up to a root, depth-first. */
function* paths(search: Search, chain: ParsedCert[]): Generator<ParsedCert[]> {
  const cert = chain[chain.length - 1]!;
  const candidates: Array<[ParsedCert, boolean]> = [
    ...search.roots.map((c): [ParsedCert, boolean] => [c, true]),
    ...search.intermediates.map((c): [ParsedCert, boolean] => [c, false]),
  ];
  for (const [candidate, isRoot] of candidates) {
    if (chain.some((c) => c.der.equals(candidate.der))) continue;
    // A self-issued certificate can only ever be a trust anchor, never a useful intermediate.
    if (!isRoot && candidate.x509.subject === candidate.x509.issuer) continue;
    if (!signedByCached(search, cert, candidate)) continue;
    if (!candidate.fields.basicConstraints?.ca || !candidate.x509.ca || !cert.x509.checkIssued(candidate.x509)) {
      search.notCa ??= `certificate ${describe(candidate)} signed ${describe(cert)} but is not a CA`;
      continue;
    }
    const next = [...chain, candidate];
    if (isRoot) yield next;
    else if (next.length < MAX_CHAIN_LENGTH) yield* paths(search, next);
  }
}

/** Validity window, path length and revocation of a signature-checked path; null when it is acceptable. */
function checkPath(path: ParsedCert[], now: number, isRevoked?: (serial: string) => boolean): CertificateError | null {
  for (let k = 1; k < path.length; k++) {
    const pathLen = path[k]!.fields.basicConstraints?.pathLen;
    if (pathLen !== undefined && k - 1 > pathLen) {
      return certError('ERR_CERT_NOT_CA', `CA ${describe(path[k]!)} exceeds its path length constraint`);
    }
  }
  for (const cert of path) {
    if (now < cert.fields.notBefore.getTime()) {
      return certError('ERR_CERT_EXPIRED', `certificate ${describe(cert)} is not valid before ${cert.fields.notBefore.toISOString()}`);
    }
    if (now > cert.fields.notAfter.getTime()) {
      return certError('ERR_CERT_EXPIRED', `certificate ${describe(cert)} expired at ${cert.fields.notAfter.toISOString()}`);
    }
  }
  if (isRevoked) {
    for (const cert of path.slice(0, -1)) {
      if (isRevoked(serialFrom(cert))) return certError('ERR_CERT_REVOKED', `certificate ${describe(cert)} is revoked`);
    }
  }
  return null;
}

function parseAll(inputs: CertInput[], what: string, max = Infinity, parse: (c: CertInput) => ParsedCert = parseCert): ParsedCert[] {
  if (!Array.isArray(inputs)) throw certError('ERR_CERT_MALFORMED', `${what} must be an array`);
  if (inputs.length > max) throw certError('ERR_CERT_MALFORMED', `too many ${what} (${inputs.length} > ${max})`);
  return inputs.map((c) => parse(c));
}

/**
 * Verifies `leaf` up to one of `roots` through any of `intermediates`: issuer names and signatures,
 * issuers being CAs (basicConstraints cA, keyCertSign, pathLen), every certificate's validity
 * window at `now`, and `isRevoked` for the leaf and the intermediates on the path.
 * A leaf that is itself one of `roots` is accepted (after its validity check). At most
 * MAX_INTERMEDIATES intermediates are accepted; the order of `intermediates` and `roots` does not matter.
 * Throws CertificateError with ERR_CERT_MALFORMED / UNTRUSTED / NOT_CA / EXPIRED / REVOKED.
 */
export function verifyChain(
  leaf: CertInput,
  intermediates: CertInput[],
  roots: CertInput[],
  opts: VerifyOptions = {},
): VerifiedCertificate {
  return verifyChainParsed(leaf, intermediates, roots, opts).verified;
}

/** verifyChain, also handing back the parsed leaf (its key, fields) so a caller need not parse it again. */
export function verifyChainParsed(
  leaf: CertInput,
  intermediates: CertInput[],
  roots: CertInput[],
  opts: VerifyOptions = {},
): { verified: VerifiedCertificate; leaf: ParsedCert } {
  const leafCert = parseCert(leaf);
  const search: Search = {
    roots: parseAll(roots, 'roots', Infinity, parseAnchor),
    intermediates: parseAll(intermediates, 'intermediates', MAX_INTERMEDIATES, parseAnchor),
    signed: SIGNED,
  };
  const now = (opts.now ?? new Date()).getTime();
  if (Number.isNaN(now)) throw new TypeError('verifyChain: invalid "now"');
  let firstError: CertificateError | null = null;
  const anchored = search.roots.some((r) => r.der.equals(leafCert.der));
  const found = anchored ? [[leafCert]] : paths(search, [leafCert]);
  let examined = 0;
  for (const path of found) {
    if (++examined > MAX_PATHS) break;
    const error = checkPath(path, now, opts.isRevoked);
    if (!error) {
      const verified = {
        serial: serialFrom(leafCert),
        commonName: commonNameFrom(leafCert.fields.subject),
        notAfter: leafCert.fields.notAfter,
        fingerprint: sha256Hex(leafCert.der),
      };
      return { verified, leaf: leafCert };
    }
    firstError ??= error;
  }
  if (firstError) throw firstError;
  if (search.notCa) throw certError('ERR_CERT_NOT_CA', search.notCa);
  throw certError('ERR_CERT_UNTRUSTED', `no path from ${describe(leafCert)} to a trusted root`);
}

/** SHA-256 of the certificate's DER, lowercase hex (64 characters). */
export function fingerprint(cert: CertInput): string {
  return sha256Hex(toDer(cert));
}

/** Serial number as lowercase hex, exactly node's X509Certificate.serialNumber lowercased. */
export function serialOf(cert: CertInput): string {
  return serialFrom(parseCert(cert));
}

/** The subject's first commonName ('' when there is none). */
export function commonNameOf(cert: CertInput): string {
  return commonNameFrom(parseCert(cert).fields.subject);
}

/** The node id that issueNodeCertificate put in the subject (serialNumber attribute), if any. */
export function nodeIdOf(cert: CertInput): number | undefined {
  return nodeIdOfParsed(parseCert(cert));
}

/** nodeIdOf for a certificate already parsed. */
export function nodeIdOfParsed(cert: ParsedCert): number | undefined {
  const attr = cert.fields.subject.find(([oid]) => oid === OID_SERIAL_NUMBER_ATTR);
  if (!attr || !/^(0|[1-9]\d{0,15})$/.test(attr[1])) return undefined;
  const id = Number(attr[1]);
  return Number.isSafeInteger(id) ? id : undefined;
}

/** Summary of a certificate without verifying it. */
/** The subjectAltName entries of a certificate: dNSNames (lower case) and iPAddresses (canonical text). */
export function subjectAltNames(cert: CertInput): { dns: string[]; ips: string[] } {
  const text = parseCert(cert).x509.subjectAltName ?? '';
  const dns: string[] = [];
  const ips: string[] = [];
  for (const part of text.split(', ')) {
    if (part.startsWith('DNS:')) dns.push(part.slice(4).toLowerCase());
    else if (part.startsWith('IP Address:')) ips.push(canonicalIp(part.slice(11)));
  }
  return { dns, ips };
}

/** One textual form per address (node prints IPv6 SANs uncompressed and upper case). */
function canonicalIp(text: string): string {
  if (isIP(text) !== 6) return text;
  try {
    return new URL(`http://[${text}]/`).hostname.slice(1, -1);
  } catch {
    return text.toLowerCase();
  }
}

export function certInfo(cert: CertInput): {
  serial: string;
  commonName: string;
  nodeId: number | undefined;
  notBefore: Date;
  notAfter: Date;
  isCa: boolean;
  fingerprint: string;
} {
  const parsed = parseCert(cert);
  return {
    serial: serialFrom(parsed),
    commonName: commonNameFrom(parsed.fields.subject),
    nodeId: nodeIdOf(parsed.der),
    notBefore: parsed.fields.notBefore,
    notAfter: parsed.fields.notAfter,
    isCa: parsed.fields.basicConstraints?.ca === true,
    fingerprint: sha256Hex(parsed.der),
  };
}
