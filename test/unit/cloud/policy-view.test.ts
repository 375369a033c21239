// Route selection's in-memory view of the policy, tags and node records (src/cloud/nms/policy-view.ts) on a real
// SQLite store: repeated selections read the store once per revision, and every policy change, tag change and node
// deletion (which bump the revision) is seen by the next selection.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PolicyView } from '../../../src/cloud/nms/policy-view.js';
import { bumpPolicyRev, pairAllowance, setPolicy, setTags } from '../../../src/policy/store.js';
import { openStore } from '../../../src/store/index.js';
import type { NodeRecord, Store } from '../../../src/store/types.js';

const POOLS = { v4: '100.64.0.0/10', v6: 'fd00:1:2::/48' };

describe('route selection: the policy view', () => {
  let store: Store;
  let a: NodeRecord;
  let b: NodeRecord;
  before(async () => {
    store = await openStore(':memory:');
    a = await store.createNode({ name: 'a', kind: 'node' }, POOLS);
    b = await store.createNode({ name: 'b', kind: 'node' }, POOLS);
  });
  after(async () => {
    await store.close();
  });

  test('the same answers as the store, read once per revision', async () => {
    const v = new PolicyView(store);
    await v.refresh();
    assert.deepEqual(await v.nodeByName('b'), b);
    assert.deepEqual(await v.nodeByName('a'), a);
    assert.deepEqual(await v.nodeByVip(b.vip6.toUpperCase()), b);
    assert.equal(await v.nodeByName('nobody'), null);
    assert.deepEqual(await v.pairAllowance('a', 'b'), await pairAllowance(store, 'a', 'b'));
    const misses = v.misses;
    for (let i = 0; i < 5; i++) {
      await v.refresh();
      assert.deepEqual(await v.nodeByName('a'), a);
      assert.deepEqual(await v.nodeByVip(a.vip4), a);
      assert.deepEqual(await v.pairAllowance('a', 'b'), await pairAllowance(store, 'a', 'b'));
    }
    assert.equal(v.misses, misses, 'nothing read again while the revision stays');
    assert.ok(v.hits >= 20);
  });

  test('policy and tag changes are seen by the next selection', async () => {
    const v = new PolicyView(store);
    await v.refresh();
    assert.equal((await v.pairAllowance('a', 'b')).connected, true);
    await setPolicy(store, JSON.stringify({ allow: [{ from: ['tag:web'], to: ['tag:db'], ports: ['tcp:5432'] }] }));
    await v.refresh();
    assert.equal((await v.pairAllowance('a', 'b')).connected, false, 'the new policy');
    await setTags(store, 'a', ['web']);
    await setTags(store, 'b', ['db']);
    await v.refresh();
    const allow = await v.pairAllowance('a', 'b');
    assert.deepEqual(allow, await pairAllowance(store, 'a', 'b'));
    assert.deepEqual(allow, { connected: true, aToB: ['tcp:5432'], bToA: [] }, 'the new tags');
    await setTags(store, 'b', []);
    await v.refresh();
    assert.equal((await v.pairAllowance('a', 'b')).connected, false, 'a tag taken away');
  });

  test('a deleted node is not found after its deletion, a new one with its name is', async () => {
    const v = new PolicyView(store);
    const g = await store.createNode({ name: 'gone', kind: 'node' }, POOLS);
    await v.refresh();
    assert.equal((await v.nodeByName('gone'))?.id, g.id);
    assert.ok(await store.deleteNode(g.id));
    await bumpPolicyRev(store); // what general-nodes.ts does after a deletion
    await v.refresh();
    assert.equal(await v.nodeByName('gone'), null);
    assert.equal(await v.nodeByVip(g.vip4), null);
    const again = await store.createNode({ name: 'gone', kind: 'node' }, POOLS);
    assert.equal((await v.nodeByName('gone'))?.id, again.id, 'a miss is never cached');
  });

  test('certificates: read once per certificate revision; a revocation, a renewal or a removal written elsewhere is seen by the next selection', async () => {
    // Two views on one store: two NMS instances sharing it. What one caches, a write by anyone (the AS at another
    // instance, `cloud revoke` in another process) makes stale for the next selection at both.
    const here = new PolicyView(store);
    const there = new PolicyView(store);
    const c = await store.createNode({ name: 'certs', kind: 'node' }, POOLS);
    const der1 = Buffer.from('30820101aa', 'hex');
    const der2 = Buffer.from('30820102bb', 'hex');
    await store.addCertificate({ serial: 'aa01', nodeId: c.id, der: der1, notAfter: 10_000, createdAt: 1 });
    for (const v of [here, there]) await v.refresh();
    assert.deepEqual(await here.currentCert(c.id, 5_000), der1);
    const misses = here.misses;
    for (let i = 0; i < 3; i++) {
      await here.refresh();
      assert.deepEqual(await here.currentCert(c.id, 5_000), der1);
    }
    assert.equal(here.misses, misses, 'not read again while the revision stays');
    assert.equal(await here.currentCert(c.id, 10_000), null, 'expiry is judged at use, from the cached list');
    assert.deepEqual(await there.currentCert(c.id, 5_000), der1);

    // Renewal / re-enrollment: the old one superseded, a new one added.
    await store.revokeNodeCertificates(c.id, 'superseded', 2);
    await store.addCertificate({ serial: 'aa02', nodeId: c.id, der: der2, notAfter: 20_000, createdAt: 2 });
    for (const v of [here, there]) await v.refresh();
    assert.deepEqual(await here.currentCert(c.id, 5_000), der2, 'the new certificate');
    assert.deepEqual(await there.currentCert(c.id, 5_000), der2);

    // `cloud revoke` (no bump of the policy revision needed for this cache).
    await store.revokeCertificate('aa02', 'revoked by administrator', 3);
    for (const v of [here, there]) await v.refresh();
    assert.equal(await here.currentCert(c.id, 5_000), null, 'a revoked certificate is never handed out');
    assert.equal(await there.currentCert(c.id, 5_000), null);

    // A revocation right after a selection read the list: the next selection does not use it.
    await store.addCertificate({ serial: 'aa03', nodeId: c.id, der: der1, notAfter: 30_000, createdAt: 3 });
    await here.refresh();
    const stale = here.currentCert(c.id, 5_000); // reads now
    await store.revokeCertificate('aa03', 'revoked by administrator', 4);
    assert.deepEqual(await stale, der1);
    await here.refresh();
    assert.equal(await here.currentCert(c.id, 5_000), null);

    // Removal.
    await store.addCertificate({ serial: 'aa04', nodeId: c.id, der: der2, notAfter: 30_000, createdAt: 5 });
    await here.refresh();
    assert.deepEqual(await here.currentCert(c.id, 5_000), der2);
    assert.ok(await store.deleteNode(c.id));
    await here.refresh();
    assert.equal(await here.currentCert(c.id, 5_000), null);
  });
});
