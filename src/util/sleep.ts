// Abortable sleeps for long-lived loops (registration, keepalives): they end early when a signal aborts and never
// leave a listener behind on signals that outlive them.

/** Waits `ms`, or less when any of `signals` aborts; its listeners are removed either way (the signals live long). */
export function sleep(ms: number, ...signals: AbortSignal[]): Promise<void> {
  return new Promise((resolve) => {
    if (signals.some((s) => s.aborted)) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      for (const s of signals) s.removeEventListener('abort', done);
      resolve();
    }
    for (const s of signals) s.addEventListener('abort', done, { once: true });
  });
}
