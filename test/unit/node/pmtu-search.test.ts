// The path MTU search of one tunnel path (src/node/dataplane/pmtu.ts) against simulated paths: probes that fit are
// acknowledged one "round trip" later, larger ones vanish (a black hole: no ICMP). Checks that it converges just
// under the path's limit in a few seconds, stays optimistic on a good path, respects the kernel's path MTU, probes
// again while traffic flows (a path that narrows later is found), not when idle, and starts over after a move.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE_V4, CONFIRM_MS, PathMtuSearch, SEARCH_STEP } from '../../../src/node/dataplane/pmtu.js';

const MAX = 1400 + 20 + 52;

/** Runs the search for `ms` of simulated time in 50 ms ticks over a path carrying at most `limit()` bytes. */
function drive(
  s: PathMtuSearch,
  from: number,
  ms: number,
  limit: () => number,
  opts: { kernel?: number; busy?: boolean; probes?: number[]; each?: (now: number) => void } = {},
): number {
  let now = from;
  let pending: { id: number; size: number; at: number } | null = null;
  for (; now < from + ms; now += 50) {
    if (pending && now >= pending.at) {
      s.ack(pending.id, pending.size, now);
      pending = null;
    }
    const p = s.tick(now, opts.kernel ?? 0, opts.busy ?? true);
    if (p) {
      opts.probes?.push(p.size);
      if (p.size <= limit()) pending = { id: p.id, size: p.size, at: now + 20 };
    }
    opts.each?.(now);
  }
  return now;
}

test('a good path: one probe at the largest size, no limit set', () => {
  const s = new PathMtuSearch(MAX, BASE_V4, 0);
  const probes: number[] = [];
  drive(s, 0, 2000, () => 1500, { probes });
  assert.deepEqual(probes, [MAX]);
  assert.equal(s.plpmtu, 0, 'unlimited: the full TUN MTU stays usable');
  assert.equal(s.phase, 'done');
  assert.equal(s.blackHoles, 0);
});

test('a black-holed 1280 path: found in seconds, settled just under 1280', () => {
  const s = new PathMtuSearch(MAX, BASE_V4, 0);
  let converged = -1;
  drive(s, 0, 20_000, () => 1280, { each: (now) => void (converged < 0 && s.phase === 'done' && now > 0 && s.plpmtu > 0 && (converged = now)) });
  assert.equal(s.blackHoles, 1);
  assert.ok(s.plpmtu <= 1280 && s.plpmtu > 1280 - SEARCH_STEP, `plpmtu ${s.plpmtu}`);
  assert.ok(converged > 0 && converged < 8000, `converged after ${converged} ms`);
});

test('never probes above the kernel\'s path MTU', () => {
  const s = new PathMtuSearch(MAX, BASE_V4, 0);
  const probes: number[] = [];
  drive(s, 0, 3000, () => 1500, { kernel: 1300, probes });
  assert.ok(probes.length > 0 && probes.every((p) => p <= 1300), JSON.stringify(probes));
  assert.equal(s.blackHoles, 0);
});

test('a path that narrows later is found by the confirmation probes while traffic flows; idle paths are left alone', () => {
  const s = new PathMtuSearch(MAX, BASE_V4, 0);
  let limit = 1500;
  let t = drive(s, 0, 1000, () => limit);
  assert.equal(s.plpmtu, 0);
  const idle: number[] = [];
  t = drive(s, t, 3 * CONFIRM_MS, () => limit, { busy: false, probes: idle });
  assert.deepEqual(idle, [], 'no probes without traffic');
  limit = 1300;
  drive(s, t, CONFIRM_MS + 6000, () => limit);
  assert.equal(s.blackHoles, 1);
  assert.ok(s.plpmtu <= 1300 && s.plpmtu > 1300 - SEARCH_STEP, `plpmtu ${s.plpmtu}`);
});

test('stale or forged acks change nothing; a move starts over', () => {
  const s = new PathMtuSearch(MAX, BASE_V4, 0);
  const p = s.tick(0, 0)!;
  s.ack(p.id + 1, p.size, 10);
  s.ack(p.id, p.size - 1, 10);
  assert.equal(s.phase, 'start');
  drive(s, 0, 5000, () => 1280);
  assert.ok(s.plpmtu > 0);
  s.restart(6000);
  assert.equal(s.plpmtu, 0);
  assert.equal(s.phase, 'start');
  assert.equal(s.tick(6000, 0)?.size, MAX);
});
