// Certificate authority operations: root CA, the AS intermediate CA, node certificates from CSRs,
// and the AS TLS server certificate. All ECDSA P-256 / SHA-256; @peculiar/x509 is used only to build.
import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { CertificateError } from '../util/errors.js';
import { parseCsrSync } from './csr.js';
import { generateKeyPair, keyDers, loadPrivateKey } from './keys.js';
import { toDer, toPem } from './pem.js';
import { SIGNING_ALGORITHM, importWebKeyPair, importWebPublicKey, x509 } from './x509lib.js';

/** A CA certificate (PEM) with its PKCS#8 PEM private key. */
export interface CaMaterial {
  certPem: string;
  keyPem: string;
}

/** A node certificate as issued by the AS. */
export interface IssuedCertificate {
  certDer: Buffer;
  certPem: string;
  serial: string;
  notAfter: Date;
}

export const DEFAULT_ROOT_DAYS = 3650;
export const DEFAULT_INTERMEDIATE_DAYS = 1825;
export const DEFAULT_NODE_DAYS = 90;
export const DEFAULT_SERVER_DAYS = 365;
/** notBefore is backdated by this much to tolerate clock skew between AS and nodes. */
export const BACKDATE_MS = 5 * 60 * 1000;

const DAY_MS = 86_400_000;
const OID_SERIAL_NUMBER_ATTR = '2.5.4.5';
/**
 * Extended key usage that marks the AS's TLS server certificate, and only it (a UUID-based OID, X.667 arc 2.25).
 * Node certificates come from the same intermediate, so a chain to our root proves nothing about being the AS; the
 * AS client requires this purpose on the server's leaf (src/node/as-client.ts). The CA never puts it in a node
 * certificate, and node certificates carry clientAuth only.
 */
export const AS_SERVER_PURPOSE = '2.25.55214434888816276574476640052224114299';

/** True when the certificate (DER) carries the AS server purpose. */
export function hasAsPurpose(certDer: Buffer): boolean {
  try {
    return (new X509Certificate(certDer).keyUsage ?? []).includes(AS_SERVER_PURPOSE);
  } catch {
    return false;
  }
}

type WebKeys = Awaited<ReturnType<typeof importWebKeyPair>>;
type X509Keys = Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0]['keys'];
type X509PublicKey = Parameters<typeof x509.X509CertificateGenerator.create>[0]['publicKey'];
type X509SigningKey = Parameters<typeof x509.X509CertificateGenerator.create>[0] extends infer P
  ? P extends { signingKey: infer K }
    ? K
    : never
  : never;

function params(message: string): CertificateError {
  return new CertificateError(message, 'ERR_CERT_PARAMS');
}

/** A random positive 16-byte serial (top bit clear, second bit set so it always prints as 32 hex digits). */
export function randomSerialHex(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

/** Truncates to whole seconds, which is all X.509 time encodings carry. */
function wholeSeconds(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000);
}

function validity(now: Date, validDays: number, cap?: Date): { notBefore: Date; notAfter: Date } {
  if (!(validDays > 0) || !Number.isFinite(validDays)) throw params(`validDays must be a positive number, got ${validDays}`);
  const t = now.getTime();
  if (Number.isNaN(t)) throw params('invalid "now" date');
  let notAfter = wholeSeconds(t + validDays * DAY_MS);
  if (cap && notAfter.getTime() > cap.getTime()) notAfter = wholeSeconds(cap.getTime());
  return { notBefore: wholeSeconds(t - BACKDATE_MS), notAfter };
}

/** Key identifier: first 160 bits of SHA-256 over the SPKI DER (RFC 7093 style). */
function keyIdHex(spkiDer: Buffer): string {
  return createHash('sha256').update(spkiDer).digest().subarray(0, 20).toString('hex');
}

function checkCommonName(cn: string): void {
  if (typeof cn !== 'string' || cn.length === 0 || cn.length > 64) throw params('commonName must be 1..64 characters');
}

const DNS_NAME = /^(?=.{1,253}$)([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?)(\.[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?)*\.?$/;

function checkDnsName(name: string): void {
  if (typeof name !== 'string' || !DNS_NAME.test(name)) throw params(`invalid DNS name: ${JSON.stringify(name)}`);
}

async function webKeys(privateKeyPem: string): Promise<WebKeys> {
  const { pkcs8, spki } = keyDers(privateKeyPem);
  return importWebKeyPair(pkcs8, spki);
}

/** Loaded signing material of a CA, checked for consistency. */
interface LoadedCa {
  cert: x509.X509Certificate;
  keys: WebKeys;
  keyId: string;
  notAfter: Date;
}

/** Recently used CAs, so that issuing many certificates does not re-parse and re-import the CA each time. */
const caCache = new Map<string, Promise<LoadedCa>>();
const CA_CACHE_SIZE = 4;

function loadCa(ca: CaMaterial): Promise<LoadedCa> {
  const cacheKey = `${ca.certPem}\0${ca.keyPem}`;
  const hit = caCache.get(cacheKey);
  if (hit) return hit;
  const loading = loadCaUncached(ca);
  caCache.set(cacheKey, loading);
  if (caCache.size > CA_CACHE_SIZE) caCache.delete(caCache.keys().next().value!);
  loading.catch(() => caCache.delete(cacheKey));
  return loading;
}

async function loadCaUncached(ca: CaMaterial): Promise<LoadedCa> {
  let der: Buffer;
  let nodeCert: X509Certificate;
  try {
    der = toDer(ca.certPem);
    nodeCert = new X509Certificate(der);
  } catch {
    throw new CertificateError('CA certificate cannot be parsed', 'ERR_CERT_MALFORMED');
  }
  if (!nodeCert.ca) throw new CertificateError('issuer certificate is not a CA', 'ERR_CERT_NOT_CA');
  if (!nodeCert.checkPrivateKey(loadPrivateKey(ca.keyPem))) {
    throw new CertificateError('CA private key does not match the CA certificate', 'ERR_CA_KEY_MISMATCH');
  }
  const cert = new x509.X509Certificate(der);
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const keyId = ski?.keyId ?? keyIdHex(nodeCert.publicKey.export({ format: 'der', type: 'spki' }));
  return { cert, keys: await webKeys(ca.keyPem), keyId, notAfter: cert.notAfter };
}

interface IssueParams {
  subject: x509.JsonName;
  publicKeySpki: Buffer;
  notBefore: Date;
  notAfter: Date;
  extensions: x509.Extension[];
}

async function issue(ca: LoadedCa, p: IssueParams): Promise<Buffer> {
  const publicKey = await importWebPublicKey(p.publicKeySpki);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: p.subject,
    issuer: ca.cert.subjectName,
    notBefore: p.notBefore,
    notAfter: p.notAfter,
    publicKey: publicKey as unknown as X509PublicKey,
    signingKey: ca.keys.privateKey as unknown as X509SigningKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      ...p.extensions,
      new x509.SubjectKeyIdentifierExtension(keyIdHex(p.publicKeySpki)),
      new x509.AuthorityKeyIdentifierExtension(ca.keyId),
    ],
  });
  return Buffer.from(cert.rawData);
}

const CA_USAGES = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;

/** A self-signed root CA (basicConstraints cA, keyCertSign + cRLSign), valid 10 years from `now` by default. */
export async function createRootCa(opts: { commonName: string; validDays?: number; now?: Date }): Promise<CaMaterial> {
  checkCommonName(opts.commonName);
  const { notBefore, notAfter } = validity(opts.now ?? new Date(), opts.validDays ?? DEFAULT_ROOT_DAYS);
  const { privateKeyPem } = await generateKeyPair();
  const keys = await webKeys(privateKeyPem);
  const { spki } = keyDers(privateKeyPem);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: [{ CN: [opts.commonName] }],
    notBefore,
    notAfter,
    keys: keys as unknown as X509Keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(CA_USAGES, true),
      new x509.SubjectKeyIdentifierExtension(keyIdHex(spki)),
    ],
  });
  return { certPem: toPem(Buffer.from(cert.rawData)), keyPem: privateKeyPem };
}

/** An intermediate CA under `root` (pathLen 0: it may only issue end-entity certificates), 5 years by default. */
export async function createIntermediateCa(
  root: CaMaterial,
  opts: { commonName: string; validDays?: number; now?: Date },
): Promise<CaMaterial> {
  checkCommonName(opts.commonName);
  const parent = await loadCa(root);
  const now = opts.now ?? new Date();
  const { notBefore, notAfter } = validity(now, opts.validDays ?? DEFAULT_INTERMEDIATE_DAYS, parent.notAfter);
  const { privateKeyPem } = await generateKeyPair();
  const der = await issue(parent, {
    subject: [{ CN: [opts.commonName] }],
    publicKeySpki: keyDers(privateKeyPem).spki,
    notBefore,
    notAfter,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(CA_USAGES, true)],
  });
  return { certPem: toPem(der), keyPem: privateKeyPem };
}

/**
 * Issues a node certificate for the public key of a verified CSR. The subject is CN=`name` plus
 * serialNumber=`nodeId` (the CSR's own subject is ignored); SAN dNSName=`fqdn` plus an iPAddress per virtual
 * address (`vips`: what the peer checks a Route Direction's addresses against); EKU clientAuth only (a node
 * certificate must never pass as a TLS server, least of all as the AS).
 * notAfter is capped at the CA's own notAfter.
 */
export async function issueNodeCertificate(
  ca: CaMaterial,
  csrDer: Buffer,
  opts: { name: string; fqdn: string; nodeId: number; vips?: string[]; validDays?: number; now?: Date },
): Promise<IssuedCertificate> {
  checkCommonName(opts.name);
  checkDnsName(opts.fqdn);
  const vips = (opts.vips ?? []).filter((v) => v !== '');
  for (const ip of vips) if (isIP(ip) === 0) throw params(`invalid virtual address: ${JSON.stringify(ip)}`);
  if (!Number.isSafeInteger(opts.nodeId) || opts.nodeId < 0) throw params('nodeId must be a non-negative integer');
  const csr = parseCsrSync(csrDer);
  const issuer = await loadCa(ca);
  const { notBefore, notAfter } = validity(opts.now ?? new Date(), opts.validDays ?? DEFAULT_NODE_DAYS, issuer.notAfter);
  const certDer = await issue(issuer, {
    subject: [{ CN: [opts.name] }, { [OID_SERIAL_NUMBER_ATTR]: [String(opts.nodeId)] }],
    publicKeySpki: csr.publicKeySpkiDer,
    notBefore,
    notAfter,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: opts.fqdn }, ...vips.map((value) => ({ type: 'ip' as const, value }))]),
    ],
  });
  const serial = new X509Certificate(certDer).serialNumber.toLowerCase();
  return { certDer, certPem: toPem(certDer), serial, notAfter };
}

/** A TLS server certificate + fresh key for the AS listener (EKU serverAuth + AS_SERVER_PURPOSE, SAN iPAddress/dNSName). */
export async function issueServerCertificate(
  ca: CaMaterial,
  opts: { commonName: string; ipAddresses: string[]; dnsNames: string[]; validDays?: number; now?: Date },
): Promise<{ certPem: string; keyPem: string }> {
  checkCommonName(opts.commonName);
  for (const ip of opts.ipAddresses) if (isIP(ip) === 0) throw params(`invalid IP address: ${JSON.stringify(ip)}`);
  for (const dns of opts.dnsNames) checkDnsName(dns);
  if (opts.ipAddresses.length + opts.dnsNames.length === 0) throw params('server certificate needs at least one SAN');
  const issuer = await loadCa(ca);
  const { notBefore, notAfter } = validity(opts.now ?? new Date(), opts.validDays ?? DEFAULT_SERVER_DAYS, issuer.notAfter);
  const { privateKeyPem } = await generateKeyPair();
  const der = await issue(issuer, {
    subject: [{ CN: [opts.commonName] }],
    publicKeySpki: keyDers(privateKeyPem).spki,
    notBefore,
    notAfter,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, AS_SERVER_PURPOSE]),
      new x509.SubjectAlternativeNameExtension([
        ...opts.dnsNames.map((value) => ({ type: 'dns' as const, value })),
        ...opts.ipAddresses.map((value) => ({ type: 'ip' as const, value })),
      ]),
    ],
  });
  return { certPem: toPem(der), keyPem: privateKeyPem };
}
