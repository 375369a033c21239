// The addon's kernel-timestamped packet reads (packetStampOn / packetReadStamped, native/cyphonic_native.c), which the
// adapter benchmark's LAN probe uses to time answers as a capture on the device's interface would:
// - hostile arguments are refused with a typed error before anything is read (short info array, empty buffer,
//   wrong types), and a frame longer than the buffer is dropped (0), never written past the buffer;
// - on loopback (root only: a packet socket needs CAP_NET_RAW), a stamped socket sees a frame another socket sent
//   leave (PACKET_OUTGOING) and arrive, both with kernel timestamps, arrival not before departure, bytes intact.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { loadNativeAddon } from '../../../src/native/addon.js';

const native = loadNativeAddon();
const PACKET_OUTGOING = 4;
/** IEEE 802 local experimental ethertype: nothing on the host handles it. */
const ETHERTYPE = 0x88b5;

function openLo(): number | null {
  if (!native?.packetOpen) return null;
  try {
    return native.packetOpen('lo');
  } catch {
    return null; // no CAP_NET_RAW
  }
}

const fd0 = openLo();
const skip = fd0 === null ? 'needs the native addon and CAP_NET_RAW' : false;
if (fd0 !== null) native!.fdClose(fd0);

describe('packetReadStamped', { skip }, () => {
  it('refuses hostile arguments and drops a frame longer than the buffer', () => {
    const fd = openLo()!;
    const tx = openLo()!;
    try {
      native!.packetStampOn!(fd);
      assert.throws(() => native!.packetReadStamped!(fd, Buffer.alloc(64), 0, new Uint32Array(3)), (e: Error) => e instanceof RangeError);
      assert.throws(() => native!.packetReadStamped!(fd, Buffer.alloc(0), 0, new Uint32Array(4)), (e: Error) => e instanceof RangeError);
      assert.throws(() => native!.packetReadStamped!(fd, Buffer.alloc(64), 0, new Float64Array(4) as unknown as Uint32Array), (e: Error) => e instanceof TypeError);
      assert.throws(() => native!.packetReadStamped!(-1, Buffer.alloc(64), 0, new Uint32Array(4)), (e: Error) => e instanceof RangeError);
      assert.throws(() => native!.packetStampOn!(-1), (e: Error) => e instanceof RangeError);

      // A 200-byte frame into a 100-byte buffer (a larger guard region after it): dropped, nothing past 100 written.
      const frame = Buffer.concat([Buffer.alloc(12), Buffer.from([ETHERTYPE >> 8, ETHERTYPE & 0xff]), randomBytes(186)]);
      native!.tunWrite(tx, frame, 0, frame.length);
      const whole = Buffer.alloc(300, 0xee);
      const small = whole.subarray(0, 100);
      const info = new Uint32Array(4).fill(7);
      let drops = 0;
      for (let i = 0; i < 64; i++) {
        const n = native!.packetReadStamped!(fd, small, 50, info);
        if (n === 0) {
          drops++;
          assert.deepEqual([...info.subarray(2)], [0, 0], 'a dropped frame reports nothing');
          break;
        }
      }
      assert.equal(drops, 1);
      assert.ok(whole.subarray(100).every((b) => b === 0xee), 'nothing written past the buffer');
    } finally {
      native!.fdClose(fd);
      native!.fdClose(tx);
    }
  });

  it('stamps a frame leaving and arriving on loopback', () => {
    const fd = openLo()!;
    const tx = openLo()!; // the kernel never shows a socket its own sends: another one sends
    try {
      native!.packetStampOn!(fd);
      const frame = Buffer.concat([Buffer.alloc(12), Buffer.from([ETHERTYPE >> 8, ETHERTYPE & 0xff]), randomBytes(50)]);
      native!.tunWrite(tx, frame, 0, frame.length);
      const buf = Buffer.alloc(2048);
      const info = new Uint32Array(4);
      const seen: { out: boolean; ns: bigint }[] = [];
      for (let i = 0; i < 256 && seen.length < 2; i++) {
        const n = native!.packetReadStamped!(fd, buf, 200, info);
        if (n === 0) break;
        if (!buf.subarray(0, n).equals(frame)) continue; // someone else's loopback traffic
        assert.equal(info[3], 1, 'stamped');
        assert.ok(info[1]! < 1e9);
        seen.push({ out: info[2] === PACKET_OUTGOING, ns: BigInt(info[0]!) * 1_000_000_000n + BigInt(info[1]!) });
      }
      assert.equal(seen.length, 2);
      assert.deepEqual(seen.map((s) => s.out), [true, false], 'seen leaving, then arriving');
      const now = BigInt(Math.floor(Date.now() / 1000)) & 0xffffffffn;
      assert.ok(Number(now - seen[0]!.ns / 1_000_000_000n) <= 5, 'CLOCK_REALTIME stamps');
      assert.ok(seen[1]!.ns >= seen[0]!.ns);
      assert.ok(seen[1]!.ns - seen[0]!.ns < 1_000_000_000n);
    } finally {
      native!.fdClose(fd);
      native!.fdClose(tx);
    }
  });
});
