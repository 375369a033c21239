// writeU64BE/readU64BE: the same bytes as Buffer's writeBigUInt64BE/readBigUInt64BE over the whole u64 range, and
// a RangeError (nothing written) where 8 bytes do not fit or the value is not a u64.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readU64BE, writeU64BE } from '../../../src/util/u64.js';
import { prng } from '../../harness/prng.js';

test('u64 writes and reads match Buffer big-endian bigint I/O at every offset', () => {
  const rnd = prng(64);
  const values = [0n, 1n, 0xffn, 0x100n, 0xffff_ffffn, 0x1_0000_0000n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n];
  for (let i = 0; i < 200; i++) values.push((BigInt(Math.floor(rnd() * 2 ** 32)) << 32n) | BigInt(Math.floor(rnd() * 2 ** 32)));
  for (const v of values) {
    for (const off of [0, 3, 8]) {
      const ours = Buffer.alloc(16, 0xaa);
      const node = Buffer.alloc(16, 0xaa);
      writeU64BE(ours, v, off);
      node.writeBigUInt64BE(v, off);
      assert.deepEqual(ours, node, `write ${v} at ${off}`);
      assert.equal(readU64BE(node, off), v, `read ${v} at ${off}`);
    }
  }
});

test('u64 I/O outside the buffer or the u64 range throws and writes nothing', () => {
  const b = Buffer.alloc(12, 0x55);
  assert.throws(() => writeU64BE(b, 1n, 5), RangeError);
  assert.throws(() => writeU64BE(b, 1n, -1), RangeError);
  assert.throws(() => readU64BE(b, 5), RangeError);
  assert.throws(() => readU64BE(b, 1.5), RangeError);
  assert.throws(() => writeU64BE(b, -1n, 0), RangeError);
  assert.throws(() => writeU64BE(b, 1n << 64n, 0), RangeError);
  assert.throws(() => writeU64BE(b, 5 as unknown as bigint, 0), RangeError);
  assert.deepEqual(b, Buffer.alloc(12, 0x55));
});
