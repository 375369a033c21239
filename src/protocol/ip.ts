// IPv4/IPv6 text <-> wire-bytes conversion for the TLV codec and endpoint helpers.
// Output text follows node:net conventions (dotted quad; RFC 5952 compressed lowercase IPv6, as inet_ntop prints it).
// The parsers scan characters (no split, regex or arrays) and can write into a caller's buffer (parseIp4Into, parseIp6Into).

/** Parse a dotted-quad IPv4 address (no leading zeros, like net.isIPv4). Returns undefined when invalid. */
export function parseIp4(s: string): Buffer | undefined {
  const out = Buffer.alloc(4);
  return parseIp4Into(s, out, 0) ? out : undefined;
}

/**
 * parseIp4 into out[at..at+4] without a buffer of its own (the encoder's hot path): true when `s` is a valid dotted
 * quad (four decimal parts 0..255, no leading zeros, nothing else); on false, out may have been written to.
 */
export function parseIp4Into(s: string, out: Uint8Array, at: number): boolean {
  const n = s.length;
  if (n < 7 || n > 15) return false;
  let part = 0;
  let i = 0;
  while (part < 4) {
    const start = i;
    let v = 0;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      v = v * 10 + (c - 48);
      i++;
    }
    const digits = i - start;
    if (digits === 0 || digits > 3 || v > 255 || (digits > 1 && s.charCodeAt(start) === 48)) return false;
    out[at + part] = v;
    part++;
    if (part < 4) {
      if (i >= n || s.charCodeAt(i) !== 46) return false;
      i++;
    }
  }
  return i === n;
}

/**
 * The colon-separated hex groups of s[from..to) as 16-bit words into words[0..] (a trailing dotted quad, when allowed,
 * is two words): the number of words, or -1 when a group is not 1-4 hex digits. An empty range is no words.
 */
function parseGroups(s: string, from: number, to: number, allowTrailingIp4: boolean, words: Uint16Array): number {
  if (from === to) return 0;
  let count = 0;
  let i = from;
  for (;;) {
    let end = s.indexOf(':', i);
    if (end < 0 || end > to) end = to;
    if (count >= 8) return -1;
    if (allowTrailingIp4 && end === to && s.indexOf('.', i) >= 0 && s.indexOf('.', i) < to) {
      if (count > 6 || !parseIp4Into(s.slice(i, to), IP4_WORDS, 0)) return -1;
      words[count++] = (IP4_WORDS[0]! << 8) | IP4_WORDS[1]!;
      words[count++] = (IP4_WORDS[2]! << 8) | IP4_WORDS[3]!;
      return count;
    }
    const len = end - i;
    if (len < 1 || len > 4) return -1;
    let v = 0;
    for (let k = i; k < end; k++) {
      const c = s.charCodeAt(k);
      const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
      if (d < 0) return -1;
      v = (v << 4) | d;
    }
    words[count++] = v;
    if (end === to) return count;
    i = end + 1;
  }
}
const IP4_WORDS = new Uint8Array(4);
const HEAD = new Uint16Array(8);
const TAIL = new Uint16Array(8);

/** Parse an IPv6 address (with optional '::' and trailing dotted quad; no zone id). Returns undefined when invalid. */
export function parseIp6(s: string): Buffer | undefined {
  const out = Buffer.alloc(16);
  return parseIp6Into(s, out, 0) ? out : undefined;
}

/** parseIp6 into out[at..at+16] without a buffer of its own: true when valid; on false, out may have been written to. */
export function parseIp6Into(s: string, out: Uint8Array, at: number): boolean {
  if (s.length > 45) return false;
  const dbl = s.indexOf('::');
  let head: number;
  let tail = 0;
  if (dbl < 0) {
    head = parseGroups(s, 0, s.length, true, HEAD);
    if (head !== 8) return false;
  } else {
    if (s.indexOf('::', dbl + 2) >= 0) return false;
    head = parseGroups(s, 0, dbl, false, HEAD);
    if (head < 0) return false;
    tail = parseGroups(s, dbl + 2, s.length, true, TAIL);
    if (tail < 0 || head + tail > 7) return false;
  }
  out.fill(0, at, at + 16);
  for (let i = 0; i < head; i++) {
    out[at + 2 * i] = HEAD[i]! >>> 8;
    out[at + 2 * i + 1] = HEAD[i]! & 0xff;
  }
  for (let i = 0; i < tail; i++) {
    const w = 8 - tail + i;
    out[at + 2 * w] = TAIL[i]! >>> 8;
    out[at + 2 * w + 1] = TAIL[i]! & 0xff;
  }
  return true;
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
