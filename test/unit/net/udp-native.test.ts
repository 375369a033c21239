// The addon's UDP calls on loopback: dual-stack bind, sendmmsg batches to one destination, recvmmsg with
// sources, UDP GSO sends received with and without UDP GRO, the eventfd wake-up of a blocked receive, and
// argument checks. No root needed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadNativeAddon } from '../../../src/native/addon.js';

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
    assert.equal(n.udpSendMany(tx, buf, offs, lens, 5, mapped, port, false), 5);
    const rbuf = Buffer.alloc(64 * 256);
    const roffs = new Uint32Array(64);
    const rlens = new Uint32Array(64);
    const metas = new Uint8Array(64 * 20);
    let got = 0;
    for (let tries = 0; got < 5 && tries < 10; tries++) {
      const k = n.udpRecvMany(rx, rbuf.subarray(got * 256), 256, roffs.subarray(got), rlens.subarray(got), metas.subarray(got * 20), 200, undefined, false);
      for (let j = got; j < got + k; j++) roffs[j] = roffs[j]! + got * 256;
      got += k;
    }
    assert.equal(got, 5);
    for (let i = 0; i < 5; i++) {
      assert.equal(rlens[i], 10 + i);
      assert.ok(rbuf.subarray(roffs[i]!, roffs[i]! + 10 + i).every((b) => b === i + 1));
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

/** Sends 10 datagrams of 100 bytes and one of 40 (bytes = index + 1) with GSO; returns what `rx` got. */
function gsoRoundTrip(gro: boolean): { lens: number[]; ok: boolean; buffers: number } {
  const n = native!;
  const rx = n.udpOpen(0, false);
  const tx = n.udpOpen(0, false);
  try {
    if (gro) assert.equal(n.udpSetGro(rx), true, 'UDP_GRO accepted');
    const sizes = [...Array(10).fill(100), 40] as number[];
    const buf = Buffer.alloc(1100);
    const offs = new Uint32Array(sizes.length);
    const lens = new Uint32Array(sizes.length);
    let at = 0;
    sizes.forEach((s, i) => {
      buf.fill(i + 1, at, at + s);
      offs[i] = at;
      lens[i] = s;
      at += s;
    });
    assert.equal(n.udpSendMany(tx, buf, offs, lens, sizes.length, Buffer.from([127, 0, 0, 1]), n.udpLocalPort(rx), true), sizes.length);
    const rbuf = Buffer.alloc(4 * 65536);
    const roffs = new Uint32Array(256);
    const rlens = new Uint32Array(256);
    const metas = new Uint8Array(256 * 20);
    const got: number[] = [];
    let ok = true;
    let buffers = 0;
    for (let tries = 0; got.length < sizes.length && tries < 10; tries++) {
      const k = n.udpRecvMany(rx, rbuf, 65536, roffs, rlens, metas, 200, undefined, gro);
      const distinct = new Set<number>();
      for (let i = 0; i < k; i++) {
        const idx = got.length;
        got.push(rlens[i]!);
        distinct.add(Math.floor(roffs[i]! / 65536));
        ok &&= rbuf.subarray(roffs[i]!, roffs[i]! + rlens[i]!).every((b) => b === idx + 1);
        ok &&= metas[i * 20] === 4 && (metas[i * 20 + 2]! << 8 | metas[i * 20 + 3]!) === n.udpLocalPort(tx);
      }
      buffers += distinct.size;
    }
    return { lens: got, ok, buffers };
  } finally {
    n.fdClose(rx);
    n.fdClose(tx);
  }
}

test('a UDP GSO send arrives as separate datagrams at a plain socket', { skip }, () => {
  const r = gsoRoundTrip(false);
  assert.deepEqual(r.lens, [...Array(10).fill(100), 40]);
  assert.ok(r.ok, 'contents and sources intact');
});

test('with UDP_GRO the datagrams arrive in one buffer and are split back by their GRO size', { skip }, () => {
  const r = gsoRoundTrip(true);
  assert.deepEqual(r.lens, [...Array(10).fill(100), 40]);
  assert.ok(r.ok, 'contents and sources intact');
  assert.equal(r.buffers, 1, 'one receive buffer held all eleven');
});

test('a blocked receive returns 0 at once when its eventfd is signalled, and on timeout', { skip }, () => {
  const n = native!;
  const rx = n.udpOpen(0, false);
  const wake = n.eventfdCreate();
  try {
    const buf = Buffer.alloc(1024);
    const offs = new Uint32Array(4);
    const lens = new Uint32Array(4);
    const metas = new Uint8Array(80);
    n.eventfdSignal(wake);
    const t0 = Date.now();
    assert.equal(n.udpRecvMany(rx, buf, 256, offs, lens, metas, 5000, wake, false), 0);
    assert.ok(Date.now() - t0 < 1000, 'woken, not timed out');
    assert.equal(n.udpRecvMany(rx, buf, 256, offs, lens, metas, 20, wake, false), 0, 'eventfd drained: now a plain timeout');
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
    assert.throws(() => n.udpSendMany(fd, buf, new Uint32Array([90]), new Uint32Array([20]), 1, Buffer.from([127, 0, 0, 1]), 9, true), /outside buf/);
    assert.throws(() => n.udpSendMany(fd, buf, new Uint32Array([0]), new Uint32Array([1]), 2, Buffer.from([127, 0, 0, 1]), 9, false), /count beyond/);
    assert.throws(() => n.udpSendMany(fd, buf, new Uint32Array([0]), new Uint32Array([1]), 1, Buffer.from([127, 0, 1]), 9, false), /bad address/);
    assert.throws(() => n.udpRecvMany(fd, buf, 0, new Uint32Array(1), new Uint32Array(1), new Uint8Array(20), 0, undefined, false), /slotSize|layout|range/);
    assert.throws(() => n.udpRecvMany(fd, buf, 50, new Uint32Array(2), new Uint32Array(2), new Uint8Array(10), 0, undefined, false), /too short|layout/);
    assert.throws(() => n.udpRecvMany(fd, buf, 50, new Uint32Array(2), new Uint32Array(2), new Uint8Array(40), 0, undefined, true), /too short/);
  } finally {
    n.fdClose(fd);
  }
});
