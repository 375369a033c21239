// CIDR arithmetic for the virtual address pools: parse prefixes, map offsets to addresses and back.
// Pure functions over bigint; IPv6 text is printed the way node:net prints socket addresses.

import { randomBytes } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { ConfigError } from '../../util/errors.js';

/** A parsed prefix: `network` is the first address as an integer, `size` the number of addresses. */
export interface Cidr {
  family: 4 | 6;
  network: bigint;
  prefix: number;
  size: bigint;
}

const V4_BITS = 32;
const V6_BITS = 128;

/** Parses dotted-quad IPv4 text into an integer, or null if it is not strict IPv4. */
function parseV4(s: string): bigint | null {
  if (!isIPv4(s)) return null;
  let out = 0n;
  for (const part of s.split('.')) out = (out << 8n) | BigInt(Number(part));
  return out;
}

/** Parses IPv6 text (with `::` and an optional trailing dotted quad) into an integer, or null. */
function parseV6(s: string): bigint | null {
  if (s.includes('%') || !isIPv6(s)) return null;
  let text = s;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    const v4 = parseV4(last);
    if (v4 === null) return null;
    tail.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
    text = text.slice(0, lastColon + 1);
    // "::1.2.3.4" leaves "::", "64:ff9b::1.2.3.4" leaves "64:ff9b::", "1:2:3:4:5:6:1.2.3.4" leaves "1:...:6:".
    if (text.endsWith(':') && !text.endsWith('::')) text = text.slice(0, -1);
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const toWords = (h: string | undefined): number[] =>
    h === undefined || h === '' ? [] : h.split(':').map((w) => parseInt(w, 16));
  const head = toWords(halves[0]);
  const rest = toWords(halves[1]);
  let words: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - rest.length - tail.length;
    if (missing < 1) return null;
    words = [...head, ...new Array<number>(missing).fill(0), ...rest, ...tail];
  } else {
    words = [...head, ...tail];
  }
  if (words.length !== 8 || words.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffff)) return null;
  let out = 0n;
  for (const w of words) out = (out << 16n) | BigInt(w);
  return out;
}

/** Parses an address of either family; null when it is neither. */
function parseAddress(s: string): { family: 4 | 6; value: bigint } | null {
  const v4 = parseV4(s);
  if (v4 !== null) return { family: 4, value: v4 };
  const v6 = parseV6(s);
  if (v6 !== null) return { family: 6, value: v6 };
  return null;
}

function formatV4(value: bigint): string {
  const parts: number[] = [];
  for (let shift = 24n; shift >= 0n; shift -= 8n) parts.push(Number((value >> shift) & 0xffn));
  return parts.join('.');
}

/** Formats like inet_ntop (libuv): longest zero run of 2+ words compressed, lowercase, v4 tail for ::a.b.c.d and ::ffff:a.b.c.d. */
function formatV6(value: bigint): string {
  const words: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) words.push(Number((value >> shift) & 0xffffn));
  let bestBase = -1;
  let bestLen = 0;
  let curBase = -1;
  let curLen = 0;
  for (let i = 0; i <= 8; i++) {
    if (i < 8 && words[i] === 0) {
      if (curBase === -1) {
        curBase = i;
        curLen = 1;
      } else {
        curLen++;
      }
    } else if (curBase !== -1) {
      if (curLen > bestLen) {
        bestBase = curBase;
        bestLen = curLen;
      }
      curBase = -1;
    }
  }
  if (bestLen < 2) bestBase = -1;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase !== -1 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) out += ':';
      continue;
    }
    if (i !== 0) out += ':';
    if (i === 6 && bestBase === 0 && (bestLen === 6 || (bestLen === 5 && words[5] === 0xffff))) {
      return out + formatV4(value & 0xffffffffn);
    }
    out += words[i]!.toString(16);
  }
  if (bestBase !== -1 && bestBase + bestLen === 8) out += ':';
  return out;
}

function formatAddress(family: 4 | 6, value: bigint): string {
  return family === 4 ? formatV4(value) : formatV6(value);
}

/**
 * Parses "a.b.c.d/n" or "x:y::/n". Host bits must be zero: "10.0.0.1/24" is rejected rather
 * than silently normalised, because a typo in a pool definition should not move the pool.
 */
export function parseCidr(s: string): Cidr {
  if (typeof s !== 'string') throw new ConfigError('CIDR must be a string');
  const slash = s.indexOf('/');
  if (slash < 0) throw new ConfigError(`invalid CIDR "${s}": missing /prefix`);
  const addrText = s.slice(0, slash);
  const prefixText = s.slice(slash + 1);
  const addr = parseAddress(addrText);
  if (addr === null) throw new ConfigError(`invalid CIDR "${s}": "${addrText}" is not an IPv4 or IPv6 address`);
  const bits = addr.family === 4 ? V4_BITS : V6_BITS;
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > bits) {
    throw new ConfigError(`invalid CIDR "${s}": prefix length must be an integer 0..${bits}`);
  }
  const prefix = Number(prefixText);
  const hostBits = BigInt(bits - prefix);
  const size = 1n << hostBits;
  if ((addr.value & (size - 1n)) !== 0n) {
    const network = addr.value & ~(size - 1n);
    throw new ConfigError(
      `invalid CIDR "${s}": host bits are set (did you mean ${formatAddress(addr.family, network)}/${prefix}?)`,
    );
  }
  return { family: addr.family, network: addr.value, prefix, size };
}

function toCidr(cidr: string | Cidr): Cidr {
  return typeof cidr === 'string' ? parseCidr(cidr) : cidr;
}

/** Canonical text of the prefix, e.g. "fd12:3456:789a::/48". */
export function formatCidr(cidr: string | Cidr): string {
  const c = toCidr(cidr);
  return `${formatAddress(c.family, c.network)}/${c.prefix}`;
}

/** The address `offset` positions into the prefix; ConfigError when the offset is outside it. */
export function addressAt(cidr: string | Cidr, offset: bigint): string {
  const c = toCidr(cidr);
  if (typeof offset !== 'bigint' || offset < 0n || offset >= c.size) {
    throw new ConfigError(`offset ${String(offset)} is outside ${formatCidr(c)} (size ${c.size})`);
  }
  return formatAddress(c.family, c.network + offset);
}

/** Position of `address` inside the prefix, or null if it is outside, of the other family, or not an address. */
export function offsetOf(cidr: string | Cidr, address: string): bigint | null {
  const c = toCidr(cidr);
  const a = parseAddress(address);
  if (a === null || a.family !== c.family) return null;
  const offset = a.value - c.network;
  return offset >= 0n && offset < c.size ? offset : null;
}

/** True when `address` lies inside the prefix. */
export function contains(cidr: string | Cidr, address: string): boolean {
  return offsetOf(cidr, address) !== null;
}

/** Canonical text of an address (IPv6 compressed, lowercase), or null if it is not an IP address. */
export function normalizeAddress(address: string): string | null {
  const a = parseAddress(address);
  return a === null ? null : formatAddress(a.family, a.value);
}

/** A fresh RFC 4193 unique local /48: "fd" followed by 40 random bits. */
export function randomUlaPrefix48(): string {
  const global = randomBytes(5);
  let network = 0xfdn;
  for (const b of global) network = (network << 8n) | BigInt(b);
  network <<= 80n;
  return `${formatV6(network)}/48`;
}

/**
 * Whether a host may be given `network + offset` in an IPv4 pool: never the network address
 * (offset 0), the broadcast, or any address ending in .0 or .255 (some stacks mishandle them).
 */
export function isUsableV4Offset(cidr: string | Cidr, offset: bigint): boolean {
  const c = toCidr(cidr);
  if (c.family !== 4) throw new ConfigError(`${formatCidr(c)} is not an IPv4 prefix`);
  if (offset <= 0n || offset >= c.size - 1n) return false;
  const last = (c.network + offset) & 0xffn;
  return last !== 0n && last !== 255n;
}

/** Family-independent usability: IPv4 rules above; IPv6 skips only offset 0 (subnet-router anycast). */
export function isUsableOffset(cidr: string | Cidr, offset: bigint): boolean {
  const c = toCidr(cidr);
  if (c.family === 4) return isUsableV4Offset(c, offset);
  return offset > 0n && offset < c.size;
}

/** The first usable offset at or after `from` (see isUsableOffset), or null when the prefix has none left. */
export function nextUsableOffset(cidr: string | Cidr, from: bigint): bigint | null {
  const c = toCidr(cidr);
  let offset = from < 1n ? 1n : from;
  // At most a few steps: in IPv4 only .0/.255 and the broadcast are skipped.
  while (offset < c.size) {
    if (isUsableOffset(c, offset)) return offset;
    offset++;
  }
  return null;
}
