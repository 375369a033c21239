// One datagram from UDP source port 0 must not stop a cloud process. Node throws ERR_SOCKET_BAD_PORT when asked to
// send to port 0; the NMS used to answer a valid (sealed) registration from inside a promise with no catch, so any
// enrolled node could stop the AS+NMS process with one packet. Here the real cloud runs in this test's process
// (an unhandled rejection would end the test run), and a raw socket (python3, root) sends real registrations and
// TRS frames from port 0 over loopback; the cloud drops and counts them and still registers a node afterwards.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dgram from 'node:dgram';
import { createEnrollment, initCloud, startCloud } from '../../../src/cloud/cloud.js';
import { decodeToken } from '../../../src/config/token.js';
import { createCsr, generateKeyPair, toPem } from '../../../src/crypto/index.js';
import { enroll, login } from '../../../src/node/as-client.js';
import { NmsClient } from '../../../src/node/signaling.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { silentLogger } from '../../../src/util/log.js';
import { have } from '../../harness/requires.js';

const root = process.getuid?.() === 0;
const skip = !root ? 'a raw socket needs root' : !have('python3') ? 'needs python3' : false;

/** Sends `payload` as a UDP datagram 127.0.0.1:0 → 127.0.0.1:port through a raw IPv4 socket (IP_HDRINCL). */
function sendFromPortZero(port: number, payload: Buffer): void {
  const script = [
    'import socket,struct,sys',
    'p=bytes.fromhex(sys.argv[2]); port=int(sys.argv[1])',
    'udp=struct.pack("!HHHH",0,port,8+len(p),0)+p',
    'ip=struct.pack("!BBHHHBBH4s4s",0x45,0,20+len(udp),0,0,64,17,0,socket.inet_aton("127.0.0.1"),socket.inet_aton("127.0.0.1"))',
    's=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_RAW)',
    's.sendto(ip+udp,("127.0.0.1",0))',
  ].join('\n');
  execFileSync('python3', ['-c', script, String(port), payload.toString('hex')], { timeout: 10_000 });
}

describe('port 0: a datagram from UDP source port 0 is dropped and counted; the cloud keeps serving', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-port0-'));
  const cloudDir = join(dir, 'cloud');
  let cloud: Awaited<ReturnType<typeof startCloud>>;
  let creds: { nodeId: number; commonKey: Buffer };

  before(async () => {
    await initCloud({ dir: cloudDir, advertise: ['127.0.0.1'] });
    cloud = await startCloud({ dir: cloudDir, logger: silentLogger, host: '127.0.0.1', ports: { as: 0, nms: 0, trs: 0 }, roles: ['as', 'nms', 'trs'] });
    const as = [`127.0.0.1:${cloud.ports.as}`];
    const token = decodeToken(await createEnrollment(cloudDir, 'n0'));
    const keyPem = (await generateKeyPair()).privateKeyPem;
    const e = await enroll({ endpoints: as, caFingerprint: token.ca, token: token.secret, csr: await createCsr(keyPem, 'n0') });
    const l = await login({ endpoints: as, rootPem: e.rootPem, certPem: toPem(e.certificate), chainPem: e.chain.map((d) => toPem(d)).join(''), keyPem });
    creds = { nodeId: l.nodeId, commonKey: l.commonKey };
  });

  after(async () => {
    await cloud.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A registration over a real socket; `capture` instead keeps the sealed request without sending it. */
  async function register(capture?: (m: Buffer) => void): Promise<void> {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const nms: Endpoint = { address: '127.0.0.1', port: cloud.ports.nms };
    const client = new NmsClient({ nodeId: creds.nodeId, commonKey: creds.commonKey, nms, retransmitMs: [300, 300, 300] }, {
      send: (m, to) => (capture ? capture(m) : sock.send(m, to.port, to.address)),
    });
    sock.on('message', (m) => client.handleDatagram(m));
    const ac = new AbortController();
    try {
      const pending = client.register([{ address: '127.0.0.1', port: sock.address().port }], false, ac.signal);
      if (capture) {
        ac.abort();
        await pending.catch(() => {});
        return;
      }
      const res = await pending;
      assert.equal(res.observed.port, sock.address().port);
    } finally {
      client.close();
      sock.close();
    }
  }

  test('sealed registrations and TRS frames from port 0', async () => {
    const frames: Buffer[] = [];
    for (let i = 0; i < 3; i++) await register((m) => frames.push(m));
    assert.ok(frames.length >= 3);
    const nms = cloud.nms!;
    const trs = cloud.trs!;
    const before = { nms: nms.counters.get('refused.port0'), trs: trs.counters.get('refused.port0') };
    for (const f of frames) sendFromPortZero(cloud.ports.nms, f);
    sendFromPortZero(cloud.ports.trs!, frames[0]!);
    sendFromPortZero(cloud.ports.trs!, Buffer.from('garbage from port zero'));
    for (let i = 0; i < 100 && (nms.counters.get('refused.port0') < before.nms + frames.length || trs.counters.get('refused.port0') < before.trs + 2); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(nms.counters.get('refused.port0'), before.nms + frames.length);
    assert.equal(trs.counters.get('refused.port0'), before.trs + 2);
    await new Promise((r) => setTimeout(r, 200)); // an unhandled rejection would surface here and fail the run
    await register(); // and the NMS still serves
  });
});
