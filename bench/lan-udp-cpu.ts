// The adapter's cost per plain UDP datagram from the LAN to a sealed capsule, without a network (no root): frames
// written into an AF_UNIX pair standing in for the LAN packet socket (as test/unit/adapter/lan-super.test.ts does),
// one lanRecv (native/lan_frames.c: the fast path writes them into the general node's packet pair, merged or not),
// engine turns (native/dataplane.c on a vnet pair, test/unit/node/engine-rig.ts: reads the pair, cuts, seals, sends
// to a loopback peer). Prints the CPU time (this process: every step runs on this thread) of lanRecv + the engine
// per datagram, and the writes the pair got, for bursts of several sizes of 1400-byte IPv4 datagrams of one flow,
// as iperf3 -u sends them. Run the same file in two builds to compare them.
//
// usage: node dist/bench/lan-udp-cpu.js [--rounds N (2000)]

import { FAST_STATS, fastPathWire, lanNative } from '../src/adapter/lan-port.js';
import { encodeEthernet, ETHERTYPE_IPV4, internetChecksum, macBytes } from '../src/adapter/lan/index.js';
import { ip4Bytes } from '../src/adapter/lan/wire.js';
import { Rig } from '../test/unit/node/engine-rig.js';
import { fold, sum16 } from '../test/harness/checksum.js';
import { intArg } from './lib/args.js';

const ADAPTER = '02:00:00:00:00:aa';
const G1 = '02:00:00:00:00:01';
const G1_4 = '100.64.0.20';
const PEER4 = '100.64.0.9';
const PAYLOAD = 1372;

/** A plain frame as the packet socket reads it (empty virtio_net_hdr): UDP 40000 → 5201, IPv4 id `id`, checksums complete. */
function frame(id: number): Buffer {
  const p = Buffer.alloc(28 + PAYLOAD);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p.writeUInt16BE(id & 0xffff, 4);
  p.writeUInt16BE(0x4000, 6);
  p[8] = 64;
  p[9] = 17;
  p.set(ip4Bytes(G1_4), 12);
  p.set(ip4Bytes(PEER4), 16);
  p.writeUInt16BE(internetChecksum(p.subarray(0, 20)), 10);
  p.writeUInt16BE(40000, 20);
  p.writeUInt16BE(5201, 22);
  p.writeUInt16BE(8 + PAYLOAD, 24);
  for (let i = 0; i < PAYLOAD; i++) p[28 + i] = (i * 7 + id) & 255;
  const sum = sum16(p.subarray(20)) + sum16(p.subarray(12, 20)) + 17 + (8 + PAYLOAD);
  p.writeUInt16BE(0xffff - fold(sum) || 0xffff, 26);
  return Buffer.concat([Buffer.alloc(10), encodeEthernet({ dst: ADAPTER, src: G1, ethertype: ETHERTYPE_IPV4, payload: p })]);
}

function main(): void {
  const rounds = intArg('--rounds', 2000, 10, 1_000_000);
  const native = lanNative();
  const rig = new Rig(undefined, { vnet: true });
  const [lanA, lanB] = native.packetPair();
  native.setNonblocking(lanB);
  try {
    const key = Buffer.alloc(32, 7);
    rig.install(1, { pathId: 0x5e9n, send: key, recv: key, initiator: true }, { vip4: [...ip4Bytes(PEER4)] });
    const w = fastPathWire({ nodes: [{ mac: G1, pairFd: rig.tunTest, pairVnet: true, lease4: { address: G1_4, expiresAt: Date.now() + 3_600_000 }, lease6: null, vip4: G1_4, vip6: null }], peers: [PEER4] });
    native.lanFastSet(lanA, macBytes(ADAPTER), w.nodes, w.peers);
    rig.turn();
    rig.atPeer(50);
    const scratch = Buffer.alloc(65536 + 64);
    const SLOT = 2048;
    const out = Buffer.alloc(SLOT * 128 + 18);
    const lens = new Uint32Array(128);
    const st = new Uint32Array(16);
    const stat = (name: string): number => {
      const s = new Uint32Array(32);
      native.lanFastStats(lanA, s);
      const i = (FAST_STATS as readonly string[]).indexOf(name);
      return i < 0 ? 0 : s[i]!;
    };
    let id = 0;
    for (const burst of [1, 8, 32, 64]) {
      const frames = Array.from({ length: 256 }, (_, i) => frame(i));
      let cpu = 0;
      let sent = 0;
      const out0 = stat('lan.fast.out');
      const merged0 = stat('lan.fast.out.merged.udp');
      const uso0 = rig.global('usoFrames');
      for (let r = 0; r < rounds / burst + 10; r++) {
        for (let k = 0; k < burst; k++) {
          const f = frames[(id + k) & 255]!;
          f.writeUInt16BE((id + k) & 0xffff, 10 + 14 + 4); // a connected socket's ids run on
          f.writeUInt16BE(0, 10 + 14 + 10);
          f.writeUInt16BE(internetChecksum(f.subarray(24, 44)), 10 + 14 + 10);
          native.tunWrite(lanB, f, 0, f.length);
        }
        id += burst;
        const c0 = process.cpuUsage();
        native.lanRecv(lanA, scratch, out, SLOT, lens, st, 0);
        for (let t = 0; t < 4 && (rig.n.dpTurn(rig.engine, 0, rig.events) & 8) !== 0; t++); // until it moves nothing
        const c = process.cpuUsage(c0);
        if (r >= 10) {
          cpu += c.user + c.system;
          sent += burst;
        }
        rig.atPeer(0);
      }
      const carried = stat('lan.fast.out') - out0;
      const merged = stat('lan.fast.out.merged.udp') - merged0;
      process.stdout.write(`bursts of ${String(burst).padStart(2)}: ${(cpu / sent).toFixed(2)} µs CPU per datagram (lanRecv + engine), ${carried} carried, ${merged} merged writes, engine USO reads ${rig.global('usoFrames') - uso0}\n`);
    }
  } finally {
    native.lanFastClear(lanA);
    rig.close();
    native.fdClose(lanA);
    native.fdClose(lanB);
  }
}

main();
