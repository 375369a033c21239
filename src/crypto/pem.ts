// Certificate encodings: PEM <-> DER, PEM chain splitting, and parsing (DER fields first; node's X509Certificate on demand).
// Inputs are `string | Buffer`: a string (or a Buffer of text) starting with '-----BEGIN' is PEM, other Buffers are DER.
import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { CertificateError } from '../util/errors.js';
import { DerError, parseCertFields, type CertFields } from './der.js';

/** Any certificate input accepted by src/crypto. */
export type CertInput = string | Buffer;

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
const BASE64_BODY = /^[A-Za-z0-9+/]*={0,2}$/;
const BEGIN = '-----BEGIN';
const MAX_CERT_BYTES = 64 * 1024;

function malformed(message: string): CertificateError {
  return new CertificateError(message, 'ERR_CERT_MALFORMED');
}

/** All PEM blocks of `text` with the given label, decoded to DER. */
export function pemBlocks(text: string, label: string): Buffer[] {
  const out: Buffer[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    if (m[1] !== label) continue;
    const body = (m[2] ?? '').replace(/\s+/g, '');
    if (body.length % 4 !== 0 || !BASE64_BODY.test(body)) throw malformed(`invalid base64 in PEM ${label} block`);
    out.push(Buffer.from(body, 'base64'));
  }
  return out;
}

function startsWithPem(input: Buffer): boolean {
  let i = 0;
  while (i < input.length && (input[i] === 0x20 || input[i] === 0x0a || input[i] === 0x0d || input[i] === 0x09)) i++;
  return input.subarray(i, i + BEGIN.length).toString('latin1') === BEGIN;
}

/** DER bytes of a certificate given as PEM (first CERTIFICATE block) or DER. */
export function toDer(cert: CertInput): Buffer {
  let text: string;
  if (typeof cert === 'string') {
    text = cert;
    if (!text.trimStart().startsWith(BEGIN)) throw malformed('certificate string is not PEM');
  } else if (Buffer.isBuffer(cert)) {
    if (!startsWithPem(cert)) return cert;
    text = cert.toString('latin1');
  } else {
    throw malformed('certificate must be a PEM string or a DER Buffer');
  }
  const first = pemBlocks(text, 'CERTIFICATE')[0];
  if (!first) throw malformed('no CERTIFICATE block in PEM');
  return first;
}

/** PEM text (64-column base64, trailing newline) of DER certificate bytes. */
export function toPem(der: Buffer, label = 'CERTIFICATE'): string {
  const b64 = der.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Splits a PEM bundle into one normalized PEM string per CERTIFICATE block (other blocks are ignored). */
export function splitPemChain(pem: string): string[] {
  return pemBlocks(pem, 'CERTIFICATE').map((der) => toPem(der));
}

/**
 * A certificate parsed once: the DER fields verification reads (der.ts), its public key, and node's
 * X509Certificate, which is built only when something asks for it (OpenSSL's parse of a new certificate costs
 * 0.35–0.8 ms here, and checking a peer's certificate needs none of it: verify.ts reads `fields`).
 */
export interface ParsedCert {
  readonly der: Buffer;
  /** node's view, parsed on first use; a certificate OpenSSL cannot read throws CertificateError(ERR_CERT_MALFORMED). */
  readonly x509: X509Certificate;
  readonly fields: Readonly<CertFields>;
  /** The subject public key (from the SubjectPublicKeyInfo), made on first use; throws like x509. */
  readonly publicKey: KeyObject;
  /** Whether x509 has been built (for tests: checking a peer's certificate should not need it). */
  readonly x509Built: boolean;
}

/** The SubjectPublicKeyInfo prefix of an uncompressed P-256 key (id-ecPublicKey, prime256v1, BIT STRING 0x04…). */
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');

/**
 * A public key from its SubjectPublicKeyInfo. An uncompressed P-256 key (all cyphonic issues) is imported from its
 * coordinates (JWK): OpenSSL 3's DER decoder costs about twice as much (~140 against ~70 µs here). Either way OpenSSL
 * checks that the point is on the curve.
 */
function importSpki(spki: Buffer): KeyObject {
  if (spki.length === P256_SPKI_PREFIX.length + 65 && spki.subarray(0, P256_SPKI_PREFIX.length).equals(P256_SPKI_PREFIX) && spki[P256_SPKI_PREFIX.length] === 0x04) {
    const at = P256_SPKI_PREFIX.length + 1;
    return createPublicKey({
      key: { kty: 'EC', crv: 'P-256', x: spki.toString('base64url', at, at + 32), y: spki.toString('base64url', at + 32, at + 64) },
      format: 'jwk',
    });
  }
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

class Parsed implements ParsedCert {
  #x509: X509Certificate | null = null;
  #key: KeyObject | null = null;
  constructor(
    readonly der: Buffer,
    readonly fields: Readonly<CertFields>,
  ) {}

  get x509(): X509Certificate {
    if (!this.#x509) {
      try {
        this.#x509 = new X509Certificate(this.der);
      } catch (err) {
        throw malformed(`certificate cannot be parsed: ${(err as Error).message}`);
      }
    }
    return this.#x509;
  }

  get publicKey(): KeyObject {
    if (!this.#key) {
      try {
        this.#key = importSpki(this.fields.spki);
      } catch (err) {
        throw malformed(`certificate public key cannot be read: ${(err as Error).message}`);
      }
    }
    return this.#key;
  }

  get x509Built(): boolean {
    return this.#x509 !== null;
  }
}

/**
 * Tunable: certificates kept parsed, by their exact DER bytes (least recently used goes first). A new peer's
 * certificate is read three or four times on its way to a tunnel (Route Direction check, its names, the handshake,
 * the session's serial).
 */
const PARSED_MAX = 512;
const parsed = new Map<string, ParsedCert>();

/**
 * Parses a certificate's DER structure (der.ts); any failure is CertificateError('ERR_CERT_MALFORMED'). The same
 * bytes parsed before give the same (shared, read-only) object; only what parsed is remembered.
 */
export function parseCert(cert: CertInput): ParsedCert {
  const input = toDer(cert);
  if (input.length === 0 || input.length > MAX_CERT_BYTES) throw malformed('certificate has an invalid size');
  const key = input.toString('base64');
  const hit = parsed.get(key);
  if (hit) {
    parsed.delete(key);
    parsed.set(key, hit);
    return hit;
  }
  const der = Buffer.from(input); // ours: the caller's buffer may be reused (a receive buffer)
  let fields: CertFields;
  try {
    fields = parseCertFields(der);
  } catch (err) {
    if (err instanceof DerError) throw malformed(`certificate DER is invalid: ${err.message}`);
    throw err;
  }
  const out = new Parsed(der, fields);
  if (parsed.size >= PARSED_MAX) parsed.delete(parsed.keys().next().value as string);
  parsed.set(key, out);
  return out;
}
