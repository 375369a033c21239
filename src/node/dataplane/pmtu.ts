// Datagram packetization-layer path MTU discovery for one tunnel path (RFC 8899 style), run by the data-plane worker
// per peer slot. It needs no ICMP: probes are capsules sealed with the End Key session whose padding makes the outer
// IP datagram exactly the probed size (native/dataplane_pmtu.inc, docs/PROTOCOL.md "Path MTU probes"); the peer
// acknowledges each one it opens. A relayed path is probed end to end, through the TRS, so both hops count.
//
//   start ──probe at the largest size (TUN MTU + overhead, capped by the kernel's path MTU)──► ack: done
//     │ no ack after PROBE_TRIES × PROBE_TIMEOUT_MS: black hole ─► PLPMTU = base, search up
//   search: binary search between the largest size acked and the smallest that failed, to SEARCH_STEP bytes ─► done
//   done: every CONFIRM_MS with traffic, one probe at the current size (fails: black hole, search from base again);
//         every RAISE_MS, if below the largest size, search up again. A move (new endpoint) restarts at `start`.
//
// The search is optimistic at start: until a probe fails the tunnel keeps its full MTU, so a good path never pays.
// Sizes are outer IP datagram bytes; the engine turns the PLPMTU into the usable inner MTU (native/pmtu.c).

/** Tunable: how long a probe may go unanswered before it counts as lost (ms). */
export const PROBE_TIMEOUT_MS = 400;
/** Tunable: probes of one size sent before the size counts as not carried. */
export const PROBE_TRIES = 2;
/** Tunable: the search stops when the bounds are this close (bytes). */
export const SEARCH_STEP = 16;
/** Tunable: the size in use is probed again this often (ms) while traffic flows: a path that narrowed later (and
 *  drops the ICMP errors that would say so) is found within this time plus a search. Idle paths are not probed. */
export const CONFIRM_MS = 5_000;
/** Tunable: a path confirmed below its largest size is searched up again this often (ms). */
export const RAISE_MS = 120_000;
/** Smallest outer datagram assumed to pass (RFC 8899 BASE_PLPMTU): IPv6 links carry 1280, IPv4 paths 1200 here. */
export const BASE_V4 = 1200;
export const BASE_V6 = 1280;

type State = 'start' | 'search' | 'done' | 'confirm';

export interface ProbeRequest {
  size: number;
  id: number;
}

export class PathMtuSearch {
  /** The probed limit for the engine (outer bytes); 0 = not limited by probes (nothing failed yet). */
  plpmtu = 0;
  /** Black holes found (a size that had been assumed or confirmed stopped passing). */
  blackHoles = 0;
  private state: State = 'start';
  private lo: number;
  private hi: number;
  private probe: { size: number; id: number; sentAt: number; tries: number } | null = null;
  private next = 0;
  private doneAt = 0;
  private nextId: number;

  /**
   * @param max largest outer datagram the tunnel would send (TUN MTU + outer IP + UDP + capsule overhead)
   * @param base smallest outer datagram assumed to pass (BASE_V4 / BASE_V6)
   */
  constructor(
    private readonly max: number,
    private readonly base: number,
    now: number,
    firstId = 1,
  ) {
    this.lo = base;
    this.hi = max;
    this.nextId = firstId >>> 0;
    this.next = now;
  }

  get phase(): State {
    return this.state;
  }

  /**
   * Advances the search at `now`; `kernel` is the kernel's path MTU toward the peer (0 = unknown): no probe is ever
   * larger (the kernel would fragment it and the probe would prove nothing); `busy`: the peer was sent traffic
   * since the last confirmation (else none is made). Returns a probe to send, or null.
   */
  tick(now: number, kernel: number, busy = true): ProbeRequest | null {
    const cap = kernel > 0 ? Math.min(this.max, kernel) : this.max;
    if (this.hi > cap) this.hi = cap;
    if (this.lo > cap) this.lo = cap; // the kernel learned a smaller path MTU (ICMP, local link)
    if (this.probe && this.probe.size > cap) {
      this.probe = null; // the kernel learned a smaller path MTU meanwhile: that size is settled without us
      this.next = now;
    }
    if (this.probe) {
      if (now - this.probe.sentAt < PROBE_TIMEOUT_MS) return null;
      if (this.probe.tries < PROBE_TRIES) return this.send(this.probe.size, now, this.probe.tries + 1);
      this.failed(this.probe.size, now, cap);
    }
    if (now < this.next) return null;
    switch (this.state) {
      case 'start':
        return this.send(cap, now, 1);
      case 'search':
        return this.step(now);
      case 'done':
      case 'confirm':
        if (this.lo < cap && now - this.doneAt >= RAISE_MS) {
          this.state = 'search';
          this.hi = cap;
          this.doneAt = now;
          return this.step(now);
        }
        if (!busy) {
          this.next = now + CONFIRM_MS; // no traffic since the last confirmation: nothing to protect
          return null;
        }
        this.state = 'confirm';
        return this.send(Math.min(this.lo, cap), now, 1);
    }
  }

  /** An ack of probe `id` (of `size` bytes) arrived. Stale or unknown acks are ignored. */
  ack(id: number, size: number, now: number): void {
    if (!this.probe || this.probe.id !== id || this.probe.size !== size) return;
    this.probe = null;
    if (this.state === 'search') {
      this.lo = Math.max(this.lo, size);
      this.plpmtu = this.lo;
      this.next = now;
      return;
    }
    // start (the largest size passes: stay unlimited) or confirm (the size in use still passes)
    if (this.state === 'start') this.lo = size;
    this.finish(now);
  }

  /** The path changed (mobility, another relay or a direct path): search again from the start, optimistically. */
  restart(now: number): void {
    this.state = 'start';
    this.lo = this.base;
    this.hi = this.max;
    this.probe = null;
    this.plpmtu = 0;
    this.next = now;
  }

  private send(size: number, now: number, tries: number): ProbeRequest {
    const id = tries > 1 && this.probe ? this.probe.id : (this.nextId = (this.nextId + 1) >>> 0);
    this.probe = { size, id, sentAt: now, tries };
    return { size, id };
  }

  private step(now: number): ProbeRequest | null {
    if (this.hi - this.lo < SEARCH_STEP) {
      this.finish(now);
      return null;
    }
    return this.send(this.lo + Math.ceil((this.hi - this.lo) / 2), now, 1);
  }

  private finish(now: number): void {
    if (this.state !== 'confirm') this.doneAt = now; // a confirmation does not postpone the next raise
    this.state = 'done';
    this.next = now + CONFIRM_MS;
  }

  private failed(size: number, now: number, cap: number): void {
    this.probe = null;
    if (this.state === 'start' || this.state === 'confirm') {
      // What we sent at (assumed or confirmed) does not pass: fall back to the base size at once, then search up.
      this.blackHoles++;
      this.lo = Math.min(this.base, cap);
      this.plpmtu = this.lo;
      this.hi = Math.min(size - 1, cap);
      this.state = 'search';
      this.next = now;
      return;
    }
    this.hi = size - 1;
    this.next = now;
  }
}
