// Just enough IP header reading for the data plane: which peer an outbound packet is for.
// IPv4 destinations become a uint32, IPv6 destinations a 16-byte latin1 string (Map keys).

import { formatIp4, formatIp6, parseIp4, parseIp6 } from '../../protocol/ip.js';

/** IPv4 destination as an unsigned 32-bit number, or -1 when `pkt` is not a well-formed IPv4 header. */
export function dst4(pkt: Uint8Array, len: number): number {
  if (len < 20 || pkt[0]! >> 4 !== 4) return -1;
  return ((pkt[16]! << 24) | (pkt[17]! << 16) | (pkt[18]! << 8) | pkt[19]!) >>> 0;
}

/** IPv6 destination as a 16-char latin1 key, or null when `pkt` is not IPv6. */
export function dst6(pkt: Buffer, len: number): string | null {
  if (len < 40 || pkt[0]! >> 4 !== 6) return null;
  return pkt.toString('latin1', 24, 40);
}

/** The same keys from address text. */
export function key4(address: string): number {
  const b = parseIp4(address);
  if (!b) throw new TypeError(`not IPv4: ${address}`);
  return b.readUInt32BE(0);
}

export function key6(address: string): string {
  const b = parseIp6(address);
  if (!b) throw new TypeError(`not IPv6: ${address}`);
  return b.toString('latin1');
}

/** Address text of a key made by key4/dst4 or key6/dst6 (logs and miss reports). */
export function formatKey(k: number | string): string {
  if (typeof k === 'number') {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(k);
    return formatIp4(b);
  }
  return formatIp6(Buffer.from(k, 'latin1'));
}
