// End-to-end test of the web console in a real browser: Debian's chromium driven by playwright-core against a real
// cloud (`cloud init` + `cloud start` with AS, NMS, TRS and the console on 127.0.0.1:4580 of the cloud's namespace;
// the browser runs in that namespace too, through `ip netns exec`), with real nodes (TUN, UDP) in namespaces.
//
// Sign in (a wrong token is refused first), see a node come online, create an enrollment token in the console (text
// and QR code), enroll a second node with the token text read from the page, see the path between the two on the
// node's page after they ping each other, revoke the second node in the console and see it go offline. Screenshots
// of the nodes page, the node page and the token page, on a desktop and on a phone viewport, go to
// test-output/console/ (gitignored).
//
//   global segment 198.18.0.0/24, 2001:db8::/64
//   [cloud: AS NMS TRS, console 127.0.0.1:4580, chromium] ──┬──────────┐
//                                                         [alpha]    [beta]

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { decodeToken } from '../../src/config/token.js';
import { CloudProc, NodeProc, REPO, workDir } from '../harness/cluster.js';
import { Testbed } from '../harness/netns/index.js';
import { e2eSkip } from '../harness/requires.js';

const skip = e2eSkip('chromium');
const SHOTS = join(REPO, 'test-output', 'console');
const CONSOLE = 'http://127.0.0.1:4580';
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

describe('web console in chromium: sign in, nodes live, enroll with a token made in the console, revoke (netns)', { skip, timeout: 120_000 }, () => {
  let tb: Testbed;
  let work: ReturnType<typeof workDir>;
  let cloud: CloudProc;
  let alpha: NodeProc;
  let beta: NodeProc;
  let browser: Browser;
  let page: Page;
  let adminToken = '';
  let alphaToken = '';

  const shot = async (name: string): Promise<void> => {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  };
  /** Desktop and phone screenshots of the page as it is now. */
  const shots = async (name: string): Promise<void> => {
    await shot(`${name}-desktop`);
    await page.setViewportSize(PHONE);
    await shot(`${name}-phone`);
    await page.setViewportSize(DESKTOP);
  };

  const t0 = Date.now();
  const mark = (what: string): void => void (process.env['CYPHONIC_TIMING'] && process.stderr.write(`console e2e: ${what} at ${Date.now() - t0} ms\n`));
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    tb = await Testbed.create();
    work = workDir('console');
    cloud = new CloudProc(await tb.addHost('cloud', { site: tb.global, family: 'dual' }), work.dir);
    // The browser joins the cloud's namespace (its loopback is where the console listens); it starts meanwhile.
    const wrapper = join(work.dir, 'chromium-in-ns.sh');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec '${cloud.host.ns}' /usr/bin/chromium "$@"\n`);
    chmodSync(wrapper, 0o755);
    const launching = chromium.launch({
      executablePath: wrapper,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 30_000,
    });
    launching.catch(() => undefined); // awaited below
    await cloud.init();
    await cloud.patchConfig({ keepaliveOpenSec: 3 }); // nodes report their tunnels with each keepalive
    mark('cloud init');
    await cloud.start(['--roles', 'as,nms,trs', '--console', '127.0.0.1:4580']);
    adminToken = readFileSync(join(cloud.dir, 'admin-token'), 'utf8').trim();
    const enrolling = cloud.enroll('alpha');
    alpha = new NodeProc(await tb.addHost('alpha', { site: tb.global, family: 'dual' }), work.dir, 'alpha');
    beta = new NodeProc(await tb.addHost('beta', { site: tb.global, family: 'dual' }), work.dir, 'beta');
    alphaToken = await enrolling;
    browser = await launching;
    mark('browser launched');
    page = await browser.newPage({ viewport: DESKTOP });
    page.setDefaultTimeout(15_000);
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    await tb?.cleanup();
    work?.remove();
  });

  test('sign in, a node comes online, a token made in the console enrolls a node, its path shows, revoking it takes it offline', async () => {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => void (m.type() === 'error' && !/401|Unauthorized/.test(m.text()) && errors.push(m.text())));

    // Sign in: a wrong token is refused, the admin token accepted; it lands on the nodes page.
    const res = await page.goto(CONSOLE + '/');
    assert.equal(res?.status(), 200);
    assert.match(res?.headers()['content-security-policy'] ?? '', /script-src 'self'/);
    await page.fill('#token-input', 'not-the-token');
    await page.click('#sign-in');
    await page.locator('#sign-in-error', { hasText: 'Wrong token' }).waitFor();
    await page.fill('#token-input', adminToken);
    await page.click('#sign-in');
    mark('signed in');
    await page.locator('#nodes-summary').waitFor();

    // A node enrolled with the CLI comes online on the page (the page polls every 2 s).
    alpha.start(alphaToken);
    await page.locator('#nodes tr[data-node="alpha"][data-online="true"]').waitFor();

    // Enroll: create a token for beta in the console; it shows as text and as a QR code.
    await page.click('nav a[data-page="tokens"]');
    await page.fill('#new-token-name', 'beta');
    await page.fill('#new-token-tags', 'ops, phone');
    await page.click('#create-token');
    await page.locator('#token-qr').waitFor();
    const token = await page.inputValue('#token-text');
    assert.equal(decodeToken(token).name, 'beta');
    const qrWidth = await page.locator('#token-qr').evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth);
    assert.ok(qrWidth > 0, 'the QR code image decoded');
    mark('token made');
    await shots('token');

    // beta enrolls with the token read from the page and comes online, with its tags.
    beta.start(token);
    const b = await beta.waitRegistered();
    await page.click('nav a[data-page="nodes"]');
    const row = page.locator('#nodes tr[data-node="beta"][data-online="true"]');
    mark('beta online');
    await row.waitFor();
    const text = await row.innerText();
    assert.match(text, /ops[\s\S]*phone/);
    assert.match(text, /IPv4 \+ IPv6/, 'a dual-stack node registers in both families');

    // A path between them (alpha pings beta over the overlay): beta's page shows alpha and the path kind.
    const ping = await alpha.host.exec('ping', ['-4', '-n', '-c', '3', '-i', '0.2', '-W', '2', b.vip4!]);
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    await shots('nodes');
    await page.click('#nodes tr[data-node="beta"] a');
    await page.locator('#peers tr[data-peer="alpha"][data-path="direct"]').waitFor();
    // What beta itself reported of that tunnel at a keepalive: bytes each way and a round trip.
    const reported = page.locator('#peers tr[data-peer="alpha"][data-reported="true"]');
    await reported.waitFor({ timeout: 15_000 });
    assert.match(await reported.innerText(), /\d+ ms[\s\S]*\d+(\.\d+)? (B|kB|KiB|MB|MiB)\s*\/\s*\d/, 'RTT and bytes shown');
    await page.locator('#node-props[data-online="true"]').waitFor();
    mark('node page');
    await shots('node');

    // The relays page lists this cloud's TRS, live; the general nodes page has none.
    await page.click('nav a[data-page="relays"]');
    await page.locator('#relays tbody tr', { hasText: 'live' }).waitFor();
    await page.click('nav a[data-page="general"]');
    await page.locator('#general-nodes', { hasText: 'None yet' }).waitFor();
    await page.goBack();
    await page.goBack();
    await page.locator('#node-props').waitFor();

    // Revoke beta in the console: it goes offline on its page and in the cloud.
    await page.click('#revoke');
    await page.click('#revoke-confirm');
    await page.locator('#revoke-result', { hasText: 'Revoked' }).waitFor();
    mark('revoked');
    await page.locator('#node-props[data-online="false"]').waitFor();
    await page.click('nav a[data-page="nodes"]');
    await page.locator('#nodes tr[data-node="beta"][data-online="false"]').waitFor();
    await shot('nodes-after-revoke-desktop');
    // It stays offline: its keepalives under the voided Common Key are refused (a later poll of the page).
    await new Promise((r) => setTimeout(r, 2200));
    assert.equal(await page.locator('#nodes tr[data-node="beta"]').getAttribute('data-online'), 'false');
    // The API agrees (asked from the page, with the token it holds).
    const rows = await page.evaluate(async () => {
      const g = globalThis as unknown as { sessionStorage: { getItem(k: string): string | null }; fetch: typeof fetch };
      const r = await g.fetch('/api/v1/nodes', { headers: { authorization: `Bearer ${g.sessionStorage.getItem('cyphonic.admin-token') ?? ''}` } });
      return (await r.json()) as { name: string; online: boolean }[];
    });
    assert.equal(rows.find((n) => n.name === 'beta')?.online, false);
    assert.equal(rows.find((n) => n.name === 'alpha')?.online, true);
    assert.deepEqual(errors, [], 'no script errors in the page');
  });
});
