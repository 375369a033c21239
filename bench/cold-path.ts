// Why a ping through the data plane costs more than a busy tunnel suggests: the same per-packet work timed hot
// (back to back) and after the thread has slept (as a worker does between pings), in this process, no network.
// Prints medians of: a native AES-256-GCM seal of an 84-byte packet, a DataSession seal+open of it, and a
// fixed pure-JS loop, each after 0 ms and after 1 and 10 ms of sleep.
// Then the same for the steps of a first contact (a new peer's certificate checked, ECDSA sign and verify, an X25519
// agreement, a SHA-256, each through node:crypto as the handshake calls them; HKDF and a handshake frame's AES-GCM
// through node:crypto and through the addon), after 0, 100 and 1000 ms of sleep, in thread CPU µs: a responder has
// slept for seconds when a push arrives, and what it then pays is these figures.
//
// usage: node dist/bench/cold-path.js [--runs N (300)] [--contact-runs N (8)]

import { createHash, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, sign, verify } from 'node:crypto';
import { AeadKey } from '../src/crypto/aead.js';
import { createIntermediateCa, createRootCa, issueNodeCertificate } from '../src/crypto/ca.js';
import { createCsr } from '../src/crypto/csr.js';
import { DataSession } from '../src/crypto/data-session.js';
import { preverifyPeerCertificate, type TrustAnchors } from '../src/crypto/handshake.js';
import { generateKeyPair } from '../src/crypto/keys.js';
import { hkdf } from '../src/crypto/kdf.js';
import { toDer } from '../src/crypto/pem.js';
import { FastAeadKey } from '../src/crypto/fast-aead.js';
import { loadNativeAddon } from '../src/native/addon.js';
import { median } from './lib/measure.js';

function intArg(flag: string, dflt: number, min: number, max: number): number {
  const at = process.argv.indexOf(flag);
  const v = at > 0 ? Number(process.argv[at + 1]) : dflt;
  if (!Number.isInteger(v) || v < min || v > max) throw new Error(`${flag}: an integer in ${min}..${max}`);
  return v;
}

/**
 * Prints one row per piece of `work`: the median over `runs` of what `clock` (µs) says each call cost, after the
 * thread slept (Atomics.wait) for each of `gaps` ms before it.
 */
function table(title: string, work: Record<string, () => void>, gaps: number[], runs: number, sleeper: Int32Array, clock: () => number, digits: number): void {
  const width = Math.max(...Object.keys(work).map((k) => k.length)) + 2;
  process.stdout.write(`${title}\n${''.padEnd(width)}${gaps.map((g) => `${g} ms`.padStart(10)).join('')}\n`);
  for (const [name, fn] of Object.entries(work)) {
    const cells: string[] = [];
    for (const gap of gaps) {
      const t: number[] = [];
      for (let i = 0; i < runs; i++) {
        if (gap > 0) Atomics.wait(sleeper, 0, 0, gap);
        const t0 = clock();
        fn();
        t.push(clock() - t0);
      }
      cells.push(`${median(t).toFixed(digits)} us`.padStart(10));
    }
    process.stdout.write(`${name.padEnd(width)}${cells.join('')}\n`);
  }
}

/**
 * The steps of a first contact after the thread slept: each step's thread CPU, median over `runs` (a fresh
 * certificate for every check, so nothing is answered from the parsed-certificate cache).
 */
async function firstContactSteps(native: NonNullable<ReturnType<typeof loadNativeAddon>>, runs: number, sleeper: Int32Array): Promise<void> {
  const gaps = [0, 100, 1000];
  const root = await createRootCa({ commonName: 'cold-path root' });
  const inter = await createIntermediateCa(root, { commonName: 'cold-path CA' });
  const interDer = toDer(inter.certPem);
  const anchors: TrustAnchors = { rootsDer: [toDer(root.certPem)], intermediatesDer: [interDer], isRevoked: () => false };
  const certs: Buffer[] = [];
  for (let i = 0; i < runs * gaps.length + 1; i++) {
    const name = `n${i}`;
    const { privateKeyPem } = await generateKeyPair();
    const issued = await issueNodeCertificate(inter, await createCsr(privateKeyPem, name), { name, fqdn: `${name}.cold.invalid`, nodeId: 100 + i });
    certs.push(issued.certDer);
  }
  preverifyPeerCertificate(anchors, certs.pop()!); // anchors parsed, the CA's signature checked: as at a node's start
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const msg = randomBytes(300);
  const sig = sign('sha256', msg, ec.privateKey);
  const peerX = generateKeyPairSync('x25519');
  const nonce12 = Buffer.alloc(12);
  const steps: Record<string, () => void> = {
    "a new peer's certificate checked": () => void preverifyPeerCertificate(anchors, certs.pop()!),
    'ECDSA P-256 verify, 300 B': () => {
      if (!verify('sha256', msg, ec.publicKey, sig)) throw new Error('verify failed');
    },
    'ECDSA P-256 sign, 300 B': () => void sign('sha256', msg, ec.privateKey),
    'X25519 key pair + agreement': () => void diffieHellman({ privateKey: generateKeyPairSync('x25519').privateKey, publicKey: peerX.publicKey }),
    'SHA-256 of 300 B (node:crypto)': () => void createHash('sha256').update(msg).digest(),
    'HKDF-SHA-256, 64 B (node:crypto)': () => void hkdfSync('sha256', msg.subarray(0, 32), msg.subarray(32, 40), msg.subarray(40, 220), 64),
    'HKDF-SHA-256, 64 B (addon; kdf.ts)': () => void hkdf(msg.subarray(0, 32), msg.subarray(32, 40), 'x'.repeat(180), 64),
    'AES-GCM new key + seal 200 B (node)': () => void new AeadKey(msg.subarray(0, 32)).seal(nonce12, msg.subarray(0, 200), msg.subarray(0, 28)),
    'AES-GCM new key + seal 200 B (addon)': () => {
      const k = new FastAeadKey(msg.subarray(0, 32), 'seal');
      k.seal(nonce12, msg.subarray(0, 200), msg.subarray(0, 28));
      k.destroy();
    },
    'the same, shared context (addon)': () => {
      const k = new FastAeadKey(msg.subarray(0, 32), 'seal', Infinity);
      k.seal(nonce12, msg.subarray(0, 200), msg.subarray(0, 28));
      k.destroy();
    },
  };
  for (const fn of Object.values(steps)) if (fn !== steps["a new peer's certificate checked"]) for (let i = 0; i < 20; i++) fn();
  table(`\nfirst-contact steps, thread CPU, median of ${runs} runs, after sleeping for:`, steps, gaps, runs, sleeper, () => native.threadCpuUs(), 0);
}

async function main(): Promise<void> {
  const runs = intArg('--runs', 300, 10, 100_000);
  const contactRuns = intArg('--contact-runs', 8, 3, 100);
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
  const wall = (): number => Number(process.hrtime.bigint()) / 1000;
  table(`per-packet work, median of ${runs} runs, after sleeping (Atomics.wait) for:`, work, [0, 1, 10], runs, sleeper, wall, 1);
  native.aeadDestroy(h);
  await firstContactSteps(native, contactRuns, sleeper);
}

main().catch((err: unknown) => {
  process.stderr.write(`cold-path: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
