// Worker thread of PairHost (pair-host.ts): blocks in poll/read on the host's end of a packet pair and posts what
// the engine wrote there to the main thread in batches (up to BATCH packets per message, each a transferred copy).
// For a general node, the adapter's LAN fast path (native lanFastIn, native/lan_fast.c) first sends the plain
// TCP/UDP packets for the device straight to the LAN from this thread (with vnet, TCP GSO packets as one GSO frame);
// only the rest is posted. With vnet every datagram starts with a virtio_net_hdr: an empty one is stripped, a GSO
// packet is cut into plain packets by offload.c's vnet_segment (native vnetSegment; one it refuses is counted in
// the shared `refused` and dropped), so the main thread only ever sees plain packets. Stops when the shared flag is set.

import { parentPort, workerData } from 'node:worker_threads';
import { loadNativeAddon } from '../../native/addon.js';
import { VNET_HDR_LEN, type PairReaderInit } from './pair-host.js';

/** Packets per read batch: plain packets, or (vnet) datagrams of up to 64 KiB each. */
const BATCH = 64;
const VNET_BATCH = 16;
/** A vnet datagram's slot: the largest GSO packet the engine writes (header + 64 KiB IP packet) fits. */
const VNET_SLOT = 65536 + 512;
/** Segments one GSO packet may be cut into (the engine merges at most 64). */
const SEGS = 64;
/** Tunable: how long one blocking read waits before checking the stop flag (ms). */
const POLL_MS = 200;

const init = workerData as PairReaderInit;
const stop = new Int32Array(init.stop);
const refused = new Int32Array(init.refused);
const native = loadNativeAddon();
if (!native) throw new Error('native addon unavailable');
const pktSlot = init.mtu + 64;
const slot = init.vnet ? VNET_SLOT : pktSlot;
const batch = init.vnet ? VNET_BATCH : BATCH;
const buf = Buffer.allocUnsafe(slot * batch);
const lengths = new Uint32Array(batch);
const seg = init.vnet ? Buffer.allocUnsafe(pktSlot * SEGS) : Buffer.alloc(0);
const segLens = new Uint32Array(SEGS);
/** The adapter's fast path: sends packets a LAN fast table takes, zeroing their lengths (none: nothing to do). */
const fast = (native as { lanFastIn?: (fd: number, buf: Uint8Array, slot: number, lengths: Uint32Array, count: number, vnet: boolean) => number })
  .lanFastIn;

while (Atomics.load(stop, 0) === 0) {
  let n: number;
  try {
    n = native.tunReadBatch(init.fd, buf, slot, lengths, POLL_MS);
  } catch {
    break; // the socket was closed
  }
  if (n <= 0) continue;
  if (fast && fast(init.fd, buf, slot, lengths, n, init.vnet) === n) continue;
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const at = i * slot;
    const len = lengths[i]!;
    if (len === 0) continue;
    if (!init.vnet) {
      out.push(Uint8Array.prototype.slice.call(buf, at, at + len));
    } else if (len > VNET_HDR_LEN && buf[at] === 0 && buf[at + 1] === 0) {
      out.push(Uint8Array.prototype.slice.call(buf, at + VNET_HDR_LEN, at + len)); // no GSO, checksums complete
    } else {
      const k = native.vnetSegment(buf, at, len, seg, pktSlot, segLens);
      if (k <= 0) Atomics.add(refused, 0, 1);
      for (let j = 0; j < k; j++) out.push(Uint8Array.prototype.slice.call(seg, j * pktSlot, j * pktSlot + segLens[j]!));
    }
  }
  if (out.length) parentPort!.postMessage(out, out.map((p) => p.buffer as ArrayBuffer));
}
