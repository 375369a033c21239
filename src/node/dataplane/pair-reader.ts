// Worker thread of PairHost (pair-host.ts): blocks in poll/read on the host's end of a packet pair and posts what
// the engine wrote there to the main thread in batches (up to BATCH packets per message, each a transferred copy).
// For a general node, the adapter's LAN fast path (native lanFastIn, native/lan_fast.c) first sends the plain
// TCP/UDP packets for the device straight to the LAN from this thread; only the rest is posted. Stops when the shared
// flag is set.

import { parentPort, workerData } from 'node:worker_threads';
import { loadNativeAddon } from '../../native/addon.js';
import type { PairReaderInit } from './pair-host.js';

const BATCH = 64;
/** Tunable: how long one blocking read waits before checking the stop flag (ms). */
const POLL_MS = 200;

const init = workerData as PairReaderInit;
const stop = new Int32Array(init.stop);
const native = loadNativeAddon();
if (!native) throw new Error('native addon unavailable');
const slot = init.mtu + 64;
const buf = Buffer.allocUnsafe(slot * BATCH);
const lengths = new Uint32Array(BATCH);
/** The adapter's fast path: sends packets a LAN fast table takes, zeroing their lengths (none: nothing to do). */
const fast = (native as { lanFastIn?: (fd: number, buf: Uint8Array, slot: number, lengths: Uint32Array, count: number) => number }).lanFastIn;

while (Atomics.load(stop, 0) === 0) {
  let n: number;
  try {
    n = native.tunReadBatch(init.fd, buf, slot, lengths, POLL_MS);
  } catch {
    break; // the socket was closed
  }
  if (n <= 0) continue;
  if (fast && fast(init.fd, buf, slot, lengths, n) === n) continue;
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) if (lengths[i]! > 0) out.push(Uint8Array.prototype.slice.call(buf, i * slot, i * slot + lengths[i]!));
  if (out.length) parentPort!.postMessage(out, out.map((p) => p.buffer as ArrayBuffer));
}
