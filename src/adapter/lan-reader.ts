// Worker thread of PacketLanPort: blocks in the native lanRecv on the packet socket (which hands out wire-size
// frames: GRO/TSO super-frames cut, partial checksums completed) and posts them to the main thread in batches,
// packed back to back in one transferred buffer. lanRecv counts into a shared array the main thread reads when
// asked (frames the fast paths took — ARP/ND answers, packets carried into general nodes' pairs — wake nobody).
// Stops when the shared flag is set.

import { parentPort, workerData } from 'node:worker_threads';
import { lanNative, MAX_FRAME, type ReaderBatch, type ReaderInit } from './lan-port.js';

/** Output slots per read call (each MAX_FRAME bytes): a batch, plus room for one cut 64 KiB super-frame. */
const SLOTS = 128;
/** Tunable: how long one blocking read waits before checking the stop flag (ms). */
const POLL_MS = 200;

const init = workerData as ReaderInit;
const stop = new Int32Array(init.stop);
const native = lanNative();
const scratch = Buffer.allocUnsafe(70_000);
const out = Buffer.allocUnsafe(SLOTS * MAX_FRAME + 64);
const lengths = new Uint32Array(SLOTS);
const stats = new Uint32Array(init.stats);

while (Atomics.load(stop, 0) === 0) {
  let n: number;
  try {
    n = native.lanRecv(init.fd, scratch, out, MAX_FRAME, lengths, stats, POLL_MS);
  } catch {
    break; // the socket was closed
  }
  if (n === 0) continue;
  let total = 0;
  for (let i = 0; i < n; i++) total += lengths[i]!;
  const bytes = new Uint8Array(total);
  let at = 0;
  for (let i = 0; i < n; i++) {
    bytes.set(out.subarray(i * MAX_FRAME, i * MAX_FRAME + lengths[i]!), at);
    at += lengths[i]!;
  }
  const batch: ReaderBatch = { bytes, lengths: lengths.slice(0, n) };
  parentPort!.postMessage(batch, [bytes.buffer, batch.lengths.buffer as ArrayBuffer]);
}
