// Tests for the lease table and its state file: binding, expiry, node list changes, a save/load
// round trip that survives a "restart", tolerance of a missing file, and refusal of corrupt ones.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LEASE_FILE_VERSION, MemoryLeaseTable, generalNodeFromInfo, loadLeaseFile, parseLeaseFile, saveLeaseFile } from '../../../src/adapter/lan/leases.js';
import type { Lease } from '../../../src/adapter/lan/leases.js';
import { BOOTREQUEST, Dhcp4Type } from '../../../src/adapter/lan/dhcpv4.js';
import type { Dhcp4Message } from '../../../src/adapter/lan/dhcpv4.js';
import { Dhcp4Server } from '../../../src/adapter/lan/dhcpv4-server.js';
import { ADAPTER_IP4, GN_DUAL, GN_V4, GN_V6, SEED, fuzz, isDecodeError, lanTable, mutate } from './fixtures.js';

const T0 = 1_700_000_000_000;
const dir = mkdtempSync(join(tmpdir(), 'cyphonic-leases-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const isCorrupt = isDecodeError('ERR_LEASES_CORRUPT');

const lease = (over: Partial<Lease> = {}): Lease => ({ mac: GN_DUAL.mac, family: 4, address: GN_DUAL.vip4!, boundAt: T0, expiresAt: T0 + 1000, ...over });

test('bind, lookup, active, holderOf, release, expire; onChange on every change', () => {
  let changes = 0;
  const t = new MemoryLeaseTable([GN_DUAL, GN_V4, GN_V6], { onChange: () => changes++ });
  assert.equal(t.node(GN_DUAL.mac)!.name, 'plc1');
  assert.equal(t.node('52:54:00:99:99:99'), undefined);
  assert.equal(t.holderOf(GN_DUAL.vip6!), GN_DUAL.mac);
  assert.equal(t.holderOf(GN_V4.vip4!), GN_V4.mac);
  assert.equal(t.holderOf('100.64.0.20'), undefined);
  t.bind(lease());
  t.bind(lease({ family: 6, address: GN_DUAL.vip6!, expiresAt: T0 + 5000, duid: 'ab', iaid: 1 }));
  assert.equal(t.active(GN_DUAL.mac, 4, T0 + 999), GN_DUAL.vip4);
  assert.equal(t.active(GN_DUAL.mac, 4, T0 + 1000), undefined, 'expired at expiresAt');
  assert.equal(t.lease(GN_DUAL.mac, 4)!.address, GN_DUAL.vip4, 'still recorded until expire()');
  assert.deepEqual(t.expire(T0 + 2000).map((l) => l.family), [4]);
  assert.equal(t.lease(GN_DUAL.mac, 4), undefined);
  t.release(GN_DUAL.mac, 6);
  t.release(GN_DUAL.mac, 6); // no change the second time
  assert.equal(t.leases().length, 0);
  assert.equal(changes, 4);
});

test('setNodes replaces the directory and drops leases of removed nodes or changed addresses', () => {
  const t = lanTable();
  t.bind(lease());
  t.bind(lease({ mac: GN_V6.mac, family: 6, address: GN_V6.vip6! }));
  t.bind(lease({ mac: GN_V4.mac, address: GN_V4.vip4! }));
  t.setNodes([GN_DUAL, { ...GN_V4, vip4: '100.64.0.55' }]);
  assert.deepEqual(t.leases().map((l) => l.mac), [GN_DUAL.mac]);
  assert.equal(t.node(GN_V6.mac), undefined);
  assert.equal(t.holderOf(GN_V4.vip4!), undefined);
  assert.equal(t.holderOf('100.64.0.55'), GN_V4.mac);
  assert.throws(() => t.setNodes([GN_DUAL, GN_DUAL]), RangeError);
  assert.throws(() => t.setNodes([GN_DUAL, { ...GN_V4, vip4: GN_DUAL.vip4! }]), RangeError);
  assert.throws(() => t.setNodes([{ ...GN_DUAL, mac: 'zz' }]), RangeError);
  assert.throws(() => t.setNodes([{ ...GN_DUAL, vip6: '1.2.3.4' }]), RangeError);
  assert.equal(t.nodes().length, 2, 'a refused list changes nothing');
  // MACs and IPv6 addresses are normalised.
  t.setNodes([{ mac: '52-54-00-AB-CD-EF', name: 'x', vip6: 'FD12:3456:789A:0::77' }]);
  assert.deepEqual(t.node('52:54:00:ab:cd:ef'), { mac: '52:54:00:ab:cd:ef', name: 'x', vip6: 'fd12:3456:789a::77' });
});

test('generalNodeFromInfo converts an AS InfoResponse entry', () => {
  assert.deepEqual(generalNodeFromInfo({ name: 'cam', mac: Buffer.from('525400000004', 'hex'), vip4: '100.64.0.11', fqdn: 'cam.cyphonic.internal' }), {
    mac: '52:54:00:00:00:04',
    name: 'cam',
    fqdn: 'cam.cyphonic.internal',
    vip4: '100.64.0.11',
  });
});

test('leases survive a save/load round trip, and a restarted server renews them', () => {
  const path = join(dir, 'leases.json');
  const t = lanTable();
  const before = new Dhcp4Server({ serverIp: ADAPTER_IP4, subnetMask: '255.192.0.0' }, { leases: t });
  const request: Dhcp4Message = {
    op: BOOTREQUEST,
    hops: 0,
    xid: 9,
    secs: 0,
    broadcast: false,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr: GN_DUAL.mac,
    sname: '',
    file: '',
    options: { messageType: Dhcp4Type.REQUEST, serverId: ADAPTER_IP4, requestedIp: GN_DUAL.vip4!, hostname: 'plc-1', clientId: new Uint8Array([1, 2, 3]), other: [] },
  };
  before.handle({ ...request, options: { ...request.options } }, GN_DUAL.mac, T0);
  t.bind(lease({ mac: GN_V6.mac, family: 6, address: GN_V6.vip6!, duid: '00030001525400000006', iaid: 42 }));
  saveLeaseFile(path, t.snapshot());
  assert.match(readFileSync(path, 'utf8'), /"version": 1/);

  const restored = MemoryLeaseTable.fromSnapshot(loadLeaseFile(path));
  assert.deepEqual(restored.snapshot(), t.snapshot());
  assert.equal(restored.active(GN_DUAL.mac, 4, T0 + 1), GN_DUAL.vip4);
  assert.equal(restored.lease(GN_DUAL.mac, 4)!.hostname, 'plc-1');
  const after = new Dhcp4Server({ serverIp: ADAPTER_IP4, subnetMask: '255.192.0.0' }, { leases: restored });
  const renew = after.handle({ ...request, ciaddr: GN_DUAL.vip4!, options: { messageType: Dhcp4Type.REQUEST, other: [] } }, GN_DUAL.mac, T0 + 60_000)!;
  assert.equal(renew.options.messageType, Dhcp4Type.ACK);
  assert.equal(restored.lease(GN_DUAL.mac, 4)!.expiresAt, T0 + 60_000 + 3600_000);
});

test('fromSnapshot keeps only leases that match the node list', () => {
  const snap = lanTable().snapshot();
  snap.leases.push(lease(), lease({ mac: GN_V4.mac, address: '100.64.0.99' }), lease({ mac: '52:54:00:99:99:99' }));
  assert.deepEqual(MemoryLeaseTable.fromSnapshot(snap).leases().map((l) => l.mac), [GN_DUAL.mac]);
});

test('a missing file is an empty table; a corrupt one is refused with ERR_LEASES_CORRUPT', () => {
  assert.deepEqual(loadLeaseFile(join(dir, 'nope.json')), { version: LEASE_FILE_VERSION, nodes: [], leases: [] });
  const good = lanTable();
  good.bind(lease());
  const text = JSON.stringify(good.snapshot());
  assert.deepEqual(parseLeaseFile(text), good.snapshot());
  const corrupt = [
    '',
    '{"version":1,"nodes":[',
    'null',
    '[]',
    '{"version":2,"nodes":[],"leases":[]}',
    '{"version":1,"nodes":[]}',
    text.replace(GN_DUAL.mac, 'zz:zz'),
    text.replace(`"${GN_DUAL.mac}"`, `"${GN_DUAL.mac.replace(/:/g, '-')}"`), // not canonical
    text.replace('"family":4', '"family":5'),
    text.replace(`"address":"${GN_DUAL.vip4}"`, '"address":"1.2.3"'),
    text.replace(`"expiresAt":${T0 + 1000}`, '"expiresAt":"soon"'),
    text.replace(`"name":"cam4"`, '"name":4'),
    text.replace(`"vip4":"${GN_V4.vip4}"`, `"vip4":"${GN_DUAL.vip4}"`), // two nodes, one address
    text.replace(`"vip6":"${GN_DUAL.vip6}"`, '"vip6":"FD12:3456:789A::10"'), // not canonical
    JSON.stringify({ ...good.snapshot(), leases: [{ ...lease(), clientId: 'xyz' }] }),
    JSON.stringify({ ...good.snapshot(), leases: [{ ...lease(), iaid: -1 }] }),
    JSON.stringify({ ...good.snapshot(), leases: [7] }),
  ];
  corrupt.forEach((c, i) => assert.throws(() => parseLeaseFile(c), isCorrupt, `case ${i}: ${c.slice(0, 80)}`));
  const path = join(dir, 'corrupt.json');
  writeFileSync(path, '{"version":1,"nodes":[{"mac":');
  assert.throws(() => loadLeaseFile(path), isCorrupt);
  assert.throws(() => loadLeaseFile(dir), (err: unknown) => (err as NodeJS.ErrnoException).code === 'EISDIR', 'other I/O errors propagate');
});

test('fuzz: mutated lease files load or are refused with ERR_LEASES_CORRUPT', () => {
  const t = lanTable();
  t.bind(lease());
  t.bind(lease({ mac: GN_V6.mac, family: 6, address: GN_V6.vip6!, duid: 'abcd', iaid: 3 }));
  const text = Buffer.from(JSON.stringify(t.snapshot()));
  const n = fuzz(SEED, 3000, (rnd) => mutate(rnd, text), (b) => parseLeaseFile(Buffer.from(b).toString('latin1')), (s) => {
    assert.deepEqual(parseLeaseFile(JSON.stringify(s)), s);
  });
  assert.ok(n > 10, String(n));
});

test('a renewal (same address, later expiry) is reported as such; a new binding or a release as a change', () => {
  const seen: string[] = [];
  const t = new MemoryLeaseTable([GN_DUAL], { onChange: (what) => seen.push(what) });
  const lease = { mac: GN_DUAL.mac, family: 4 as const, address: GN_DUAL.vip4!, expiresAt: 1000, boundAt: 0 };
  t.bind(lease);
  t.bind({ ...lease, expiresAt: 2000 });
  t.release(GN_DUAL.mac, 4);
  assert.deepEqual(seen, ['change', 'renewal', 'change']);
});
