// Load generator worker (bench/cloud.ts): one worker thread simulates a slice of the nodes with real NmsClients
// (sealed frames, retransmissions, replay protection) over UDP sockets bound to its own loopback addresses
// (127.x.y.z: many source addresses without namespaces). The main thread sends it phases and gets counts back, so
// the generator spreads over cores and the instances measure against more than one generator thread.

import dgram from 'node:dgram';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { NmsClient } from '../../src/node/signaling.js';
import { MessageType } from '../../src/protocol/constants.js';
import type { Endpoint } from '../../src/protocol/endpoint.js';
import { splitFrame } from '../../src/protocol/header.js';
import { decodeBody, encodePeerReport } from '../../src/protocol/messages.js';

/** What the main thread gives a worker. */
export interface GenInit {
  worker: number;
  /** Node ids, Common Keys (32 bytes each) and the NMS endpoint each node registers at. */
  ids: number[];
  keys: Uint8Array[];
  nms: Endpoint[];
  /** Sockets of this worker; socket k binds 127.(10 + worker).(k >> 8).(k & 255 || 1). */
  sockets: number;
  /** Requests in flight per worker. */
  window: number;
  /** Global index of this worker's first node (nodes are named n<index>) and how many nodes there are in all. */
  first: number;
  total: number;
  /** Peer reports each keepalive carries (what a node's tunnels carried, as nodes with tunnels send them); 0: none. */
  peers: number;
}

export type GenCommand =
  | { op: 'register' }
  | { op: 'keepalive'; ms: number }
  /** Every node keeps alive once per `interval` ms (staggered evenly, as registered nodes do) for `ms`. */
  | { op: 'hold'; ms: number; interval: number }
  /** Route selections from nodes of this worker to other nodes (`n<global index>`, never itself) at `rate` per second. */
  | { op: 'routes'; count: number; rate: number }
  | { op: 'close' };

export interface GenResult {
  ok: number;
  failed: number;
  /** Route selection or keepalive latencies (ms). */
  lat?: number[];
  /** hold: the longest the pacing loop fell behind its schedule (ms). */
  behindMs?: number;
  /** routes: this worker's event-loop delay over the phase (ms; perf_hooks, sampled every 10 ms): how late it could
   *  have read an answer that was already there. */
  loopDelay?: { p99: number; max: number };
  /** Why requests failed (message → count). */
  errors: Record<string, number>;
}

function why(errors: Record<string, number>): (err: unknown) => void {
  return (err) => {
    const m = (err instanceof Error ? err.message : String(err)).replace(/\d+/g, 'N').slice(0, 80);
    errors[m] = (errors[m] ?? 0) + 1;
  };
}

async function pooled(n: number, window: number, fn: (i: number) => Promise<void>, errors: Record<string, number>): Promise<number> {
  let next = 0;
  let failed = 0;
  const note = why(errors);
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      await fn(i).catch((err: unknown) => {
        failed++;
        note(err);
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, worker));
  return failed;
}

async function main(): Promise<void> {
  const init = workerData as GenInit;
  const port = parentPort!;
  const clients = new Map<number, NmsClient>();
  const socks: dgram.Socket[] = [];
  for (let k = 0; k < init.sockets; k++) {
    const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
    const addr = `127.${10 + init.worker}.${k >> 8}.${k & 255 || 1}`;
    await new Promise<void>((r) => s.bind(0, addr, () => r()));
    s.on('message', (msg) => {
      try {
        clients.get(Number(splitFrame(msg).header.id))?.handleDatagram(msg);
      } catch {
        // not a frame for us
      }
    });
    socks.push(s);
  }
  const all: NmsClient[] = [];
  const eps: Endpoint[] = [];
  // The same reports from every node of this worker (peers among its nodes, a few MB each way, a few ms away): the
  // NMS decodes and keeps them per node whatever they say.
  const reports = Array.from({ length: init.peers }, (_, k) =>
    encodePeerReport({ peerNodeId: init.ids[(k * 7919) % init.ids.length]!, pathType: 1 + (k % 3), rttMs: 2 + k, txBytes: BigInt(5_000_000 + k * 1_234_567), rxBytes: BigInt(3_000_000 + k * 7_654_321) }),
  );
  init.ids.forEach((id, i) => {
    const sock = socks[i % socks.length]!;
    const a = sock.address();
    eps.push({ address: a.address, port: a.port });
    const c = new NmsClient({ nodeId: id, commonKey: Buffer.from(init.keys[i]!), nms: init.nms[i]! }, { send: (d, to) => sock.send(d, to.port, to.address) });
    c.onPush = (type, body) => {
      if (type !== MessageType.RouteDirectionResponder) return;
      void c.confirm(decodeBody(MessageType.RouteDirectionResponder, body).pathId, true).catch(() => undefined);
    };
    clients.set(id, c);
    all.push(c);
  });
  const n = all.length;

  port.on('message', (cmd: GenCommand) => {
    void (async (): Promise<GenResult | null> => {
      if (cmd.op === 'close') {
        for (const c of all) c.close();
        for (const s of socks) s.close();
        port.close();
        return null;
      }
      const errors: Record<string, number> = {};
      const note = why(errors);
      if (cmd.op === 'register') {
        const failed = await pooled(n, init.window, (i) => all[i]!.register([eps[i]!], false).then(() => undefined), errors);
        return { ok: n - failed, failed, errors };
      }
      if (cmd.op === 'keepalive') {
        // Sustained: every node keeps alive in turn, `window` in flight, for `ms`.
        const until = performance.now() + cmd.ms;
        let ok = 0;
        let failed = 0;
        let next = 0;
        await Promise.all(
          Array.from({ length: Math.min(init.window, n) }, async () => {
            while (performance.now() < until) {
              const c = all[next++ % n]!;
              await c.keepalive(undefined, undefined, reports).then(
                () => void ok++,
                (err: unknown) => {
                  failed++;
                  note(err);
                },
              );
            }
          }),
        );
        return { ok, failed, errors };
      }
      if (cmd.op === 'hold') {
        // Paced, not as fast as possible: keepalive k of this worker is due at k * interval / n, so every node sends
        // one per interval. Each is answered (or fails) on its own; the loop does not wait for answers.
        const lat: number[] = [];
        let ok = 0;
        let failed = 0;
        let sent = 0;
        let behindMs = 0;
        const t0 = performance.now();
        const total = Math.floor((cmd.ms / cmd.interval) * n);
        let inFlight = 0;
        while (sent < total) {
          const now = performance.now() - t0;
          const due = Math.min(total, Math.floor((now / cmd.interval) * n));
          if (due > sent) behindMs = Math.max(behindMs, now - (sent * cmd.interval) / n);
          for (; sent < due; sent++) {
            const t = performance.now();
            inFlight++;
            all[sent % n]!.keepalive(undefined, undefined, reports).then(
              () => {
                inFlight--;
                ok++;
                lat.push(performance.now() - t);
              },
              (err: unknown) => {
                inFlight--;
                failed++;
                note(err);
              },
            );
          }
          await new Promise((r) => setTimeout(r, 2));
        }
        // The last answers (a keepalive gives up after its retransmissions, so this ends).
        while (inFlight > 0) await new Promise((r) => setTimeout(r, 10));
        return { ok, failed, lat, behindMs, errors };
      }
      // Route selections at a fixed offered rate (this worker's share); latency from request to RouteDirection.
      const loop = monitorEventLoopDelay({ resolution: 10 });
      loop.enable();
      // Nothing per selection outlives it: the latencies go into one typed array and completion is counted, so the
      // thread's scavenges copy little (holding every selection's promise until the end made each one 4-10 ms, the
      // largest part of this thread's p99).
      const lat = new Float64Array(cmd.count);
      let answered = 0;
      let failed = 0;
      let settled = 0;
      let allSettled: () => void = () => {};
      const done = new Promise<void>((r) => (allSettled = r));
      const settle = (): void => {
        if (++settled === cmd.count) allSettled();
      };
      if (cmd.count === 0) allSettled();
      const t0 = performance.now();
      for (let r = 0; r < cmd.count; r++) {
        const due = t0 + (r * 1000) / cmd.rate;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((res) => setTimeout(res, wait));
        const a = (r * 7919) % n;
        const b = (init.first + a + 1 + ((r * 104729) % (init.total - 1))) % init.total;
        const target = `n${b}.cyphonic.internal`;
        const t = performance.now();
        all[a]!.direction({ targetFqdn: target }).then(
          () => {
            lat[answered++] = performance.now() - t;
            settle();
          },
          (err: unknown) => {
            failed++;
            note(err);
            settle();
          },
        );
      }
      await done;
      loop.disable();
      // The histogram holds whole intervals between samples: less the 10 ms asked for, what remains is the delay.
      return { ok: answered, failed, lat: Array.from(lat.subarray(0, answered)), errors, loopDelay: { p99: Math.max(0, loop.percentile(99) / 1e6 - 10), max: Math.max(0, loop.max / 1e6 - 10) } };
    })().then((res) => {
      if (res) port.postMessage(res);
    });
  });
  port.postMessage({ ready: true });
}

void main();
