// General nodes on the cloud side: `general-node add` validation, InfoRequest served to the owning adapter only,
// GeneralEnrollRequest (adapter-made CSR signed only for its own general nodes), and the general node logging in
// with that certificate like a node; `general-node remove` (the adapter and the peers told, the certificate dead).
// A real AS on loopback, TLS and all.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEnrollment, initCloud, openCloudStore, startCloud } from '../../../src/cloud/cloud.js';
import { addGeneralNode, listGeneralNodes, normalizeGeneralMac, removeGeneralNode } from '../../../src/cloud/general-nodes.js';
import { PolicyPusher } from '../../../src/cloud/nms/policy-push.js';
import { PairTable } from '../../../src/cloud/nms/pair-table.js';
import { decodePolicyEntry, type PolicyEntry } from '../../../src/protocol/messages.js';
import { loadCloudConfig } from '../../../src/config/cloud.js';
import { decodeToken } from '../../../src/config/token.js';
import { createCsr, generateKeyPair, toPem } from '../../../src/crypto/index.js';
import { enroll, enrollGeneral, info, login } from '../../../src/node/as-client.js';
import { GeneralNodeWatcher } from '../../../src/cloud/nms/general-push.js';
import { Counters } from '../../../src/util/counters.js';
import { RequestError } from '../../../src/util/errors.js';
import { createLogger, silentLogger } from '../../../src/util/log.js';

describe('general nodes (cloud side)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-general-'));
  const cloudDir = join(dir, 'cloud');
  let cloud: Awaited<ReturnType<typeof startCloud>>;
  let as: string[];
  type Creds = { rootPem: string; certPem: string; chainPem: string; keyPem: string };
  const nodes: Record<string, Creds> = {};

  async function enrollNode(name: string, text?: string): Promise<Creds> {
    const token = decodeToken(text ?? (await createEnrollment(cloudDir, name)));
    const keyPem = (await generateKeyPair()).privateKeyPem;
    const res = await enroll({ endpoints: as, caFingerprint: token.ca, token: token.secret, csr: await createCsr(keyPem, name) });
    return { rootPem: res.rootPem, certPem: toPem(res.certificate), chainPem: res.chain.map((d) => toPem(d)).join(''), keyPem };
  }

  before(async () => {
    await initCloud({ dir: cloudDir, advertise: ['127.0.0.1'] });
    cloud = await startCloud({ dir: cloudDir, logger: process.env['DEBUG_LOG'] ? createLogger({ component: 'cloud' }) : silentLogger, host: '127.0.0.1', ports: { as: 0, nms: 0 }, roles: ['as', 'nms'] });
    as = [`127.0.0.1:${cloud.ports.as}`];
    nodes['gw'] = await enrollNode('gw');
    nodes['other'] = await enrollNode('other');
    const cfg = loadCloudConfig(join(cloudDir, 'cloud.json'));
    const store = await openCloudStore(cloudDir, cfg);
    try {
      await addGeneralNode(store, cfg.pools, cfg.domain, { name: 'printer', mac: '02:AA:00:00:00:01', adapter: 'gw' });
      await addGeneralNode(store, cfg.pools, cfg.domain, { name: 'cam', mac: '02-aa-00-00-00-02', adapter: 'gw', family: 'v6' });
      await addGeneralNode(store, cfg.pools, cfg.domain, { name: 'meter', mac: '02:aa:00:00:00:03', adapter: 'other', family: 'v4' });
    } finally {
      await store.close();
    }
  });
  after(async () => {
    await cloud.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('add: MAC normalised, bad MACs, unknown adapters, duplicate MACs and names refused', async () => {
    assert.equal(normalizeGeneralMac('02-AB-cd-00-00-01'), '02:ab:cd:00:00:01');
    for (const bad of ['02:ab:cd:00:00', '01:00:5e:00:00:01', '00:00:00:00:00:00', 'zz:ab:cd:00:00:01', '02abcd000001x']) {
      assert.throws(() => normalizeGeneralMac(bad), /ERR_BAD_MAC|not a MAC|multicast|zero/, bad);
    }
    const cfg = loadCloudConfig(join(cloudDir, 'cloud.json'));
    const store = await openCloudStore(cloudDir, cfg);
    try {
      await assert.rejects(addGeneralNode(store, cfg.pools, cfg.domain, { name: 'x1', mac: '02:aa:00:00:00:09', adapter: 'x1' }), { code: 'ERR_BAD_ADAPTER' });
      await assert.rejects(addGeneralNode(store, cfg.pools, cfg.domain, { name: 'x1', mac: '02:aa:00:00:00:09', adapter: 'Bad Name' }), /name/);
      await assert.rejects(addGeneralNode(store, cfg.pools, cfg.domain, { name: 'x2', mac: '02:aa:00:00:00:01', adapter: 'gw' }), { code: 'ERR_MAC_TAKEN' });
      await assert.rejects(addGeneralNode(store, cfg.pools, cfg.domain, { name: 'printer', mac: '02:aa:00:00:00:0a', adapter: 'gw' }), { code: 'ERR_NAME_TAKEN' });
      await assert.rejects(addGeneralNode(store, cfg.pools, cfg.domain, { name: 'x3', mac: '02:aa:00:00:00:0b', adapter: 'printer' }), { code: 'ERR_BAD_ADAPTER' });
      const rows = await listGeneralNodes(store, cfg.domain);
      assert.deepEqual(rows.map((r) => [r.name, r.mac, r.adapter, r.family]), [
        ['printer', '02:aa:00:00:00:01', 'gw', 'dual'],
        ['cam', '02:aa:00:00:00:02', 'gw', 'v6'],
        ['meter', '02:aa:00:00:00:03', 'other', 'v4'],
      ]);
      const cam = rows.find((r) => r.name === 'cam')!;
      assert.equal(cam.vip4, null);
      assert.match(cam.vip6!, /:/);
      assert.equal(cam.fqdn, `cam.${cfg.domain}`);
    } finally {
      await store.close();
    }
  });

  test('InfoRequest: each adapter gets its own general nodes, with only the families they use', async () => {
    const gw = await info({ endpoints: as, ...nodes['gw']! });
    assert.deepEqual(gw.map((g) => g.name), ['printer', 'cam']);
    assert.equal(gw[0]!.mac.toString('hex'), '02aa00000001');
    assert.ok(gw[0]!.vip4 && gw[0]!.vip6);
    assert.equal(gw[1]!.vip4, undefined);
    assert.ok(gw[1]!.vip6);
    const other = await info({ endpoints: as, ...nodes['other']! });
    assert.deepEqual(other.map((g) => [g.name, g.vip6]), [['meter', undefined]]);
  });

  test('an adapter that enrolls after its general node was defined gets it (same node record), and the NMS is told', async () => {
    const cfg = loadCloudConfig(join(cloudDir, 'cloud.json'));
    const store = await openCloudStore(cloudDir, cfg);
    const notified: number[] = [];
    const watcher = new GeneralNodeWatcher({ store, logger: silentLogger, counters: new Counters(), notify: async (id) => void notified.push(id) });
    try {
      await watcher.check(); // the first look: nothing to tell
      const token = await createEnrollment(cloudDir, 'late'); // token made, device not up yet
      const row = await addGeneralNode(store, cfg.pools, cfg.domain, { name: 'late-cam', mac: '02:aa:00:00:00:21', adapter: 'late', family: 'v4' });
      assert.equal(row.adapter, 'late');
      const reserved = await store.getNodeByName('late');
      assert.equal(reserved?.kind, 'node');
      await watcher.check();
      assert.deepEqual(notified, [reserved!.id], 'the NMS tells the (future) adapter once');
      await watcher.check();
      assert.equal(notified.length, 1, 'no change, no push');
      const creds = await enrollNode('late', token);
      assert.deepEqual((await info({ endpoints: as, ...creds })).map((g) => g.name), ['late-cam']);
      assert.equal((await store.getNodeByName('late'))?.id, reserved!.id, 'enrollment kept the record');
    } finally {
      watcher.stop();
      await store.close();
    }
  });

  test('GeneralEnrollRequest: signed for the owner only; the general node then logs in with its own certificate', async () => {
    const keyPem = (await generateKeyPair()).privateKeyPem;
    const csr = await createCsr(keyPem, 'printer');
    await assert.rejects(enrollGeneral({ endpoints: as, ...nodes['other']!, name: 'printer', csr }), (err) => err instanceof RequestError && /not a general node of other/.test(err.message));
    await assert.rejects(enrollGeneral({ endpoints: as, ...nodes['gw']!, name: 'other', csr }), RequestError);
    await assert.rejects(enrollGeneral({ endpoints: as, ...nodes['gw']!, name: 'printer', csr: Buffer.from('not a csr') }), /CSR refused/);
    const res = await enrollGeneral({ endpoints: as, ...nodes['gw']!, name: 'printer', csr });
    assert.equal(res.name, 'printer');
    const creds = { rootPem: nodes['gw']!.rootPem, certPem: toPem(res.certificate), chainPem: res.chain.map((d) => toPem(d)).join(''), keyPem };
    const session = await login({ endpoints: as, ...creds });
    assert.equal(session.name, 'printer');
    assert.equal(session.nodeId, res.nodeId);
    // A second enrollment supersedes the first certificate.
    const key2 = (await generateKeyPair()).privateKeyPem;
    await enrollGeneral({ endpoints: as, ...nodes['gw']!, name: 'printer', csr: await createCsr(key2, 'printer') });
    await assert.rejects(login({ endpoints: as, ...creds }), /revoked/);
    assert.ok(cloud.as!.counters.get('general-enroll.ok') >= 2);
    assert.ok(cloud.as!.counters.get('general-enroll.refused.owner') >= 2);
  });
  test('remove: the record and its certificate go, the adapter is told and no longer gets it, peers are told to close', async () => {
    const cfg = loadCloudConfig(join(cloudDir, 'cloud.json'));
    const store = await openCloudStore(cloudDir, cfg);
    const notified: number[] = [];
    const watcher = new GeneralNodeWatcher({ store, logger: silentLogger, counters: new Counters(), notify: async (id) => void notified.push(id) });
    const pushed: { to: number; entries: PolicyEntry[] }[] = [];
    const gwNode = (await store.getNodeByName('gw'))!;
    const pairs = new PairTable(64);
    const pusher: PolicyPusher = new PolicyPusher({
      store,
      logger: silentLogger,
      counters: new Counters(),
      pairs,
      send: (nodeId, txid, body) => {
        pushed.push({ to: nodeId, entries: body.entries.map((e) => decodePolicyEntry(e)) });
        setImmediate(() => pusher.acked(txid));
        return true;
      },
    });
    try {
      await addGeneralNode(store, cfg.pools, cfg.domain, { name: 'lamp', mac: '02:aa:00:00:00:31', adapter: 'gw' });
      const lamp = (await store.getNodeByName('lamp'))!;
      const keyPem = (await generateKeyPair()).privateKeyPem;
      const res = await enrollGeneral({ endpoints: as, ...nodes['gw']!, name: 'lamp', csr: await createCsr(keyPem, 'lamp') });
      const creds = { rootPem: nodes['gw']!.rootPem, certPem: toPem(res.certificate), chainPem: res.chain.map((d) => toPem(d)).join(''), keyPem };
      await login({ endpoints: as, ...creds });
      // gw has a path with lamp at this NMS (gw registered), so gw is the peer that must hear of the removal.
      pairs.remember(gwNode.id, lamp.id, 1n, 'direct', true, null, null, 'test', Date.now());
      await store.upsertRegistration({ nodeId: gwNode.id, reported: [], observed: { address: '127.0.0.1', port: 40000 }, nat: false, keepaliveSec: 25, registeredAt: Date.now(), lastSeen: Date.now(), lastSeq: 1n });
      await watcher.check();
      await pusher.check();
      assert.ok((await info({ endpoints: as, ...nodes['gw']! })).some((g) => g.name === 'lamp'));

      await assert.rejects(removeGeneralNode(store, cfg.domain, 'nope'), { code: 'ERR_UNKNOWN_NODE' });
      await assert.rejects(removeGeneralNode(store, cfg.domain, 'gw'), { code: 'ERR_NOT_GENERAL' });
      await assert.rejects(removeGeneralNode(store, cfg.domain, 'Bad Name'), { code: 'ERR_NAME' });
      const removed = await removeGeneralNode(store, cfg.domain, 'lamp');
      assert.deepEqual([removed.name, removed.adapter, removed.mac], ['lamp', 'gw', '02:aa:00:00:00:31']);

      await watcher.check();
      assert.deepEqual(notified, [gwNode.id], 'the NMS tells the adapter');
      assert.ok(!(await info({ endpoints: as, ...nodes['gw']! })).some((g) => g.name === 'lamp'), 'the adapter no longer gets it');
      await pusher.check();
      assert.deepEqual(pushed.map((p) => [p.to, p.entries.map((e) => [e.peerNodeId, e.revoked === true, e.connected])]), [[gwNode.id, [[lamp.id, true, false]]]], 'its peer closes the tunnel');
      await assert.rejects(login({ endpoints: as, ...creds }), RequestError, 'its certificate is dead');
      assert.equal(await store.getNodeByVip(lamp.vip4), null);
      assert.ok(!(await listGeneralNodes(store, cfg.domain)).some((g) => g.name === 'lamp'));
    } finally {
      watcher.stop();
      pusher.stop();
      await store.close();
    }
  });
});
