// Mutation fuzzing of every parser that reads bytes from the network: signaling TLV bodies and frames, DNS queries
// and responses, DHCPv4, DHCPv6, NDP (inside IPv6/ICMPv6), ARP, and the tunnel handshake (whole sealed frames at
// PathHandshake, the decrypted TLV body, and the peer certificate it carries). Each input is a valid seed mutated
// (bit flips, byte overwrites, truncation, extension, splices of two seeds) or plain random bytes. The contract
// checked: a parser returns, or throws a typed CyphonicError (DecodeError, CryptoError, CertificateError); any
// other exception (TypeError, RangeError, …) is a defect, printed with its input, and fails the run (exit 1).
//
//   node dist/bench/fuzz.js [--n 1000000] [--seed 7] [--only dns,dhcp4]
//
// Prints one row per parser: inputs, decoded, typed refusals, defects, inputs/s.

import { parseArgs } from 'node:util';
import { createCsr, createIntermediateCa, createRootCa, generateKeyPair, issueNodeCertificate, toDer } from '../src/crypto/index.js';
import { HandshakeInitiator, HandshakeReplayCache, PathHandshake, preverifyPeerCertificate, type TrustAnchors } from '../src/crypto/handshake.js';
import { decodeArp, encodeArp } from '../src/adapter/lan/arp.js';
import { decodeDhcp4 } from '../src/adapter/lan/dhcpv4.js';
import { decodeDhcp6 } from '../src/adapter/lan/dhcpv6.js';
import { buildIcmpv6, decodeIpv6 } from '../src/adapter/lan/ip.js';
import { decodeNdp } from '../src/adapter/lan/ndp.js';
import { decodeQuery, decodeResponse, encodeQuery, encodeResponse } from '../src/net/dns/codec.js';
import { MessageType } from '../src/protocol/constants.js';
import { decodeMessage, encodeBody, encodeMessage, decodeBody } from '../src/protocol/messages.js';
import { CyphonicError } from '../src/util/errors.js';
import { prng } from '../test/harness/prng.js';
import { mutate, randomBytes } from '../test/unit/adapter/fixtures.js';

type Rnd = () => number;

interface Target {
  name: string;
  seeds: Buffer[];
  parse: (b: Buffer) => unknown;
  /** Inputs per call of the row (a slow parser may take fewer; the row says how many it ran). */
  n?: number;
}

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/** A seed, spliced with another now and then, then mutated as the unit tests' fuzzers do; or plain random bytes. */
function mutated(rnd: Rnd, seeds: Buffer[]): Buffer {
  const base = seeds[Math.floor(rnd() * seeds.length)]!;
  const r0 = rnd();
  if (r0 < 0.05) return randomBytes(rnd, 300);
  if (r0 < 0.12 && seeds.length > 1) {
    const other = seeds[Math.floor(rnd() * seeds.length)]!;
    return mutate(rnd, Buffer.concat([base.subarray(0, Math.floor(rnd() * base.length)), other.subarray(Math.floor(rnd() * other.length))]));
  }
  return mutate(rnd, base);
}

interface Row {
  name: string;
  inputs: number;
  decoded: number;
  refused: number;
  defects: number;
  perSec: number;
}

function run(t: Target, n: number, seed: number): Row {
  const rnd = prng(seed);
  let decoded = 0;
  let refused = 0;
  let defects = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const input = mutated(rnd, t.seeds);
    try {
      t.parse(input);
      decoded++;
    } catch (err) {
      if (err instanceof CyphonicError) refused++;
      else {
        defects++;
        if (defects <= 3) console.error(`DEFECT ${t.name} #${i}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}\n  input ${input.toString('hex')}`);
      }
    }
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return { name: t.name, inputs: n, decoded, refused, defects, perSec: Math.round(n / s) };
}

async function handshakeTargets(): Promise<Target[]> {
  const root = await createRootCa({ commonName: 'fuzz root' });
  const inter = await createIntermediateCa(root, { commonName: 'fuzz as' });
  const anchors: TrustAnchors = { rootsDer: [toDer(root.certPem)], intermediatesDer: [toDer(inter.certPem)], isRevoked: () => false };
  const ident = async (name: string, id: number) => {
    const { privateKeyPem } = await generateKeyPair();
    const c = await issueNodeCertificate(inter, await createCsr(privateKeyPem, name), { name, fqdn: `${name}.cyphonic.internal`, nodeId: id });
    return { nodeId: id, certDer: c.certDer, chainDer: [toDer(inter.certPem)], privateKeyPem };
  };
  const a = await ident('alpha', 11);
  const b = await ident('beta', 12);
  const path = { pathId: 0x1234_5678_9abc_def1n, tunnelKey: Buffer.alloc(32, 7) };
  const initiator = new HandshakeInitiator(a, anchors, path, { nodeId: 12, name: 'beta' });
  const frames = [initiator.request(1n, 1), initiator.request(2n, 2)];
  const responder = new PathHandshake(b, anchors, path, { nodeId: 11, name: 'alpha' }, new HandshakeReplayCache());
  const plain = encodeBody(MessageType.TunnelRequest, {
    pathId: path.pathId, nodeId: 11, ephemeral: Buffer.alloc(32, 9), timestamp: BigInt(Date.now()), certificate: a.certDer, signature: Buffer.alloc(72, 3), chain: [toDer(inter.certPem)],
  });
  return [
    // Whole frames at the responder: header checks, then AES-GCM under the tunnel key (mutations almost never pass).
    { name: 'handshake frame', seeds: frames, parse: (f) => responder.onRequest(f, 3n) },
    // What a peer holding the tunnel key can send: the decrypted body …
    { name: 'handshake body', seeds: [plain], parse: (p) => decodeBody(MessageType.TunnelRequest, p) },
    // … and the certificate inside it, parsed and checked against the CA before any signature work.
    { name: 'peer certificate', seeds: [a.certDer, b.certDer, toDer(inter.certPem)], parse: (c) => preverifyPeerCertificate(anchors, c), n: 200_000 },
  ];
}

function wireTargets(): Target[] {
  const reg = encodeMessage(
    { type: MessageType.RegistrationRequest, status: 0, txid: 7, seq: 99n, id: 5n },
    { endpoints: [{ address: '198.18.0.10', port: 30000 }, { address: '2001:db8::10', port: 30000 }], reRegistration: false },
  );
  const dir = encodeMessage({ type: MessageType.DirectionRequest, status: 0, txid: 8, seq: 100n, id: 5n }, { targetFqdn: 'beta.cyphonic.internal' });
  const nack = encodeMessage({ type: MessageType.Nack, status: 9, txid: 9, seq: 101n, id: 5n }, { reason: 'ERR_NOT_REGISTERED: register first' });
  const upd = encodeMessage({ type: MessageType.EndpointUpdate, status: 0, txid: 0, seq: 102n, id: 77n }, { nodeId: 5, timestamp: 1n, endpoints: [{ address: '10.1.0.10', port: 30000 }] });
  const q = encodeQuery('beta.cyphonic.internal', 'AAAA', 0x1234);
  const qd = decodeQuery(q);
  const resp = encodeResponse(qd, { rcode: 'NOERROR', answers: [{ type: 'AAAA', address: 'fd00:1:2::20', ttl: 5 }] });
  const resp4 = encodeResponse(decodeQuery(encodeQuery('example.com', 'A', 7)), { rcode: 'NOERROR', answers: [{ type: 'A', address: '93.184.216.34', ttl: 60 }] });
  const dhcpHead = Buffer.concat([hex('01 01 06 00 3903f326 0003 0000'), Buffer.alloc(16), hex('525400123456'), Buffer.alloc(10 + 64 + 128), hex('63825363')]);
  const discover = Buffer.concat([dhcpHead, hex('35 01 01  0c 04 706c6331  37 0d 01 1c 02 03 0f 06 77 0c 2c 2f 1a 79 2a  ff')]);
  const request = Buffer.concat([dhcpHead, hex('35 01 03  32 04 6440000a  36 04 64400001  3d 07 01525400123456  ff')]);
  const solicit = hex('01 5f3e21  0001 000e 000100012b6a1c3d525400123456  0008 0002 0000  0006 0006 0017 0018 0027  0003 000c 00123456 00000000 00000000');
  const request6 = hex('03 5f3e22  0001 000e 000100012b6a1c3d525400123456  0002 000a 00030001020000000001  0003 0028 00123456 00000000 00000000 0005 0018 fd123456789a00000000000000000010 00000e10 00001c20');
  const icmp = (src: string, dst: string, type: number, body: string): Buffer => buildIcmpv6({ src, dst, type, code: 0, body: hex(body), hopLimit: 255 });
  const ns = icmp('fe80::5054:ff:fe12:3456', 'ff02::1:ff00:20', 135, '00000000 fd123456789a00000000000000000020 0101525400123456');
  const dad = icmp('::', 'ff02::1:ff00:10', 135, '00000000 fd123456789a00000000000000000010');
  const rs = icmp('fe80::5054:ff:fe12:3456', 'ff02::2', 133, '00000000 0101525400123456');
  const na = icmp('fe80::1', 'fe80::5054:ff:fe12:3456', 136, '60000000 fd123456789a00000000000000000020 0201020000000001');
  const arpReq = encodeArp({ op: 1, senderMac: '52:54:00:12:34:56', senderIp: '100.64.0.10', targetMac: '00:00:00:00:00:00', targetIp: '100.64.0.20' });
  const arpRep = hex('0001 0800 06 04 0002 020000000001 64400014 525400123456 6440000a');
  return [
    { name: 'signaling frame (TLV)', seeds: [reg, dir, nack, upd], parse: (b) => decodeMessage(b) },
    { name: 'DNS query', seeds: [q, encodeQuery('example.com', 'A', 7)], parse: (b) => decodeQuery(b) },
    { name: 'DNS response', seeds: [resp, resp4], parse: (b) => decodeResponse(b) },
    { name: 'DHCPv4', seeds: [discover, request], parse: (b) => decodeDhcp4(b) },
    { name: 'DHCPv6', seeds: [solicit, request6], parse: (b) => decodeDhcp6(b) },
    { name: 'NDP (IPv6+ICMPv6)', seeds: [ns, dad, rs, na], parse: (b) => decodeNdp(decodeIpv6(b)) },
    { name: 'ARP', seeds: [arpReq, arpRep], parse: (b) => decodeArp(b) },
  ];
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { n: { type: 'string', default: '1000000' }, seed: { type: 'string', default: '7' }, only: { type: 'string' } } });
  const n = Number(values.n);
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(n) || n < 1 || n > 100_000_000) throw new Error('--n: 1..100000000');
  const only = values.only ? new Set(values.only.split(',').map((s) => s.trim().toLowerCase())) : null;
  const targets = [...wireTargets(), ...(await handshakeTargets())].filter((t) => !only || [...only].some((o) => t.name.toLowerCase().includes(o)));
  // Every seed must itself be accepted: a broken seed would fuzz nothing but the first check.
  for (const t of targets) for (const s of t.seeds) t.parse(s);
  console.log(`fuzz: ${n} mutated inputs per parser (certificates: ${Math.min(n, 200_000)}), seed ${seed}`);
  console.log('parser                    inputs      decoded     refused (typed)  defects  inputs/s');
  const rows: Row[] = [];
  for (const [i, t] of targets.entries()) {
    const row = run(t, Math.min(n, t.n ?? n), seed + i);
    rows.push(row);
    console.log(`${row.name.padEnd(24)}  ${String(row.inputs).padStart(9)}  ${String(row.decoded).padStart(10)}  ${String(row.refused).padStart(16)}  ${String(row.defects).padStart(7)}  ${String(row.perSec).padStart(8)}`);
  }
  const defects = rows.reduce((x, r) => x + r.defects, 0);
  console.log(defects === 0 ? 'no defects: every input was parsed or refused with a typed error' : `${defects} DEFECTS (see stderr)`);
  process.exitCode = defects === 0 ? 0 : 1;
}

await main();
