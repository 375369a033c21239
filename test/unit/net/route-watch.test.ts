// The address watcher's parser (lines of `ip -o monitor address route` and `ip -o addr show`, hostile ones
// included) and its debounced change reports, fed lines directly (no child process).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AddressWatcher, parseMonitorLine, usable, type LocalAddress } from '../../../src/net/route/watch.js';
import { DecodeError } from '../../../src/util/errors.js';
import { prng } from '../../harness/prng.js';

// Captured from iproute2 6.1 on this kernel (a veth in a namespace: addresses, DAD, routes, link deletion).
const LINES = {
  add4: '2: mv0a    inet 10.9.0.5/24 scope global mv0a\\       valid_lft forever preferred_lft forever',
  add6: '2: mv0a    inet6 2001:db8:9::5/64 scope global nodad \\       valid_lft forever preferred_lft forever',
  tentative6: '2: mv0a    inet6 2001:db8:9::6/64 scope global tentative \\       valid_lft forever preferred_lft forever',
  link6: '2: mv0a    inet6 fe80::4833:28ff:fed2:9f07/64 scope link tentative \\       valid_lft forever preferred_lft forever',
  del4: 'Deleted 2: mv0a    inet 10.9.0.5/24 scope global mv0a\\       valid_lft forever preferred_lft forever',
  brd4: '3: eth0    inet 198.18.0.13/24 brd 198.18.0.255 scope global eth0\\       valid_lft forever preferred_lft forever',
  route: 'default via 2001:db8:9::1 dev mv0a metric 1024 pref medium',
  delRoute: 'Deleted default via 2001:db8:9::1 dev mv0a metric 1024 pref medium',
  local: 'local 10.9.0.5 dev mv0a table local proto kernel scope host src 10.9.0.5 ',
  prefix: '10.9.0.0/24 dev mv0a proto kernel scope link src 10.9.0.5 ',
};

describe('parseMonitorLine', () => {
  test('address lines: family, address, prefix, scope, flags; Deleted marks removals', () => {
    assert.deepEqual(parseMonitorLine(LINES.add4), { kind: 'address', deleted: false, addr: { ifname: 'mv0a', family: 4, address: '10.9.0.5', prefixLen: 24, scope: 'global', flags: [] } });
    const a6 = parseMonitorLine(LINES.add6);
    assert.equal(a6.kind, 'address');
    if (a6.kind === 'address') {
      assert.deepEqual([a6.addr.family, a6.addr.address, a6.addr.prefixLen, a6.addr.flags], [6, '2001:db8:9::5', 64, ['nodad']]);
      assert.equal(usable(a6.addr), true);
    }
    const t = parseMonitorLine(LINES.tentative6);
    assert.ok(t.kind === 'address' && !usable(t.addr), 'a tentative address (DAD running) is not usable');
    const l = parseMonitorLine(LINES.link6);
    assert.ok(l.kind === 'address' && l.addr.scope === 'link' && !usable(l.addr), 'link-local is not usable');
    const d = parseMonitorLine(LINES.del4);
    assert.ok(d.kind === 'address' && d.deleted && d.addr.address === '10.9.0.5');
    const b = parseMonitorLine(LINES.brd4);
    assert.ok(b.kind === 'address' && b.addr.address === '198.18.0.13' && usable(b.addr));
  });

  test('route lines are route events; other lines are ignored', () => {
    assert.deepEqual(parseMonitorLine(LINES.route), { kind: 'route', deleted: false, dst: 'default' });
    assert.deepEqual(parseMonitorLine(LINES.delRoute), { kind: 'route', deleted: true, dst: 'default' });
    assert.equal(parseMonitorLine(LINES.local).kind, 'route');
    assert.equal(parseMonitorLine(LINES.prefix).kind, 'route');
    assert.equal(parseMonitorLine('').kind, 'other');
    assert.equal(parseMonitorLine('3: eth0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN').kind, 'other');
  });

  test('hostile lines: a typed error or "other", never a crash', () => {
    assert.throws(() => parseMonitorLine('2: eth0    inet 999.1.1.1/99 scope global eth0'), (e: unknown) => e instanceof DecodeError && e.code === 'ERR_MONITOR_LINE');
    assert.throws(() => parseMonitorLine('2: eth0    inet6 zz/64 scope global'), DecodeError);
    assert.throws(() => parseMonitorLine('x'.repeat(5000)), DecodeError);
    const r = prng(7);
    for (let i = 0; i < 2000; i++) {
      const base = Object.values(LINES)[i % 10]!;
      const chars = [...base];
      for (let k = 0; k < 3; k++) chars[Math.floor(r() * chars.length)] = String.fromCharCode(32 + Math.floor(r() * 95));
      try {
        parseMonitorLine(chars.join(''));
      } catch (err) {
        assert.ok(err instanceof DecodeError, String(err));
      }
    }
  });
});

describe('AddressWatcher (fed lines)', () => {
  test('a burst of events is reported once, after the debounce, with the usable set; a burst back to the same set is not reported', async () => {
    const w = new AddressWatcher({ debounceMs: 10, exclude: (ifname) => ifname === 'cyp0' });
    const seen: LocalAddress[][] = [];
    w.onChange = (a) => seen.push(a);
    w.feed(LINES.add4);
    w.feed(LINES.add6);
    w.feed(LINES.tentative6);
    w.feed('5: cyp0    inet 100.64.0.7/10 scope global cyp0\\       valid_lft forever preferred_lft forever');
    w.feed(LINES.route);
    assert.equal(seen.length, 0, 'nothing before the debounce');
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0]!.map((a) => a.address).sort(), ['10.9.0.5', '2001:db8:9::5']);
    // DAD completes for ::6 (the kernel re-announces it without "tentative"): the set grows.
    w.feed(LINES.tentative6.replace('tentative ', ''));
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(seen.length, 2);
    assert.equal(seen[1]!.length, 3);
    // Removed and re-added within the debounce: same set, no report.
    w.feed(LINES.del4);
    w.feed(LINES.add4);
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(seen.length, 2);
    w.feed(LINES.del4);
    w.feed('garbage inet line 2: eth0    inet 1.2.3/8 scope global');
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(seen.length, 3);
    assert.deepEqual(seen[2]!.map((a) => a.address).sort(), ['2001:db8:9::5', '2001:db8:9::6']);
    w.stop();
  });
});

describe('AddressWatcher (child process)', () => {
  test('loads the dump at start, restarts a monitor that dies, and stops for good on stop()', async () => {
    // A stand-in for `ip`: the dump prints one address; "monitor" prints one event and exits at once.
    const dir = mkdtempSync(join(tmpdir(), 'cyp-watch-'));
    const ip = join(dir, 'ip');
    writeFileSync(
      ip,
      [
        '#!/bin/sh',
        'case "$*" in',
        `  *monitor*) echo '${LINES.add6}'; exit 0 ;;`,
        `  *) echo '${LINES.add4}' ;;`,
        'esac',
        '',
      ].join('\n'),
    );
    chmodSync(ip, 0o755);
    const w = new AddressWatcher({ ipPath: ip, debounceMs: 5 });
    try {
      const first = await w.start();
      assert.ok(first.some((a) => a.address === '10.9.0.5'), 'the dump is loaded');
      await new Promise((r) => setTimeout(r, 900));
      assert.ok(w.stats.restarts >= 2, `restarted after exiting (${w.stats.restarts})`);
      assert.deepEqual(w.current().map((a) => a.address).sort(), ['10.9.0.5', '2001:db8:9::5']);
      w.stop();
      const n = w.stats.restarts;
      await new Promise((r) => setTimeout(r, 700));
      assert.equal(w.stats.restarts, n, 'no restart after stop()');
    } finally {
      w.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
