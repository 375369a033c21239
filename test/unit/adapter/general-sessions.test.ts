// Unit tests for a general node's data path on the C engine (src/node/dataplane/dataplane.ts with a 'pair' device,
// pair-host.ts, pair-reader.ts), which replaced the general node's TypeScript sessions: two engines on loopback,
// each with a packet pair standing in for the adapter's LAN side (what GeneralNodeAgent writes in and frames out).
// Checked: packets written into one pair come out of the other (both families, in order), the path keepalive a
// general node writes into its pair (a 1-byte UDP packet to port 9) is sealed like any packet, packets to a
// destination without a session are held (bounded: 16) with one route request and flushed by the install, and
// garbage on the UDP port is counted while the engine keeps serving. No root needed.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { buildUdp, decodeIp, decodeUdp } from '../../../src/adapter/lan/ip.js';
import { loadNativeAddon } from '../../../src/native/addon.js';
import type { SessionKeys } from '../../../src/crypto/handshake.js';
import { DataPlane } from '../../../src/node/dataplane/dataplane.js';
import { silentLogger } from '../../../src/util/log.js';

const skip = loadNativeAddon() ? false : 'native addon not built';
const A = { vip4: '100.64.0.6', vip6: 'fd00::6' };
const B = { vip4: '100.64.0.7', vip6: 'fd00::7' };
const C = { vip4: '100.64.0.8', vip6: 'fd00::8' };

/** Both ends' keys for one path (`a` initiated it). */
function pathKeys(pathId: bigint): { a: SessionKeys; b: SessionKeys } {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  const common = { pathId, peerCertDer: Buffer.alloc(0), establishedAt: Date.now() };
  return { a: { ...common, send: k1, recv: k2, initiator: true, peerNodeId: 2 }, b: { ...common, send: k2, recv: k1, initiator: false, peerNodeId: 1 } };
}

/** A general node's engine with its pair; what comes out of the pair is collected. */
async function general(): Promise<{ dp: DataPlane; got: Buffer[]; misses: string[] }> {
  const dp = await DataPlane.open({ device: { kind: 'pair', mtu: 1500 }, port: 0 }, silentLogger);
  const got: Buffer[] = [];
  const misses: string[] = [];
  dp.host!.onPackets = (ps) => got.push(...ps);
  dp.onMiss = (dst) => misses.push(dst);
  return { dp, got, misses };
}

async function until(what: string, ok: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const udp = (src: string, dst: string, payload: string): Buffer => buildUdp({ src, dst, srcPort: 5000, dstPort: 6000, payload: Buffer.from(payload) });
const at = (dp: DataPlane) => ({ address: '127.0.0.1', port: dp.localPort });

describe('general node data path: the C engine with a packet pair for a device', { skip }, () => {
  let a: Awaited<ReturnType<typeof general>>;
  let b: Awaited<ReturnType<typeof general>>;
  before(async () => {
    a = await general();
    b = await general();
    const k = pathKeys(0x1111n);
    await a.dp.install({ slot: 1, ...B, endpoint: at(b.dp) }, k.a);
    await b.dp.install({ slot: 1, ...A, endpoint: at(a.dp) }, k.b);
    // install() stops waiting for the worker's acknowledgement after 500 ms (signaling must not stall); on a loaded
    // machine a fresh worker can take longer, so one packet each way proves both sessions are in place before the
    // tests look at route requests and order.
    a.dp.host!.write(udp(A.vip4, B.vip4, 'warm-up'));
    await until('warm-up packet at b', () => b.got.length >= 1, 10_000);
    b.dp.host!.write(udp(B.vip4, A.vip4, 'warm-up'));
    await until('warm-up packet at a', () => a.got.length >= 1, 10_000);
    for (const x of [a, b]) {
      x.got.length = 0;
      x.misses.length = 0;
    }
  });
  after(async () => {
    await a?.dp.close();
    await b?.dp.close();
  });

  it('packets written into one pair come out of the peer\'s pair unchanged, in order, both directions and families', async () => {
    b.got.length = 0;
    const sent = [udp(A.vip4, B.vip4, 'one'), udp(A.vip6, B.vip6, 'two'), udp(A.vip4, B.vip4, 'three')];
    for (const p of sent) assert.equal(a.dp.host!.write(p), true);
    await until('3 packets at b', () => b.got.length >= 3);
    assert.deepEqual(b.got.slice(0, 3), sent);
    a.got.length = 0;
    const back = udp(B.vip4, A.vip4, 'back');
    b.dp.host!.write(back);
    await until('the answer at a', () => a.got.length >= 1);
    assert.deepEqual(a.got[0], back);
    assert.ok(a.dp.peerStats(1).txBytes > 0 && a.dp.peerStats(1).rxBytes > 0, JSON.stringify(a.dp.peerStats(1)));
    assert.deepEqual(a.misses, [], 'no route request for a destination with a session');
  });

  it('a full Ethernet payload (1500 bytes, a device that ignores the LAN MTU) is carried both ways', async () => {
    b.got.length = 0;
    const big = udp(A.vip4, B.vip4, 'x'.repeat(1500 - 28));
    assert.equal(big.length, 1500);
    a.dp.host!.write(big);
    await until('the 1500-byte packet at b', () => b.got.length >= 1);
    assert.deepEqual(b.got[0], big);
    a.got.length = 0;
    const big6 = udp(B.vip6, A.vip6, 'y'.repeat(1500 - 48));
    b.dp.host!.write(big6);
    await until('the 1500-byte IPv6 packet at a', () => a.got.length >= 1);
    assert.deepEqual(a.got[0], big6);
  });

  it('a path keepalive written into the pair (1-byte UDP to port 9) is sealed like any packet and opens at the peer', async () => {
    b.got.length = 0;
    const before = a.dp.peerStats(1).txBytes;
    a.dp.host!.write(buildUdp({ src: A.vip4, dst: B.vip4, srcPort: 40009, dstPort: 9, payload: Buffer.from([0]) }));
    await until('keepalive at b', () => b.got.length >= 1);
    const ip = decodeIp(b.got[0]!);
    assert.equal(ip.src, A.vip4);
    const u = decodeUdp(ip); // verifies the checksum
    assert.equal(u.dstPort, 9);
    assert.deepEqual([...u.payload], [0]);
    assert.ok(a.dp.peerStats(1).txBytes > before);
  });

  it('packets to a destination without a session are held (at most 16), one route request is made, and the install flushes them', async () => {
    const c = await general();
    try {
      for (let i = 0; i < 20; i++) a.dp.host!.write(udp(A.vip4, C.vip4, `held ${i}`));
      await until('route request', () => a.misses.includes(C.vip4));
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(a.misses, [C.vip4], 'one route request for 20 packets within a second');
      const k = pathKeys(0x2222n);
      await c.dp.install({ slot: 1, ...A, endpoint: at(a.dp) }, k.b);
      await a.dp.install({ slot: 2, ...C, endpoint: at(c.dp) }, k.a);
      await until('held packets at c', () => c.got.length >= 16);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(c.got.length, 16, 'the held queue is bounded');
      assert.deepEqual(
        c.got.map((p) => decodeUdp(decodeIp(p)).payload.toString()),
        Array.from({ length: 16 }, (_, i) => `held ${i}`),
      );
    } finally {
      await c.dp.close();
    }
  });

  it('garbage on the UDP port is counted and dropped; the engine keeps serving', async () => {
    const s = dgram.createSocket('udp4');
    const before = a.dp.stats.globals();
    const junk = [Buffer.alloc(3), randomBytes(60), Buffer.concat([Buffer.from([1, 0x40]), randomBytes(80)])];
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
    for (const j of junk) await new Promise<void>((r) => s.send(j, a.dp.localPort, '127.0.0.1', () => r()));
    s.close();
    await new Promise((r) => setTimeout(r, 300));
    const now = a.dp.stats.globals();
    const dropped = (['malformed', 'unknownPath', 'badTag', 'noSession', 'wrongPath'] as const).reduce((n, k) => n + (now[k] - before[k]), 0);
    assert.ok(dropped >= 1, `drops counted: ${JSON.stringify(now)}`);
    b.got.length = 0;
    a.dp.host!.write(udp(A.vip4, B.vip4, 'still'));
    await until('traffic after garbage', () => b.got.length >= 1);
  });

  it('the pair refuses writes once closed (counted by the caller), and closing twice is harmless', async () => {
    const x = await general();
    await x.dp.close();
    assert.equal(x.dp.host!.write(udp(A.vip4, B.vip4, 'late')), false);
    await x.dp.close();
  });
});
