// Shared fixtures for the adapter LAN-layer tests: a small LAN (adapter, general nodes, peers),
// hex helpers, and the seeded fuzz runner every decoder test uses (only DecodeError may escape).

import assert from 'node:assert/strict';
import { DecodeError } from '../../../src/util/errors.js';
import { MemoryLeaseTable } from '../../../src/adapter/lan/leases.js';
import type { GeneralNode } from '../../../src/adapter/lan/leases.js';
import { prng } from '../../harness/prng.js';

export const SEED = Number(process.env['CYPHONIC_SEED'] ?? 0xada7);

export const ADAPTER_MAC = '02:00:00:00:00:01';
export const ADAPTER_IP4 = '100.64.0.1';
export const ADAPTER_IP6 = 'fd12:3456:789a::1';
export const ADAPTER_LL = 'fe80::ff:fe00:1';

/** A dual-stack general node, an IPv4-only one and an IPv6-only one. */
export const GN_DUAL: GeneralNode = { mac: '52:54:00:12:34:56', name: 'plc1', fqdn: 'plc1.cyphonic.internal', vip4: '100.64.0.10', vip6: 'fd12:3456:789a::10' };
export const GN_V4: GeneralNode = { mac: '52:54:00:00:00:04', name: 'cam4', vip4: '100.64.0.11' };
export const GN_V6: GeneralNode = { mac: '52:54:00:00:00:06', name: 'sensor6', vip6: 'fd12:3456:789a::11' };
export const STRANGER_MAC = '52:54:00:66:66:66';

/** A remote peer's virtual addresses (proxied by the adapter). */
export const PEER4 = '100.64.0.20';
export const PEER6 = 'fd12:3456:789a::20';

export function lanTable(): MemoryLeaseTable {
  return new MemoryLeaseTable([GN_DUAL, GN_V4, GN_V6]);
}

/** Bytes from hex text; spaces, newlines and '|' are ignored. */
export function hex(text: string): Buffer {
  return Buffer.from(text.replace(/[\s|]/g, ''), 'hex');
}

export function isDecodeError(code?: string): (err: unknown) => boolean {
  return (err) => err instanceof DecodeError && (code === undefined || err.code === code);
}

/** An RFC 1071 checksum written independently of src/ (plain loop, no folding tricks). */
export function naiveChecksum(data: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < data.length; i += 2) {
    sum += data[i]! * 256 + (i + 1 < data.length ? data[i + 1]! : 0);
    sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  }
  return 0xffff - sum;
}

/** A random mutation of `base`: bit flips, byte overwrites, truncation or extension. */
export function mutate(rnd: () => number, base: Uint8Array): Buffer {
  let m = Buffer.from(base);
  const edits = 1 + Math.floor(rnd() * 4);
  for (let e = 0; e < edits && m.length > 0; e++) {
    const pos = Math.floor(rnd() * m.length);
    const r = rnd();
    if (r < 0.45) m[pos] = m[pos]! ^ (1 << Math.floor(rnd() * 8));
    else if (r < 0.8) m[pos] = Math.floor(rnd() * 256);
    else if (r < 0.9) m = m.subarray(0, pos);
    else m = Buffer.concat([m, Buffer.from(Array.from({ length: Math.floor(rnd() * 16) }, () => Math.floor(rnd() * 256)))]);
  }
  return m;
}

export function randomBytes(rnd: () => number, max: number): Buffer {
  const n = Math.floor(rnd() * max);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = rnd() < 0.25 ? 0 : Math.floor(rnd() * 256);
  return b;
}

/**
 * Runs `decode` on `n` inputs from `gen`: each must decode (then `check` may test the result,
 * e.g. a re-encode round trip) or throw DecodeError; any other exception fails with the seed.
 * Returns how many decoded, so a test can assert the fuzzing reached past the first checks.
 */
export function fuzz<T>(
  seed: number,
  n: number,
  gen: (rnd: () => number, i: number) => Uint8Array,
  decode: (b: Uint8Array) => T,
  check?: (v: T, input: Uint8Array) => void,
): number {
  const rnd = prng(seed);
  let ok = 0;
  for (let i = 0; i < n; i++) {
    const input = gen(rnd, i);
    let v: T;
    try {
      v = decode(input);
    } catch (err) {
      assert.ok(err instanceof DecodeError, `seed ${seed} iteration ${i}: ${String(err)} for ${Buffer.from(input).toString('hex')}`);
      continue;
    }
    ok++;
    check?.(v, input);
  }
  return ok;
}
