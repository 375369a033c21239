// NMS CPU per message, in one process and without sockets: a real NmsService on a real SQLite store (a file, WAL, as
// `cloud start` opens it) is handed pre-sealed datagrams in windows of `--window` at a time, and the process's CPU time
// (user + system, process.cpuUsage) is divided by the messages handled. What the simulated nodes do while it runs
// (opening a pushed Route Direction, sealing the confirmation) is timed and taken out. Then the parts of a
// registration, each alone over every node: where its microseconds go. Socket I/O is not in these figures (see
// bench/cloud.ts for the whole thing over loopback). Method and figures: docs/PERFORMANCE.md "Cloud".
//
// usage: node [--expose-gc] dist/bench/nms-cpu.js [--nodes N (10000)] [--routes N (3000)] [--window W (256)] [--settle MS (0)]
// --settle: before each phase, wait MS (the revocation lists sent 10 ms after each registration go out) and, with
// --expose-gc, collect garbage, so a phase is not charged for what the one before left behind.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ChannelKeys, openFrame, sealFrame } from '../src/channel/sealed.js';
import { NmsService } from '../src/cloud/nms/service.js';
import { MessageType } from '../src/protocol/constants.js';
import { endpointKey, type Endpoint } from '../src/protocol/endpoint.js';
import { splitFrame } from '../src/protocol/header.js';
import { decodeBody, encodeBody, encodeRegistrationHead, encodeRegistrationResponse } from '../src/protocol/messages.js';
import { openStore } from '../src/store/index.js';
import { silentLogger } from '../src/util/log.js';
import { intArg } from './lib/args.js';

const POOLS = { v4: '100.64.0.0/10', v6: 'fd00:bb::/48' };
const DOMAIN = 'cyphonic.internal';

const arg = (flag: string, def: number): number => intArg(flag, def);

function cpuUs(): number {
  const c = process.cpuUsage();
  return c.user + c.system;
}

async function windowed(n: number, window: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < n; i += window) {
    const batch: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(n, i + window); j++) batch.push(fn(j));
    await Promise.all(batch);
  }
}

/** CPU µs per call of a synchronous `fn` over 0..n-1. */
function perCall(n: number, fn: (i: number) => unknown): number {
  const c0 = cpuUs();
  for (let i = 0; i < n; i++) fn(i);
  return (cpuUs() - c0) / n;
}

async function main(): Promise<void> {
  const nodes = arg('--nodes', 10_000);
  const routes = arg('--routes', 3000);
  const window = arg('--window', 256);
  const settle = arg('--settle', 0);
  const dir = mkdtempSync(join(tmpdir(), 'cyphonic-nms-cpu-'));
  const store = await openStore(join(dir, 'cloud.db'));
  try {
    const ids: number[] = [];
    const keys: ChannelKeys[] = [];
    const raw: Buffer[] = [];
    const eps: Endpoint[] = [];
    const byEp = new Map<string, number>();
    for (let i = 0; i < nodes; i++) {
      const n = await store.createNode({ name: `n${i}`, kind: 'node' }, POOLS);
      const key = randomBytes(32);
      await store.putCommonKey({ nodeId: n.id, key, expiresAt: Date.now() + 3_600_000, createdAt: Date.now() });
      await store.addCertificate({ serial: randomBytes(8).toString('hex'), nodeId: n.id, der: randomBytes(600), notAfter: Date.now() + 86_400_000, createdAt: Date.now() });
      ids.push(n.id);
      raw.push(key);
      keys.push(new ChannelKeys(key));
      eps.push({ address: `127.${10 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, port: 30000 });
      byEp.set(endpointKey(eps[i]!), i);
    }
    let seq = BigInt(Date.now()) << 16n;
    const up = (i: number, type: MessageType, body: Buffer, txid = 1): Buffer => sealFrame(keys[i]!.up, { type, txid, seq: ++seq, id: BigInt(ids[i]!) }, body);

    let clientUs = 0; // what the simulated responders spend (taken out of the NMS's figure)
    const sendTo = { service: null as NmsService | null };
    const send = (d: Buffer, to: Endpoint): void => {
      const t0 = process.hrtime.bigint();
      const i = byEp.get(endpointKey(to));
      if (i === undefined) return;
      const f = splitFrame(d);
      if (f.header.type !== MessageType.RouteDirectionResponder) return;
      const rd = decodeBody(MessageType.RouteDirectionResponder, openFrame(keys[i]!.down, f.header, f.headerBytes, f.body));
      const conf = up(i, MessageType.RouteConfirmation, encodeBody(MessageType.RouteConfirmation, { pathId: rd.pathId, accepted: true }), f.header.txid);
      clientUs += Number(process.hrtime.bigint() - t0) / 1000;
      void sendTo.service?.handle(conf, to);
    };
    const service = new NmsService({ domain: DOMAIN }, { store, logger: silentLogger, send });
    sendTo.service = service;

    const phase = async (name: string, n: number, fn: (i: number) => Promise<unknown>): Promise<void> => {
      if (settle > 0) {
        await new Promise((r) => setTimeout(r, settle));
        (globalThis as { gc?: () => void }).gc?.();
      }
      clientUs = 0;
      const c0 = cpuUs();
      const t0 = performance.now();
      await windowed(n, window, fn);
      const cpu = cpuUs() - c0 - clientUs;
      const wall = performance.now() - t0;
      console.log(`${name.padEnd(28)} ${String(n).padStart(6)}  ${(cpu / n).toFixed(1).padStart(7)} µs CPU each  ${Math.round((n * 1e6) / cpu).toString().padStart(7)} per core-second  (${Math.round((n * 1000) / wall)}/s wall)`);
    };

    // What `cloud start` does before nodes come (watchPolicy): the revocation list and the directory snapshot, timed
    // apart (one listing of every node), so the first registrations do not carry it.
    const d0 = cpuUs();
    await service.policy.check();
    await service.directory.refresh();
    console.log(`NMS CPU per message, in process, SQLite file store, ${nodes} nodes, ${window} in flight (client work taken out)`);
    console.log(`directory snapshot at start: ${((cpuUs() - d0) / 1000).toFixed(1)} ms CPU`);
    const regs = ids.map((_, i) => up(i, MessageType.RegistrationRequest, encodeBody(MessageType.RegistrationRequest, { endpoints: [eps[i]!], reRegistration: false })));
    let refused = 0;
    await phase('registration (first contact)', nodes, async (i) => {
      if (!(await service.handle(regs[i]!, eps[i]!))) refused++;
    });
    const kas = ids.map((_, i) => up(i, MessageType.Keepalive, encodeBody(MessageType.Keepalive, {}), 2));
    await phase('keepalive', nodes, (i) => service.handle(kas[i]!, eps[i]!));
    const reregs = ids.map((_, i) => up(i, MessageType.RegistrationRequest, encodeBody(MessageType.RegistrationRequest, { endpoints: [eps[i]!], reRegistration: true }), 3));
    await phase('re-registration', nodes, (i) => service.handle(reregs[i]!, eps[i]!));
    const dirs = Array.from({ length: routes }, (_, k) => {
      const a = (k * 7919) % nodes;
      const b = (a + 1 + ((k * 104729) % (nodes - 1))) % nodes;
      return { a, d: up(a, MessageType.DirectionRequest, encodeBody(MessageType.DirectionRequest, { targetFqdn: `n${b}.${DOMAIN}` }), 100 + k) };
    });
    let routed = 0;
    await phase('route selection', routes, async (k) => {
      const r = await service.handle(dirs[k]!.d, eps[dirs[k]!.a]!);
      if (r && splitFrame(r).header.type === MessageType.RouteDirectionInitiator) routed++;
    });
    console.log(`(refused registrations ${refused}, routes selected ${routed} of ${routes}; counters ${JSON.stringify(service.counters.toJSON())})`);

    // The parts of a registration, each alone over every node.
    console.log('\nparts of a first registration (CPU µs each, alone):');
    const fresh = Array.from({ length: nodes }, () => randomBytes(32));
    const parts: [string, number][] = [];
    parts.push(['ChannelKeys (HKDF; no context yet)', perCall(nodes, (i) => new ChannelKeys(fresh[i]!, {}, 'cloud'))]);
    const cloudKeys = raw.map((k) => new ChannelKeys(k, {}, 'cloud'));
    parts.push(['open the request', perCall(nodes, (i) => {
      const f = splitFrame(regs[i]!);
      return openFrame(cloudKeys[i]!.up, f.header, f.headerBytes, f.body);
    })]);
    const resp = encodeBody(MessageType.RegistrationResponse, { nodeId: 1, vip4: '100.64.0.1', vip6: 'fd00:bb::1', fqdn: `n1.${DOMAIN}`, observed: eps[0]!, nat: true, keepaliveSec: 5 });
    // As the service does: the node's fixed head once (its first registration here), then this registration's tail.
    parts.push(['encode the response (head + tail)', perCall(nodes, (i) => encodeRegistrationResponse(encodeRegistrationHead({ nodeId: ids[i]!, vip4: '100.64.0.1', vip6: 'fd00:bb::1', fqdn: `n${i}.${DOMAIN}` }), { observed: eps[i]!, nat: true, keepaliveSec: 5, directoryRev: 'r1:0123456789abcdef' }))]);
    parts.push(['seal the response', perCall(nodes, (i) => sealFrame(cloudKeys[i]!.down, { type: MessageType.RegistrationResponse, txid: 1, seq: ++seq, id: BigInt(ids[i]!) }, resp))]);
    let c0 = cpuUs();
    await windowed(nodes, window, (i) => store.getNodeSession(ids[i]!));
    parts.push(['store: getNodeSession', (cpuUs() - c0) / nodes]);
    c0 = cpuUs();
    const now = Date.now();
    await windowed(nodes, window, (i) => store.upsertRegistration({ nodeId: ids[i]!, reported: [{ address: '192.168.1.2', port: 30000 }], observed: eps[i]!, nat: true, keepaliveSec: 5, registeredAt: now, lastSeen: now, lastSeq: ++seq }));
    parts.push([`store: upsertRegistration (group commit, ${window}/batch)`, (cpuUs() - c0) / nodes]);
    for (const [name, us] of parts) console.log(`  ${name.padEnd(46)} ${us.toFixed(1).padStart(6)}`);
    service.close();
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
