// The AS must be the AS: an enrolled node's certificate chains to the same root as the AS's TLS certificate, so an
// insider on the path (ARP spoofing on a LAN is enough) could serve TLS with it, take a new device's token and hand
// out its own Common Key, NMS endpoints and pools. These tests run that attack against the real AS client over
// loopback TLS: a server presenting a node certificate is refused at enrollment and at login, and a login answer
// with out-of-range pools or addresses is refused before anything uses it.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { createEnrollment, initCloud, startCloud } from '../../../src/cloud/cloud.js';
import { decodeToken } from '../../../src/config/token.js';
import { AS_SERVER_PURPOSE, createCsr, generateKeyPair, subjectAltNames, toPem } from '../../../src/crypto/index.js';
import { checkLoginResponse, enroll, login } from '../../../src/node/as-client.js';
import { MessageType } from '../../../src/protocol/constants.js';
import { encodeFrame } from '../../../src/protocol/frame.js';
import { encodeBody, type LoginResponse } from '../../../src/protocol/messages.js';
import { silentLogger } from '../../../src/util/log.js';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

describe('AS identity: a node certificate never passes as the AS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-asid-'));
  const cloudDir = join(dir, 'cloud');
  let cloud: Awaited<ReturnType<typeof startCloud>>;
  let as: string[];
  let mallory: { certPem: string; chainPem: string; keyPem: string; rootPem: string; certDer: Buffer };
  let fake: tls.Server;
  let fakeAt: string;
  let fakeSawRequest = 0;

  before(async () => {
    // The root key goes offline at init (the cloud runs and enrolls without it).
    await initCloud({ dir: cloudDir, advertise: ['127.0.0.1'], rootKeyOut: join(dir, 'root.key.pem') });
    assert.ok(!existsSync(join(cloudDir, 'ca', 'root.key.pem')), 'no root key in the cloud directory');
    assert.match(readFileSync(join(dir, 'root.key.pem'), 'utf8'), /PRIVATE KEY/);
    cloud = await startCloud({ dir: cloudDir, logger: silentLogger, host: '127.0.0.1', ports: { as: 0, nms: 0 }, roles: ['as', 'nms'] });
    as = [`127.0.0.1:${cloud.ports.as}`];
    // Mallory enrolls honestly: a certificate from the same intermediate as the AS's own.
    const token = decodeToken(await createEnrollment(cloudDir, 'mallory'));
    const keyPem = (await generateKeyPair()).privateKeyPem;
    const res = await enroll({ endpoints: as, caFingerprint: token.ca, token: token.secret, csr: await createCsr(keyPem, 'mallory') });
    mallory = { certPem: toPem(res.certificate), chainPem: res.chain.map((d) => toPem(d)).join(''), keyPem, rootPem: res.rootPem, certDer: res.certificate };
    // Mallory's fake AS: her own certificate and chain, answering whatever is asked as the AS would.
    fake = tls.createServer({ key: keyPem, cert: mallory.certPem + mallory.chainPem, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, (sock) => {
      sock.on('error', () => {});
      sock.once('data', () => {
        fakeSawRequest++;
        const body = encodeBody(MessageType.EnrollResponse, { nodeId: 7, name: 'victim', fqdn: 'victim.cyphonic.internal', certificate: res.certificate, chain: res.chain });
        sock.end(encodeFrame({ type: MessageType.EnrollResponse, status: 0, txid: 1, seq: 0n, id: 0n }, body));
      });
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
    fakeAt = `127.0.0.1:${(fake.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise<void>((r) => fake.close(() => r()));
    await cloud.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('node certificates carry clientAuth only; the AS TLS certificate carries the AS purpose', async () => {
    const eku = new X509Certificate(mallory.certDer).keyUsage ?? [];
    assert.deepEqual(eku, [CLIENT_AUTH]);
    const served = await new Promise<tls.PeerCertificate>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: cloud.ports.as, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => {
        resolve(s.getPeerCertificate(false));
        s.destroy();
      });
      s.on('error', reject);
    });
    const asEku = new X509Certificate(served.raw).keyUsage ?? [];
    assert.ok(asEku.includes(SERVER_AUTH) && asEku.includes(AS_SERVER_PURPOSE), `AS EKU ${asEku.join(',')}`);
  });

  test('enrollment refuses a server with a node certificate, though it chains to the pinned root', async () => {
    const token = decodeToken(await createEnrollment(cloudDir, 'victim'));
    const keyPem = (await generateKeyPair()).privateKeyPem;
    const before = fakeSawRequest;
    await assert.rejects(
      enroll({ endpoints: [fakeAt], caFingerprint: token.ca, token: token.secret, csr: await createCsr(keyPem, 'victim') }),
      (err: Error & { code?: string }) => err.code === 'ERR_NOT_AS',
    );
    assert.equal(fakeSawRequest, before, 'the token never reached the fake AS');
    // The real AS still takes the same token: nothing was spent.
    const ok = await enroll({ endpoints: as, caFingerprint: token.ca, token: token.secret, csr: await createCsr(keyPem, 'victim') });
    assert.equal(ok.name, 'victim');
  });

  test('login refuses a server with a node certificate', async () => {
    const before = fakeSawRequest;
    await assert.rejects(login({ endpoints: [fakeAt], rootPem: mallory.rootPem, certPem: mallory.certPem, chainPem: mallory.chainPem, keyPem: mallory.keyPem }));
    assert.equal(fakeSawRequest, before, 'no login request reached the fake AS');
    const real = await login({ endpoints: as, rootPem: mallory.rootPem, certPem: mallory.certPem, chainPem: mallory.chainPem, keyPem: mallory.keyPem });
    assert.equal(real.name, 'mallory');
    // The certificate binds the name and the virtual addresses: what peers check Route Directions against.
    const san = subjectAltNames(mallory.certDer);
    assert.deepEqual(san.dns, ['mallory.cyphonic.internal']);
    assert.deepEqual(san.ips, [real.vip4, real.vip6]);
  });

  test('login answers with out-of-range pools, addresses or endpoints are refused', () => {
    const good: LoginResponse = {
      nodeId: 1, name: 'n', fqdn: 'n.cyphonic.internal', domain: 'cyphonic.internal', vip4: '100.64.0.5', vip6: 'fd00:1:2::5',
      commonKey: Buffer.alloc(32), commonKeyExpiresAt: 0n, nmsEndpoints: [{ address: '198.18.0.10', port: 4502 }],
      pool4: '100.64.0.0/10', pool6: 'fd00:1:2::/48',
    };
    assert.equal(checkLoginResponse(good), good);
    const bad: Array<[string, Partial<LoginResponse>]> = [
      ['half the Internet', { pool4: '0.0.0.0/1', vip4: '1.2.3.4' }],
      ['a /4 pool', { pool4: '96.0.0.0/4', vip4: '100.64.0.5' }],
      ['an IPv6 /1', { pool6: '::/1', vip6: '::5' }],
      ['vip4 outside the pool', { vip4: '198.18.0.99' }],
      ['vip6 outside the pool', { vip6: '2001:db8::5' }],
      ['pool of the wrong family', { pool4: 'fd00::/48' }],
      ['not a CIDR', { pool4: 'x' }],
      ['no NMS', { nmsEndpoints: [] }],
      ['NMS without port', { nmsEndpoints: [{ address: '198.18.0.10', port: 0 }] }],
      ['NMS multicast', { nmsEndpoints: [{ address: 'ff02::1', port: 4502 }] }],
      ['NMS inside the overlay', { nmsEndpoints: [{ address: '100.64.0.1', port: 4502 }] }],
    ];
    for (const [what, patch] of bad) {
      assert.throws(() => checkLoginResponse({ ...good, ...patch }), (err: Error & { code?: string }) => err.code === 'ERR_LOGIN_ANSWER', what);
    }
  });
});
