// Codec and hostile-input tests for the TRS: RelayBind/RelayBindAck helpers round-trip and refuse every mutation,
// and thousands of random or mutated datagrams fed to the TRS service never throw, never get an answer, never reach a stranger.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  RelayBindKeys,
  openRelayBind,
  openRelayBindAck,
  relayBindFresh,
  sealRelayBind,
  sealRelayBindAck,
  RELAY_BIND_MAX_SKEW_MS,
} from '../../../src/channel/relay-bind.js';
import { sealFrame } from '../../../src/channel/sealed.js';
import { SeqCounter } from '../../../src/channel/sequence.js';
import { relayControlKeys } from '../../../src/cloud/trs/control.js';
import { DROP_REASONS, TrsService } from '../../../src/cloud/trs/service.js';
import { HEADER_LEN, MessageType } from '../../../src/protocol/constants.js';
import { encodeFrame } from '../../../src/protocol/frame.js';
import { encodeBody } from '../../../src/protocol/messages.js';
import { CryptoError, DecodeError } from '../../../src/util/errors.js';
import { silentLogger } from '../../../src/util/log.js';
import { prng } from '../../harness/prng.js';

const SEED = Number(process.env['CYPHONIC_SEED'] ?? 0xb1d);
const PATH = 0x0123456789abcdefn;
const TEMP = Buffer.alloc(32, 7);
const NOW = 1_700_000_000_000;

const typed = (err: unknown): boolean => err instanceof DecodeError || err instanceof CryptoError;

function mutate(src: Buffer, rnd: () => number): Buffer {
  const m = Buffer.from(src);
  const n = 1 + Math.floor(rnd() * 3);
  for (let k = 0; k < n; k++) {
    const pos = Math.floor(rnd() * m.length);
    if (rnd() < 0.5) m[pos] = m[pos]! ^ (1 << Math.floor(rnd() * 8));
    else m[pos] = Math.floor(rnd() * 256);
  }
  if (rnd() < 0.1) return m.subarray(0, Math.floor(rnd() * m.length));
  return m;
}

test('RelayBind and RelayBindAck round-trip with the right end keys only', () => {
  const a = new RelayBindKeys(TEMP, 11);
  const b = new RelayBindKeys(TEMP, 22);
  const bind = sealRelayBind(PATH, TEMP, 11, 5n << 16n, NOW, 77);
  assert.equal(bind[1], MessageType.RelayBind);
  assert.deepEqual(openRelayBind(bind, a), { pathId: PATH, txid: 77, seq: 5n << 16n, nodeId: 11, timestamp: NOW });
  assert.deepEqual(openRelayBind(sealRelayBind(PATH, a, 11, 6n, NOW), a).seq, 6n);
  assert.throws(() => openRelayBind(bind, b), (e: unknown) => e instanceof CryptoError && e.code === 'ERR_AEAD');
  assert.throws(() => openRelayBind(bind, new RelayBindKeys(Buffer.alloc(32, 8), 11)), CryptoError);
  assert.throws(() => sealRelayBind(PATH, a, 22, 1n, NOW), RangeError);
  assert.throws(() => new RelayBindKeys(TEMP, 0), RangeError);
  assert.throws(() => new RelayBindKeys(Buffer.alloc(31), 1), CryptoError);

  const ack = sealRelayBindAck(PATH, a, { txid: 77, seq: 9n, now: NOW + 1, observed: { address: '2001:db8::1', port: 40000 }, peerBound: true });
  assert.deepEqual(openRelayBindAck(ack, a), {
    pathId: PATH,
    txid: 77,
    seq: 9n,
    nodeId: 11,
    timestamp: NOW + 1,
    observed: { address: '2001:db8::1', port: 40000 },
    peerBound: true,
  });
  // direction matters: a bind is not an ack and the ack key does not open binds
  assert.throws(() => openRelayBindAck(bind, a), (e: unknown) => e instanceof DecodeError && e.code === 'ERR_DECODE_TYPE');
  const ackAsBind = Buffer.from(ack);
  ackAsBind[1] = MessageType.RelayBind;
  assert.throws(() => openRelayBind(ackAsBind, a), CryptoError);

  assert.ok(relayBindFresh(NOW + RELAY_BIND_MAX_SKEW_MS, NOW));
  assert.ok(relayBindFresh(NOW - RELAY_BIND_MAX_SKEW_MS, NOW));
  assert.ok(!relayBindFresh(NOW + RELAY_BIND_MAX_SKEW_MS + 1, NOW));
});

test('5000 random and 5000 mutated binds/acks: open only the originals, otherwise a typed error', () => {
  const rnd = prng(SEED);
  const keys = new RelayBindKeys(TEMP, 11);
  const bind = sealRelayBind(PATH, keys, 11, 1n, NOW, 3);
  const ack = sealRelayBindAck(PATH, keys, { txid: 3, seq: 2n, now: NOW, observed: { address: '198.51.100.9', port: 9 }, peerBound: false });
  let refused = 0;
  for (let i = 0; i < 5000; i++) {
    const len = Math.floor(rnd() * 120);
    const b = randomBytes(HEADER_LEN + len);
    if (rnd() < 0.7) {
      const type = rnd() < 0.5 ? MessageType.RelayBind : MessageType.RelayBindAck;
      encodeFrame({ type, status: 0, txid: i, seq: BigInt(i), id: PATH }, b.subarray(HEADER_LEN)).copy(b);
    }
    for (const open of [openRelayBind, openRelayBindAck]) {
      assert.throws(() => open(b, keys), typed, `seed ${SEED} random ${i}`);
      refused++;
    }
  }
  for (let i = 0; i < 5000; i++) {
    const src = i % 2 ? bind : ack;
    const m = mutate(src, rnd);
    const open = i % 2 ? openRelayBind : openRelayBindAck;
    try {
      open(m, keys);
      assert.ok(m.equals(src), `seed ${SEED} mutation ${i} opened`);
    } catch (err) {
      assert.ok(typed(err), `seed ${SEED} mutation ${i}: ${String(err)}`);
      refused++;
    }
  }
  assert.ok(refused >= 14_900);
});

test('the TRS service under 10 000 random and mutated datagrams: no throw, no answer, forwards only between its bound ends', () => {
  const rnd = prng(SEED + 1);
  const relayKey = randomBytes(32);
  const sent: { d: Buffer; port: number; address: string }[] = [];
  const svc = new TrsService({ id: 'trs-fuzz', endpoints: [{ address: '192.0.2.1', port: 4503 }] }, { relayKey, logger: silentLogger, send: (d, port, address) => sent.push({ d: Buffer.from(d), port, address }) });
  assert.throws(() => svc.advertise([{ address: 'relay.example', port: 4503 }]), RangeError);
  assert.throws(() => svc.advertise([{ address: '192.0.2.1', port: 0 }]), RangeError);
  assert.deepEqual(svc.advertised, [{ address: '192.0.2.1', port: 4503 }]);
  const A = { address: '::ffff:198.51.100.1', port: 1111 };
  const B = { address: '2001:db8::2', port: 2222 };
  const X = { address: '::ffff:203.0.113.66', port: 6666 };
  const seq = new SeqCounter();
  const ctl = relayControlKeys(relayKey, PATH, 'trs-fuzz');
  const request = sealFrame(ctl.up, { type: MessageType.RelayRequest, txid: 1, seq: seq.next(), id: PATH }, encodeBody(MessageType.RelayRequest, { pathId: PATH, nodeA: 11, nodeB: 22, tempKey: TEMP, expiresAt: BigInt(Date.now() + 60_000) }));
  svc.handle(request, '::ffff:192.0.2.10', 4502);
  assert.equal(sent.length, 1, 'a valid request is answered');
  assert.equal(sent[0]!.d[1], MessageType.RelayResponse);
  const bindA = sealRelayBind(PATH, TEMP, 11, seq.next(), Date.now(), 1);
  const bindB = sealRelayBind(PATH, TEMP, 22, seq.next(), Date.now(), 1);
  svc.handle(bindA, A.address, A.port);
  svc.handle(bindB, B.address, B.port);
  assert.equal(sent.length, 3, 'both binds are acknowledged');
  assert.deepEqual([sent[1]!.address, sent[2]!.address], [A.address, B.address]);
  sent.length = 0;
  const capsule = encodeFrame({ type: MessageType.Capsule, status: 0, txid: 0, seq: 1n, id: PATH }, randomBytes(48));
  const rxBefore = svc.rx;
  const samples = [request, bindA, bindB, capsule];
  const sources = [A, B, X];
  for (let i = 0; i < 10_000; i++) {
    const d = i < 5000 ? randomBytes(Math.floor(rnd() * 100)) : mutate(samples[i % samples.length]!, rnd);
    if (i < 5000 && d.length >= HEADER_LEN && rnd() < 0.5) {
      d[0] = 1;
      d[1] = [0x24, 0x26, 0x30, 0x31, 0x40][i % 5]!;
      d.writeUInt16BE(d.length - HEADER_LEN, 24);
      d.writeUInt16BE(0, 26);
      if (rnd() < 0.5) d.writeBigUInt64BE(PATH, 16);
    }
    const from = sources[Math.floor(rnd() * sources.length)]!;
    assert.doesNotThrow(() => svc.handle(d, from.address, from.port));
  }
  for (const s of sent) {
    assert.ok([MessageType.TunnelRequest, MessageType.TunnelResponse, MessageType.Capsule].includes(s.d[1]!), `sent type 0x${s.d[1]!.toString(16)}`);
    assert.ok((s.address === A.address && s.port === A.port) || (s.address === B.address && s.port === B.port), `sent to ${s.address}`);
  }
  const dropped = DROP_REASONS.reduce((n, r) => n + svc.dropped[r], 0);
  assert.equal(svc.rx - rxBefore, 10_000);
  assert.equal(svc.forwarded, sent.length);
  assert.equal(svc.forwarded + dropped, 10_000, 'every datagram was forwarded or counted as dropped');
  assert.equal(svc.counters.get('internal'), 0);
});
