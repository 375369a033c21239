// First-contact tracing: with CYPHONIC_TRACE=1 in a process's environment, the steps of a route selection and a
// tunnel handshake write one line each to stderr — `{"trace":"route.ask","at":<µs, monotonic>,"id":…}` — so
// bench/first-contact.ts can lay the steps of every process (initiator, NMS, responder) on one time line and say
// where the milliseconds of a first contact go. Off (the default), a call is one boolean test.
//
// Times are the monotonic clock (process.hrtime) in µs: every process on the machine reads the same one.

const ON = process.env['CYPHONIC_TRACE'] === '1';

/** Whether tracing is on in this process. */
export const tracing = ON;

/** Notes step `label` of the exchange `id` (a path id, or the name or address asked for) at the current time; `peer`: whom it concerns. */
export function trace(label: string, id: string | bigint | number, peer?: string): void {
  if (!ON) return;
  const at = process.hrtime.bigint() / 1000n;
  const p = peer === undefined ? '' : `,"peer":${JSON.stringify(peer)}`;
  process.stderr.write(`{"trace":"${label}","at":${at},"id":"${String(id)}"${p}}\n`);
}
