// Linux TUN device: opens /dev/net/tun through the native addon (TUNSETIFF) and configures it with `ip`.
// LinuxTun is one queue (fd) of the device; a worker thread can wrap an fd opened elsewhere with LinuxTun.fromFd.
import { execFile, execFileSync } from 'node:child_process';
import { closeSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { promisify } from 'node:util';
import { formatCidr, parseCidr } from '../addr/cidr.js';
import { requireNative, type NativeAddon } from './native.js';
import { TunError, checkIfName, checkMtu, type TunDevice } from './tun.js';

const execFileAsync = promisify(execFile);

export const DEFAULT_TUN_NAME = 'cyp0';

export interface LinuxTunOptions {
  /** Interface name (default "cyp0"). If a persistent device of that name exists, it is attached to. */
  name?: string;
  mtu: number;
  /** Interface addresses with their prefix: v4 "a.b.c.d/n", v6 "x:y::z/n" (added with nodad). */
  addresses: { v4?: string; v6?: string };
  /** CIDRs routed into the device (`ip route replace CIDR dev NAME`). Host bits must be zero. */
  routes?: string[];
  /** Open with IFF_MULTI_QUEUE so that openQueue() can add queues for more reader threads. */
  multiQueue?: boolean;
  /**
   * Open with IFF_VNET_HDR and ask for checksum, TCP and (where the kernel has it) UDP segmentation offload (the
   * data plane's fast path):
   * every packet then starts with a virtio_net_hdr, so read()/write() here refuse and only the native batch
   * calls that understand the header (vnetSegment, tunWriteMany) may be used on the fd.
   */
  vnetHdr?: boolean;
  /** The device's transmit queue length (for a TUN: packets waiting for the reader; the kernel's default is 500). */
  txQueueLen?: number;
}

/** Maps an error thrown by the addon to a TunError. */
function nativeError(err: unknown, what: string, code = 'ERR_TUN_IO'): TunError {
  const e = err as { code?: unknown; message?: unknown };
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  if (e?.code === 'ERR_NATIVE_ARG') return new TunError('ERR_TUN_ARG', `${what}: ${msg}`, { cause: err });
  const errno = typeof e?.code === 'string' ? e.code : undefined;
  return new TunError(code, `${what}: ${msg}`, { cause: err, errno });
}

/** Runs `ip ARGS...`; failures become TunError ERR_TUN_CONFIG with ip's stderr. */
async function ip(args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync('ip', args, { timeout: 10_000 });
    return stdout;
  } catch (err) {
    const stderr = (err as { stderr?: unknown }).stderr;
    const detail = typeof stderr === 'string' && stderr.trim() !== '' ? stderr.trim() : (err as Error).message;
    throw new TunError('ERR_TUN_CONFIG', `ip ${args.join(' ')}: ${detail}`, { cause: err });
  }
}

/** Validates "addr/prefix" of the given family and returns it unchanged. */
function checkIfAddress(text: string, family: 4 | 6): string {
  const slash = typeof text === 'string' ? text.indexOf('/') : -1;
  const addr = slash < 0 ? '' : text.slice(0, slash);
  const prefix = slash < 0 ? '' : text.slice(slash + 1);
  const okAddr = family === 4 ? isIPv4(addr) : isIPv6(addr) && !addr.includes('%');
  if (!okAddr || !/^\d{1,3}$/.test(prefix) || Number(prefix) > (family === 4 ? 32 : 128)) {
    throw new TunError('ERR_TUN_ARG', `invalid IPv${family} interface address ${JSON.stringify(text)} (want addr/prefix)`);
  }
  return text;
}

/** Canonical CIDR text of a route, or TunError ERR_TUN_ARG. */
function checkRoute(route: string): { cidr: string; family: 4 | 6 } {
  try {
    const c = parseCidr(route);
    return { cidr: formatCidr(c), family: c.family };
  } catch (err) {
    throw new TunError('ERR_TUN_ARG', `invalid route: ${(err as Error).message}`, { cause: err });
  }
}

/** Canonical form of a `dst` from `ip -j route` ("default", "10.0.0.1", "10.0.0.0/8"). */
function normalizeDst(dst: string, family: 4 | 6): string | null {
  const text = dst === 'default' ? (family === 4 ? '0.0.0.0/0' : '::/0') : dst.includes('/') ? dst : `${dst}/${family === 4 ? 32 : 128}`;
  try {
    return formatCidr(text);
  } catch {
    return null;
  }
}

/** What a pre-existing device already had, so close() removes only what we added. */
async function snapshot(name: string): Promise<{ addrs: Set<string>; routes: Set<string> } | null> {
  try {
    await ip(['link', 'show', 'dev', name]);
  } catch {
    return null; // no such device: TUNSETIFF will create it, and it vanishes (with addresses/routes) on close
  }
  const addrs = new Set<string>();
  const routes = new Set<string>();
  const links = JSON.parse(await ip(['-j', 'addr', 'show', 'dev', name])) as { addr_info?: { local?: string; prefixlen?: number }[] }[];
  for (const l of links) for (const a of l.addr_info ?? []) if (a.local) addrs.add(`${a.local}/${a.prefixlen}`);
  for (const family of [4, 6] as const) {
    const rs = JSON.parse(await ip([`-${family}`, '-j', 'route', 'show', 'dev', name])) as { dst?: string }[];
    for (const r of rs) {
      const n = r.dst ? normalizeDst(r.dst, family) : null;
      if (n) routes.add(n);
    }
  }
  return { addrs, routes };
}

/**
 * Opens (creating if needed) and configures a TUN device: `ip link set dev NAME mtu MTU up`, `ip addr add`,
 * `ip -6 addr add ... nodad`, `ip route replace CIDR dev NAME`. Needs CAP_NET_ADMIN.
 * On failure the fd is closed (which removes a device we created) and a TunError is thrown.
 */
export async function openLinuxTun(opts: LinuxTunOptions): Promise<LinuxTun> {
  const name = opts.name ?? DEFAULT_TUN_NAME;
  checkIfName(name);
  checkMtu(opts.mtu);
  const v4 = opts.addresses?.v4 === undefined ? undefined : checkIfAddress(opts.addresses.v4, 4);
  const v6 = opts.addresses?.v6 === undefined ? undefined : checkIfAddress(opts.addresses.v6, 6);
  const routes = (opts.routes ?? []).map(checkRoute);
  const addon = requireNative();

  const before = await snapshot(name);
  let opened: { fd: number; name: string; vnetHdr?: boolean; offload?: boolean; uso?: boolean };
  try {
    opened = addon.tunOpen(name, { multiQueue: opts.multiQueue === true, vnetHdr: opts.vnetHdr === true, txQueueLen: opts.txQueueLen });
  } catch (err) {
    throw nativeError(err, `open TUN ${name}`, 'ERR_TUN_OPEN');
  }
  const cleanup: string[][] = [];
  const tun = new LinuxTun(addon, opened.fd, opened.name, opts.mtu, opts.multiQueue === true, cleanup, {
    vnetHdr: opened.vnetHdr === true,
    offload: opened.offload === true,
    uso: opened.uso === true,
  });
  try {
    const dev = opened.name;
    await ip(['link', 'set', 'dev', dev, 'mtu', String(opts.mtu), 'up']);
    if (v4 !== undefined && !before?.addrs.has(v4)) {
      await ip(['addr', 'add', v4, 'dev', dev]);
      if (before) cleanup.push(['addr', 'del', v4, 'dev', dev]);
    }
    if (v6 !== undefined && !before?.addrs.has(v6)) {
      await ip(['-6', 'addr', 'add', v6, 'dev', dev, 'nodad']);
      if (before) cleanup.push(['-6', 'addr', 'del', v6, 'dev', dev]);
    }
    for (const r of routes) {
      await ip([`-${r.family}`, 'route', 'replace', r.cidr, 'dev', dev]);
      if (before && !before.routes.has(r.cidr)) cleanup.push([`-${r.family}`, 'route', 'del', r.cidr, 'dev', dev]);
    }
  } catch (err) {
    tun.close();
    throw err;
  }
  return tun;
}

/** One queue (fd) of a Linux TUN device. Reads and writes are synchronous system calls on this thread. */
export class LinuxTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  readonly multiQueue: boolean;
  /** Packets carry a virtio_net_hdr (opened with vnetHdr). */
  readonly vnetHdr: boolean;
  /** The kernel accepted checksum and TCP segmentation offload: reads may carry up to 64 KiB TCP segments. */
  readonly offload: boolean;
  /** The kernel also accepted UDP segmentation offload (6.2+): reads may carry USO super-frames, writes may merge datagrams. */
  readonly uso: boolean;
  readonly #addon: NativeAddon;
  readonly #cleanup: string[][];
  #fd: number;

  /** Use openLinuxTun() or LinuxTun.fromFd(). */
  constructor(
    addon: NativeAddon,
    fd: number,
    name: string,
    mtu: number,
    multiQueue: boolean,
    cleanup: string[][] = [],
    vnet: { vnetHdr: boolean; offload: boolean; uso?: boolean } = { vnetHdr: false, offload: false },
  ) {
    this.#addon = addon;
    this.vnetHdr = vnet.vnetHdr;
    this.offload = vnet.offload;
    this.uso = vnet.uso === true;
    this.#fd = fd;
    this.name = name;
    this.mtu = mtu;
    this.multiQueue = multiQueue;
    this.#cleanup = cleanup;
  }

  /**
   * Wraps a TUN fd opened elsewhere (typically by the main thread, passed to a worker with `detach()`).
   * The wrapper owns the fd: close() closes it, and removes nothing else.
   */
  static fromFd(fd: number, name: string, mtu: number): LinuxTun {
    if (!Number.isInteger(fd) || fd < 0) throw new TunError('ERR_TUN_ARG', `invalid fd ${fd}`);
    checkIfName(name);
    checkMtu(mtu);
    return new LinuxTun(requireNative(), fd, name, mtu, false);
  }

  /** The file descriptor (-1 once closed or detached). */
  get fd(): number {
    return this.#fd;
  }

  read(buf: Buffer, timeoutMs: number): number {
    const fd = this.#plain();
    try {
      return this.#addon.tunRead(fd, buf, timeoutMs);
    } catch (err) {
      throw nativeError(err, `read ${this.name}`);
    }
  }

  /**
   * Reads up to `lengths.length` packets (and no more than fit in `buf`): packet i at buf[i*slotSize..]
   * with length lengths[i]. Blocks up to timeoutMs for the first packet only; returns the count (0 = timeout).
   * slotSize should be >= mtu; an oversized packet is dropped and ends the batch.
   */
  readBatch(buf: Buffer, slotSize: number, lengths: Uint32Array, timeoutMs: number): number {
    const fd = this.#plain();
    try {
      return this.#addon.tunReadBatch(fd, buf, slotSize, lengths, timeoutMs);
    } catch (err) {
      throw nativeError(err, `read ${this.name}`);
    }
  }

  write(packet: Buffer): void {
    this.writeFrom(packet, 0, packet.length);
  }

  /** write() of buf[offset, offset+length) without making a subarray. */
  writeFrom(buf: Buffer, offset: number, length: number): void {
    const fd = this.#plain();
    let n: number;
    try {
      n = this.#addon.tunWrite(fd, buf, offset, length);
    } catch (err) {
      throw nativeError(err, `write ${this.name}`);
    }
    if (n !== length) throw new TunError('ERR_TUN_IO', `write ${this.name}: short write (${n} of ${length} bytes)`);
  }

  /** Attaches one more queue (fd) to a multi-queue device, for another reader thread. */
  openQueue(): LinuxTun {
    this.#open();
    if (!this.multiQueue) throw new TunError('ERR_TUN_ARG', `${this.name} was not opened with multiQueue`);
    try {
      const q = this.#addon.tunOpen(this.name, { multiQueue: true });
      return new LinuxTun(this.#addon, q.fd, q.name, this.mtu, true);
    } catch (err) {
      throw nativeError(err, `open queue of ${this.name}`, 'ERR_TUN_OPEN');
    }
  }

  /**
   * Gives up ownership of the fd without closing it (to hand it to a worker that calls fromFd) and returns
   * it; this object then behaves as closed. Cleanup of a pre-existing device's addresses/routes is dropped too.
   */
  detach(): number {
    const fd = this.#open();
    this.#fd = -1;
    this.#cleanup.length = 0;
    return fd;
  }

  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    try {
      closeSync(fd);
    } catch {
      // already closed elsewhere: nothing left to release
    }
    // Only for a device that existed before openLinuxTun: remove the addresses/routes we added to it.
    for (const args of this.#cleanup.splice(0)) {
      try {
        execFileSync('ip', args, { stdio: 'ignore', timeout: 10_000 });
      } catch {
        // best effort: the entry may already be gone
      }
    }
  }

  #open(): number {
    if (this.#fd < 0) throw new TunError('ERR_CLOSED', `TUN ${this.name} is closed`);
    return this.#fd;
  }

  /** The fd for plain packet I/O; refused on a vnetHdr device, whose packets need the header handled. */
  #plain(): number {
    const fd = this.#open();
    if (this.vnetHdr) throw new TunError('ERR_TUN_ARG', `${this.name} carries virtio_net_hdr: use the data plane's offload calls`);
    return fd;
  }
}
