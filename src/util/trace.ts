// First-contact tracing: with CYPHONIC_TRACE=1 in a process's environment, the steps of a route selection and a
// tunnel handshake write one line each to stderr — `{"trace":"route.ask","at":<µs, monotonic>,"cpu":<µs>,"id":…}` — so
// bench/first-contact.ts can lay the steps of every process (initiator, NMS, responder) on one time line and say
// where the milliseconds of a first contact go. Off (the default), a call is one boolean test.
//
// Times are the monotonic clock (process.hrtime) in µs: every process on the machine reads the same one. `cpu` is
// the CPU time the writing thread (`th`: 0 the main thread, else a worker's id) has used so far, in µs (the native
// addon's thread clock; where the addon cannot be loaded, the whole process's, marked `"cpuOf":"process"`): between
// two steps of one thread it tells work apart from waiting (for a CPU, a wake-up, another thread).

import { threadId } from 'node:worker_threads';
import { loadNativeAddon } from '../native/addon.js';

const ON = process.env['CYPHONIC_TRACE'] === '1';

/** Whether tracing is on in this process. */
export const tracing = ON;

let threadCpu: (() => number) | null | undefined;

function cpuField(): string {
  if (threadCpu === undefined) {
    const addon = loadNativeAddon();
    threadCpu = addon && typeof addon.threadCpuUs === 'function' ? () => addon.threadCpuUs() : null;
  }
  if (threadCpu) return `"cpu":${threadCpu()},"th":${threadId}`;
  const u = process.cpuUsage();
  return `"cpu":${u.user + u.system},"cpuOf":"process"`;
}

/** Notes step `label` of the exchange `id` (a path id, or the name or address asked for) at the current time; `peer`: whom it concerns. */
export function trace(label: string, id: string | bigint | number, peer?: string): void {
  if (!ON) return;
  const at = process.hrtime.bigint() / 1000n;
  const p = peer === undefined ? '' : `,"peer":${JSON.stringify(peer)}`;
  process.stderr.write(`{"trace":"${label}","at":${at},${cpuField()},"id":"${String(id)}"${p}}\n`);
}
