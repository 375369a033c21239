// The REST API (/api/v1/) against a real cloud (AS + NMS, SQLite) started in this process on loopback: every endpoint
// with and without the bearer token and with bad bodies (a clear 4xx, nothing changed), the token rotated under a
// running server, the OpenAPI document naming exactly the routes served, HTTPS when bound beyond loopback.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCloud, startCloud } from '../../../src/cloud/cloud.js';
import { rotateAdminToken } from '../../../src/cloud/api/admin-token.js';
import { OPENAPI } from '../../../src/cloud/api/openapi.js';
import { MAX_BODY, parseListen } from '../../../src/cloud/api/server.js';
import { decodeToken } from '../../../src/config/token.js';
import { silentLogger } from '../../../src/util/log.js';

type Reply = { status: number; body: unknown; headers: Headers };

describe('REST API /api/v1/ (real cloud on loopback)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-api-'));
  const cloudDir = join(dir, 'cloud');
  let cloud: Awaited<ReturnType<typeof startCloud>>;
  let base = '';
  let token = '';

  async function call(method: string, path: string, o: { body?: unknown; raw?: string; auth?: string | null; type?: string } = {}): Promise<Reply> {
    const headers: Record<string, string> = {};
    const auth = o.auth === undefined ? token : o.auth;
    if (auth !== null) headers['authorization'] = `Bearer ${auth}`;
    let data: string | undefined;
    if (o.raw !== undefined) data = o.raw;
    else if (o.body !== undefined) data = JSON.stringify(o.body);
    if (data !== undefined) headers['content-type'] = o.type ?? 'application/json';
    const res = await fetch(base + path, { method, headers, ...(data !== undefined ? { body: data } : {}) });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, body, headers: res.headers };
  }
  const code = (r: Reply): string | undefined => (r.body as { error?: { code?: string } }).error?.code;
  const state = async (): Promise<string> => JSON.stringify([(await call('GET', '/api/v1/nodes')).body, (await call('GET', '/api/v1/general-nodes')).body, (await call('GET', '/api/v1/policy')).body]);

  before(async () => {
    await initCloud({ dir: cloudDir, advertise: ['127.0.0.1'] });
    cloud = await startCloud({ dir: cloudDir, logger: silentLogger, host: '127.0.0.1', ports: { as: 0, nms: 0 }, roles: ['as', 'nms'], console: { host: '127.0.0.1', port: 0, authFailures: { max: 1000, windowMs: 60_000 } } }); // many 401s below (the limit: api-hardening.test.ts)
    base = cloud.console!.url;
    token = readFileSync(join(cloudDir, 'admin-token'), 'utf8').trim();
  });
  after(async () => {
    await cloud?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('cloud init wrote the admin token 0600; plain HTTP on loopback', () => {
    assert.equal(statSync(join(cloudDir, 'admin-token')).mode & 0o777, 0o600);
    assert.ok(token.length >= 40);
    assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  test('every endpoint refuses a missing, wrong or malformed token with 401 and a JSON error', async () => {
    const routes: [string, string][] = [['GET', '/api/v1/nodes'], ['POST', '/api/v1/tokens'], ['POST', '/api/v1/nodes/x/revoke'], ['GET', '/api/v1/relays'], ['GET', '/api/v1/general-nodes'], ['POST', '/api/v1/general-nodes'], ['DELETE', '/api/v1/general-nodes/x'], ['GET', '/api/v1/policy'], ['PUT', '/api/v1/policy']];
    for (const [m, p] of routes) {
      for (const auth of [null, 'wrong', token + 'x', token.slice(0, -1), '']) {
        const r = await call(m, p, { auth, ...(m === 'GET' || m === 'DELETE' ? {} : { body: { name: 'x' } }) });
        assert.equal(r.status, 401, `${m} ${p} auth=${String(auth)}`);
        assert.equal(code(r), 'ERR_UNAUTHORIZED');
        assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
      }
    }
    const basic = await fetch(base + '/api/v1/nodes', { headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } });
    assert.equal(basic.status, 401);
  });

  test('unknown paths 404, wrong methods 405, with stable codes', async () => {
    assert.equal(code(await call('GET', '/api/v1/nope')), 'ERR_NOT_FOUND');
    const r = await call('DELETE', '/api/v1/nodes');
    assert.equal(r.status, 405);
    assert.equal(code(r), 'ERR_METHOD');
    assert.equal(r.headers.get('allow'), 'GET');
  });

  test('POST /tokens makes an enrollment token with tags; bad bodies change nothing', async () => {
    const before = await state();
    for (const [body, want] of [
      [{ raw: '{"name":' }, 'ERR_BAD_JSON'],
      [{ body: [] }, 'ERR_BAD_BODY'],
      [{ body: {} }, 'ERR_BAD_BODY'],
      [{ body: { name: 42 } }, 'ERR_BAD_BODY'],
      [{ body: { name: 'Bad Name' } }, 'ERR_NAME'],
      [{ body: { name: 'cam1', tags: ['OK!'] } }, 'ERR_BAD_TAG'],
      [{ body: { name: 'cam1', tags: 'cam' } }, 'ERR_BAD_BODY'],
      [{ body: { name: 'cam1', admin: true } }, 'ERR_BAD_BODY'],
    ] as const) {
      const r = await call('POST', '/api/v1/tokens', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(code(r), want, JSON.stringify(r.body));
    }
    const wrongType = await call('POST', '/api/v1/tokens', { raw: 'name=cam1', type: 'application/x-www-form-urlencoded' });
    assert.equal(wrongType.status, 415);
    assert.equal(await state(), before, 'nothing changed');
    const ok = await call('POST', '/api/v1/tokens', { body: { name: 'cam1', tags: ['cam', 'video'] } });
    assert.equal(ok.status, 201);
    const t = decodeToken((ok.body as { token: string }).token);
    assert.equal(t.name, 'cam1');
    assert.deepEqual((ok.body as { tags: string[] }).tags, ['cam', 'video']);
  });

  test('bodies are size-limited: 413 and nothing changed', async () => {
    const before = await state();
    const r = await call('PUT', '/api/v1/policy', { raw: JSON.stringify({ allow: [{ from: ['*'], to: ['*'], ports: ['*'] }], pad: 'x'.repeat(MAX_BODY) }) });
    assert.equal(r.status, 413);
    assert.equal(code(r), 'ERR_BODY_TOO_LARGE');
    assert.equal(await state(), before);
  });

  test('general nodes: POST defines one (adapter enrolled later), GET lists it; bad bodies and conflicts refused', async () => {
    const before = await state();
    for (const [body, status, want] of [
      [{ name: 'printer', mac: 'nope', adapter: 'gw' }, 400, 'ERR_BAD_MAC'],
      [{ name: 'printer', mac: '01:00:5e:00:00:01', adapter: 'gw' }, 400, 'ERR_BAD_MAC'],
      [{ name: 'printer', mac: '02:00:00:00:00:01' }, 400, 'ERR_BAD_BODY'],
      [{ name: 'printer', mac: '02:00:00:00:00:01', adapter: 'gw', family: 'v5' }, 400, 'ERR_CONFIG'],
      [{ name: 'printer', mac: '02:00:00:00:00:01', adapter: 'printer' }, 400, 'ERR_BAD_ADAPTER'],
      [{ name: 'printer', mac: '02:00:00:00:00:01', adapter: 'gw', tags: ['Nope'] }, 400, 'ERR_BAD_TAG'],
    ] as const) {
      const r = await call('POST', '/api/v1/general-nodes', { body });
      assert.equal(r.status, status, JSON.stringify(body));
      assert.equal(code(r), want, JSON.stringify(r.body));
    }
    assert.equal(await state(), before, 'nothing changed');
    const ok = await call('POST', '/api/v1/general-nodes', { body: { name: 'printer', mac: '02-00-00-00-00-01', adapter: 'gw', family: 'v4', tags: ['print'] } });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.deepEqual([(ok.body as { mac: string }).mac, (ok.body as { vip6: null }).vip6], ['02:00:00:00:00:01', null]);
    const dupMac = await call('POST', '/api/v1/general-nodes', { body: { name: 'printer2', mac: '02:00:00:00:00:01', adapter: 'gw' } });
    assert.equal(dupMac.status, 409);
    assert.equal(code(dupMac), 'ERR_MAC_TAKEN');
    const dupName = await call('POST', '/api/v1/general-nodes', { body: { name: 'printer', mac: '02:00:00:00:00:02', adapter: 'gw' } });
    assert.equal(code(dupName), 'ERR_NAME_TAKEN');
    const list = (await call('GET', '/api/v1/general-nodes')).body as { name: string; adapter: string }[];
    assert.deepEqual(list.map((g) => [g.name, g.adapter]), [['printer', 'gw']]);
    const nodes = (await call('GET', '/api/v1/nodes')).body as { name: string; online: boolean; tags: string[] }[];
    assert.deepEqual(nodes.map((n) => n.name).sort(), ['gw', 'printer'], 'the adapter has its record already');
    assert.deepEqual(nodes.find((n) => n.name === 'printer')!.tags, ['print']);
  });

  test('DELETE /general-nodes/NAME: unknown 404, bad name 400, a non-general node 409 (nothing changed); a general node removed', async () => {
    const add = await call('POST', '/api/v1/general-nodes', { body: { name: 'lamp', mac: '02:00:00:00:00:09', adapter: 'gw', tags: ['light'] } });
    assert.equal(add.status, 201, JSON.stringify(add.body));
    const before = await state();
    for (const [name, status, want] of [['nope', 404, 'ERR_UNKNOWN_NODE'], ['Bad_Name', 400, 'ERR_NAME'], ['gw', 409, 'ERR_NOT_GENERAL']] as const) {
      const r = await call('DELETE', `/api/v1/general-nodes/${name}`);
      assert.equal(r.status, status, `${name}: ${JSON.stringify(r.body)}`);
      assert.equal(code(r), want);
    }
    assert.equal(await state(), before, 'nothing changed');
    const r = await call('DELETE', '/api/v1/general-nodes/lamp');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual([(r.body as { name: string }).name, (r.body as { adapter: string }).adapter], ['lamp', 'gw']);
    const list = (await call('GET', '/api/v1/general-nodes')).body as { name: string }[];
    assert.ok(!list.some((g) => g.name === 'lamp'));
    assert.ok(!((await call('GET', '/api/v1/nodes')).body as { name: string }[]).some((n) => n.name === 'lamp'));
    assert.equal((await call('DELETE', '/api/v1/general-nodes/lamp')).status, 404, 'gone');
    // Its MAC and name are free again.
    assert.equal((await call('POST', '/api/v1/general-nodes', { body: { name: 'lamp', mac: '02:00:00:00:00:09', adapter: 'gw' } })).status, 201);
    assert.deepEqual(((await call('GET', '/api/v1/nodes')).body as { name: string; tags: string[] }[]).find((n) => n.name === 'lamp')!.tags, [], 'its tags went with it');
    assert.equal((await call('DELETE', '/api/v1/general-nodes/lamp')).status, 200);
  });

  test('GET /relays lists none on an AS+NMS cloud; GET /nodes has the fields of cloud nodes --json', async () => {
    const r = await call('GET', '/api/v1/relays');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, []);
    const n = ((await call('GET', '/api/v1/nodes')).body as Record<string, unknown>[])[0]!;
    assert.deepEqual(Object.keys(n).sort(), ['families', 'fqdn', 'id', 'lastSeen', 'mapping', 'name', 'nat', 'nms', 'observed', 'online', 'tags', 'vip4', 'vip6']);
  });

  test('policy: GET the running one, PUT a new one; an invalid one is refused with the problem named and the old one stays', async () => {
    const first = await call('GET', '/api/v1/policy');
    assert.equal(first.status, 200);
    const bad = await call('PUT', '/api/v1/policy', { body: { allow: [{ from: ['tag:ops'], to: ['*'], ports: ['tcp:99999'] }] } });
    assert.equal(bad.status, 400);
    assert.equal(code(bad), 'ERR_POLICY');
    assert.match((bad.body as { error: { message: string } }).error.message, /99999/);
    assert.deepEqual((await call('GET', '/api/v1/policy')).body, first.body);
    assert.equal((await call('PUT', '/api/v1/policy', {})).status, 400);
    const policy = { allow: [{ from: ['tag:ops'], to: ['tag:print'], ports: ['icmp', 'tcp:631'] }] };
    const ok = await call('PUT', '/api/v1/policy', { body: policy });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual((await call('GET', '/api/v1/policy')).body, ok.body);
    assert.deepEqual((ok.body as typeof policy).allow[0]!.ports, ['icmp', 'tcp:631']);
  });

  test('revoke: unknown node 404, bad name 400, a known node revoked', async () => {
    const unknown = await call('POST', '/api/v1/nodes/ghost/revoke');
    assert.equal(unknown.status, 404);
    assert.equal(code(unknown), 'ERR_UNKNOWN_NODE');
    assert.equal(code(await call('POST', '/api/v1/nodes/Bad%20Name/revoke')), 'ERR_NAME');
    assert.equal(code(await call('POST', '/api/v1/nodes/gw/revoke', { body: { force: true } })), 'ERR_BAD_BODY');
    const ok = await call('POST', '/api/v1/nodes/gw/revoke');
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body, { name: 'gw', revokedCertificates: 0 }); // reserved, never enrolled: no certificate yet
  });

  test('the admin token rotated under the running server: the old one stops working at once', async () => {
    const old = token;
    token = rotateAdminToken(cloudDir);
    assert.equal((await call('GET', '/api/v1/nodes', { auth: old })).status, 401);
    assert.equal((await call('GET', '/api/v1/nodes')).status, 200);
  });

  test('OpenAPI document: public, 3.x, and names exactly the routes served', async () => {
    const r = await call('GET', '/api/v1/openapi.json', { auth: null });
    assert.equal(r.status, 200);
    const doc = r.body as typeof OPENAPI;
    assert.match(doc.openapi, /^3\./);
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p.replace(/\{(\w+)\}/g, ':$1')}`)).sort();
    assert.deepEqual(documented, [
      'DELETE /api/v1/general-nodes/:name', 'GET /api/v1/general-nodes', 'GET /api/v1/nodes', 'GET /api/v1/nodes/:name/peers', 'GET /api/v1/openapi.json', 'GET /api/v1/policy', 'GET /api/v1/relays',
      'POST /api/v1/general-nodes', 'POST /api/v1/nodes/:name/revoke', 'POST /api/v1/tokens', 'PUT /api/v1/policy',
    ]);
    // Every documented operation exists: without a token it is a 401 (or 200 for the public document), never 404/405.
    for (const op of documented) {
      const [m, p] = op.split(' ') as [string, string];
      const s = (await call(m, p.replace(':name', 'x'), { auth: null })).status;
      assert.ok(s === 401 || (s === 200 && p.endsWith('openapi.json')), `${op}: ${s}`);
    }
  });

  test('--console parsing; bound beyond loopback the API speaks HTTPS with the cloud certificate', async () => {
    assert.deepEqual(parseListen('127.0.0.1:4580', '--console'), { host: '127.0.0.1', port: 4580 });
    assert.deepEqual(parseListen('[::]:0', '--console'), { host: '::', port: 0 });
    for (const bad of ['4580', '127.0.0.1', 'example.com:80', '1.2.3.4:70000', '[::1]4580']) assert.throws(() => parseListen(bad, '--console'), /ADDR:PORT/, bad);
    const other = await startCloud({ dir: cloudDir, logger: silentLogger, host: '127.0.0.1', ports: { as: 0, nms: 0 }, roles: ['nms'], console: { host: '0.0.0.0', port: 0 } });
    try {
      assert.match(other.console!.url, /^https:/);
      const port = other.console!.port;
      const ca = readFileSync(join(cloudDir, 'ca', 'root.pem'), 'utf8');
      const status = await new Promise<number>((resolve, reject) => {
        https.get({ host: '127.0.0.1', port, path: '/api/v1/nodes', ca, servername: 'as.cyphonic.internal', headers: { authorization: `Bearer ${token}` } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject);
      });
      assert.equal(status, 200, 'verified against the cloud root CA');
      await assert.rejects(fetch(`http://127.0.0.1:${port}/api/v1/nodes`), 'no plain HTTP there');
    } finally {
      await other.stop();
    }
  });
});
