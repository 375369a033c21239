// bench/lib/gc-nvp.ts, the reader of V8's --trace-gc-nvp lines behind bench/cloud --gc: on lines this Node's V8
// really writes (a child that allocates young garbage and forces a full GC), among other output, it finds the
// scavenges and the full GCs, and sums a window of them; lines cut short or not from the GC are skipped.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { gcWindow, parseGcNvp } from '../../../bench/lib/gc-nvp.js';

const CHILD = `
let keep = [];
for (let i = 0; i < 400000; i++) { keep.push({ i, s: 'x' + i }); if (keep.length > 1000) keep = []; }
console.log('between the GCs');
globalThis.gc();
`;

test('parseGcNvp reads the scavenges and full GCs of a real child; gcWindow sums a window of them', () => {
  const r = spawnSync(process.execPath, ['--expose-gc', '--trace-gc-nvp', '--max-semi-space-size=1', '-e', CHILD], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  const text = `${r.stdout}\nnot a gc line: pause=3 gc=s\n[1:0x1]  12 ms: pause=`;
  const events = parseGcNvp(text);
  const scavenges = events.filter((e) => e.kind === 's');
  const full = events.filter((e) => e.kind !== 's');
  assert.ok(scavenges.length >= 3, `young garbage was collected by scavenges (${scavenges.length})`);
  assert.ok(full.length >= 1, 'the forced full GC (V8 may have started one of its own too)');
  assert.equal(events.at(-1)!.kind, 'mc', 'the forced one, last');
  for (const e of events) {
    assert.ok(Number.isFinite(e.at) && e.at >= 0);
    assert.ok(Number.isFinite(e.pauseMs) && e.pauseMs >= 0);
    assert.ok(Number.isFinite(e.sizeAfter) && e.sizeAfter > 0);
  }
  assert.deepEqual(events.map((e) => e.at), [...events.map((e) => e.at)].sort((a, b) => a - b), 'in the order they happened');

  const all = gcWindow(events, -1, Infinity);
  assert.equal(all.scavenges, scavenges.length);
  assert.equal(all.fullGcs, full.length);
  assert.equal(all.scavengeMaxMs, Math.max(...scavenges.map((e) => e.pauseMs)));
  assert.ok(Math.abs(all.scavengeMeanMs - scavenges.reduce((a, e) => a + e.pauseMs, 0) / scavenges.length) < 1e-9);
  assert.equal(all.fullMaxMs, Math.max(...full.map((e) => e.pauseMs)));
  assert.equal(all.promotedBytes, events.reduce((a, e) => a + e.promoted, 0));
  assert.equal(all.sizeAfter, events.at(-1)!.sizeAfter);

  // A window holding only the first scavenge (from is exclusive, to inclusive).
  const one = gcWindow(events, events[0]!.at - 1, events[0]!.at);
  assert.equal(one.scavenges + one.fullGcs, events.filter((e) => e.at === events[0]!.at).length);
  const none = gcWindow(events, events.at(-1)!.at, Infinity);
  assert.equal(none.scavenges, 0);
  assert.ok(Number.isNaN(none.scavengeMeanMs));
  assert.ok(Number.isNaN(none.sizeAfter));
});
