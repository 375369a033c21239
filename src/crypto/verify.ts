// Certificate chain verification (leaf -> intermediates -> trusted root), plus certificate accessors: fingerprint,
// serial, common name, node id, subjectAltName, PEM/DER conversion. A certificate issued the way cyphonic issues them
// (ECDSA P-256 / SHA-256) is checked on its DER fields (der.ts) with node:crypto's verify; node's X509Certificate
// (OpenSSL's parse) is consulted only for what that does not cover, so a new peer's certificate costs no OpenSSL parse.
import { verify, type KeyObject } from 'node:crypto';
import { formatIp } from '../protocol/ip.js';
import { CertificateError } from '../util/errors.js';
import { KU_KEY_CERT_SIGN, OID_SERIAL_NUMBER_ATTR, commonNameFrom } from './der.js';
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

/**
 * Serial number as node prints it (OpenSSL's BN_bn2hex), lower case: the content octets without leading zero
 * bytes, two hex digits each; "0" for zero. A negative serial (not RFC 5280, never issued here) is left to OpenSSL.
 */
function serialFrom(cert: ParsedCert): string {
  const s = cert.fields.serial;
  if ((s[0]! & 0x80) !== 0) return cert.x509.serialNumber.toLowerCase();
  let k = 0;
  while (k < s.length && s[k] === 0) k++;
  return k === s.length ? '0' : s.toString('hex', k);
}

function describe(cert: ParsedCert): string {
  return JSON.stringify(commonNameFrom(cert.fields.subject));
}

/** AlgorithmIdentifier of ecdsa-with-SHA256 (parameters absent, RFC 5758): the only one cyphonic issues with. */
const ECDSA_SHA256 = Buffer.from('300a06082a8648ce3d040302', 'hex');

/** Issuers' P-256 keys (null: another kind of key, left to OpenSSL), per parsed certificate. */
const P256_KEYS = new WeakMap<ParsedCert, KeyObject | null>();

function p256Key(cert: ParsedCert): KeyObject | null {
  let key = P256_KEYS.get(cert);
  if (key === undefined) {
    try {
      key = cert.publicKey.asymmetricKeyDetails?.namedCurve === 'prime256v1' ? cert.publicKey : null;
    } catch {
      key = null;
    }
    P256_KEYS.set(cert, key);
  }
  return key;
}

/**
 * Whether two Names (encoding, comparable text) are the same name: equal bytes, or equal attribute text in other
 * string types. undefined when a value could not be decoded and the bytes differ (OpenSSL's printed names decide).
 */
function sameName(aDer: Buffer, aKey: string | null, bDer: Buffer, bKey: string | null): boolean | undefined {
  if (aDer.equals(bDer)) return true;
  if (aKey === null || bKey === null) return undefined;
  return aKey === bKey;
}

/**
 * True when `issuer`'s key signed `cert` and the names line up. A certificate signed with ECDSA P-256 / SHA-256
 * (what cyphonic issues) is checked on the DER fields: the signature over the TBSCertificate's bytes, the two
 * algorithm identifiers equal, under the issuer's public key. Anything else is left to OpenSSL (X509_verify).
 */
function signedBy(cert: ParsedCert, issuer: ParsedCert): boolean {
  const c = cert.fields;
  const named = sameName(c.issuerDer, c.issuerKey, issuer.fields.subjectDer, issuer.fields.subjectKey);
  if (named === false) return false;
  if (named === true && c.signatureAlgorithm.equals(ECDSA_SHA256) && c.tbsSignatureAlgorithm.equals(ECDSA_SHA256)) {
    const key = p256Key(issuer);
    if (key) {
      try {
        return verify('sha256', c.tbs, key, c.signature);
      } catch {
        return false;
      }
    }
  }
  try {
    return cert.x509.issuer === issuer.x509.subject && cert.x509.verify(issuer.x509.publicKey);
  } catch {
    return false;
  }
}

/**
 * What OpenSSL's X509_check_issued adds to a signature and matching names (RFC 5280 §4.2.1.1, §4.2.1.3): the
 * certificate's authorityKeyIdentifier, when both sides carry one, names the issuer's subjectKeyIdentifier, and an
 * issuer with keyUsage may sign certificates. An authorityKeyIdentifier by issuer name and serial is left to OpenSSL.
 */
function issuedBy(cert: ParsedCert, issuer: ParsedCert): boolean {
  const c = cert.fields;
  const i = issuer.fields;
  if (c.authorityKeyIdByIssuer) return cert.x509.checkIssued(issuer.x509);
  if (c.authorityKeyId && i.subjectKeyId && !c.authorityKeyId.equals(i.subjectKeyId)) return false;
  return i.keyUsage === undefined || (i.keyUsage & KU_KEY_CERT_SIGN) !== 0;
}

/** A certificate naming itself as its issuer (a root's shape). */
function selfIssued(cert: ParsedCert): boolean {
  const f = cert.fields;
  return sameName(f.subjectDer, f.subjectKey, f.issuerDer, f.issuerKey) ?? cert.x509.subject === cert.x509.issuer;
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
    if (!isRoot && selfIssued(candidate)) continue;
    if (!signedByCached(search, cert, candidate)) continue;
    if (!candidate.fields.basicConstraints?.ca || !candidate.x509.ca || !issuedBy(cert, candidate)) {
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

/**
 * The subjectAltName entries of a certificate, read from its DER: dNSNames (lower case) and iPAddresses (4 or 16
 * bytes, copies: the parsed certificate is shared, so a caller must not be able to change it).
 */
export function subjectAltNamesRaw(cert: CertInput): { dns: string[]; ips: Buffer[] } {
  const san = parseCert(cert).fields.subjectAltName;
  return { dns: san ? san.dns.map((d) => d.toLowerCase()) : [], ips: san ? san.ips.map((b) => Buffer.from(b)) : [] };
}

/** The subjectAltName entries of a certificate: dNSNames (lower case) and iPAddresses (text, as node:net prints them). */
export function subjectAltNames(cert: CertInput): { dns: string[]; ips: string[] } {
  const { dns, ips } = subjectAltNamesRaw(cert);
  return { dns, ips: ips.map((b) => formatIp(b)) };
}

/** Summary of a certificate without verifying it. */
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
