// Shared pieces of the LAN-side codecs: their stable DecodeError codes, bounds-checked reads,
// address text <-> bytes conversions and the uncompressed DNS name lists used by DHCPv6 and NDP.

import { DecodeError } from '../../util/errors.js';
import { formatIp, parseIp4, parseIp6 } from '../../protocol/ip.js';
import { encodeName } from '../../net/dns/codec.js';

/** DecodeError codes of the LAN layer (stable; listed in docs/ARCHITECTURE.md). */
export const LAN_ERR = {
  ethernet: 'ERR_ETH_DECODE',
  arp: 'ERR_ARP_DECODE',
  ip: 'ERR_IP_DECODE',
  checksum: 'ERR_IP_CHECKSUM',
  dhcp4: 'ERR_DHCP_DECODE',
  dhcp6: 'ERR_DHCP6_DECODE',
  ndp: 'ERR_NDP_DECODE',
  mld: 'ERR_MLD_DECODE',
  leases: 'ERR_LEASES_CORRUPT',
} as const;

export type LanErrorCode = (typeof LAN_ERR)[keyof typeof LAN_ERR];

export function fail(code: LanErrorCode, msg: string): never {
  throw new DecodeError(msg, code);
}

/** Throws DecodeError(code) unless `n` bytes are readable at `off`. */
export function need(buf: Uint8Array, off: number, n: number, code: LanErrorCode, what: string): void {
  if (off < 0 || n < 0 || off + n > buf.length) fail(code, `truncated ${what}: need ${off + n} bytes, have ${buf.length}`);
}

/** Big-endian reads; callers check bounds first with `need`. */
export function u16(buf: Uint8Array, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}

export function u32(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 24) >>> 0) + ((buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!);
}

/** Tunable: parsed addresses remembered per parser; a LAN has few, and the cache is cleared when full. */
const MEMO_MAX = 1024;

/**
 * Wraps a text → bytes parser for encoders: RangeError when the text is invalid, and a small
 * cache, because replies re-encode the same few addresses (the proxy answers in microseconds).
 * The returned bytes are shared: callers copy them (Buffer.set / concat) and never modify them.
 */
export function memoParser(kind: string, parse: (s: string) => Buffer | undefined): (text: string) => Buffer {
  const cache = new Map<string, Buffer>();
  return (text) => {
    let b = cache.get(text);
    if (b) return b;
    b = typeof text === 'string' ? parse(text) : undefined;
    if (!b) throw new RangeError(`not ${kind}: ${String(text)}`);
    if (cache.size >= MEMO_MAX) cache.clear();
    cache.set(text, b);
    return b;
  };
}

/** IPv4 text to 4 bytes; RangeError when it is not a dotted quad (encoders only; shared bytes). */
export const ip4Bytes = memoParser('an IPv4 address', parseIp4);

/** IPv6 text to 16 bytes; RangeError otherwise (encoders only; shared bytes). */
export const ip6Bytes = memoParser('an IPv6 address', parseIp6);

/** 4 or 16 address bytes at `off` as text (node:net form). */
export function ipText(buf: Uint8Array, off: number, len: 4 | 16): string {
  return formatIp(buf.subarray(off, off + len));
}

const MAX_LABEL = 63;
const MAX_NAME_WIRE = 255;

/**
 * Reads a list of uncompressed DNS names (RFC 1035 §3.1, as RFC 8415 §10 and RFC 8106 §5.2 use
 * them). Labels must be printable ASCII without '.' or '\'. With `padded`, a zero byte where a
 * name would start begins the padding, and everything after it must be zero (DNSSL); without it,
 * an empty (root) name is malformed (DHCPv6 domain list).
 */
export function decodeNameList(bytes: Uint8Array, code: LanErrorCode, padded: boolean): string[] {
  const names: string[] = [];
  let p = 0;
  while (p < bytes.length) {
    if (bytes[p] === 0) {
      if (!padded) fail(code, 'empty domain name');
      for (let i = p; i < bytes.length; i++) if (bytes[i] !== 0) fail(code, 'non-zero padding after the domain names');
      break;
    }
    const labels: string[] = [];
    let wire = 1;
    for (;;) {
      need(bytes, p, 1, code, 'domain name');
      const len = bytes[p]!;
      if (len === 0) {
        p += 1;
        break;
      }
      if (len > MAX_LABEL) fail(code, `label of ${len} bytes (compression is not allowed here)`);
      need(bytes, p + 1, len, code, 'label');
      wire += 1 + len;
      if (wire > MAX_NAME_WIRE) fail(code, 'domain name longer than 255 bytes');
      let label = '';
      for (let i = p + 1; i <= p + len; i++) {
        const c = bytes[i]!;
        if (c <= 0x20 || c >= 0x7f || c === 0x2e || c === 0x5c) fail(code, `byte 0x${c.toString(16)} in a label`);
        label += String.fromCharCode(c);
      }
      labels.push(label);
      p += 1 + len;
    }
    names.push(labels.join('.'));
  }
  return names;
}

/** Wire form of a list of names, each uncompressed (RangeError on a bad name). */
export function encodeNameList(names: readonly string[]): Buffer {
  return Buffer.concat(
    names.map((n) => {
      if (typeof n !== 'string' || !/^[\x21-\x7e]+$/.test(n) || n.includes('\\') || n === '.') {
        throw new RangeError(`bad domain name ${JSON.stringify(n)}`);
      }
      return encodeName(n);
    }),
  );
}

/** 2 big-endian bytes for encoders; RangeError when `v` is not an integer in range. */
export function u16Bytes(name: string, v: number): Buffer {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`bad ${name} ${v}`);
  return Buffer.from([v >> 8, v & 0xff]);
}

/** 4 big-endian bytes for encoders; RangeError when `v` is not an integer in range. */
export function u32Bytes(name: string, v: number): Buffer {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`bad ${name} ${v}`);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
}
