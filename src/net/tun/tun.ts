// The TUN device interface the data-plane engine sees (wireguard-go tun.Device style), and its typed error.
// Implementations: LinuxTun (linux.ts, a real /dev/net/tun queue) and MemoryTun (memory.ts, for tests).
import { CyphonicError } from '../../util/errors.js';

/**
 * Error raised by TUN devices. Codes:
 * - `ERR_CLOSED`: read/write after close().
 * - `ERR_TUN_OPEN`: the device could not be opened (no /dev/net/tun, no CAP_NET_ADMIN, busy name...).
 * - `ERR_TUN_CONFIG`: an `ip` command configuring the device failed (message carries its stderr).
 * - `ERR_TUN_IO`: read/write failed at the OS level (`errno` holds the name, e.g. EINVAL, EIO).
 * - `ERR_TUN_ARG`: invalid argument (buffer too small, bad timeout, bad name/MTU/address).
 * - `ERR_NATIVE_UNAVAILABLE`: the native addon is not built or failed to load.
 */
export class TunError extends CyphonicError {
  /** OS error name (EPERM, EBUSY...) when the failure came from a system call. */
  readonly errno: string | undefined;
  constructor(code: string, message: string, options?: { cause?: unknown; errno?: string }) {
    super(code, message, options);
    this.errno = options?.errno;
  }
}

/**
 * One queue of a layer-3 TUN device carrying raw IPv4/IPv6 packets (no packet-information header).
 * All methods are synchronous: the data plane calls them from a dedicated worker thread.
 */
export interface TunDevice {
  /** Interface name as the kernel knows it (e.g. "cyp0"). */
  readonly name: string;
  /** Device MTU: the largest packet read() can return and write() should be given. */
  readonly mtu: number;
  /**
   * Reads one packet into `buf` starting at offset 0 and returns its length.
   * Blocks the calling thread for at most `timeoutMs` (0 = just poll, -1 = no limit) and returns 0 if no
   * packet arrived in time (also on EINTR, and when a packet longer than `buf` had to be dropped).
   * `buf` should be at least `mtu` bytes. Never returns a partial packet.
   * After close(): throws TunError `ERR_CLOSED`. OS failures throw TunError `ERR_TUN_IO`.
   */
  read(buf: Buffer, timeoutMs: number): number;
  /**
   * Hands one complete IP packet to the kernel (the bytes are copied before returning, so the caller may
   * reuse `packet`). Throws TunError `ERR_TUN_IO` if the kernel rejects it (e.g. EINVAL for an empty or
   * non-IP packet) and `ERR_CLOSED` after close().
   */
  write(packet: Buffer): void;
  /** Releases the device. Idempotent; afterwards read() and write() throw TunError `ERR_CLOSED`. */
  close(): void;
}

/** Checks a read() timeout: an integer >= -1. */
export function checkTimeout(timeoutMs: number): void {
  if (!Number.isInteger(timeoutMs) || timeoutMs < -1 || timeoutMs > 0x7fffffff) {
    throw new TunError('ERR_TUN_ARG', `timeoutMs must be an integer -1..2^31-1, got ${timeoutMs}`);
  }
}

/** Checks an MTU: 68 (IPv4 minimum) .. 65535. */
export function checkMtu(mtu: number): void {
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
    throw new TunError('ERR_TUN_ARG', `MTU must be an integer 68..65535, got ${mtu}`);
  }
}

/** Checks an interface name as Linux accepts it: 1..15 bytes of [A-Za-z0-9_.-], not "." or "..". */
export function checkIfName(name: string): void {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,15}$/.test(name) || name === '.' || name === '..') {
    throw new TunError('ERR_TUN_ARG', `invalid interface name ${JSON.stringify(name)}`);
  }
}
