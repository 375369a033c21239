// Address arithmetic for the netns testbed: IPv4 CIDR parsing and host-number -> address mapping.
// Pure functions, no I/O; used by testbed.ts to hand out addresses per site.

/** A parsed IPv4 prefix. `base` is the network address as an unsigned 32-bit integer. */
export interface V4Net {
  base: number;
  len: number;
}

export function parseV4(addr: string): number {
  const parts = addr.split('.');
  if (parts.length !== 4) throw new Error(`bad IPv4 address: ${addr}`);
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) throw new Error(`bad IPv4 address: ${addr}`);
    const v = Number(p);
    if (v > 255) throw new Error(`bad IPv4 address: ${addr}`);
    n = n * 256 + v;
  }
  return n;
}

export function formatV4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

export function parseV4Cidr(cidr: string): V4Net {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(cidr);
  if (!m) throw new Error(`bad IPv4 CIDR: ${cidr}`);
  const len = Number(m[2]);
  if (len < 8 || len > 24) throw new Error(`IPv4 prefix length must be 8..24: ${cidr}`);
  const size = 2 ** (32 - len);
  const base = parseV4(m[1]!);
  return { base: base - (base % size), len };
}

/** The `n`-th address inside a v4 network (n=1 is the gateway by convention). */
export function v4Host(net: V4Net, n: number): string {
  const size = 2 ** (32 - net.len);
  if (n < 1 || n >= size - 1) throw new Error(`host number ${n} outside /${net.len}`);
  return formatV4(net.base + n);
}

export function v4Overlaps(a: V4Net, b: V4Net): boolean {
  const aEnd = a.base + 2 ** (32 - a.len);
  const bEnd = b.base + 2 ** (32 - b.len);
  return a.base < bEnd && b.base < aEnd;
}

/**
 * The `n`-th address inside a /64 given as "2001:db8::/64"-style prefix whose last
 * 64 bits are zero. The host number is written with the same digits as in IPv4
 * (198.18.0.12 <-> 2001:db8::12) so the two stay visually paired; n <= 9999.
 */
export function v6Host(prefix64: string, n: number): string {
  const m = /^([0-9a-f:]+)::\/64$/i.exec(prefix64);
  if (!m) throw new Error(`IPv6 prefix must look like "2001:db8::/64": ${prefix64}`);
  if (!Number.isInteger(n) || n < 1 || n > 9999) throw new Error(`host number ${n} out of range`);
  return `${m[1]}::${n}`;
}
