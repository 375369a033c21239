// The addon's waitAny (the data-plane worker's one blocking point: TUN fd, UDP fd, wake eventfd) and the
// non-blocking looks it pairs with (udpRecvMany with timeout 0). Two loopback UDP sockets stand in for the TUN
// and UDP fds (poll() does not care which). No root needed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadNativeAddon } from '../../../src/crypto/fast-aead.js';

const native = loadNativeAddon();
const skip = native ? false : 'native addon not built';
const LOOP4 = Buffer.from([127, 0, 0, 1]);

/** Runs `fn` with fds: a (as the TUN), b (as the UDP socket), a sender, and a wake eventfd; closes them after. */
function withFds(fn: (fds: { a: number; b: number; tx: number; wake: number }) => void): void {
  const n = native!;
  const a = n.udpOpen(0, false);
  const b = n.udpOpen(0, false);
  const tx = n.udpOpen(0, false);
  const wake = n.eventfdCreate();
  try {
    fn({ a, b, tx, wake });
  } finally {
    for (const fd of [a, b, tx, wake]) n.fdClose(fd);
  }
}

function sendTo(tx: number, to: number, bytes: number): void {
  const n = native!;
  assert.equal(n.udpSend(tx, Buffer.alloc(bytes, 7), 0, bytes, LOOP4, n.udpLocalPort(to)), bytes);
}

test('waitAny reports which fd is readable, drains the eventfd, and times out with 0', { skip }, () => {
  withFds(({ a, b, tx, wake }) => {
    const n = native!;
    let t0 = Date.now();
    assert.equal(n.waitAny(a, b, wake, 30, 0), 0, 'nothing queued: timeout');
    assert.ok(Date.now() - t0 >= 20, 'it did wait');

    sendTo(tx, b, 10);
    assert.equal(n.waitAny(a, b, wake, 1000, 0), 2, 'the second fd (UDP) is readable');
    sendTo(tx, a, 10);
    assert.equal(n.waitAny(a, b, wake, 1000, 0), 3, 'both are readable');

    // Empty both queues with non-blocking looks: they return what is queued, then 0 without waiting.
    const buf = Buffer.alloc(4 * 256);
    const offs = new Uint32Array(4);
    const lens = new Uint32Array(4);
    const metas = new Uint8Array(80);
    for (const fd of [a, b]) {
      assert.equal(n.udpRecvMany(fd, buf, 256, offs, lens, metas, 0, undefined, false), 1);
      t0 = Date.now();
      assert.equal(n.udpRecvMany(fd, buf, 256, offs, lens, metas, 0, undefined, false), 0);
      assert.ok(Date.now() - t0 < 50, 'timeout 0 never blocks');
    }

    n.eventfdSignal(wake);
    t0 = Date.now();
    assert.equal(n.waitAny(a, b, wake, 5000, 0), 4, 'woken by the eventfd');
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(n.waitAny(a, b, wake, 20, 0), 0, 'eventfd drained: a plain timeout again');
  });
});

test('waitAny spins for at most spinUs, returns at once when something is queued, then sleeps', { skip }, () => {
  withFds(({ a, b, tx, wake }) => {
    const n = native!;
    sendTo(tx, a, 5);
    let t0 = process.hrtime.bigint();
    assert.equal(n.waitAny(a, b, wake, 1000, 200_000), 1, 'a queued packet ends the spin at once');
    assert.ok(Number(process.hrtime.bigint() - t0) / 1e6 < 100);

    t0 = process.hrtime.bigint();
    assert.equal(n.waitAny(b, wake, wake, 0, 20_000), 0, 'nothing comes: 0 after the spin');
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.ok(ms >= 19 && ms < 1000, `spun ~20 ms, not forever (${ms.toFixed(1)} ms)`);
  });
});

test('waitAny rejects bad arguments', { skip }, () => {
  const n = native!;
  assert.throws(() => n.waitAny(-1, 0, 0, 0, 0), /tunFd|range/);
  assert.throws(() => n.waitAny(0, 0, 0, 0, -5), /spinUs|range/);
  assert.throws(() => n.waitAny(0, 0, 0, 0, 2_000_000), /spinUs|range/);
});
