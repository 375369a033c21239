// UDP/TCP endpoint value type plus text formatting, parsing and comparison helpers.
// Wire form (TLV kind 'endpoint'): family u8 (4|6), address (4|16 bytes), port u16 BE.

import { DecodeError } from '../util/errors.js';
import { formatIp, parseIp, parseIp4, parseIp6 } from './ip.js';

export interface Endpoint {
  address: string;
  port: number;
}

/** True for an integer port in 1..65535 (port 0 is never a valid endpoint). */
export function isValidPort(p: unknown): p is number {
  return typeof p === 'number' && Number.isInteger(p) && p >= 1 && p <= 65535;
}

/** "1.2.3.4:5" or "[2001:db8::1]:5" (the address is printed as given). */
export function formatEndpoint(e: Endpoint): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

/**
 * Parse "a.b.c.d:port" or "[v6]:port" into an Endpoint with a canonical address.
 * Throws DecodeError (ERR_DECODE_ENDPOINT) on anything else, including port 0 and bare IPv6.
 */
export function parseEndpoint(s: string): Endpoint {
  const fail = (why: string): never => {
    throw new DecodeError(`invalid endpoint ${JSON.stringify(s.slice(0, 64))}: ${why}`, 'ERR_DECODE_ENDPOINT');
  };
  let addrText: string;
  let portText: string;
  let bytes: Buffer | undefined;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0 || s[close + 1] !== ':') return fail('expected [address]:port');
    addrText = s.slice(1, close);
    portText = s.slice(close + 2);
    bytes = parseIp6(addrText);
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0) return fail('missing port');
    addrText = s.slice(0, colon);
    portText = s.slice(colon + 1);
    if (addrText.includes(':')) return fail('IPv6 addresses must be bracketed');
    bytes = parseIp4(addrText);
  }
  if (!bytes) return fail('bad address');
  if (!/^[0-9]{1,5}$/.test(portText)) return fail('bad port');
  const port = Number(portText);
  if (!isValidPort(port)) return fail('port out of range');
  return { address: formatIp(bytes), port };
}

/**
 * Canonical map key for an endpoint: formatted with a normalized address, where an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) counts as the plain IPv4 address.
 */
export function endpointKey(e: Endpoint): string {
  const b = parseIp(e.address);
  let address = e.address;
  if (b) {
    const mapped = b.length === 16 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
    address = formatIp(mapped ? b.subarray(12) : b);
  }
  return formatEndpoint({ address, port: e.port });
}

/** Same address (after normalization, see endpointKey) and same port. */
export function endpointsEqual(a: Endpoint, b: Endpoint): boolean {
  if (a.port !== b.port) return false;
  if (a.address === b.address) return true; // the same text normalizes the same (the NMS's hot path)
  return endpointKey(a) === endpointKey(b);
}
