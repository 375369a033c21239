// Small address helpers shared by every layer: IPv4-mapped IPv6 normalisation and family tests.
// Kept dependency-free so protocol, node and cloud code can all use it.

import { isIP } from 'node:net';

/** '::ffff:198.18.0.1' -> '198.18.0.1'; any other address unchanged. */
export function unmapV4(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

/** The address a dual-stack (udp6) socket must send to for `address`. */
export function mapForDualStack(address: string): string {
  return isIP(address) === 4 ? `::ffff:${address}` : address;
}
