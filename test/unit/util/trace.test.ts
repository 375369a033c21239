// First-contact tracing (src/util/trace.ts) and its reader (bench/lib/trace-split.ts): a traced line carries the
// monotonic time, the writing thread and that thread's CPU clock; a thread that works advances its own clock and not
// another's; the split gives a step's CPU only when the step begins and ends on one thread.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { firstContactSteps, PUSH_TRACE_STEPS, TRACE_STEPS } from '../../../bench/lib/trace-split.js';

const TRACE = JSON.stringify(fileURLToPath(new URL('../../../src/util/trace.js', import.meta.url)));
const ADDON = JSON.stringify(fileURLToPath(new URL('../../../src/native/addon.js', import.meta.url)));

interface Line {
  trace: string;
  at: number;
  cpu: number;
  th: number;
  id: string;
}

test('traced lines: monotonic time, the thread, and a CPU clock that only that thread advances', () => {
  // Main: a mark, then asleep until a worker is done, a mark. The worker: a mark, work until its own clock moved
  // 20 ms (at most 5 s), a mark. The worker's clock moves by its work; main's, asleep, by far less.
  const script = `
    import { Worker } from 'node:worker_threads';
    import { trace } from ${TRACE};
    trace('main.a', 1, 'p');
    const w = new Worker(\`
      const { trace } = await import(${TRACE});
      const a = (await import(${ADDON})).loadNativeAddon();
      trace('worker.a', 2);
      const c0 = a.threadCpuUs(), t0 = Date.now();
      let x = 0;
      while (a.threadCpuUs() - c0 < 20000 && Date.now() - t0 < 5000) for (let i = 0; i < 1e5; i++) x += i;
      trace('worker.b', 2);
    \`, { eval: true });
    await new Promise((r) => w.once('exit', r));
    trace('main.b', 1);
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, CYPHONIC_TRACE: '1' }, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{"trace"'))
    .map((l) => JSON.parse(l) as Line);
  const by = (label: string): Line => {
    const l = lines.find((x) => x.trace === label);
    assert.ok(l, `${label} missing in ${r.stderr}`);
    return l;
  };
  const [ma, mb, wa, wb] = [by('main.a'), by('main.b'), by('worker.a'), by('worker.b')];
  assert.equal(ma.th, 0);
  assert.ok(wa.th > 0 && wa.th === wb.th, 'the worker writes its own thread id');
  assert.equal((ma as unknown as { peer: string }).peer, 'p');
  assert.ok(ma.at < wa.at && wa.at <= wb.at && wb.at <= mb.at, 'times follow the order of events');
  const workerCpu = wb.cpu - wa.cpu;
  const mainCpu = mb.cpu - ma.cpu;
  assert.ok(workerCpu >= 20_000 || wb.at - wa.at >= 5_000_000, `the worker's clock moved ${workerCpu} µs`);
  assert.ok(mainCpu < workerCpu, `main, mostly asleep, used ${mainCpu} µs while the worker used ${workerCpu} µs`);
});

test('trace-split: steps in order across processes; CPU only for a step that stays on one thread', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-trace-'));
  try {
    const line = (label: string, at: number, cpu: number, th: number, id: string, peer?: string): string =>
      JSON.stringify({ trace: label, at, cpu, th, id, ...(peer ? { peer } : {}) });
    const path = '77';
    // Initiator a (main thread 0), NMS, responder r (main 0, engine worker 1). Times in µs.
    const a = [
      line('route.ask', 1000, 500, 0, 'r.example'),
      line('route.got', 3000, 900, 0, path, 'r.example'),
      line('hs.request', 4000, 1700, 0, path),
      line('hs.response.in', 9000, 2000, 0, path),
      line('hs.response.opened', 9500, 2400, 0, path),
      // Written by another thread (th 1) of a: its clock is another clock, so that step has no CPU figure.
      line('hs.installed', 10_000, 40, 1, path),
      'not a trace line',
      '{"trace":"cut by a kill',
    ];
    const nms = [
      line('nms.request', 1500, 100, 0, 'key1'),
      line('nms.planned', 2000, 500, 0, path),
      line('nms.push', 2100, 550, 0, path),
      line('nms.answer', 2200, 600, 0, path, 'key1'),
    ];
    const r = [
      line('route.pushed', 2600, 50, 0, path),
      line('cert.checked', 3600, 850, 0, path),
      line('route.confirm', 4500, 1500, 0, path),
      line('hs.request.in', 5000, 1600, 0, path),
      line('hs.request.opened', 6000, 2500, 0, path),
      line('hs.response', 6500, 2600, 0, path),
    ];
    mkdirSync(join(dir, 'nodes'));
    writeFileSync(join(dir, 'nodes', 'a.log'), a.join('\n'));
    writeFileSync(join(dir, 'nodes', 'r.log'), r.join('\n'));
    writeFileSync(join(dir, 'cloud.log'), nms.join('\n'));

    const steps = firstContactSteps(dir, 'a', ['r.example', 'nobody.example']);
    assert.equal(steps.get('nobody.example'), null);
    const s = steps.get('r.example');
    assert.ok(s);
    assert.deepEqual(
      s.map((x) => x.step),
      TRACE_STEPS,
    );
    const of = (name: string) => s.find((x) => x.step === name)!;
    assert.equal(of('Direction Request to the NMS').ms, 0.5);
    assert.equal(of('Direction Request to the NMS').cpuMs, undefined, 'two processes: no CPU figure');
    assert.equal(of('NMS: selection (policy, registrations, certificates)').cpuMs, 0.4);
    assert.equal(of('initiator: peer certificate, path, TunnelRequest signed').ms, 1);
    assert.equal(of('initiator: peer certificate, path, TunnelRequest signed').cpuMs, 0.8);
    assert.equal(of('responder: request verified, X25519, response signed').cpuMs, 0.9);
    assert.equal(of('initiator: session installed in its engine').ms, 0.5);
    assert.equal(of('initiator: session installed in its engine').cpuMs, undefined, 'two threads: no CPU figure');

    const push = firstContactSteps(dir, 'a', ['r.example'], 'push').get('r.example');
    assert.ok(push);
    assert.deepEqual(
      push.map((x) => x.step),
      PUSH_TRACE_STEPS,
    );
    assert.deepEqual(
      push.map((x) => [x.ms, x.cpuMs]),
      [
        [0.5, undefined],
        [1, 0.8],
        [0.9, 0.65],
      ],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
