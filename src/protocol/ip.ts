// IPv4/IPv6 text <-> wire-bytes conversion for the TLV codec and endpoint helpers.
// Output text follows node:net conventions (dotted quad; RFC 5952 compressed lowercase IPv6, as inet_ntop prints it).

/** Parse a dotted-quad IPv4 address (no leading zeros, like net.isIPv4). Returns undefined when invalid. */
export function parseIp4(s: string): Buffer | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = Buffer.alloc(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

function parseGroups(part: string, allowTrailingIp4: boolean): number[] | undefined {
  if (part === '') return [];
  const groups = part.split(':');
  const words: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    if (allowTrailingIp4 && i === groups.length - 1 && g.includes('.')) {
      const v4 = parseIp4(g);
      if (!v4) return undefined;
      words.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
    } else {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      words.push(parseInt(g, 16));
    }
  }
  return words;
}

/** Parse an IPv6 address (with optional '::' and trailing dotted quad; no zone id). Returns undefined when invalid. */
export function parseIp6(s: string): Buffer | undefined {
  if (s.length > 45) return undefined;
  const halves = s.split('::');
  let words: number[];
  if (halves.length === 1) {
    const all = parseGroups(s, true);
    if (!all || all.length !== 8) return undefined;
    words = all;
  } else if (halves.length === 2) {
    const head = parseGroups(halves[0]!, false);
    const tail = parseGroups(halves[1]!, true);
    if (!head || !tail || head.length + tail.length > 7) return undefined;
    words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    return undefined;
  }
  const out = Buffer.alloc(16);
  for (let i = 0; i < 8; i++) out.writeUInt16BE(words[i]!, i * 2);
  return out;
}

/** Parse either family: 4 bytes for IPv4, 16 for IPv6; undefined when invalid. */
export function parseIp(s: string): Buffer | undefined {
  return s.includes(':') ? parseIp6(s) : parseIp4(s);
}

/** Address family of a textual address: 4, 6, or 0 when invalid. */
export function ipFamily(s: string): 0 | 4 | 6 {
  if (s.includes(':')) return parseIp6(s) ? 6 : 0;
  return parseIp4(s) ? 4 : 0;
}

/** Format 4 bytes as a dotted quad. */
export function formatIp4(b: Uint8Array): string {
  if (b.length !== 4) throw new RangeError(`IPv4 address must be 4 bytes, got ${b.length}`);
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/**
 * Format 16 bytes as compressed lowercase IPv6, exactly as Node's inet_ntop does:
 * the longest run (first on ties) of two or more zero groups becomes '::', and
 * '::a.b.c.d' / '::ffff:a.b.c.d' use a trailing dotted quad.
 */
export function formatIp6(b: Uint8Array): string {
  if (b.length !== 16) throw new RangeError(`IPv6 address must be 16 bytes, got ${b.length}`);
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((b[i * 2]! << 8) | b[i * 2 + 1]!);
  let bestBase = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestBase = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestBase = -1;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase !== -1 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) out += ':';
      continue;
    }
    if (i !== 0) out += ':';
    if (i === 6 && bestBase === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
      out += formatIp4(b.subarray(12, 16));
      break;
    }
    out += w[i]!.toString(16);
  }
  if (bestBase !== -1 && bestBase + bestLen === 8) out += ':';
  return out;
}

/** Format 4 or 16 bytes. */
export function formatIp(b: Uint8Array): string {
  return b.length === 4 ? formatIp4(b) : formatIp6(b);
}

/** Canonical text of a valid address (IPv6 compressed lowercase); undefined when invalid. */
export function normalizeIp(s: string): string | undefined {
  const b = parseIp(s);
  return b ? formatIp(b) : undefined;
}
