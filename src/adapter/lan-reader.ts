// Worker thread of PacketLanPort: blocks in poll/read on the packet socket and posts frames to the main thread
// in batches (up to BATCH per message, each frame a transferred copy). Stops when the shared flag is set.

import { parentPort, workerData } from 'node:worker_threads';
import { requireNative } from '../net/tun/native.js';
import { MAX_FRAME, type ReaderInit } from './lan-port.js';
import { checksumNotReady, completePartialChecksum } from './partial-checksum.js';

const BATCH = 64;
/** Tunable: how long one blocking read waits before checking the stop flag (ms). */
const POLL_MS = 200;

const init = workerData as ReaderInit;
const stop = new Int32Array(init.stop);
const native = requireNative();
const buf = Buffer.allocUnsafe(MAX_FRAME);
const status = new Uint32Array(1);
const read = (timeoutMs: number): number => native.packetRead!(init.fd, buf, timeoutMs, status);

while (Atomics.load(stop, 0) === 0) {
  const out: Uint8Array[] = [];
  let n: number;
  try {
    n = read(POLL_MS);
  } catch {
    break; // the socket was closed
  }
  while (n > 0) {
    const frame = Uint8Array.prototype.slice.call(buf, 0, n);
    if (checksumNotReady(status[0]!)) completePartialChecksum(frame);
    out.push(frame);
    if (out.length >= BATCH) break;
    try {
      n = read(0);
    } catch {
      n = 0;
    }
  }
  if (out.length) parentPort!.postMessage(out, out.map((f) => f.buffer as ArrayBuffer));
}
