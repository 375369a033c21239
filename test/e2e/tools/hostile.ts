// Hostile client run inside a namespace by the e2e suite: forged tokens, foreign certificates, wrong keys, fuzz.
// Prints one JSON line with what each attempt got back; every loop is bounded in count and time.
//
//   node hostile.js login-foreign  AS_ENDPOINT ROOT_PEM_FILE        -> {code}   login with a cert from another CA
//   node hostile.js wrong-key      NMS_ENDPOINT NODE_ID             -> {answered} registration sealed with a random key
//   node hostile.js fuzz           NMS_ENDPOINT COUNT SEED NODE_ID  -> {sent}   random + mutated datagrams

import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createCsr, createIntermediateCa, createRootCa, generateKeyPair, issueNodeCertificate } from '../../../src/crypto/index.js';
import { ChannelKeys, sealFrame } from '../../../src/channel/sealed.js';
import { SeqCounter } from '../../../src/channel/sequence.js';
import { MessageType } from '../../../src/protocol/constants.js';
import { parseEndpoint } from '../../../src/protocol/endpoint.js';
import { encodeBody } from '../../../src/protocol/messages.js';
import { login } from '../../../src/node/as-client.js';
import { describeError, CyphonicError } from '../../../src/util/errors.js';
import { mapForDualStack } from '../../../src/util/addr.js';
import { prng } from '../../harness/prng.js';

async function loginForeign(as: string, rootFile: string): Promise<unknown> {
  const root = await createRootCa({ commonName: 'evil root' });
  const inter = await createIntermediateCa(root, { commonName: 'evil AS' });
  const { privateKeyPem } = await generateKeyPair();
  const csr = await createCsr(privateKeyPem, 'mallory');
  const cert = await issueNodeCertificate(inter, csr, { name: 'mallory', fqdn: 'mallory.cyphonic.internal', nodeId: 1 });
  try {
    await login({ endpoints: [as], rootPem: readFileSync(rootFile, 'utf8'), certPem: cert.certPem, chainPem: inter.certPem + root.certPem, keyPem: privateKeyPem });
    return { code: 'ACCEPTED' };
  } catch (err) {
    return { code: err instanceof CyphonicError ? err.code : 'ERR_OTHER', message: describeError(err) };
  }
}

function udp(target: string): { send(b: Buffer): void; replies: () => number; close(): Promise<void> } {
  const ep = parseEndpoint(target);
  const sock = dgram.createSocket({ type: 'udp6', ipv6Only: false });
  let replies = 0;
  sock.on('message', () => replies++);
  sock.bind(0);
  return {
    send: (b) => sock.send(b, ep.port, mapForDualStack(ep.address)),
    replies: () => replies,
    close: () => new Promise((r) => sock.close(() => r())),
  };
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function wrongKey(nms: string, nodeId: number): Promise<unknown> {
  const u = udp(nms);
  const keys = new ChannelKeys(randomBytes(32));
  const seq = new SeqCounter();
  for (let i = 0; i < 5; i++) {
    const body = encodeBody(MessageType.RegistrationRequest, { endpoints: [{ address: '203.0.113.66', port: 30000 }], reRegistration: false });
    u.send(sealFrame(keys.up, { type: MessageType.RegistrationRequest, txid: i + 1, seq: seq.next(), id: BigInt(nodeId) }, body));
  }
  await pause(1000);
  const answered = u.replies();
  await u.close();
  return { sent: 5, answered };
}

async function fuzz(nms: string, count: number, seed: number, nodeId: number): Promise<unknown> {
  const rnd = prng(seed);
  const u = udp(nms);
  const keys = new ChannelKeys(randomBytes(32));
  const seq = new SeqCounter();
  const valid = sealFrame(keys.up, { type: MessageType.Keepalive, txid: 7, seq: seq.next(), id: BigInt(nodeId) }, encodeBody(MessageType.Keepalive, {}));
  const deadline = Date.now() + 20_000;
  let sent = 0;
  for (let i = 0; i < count && Date.now() < deadline; i++) {
    let b: Buffer;
    const kind = i % 3;
    if (kind === 0) b = randomBytes(Math.floor(rnd() * 200));
    else if (kind === 1) {
      b = Buffer.from(valid);
      const flips = 1 + Math.floor(rnd() * 4);
      for (let f = 0; f < flips; f++) {
        const at = Math.floor(rnd() * b.length);
        b[at] = b[at]! ^ (1 << Math.floor(rnd() * 8));
      }
    } else b = Buffer.concat([valid.subarray(0, Math.floor(rnd() * valid.length)), randomBytes(Math.floor(rnd() * 40))]);
    u.send(b);
    sent++;
    if (i % 200 === 199) await pause(5); // bounded rate: stay a test, not a flood
  }
  await pause(500);
  const answered = u.replies();
  await u.close();
  return { sent, answered };
}

async function main(): Promise<void> {
  const [cmd, a, b, c, d] = process.argv.slice(2);
  let result: unknown;
  if (cmd === 'login-foreign') result = await loginForeign(a!, b!);
  else if (cmd === 'wrong-key') result = await wrongKey(a!, Number(b));
  else if (cmd === 'fuzz') result = await fuzz(a!, Number(b), Number(c), Number(d));
  else throw new Error(`unknown command ${cmd}`);
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(describeError(err) + '\n');
    process.exit(1);
  },
);
