// The directory of reachable peers, end to end in one process: a real SQLite store, the NMS service answering sealed
// DirectoryRequests from a real NmsClient, the node's PeerDirectory fetching the pages, and PeerManager.resolve
// answering a listed name at once while route selection runs beside it. Also: the policy decides who is listed,
// revoked nodes are not, pages stay small, a torn fetch is retried, hostile entries are skipped.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openStore } from '../../../src/store/index.js';
import type { Store } from '../../../src/store/types.js';
import { NmsService } from '../../../src/cloud/nms/service.js';
import { bumpDirectoryRev, Directory, DIRECTORY_PAGE_BYTES } from '../../../src/cloud/nms/directory.js';
import { NmsClient } from '../../../src/node/signaling.js';
import { PeerDirectory } from '../../../src/node/directory.js';
import { PeerManager } from '../../../src/node/peers.js';
import { MessageType } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { decodeDirectoryEntry, encodeBody, encodeDirectoryEntry, type DirectoryPage, type RouteDirection } from '../../../src/protocol/messages.js';
import { setPolicy, setTags } from '../../../src/policy/store.js';
import { silentLogger } from '../../../src/util/log.js';

const POOLS = { v4: '100.64.0.0/10', v6: 'fd00:1:2::/48' };
const NMS_EP: Endpoint = { address: '198.18.0.10', port: 4502 };
const DOMAIN = 'cyphonic.internal';

function client(service: NmsService, nodeId: number, key: Buffer, from: Endpoint): NmsClient {
  const c: NmsClient = new NmsClient({ nodeId, commonKey: key, nms: NMS_EP, retransmitMs: [200, 200] }, {
    send: (msg) => void service.handle(msg, from).then((reply) => reply && c.handleDatagram(reply)),
  });
  return c;
}

describe('directory: NMS pages and the node copy', () => {
  let store: Store;
  let service: NmsService;
  const ids = new Map<string, number>();
  const keys = new Map<string, Buffer>();

  before(async () => {
    store = await openStore(':memory:');
    service = new NmsService({ domain: DOMAIN }, { store, logger: silentLogger });
    for (const name of ['alpha', 'beta', 'cam', 'ops']) {
      const n = await store.createNode({ name, kind: 'node' }, POOLS);
      ids.set(name, n.id);
      const key = randomBytes(32);
      keys.set(name, key);
      await store.putCommonKey({ nodeId: n.id, key, expiresAt: Date.now() + 60_000, createdAt: Date.now() });
    }
  });
  after(() => {
    service.close();
    return store.close();
  });

  const fetchFor = async (name: string): Promise<PeerDirectory> => {
    const c = client(service, ids.get(name)!, keys.get(name)!, { address: '198.18.0.20', port: 30000 + ids.get(name)! });
    const d = new PeerDirectory({ domain: () => DOMAIN, fetchPage: (p) => c.directoryPage(p), logger: silentLogger });
    const res = await c.register([{ address: '198.18.0.20', port: 30000 + ids.get(name)! }], false);
    assert.ok(res.directoryRev, 'the registration names a directory revision');
    await d.offer(res.directoryRev);
    assert.equal(d.rev, res.directoryRev);
    return d;
  };

  test('allow-all: every other node is listed with its addresses; not itself', async () => {
    const d = await fetchFor('alpha');
    const beta = (await store.getNodeByName('beta'))!;
    assert.deepEqual(d.lookup('beta.cyphonic.internal.'), { nodeId: beta.id, name: 'beta', vip4: beta.vip4, vip6: beta.vip6 });
    assert.ok(d.lookup('CAM.cyphonic.internal'), 'case-insensitive');
    assert.equal(d.lookup('alpha.cyphonic.internal'), null);
    assert.equal(d.size, 3);
  });

  test('the policy decides who is listed; a change gives a new revision that the next keepalive names', async () => {
    await setTags(store, 'cam', ['cam']);
    await setPolicy(store, JSON.stringify({ allow: [{ from: ['tag:cam'], to: ['ops'], ports: ['tcp:554'] }] }));
    const oldRev = service.directory.rev;
    await service.directory.refresh();
    assert.notEqual(service.directory.rev, oldRev);
    const cam = await fetchFor('cam');
    assert.deepEqual([...['alpha', 'beta', 'ops']].filter((n) => cam.lookup(`${n}.${DOMAIN}`)), ['ops']);
    const alpha = await fetchFor('alpha');
    assert.equal(alpha.size, 0, 'no rule connects alpha to anyone');
    const opsAt = { address: '198.18.0.20', port: 30000 + ids.get('ops')! };
    const c = client(service, ids.get('ops')!, keys.get('ops')!, opsAt);
    await c.register([opsAt], false);
    const ka = await c.keepalive();
    assert.equal(ka.directoryRev, service.directory.rev);
    await setPolicy(store, JSON.stringify({ allow: [{ from: ['*'], to: ['*'], ports: ['*'] }] }));
    await service.directory.refresh();
  });

  test('a new node (enrollment bumps the directory revision) is listed after the next refresh', async () => {
    const d = await fetchFor('alpha');
    assert.equal(d.lookup(`delta.${DOMAIN}`), null);
    await store.createNode({ name: 'delta', kind: 'node' }, POOLS);
    await bumpDirectoryRev(store);
    assert.equal(await service.directory.refresh(), true);
    await d.offer(service.directory.rev!);
    assert.ok(d.lookup(`delta.${DOMAIN}`));
  });

  test('a page goes only to the address the node registered from (no reflection toward a forged source)', async () => {
    const at = { address: '198.18.0.20', port: 30000 + ids.get('beta')! };
    const c = client(service, ids.get('beta')!, keys.get('beta')!, at);
    await c.register([at], false);
    assert.equal((await c.directoryPage(0)).page, 0);
    const before = service.counters.get('refused.directory-source');
    const elsewhere = client(service, ids.get('beta')!, keys.get('beta')!, { address: '192.0.2.99', port: 53 });
    await assert.rejects(elsewhere.directoryPage(0), /no answer/);
    assert.ok(service.counters.get('refused.directory-source') > before);
  });

  test('concurrent refreshes (a burst of first registrations before the first snapshot) list the nodes once', async () => {
    let lists = 0;
    const counting = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === 'listNodes') return () => (lists++, target.listNodes());
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const dir = new Directory(counting, () => new Set());
    const outcomes = await Promise.all(Array.from({ length: 50 }, () => dir.refresh()));
    assert.equal(lists, 1, `${lists} listings for 50 concurrent refreshes`);
    assert.ok(outcomes.every((o) => o === false), 'the first snapshot is no change');
    assert.ok(dir.rev);
    assert.equal(await dir.refresh(), false, 'same revision: nothing rebuilt');
    assert.equal(lists, 1);
    await bumpDirectoryRev(store);
    assert.equal(await dir.refresh(), true, 'a later refresh sees a new revision');
    assert.equal(lists, 2);
  });

  test('revoked nodes are never listed', async () => {
    const dir = new Directory(store, () => new Set([ids.get('beta')!]));
    await dir.refresh();
    const page = dir.page(ids.get('alpha')!, 0)!;
    const names = page.entries.map((e) => decodeDirectoryEntry(e).name);
    assert.ok(!names.includes('beta'));
    assert.ok(names.includes('cam'));
  });

  test('many peers: pages stay under the byte budget and the node gets every one of them', async () => {
    for (let i = 0; i < 120; i++) await store.createNode({ name: `bulk-node-with-a-longer-name-${i}`, kind: 'node' }, POOLS);
    await bumpDirectoryRev(store);
    await service.directory.refresh();
    const page0 = service.directory.page(ids.get('alpha')!, 0)!;
    assert.ok(page0.pages > 5, `${page0.pages} pages`);
    for (let p = 0; p < page0.pages; p++) {
      const page = service.directory.page(ids.get('alpha')!, p)!;
      const bytes = encodeBody(MessageType.DirectoryPage, page).length;
      assert.ok(bytes <= DIRECTORY_PAGE_BYTES + 100, `page ${p}: ${bytes} bytes`);
    }
    const d = await fetchFor('alpha');
    assert.ok(d.lookup(`bulk-node-with-a-longer-name-119.${DOMAIN}`));
    assert.equal(d.size, (await store.listNodes()).length - 1);
  });
});

test('a node revoked before the NMS started is left out of its very first directory', async () => {
  const store = await openStore(':memory:');
  const service = new NmsService({ domain: DOMAIN }, { store, logger: silentLogger });
  try {
    const ids: Record<string, number> = {};
    for (const name of ['alpha', 'gone', 'kept']) {
      const n = await store.createNode({ name, kind: 'node' }, POOLS);
      ids[name] = n.id;
      await store.addCertificate({ serial: randomBytes(8).toString('hex'), nodeId: n.id, der: Buffer.from(`cert-of-${name}`), notAfter: Date.now() + 86_400_000, createdAt: Date.now() });
    }
    await store.revokeNodeCertificates(ids['gone']!, 'test', Date.now());
    const key = randomBytes(32);
    await store.putCommonKey({ nodeId: ids['alpha']!, key, expiresAt: Date.now() + 60_000, createdAt: Date.now() });
    const at = { address: '198.18.0.20', port: 30001 };
    const c = client(service, ids['alpha']!, key, at);
    const res = await c.register([at], false);
    const d = new PeerDirectory({ domain: () => DOMAIN, fetchPage: (p) => c.directoryPage(p), logger: silentLogger });
    await d.offer(res.directoryRev);
    assert.ok(d.lookup(`kept.${DOMAIN}`));
    assert.equal(d.lookup(`gone.${DOMAIN}`), null);
  } finally {
    service.close();
    await store.close();
  }
});

describe('directory: the node copy against a hostile or changing NMS', () => {
  const entry = (nodeId: number, name: string): Buffer => encodeDirectoryEntry({ nodeId, name, vip4: `100.64.0.${nodeId}`, vip6: `fd00::${nodeId}` });

  test('a fetch torn by a change between pages is retried and ends on one revision', async () => {
    let calls = 0;
    const pages = (rev: string): DirectoryPage[] => [
      { rev, page: 0, pages: 2, entries: [entry(1, 'one')] },
      { rev, page: 1, pages: 2, entries: [entry(2, rev === 'r1' ? 'two' : 'deux')] },
    ];
    const d = new PeerDirectory({
      domain: () => DOMAIN,
      fetchPage: async (p) => {
        calls++;
        // The revision changes after the first page of the first fetch.
        return pages(calls === 1 ? 'r1' : 'r2')[p]!;
      },
      logger: silentLogger,
    });
    await d.offer('r1');
    assert.equal(d.rev, 'r2');
    assert.ok(d.lookup(`deux.${DOMAIN}`));
    assert.equal(d.lookup(`two.${DOMAIN}`), null);
    assert.equal(d.counters.get('torn'), 1);
  });

  test('entries whose addresses lie outside the overlay pools are dropped (a DNS answer never leaves the tunnels)', async () => {
    const d = new PeerDirectory({
      domain: () => DOMAIN,
      fetchPage: async () => ({
        rev: 'r1', page: 0, pages: 1, entries: [
          entry(1, 'inside'),
          encodeDirectoryEntry({ nodeId: 2, name: 'bank', vip4: '203.0.113.5', vip6: 'fd00::2' }),
          encodeDirectoryEntry({ nodeId: 3, name: 'six', vip4: '100.64.0.3', vip6: '2001:db8::3' }),
        ],
      }),
      inOverlay: (a) => a.startsWith('100.64.') || a.startsWith('fd00:'),
      logger: silentLogger,
    });
    await d.offer('r1');
    assert.ok(d.lookup(`inside.${DOMAIN}`));
    assert.equal(d.lookup(`bank.${DOMAIN}`), null);
    assert.equal(d.lookup(`six.${DOMAIN}`), null);
    assert.equal(d.counters.get('outside-overlay'), 2);
    d.forget(`INSIDE.${DOMAIN}.`);
    assert.equal(d.lookup(`inside.${DOMAIN}`), null);
  });

  test('entries that are not DNS labels are skipped; a failed fetch keeps the previous copy', async () => {
    let fail = false;
    const bad = Buffer.from(entry(3, 'x'));
    const d = new PeerDirectory({
      domain: () => DOMAIN,
      fetchPage: async () => {
        if (fail) throw new Error('NMS gone');
        return { rev: 'r1', page: 0, pages: 1, entries: [entry(1, 'good'), encodeDirectoryEntry({ nodeId: 2, name: 'a.b', vip4: '100.64.0.2', vip6: 'fd00::2' }), bad.subarray(0, bad.length - 2)] };
      },
      logger: silentLogger,
    });
    await d.offer('r1');
    assert.equal(d.size, 1);
    assert.equal(d.counters.get('bad-entry'), 2);
    fail = true;
    await d.offer('r2');
    assert.equal(d.rev, 'r1');
    assert.ok(d.lookup(`good.${DOMAIN}`));
  });
});

describe('DNS answers a listed peer from the directory at once', () => {
  test('resolve() returns the listed addresses while route selection is still waiting, and starts it', async () => {
    let asked: string | undefined;
    let release!: () => void;
    const routeStarted = new Promise<void>((r) => (release = r));
    const pm = new PeerManager({
      local: () => ({ nodeId: 1, certDer: Buffer.alloc(1), chainDer: [], privateKeyPem: '' }),
      anchors: () => ({ rootsDer: [], intermediatesDer: [], isRevoked: () => false }),
      routes: () =>
        ({
          direction: (t: { targetFqdn?: string }) => {
            asked = t.targetFqdn;
            release();
            return new Promise<RouteDirection>(() => undefined); // never answers
          },
          confirm: async () => undefined,
        }) as never,
      sink: () => null,
      logger: silentLogger,
      directory: { lookup: (fqdn) => (fqdn === `beta.${DOMAIN}` ? { vip4: '100.64.0.2', vip6: 'fd00::2' } : null) },
    });
    const t0 = performance.now();
    const got = await pm.resolve(`beta.${DOMAIN}`);
    assert.deepEqual(got, { vip4: '100.64.0.2', vip6: 'fd00::2' });
    assert.ok(performance.now() - t0 < 1000);
    await routeStarted;
    assert.equal(asked, `beta.${DOMAIN}`);
    assert.equal(pm.counters.get('dns.from-directory'), 1);
    // A name not listed waits for route selection as before (here: forever; checked with a short race).
    const unlisted = await Promise.race([pm.resolve(`gamma.${DOMAIN}`), new Promise((r) => setTimeout(() => r('pending'), 100))]);
    assert.equal(unlisted, 'pending');
    pm.close();
  });
});
