// Why a ping through the data plane costs more than a busy tunnel suggests: the same per-packet work timed hot
// (back to back) and after the thread has slept (as a worker does between pings), in this process, no network.
// Prints medians of: a native AES-256-GCM seal of an 84-byte packet, a DataSession seal+open of it, and a
// fixed pure-JS loop, each after 0 ms and after 1 and 10 ms of sleep.
//
// usage: node dist/bench/cold-path.js [--runs N (300)]

import { randomBytes } from 'node:crypto';
import { DataSession } from '../src/crypto/data-session.js';
import { FastAeadKey } from '../src/crypto/fast-aead.js';
import { loadNativeAddon } from '../src/native/addon.js';
import { median } from './lib/measure.js';

function main(): void {
  const runsArg = process.argv.indexOf('--runs');
  const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 300;
  if (!Number.isInteger(runs) || runs < 10 || runs > 100_000) throw new Error('--runs: an integer in 10..100000');
  const native = loadNativeAddon();
  if (!native) throw new Error('native addon not built (npm run build)');

  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  const keys = { initiator: true, pathId: 5n, peerNodeId: 2, peerCertDer: Buffer.alloc(1), establishedAt: Date.now() };
  const a = new DataSession({ ...keys, send: k1, recv: k2 }, (k) => new FastAeadKey(k));
  const b = new DataSession({ ...keys, initiator: false, peerNodeId: 1, send: k2, recv: k1 }, (k) => new FastAeadKey(k));
  const pkt = randomBytes(84);
  const sealed = Buffer.alloc(256);
  const plain = Buffer.alloc(256);
  const h = native.aeadCreate(randomBytes(32));
  const nonce = Buffer.alloc(12);
  const aad = Buffer.alloc(28);
  const arr = new Float64Array(1000);
  const sleeper = new Int32Array(new SharedArrayBuffer(4));

  const work: Record<string, () => void> = {
    'native aeadSeal, 84 B': () => void native.aeadSeal(h, nonce, aad, pkt, sealed, 0),
    'DataSession seal + open, 84 B': () => {
      const n = a.sealInto(pkt, sealed, 0);
      if (b.tryOpenInto(sealed.subarray(0, n), plain, 0) !== pkt.length) throw new Error('open failed');
    },
    'pure JS loop (1000 stores)': () => {
      for (let i = 0; i < arr.length; i++) arr[i] = i * 1.5;
    },
  };
  const gaps = [0, 1, 10];
  process.stdout.write(`per-packet work, median of ${runs} runs, after sleeping (Atomics.wait) for:\n`);
  process.stdout.write(`${''.padEnd(32)}${gaps.map((g) => `${g} ms`.padStart(10)).join('')}\n`);
  for (const [name, fn] of Object.entries(work)) {
    const cells: string[] = [];
    for (const gap of gaps) {
      const t: number[] = [];
      for (let i = 0; i < runs; i++) {
        if (gap > 0) Atomics.wait(sleeper, 0, 0, gap);
        const t0 = process.hrtime.bigint();
        fn();
        t.push(Number(process.hrtime.bigint() - t0) / 1000);
      }
      cells.push(`${median(t).toFixed(1)} us`.padStart(10));
    }
    process.stdout.write(`${name.padEnd(32)}${cells.join('')}\n`);
  }
  native.aeadDestroy(h);
}

main();
