// Unit tests for the message catalogue: every MessageType round-trips as a body and as a whole plain frame.
// Also cross-field rules, truncations and seeded fuzzing of whole frames (decode or DecodeError, nothing else).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DecodeError } from '../../../src/util/errors.js';
import { HEADER_LEN, MessageType, PathType, Status } from '../../../src/protocol/constants.js';
import { encodeFrame } from '../../../src/protocol/frame.js';
import {
  type BodyMap,
  type DirectionRequest,
  type LoginResponse,
  type Message,
  type RouteDirection,
  SCHEMAS,
  decodeBody,
  decodeDirectoryEntry,
  decodeGeneralNodeInfo,
  decodeMessage,
  decodePeerReport,
  encodeBody,
  encodeDirectoryEntry,
  encodeGeneralNodeInfo,
  encodeRelayTicket,
  decodeRelayTicket,
  encodeMessage,
  encodePeerReport,
  encodeRegistrationHead,
  encodeRegistrationResponse,
} from '../../../src/protocol/messages.js';
import { encodeTlv, readTlvs } from '../../../src/protocol/tlv.js';
import { prng } from '../../harness/prng.js';

const SEED = Number(process.env['CYPHONIC_SEED'] ?? 0xc0de);

const key = (n: number): Buffer => Buffer.alloc(32, n);
const cert = Buffer.from('3082010a0282010100c0ffee', 'hex');

const routeDirection: RouteDirection = {
  pathId: 0xfedcba9876543210n,
  pathType: PathType.Relayed,
  initiator: true,
  peerNodeId: 42,
  peerName: 'beta',
  peerFqdn: 'beta.corp.cyphonic',
  peerVip4: '198.18.0.42',
  peerVip6: 'fd00:cafe::2a',
  peerEndpoints: [
    { address: '203.0.113.7', port: 30000 },
    { address: '2001:db8::7', port: 30000 },
  ],
  relay: { address: '192.0.2.50', port: 4503 },
  tunnelKey: key(1),
  tempKey: key(2),
  peerCertificate: cert,
};

/** One valid body per message type; the test below checks this covers the whole enum. */
const FIXTURES: { [K in MessageType]: BodyMap[K] } = {
  [MessageType.EnrollRequest]: { token: 'tok_9f8e7d6c', csr: Buffer.from('3082csr', 'utf8') },
  [MessageType.EnrollResponse]: {
    nodeId: 7,
    name: 'alpha',
    fqdn: 'alpha.corp.cyphonic',
    certificate: cert,
    chain: [Buffer.from('intermediate'), Buffer.from('root')],
  },
  [MessageType.LoginRequest]: { clientVersion: 1 },
  [MessageType.LoginResponse]: {
    nodeId: 7,
    name: 'alpha',
    fqdn: 'alpha.corp.cyphonic',
    domain: 'corp.cyphonic',
    vip4: '198.18.0.7',
    vip6: 'fd00:cafe::7',
    commonKey: key(9),
    commonKeyExpiresAt: 1_900_000_000_000n,
    nmsEndpoints: [{ address: '192.0.2.10', port: 4502 }],
  },
  [MessageType.InfoRequest]: {},
  [MessageType.InfoResponse]: {
    generalNodes: [
      encodeGeneralNodeInfo({ name: 'printer', mac: Buffer.from('0200000000aa', 'hex'), vip4: '198.18.1.1', fqdn: 'printer.corp.cyphonic' }),
    ],
  },
  [MessageType.GeneralEnrollRequest]: { name: 'printer', csr: Buffer.from('csr-der') },
  [MessageType.RenewRequest]: { csr: Buffer.from('csr-der') },
  [MessageType.RegistrationRequest]: {
    endpoints: [
      { address: '10.0.0.5', port: 30000 },
      { address: 'fe80::5', port: 30000 },
    ],
    reRegistration: false,
  },
  [MessageType.RegistrationResponse]: {
    nodeId: 7,
    vip4: '198.18.0.7',
    vip6: 'fd00:cafe::7',
    fqdn: 'alpha.corp.cyphonic',
    observed: { address: '203.0.113.9', port: 61000 },
    nat: true,
    keepaliveSec: 5,
  },
  [MessageType.Keepalive]: { peers: [encodePeerReport({ peerNodeId: 7, pathType: 2, rttMs: 12, txBytes: 1n << 40n, rxBytes: 9n })] },
  [MessageType.KeepaliveAck]: { observed: { address: '2001:db8::9', port: 61000 } },
  [MessageType.DirectionRequest]: { targetFqdn: 'beta.corp.cyphonic' },
  [MessageType.RouteDirectionResponder]: { ...routeDirection, initiator: false },
  [MessageType.RouteConfirmation]: { pathId: 99n, accepted: true },
  [MessageType.RouteDirectionInitiator]: routeDirection,
  [MessageType.RelayRequest]: { pathId: 99n, nodeA: 7, nodeB: 42, tempKey: key(5), expiresAt: 1_900_000_000_000n },
  [MessageType.RelayResponse]: {
    pathId: 99n,
    relay: [
      { address: '192.0.2.50', port: 4503 },
      { address: '2001:db8::50', port: 4503 },
    ],
    relayId: 'trs-5f3a9c',
  },
  [MessageType.RelayBind]: { nodeId: 7, timestamp: 1_700_000_000_789n },
  [MessageType.RelayRevoke]: { nodeIds: [7, 42] },
  [MessageType.RelayTicketRequest]: {},
  [MessageType.RelayTicketResponse]: {
    tickets: [encodeRelayTicket({ relayId: 'trs-5f3a9c', relay: [{ address: '192.0.2.50', port: 4503 }], ticketId: (1_900_000_000n << 32n) | 77n, secret: key(6) })],
  },
  [MessageType.RelayProbe]: { nodeId: 7, timestamp: 1_700_000_000_800n, pad: Buffer.alloc(27) },
  [MessageType.RelayProbeAck]: { timestamp: 1_700_000_000_801n, observed: { address: '2001:db8::9', port: 61000 } },
  [MessageType.RelayBindAck]: { nodeId: 7, timestamp: 1_700_000_000_790n, observed: { address: '203.0.113.9', port: 61000 }, peerBound: false },
  [MessageType.TunnelRequest]: {
    pathId: 99n,
    nodeId: 7,
    ephemeral: key(3),
    timestamp: 1_700_000_000_123n,
    certificate: cert,
    signature: Buffer.alloc(64, 0x5a),
    chain: [cert],
  },
  [MessageType.TunnelResponse]: {
    pathId: 99n,
    nodeId: 42,
    ephemeral: key(4),
    timestamp: 1_700_000_000_456n,
    certificate: cert,
    signature: Buffer.alloc(256, 0x5b),
    chain: [],
  },
  [MessageType.EndpointUpdate]: { nodeId: 7, timestamp: 1_700_000_000_999n, endpoints: [{ address: '10.1.0.10', port: 30000 }, { address: '2001:db8::12', port: 30000 }] },
  [MessageType.EndpointUpdateAck]: { nodeId: 42, acked: 0x18c_0000_0001n, observed: { address: '198.18.0.13', port: 30000 } },
  [MessageType.PathProbe]: Buffer.alloc(16, 1),
  [MessageType.PathProbeAck]: Buffer.alloc(24, 2),
  [MessageType.Capsule]: Buffer.from('opaque capsule bytes'),
  [MessageType.Ack]: {},
  [MessageType.Nack]: { reason: 'node not registered' },
  [MessageType.PolicyUpdate]: { entries: [Buffer.from([1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 42, 2, 0, 1, 1, 3, 0, 4, 105, 99, 109, 112])] },
  [MessageType.DirectoryRequest]: { page: 3 },
  [MessageType.DirectoryPage]: { rev: 'r1|r2', page: 0, pages: 2, entries: [encodeDirectoryEntry({ nodeId: 42, name: 'beta', vip4: '100.64.0.2', vip6: 'fd00::2' })] },
  [MessageType.DirectoryNotice]: { rev: 'r1|r2' },
};

const TYPES = Object.values(MessageType).filter((v): v is MessageType => typeof v === 'number');

function frameFor(type: MessageType, i = 0): Buffer {
  return encodeMessage(
    { type, status: Status.Ok, txid: 1000 + i, seq: BigInt(i) << 16n, id: 7n },
    FIXTURES[type] as never,
  );
}
const FRAMES = TYPES.map((t, i) => frameFor(t, i));

function isDecodeError(err: unknown): boolean {
  return err instanceof DecodeError;
}

test('fixtures and schemas cover every message type', () => {
  assert.equal(TYPES.length, 38);
  for (const t of TYPES) {
    assert.ok(t in FIXTURES, MessageType[t]);
    assert.ok(t in SCHEMAS, MessageType[t]);
  }
});

test('every message type round-trips through encodeBody/decodeBody', () => {
  for (const t of TYPES) {
    const body = encodeBody(t, FIXTURES[t] as never);
    assert.deepEqual(decodeBody(t, body), FIXTURES[t], MessageType[t]);
  }
});

test('every message type round-trips as a whole plain frame', () => {
  TYPES.forEach((t, i) => {
    const m = decodeMessage(FRAMES[i]!);
    assert.equal(m.type, t);
    assert.equal(m.header.type, t);
    assert.equal(m.header.txid, 1000 + i);
    assert.equal(m.header.length, FRAMES[i]!.length - HEADER_LEN);
    assert.deepEqual(m.body, FIXTURES[t], MessageType[t]);
  });
});

test('decodeBody is typed by message type', () => {
  const b = encodeBody(MessageType.LoginResponse, FIXTURES[MessageType.LoginResponse]);
  const r: LoginResponse = decodeBody(MessageType.LoginResponse, b);
  assert.equal(r.commonKey.length, 32);
  const m: Message = decodeMessage(FRAMES[TYPES.indexOf(MessageType.LoginResponse)]!);
  if (m.type === MessageType.LoginResponse) assert.equal(m.body.domain, 'corp.cyphonic');
  else assert.fail('wrong type');
});

test('encoding is deterministic', () => {
  for (const t of TYPES) {
    const copy = structuredClone(FIXTURES[t]) as unknown;
    assert.deepEqual(encodeBody(t, copy as never), encodeBody(t, FIXTURES[t] as never));
  }
});

test('empty bodies encode to zero bytes and ignore unknown tags', () => {
  for (const t of [MessageType.InfoRequest, MessageType.Ack] as const) {
    assert.equal(encodeBody(t, {}).length, 0);
    assert.deepEqual(decodeBody(t, Buffer.from([0x50, 0, 1, 9])), {});
  }
  // A Keepalive without reports (the NAT mapping probe, or a node with no tunnels) is empty too.
  assert.equal(encodeBody(MessageType.Keepalive, {}).length, 0);
  assert.deepEqual(decodeBody(MessageType.Keepalive, Buffer.from([0x50, 0, 1, 9])), { peers: [] });
});

test('PeerReport records round-trip; an unknown path type is refused', () => {
  const r = { peerNodeId: 3, pathType: 3, txBytes: 0n, rxBytes: (1n << 64n) - 1n };
  assert.deepEqual(decodePeerReport(encodePeerReport(r)), r);
  const bad = encodePeerReport({ ...r, pathType: 1 });
  bad[bad.indexOf(2) + 3] = 4;
  assert.throws(() => decodePeerReport(bad), DecodeError);
});

test('Capsule bodies are opaque', () => {
  const raw = Buffer.from([0xff, 0x00, 0x01]);
  assert.equal(encodeBody(MessageType.Capsule, raw), raw);
  const dec = decodeBody(MessageType.Capsule, raw);
  assert.deepEqual(dec, raw);
  assert.throws(() => encodeBody(MessageType.Capsule, Buffer.alloc(65536)), RangeError);
});

test('DirectionRequest needs exactly one target', () => {
  assert.deepEqual(
    decodeBody(MessageType.DirectionRequest, encodeBody(MessageType.DirectionRequest, { targetVip: 'FD00:CAFE::2A' })),
    { targetVip: 'fd00:cafe::2a' },
  );
  assert.deepEqual(
    decodeBody(MessageType.DirectionRequest, encodeBody(MessageType.DirectionRequest, { targetVip: '198.18.0.42' })),
    { targetVip: '198.18.0.42' },
  );
  assert.throws(() => encodeBody(MessageType.DirectionRequest, {}), RangeError);
  assert.throws(
    () => encodeBody(MessageType.DirectionRequest, { targetFqdn: 'a.b', targetVip: '198.18.0.1' }),
    RangeError,
  );
  const schema = SCHEMAS[MessageType.DirectionRequest];
  const both = encodeTlv(schema, { targetFqdn: 'a.b', targetVip: '198.18.0.1' } as DirectionRequest);
  assert.throws(() => decodeBody(MessageType.DirectionRequest, both), isDecodeError);
  assert.throws(() => decodeBody(MessageType.DirectionRequest, Buffer.alloc(0)), isDecodeError);
  // Relay fallback / failover: the optional relayOnly flag and the TRS endpoint to avoid round-trip.
  const relay: DirectionRequest = { targetFqdn: 'b.cyphonic.internal', relayOnly: true, avoidRelay: { address: '2001:db8::10', port: 4503 } };
  assert.deepEqual(decodeBody(MessageType.DirectionRequest, encodeBody(MessageType.DirectionRequest, relay)), relay);
});

test('RouteDirection pathType must be a PathType', () => {
  for (const pathType of [0, 4, 255]) {
    assert.throws(() => encodeBody(MessageType.RouteDirectionInitiator, { ...routeDirection, pathType }), RangeError);
    const raw = encodeTlv(SCHEMAS[MessageType.RouteDirectionInitiator], { ...routeDirection, pathType });
    assert.throws(() => decodeBody(MessageType.RouteDirectionInitiator, raw), isDecodeError);
  }
  const minimal = { ...routeDirection, pathType: PathType.Direct };
  delete minimal.relay;
  delete minimal.tempKey;
  assert.deepEqual(
    decodeBody(MessageType.RouteDirectionResponder, encodeBody(MessageType.RouteDirectionResponder, minimal)),
    minimal,
  );
});

test('relay messages: cross-field rules on encode and decode', () => {
  const rq = FIXTURES[MessageType.RelayRequest];
  const rs = FIXTURES[MessageType.RelayResponse];
  const bad: [MessageType, unknown][] = [
    [MessageType.RelayRequest, { ...rq, nodeB: rq.nodeA }],
    [MessageType.RelayRequest, { ...rq, nodeA: 0 }],
    [MessageType.RelayRequest, { ...rq, pathId: 0n }],
    [MessageType.RelayResponse, { ...rs, relay: [] }],
    [MessageType.RelayResponse, { ...rs, relayId: '' }],
    [MessageType.RelayBind, { nodeId: 0, timestamp: 1n }],
    [MessageType.RelayBindAck, { ...FIXTURES[MessageType.RelayBindAck], nodeId: 0 }],
  ];
  for (const [t, body] of bad) {
    assert.throws(() => encodeBody(t, body as never), RangeError, MessageType[t]);
    const raw = encodeTlv(SCHEMAS[t] as never, body as never);
    assert.throws(() => decodeBody(t, raw), isDecodeError, MessageType[t]);
  }
  assert.throws(() => encodeBody(MessageType.RelayRequest, { ...rq, tempKey: Buffer.alloc(31) }), RangeError);
  assert.throws(() => encodeBody(MessageType.RelayResponse, { ...rs, relayId: 'x'.repeat(65) }), RangeError);
});

test('field limits from the catalogue are enforced', () => {
  const lr = FIXTURES[MessageType.LoginResponse];
  assert.throws(() => encodeBody(MessageType.LoginResponse, { ...lr, commonKey: Buffer.alloc(31) }), RangeError);
  assert.throws(() => encodeBody(MessageType.Nack, { reason: 'x'.repeat(513) }), RangeError);
  const tr = FIXTURES[MessageType.TunnelRequest];
  assert.throws(() => encodeBody(MessageType.TunnelRequest, { ...tr, signature: Buffer.alloc(257) }), RangeError);
  // Decode side: a 257-byte signature crafted by hand.
  const parts = readTlvs(encodeBody(MessageType.TunnelRequest, tr)).map(([tag, v]) =>
    Buffer.concat([Buffer.from([tag, 0, 0]), tag === 6 ? Buffer.alloc(257) : v]),
  );
  for (const p of parts) p.writeUInt16BE(p.length - 3, 1);
  assert.throws(() => decodeBody(MessageType.TunnelRequest, Buffer.concat(parts)), isDecodeError);
});

test('GeneralNodeInfo round-trips', () => {
  const info = { name: 'nas', mac: Buffer.from('020000000001', 'hex'), vip6: 'fd00:cafe::100', fqdn: 'nas.corp.cyphonic' };
  assert.deepEqual(decodeGeneralNodeInfo(encodeGeneralNodeInfo(info)), info);
  assert.throws(() => encodeGeneralNodeInfo({ ...info, mac: Buffer.alloc(5) }), RangeError);
});

test('unknown message type is rejected by decodeBody', () => {
  assert.throws(
    () => decodeBody(0x99 as MessageType, Buffer.alloc(0)),
    (err: unknown) => err instanceof DecodeError && err.code === 'ERR_DECODE_TYPE',
  );
});

test('every truncation of every valid frame is rejected', () => {
  for (const f of FRAMES) {
    for (let n = 0; n < f.length; n++) {
      assert.throws(() => decodeMessage(f.subarray(0, n)), isDecodeError, `${f[1]} cut at ${n}`);
    }
  }
});

test('body truncations with a consistent header are rejected unless only trailing repeated entries go', () => {
  // Re-frame each body prefix with a correct length field: exercises the body decoders on truncated TLVs.
  for (const t of TYPES) {
    if (t === MessageType.Capsule) continue;
    const body = encodeBody(t, FIXTURES[t] as never);
    for (let n = 0; n < body.length; n++) {
      const f = encodeFrame({ type: t, status: 0, txid: 1, seq: 1n, id: 1n }, body.subarray(0, n));
      try {
        const m = decodeMessage(f);
        // Accepted prefixes must still be valid, re-encodable messages.
        assert.deepEqual(decodeBody(t, encodeBody(t, m.body as never)), m.body);
      } catch (err) {
        assert.ok(isDecodeError(err), `${MessageType[t]} cut at ${n}: ${String(err)}`);
      }
    }
  }
});

/** Decoding must either throw DecodeError or give a message that re-encodes to an equal message. */
function checkDecode(buf: Buffer, where: string): boolean {
  let m: Message;
  try {
    m = decodeMessage(buf);
  } catch (err) {
    assert.ok(isDecodeError(err), `${where}: ${err instanceof Error ? err.stack : String(err)}`);
    return false;
  }
  const again = decodeMessage(encodeMessage(m.header, m.body as never));
  // Unknown tags are dropped on re-encode, so only the length may differ.
  assert.deepEqual({ ...again, header: { ...again.header, length: 0 } }, { ...m, header: { ...m.header, length: 0 } }, where);
  return true;
}

test('5000 random buffers decode to a valid message or throw DecodeError', () => {
  const rnd = prng(SEED);
  let decoded = 0;
  for (let i = 0; i < 5000; i++) {
    const len = Math.floor(rnd() * 120);
    const b = Buffer.alloc(HEADER_LEN + len);
    for (let j = 0; j < b.length; j++) b[j] = rnd() < 0.25 ? 0 : Math.floor(rnd() * 256);
    if (rnd() < 0.8) {
      // Valid header so that the body decoders see the random bytes.
      const type = TYPES[Math.floor(rnd() * TYPES.length)]!;
      encodeFrame({ type, status: 0, txid: i, seq: 1n, id: 1n }, b.subarray(HEADER_LEN)).copy(b);
    }
    if (checkDecode(b, `seed ${SEED} iteration ${i}`)) decoded++;
  }
  assert.ok(decoded > 0);
});

test('5000 single-byte/bit mutations of valid frames decode to a valid message or throw DecodeError', () => {
  const rnd = prng(SEED + 1);
  let decoded = 0;
  for (let i = 0; i < 5000; i++) {
    const src = FRAMES[i % FRAMES.length]!;
    const m = Buffer.from(src);
    // Bias toward the body so the TLV decoders are exercised, not only the header checks.
    const pos = rnd() < 0.8 ? HEADER_LEN + Math.floor(rnd() * (m.length - HEADER_LEN)) : Math.floor(rnd() * HEADER_LEN);
    if (pos >= m.length) continue;
    if (rnd() < 0.5) m[pos] = m[pos]! ^ (1 << Math.floor(rnd() * 8));
    else m[pos] = Math.floor(rnd() * 256);
    if (checkDecode(m, `seed ${SEED + 1} iteration ${i}`)) decoded++;
  }
  assert.ok(decoded > 0);
});

test('DirectoryEntry round-trips; a name that is not a DNS label and a page past the end are refused', () => {
  const e = { nodeId: 9, name: 'cam-01', vip4: '100.64.0.9', vip6: 'fd00::9' };
  assert.deepEqual(decodeDirectoryEntry(encodeDirectoryEntry(e)), e);
  for (const name of ['bad name', 'a.b', '-x', 'x-', 'ünï']) {
    assert.throws(() => decodeDirectoryEntry(encodeDirectoryEntry({ ...e, name })), DecodeError, name);
  }
  const page = (p: number, pages: number): Buffer => encodeTlv(SCHEMAS[MessageType.DirectoryPage] as never, { rev: 'r', page: p, pages, entries: [] } as never);
  assert.throws(() => decodeBody(MessageType.DirectoryPage, page(2, 2)), DecodeError);
  assert.throws(() => decodeBody(MessageType.DirectoryPage, page(0, 0)), DecodeError);
  assert.equal(decodeBody(MessageType.DirectoryPage, page(1, 2)).page, 1);
});

test('RelayTicket records: round trip, unknown tags skipped, required fields and sizes enforced', () => {
  const t = { relayId: 'trs-1', relay: [{ address: '192.0.2.50', port: 4503 }, { address: '2001:db8::50', port: 4503 }], ticketId: (1_900_000_000n << 32n) | 5n, secret: Buffer.alloc(32, 9) };
  const enc = encodeRelayTicket(t);
  assert.deepEqual(decodeRelayTicket(enc), t);
  // A newer NMS may add fields: an unknown tag is skipped, as in every TLV body.
  assert.deepEqual(decodeRelayTicket(Buffer.concat([enc, Buffer.from([200, 0, 2, 1, 2])])), t);
  assert.throws(() => encodeRelayTicket({ ...t, relay: [] }), RangeError);
  assert.throws(() => encodeRelayTicket({ ...t, ticketId: 0n }), RangeError);
  // Hand-made records without an endpoint, with a short secret, or truncated: typed DecodeError.
  const noRelay = Buffer.concat([Buffer.from([1, 0, 1]), Buffer.from('x'), Buffer.from([3, 0, 8]), Buffer.alloc(8, 1), Buffer.from([4, 0, 32]), Buffer.alloc(32)]);
  assert.throws(() => decodeRelayTicket(noRelay), (e: unknown) => e instanceof DecodeError && e.code === 'ERR_DECODE_BODY');
  const shortSecret = Buffer.from(enc);
  shortSecret.writeUInt16BE(31, enc.length - 35 + 1);
  assert.throws(() => decodeRelayTicket(shortSecret), DecodeError);
  for (let n = 0; n < enc.length; n++) assert.throws(() => decodeRelayTicket(enc.subarray(0, n)), DecodeError, `truncated to ${n}`);
});

test('RegistrationResponse from a pre-encoded head: byte for byte what encodeBody gives, and as strict', () => {
  const heads = [
    { nodeId: 1, vip4: '100.64.0.1', vip6: 'fd00:bb::1', fqdn: 'a.cyphonic.internal' },
    { nodeId: Number.MAX_SAFE_INTEGER, vip4: '100.127.255.254', vip6: 'fd00:bb:0:0:0:0:ffff:fffe', fqdn: 'x'.repeat(60) + '.example' },
  ];
  const rests = [
    { observed: { address: '198.51.100.7', port: 40000 }, nat: true, keepaliveSec: 5 },
    { observed: { address: '2001:db8::9', port: 1 }, nat: false, keepaliveSec: 120, probePort: 4503 },
    { observed: { address: '203.0.113.1', port: 65535 }, nat: true, keepaliveSec: 5, probePort: 4503, directoryRev: 'p1|d2' },
    { observed: { address: '203.0.113.1', port: 9 }, nat: false, keepaliveSec: 0, directoryRev: '' },
  ];
  for (const h of heads) {
    const head = encodeRegistrationHead(h);
    for (const r of rests) {
      const fast = encodeRegistrationResponse(head, r);
      assert.deepEqual(fast, encodeBody(MessageType.RegistrationResponse, { ...h, ...r }));
      assert.deepEqual(decodeBody(MessageType.RegistrationResponse, fast), decodeBody(MessageType.RegistrationResponse, encodeBody(MessageType.RegistrationResponse, { ...h, ...r })));
    }
  }
  assert.throws(() => encodeRegistrationHead({ ...heads[0]!, vip4: '100.64.0' }), RangeError);
  assert.throws(() => encodeRegistrationHead({ ...heads[0]!, vip6: '100.64.0.1' }), RangeError);
  assert.throws(() => encodeRegistrationHead({ ...heads[0]!, nodeId: -1 }), RangeError);
  const head = encodeRegistrationHead(heads[0]!);
  assert.throws(() => encodeRegistrationResponse(head, { ...rests[0]!, observed: { address: 'nope', port: 1 } }), RangeError);
  assert.throws(() => encodeRegistrationResponse(head, { ...rests[0]!, keepaliveSec: 70_000 }), RangeError);
  assert.throws(() => encodeRegistrationResponse(head, { ...rests[0]!, directoryRev: 'r'.repeat(500) }), RangeError);
});
