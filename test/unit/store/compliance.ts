// The Store compliance suite: every backend (SQLite and PostgreSQL) must pass it unchanged.
// `open` must return a fresh, empty, migrated store each time it is called.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { contains, offsetOf } from '../../../src/net/addr/cidr.js';
import { StoreError } from '../../../src/store/errors.js';
import { CERTS_REV_KEY, MAX_INSTANCE_MESSAGE } from '../../../src/store/types.js';
import type { CloudInstanceRecord, NodeRecord, Pools, RegistrationRecord, RelayServerRecord, Store } from '../../../src/store/types.js';

export const POOLS: Pools = { v4: '100.64.0.0/10', v6: 'fd12:3456:789a::/48' };

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected StoreError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

function reg(nodeId: number, over: Partial<RegistrationRecord> = {}): RegistrationRecord {
  return {
    nodeId,
    reported: [
      { address: '192.168.1.10', port: 4500 },
      { address: '2001:db8::10', port: 4501 },
    ],
    observed: { address: '203.0.113.7', port: 61000 },
    nat: true,
    keepaliveSec: 25,
    registeredAt: 1_700_000_000_000,
    lastSeen: 1_700_000_000_000,
    lastSeq: 1n,
    ...over,
  };
}

export function runStoreCompliance(label: string, open: () => Promise<Store>, opts: { skip?: string | false } = {}): void {
  describe(`Store compliance: ${label}`, { skip: opts.skip ?? false }, () => {
    /** Opens a fresh store for one test and closes it afterwards. */
    async function withStore(fn: (s: Store) => Promise<void>): Promise<void> {
      const s = await open();
      try {
        await fn(s);
      } finally {
        await s.close();
      }
    }

    describe('meta and lifecycle', () => {
      test('get/set meta, overwrite', () =>
        withStore(async (s) => {
          assert.equal(await s.getMeta('ca.fingerprint'), null);
          await s.setMeta('ca.fingerprint', 'abc');
          assert.equal(await s.getMeta('ca.fingerprint'), 'abc');
          await s.setMeta('ca.fingerprint', 'def');
          assert.equal(await s.getMeta('ca.fingerprint'), 'def');
          await s.setMeta('empty', '');
          assert.equal(await s.getMeta('empty'), '');
        }));

      test('setMetaIfAbsent: the first value wins, also among concurrent callers', () =>
        withStore(async (s) => {
          assert.equal(await s.setMetaIfAbsent('relay.key', 'first'), 'first');
          assert.equal(await s.setMetaIfAbsent('relay.key', 'second'), 'first');
          assert.equal(await s.getMeta('relay.key'), 'first');
          const got = await Promise.all(Array.from({ length: 20 }, (_, i) => s.setMetaIfAbsent('race', `v${i}`)));
          assert.equal(new Set(got).size, 1);
          assert.equal(await s.getMeta('race'), got[0]);
          await s.setMeta('relay.key', 'replaced');
          assert.equal(await s.setMetaIfAbsent('relay.key', 'third'), 'replaced');
        }));

      test('migrate is idempotent', () =>
        withStore(async (s) => {
          await s.setMeta('k', 'v');
          await s.migrate();
          await s.migrate();
          assert.equal(await s.getMeta('k'), 'v');
        }));

      test('calls after close reject with ERR_STORE_CLOSED; close is idempotent', async () => {
        const s = await open();
        await s.close();
        await s.close();
        await rejectsWith(s.getMeta('k'), 'ERR_STORE_CLOSED');
        await rejectsWith(s.listNodes(), 'ERR_STORE_CLOSED');
      });
    });

    describe('enrollment tokens', () => {
      const base = { name: 'laptop', tokenHash: 'h1', expiresAt: 2_000, createdAt: 1_000 };

      test('consumed once, then used', () =>
        withStore(async (s) => {
          await s.createEnrollmentToken(base);
          assert.deepEqual(await s.consumeEnrollmentToken('h1', 1_500), { ok: true, name: 'laptop' });
          assert.deepEqual(await s.consumeEnrollmentToken('h1', 1_501), { ok: false, reason: 'used' });
          // used wins over expired once consumed
          assert.deepEqual(await s.consumeEnrollmentToken('h1', 9_999), { ok: false, reason: 'used' });
        }));

      test('expired at and after expiresAt', () =>
        withStore(async (s) => {
          await s.createEnrollmentToken(base);
          assert.deepEqual(await s.consumeEnrollmentToken('h1', 2_000), { ok: false, reason: 'expired' });
          assert.deepEqual(await s.consumeEnrollmentToken('h1', 5_000), { ok: false, reason: 'expired' });
        }));

      test('unknown', () =>
        withStore(async (s) => {
          assert.deepEqual(await s.consumeEnrollmentToken('nope', 1), { ok: false, reason: 'unknown' });
        }));

      test('duplicate hash is rejected', () =>
        withStore(async (s) => {
          await s.createEnrollmentToken(base);
          await rejectsWith(s.createEnrollmentToken({ ...base, name: 'other' }), 'ERR_STORE_DUPLICATE');
        }));

      test('50 concurrent consumers: exactly one wins', () =>
        withStore(async (s) => {
          await s.createEnrollmentToken({ ...base, tokenHash: 'race' });
          const results = await Promise.all(
            Array.from({ length: 50 }, () => s.consumeEnrollmentToken('race', 1_500)),
          );
          const ok = results.filter((r) => r.ok);
          assert.equal(ok.length, 1);
          assert.deepEqual(ok[0], { ok: true, name: 'laptop' });
          for (const r of results.filter((x) => !x.ok)) assert.deepEqual(r, { ok: false, reason: 'used' });
        }));
    });

    describe('nodes and address allocation', () => {
      test('first node gets offset 1 in both pools', () =>
        withStore(async (s) => {
          const n = await s.createNode({ name: 'a', kind: 'node' }, POOLS);
          assert.equal(n.vip4, '100.64.0.1');
          assert.equal(n.vip6, 'fd12:3456:789a::1');
          assert.equal(n.kind, 'node');
          assert.equal(n.adapterId, null);
          assert.equal(n.mac, null);
          assert.equal(typeof n.id, 'number');
          assert.equal(typeof n.createdAt, 'number');
          assert.deepEqual(await s.getNodeById(n.id), n);
        }));

      test('100 concurrent nodes: distinct, inside pools, no .0/.255, stable', () =>
        withStore(async (s) => {
          const created = await Promise.all(
            Array.from({ length: 100 }, (_, i) => s.createNode({ name: `n${i}`, kind: 'node' }, POOLS)),
          );
          // also a sequential batch to cross the .255/.0 boundary (offsets 255 and 256)
          for (let i = 100; i < 300; i++) created.push(await s.createNode({ name: `n${i}`, kind: 'node' }, POOLS));
          const v4 = new Set(created.map((n) => n.vip4));
          const v6 = new Set(created.map((n) => n.vip6));
          assert.equal(v4.size, 300);
          assert.equal(v6.size, 300);
          assert.equal(new Set(created.map((n) => n.id)).size, 300);
          for (const n of created) {
            assert.ok(contains(POOLS.v4, n.vip4), n.vip4);
            assert.ok(contains(POOLS.v6, n.vip6), n.vip6);
            const last = Number(n.vip4.split('.')[3]);
            assert.ok(last !== 0 && last !== 255, `unusable ${n.vip4}`);
            assert.notEqual(offsetOf(POOLS.v6, n.vip6), 0n);
          }
          assert.ok(!v4.has('100.64.0.255') && !v4.has('100.64.1.0'));
          assert.ok(v4.has('100.64.1.1'));
          // lowest-first: 300 nodes fill offsets 1..254, 257..302 with no gaps
          const offsets = created.map((n) => offsetOf(POOLS.v4, n.vip4)!).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
          assert.equal(offsets[0], 1n);
          assert.equal(offsets[offsets.length - 1], 302n);
          // stable: re-reading gives the same addresses
          const listed = await s.listNodes();
          assert.deepEqual(
            listed.map((n) => n.id),
            [...listed.map((n) => n.id)].sort((a, b) => a - b),
          );
          const byId = new Map(listed.map((n) => [n.id, n]));
          for (const n of created) assert.deepEqual(byId.get(n.id), n);
        }));

      test('name taken', () =>
        withStore(async (s) => {
          await s.createNode({ name: 'dup', kind: 'node' }, POOLS);
          await rejectsWith(s.createNode({ name: 'dup', kind: 'adapter' }, POOLS), 'ERR_NAME_TAKEN');
          assert.equal((await s.listNodes()).length, 1);
          // the failed attempt consumed no address
          const next = await s.createNode({ name: 'other', kind: 'node' }, POOLS);
          assert.equal(next.vip4, '100.64.0.2');
        }));

      test('pool exhausted', () =>
        withStore(async (s) => {
          // /29: offsets 1..6 usable (0 network, 7 broadcast)
          const small: Pools = { v4: '10.9.0.0/29', v6: 'fd00:1::/64' };
          for (let i = 0; i < 6; i++) await s.createNode({ name: `s${i}`, kind: 'node' }, small);
          await rejectsWith(s.createNode({ name: 's6', kind: 'node' }, small), 'ERR_POOL_EXHAUSTED');
          const smallV6: Pools = { v4: '10.10.0.0/16', v6: 'fd00:2::/127' };
          await s.createNode({ name: 't0', kind: 'node' }, smallV6);
          await rejectsWith(s.createNode({ name: 't1', kind: 'node' }, smallV6), 'ERR_POOL_EXHAUSTED');
        }));

      test('adapter and general devices', () =>
        withStore(async (s) => {
          const adapter = await s.createNode({ name: 'gw', kind: 'adapter' }, POOLS);
          const dev = await s.createNode(
            { name: 'printer', kind: 'general', adapterId: adapter.id, mac: '02:00:00:aa:bb:cc' },
            POOLS,
          );
          assert.equal(dev.adapterId, adapter.id);
          assert.equal(dev.mac, '02:00:00:aa:bb:cc');
          assert.deepEqual(await s.getNodeByName('printer'), dev);
          await rejectsWith(
            s.createNode({ name: 'ghost', kind: 'general', adapterId: 99_999 }, POOLS),
            'ERR_STORE_REFERENCE',
          );
          assert.equal(await s.getNodeByName('ghost'), null);
        }));

      test('address family of a node, and the general devices of one adapter', () =>
        withStore(async (s) => {
          const gw = await s.createNode({ name: 'gw', kind: 'node' }, POOLS);
          const other = await s.createNode({ name: 'gw2', kind: 'node' }, POOLS);
          assert.equal(gw.family, 'dual');
          const cam = await s.createNode({ name: 'cam', kind: 'general', adapterId: gw.id, mac: '02:00:00:00:00:01', family: 'v6' }, POOLS);
          await s.createNode({ name: 'meter', kind: 'general', adapterId: other.id, mac: '02:00:00:00:00:02', family: 'v4' }, POOLS);
          const plc = await s.createNode({ name: 'plc', kind: 'general', adapterId: gw.id, mac: '02:00:00:00:00:03' }, POOLS);
          assert.equal(cam.family, 'v6');
          assert.ok(cam.vip4 && cam.vip6, 'both addresses are allocated whatever the family');
          assert.equal((await s.getNodeByName('cam'))!.family, 'v6');
          assert.deepEqual((await s.listGeneralNodes(gw.id)).map((n) => [n.name, n.family]), [['cam', 'v6'], ['plc', 'dual']]);
          assert.deepEqual((await s.listGeneralNodes(other.id)).map((n) => n.name), ['meter']);
          assert.deepEqual(await s.listGeneralNodes(plc.id), []);
          assert.deepEqual((await s.listGeneralNodes()).map((n) => [n.name, n.adapterId]), [['cam', gw.id], ['meter', other.id], ['plc', gw.id]], 'every adapter\'s, by id; the adapters themselves are not listed');
          await rejectsWith(s.createNode({ name: 'bad', kind: 'general', adapterId: gw.id, family: 'v5' as never }, POOLS), 'ERR_STORE_INVALID');
        }));

      test('every certificate write gives CERTS_REV_KEY a new value (route selection caches certificates under it)', () =>
        withStore(async (s) => {
          const a = await s.createNode({ name: 'a', kind: 'node' }, POOLS);
          assert.equal(await s.getMeta(CERTS_REV_KEY), null, 'no certificate written yet');
          const seen = new Set<string>();
          const changed = async (what: string): Promise<void> => {
            const rev = await s.getMeta(CERTS_REV_KEY);
            assert.ok(rev !== null && !seen.has(rev), `${what}: a new value (${rev})`);
            seen.add(rev);
          };
          await s.addCertificate({ serial: 'c1', nodeId: a.id, der: Buffer.from([0x30]), notAfter: 5_000, createdAt: 1_000 });
          await changed('addCertificate');
          assert.equal(await s.revokeCertificate('c1', 'test', 2_000), true);
          await changed('revokeCertificate');
          await s.addCertificate({ serial: 'c2', nodeId: a.id, der: Buffer.from([0x30]), notAfter: 5_000, createdAt: 1_000 });
          await changed('addCertificate');
          assert.equal(await s.revokeNodeCertificates(a.id, 'test', 3_000), 1);
          await changed('revokeNodeCertificates');
          assert.equal(await s.revokeNodeCertificates(a.id, 'test', 3_000), 0, 'the count is still the rows revoked now');
          await rejectsWith(s.addCertificate({ serial: 'c2', nodeId: a.id, der: Buffer.from([0x30]), notAfter: 1, createdAt: 1 }), 'ERR_STORE_DUPLICATE');
          await rejectsWith(s.addCertificate({ serial: 'c9', nodeId: 99_999, der: Buffer.from([0x30]), notAfter: 1, createdAt: 1 }), 'ERR_STORE_REFERENCE');
          seen.add((await s.getMeta(CERTS_REV_KEY))!);
          assert.equal(await s.deleteNode(a.id), true);
          await changed('deleteNode');
        }));

      test('deleteNode: the node and its certificates, Common Key, registration and tags go; an adapter with general nodes stays', () =>
        withStore(async (s) => {
          const gw = await s.createNode({ name: 'gw', kind: 'node' }, POOLS);
          const cam = await s.createNode({ name: 'cam', kind: 'general', adapterId: gw.id, mac: '02:00:00:00:00:01' }, POOLS);
          const other = await s.createNode({ name: 'other', kind: 'node' }, POOLS);
          await s.addCertificate({ serial: '0a', nodeId: cam.id, der: Buffer.from([0x30]), notAfter: 5_000, createdAt: 1_000 });
          await s.putCommonKey({ nodeId: cam.id, key: Buffer.alloc(32, 1), expiresAt: 9, createdAt: 1 });
          await s.upsertRegistration(reg(cam.id));
          await s.setNodeTags('cam', ['video']);
          await s.setNodeTags('other', ['ops']);
          await rejectsWith(s.deleteNode(gw.id), 'ERR_STORE_REFERENCE');
          assert.ok(await s.getNodeByName('gw'), 'a refused delete changes nothing');
          assert.equal(await s.deleteNode(cam.id), true);
          assert.equal(await s.deleteNode(cam.id), false);
          assert.equal(await s.getNodeById(cam.id), null);
          assert.equal(await s.getNodeByVip(cam.vip4), null);
          assert.equal(await s.getCertificate('0a'), null);
          assert.equal(await s.getCommonKey(cam.id), null);
          assert.equal(await s.getRegistration(cam.id), null);
          assert.deepEqual(await s.getNodeTags('cam'), []);
          assert.deepEqual(await s.getNodeTags('other'), ['ops']);
          assert.deepEqual(await s.listGeneralNodes(gw.id), []);
          // Ids are never given out again (peers may still hold the old one); the addresses are free again.
          const next = await s.createNode({ name: 'cam', kind: 'node' }, POOLS);
          assert.ok(next.id > other.id, `new id ${next.id}`);
          assert.equal(await s.deleteNode(gw.id), true);
        }));

      test('lookups by id, name, vip4, vip6 (any textual form)', () =>
        withStore(async (s) => {
          const nodes: NodeRecord[] = [];
          for (const name of ['x', 'y', 'z']) nodes.push(await s.createNode({ name, kind: 'node' }, POOLS));
          const y = nodes[1]!;
          assert.deepEqual(await s.getNodeById(y.id), y);
          assert.deepEqual(await s.getNodeByName('y'), y);
          assert.deepEqual(await s.getNodeByVip(y.vip4), y);
          assert.deepEqual(await s.getNodeByVip(y.vip6), y);
          assert.deepEqual(await s.getNodeByVip('FD12:3456:789A:0000:0000:0000:0000:0002'), y);
          assert.equal(await s.getNodeById(12345), null);
          assert.equal(await s.getNodeByName('nobody'), null);
          assert.equal(await s.getNodeByVip('100.64.9.9'), null);
          assert.equal(await s.getNodeByVip('not an address'), null);
          assert.deepEqual(await s.listNodes(), nodes);
        }));

      test('point reads asked for in one turn (as route selections do): each caller its own, correct answer', () =>
        withStore(async (s) => {
          const x = await s.createNode({ name: 'x', kind: 'node' }, POOLS);
          const y = await s.createNode({ name: 'y', kind: 'node' }, POOLS);
          await s.setMeta('k1', 'v1');
          await s.setNodeTags('x', ['cam', 'video']);
          const der = Buffer.from([0x30, 0x03, 0x02, 0x01, 0x07]);
          await s.addCertificate({ serial: '0b', nodeId: x.id, der, notAfter: 9_000, createdAt: 2_000 });
          await s.addCertificate({ serial: '0a', nodeId: x.id, der, notAfter: 8_000, createdAt: 1_000 });
          await s.upsertRegistration(reg(y.id));
          // Every kind twice for the same key and once for a missing one, all before any answer.
          const [m1, m1again, mNone, n1, n1again, nNone, v4, v6, vNone, t1, t1again, tNone, r1, r1again, rNone, c1, c1again, cNone] = await Promise.all([
            s.getMeta('k1'), s.getMeta('k1'), s.getMeta('none'),
            s.getNodeByName('x'), s.getNodeByName('x'), s.getNodeByName('nobody'),
            s.getNodeByVip(y.vip4), s.getNodeByVip(y.vip6.toUpperCase()), s.getNodeByVip('100.64.9.9'),
            s.getNodeTags('x'), s.getNodeTags('x'), s.getNodeTags('y'),
            s.getRegistration(y.id), s.getRegistration(y.id), s.getRegistration(x.id),
            s.listNodeCertificates(x.id), s.listNodeCertificates(x.id), s.listNodeCertificates(y.id),
          ]);
          assert.deepEqual([m1, m1again, mNone], ['v1', 'v1', null]);
          assert.deepEqual([n1, n1again, nNone], [x, x, null]);
          assert.deepEqual([v4, v6, vNone], [y, y, null]);
          assert.deepEqual([t1, t1again, tNone], [['cam', 'video'], ['cam', 'video'], []]);
          assert.deepEqual([r1, r1again, rNone], [reg(y.id), reg(y.id), null]);
          assert.deepEqual([c1, c1again, cNone].map((l) => l.map((c) => c.serial)), [['0a', '0b'], ['0a', '0b'], []]);
          // Records of their own: one caller changing its answer does not change another's.
          assert.notEqual(n1, n1again);
          assert.notEqual(t1, t1again);
          assert.notEqual(r1, r1again);
          assert.notEqual(c1, c1again);
        }));

      test('invalid input', () =>
        withStore(async (s) => {
          await rejectsWith(s.createNode({ name: '', kind: 'node' }, POOLS), 'ERR_STORE_INVALID');
          await rejectsWith(
            s.createNode({ name: 'k', kind: 'bogus' as unknown as 'node' }, POOLS),
            'ERR_STORE_INVALID',
          );
          await rejectsWith(s.createNode({ name: 'k', kind: 'node' }, { v4: POOLS.v6, v6: POOLS.v4 }), 'ERR_STORE_INVALID');
          await assert.rejects(s.createNode({ name: 'k', kind: 'node' }, { v4: '10.0.0.1/8', v6: POOLS.v6 }), {
            code: 'ERR_CONFIG',
          });
        }));
    });

    describe('certificates and revocation', () => {
      test('add, get, revoke, list', () =>
        withStore(async (s) => {
          const a = await s.createNode({ name: 'a', kind: 'node' }, POOLS);
          const b = await s.createNode({ name: 'b', kind: 'node' }, POOLS);
          const der = Buffer.from([0x30, 0x82, 0x01, 0x00, 0xff]);
          await s.addCertificate({ serial: '01ab', nodeId: a.id, der, notAfter: 5_000, createdAt: 1_000 });
          await s.addCertificate({ serial: '02cd', nodeId: a.id, der, notAfter: 6_000, createdAt: 2_000 });
          await s.addCertificate({ serial: '03ef', nodeId: b.id, der, notAfter: 6_000, createdAt: 2_000 });
          await rejectsWith(
            s.addCertificate({ serial: '01ab', nodeId: b.id, der, notAfter: 1, createdAt: 1 }),
            'ERR_STORE_DUPLICATE',
          );
          await rejectsWith(
            s.addCertificate({ serial: '09', nodeId: 99_999, der, notAfter: 1, createdAt: 1 }),
            'ERR_STORE_REFERENCE',
          );

          const c = await s.getCertificate('01ab');
          assert.ok(c);
          assert.deepEqual(c, { serial: '01ab', nodeId: a.id, der, notAfter: 5_000, createdAt: 1_000, revokedAt: null, revokeReason: null });
          assert.ok(Buffer.isBuffer(c.der));
          assert.equal(await s.getCertificate('nope'), null);
          assert.deepEqual((await s.listNodeCertificates(a.id)).map((x) => x.serial), ['01ab', '02cd']);

          assert.equal(await s.isRevoked('01ab'), false);
          assert.equal(await s.isRevoked('unknown'), false);
          assert.deepEqual(await s.listRevokedSerials(), []);

          assert.equal(await s.revokeCertificate('01ab', 'keyCompromise', 3_000), true);
          assert.equal(await s.revokeCertificate('01ab', 'again', 4_000), false);
          assert.equal(await s.revokeCertificate('unknown', 'x', 4_000), false);
          const r = await s.getCertificate('01ab');
          assert.equal(r?.revokedAt, 3_000);
          assert.equal(r?.revokeReason, 'keyCompromise');
          assert.equal(await s.isRevoked('01ab'), true);

          assert.equal(await s.revokeNodeCertificates(a.id, 'nodeRemoved', 5_000), 1);
          assert.equal(await s.revokeNodeCertificates(a.id, 'nodeRemoved', 6_000), 0);
          assert.equal((await s.getCertificate('01ab'))?.revokeReason, 'keyCompromise');
          assert.equal((await s.getCertificate('02cd'))?.revokedAt, 5_000);
          assert.deepEqual(await s.listRevokedSerials(), ['01ab', '02cd']);
          assert.equal(await s.isRevoked('03ef'), false);
        }));
    });

    describe('common keys', () => {
      test('put replaces, one per node', () =>
        withStore(async (s) => {
          const a = await s.createNode({ name: 'a', kind: 'node' }, POOLS);
          const b = await s.createNode({ name: 'b', kind: 'node' }, POOLS);
          assert.equal(await s.getCommonKey(a.id), null);
          const k1 = Buffer.alloc(32, 1);
          const k2 = Buffer.alloc(32, 2);
          await s.putCommonKey({ nodeId: a.id, key: k1, expiresAt: 10, createdAt: 1 });
          await s.putCommonKey({ nodeId: b.id, key: k1, expiresAt: 11, createdAt: 1 });
          await s.putCommonKey({ nodeId: a.id, key: k2, expiresAt: 20, createdAt: 2 });
          const got = await s.getCommonKey(a.id);
          assert.deepEqual(got, { nodeId: a.id, key: k2, expiresAt: 20, createdAt: 2 });
          assert.ok(Buffer.isBuffer(got?.key));
          // Memory of its own, not a slice of a shared pool: the NMS keeps it while the node is registered.
          assert.equal(got?.key.buffer.byteLength, 32, 'the key owns its ArrayBuffer');
          assert.deepEqual((await s.getCommonKey(b.id))?.key, k1);
          await rejectsWith(s.putCommonKey({ nodeId: 99_999, key: k1, expiresAt: 1, createdAt: 1 }), 'ERR_STORE_REFERENCE');
        }));
    });

    describe('registrations', () => {
      test('upsert, touch, list, delete', () =>
        withStore(async (s) => {
          const a = await s.createNode({ name: 'a', kind: 'node' }, POOLS);
          const b = await s.createNode({ name: 'b', kind: 'node' }, POOLS);
          assert.equal(await s.getRegistration(a.id), null);
          assert.equal(await s.touchRegistration(a.id, 1, 1n, { address: '1.2.3.4', port: 1 }), false);

          await s.upsertRegistration(reg(b.id));
          await s.upsertRegistration(reg(a.id, { nat: false, reported: [] }));
          assert.deepEqual(await s.getRegistration(b.id), reg(b.id));
          assert.deepEqual(await s.getRegistration(a.id), reg(a.id, { nat: false, reported: [] }));
          assert.deepEqual(
            (await s.listRegistrations()).map((r) => r.nodeId),
            [a.id, b.id],
          );

          const replaced = reg(a.id, { keepaliveSec: 10, registeredAt: 5, lastSeen: 5, lastSeq: 7n });
          await s.upsertRegistration(replaced);
          assert.deepEqual(await s.getRegistration(a.id), replaced);

          const observed = { address: '198.51.100.1', port: 40000 };
          assert.equal(await s.touchRegistration(a.id, 99, 8n, observed), true);
          assert.deepEqual(await s.getRegistration(a.id), { ...replaced, lastSeen: 99, lastSeq: 8n, observed });

          await s.deleteRegistration(a.id);
          await s.deleteRegistration(a.id);
          assert.equal(await s.getRegistration(a.id), null);
          assert.deepEqual(
            (await s.listRegistrations()).map((r) => r.nodeId),
            [b.id],
          );
          await rejectsWith(s.upsertRegistration(reg(99_999)), 'ERR_STORE_REFERENCE');
        }));

      test('group commit: concurrent registrations and touches are all written, a bad one fails alone, each settles after its commit', () =>
        withStore(async (s) => {
          const nodes: NodeRecord[] = [];
          for (let i = 0; i < 40; i++) nodes.push(await s.createNode({ name: `g${i}`, kind: 'node' }, POOLS));
          // 40 registrations at once, one naming a node that does not exist, one node twice (the later one wins).
          const writes = nodes.map((n, i) => s.upsertRegistration(reg(n.id, { lastSeq: BigInt(i + 1) })));
          const missing = rejectsWith(s.upsertRegistration(reg(99_999)), 'ERR_STORE_REFERENCE');
          const twice = s.upsertRegistration(reg(nodes[0]!.id, { lastSeq: 500n, keepaliveSec: 9 }));
          await Promise.all(writes);
          await twice;
          await missing;
          const got = await s.listRegistrations();
          assert.equal(got.length, 40);
          assert.deepEqual(got[0], reg(nodes[0]!.id, { lastSeq: 500n, keepaliveSec: 9 }));
          for (let i = 1; i < 40; i++) assert.deepEqual(got[i], reg(nodes[i]!.id, { lastSeq: BigInt(i + 1) }));
          // Touches at once: each answers for its own node (the unregistered one false).
          const lone = await s.createNode({ name: 'lone', kind: 'node' }, POOLS);
          const at = { address: '203.0.113.7', port: 61000 };
          const touched = await Promise.all([...nodes.map((n, i) => s.touchRegistration(n.id, 1000 + i, 900n + BigInt(i), at)), s.touchRegistration(lone.id, 1, 1n, at)]);
          assert.deepEqual(touched, [...nodes.map(() => true), false]);
          assert.equal((await s.getRegistration(nodes[7]!.id))?.lastSeen, 1007);
          assert.equal((await s.getRegistration(nodes[7]!.id))?.lastSeq, 907n);
          // Bad input is refused at the call, before any batch.
          await rejectsWith(s.upsertRegistration(reg(nodes[1]!.id, { observed: { address: 'x', port: 70_000 } })), 'ERR_STORE_INVALID');
        }));

      test('touchRegistrationIf writes only where the observed endpoint and the instance match', () =>
        withStore(async (s) => {
          const a = await s.createNode({ name: 'a', kind: 'node' }, POOLS);
          const b = await s.createNode({ name: 'b', kind: 'node' }, POOLS);
          const at = { address: '203.0.113.7', port: 61000 };
          assert.equal(await s.touchRegistrationIf(a.id, 5, 2n, at, null), false, 'no registration');
          await s.upsertRegistration(reg(a.id));
          await s.upsertRegistration(reg(b.id, { nms: 'inst-1' }));
          assert.equal(await s.touchRegistrationIf(a.id, 5, 2n, at, null), true);
          assert.deepEqual(await s.getRegistration(a.id), reg(a.id, { lastSeen: 5, lastSeq: 2n }));
          assert.equal(await s.touchRegistrationIf(a.id, 6, 3n, { address: '203.0.113.7', port: 61001 }, null), false, 'moved port');
          assert.equal(await s.touchRegistrationIf(a.id, 6, 3n, { address: '203.0.113.8', port: 61000 }, null), false, 'moved address');
          assert.equal(await s.touchRegistrationIf(a.id, 6, 3n, at, 'inst-1'), false, 'registered at no instance');
          assert.equal(await s.touchRegistrationIf(b.id, 6, 3n, at, null), false, 'registered at an instance');
          assert.equal(await s.touchRegistrationIf(b.id, 6, 3n, at, 'inst-2'), false, 'registered at another instance');
          assert.deepEqual(await s.getRegistration(a.id), reg(a.id, { lastSeen: 5, lastSeq: 2n }), 'refused touches wrote nothing');
          assert.deepEqual(await s.getRegistration(b.id), reg(b.id, { nms: 'inst-1' }));
          assert.equal(await s.touchRegistrationIf(b.id, 7, 4n, at, 'inst-1'), true);
          assert.deepEqual(await s.getRegistration(b.id), reg(b.id, { nms: 'inst-1', lastSeen: 7, lastSeq: 4n }));
          await rejectsWith(s.touchRegistrationIf(b.id, 7, -1n, at, 'inst-1'), 'ERR_STORE_INVALID');
        }));

      test('getNodeSession: the Common Key, the node and the registration lastSeq in one read', () =>
        withStore(async (s) => {
          const a = await s.createNode({ name: 'a', kind: 'node' }, POOLS);
          assert.equal(await s.getNodeSession(a.id), null, 'no Common Key');
          assert.equal(await s.getNodeSession(99_999), null);
          const key = Buffer.alloc(32, 7);
          await s.putCommonKey({ nodeId: a.id, key, expiresAt: 1_800_000_000_000, createdAt: 1_700_000_000_000 });
          assert.deepEqual(await s.getNodeSession(a.id), { key: { nodeId: a.id, key, expiresAt: 1_800_000_000_000, createdAt: 1_700_000_000_000 }, node: a, lastSeq: null });
          await s.upsertRegistration(reg(a.id, { lastSeq: 2n ** 64n - 1n }));
          assert.deepEqual(await s.getNodeSession(a.id), { key: { nodeId: a.id, key, expiresAt: 1_800_000_000_000, createdAt: 1_700_000_000_000 }, node: a, lastSeq: 2n ** 64n - 1n });
          // Many at once (PostgreSQL reads them in one query): each gets its own answer.
          const b = await s.createNode({ name: 'b', kind: 'node' }, POOLS);
          await s.putCommonKey({ nodeId: b.id, key: Buffer.alloc(32, 9), expiresAt: 5, createdAt: 4 });
          const got = await Promise.all([s.getNodeSession(a.id), s.getNodeSession(99_999), s.getNodeSession(b.id), s.getNodeSession(a.id)]);
          assert.deepEqual(got.map((g) => g?.node.name ?? null), ['a', null, 'b', 'a']);
          assert.deepEqual(got[2], { key: { nodeId: b.id, key: Buffer.alloc(32, 9), expiresAt: 5, createdAt: 4 }, node: b, lastSeq: null });
          for (const g of got) if (g) assert.equal(g.key.key.buffer.byteLength, 32, 'each key owns its ArrayBuffer');
        }));

      test('NAT mapping: set on a registration, kept by touch, reset by a new registration', () =>
        withStore(async (s) => {
          const a = await s.createNode({ name: 'a', kind: 'node' }, POOLS);
          assert.equal(await s.setRegistrationMapping(a.id, 'independent'), false, 'no registration yet');
          await s.upsertRegistration(reg(a.id));
          assert.equal((await s.getRegistration(a.id))?.mapping, undefined);
          assert.equal(await s.setRegistrationMapping(a.id, 'independent'), true);
          assert.equal((await s.getRegistration(a.id))?.mapping, 'independent');
          await s.touchRegistration(a.id, 50, 3n, { address: '198.51.100.1', port: 4 });
          assert.equal((await s.getRegistration(a.id))?.mapping, 'independent');
          assert.equal(await s.setRegistrationMapping(a.id, 'dependent'), true);
          assert.equal((await s.listRegistrations())[0]?.mapping, 'dependent');
          await s.upsertRegistration(reg(a.id));
          assert.equal((await s.getRegistration(a.id))?.mapping, undefined);
          await s.upsertRegistration(reg(a.id, { mapping: 'dependent' }));
          assert.deepEqual(await s.getRegistration(a.id), reg(a.id, { mapping: 'dependent' }));
          await rejectsWith(s.setRegistrationMapping(a.id, 'bogus' as 'independent'), 'ERR_STORE_INVALID');
        }));

      test('lastSeq above 2^53 and up to 2^64-1 round-trips exactly', () =>
        withStore(async (s) => {
          const a = await s.createNode({ name: 'a', kind: 'node' }, POOLS);
          const big = 2n ** 53n + 1n;
          await s.upsertRegistration(reg(a.id, { lastSeq: big }));
          const got = await s.getRegistration(a.id);
          assert.equal(typeof got?.lastSeq, 'bigint');
          assert.equal(got?.lastSeq, big);
          const max = 2n ** 64n - 1n;
          assert.equal(await s.touchRegistration(a.id, 2, max, { address: '::1', port: 9 }), true);
          assert.equal((await s.getRegistration(a.id))?.lastSeq, max);
          assert.equal((await s.listRegistrations())[0]?.lastSeq, max);
          await rejectsWith(s.touchRegistration(a.id, 3, -1n, { address: '::1', port: 9 }), 'ERR_STORE_INVALID');
          await rejectsWith(s.upsertRegistration(reg(a.id, { observed: { address: 'x', port: 70000 } })), 'ERR_STORE_INVALID');
        }));
    });

    describe('relay servers', () => {
      const relay = (id: string, over: Partial<RelayServerRecord> = {}): RelayServerRecord => ({
        id,
        endpoints: [
          { address: '198.51.100.7', port: 4503 },
          { address: '2001:db8::7', port: 4503 },
        ],
        load: 0,
        startedAt: 1_700_000_000_000,
        heartbeatAt: 1_700_000_000_000,
        ...over,
      });

      test('upsert, heartbeat, list, delete', () =>
        withStore(async (s) => {
          assert.deepEqual(await s.listRelayServers(), []);
          await s.upsertRelayServer(relay('trs-b'));
          await s.upsertRelayServer(relay('trs-a', { endpoints: [] }));
          assert.deepEqual(await s.listRelayServers(), [relay('trs-a', { endpoints: [] }), relay('trs-b')]);
          // a heartbeat replaces load, endpoints and heartbeat time
          const beat = relay('trs-b', { load: 17, heartbeatAt: 1_700_000_005_000, endpoints: [{ address: '::1', port: 4600 }] });
          await s.upsertRelayServer(beat);
          assert.deepEqual((await s.listRelayServers()).find((r) => r.id === 'trs-b'), beat);
          await s.deleteRelayServer('trs-a');
          await s.deleteRelayServer('trs-a');
          await s.deleteRelayServer('never-there');
          assert.deepEqual(await s.listRelayServers(), [beat]);
        }));

      test('invalid records are refused', () =>
        withStore(async (s) => {
          await rejectsWith(s.upsertRelayServer(relay('')), 'ERR_STORE_INVALID');
          await rejectsWith(s.upsertRelayServer(relay('x'.repeat(65))), 'ERR_STORE_INVALID');
          await rejectsWith(s.upsertRelayServer(relay('r', { load: -1 })), 'ERR_STORE_INVALID');
          await rejectsWith(s.upsertRelayServer(relay('r', { load: 1.5 })), 'ERR_STORE_INVALID');
          await rejectsWith(s.upsertRelayServer(relay('r', { endpoints: [{ address: 'x', port: 70000 }] })), 'ERR_STORE_INVALID');
          assert.deepEqual(await s.listRelayServers(), []);
          await s.upsertRelayServer(relay('x'.repeat(64)));
          assert.equal((await s.listRelayServers()).length, 1);
        }));
    });

    describe('cloud instances and instance messages', () => {
      const inst = (id: string, over: Partial<CloudInstanceRecord> = {}): CloudInstanceRecord => ({
        id,
        as: [{ address: '198.51.100.1', port: 4501 }],
        nms: [
          { address: '198.51.100.1', port: 4502 },
          { address: '2001:db8::1', port: 4502 },
        ],
        trs: [],
        startedAt: 1_700_000_000_000,
        heartbeatAt: 1_700_000_000_000,
        ...over,
      });

      test('upsert, heartbeat, list, delete; invalid records refused', () =>
        withStore(async (s) => {
          assert.deepEqual(await s.listInstances(), []);
          await s.upsertInstance(inst('i-b'));
          await s.upsertInstance(inst('i-a', { as: [] }));
          assert.deepEqual(await s.listInstances(), [inst('i-a', { as: [] }), inst('i-b')]);
          const beat = inst('i-b', { heartbeatAt: 1_700_000_002_000, trs: [{ address: '::1', port: 4503 }] });
          await s.upsertInstance(beat);
          assert.deepEqual((await s.listInstances()).find((r) => r.id === 'i-b'), beat);
          await s.deleteInstance('i-a');
          await s.deleteInstance('never-there');
          assert.deepEqual(await s.listInstances(), [beat]);
          await rejectsWith(s.upsertInstance(inst('')), 'ERR_STORE_INVALID');
          await rejectsWith(s.upsertInstance(inst('x'.repeat(65))), 'ERR_STORE_INVALID');
          await rejectsWith(s.upsertInstance(inst('r', { nms: [{ address: 'x', port: 70000 }] })), 'ERR_STORE_INVALID');
          await rejectsWith(s.upsertInstance(inst('r', { heartbeatAt: 1.5 })), 'ERR_STORE_INVALID');
          assert.deepEqual(await s.listInstances(), [beat]);
        }));

      test('a registration records its NMS instance; a new registration replaces it', () =>
        withStore(async (s) => {
          const n = await s.createNode({ name: 'a', kind: 'node' }, POOLS);
          await s.upsertRegistration(reg(n.id));
          assert.equal((await s.getRegistration(n.id))?.nms, undefined);
          await s.upsertRegistration(reg(n.id, { nms: 'i-1' }));
          assert.equal((await s.getRegistration(n.id))?.nms, 'i-1');
          await s.touchRegistration(n.id, 1_700_000_001_000, 2n, { address: '203.0.113.7', port: 61000 });
          assert.equal((await s.getRegistration(n.id))?.nms, 'i-1');
          await s.upsertRegistration(reg(n.id, { nms: 'i-2' }));
          assert.deepEqual(await s.listRegistrations(), [reg(n.id, { nms: 'i-2' })]);
          await rejectsWith(s.upsertRegistration(reg(n.id, { nms: '' })), 'ERR_STORE_INVALID');
        }));

      test('published messages reach every subscriber until it stops; over-long ones are refused', () =>
        withStore(async (s) => {
          const gotA: string[] = [];
          const gotB: string[] = [];
          const stopA = await s.subscribe((p) => gotA.push(p));
          const stopB = await s.subscribe((p) => gotB.push(p));
          await s.publish('one');
          await s.publish(JSON.stringify({ to: 'i-1', x: 'ü' }));
          const until = async (cond: () => boolean): Promise<void> => {
            for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
          };
          await until(() => gotA.length === 2 && gotB.length === 2);
          assert.deepEqual(gotA, ['one', '{"to":"i-1","x":"ü"}']);
          assert.deepEqual(gotB, gotA);
          await stopA();
          await s.publish('two');
          await until(() => gotB.length === 3);
          assert.deepEqual(gotB, [...gotA, 'two']);
          assert.equal(gotA.length, 2);
          await rejectsWith(s.publish('x'.repeat(MAX_INSTANCE_MESSAGE + 1)), 'ERR_STORE_INVALID');
          await stopB();
        }));
    });

    describe('policy tags', () => {
      test('set (deduplicated, sorted), replace, list, clear; names need not exist yet; bad tags refused, nothing kept', () =>
        withStore(async (s) => {
          assert.deepEqual(await s.getNodeTags('cam1'), []);
          await s.setNodeTags('cam1', ['video', 'cam', 'cam']);
          assert.deepEqual(await s.getNodeTags('cam1'), ['cam', 'video']);
          await s.setNodeTags('ops1', ['ops']);
          assert.deepEqual([...(await s.listNodeTags())], [['cam1', ['cam', 'video']], ['ops1', ['ops']]]);
          await s.setNodeTags('cam1', ['cam']);
          assert.deepEqual(await s.getNodeTags('cam1'), ['cam']);
          await s.setNodeTags('cam1', []);
          assert.deepEqual(await s.getNodeTags('cam1'), []);
          for (const bad of ['', 'Caps', '-x', 'a b', 'x'.repeat(64)]) await rejectsWith(s.setNodeTags('n', ['ok', bad]), 'ERR_STORE_INVALID');
          assert.deepEqual(await s.getNodeTags('n'), []);
        }));
    });
  });
}
