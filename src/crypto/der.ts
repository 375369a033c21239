// Minimal strict DER reader for the few X.509 / PKCS#10 fields node:crypto does not expose.
// Every malformed input throws DerError; callers translate it into their own CertificateError code.

/** Thrown by this module on any structurally invalid input; never escapes src/crypto. */
export class DerError extends Error {}

export const TAG_BOOLEAN = 0x01;
export const TAG_INTEGER = 0x02;
export const TAG_BIT_STRING = 0x03;
export const TAG_OCTET_STRING = 0x04;
export const TAG_NULL = 0x05;
export const TAG_OID = 0x06;
export const TAG_UTF8 = 0x0c;
export const TAG_PRINTABLE = 0x13;
export const TAG_T61 = 0x14;
export const TAG_IA5 = 0x16;
export const TAG_UTC_TIME = 0x17;
export const TAG_GENERALIZED_TIME = 0x18;
export const TAG_BMP = 0x1e;
export const TAG_SEQUENCE = 0x30;
export const TAG_SET = 0x31;

/** One TLV: `tag`, the whole encoding `buf[start, end)`, the value `buf[valueStart, end)`. */
export interface Tlv {
  tag: number;
  start: number;
  valueStart: number;
  end: number;
}

const MAX_LENGTH_BYTES = 4;

/** Reads one TLV at `offset`, bounded by `limit` (defaults to the buffer's end). */
export function readTlv(buf: Buffer, offset: number, limit = buf.length): Tlv {
  if (offset + 2 > limit) throw new DerError('truncated header');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers unsupported');
  const first = buf[offset + 1]!;
  let pos = offset + 2;
  let length: number;
  if (first < 0x80) {
    length = first;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw new DerError('indefinite length');
    if (n > MAX_LENGTH_BYTES) throw new DerError('length too large');
    if (pos + n > limit) throw new DerError('truncated length');
    if (buf[pos] === 0) throw new DerError('non-minimal length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[pos + i]!;
    if (length < 0x80) throw new DerError('non-minimal length');
    pos += n;
  }
  const end = pos + length;
  if (end > limit) throw new DerError('truncated value');
  return { tag, start: offset, valueStart: pos, end };
}

/** Reads a TLV and insists on its tag. */
export function expectTlv(buf: Buffer, offset: number, tag: number, limit = buf.length): Tlv {
  const tlv = readTlv(buf, offset, limit);
  if (tlv.tag !== tag) throw new DerError(`expected tag 0x${tag.toString(16)}, got 0x${tlv.tag.toString(16)}`);
  return tlv;
}

/** All direct children of a constructed TLV. */
export function children(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let pos = parent.valueStart;
  while (pos < parent.end) {
    const child = readTlv(buf, pos, parent.end);
    out.push(child);
    pos = child.end;
  }
  return out;
}

/** The value bytes of a TLV. */
export function valueOf(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.valueStart, tlv.end);
}

/** The whole encoding (header + value) of a TLV. */
export function encodingOf(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.start, tlv.end);
}

/** Decodes an OBJECT IDENTIFIER value into dotted form. */
export function decodeOid(value: Buffer): string {
  if (value.length === 0) throw new DerError('empty OID');
  const arcs: number[] = [];
  let acc = 0;
  let started = false;
  for (const byte of value) {
    if (!started && byte === 0x80) throw new DerError('non-minimal OID arc');
    started = true;
    acc = acc * 128 + (byte & 0x7f);
    if (acc > Number.MAX_SAFE_INTEGER) throw new DerError('OID arc too large');
    if ((byte & 0x80) === 0) {
      arcs.push(acc);
      acc = 0;
      started = false;
    }
  }
  if (started) throw new DerError('truncated OID');
  const first = arcs[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join('.');
}

/** Decodes the directory string types used in names. */
export function decodeString(buf: Buffer, tlv: Tlv): string {
  const value = valueOf(buf, tlv);
  switch (tlv.tag) {
    case TAG_UTF8:
      return new TextDecoder('utf-8', { fatal: true }).decode(value);
    case TAG_PRINTABLE:
    case TAG_IA5:
    case TAG_T61:
      return value.toString('latin1');
    case TAG_BMP: {
      if (value.length % 2 !== 0) throw new DerError('odd BMPString');
      const swapped = Buffer.from(value);
      swapped.swap16();
      return swapped.toString('utf16le');
    }
    default:
      throw new DerError(`unsupported string tag 0x${tlv.tag.toString(16)}`);
  }
}

/**
 * A Name's attributes in order, as [oid, value] (values in string types we do not read are skipped), and its
 * comparable text: each attribute as `oid=json(value)`, RDNs in order, or null when a value could not be decoded.
 */
function readName(buf: Buffer, name: Tlv): { attrs: Array<[string, string]>; key: string | null } {
  if (name.tag !== TAG_SEQUENCE) throw new DerError('Name is not a SEQUENCE');
  const attrs: Array<[string, string]> = [];
  let key: string | null = '';
  for (const rdn of children(buf, name)) {
    if (rdn.tag !== TAG_SET) throw new DerError('RDN is not a SET');
    if (key !== null) key += '/';
    for (const atv of children(buf, rdn)) {
      if (atv.tag !== TAG_SEQUENCE) throw new DerError('AttributeTypeAndValue is not a SEQUENCE');
      const parts = children(buf, atv);
      if (parts.length !== 2 || parts[0]!.tag !== TAG_OID) throw new DerError('bad AttributeTypeAndValue');
      const oid = decodeOid(valueOf(buf, parts[0]!));
      let text: string;
      try {
        text = decodeString(buf, parts[1]!);
      } catch {
        key = null; // a string type (or bytes) we do not read: such names are compared by OpenSSL
        continue;
      }
      attrs.push([oid, text]);
      if (key !== null) key += `${oid}=${JSON.stringify(text)};`;
    }
  }
  return { attrs, key };
}

/** Name attributes in order, as [oid, value]. Unknown string encodings are skipped. */
export function decodeName(buf: Buffer, name: Tlv): Array<[string, string]> {
  return readName(buf, name).attrs;
}

export const OID_CN = '2.5.4.3';
export const OID_SERIAL_NUMBER_ATTR = '2.5.4.5';
export const OID_BASIC_CONSTRAINTS = '2.5.29.19';
export const OID_ECDSA_SHA256 = '1.2.840.10045.4.3.2';

/** Decodes UTCTime / GeneralizedTime in the restricted "Z" DER forms of RFC 5280. */
export function decodeTime(buf: Buffer, tlv: Tlv): Date {
  const text = valueOf(buf, tlv).toString('latin1');
  let m: RegExpExecArray | null;
  let year: number;
  if (tlv.tag === TAG_UTC_TIME) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (!m) throw new DerError('bad UTCTime');
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (tlv.tag === TAG_GENERALIZED_TIME) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (!m) throw new DerError('bad GeneralizedTime');
    year = Number(m[1]);
  } else {
    throw new DerError('bad time tag');
  }
  const ms = Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  if (Number.isNaN(ms)) throw new DerError('bad time');
  return new Date(ms);
}

export const OID_KEY_USAGE = '2.5.29.15';
export const OID_SUBJECT_ALT_NAME = '2.5.29.17';
export const OID_SUBJECT_KEY_ID = '2.5.29.14';
export const OID_AUTHORITY_KEY_ID = '2.5.29.35';

/** keyUsage bit of keyCertSign (RFC 5280 §4.2.1.3: bit 5). */
export const KU_KEY_CERT_SIGN = 1 << 5;

/**
 * Fields of a certificate that verification needs, read from its DER, so that checking a new peer's certificate
 * needs no OpenSSL parse of it (node's X509Certificate costs 0.35–0.8 ms per new certificate here). Buffers are views
 * into the parsed DER.
 */
export interface CertFields {
  subject: Array<[string, string]>;
  notBefore: Date;
  notAfter: Date;
  /** basicConstraints: undefined when the extension is absent. */
  basicConstraints?: { ca: boolean; pathLen?: number };
  /** The TBSCertificate's whole encoding: the bytes the issuer signed. */
  tbs: Buffer;
  /** The serialNumber INTEGER's content octets (two's complement, as encoded). */
  serial: Buffer;
  /** Encodings of the issuer and subject Names. */
  issuerDer: Buffer;
  subjectDer: Buffer;
  /** The issuer and subject Names as comparable text (one line per attribute, in order), or null when an attribute's value cannot be decoded. */
  issuerKey: string | null;
  subjectKey: string | null;
  /** The AlgorithmIdentifier inside the TBSCertificate and the one beside the signature (they must be equal). */
  tbsSignatureAlgorithm: Buffer;
  signatureAlgorithm: Buffer;
  /** The signature BIT STRING's bits (it must have no unused bits). */
  signature: Buffer;
  /** The SubjectPublicKeyInfo's encoding. */
  spki: Buffer;
  /** keyUsage bits (bit n of RFC 5280 §4.2.1.3 as 1 << n); undefined when the extension is absent. */
  keyUsage?: number;
  /** subjectKeyIdentifier, and authorityKeyIdentifier's keyIdentifier; undefined when absent. */
  subjectKeyId?: Buffer;
  authorityKeyId?: Buffer;
  /** True when authorityKeyIdentifier also names the issuer's issuer and serial (verification then asks OpenSSL). */
  authorityKeyIdByIssuer?: boolean;
  /** subjectAltName's dNSNames (as written) and iPAddresses (4 or 16 bytes); undefined when absent. */
  subjectAltName?: { dns: string[]; ips: Buffer[] };
}

/** A BIT STRING's bits, insisting that none are unused (signatures, keys). */
function wholeBits(buf: Buffer, tlv: Tlv): Buffer {
  if (tlv.tag !== TAG_BIT_STRING) throw new DerError('expected a BIT STRING');
  const v = valueOf(buf, tlv);
  if (v.length < 1 || v[0] !== 0) throw new DerError('BIT STRING with unused bits');
  return v.subarray(1);
}

/** keyUsage: a BIT STRING of at most 16 named bits, bit 0 first. */
function decodeKeyUsage(buf: Buffer, valueTlv: Tlv): number {
  const bs = expectTlv(buf, valueTlv.valueStart, TAG_BIT_STRING, valueTlv.end);
  if (bs.end !== valueTlv.end) throw new DerError('trailing data in keyUsage');
  const v = valueOf(buf, bs);
  if (v.length < 2 || v.length > 3 || v[0]! > 7) throw new DerError('bad keyUsage');
  let bits = 0;
  for (let n = 0; n < (v.length - 1) * 8; n++) if (v[1 + (n >> 3)]! & (0x80 >> (n & 7))) bits |= 1 << n;
  return bits;
}

/** subjectAltName: dNSName [2] (IA5, ASCII) and iPAddress [7] (4 or 16 bytes); other name forms are skipped. */
function decodeSubjectAltName(buf: Buffer, valueTlv: Tlv): { dns: string[]; ips: Buffer[] } {
  const seq = expectTlv(buf, valueTlv.valueStart, TAG_SEQUENCE, valueTlv.end);
  if (seq.end !== valueTlv.end) throw new DerError('trailing data in subjectAltName');
  const names = children(buf, seq);
  if (names.length === 0) throw new DerError('empty subjectAltName');
  const out = { dns: [] as string[], ips: [] as Buffer[] };
  for (const gn of names) {
    const v = valueOf(buf, gn);
    if (gn.tag === 0x82) {
      for (const b of v) if (b < 0x20 || b > 0x7e) throw new DerError('dNSName is not printable ASCII');
      out.dns.push(v.toString('latin1'));
    } else if (gn.tag === 0x87) {
      if (v.length !== 4 && v.length !== 16) throw new DerError('iPAddress is neither 4 nor 16 bytes');
      out.ips.push(v);
    }
  }
  return out;
}

/** authorityKeyIdentifier: SEQUENCE { [0] keyIdentifier, [1] authorityCertIssuer, [2] authorityCertSerialNumber }. */
function decodeAuthorityKeyId(buf: Buffer, valueTlv: Tlv): { keyId?: Buffer; byIssuer: boolean } {
  const seq = expectTlv(buf, valueTlv.valueStart, TAG_SEQUENCE, valueTlv.end);
  if (seq.end !== valueTlv.end) throw new DerError('trailing data in authorityKeyIdentifier');
  let keyId: Buffer | undefined;
  let byIssuer = false;
  let last = -1;
  for (const part of children(buf, seq)) {
    const n = part.tag === 0x80 ? 0 : part.tag === 0xa1 ? 1 : part.tag === 0x82 ? 2 : -1;
    if (n <= last) throw new DerError('bad authorityKeyIdentifier');
    last = n;
    if (n === 0) keyId = valueOf(buf, part);
    else byIssuer = true;
  }
  return keyId === undefined ? { byIssuer } : { keyId, byIssuer };
}

/** Parses the outer structure of a DER certificate; the whole buffer must be one Certificate. */
export function parseCertFields(der: Buffer): CertFields {
  const cert = expectTlv(der, 0, TAG_SEQUENCE);
  if (cert.end !== der.length) throw new DerError('trailing data after certificate');
  const top = children(der, cert);
  if (top.length !== 3 || top[0]!.tag !== TAG_SEQUENCE || top[1]!.tag !== TAG_SEQUENCE) throw new DerError('bad Certificate');
  const tbs = children(der, top[0]!);
  let i = 0;
  if (tbs[i]?.tag === 0xa0) i++; // [0] EXPLICIT version
  const serial = tbs[i++];
  const sigAlg = tbs[i++];
  const issuer = tbs[i++];
  const validity = tbs[i++];
  const subject = tbs[i++];
  const spki = tbs[i++];
  if (!serial || !sigAlg || !issuer || !validity || !subject || !spki) throw new DerError('truncated TBSCertificate');
  if (serial.tag !== TAG_INTEGER || serial.end === serial.valueStart || sigAlg.tag !== TAG_SEQUENCE || validity.tag !== TAG_SEQUENCE) throw new DerError('bad TBSCertificate');
  if (issuer.tag !== TAG_SEQUENCE || spki.tag !== TAG_SEQUENCE) throw new DerError('bad TBSCertificate');
  const times = children(der, validity);
  if (times.length !== 2) throw new DerError('bad Validity');
  const subjectName = readName(der, subject);
  const fields: CertFields = {
    subject: subjectName.attrs,
    notBefore: decodeTime(der, times[0]!),
    notAfter: decodeTime(der, times[1]!),
    tbs: encodingOf(der, top[0]!),
    serial: valueOf(der, serial),
    issuerDer: encodingOf(der, issuer),
    subjectDer: encodingOf(der, subject),
    issuerKey: readName(der, issuer).key,
    subjectKey: subjectName.key,
    tbsSignatureAlgorithm: encodingOf(der, sigAlg),
    signatureAlgorithm: encodingOf(der, top[1]!),
    signature: wholeBits(der, top[2]!),
    spki: encodingOf(der, spki),
  };
  const seen = new Set<string>();
  for (; i < tbs.length; i++) {
    const t = tbs[i]!;
    if (t.tag !== 0xa3) continue; // [1]/[2] unique IDs
    const extSeq = expectTlv(der, t.valueStart, TAG_SEQUENCE, t.end);
    for (const ext of children(der, extSeq)) {
      const parts = children(der, ext);
      const oidTlv = parts[0];
      const valueTlv = parts[parts.length - 1];
      if (!oidTlv || oidTlv.tag !== TAG_OID || !valueTlv || valueTlv.tag !== TAG_OCTET_STRING) {
        throw new DerError('bad Extension');
      }
      const oid = decodeOid(valueOf(der, oidTlv));
      // RFC 5280 §4.2: one instance of an extension per certificate. A second copy of one we read is refused,
      // rather than deciding which of the two counts.
      if (seen.has(oid)) throw new DerError(`extension ${oid} appears twice`);
      seen.add(oid);
      if (oid === OID_KEY_USAGE) fields.keyUsage = decodeKeyUsage(der, valueTlv);
      else if (oid === OID_SUBJECT_ALT_NAME) fields.subjectAltName = decodeSubjectAltName(der, valueTlv);
      else if (oid === OID_SUBJECT_KEY_ID) {
        const id = expectTlv(der, valueTlv.valueStart, TAG_OCTET_STRING, valueTlv.end);
        if (id.end !== valueTlv.end) throw new DerError('trailing data in subjectKeyIdentifier');
        fields.subjectKeyId = valueOf(der, id);
      } else if (oid === OID_AUTHORITY_KEY_ID) {
        const akid = decodeAuthorityKeyId(der, valueTlv);
        if (akid.keyId) fields.authorityKeyId = akid.keyId;
        if (akid.byIssuer) fields.authorityKeyIdByIssuer = true;
      } else if (oid === OID_BASIC_CONSTRAINTS) {
        const bc = expectTlv(der, valueTlv.valueStart, TAG_SEQUENCE, valueTlv.end);
        let ca = false;
        let pathLen: number | undefined;
        for (const item of children(der, bc)) {
          if (item.tag === TAG_BOOLEAN) {
            ca = valueOf(der, item)[0] === 0xff;
          } else if (item.tag === TAG_INTEGER) {
            const v = valueOf(der, item);
            if (v.length === 0 || v.length > 4 || (v[0]! & 0x80) !== 0) throw new DerError('bad pathLenConstraint');
            pathLen = v.readUIntBE(0, v.length);
          }
        }
        fields.basicConstraints = pathLen === undefined ? { ca } : { ca, pathLen };
      }
    }
  }
  return fields;
}

/** First commonName of a decoded Name, or '' when there is none. */
export function commonNameFrom(attrs: Array<[string, string]>): string {
  return attrs.find(([oid]) => oid === OID_CN)?.[1] ?? '';
}
