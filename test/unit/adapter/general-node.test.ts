// Unit tests for a general node on the shared node lifecycle (src/adapter/general-node.ts on src/node/lifecycle.ts),
// against a real AS and NMS on loopback (TLS, sealed UDP signaling) and its own C engine with a packet pair for a
// device (no root needed). Checked: the general-node enrollment strategy (adapter-made key and CSR, signed through
// the adapter's identity) leaves a node state directory (identity, session) and the node registers; when its NMS goes
// silent (the cloud restarted with the NMS on another port, so nothing answers where it registered) it logs in again
// after every NMS failed twice, learns the new NMS and registers there — before the shared lifecycle a general node
// kept retrying the silent NMS until its Common Key expired; a restart from the same directory (kill -9) reuses
// identity and session without enrolling again.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GeneralNodeAgent, type AdapterCredentials } from '../../../src/adapter/general-node.js';
import { createEnrollment, initCloud, openCloudStore, startCloud } from '../../../src/cloud/cloud.js';
import { addGeneralNode } from '../../../src/cloud/general-nodes.js';
import { loadCloudConfig } from '../../../src/config/cloud.js';
import { decodeToken } from '../../../src/config/token.js';
import { loadNativeAddon } from '../../../src/native/addon.js';
import { createCsr, generateKeyPair, toPem } from '../../../src/crypto/index.js';
import { enroll } from '../../../src/node/as-client.js';
import { createLogger, silentLogger } from '../../../src/util/log.js';

const skip = loadNativeAddon() ? false : 'native addon not built';
const MAC = '02:aa:00:00:00:01';

async function until<T>(what: string, get: () => T | null | undefined | false, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('general node on the node lifecycle (real AS + NMS on loopback)', { skip, timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-general-node-'));
  const cloudDir = join(dir, 'cloud');
  const nodeDir = join(dir, 'gw', 'general', 'printer');
  let cloud: Awaited<ReturnType<typeof startCloud>>;
  let asPort = 0;
  let creds: AdapterCredentials;
  const logs: string[] = [];
  const logger = createLogger({}, { write: (line) => logs.push(line) });
  const agents: GeneralNodeAgent[] = [];

  const startCloudHere = (asP: number): ReturnType<typeof startCloud> =>
    startCloud({ dir: cloudDir, logger: silentLogger, host: '127.0.0.1', ports: { as: asP, nms: 0 }, roles: ['as', 'nms'] });
  const agent = (): GeneralNodeAgent => {
    const a = new GeneralNodeAgent({ name: 'printer', mac: MAC, dir: nodeDir, pools: ['100.64.0.0/10'], mtu: 1500, nmsRetransmitMs: [100, 200, 300] }, creds, logger);
    agents.push(a);
    return a;
  };

  before(async () => {
    await initCloud({ dir: cloudDir, advertise: ['127.0.0.1'] });
    const cfgPath = join(cloudDir, 'cloud.json');
    writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, 'utf8')), keepaliveNatSec: 1, keepaliveOpenSec: 1 }));
    cloud = await startCloudHere(0);
    asPort = cloud.ports.as;
    const as = [`127.0.0.1:${asPort}`];
    const token = decodeToken(await createEnrollment(cloudDir, 'gw'));
    const keyPem = (await generateKeyPair()).privateKeyPem;
    const res = await enroll({ endpoints: as, caFingerprint: token.ca, token: token.secret, csr: await createCsr(keyPem, 'gw') });
    creds = { as, rootPem: res.rootPem, certPem: toPem(res.certificate), chainPem: res.chain.map((d) => toPem(d)).join(''), keyPem };
    const cfg = loadCloudConfig(cfgPath);
    const store = await openCloudStore(cloudDir, cfg);
    try {
      await addGeneralNode(store, cfg.pools, cfg.domain, { name: 'printer', mac: MAC, adapter: 'gw' });
    } finally {
      await store.close();
    }
  });

  after(async () => {
    for (const a of agents) await a.stop();
    await cloud?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('enrolls through the adapter, logs in and registers; its directory is a node state directory', async () => {
    const a = agent();
    await a.start();
    const st = await until('registered', () => (a.status().registered ? a.status() : null));
    assert.equal(st.fqdn, 'printer.cyphonic.internal');
    assert.ok(st.nodeId && st.nodeId > 0);
    for (const f of ['key.pem', 'cert.pem', 'chain.pem', 'root.pem', 'identity.json', 'session.json']) assert.ok(existsSync(join(nodeDir, f)), f);
    assert.equal(readFileSync(join(nodeDir, 'root.pem'), 'utf8'), creds.rootPem);
    assert.equal(logs.filter((l) => l.includes('general node enrolled')).length, 1);
  });

  test('its NMS goes silent: after every NMS failed twice it logs in again, learns the new NMS and registers there', async () => {
    const a = agents[0]!;
    const before = a.status();
    // The cloud restarts with its AS where it was and the NMS on another port: where the general node registered,
    // nothing answers any more (no NACK that would send it to the AS).
    await cloud.stop();
    cloud = await startCloudHere(asPort);
    await until('not registered', () => !a.status().registered);
    const st = await until('registered again', () => (a.status().registered ? a.status() : null), 60_000);
    assert.notEqual(st.commonKeyExpiresAt, before.commonKeyExpiresAt, 'logged in again');
    assert.ok(logs.some((l) => l.includes('no NMS answers; logging in again')), 'the re-login was for the silence');
  });

  test('a restart from the same directory (kill -9) reuses identity and session: no second enrollment', async () => {
    const first = agents[0]!;
    const id = first.status().nodeId;
    await first.stop();
    const b = agent();
    await b.start();
    const st = await until('registered after the restart', () => (b.status().registered ? b.status() : null));
    assert.equal(st.nodeId, id);
    assert.equal(logs.filter((l) => l.includes('general node enrolled')).length, 1, 'enrolled once');
  });
});
