// Benchmark of the foundation: enrollment (key pair + CSR + signing) and login + registration times,
// next to the NTMobile paper's figures (CSR 1.4 s, signing 94 ms with RSA-2048). Prints a table; loopback only.
//
// usage: node dist/bench/foundation.js [--runs N]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import dgram from 'node:dgram';
import { createCsr, generateKeyPair, issueNodeCertificate, toPem, type CaMaterial } from '../src/crypto/index.js';
import { createEnrollment, initCloud, startCloud } from '../src/cloud/cloud.js';
import { decodeToken } from '../src/config/token.js';
import { enroll, login } from '../src/node/as-client.js';
import { NmsClient } from '../src/node/signaling.js';
import { silentLogger } from '../src/util/log.js';

const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Math.max(3, Number(process.argv[runsArg + 1])) : 30;

function stats(xs: number[]): { median: number; p90: number; min: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, p90: s[Math.floor(s.length * 0.9)]!, min: s[0]! };
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-bench-'));
  const cloudDir = join(dir, 'cloud');
  await initCloud({ dir: cloudDir, advertise: ['127.0.0.1'] });
  const cloud = await startCloud({ dir: cloudDir, logger: silentLogger, host: '127.0.0.1', ports: { as: 0, nms: 0 } });
  const asEp = `127.0.0.1:${cloud.ports.as}`;
  const issuer: CaMaterial = { certPem: readFileSync(join(cloudDir, 'ca/as.pem'), 'utf8'), keyPem: readFileSync(join(cloudDir, 'ca/as.key.pem'), 'utf8') };
  const rows: [string, number[], string][] = [];
  try {
    const keygen: number[] = [];
    const csr: number[] = [];
    const sign: number[] = [];
    const enrollRt: number[] = [];
    const loginRt: number[] = [];
    const regRt: number[] = [];
    const reRegRt: number[] = [];
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    for (let i = 0; i < RUNS; i++) {
      let keyPem = '';
      keygen.push(await time(async () => (keyPem = (await generateKeyPair()).privateKeyPem)));
      let der: Buffer = Buffer.alloc(0);
      csr.push(await time(async () => (der = await createCsr(keyPem, `bench${i}`))));
      sign.push(await time(() => issueNodeCertificate(issuer, der, { name: `bench${i}`, fqdn: `bench${i}.cyphonic.internal`, nodeId: 1 })));
      // Whole enrollment over TLS 1.3 (token check, CSR verification, signing, store).
      const token = decodeToken(await createEnrollment(cloudDir, `node${i}`));
      let res!: Awaited<ReturnType<typeof enroll>>;
      enrollRt.push(await time(async () => (res = await enroll({ endpoints: [asEp], caFingerprint: token.ca, token: token.secret, csr: await createCsr(keyPem, token.name) }))));
      let lr!: Awaited<ReturnType<typeof login>>;
      loginRt.push(await time(async () => (lr = await login({ endpoints: [asEp], rootPem: res.rootPem, certPem: toPem(res.certificate), chainPem: res.chain.map((d) => toPem(d)).join(''), keyPem }))));
      const nms = { address: '127.0.0.1', port: cloud.ports.nms };
      const client = new NmsClient({ nodeId: lr.nodeId, commonKey: lr.commonKey, nms }, { send: (m, to) => sock.send(m, to.port, to.address) });
      const onMsg = (m: Buffer): void => void client.handleDatagram(m);
      sock.on('message', onMsg);
      const eps = [{ address: '127.0.0.1', port: sock.address().port }];
      regRt.push(await time(() => client.register(eps, false)));
      reRegRt.push(await time(() => client.register(eps, true)));
      sock.off('message', onMsg);
    }
    sock.close();
    rows.push(['key pair (ECDSA P-256)', keygen, '(in CSR 1.403 s, RSA-2048)']);
    rows.push(['CSR creation', csr, '1.403 s incl. RSA key']);
    rows.push(['certificate signing at the AS', sign, '0.094 s']);
    rows.push(['enrollment round trip (TLS 1.3)', enrollRt, '-']);
    rows.push(['login round trip (mTLS)', loginRt, '-']);
    rows.push(['registration (sealed UDP)', regRt, '-']);
    rows.push(['re-registration (1 RTT)', reRegRt, '-']);
  } finally {
    await cloud.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const out = [`cyphonic foundation benchmark — ${RUNS} runs each, loopback, node ${process.version}`, ''];
  out.push(`${'step'.padEnd(34)} ${'median ms'.padStart(10)} ${'p90 ms'.padStart(8)} ${'min ms'.padStart(8)}   NTMobile paper`);
  for (const [name, xs, paper] of rows) {
    const s = stats(xs);
    out.push(`${name.padEnd(34)} ${s.median.toFixed(2).padStart(10)} ${s.p90.toFixed(2).padStart(8)} ${s.min.toFixed(2).padStart(8)}   ${paper}`);
  }
  const enrollTotal = stats(rows[0]![1]).median + stats(rows[1]![1]).median + stats(rows[2]![1]).median;
  out.push('', `enrollment compute (key pair + CSR + signing): ${enrollTotal.toFixed(1)} ms vs ${(1403 + 94)} ms in the paper`);
  process.stdout.write(out.join('\n') + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
