// A reader thread: a worker that blocks in poll/read on one descriptor and posts what it read to the main thread,
// until a shared stop flag is set. Used by the adapter's LAN port (src/adapter/lan-port.ts: frames from a packet
// socket) and a general node's packet pair (src/node/dataplane/pair-host.ts: packets from its engine).
// The worker script gets `stop` (a SharedArrayBuffer: Int32Array [0] = 1 asks it to stop) in its workerData and
// checks it between reads; stop() waits for it to exit (or terminates it after STOP_WAIT_MS).

import { Worker } from 'node:worker_threads';

/** Tunable: how long stop() waits for the reader to see the flag before terminating it (ms). */
const STOP_WAIT_MS = 2000;

export class ReaderThread<T> {
  private readonly worker: Worker;
  private readonly stopFlag: Int32Array;

  constructor(script: URL, data: Record<string, unknown>, name: string, onMessage: (message: T) => void) {
    const stop = new SharedArrayBuffer(4);
    this.stopFlag = new Int32Array(stop);
    this.worker = new Worker(script, { workerData: { ...data, stop }, name });
    this.worker.on('message', onMessage);
    this.worker.on('error', () => {});
  }

  /** Asks the reader to stop and waits until it has (then its descriptor may be closed). */
  async stop(): Promise<void> {
    Atomics.store(this.stopFlag, 0, 1);
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => void this.worker.terminate().then(() => resolve()), STOP_WAIT_MS);
      this.worker.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
