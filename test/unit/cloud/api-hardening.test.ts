// The REST API's defences and the console's delivery, on a real cloud (AS + NMS, SQLite) started in this process on
// loopback: wrong bearer tokens from one address are limited (429 ERR_RATE_LIMITED with Retry-After, the right
// token too, until the window ends; other addresses and the public document unaffected); the failure table is bounded
// and keys IPv6 clients by /64; a wrong token of any length is refused without an exception (the compare is over
// SHA-256 digests with timingSafeEqual); bodies over MAX_BODY are refused whether declared or streamed; the console's
// files are served with a Content-Security-Policy and carry no inline script or handler, and nothing outside them is
// reachable; an enrollment token comes with its QR code as SVG; a node's peers view joins the NMS's selections with
// the store's nodes and the TRS's relayed counts.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCloud, startCloud } from '../../../src/cloud/cloud.js';
import { AdminTokenCheck } from '../../../src/cloud/api/admin-token.js';
import { AuthFailures, clientKey, CONSOLE_CSP, defaultConsoleDir, MAX_BODY } from '../../../src/cloud/api/server.js';
import { decodeToken } from '../../../src/config/token.js';
import { nodePeers } from '../../../src/cloud/console/peers.js';
import { silentLogger } from '../../../src/util/log.js';

const WINDOW_MS = 1500;

describe('REST API hardening and the console files (real cloud on loopback)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-api-hard-'));
  const cloudDir = join(dir, 'cloud');
  let cloud: Awaited<ReturnType<typeof startCloud>>;
  let base = '';
  let token = '';

  /** A request from a chosen local source address (127.0.0.x: distinct clients on one machine). */
  function request(path: string, o: { method?: string; auth?: string | null; from?: string; body?: Buffer | string; headers?: Record<string, string>; chunked?: boolean } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
    const url = new URL(base + path);
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { ...(o.headers ?? {}) };
      if (o.auth !== null) headers['authorization'] = `Bearer ${o.auth ?? token}`;
      const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: o.method ?? 'GET', headers, localAddress: o.from ?? '127.0.0.1' }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', reject);
      if (o.body !== undefined && o.chunked) {
        // Streamed without Content-Length, in pieces: the limit must hold while reading.
        const b = Buffer.from(o.body);
        for (let i = 0; i < b.length; i += 64 * 1024) req.write(b.subarray(i, i + 64 * 1024));
        req.end();
      } else req.end(o.body);
    });
  }
  const code = (text: string): string | undefined => (JSON.parse(text) as { error?: { code?: string } }).error?.code;

  before(async () => {
    await initCloud({ dir: cloudDir, advertise: ['127.0.0.1'] });
    cloud = await startCloud({ dir: cloudDir, logger: silentLogger, host: '127.0.0.1', ports: { as: 0, nms: 0 }, roles: ['as', 'nms'], console: { host: '127.0.0.1', port: 0, authFailures: { max: 10, windowMs: WINDOW_MS } } });
    base = cloud.console!.url;
    token = readFileSync(join(cloudDir, 'admin-token'), 'utf8').trim();
  });
  after(async () => {
    await cloud?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('10 wrong tokens from one address, then 429 ERR_RATE_LIMITED for every authenticated route, right token too, until the window ends', async () => {
    const from = '127.0.0.2';
    for (let i = 0; i < 10; i++) {
      const r = await request('/api/v1/nodes', { auth: i % 2 ? `wrong-${i}` : null, from });
      assert.equal(r.status, 401, `attempt ${i + 1}`);
    }
    const limited = await request('/api/v1/nodes', { auth: 'wrong-again', from });
    assert.equal(limited.status, 429);
    assert.equal(code(limited.text), 'ERR_RATE_LIMITED');
    const retry = Number(limited.headers['retry-after']);
    assert.ok(retry >= 1 && retry <= Math.ceil(WINDOW_MS / 1000), `retry-after ${retry}`);
    const right = await request('/api/v1/nodes', { from });
    assert.equal(right.status, 429, 'the right token is refused too while limited (no oracle for a lucky guess)');
    const post = await request('/api/v1/tokens', { method: 'POST', from, body: JSON.stringify({ name: 'limited' }), headers: { 'content-type': 'application/json' } });
    assert.equal(post.status, 429);
    assert.equal((await request('/api/v1/openapi.json', { auth: null, from })).status, 200, 'the public document is not limited');
    assert.equal((await request('/api/v1/nodes', { from: '127.0.0.3' })).status, 200, 'another address is unaffected');
    const nodes = JSON.parse((await request('/api/v1/nodes')).text) as { name: string }[];
    assert.ok(!nodes.some((n) => n.name === 'limited'), 'the refused POST changed nothing');
    await new Promise((r) => setTimeout(r, WINDOW_MS + 100));
    assert.equal((await request('/api/v1/nodes', { from })).status, 200, 'the window ended');
  });

  test('the failure table: fixed windows, bounded; IPv4-mapped addresses as IPv4, IPv6 by /64', () => {
    let now = 0;
    const f = new AuthFailures({ max: 3, windowMs: 1000 }, () => now);
    for (let i = 0; i < 2; i++) f.fail('a');
    assert.equal(f.blockedFor('a'), 0);
    f.fail('a');
    assert.equal(f.blockedFor('a'), 1000);
    now = 600;
    assert.equal(f.blockedFor('a'), 400);
    now = 1000;
    assert.equal(f.blockedFor('a'), 0, 'the window ended');
    f.fail('a');
    assert.equal(f.blockedFor('a'), 0, 'a new window counts from one');
    for (let i = 0; i < 20_000; i++) f.fail(`x${i}`);
    assert.ok(f.size <= 10_000, `bounded: ${f.size}`);
    assert.equal(clientKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(clientKey('192.0.2.7'), '192.0.2.7');
    assert.equal(clientKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(clientKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64');
    assert.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(clientKey('::1'), '0:0:0:0::/64');
  });

  test('a wrong token of any length is refused without an exception; the right one accepted', () => {
    const check = new AdminTokenCheck(cloudDir);
    for (const t of ['', 'a', token.slice(0, -1), token + 'A', 'x'.repeat(4096), token.toUpperCase()]) assert.equal(check.check(t), false, `length ${t.length}`);
    assert.equal(check.check(token), true);
  });

  test('bodies over MAX_BODY: 413 when declared and when streamed without a length; nothing changed', async () => {
    const big = JSON.stringify({ name: 'big', tags: ['x'.repeat(MAX_BODY)] });
    const declared = await request('/api/v1/tokens', { method: 'POST', body: big, headers: { 'content-type': 'application/json' } });
    assert.equal(declared.status, 413);
    assert.equal(code(declared.text), 'ERR_BODY_TOO_LARGE');
    const streamed = await request('/api/v1/tokens', { method: 'POST', body: big, chunked: true, headers: { 'content-type': 'application/json' } });
    assert.equal(streamed.status, 413);
    const nodes = JSON.parse((await request('/api/v1/nodes')).text) as { name: string }[];
    assert.equal(nodes.length, 0);
  });

  test('the console: index, script, style served with the CSP; no inline script, handler or style; nothing else on disk reachable', async () => {
    const index = await request('/', { auth: null });
    assert.equal(index.status, 200);
    assert.match(String(index.headers['content-type']), /^text\/html/);
    assert.equal(index.headers['content-security-policy'], CONSOLE_CSP);
    assert.match(CONSOLE_CSP, /script-src 'self';/);
    assert.doesNotMatch(CONSOLE_CSP, /unsafe-inline|unsafe-eval|\*/);
    assert.equal(index.headers['x-frame-options'], 'DENY');
    assert.match(index.text, /<meta name="viewport" content="width=device-width/);
    for (const m of index.text.matchAll(/<script\b[^>]*>/g)) assert.match(m[0], /\bsrc="\/console\//, 'every script is a file from this origin');
    assert.doesNotMatch(index.text, /\son[a-z]+=|\sstyle=|https?:\/\//i, 'no inline handler or style, nothing from elsewhere');
    const js = await request('/console/app.js', { auth: null });
    assert.equal(js.status, 200);
    assert.match(String(js.headers['content-type']), /^text\/javascript/);
    assert.doesNotMatch(js.text, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/, 'the DOM is built from text only');
    assert.equal((await request('/console/console.css', { auth: null })).status, 200);
    for (const p of ['/console/../../cloud.json', '/console/%2e%2e/admin-token', '/console/', '/admin-token', '/console/peers.ts', '/index.html']) {
      const r = await request(p, { auth: null });
      assert.ok(r.status === 404 || r.status === 401, `${p}: ${r.status}`);
      assert.ok(!r.text.includes(token), p);
    }
    assert.equal((await request('/', { auth: null, method: 'POST' })).status, 404);
    // What is served is exactly the files of the console directory.
    const names = readdirSync(defaultConsoleDir()!).sort();
    for (const n of names) assert.equal((await request(`/console/${n}`, { auth: null })).status, 200, n);
    const api = await request('/api/v1/nodes');
    assert.equal(api.headers['content-security-policy'], "default-src 'none'; frame-ancestors 'none'");
  });

  test('POST /tokens answers the token with its QR code (SVG, no script)', async () => {
    const r = await request('/api/v1/tokens', { method: 'POST', body: JSON.stringify({ name: 'phone-1', tags: ['ops'] }), headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 201);
    const body = JSON.parse(r.text) as { token: string; qr: string };
    assert.equal(decodeToken(body.token).name, 'phone-1');
    assert.match(body.qr, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.doesNotMatch(body.qr, /<script|on[a-z]+=/i);
    const peers = await request('/api/v1/nodes/phone-1/peers');
    assert.equal(peers.status, 404, 'not enrolled yet: no node');
    assert.equal(code(peers.text), 'ERR_UNKNOWN_NODE');
    assert.equal((await request('/api/v1/nodes/BAD_NAME/peers')).status, 400);
  });

  test("a node's peers: the NMS's selections with names and state, relayed counts from this TRS; unknown peers skipped", async () => {
    const pools = cloud.config.pools;
    const a = await cloud.store.createNode({ name: 'peer-a', kind: 'node' }, pools);
    const b = await cloud.store.createNode({ name: 'peer-b', kind: 'node' }, pools);
    const c = await cloud.store.createNode({ name: 'peer-c', kind: 'node' }, pools);
    const at = Date.parse('2026-12-01T00:00:00Z');
    const paths = (id: number) =>
      id === a.id
        ? [
            { peer: b.id, pathId: 7n, kind: 'relayed' as const, initiator: true, relayId: 'trs-1', relay: { address: '198.18.0.10', port: 4503 }, why: 'IPv4-only against IPv6-only', at, order: 3 },
            { peer: c.id, pathId: 9n, kind: 'direct' as const, initiator: false, relayId: null, relay: null, why: 'responder reachable', at, order: 2 },
            { peer: 999_999, pathId: 11n, kind: 'direct' as const, initiator: false, relayId: null, relay: null, why: 'gone', at, order: 1 },
          ]
        : [];
    const relayStats = (relayId: string, pathId: bigint) => (relayId === 'trs-1' && pathId === 7n ? { packets: 3, bytes: 4200, lastActive: at } : null);
    const view = await nodePeers(cloud.store, cloud.config, 'peer-a', { paths, relayStats });
    assert.deepEqual(view.peers.map((p) => [p.name, p.path, p.relay, p.relayed?.bytes ?? null, p.online, p.rttMs]), [
      ['peer-b', 'relayed', '198.18.0.10:4503', 4200, false, null],
      ['peer-c', 'direct', null, null, false, null],
    ]);
    assert.equal(view.peers[0]!.selectedAt, '2026-12-01T00:00:00.000Z');
    assert.deepEqual((await nodePeers(cloud.store, cloud.config, 'peer-b', {})).peers, [], 'no NMS here: nothing known');
    // With the node's own report (its last keepalive): RTT and bytes per peer; its word on the path type wins (a
    // punch replaced the direct path since), and a peer whose path another instance selected is listed too.
    const d = await cloud.store.createNode({ name: 'peer-d', kind: 'node' }, pools);
    const reports = (id: number) =>
      id === a.id
        ? {
            at,
            peers: [
              { peerNodeId: c.id, pathType: 2, rttMs: 12, txBytes: 5000n, rxBytes: 7000n },
              { peerNodeId: d.id, pathType: 1, txBytes: 10n, rxBytes: 20n },
              { peerNodeId: 999_998, pathType: 1, txBytes: 1n, rxBytes: 1n },
            ],
          }
        : null;
    const withReports = await nodePeers(cloud.store, cloud.config, 'peer-a', { paths, relayStats, reports });
    assert.deepEqual(withReports.peers.map((p) => [p.name, p.path, p.rttMs, p.txBytes, p.rxBytes, p.selectedAt !== null]), [
      ['peer-b', 'relayed', null, null, null, true],
      ['peer-c', 'punched', 12, 5000, 7000, true],
      ['peer-d', 'direct', null, 10, 20, false],
    ]);
    assert.equal(withReports.peers[1]!.reportedAt, '2026-12-01T00:00:00.000Z');
    // Through the API, from the running NMS: no route selection yet.
    const r = await request('/api/v1/nodes/peer-a/peers');
    assert.equal(r.status, 200);
    assert.deepEqual((JSON.parse(r.text) as { peers: unknown[] }).peers, []);
  });
});
