// The NMS's certificate cache (src/cloud/nms/cert-cache.ts): certificates kept in a byte slab used as a ring. Checked
// against a plain model (a Map of copies, oldest dropped first) over random puts of varied sizes, so the slab grows,
// wraps, and overwrites its oldest entries; no answer may ever be another node's bytes or bytes overwritten since.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prng } from '../../harness/prng.js';
import { CertCache } from '../../../src/cloud/nms/cert-cache.js';

/** Certificate bytes that say whose and which they are (node id, version) and fill the rest with a pattern. */
function der(node: number, version: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (node * 31 + version * 7 + i) & 0xff;
  if (len >= 8) {
    b.writeUInt32BE(node, 0);
    b.writeUInt32BE(version, 4);
  }
  return b;
}

for (const [maxNodes, maxBytes, nodes, seed] of [[50, 4096, 80, 3], [1000, 20_000, 300, 11], [8, 1 << 20, 40, 5], [400, 300_000, 500, 17]] as const) {
  test(`cert cache matches the model: ${maxNodes} nodes, ${maxBytes} bytes, ${nodes} node ids`, () => {
    const rand = prng(seed);
    const cache = new CertCache(maxNodes, maxBytes);
    // The model holds what may be answered: node → [bytes, notAfter]. The cache may have dropped more (it drops by
    // bytes too), never answered differently.
    const model = new Map<number, [Buffer, number]>();
    const versions = new Map<number, number>();
    let now = 1000;
    let hits = 0;
    const handedOut: [Buffer, Buffer][] = [];
    for (let i = 0; i < 20_000; i++) {
      now += Math.floor(rand() * 3);
      const node = Math.floor(rand() * nodes);
      if (rand() < 0.5) {
        const v = (versions.get(node) ?? 0) + 1;
        versions.set(node, v);
        const len = 8 + Math.floor(rand() * (rand() < 0.05 ? maxBytes : 900));
        const bytes = der(node, v, len);
        const notAfter = now + Math.floor(rand() * 500);
        cache.put(node, bytes, notAfter);
        bytes.fill(0); // the cache kept its own copy
        model.set(node, [der(node, v, len), notAfter]);
      } else {
        const got = cache.get(node, now);
        const want = model.get(node);
        if (got === null) continue; // dropped or expired: the caller reads the store
        assert.ok(want, `node ${node}: an answer for a node never put`);
        assert.ok(want[1] > now, `node ${node}: an expired certificate handed out`);
        assert.deepEqual(got, want[0], `node ${node}: the bytes of its latest put`);
        hits++;
        if (handedOut.length < 50 && rand() < 0.1) handedOut.push([got, Buffer.from(got)]);
      }
      assert.ok(cache.size <= maxNodes);
    }
    for (const [given, copy] of handedOut) assert.deepEqual(given, copy, 'a certificate handed out never changes afterwards');
    assert.ok(hits > 200, `the cache answered (${hits} hits)`);
  });
}

test('cert cache: the newest entries survive the ring, a replaced node answers its new bytes, clear forgets all', () => {
  const c = new CertCache(100, 1000);
  for (let n = 0; n < 30; n++) c.put(n, der(n, 1, 100), 1e15);
  // 3 000 bytes through a 1 000-byte slab: the last ten fit, the earlier were overwritten.
  for (let n = 0; n < 20; n++) assert.equal(c.get(n, 0), null, `node ${n} was overwritten`);
  for (let n = 20; n < 30; n++) assert.deepEqual(c.get(n, 0), der(n, 1, 100), `node ${n} kept`);
  c.put(25, der(25, 2, 50), 1e15);
  assert.deepEqual(c.get(25, 0), der(25, 2, 50));
  assert.equal(c.get(25, 1e15), null, 'expired at notAfter');
  assert.equal(c.get(0, 0), null);
  c.clear();
  assert.equal(c.size, 0);
  for (let n = 20; n < 30; n++) assert.equal(c.get(n, 0), null);
  // A node put again keeps its new entry when its old row comes round the ring.
  c.put(1, der(1, 1, 100), 1e15);
  for (let n = 40; n < 44; n++) c.put(n, der(n, 1, 100), 1e15);
  c.put(1, der(1, 2, 100), 1e15);
  for (let n = 44; n < 49; n++) c.put(n, der(n, 1, 100), 1e15); // the ring is full at 47; 48 overwrites node 1's first row
  assert.deepEqual(c.get(40, 0), der(40, 1, 100), 'the next oldest is still there');
  assert.deepEqual(c.get(1, 0), der(1, 2, 100), "node 1's newer entry stays");
  assert.throws(() => c.put(-1, der(1, 1, 10), 1), RangeError);
  c.put(7, Buffer.alloc(1001, 1), 1e15);
  assert.equal(c.get(7, 0), null, 'larger than the slab: not kept');
});
