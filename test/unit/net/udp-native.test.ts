// The addon's UDP calls on loopback: dual-stack bind, sendmmsg batches to one destination, recvmmsg with
// sources, the eventfd wake-up of a blocked receive, and argument checks. No root needed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadNativeAddon } from '../../../src/crypto/fast-aead.js';

const native = loadNativeAddon();
const skip = native ? false : 'native addon not built';

test('sendmmsg a batch, recvmmsg it back with the source address', { skip }, () => {
  const n = native!;
  const rx = n.udpOpen(0, true);
  const tx = n.udpOpen(0, true);
  try {
    const port = n.udpLocalPort(rx);
    const buf = Buffer.alloc(5 * 100);
    const offs = new Uint32Array(5);
    const lens = new Uint32Array(5);
    for (let i = 0; i < 5; i++) {
      buf.fill(i + 1, i * 100, i * 100 + 10 + i);
      offs[i] = i * 100;
      lens[i] = 10 + i;
    }
    const mapped = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
    assert.equal(n.udpSendMany(tx, buf, offs, lens, 5, mapped, port), 5);
    const rbuf = Buffer.alloc(64 * 256);
    const rlens = new Uint32Array(64);
    const metas = new Uint8Array(64 * 20);
    let got = 0;
    for (let tries = 0; got < 5 && tries < 10; tries++) got += n.udpRecvMany(rx, rbuf.subarray(got * 256), 256, rlens.subarray(got), metas.subarray(got * 20), 200);
    assert.equal(got, 5);
    for (let i = 0; i < 5; i++) {
      assert.equal(rlens[i], 10 + i);
      assert.ok(rbuf.subarray(i * 256, i * 256 + 10 + i).every((b) => b === i + 1));
      const m = metas.subarray(i * 20);
      assert.equal(m[0], 4, 'IPv4-mapped source reported as IPv4');
      assert.deepEqual([...m.subarray(4, 8)], [127, 0, 0, 1]);
      assert.equal((m[2]! << 8) | m[3]!, n.udpLocalPort(tx));
    }
  } finally {
    n.fdClose(rx);
    n.fdClose(tx);
  }
});

test('a blocked receive returns 0 at once when its eventfd is signalled, and on timeout', { skip }, () => {
  const n = native!;
  const rx = n.udpOpen(0, false);
  const wake = n.eventfdCreate();
  try {
    const buf = Buffer.alloc(1024);
    const lens = new Uint32Array(4);
    const metas = new Uint8Array(80);
    n.eventfdSignal(wake);
    const t0 = Date.now();
    assert.equal(n.udpRecvMany(rx, buf, 256, lens, metas, 5000, wake), 0);
    assert.ok(Date.now() - t0 < 1000, 'woken, not timed out');
    assert.equal(n.udpRecvMany(rx, buf, 256, lens, metas, 20, wake), 0, 'eventfd drained: now a plain timeout');
  } finally {
    n.fdClose(rx);
    n.fdClose(wake);
  }
});

test('bad arguments throw instead of touching memory', { skip }, () => {
  const n = native!;
  const fd = n.udpOpen(0, false);
  try {
    const buf = Buffer.alloc(100);
    assert.throws(() => n.udpSendMany(fd, buf, new Uint32Array([90]), new Uint32Array([20]), 1, Buffer.from([127, 0, 0, 1]), 9), /outside buf/);
    assert.throws(() => n.udpSendMany(fd, buf, new Uint32Array([0]), new Uint32Array([1]), 2, Buffer.from([127, 0, 0, 1]), 9), /count beyond/);
    assert.throws(() => n.udpSendMany(fd, buf, new Uint32Array([0]), new Uint32Array([1]), 1, Buffer.from([127, 0, 1]), 9), /bad address/);
    assert.throws(() => n.udpRecvMany(fd, buf, 0, new Uint32Array(1), new Uint8Array(20), 0), /slotSize|layout|range/);
    assert.throws(() => n.udpRecvMany(fd, buf, 50, new Uint32Array(2), new Uint8Array(10), 0), /metas/);
  } finally {
    n.fdClose(fd);
  }
});
