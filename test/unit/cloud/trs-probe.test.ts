// RelayProbe (`node netcheck` timing a TRS with no relayed path) over real UDP sockets on loopback: the probe codec,
// tickets issued from the store's live TRS rows, and each abuse claim of docs/SECURITY.md attacked: a forged or
// unticketed probe gets nothing, an over-rate flood is dropped, the answer is never larger than the probe, replays and
// expired or far-future tickets are dropped before the TRS answers, malformed input is a typed error and counted.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import {
  newTicketId,
  openRelayProbe,
  openRelayProbeAck,
  RELAY_PROBE_ACK_MAX_LEN,
  RELAY_PROBE_MIN_LEN,
  RELAY_TICKET_MAX_MS,
  RelayProbeKeys,
  sealRelayProbe,
  ticketSecret,
} from '../../../src/channel/relay-probe.js';
import { relayTickets } from '../../../src/cloud/trs/client.js';
import { RELAY_HEARTBEAT_MS, RELAY_LIVE_INTERVALS } from '../../../src/cloud/trs/registry.js';
import { TrsService } from '../../../src/cloud/trs/service.js';
import { TrsTransport } from '../../../src/cloud/trs/transport.js';
import { MessageType } from '../../../src/protocol/constants.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { RelayProber } from '../../../src/node/relay-probe.js';
import { openStore } from '../../../src/store/index.js';
import { CryptoError, DecodeError } from '../../../src/util/errors.js';
import { silentLogger } from '../../../src/util/log.js';

/** A UDP socket that collects what it receives. */
async function peer(host = '127.0.0.1'): Promise<{ sock: dgram.Socket; got: Buffer[]; port: number; send: (d: Buffer, to: Endpoint) => void; close: () => void }> {
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const got: Buffer[] = [];
  sock.on('message', (m) => got.push(m));
  await new Promise<void>((r) => sock.bind(0, host, () => r()));
  return { sock, got, port: sock.address().port, send: (d, to) => sock.send(d, to.port, to.address), close: () => sock.close() };
}

const settle = (ms = 150): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('RelayProbe codec', () => {
  test('seal/open both ways; padded to the minimum; the largest ack fits in the smallest probe', () => {
    const id = newTicketId(Date.now());
    const keys = new RelayProbeKeys(randomBytes(32), id);
    const probe = sealRelayProbe(keys, { nodeId: 7, seq: 5n, now: 1_700_000_000_000, txid: 9 });
    assert.equal(probe.length, RELAY_PROBE_MIN_LEN);
    assert.deepEqual(openRelayProbe(probe, keys), { ticketId: id, txid: 9, seq: 5n, nodeId: 7, timestamp: 1_700_000_000_000 });
    assert.ok(RELAY_PROBE_ACK_MAX_LEN <= RELAY_PROBE_MIN_LEN);
    // Other keys (another ticket, or another TRS's secret for the same ticket id): a typed CryptoError.
    assert.throws(() => openRelayProbe(probe, new RelayProbeKeys(randomBytes(32), id)), CryptoError);
    // A truncated or re-typed frame: a typed DecodeError.
    assert.throws(() => openRelayProbe(probe.subarray(0, 40), keys), DecodeError);
    const retyped = Buffer.from(probe);
    retyped[1] = MessageType.RelayBind;
    assert.throws(() => openRelayProbe(retyped, keys), DecodeError);
  });

  test('a ticket secret depends on the relay key, the ticket id and the TRS id', () => {
    const k = randomBytes(32);
    const id = newTicketId(Date.now());
    const s = ticketSecret(k, id, 'trs-a');
    assert.equal(s.length, 32);
    assert.ok(s.equals(ticketSecret(k, id, 'trs-a')));
    assert.ok(!s.equals(ticketSecret(k, id, 'trs-b')));
    assert.ok(!s.equals(ticketSecret(k, id + 1n, 'trs-a')));
    assert.ok(!s.equals(ticketSecret(randomBytes(32), id, 'trs-a')));
  });

  test('tickets are issued for live TRS rows only', async () => {
    const store = await openStore(':memory:');
    try {
      const now = Date.now();
      const relayKey = randomBytes(32);
      await store.upsertRelayServer({ id: 'trs-live', endpoints: [{ address: '192.0.2.1', port: 4503 }], load: 0, startedAt: now, heartbeatAt: now });
      await store.upsertRelayServer({ id: 'trs-dead', endpoints: [{ address: '192.0.2.2', port: 4503 }], load: 0, startedAt: now, heartbeatAt: now - RELAY_HEARTBEAT_MS * (RELAY_LIVE_INTERVALS + 1) });
      const t = await relayTickets({ store, relayKey, now: () => now });
      assert.deepEqual(t.map((x) => x.relayId), ['trs-live']);
      assert.ok(t[0]!.secret.equals(ticketSecret(relayKey, t[0]!.ticketId, 'trs-live')));
      assert.ok(Number(t[0]!.ticketId >> 32n) * 1000 > now);
    } finally {
      await store.close();
    }
  });
});

describe('TRS answers RelayProbe on loopback', () => {
  const relayKey = randomBytes(32);
  let service: TrsService;
  let transport: TrsTransport;
  let trs: Endpoint;
  /** A ticket as the NMS issues it for this TRS. */
  const ticket = (now = Date.now()): RelayProbeKeys => {
    const id = newTicketId(now);
    return new RelayProbeKeys(ticketSecret(relayKey, id, service.id), id);
  };
  let seq = 1n;
  const probe = (keys: RelayProbeKeys, txid = 1, now = Date.now()): Buffer => sealRelayProbe(keys, { nodeId: 7, seq: seq++, now, txid });

  before(async () => {
    service = new TrsService({ id: `trs-${randomBytes(4).toString('hex')}`, probeSourceRate: { perSec: 2, burst: 6 } }, { relayKey, logger: silentLogger, send: (d, p, a) => transport.send(d, p, a) });
    transport = new TrsTransport({ host: '::', port: 0 }, service, silentLogger);
    trs = { address: '127.0.0.1', port: (await transport.start()).port };
  });
  after(async () => {
    await transport.stop();
    service.stop();
  });

  test('a ticketed probe is answered, sealed, no larger than the probe, and counted', async () => {
    const p = await peer();
    try {
      const keys = ticket();
      const req = probe(keys, 42);
      const ok0 = service.counters.get('probe.ok');
      p.send(req, trs);
      await settle();
      assert.equal(p.got.length, 1);
      const ack = p.got[0]!;
      assert.ok(ack.length <= req.length, `${ack.length} > ${req.length}`);
      const opened = openRelayProbeAck(ack, keys);
      assert.equal(opened.txid, 42);
      assert.deepEqual(opened.observed, { address: '127.0.0.1', port: p.port });
      assert.equal(service.counters.get('probe.ok'), ok0 + 1);
      assert.equal(service.metrics()['probe.ok'], ok0 + 1);
      // Over IPv6 the observed endpoint is longer: still no larger than the probe.
      const p6 = await peer('::1');
      try {
        const req6 = probe(keys, 43);
        p6.send(req6, { address: '::1', port: trs.port });
        await settle();
        assert.equal(p6.got.length, 1);
        assert.ok(p6.got[0]!.length <= req6.length);
        assert.deepEqual(openRelayProbeAck(p6.got[0]!, keys).observed, { address: '::1', port: p6.port });
      } finally {
        p6.close();
      }
    } finally {
      p.close();
    }
  });

  test('forged, unticketed, replayed, expired, far-future, short and long probes get nothing', async () => {
    const p = await peer('127.0.0.2'); // budgets are per source address: each test has its own
    try {
      const d0 = { ...service.dropped };
      const keys = ticket();
      const good = probe(keys);
      // Forged: a key the attacker made up for a well-formed ticket id.
      p.send(sealRelayProbe(new RelayProbeKeys(randomBytes(32), keys.ticketId), { nodeId: 7, seq: seq++, now: Date.now(), txid: 1 }), trs);
      // A ticket for another TRS (same relay key, another id): does not open here.
      const otherId = newTicketId(Date.now());
      p.send(sealRelayProbe(new RelayProbeKeys(ticketSecret(relayKey, otherId, 'trs-other'), otherId), { nodeId: 7, seq: seq++, now: Date.now(), txid: 1 }), trs);
      // A flipped ciphertext bit.
      const flipped = Buffer.from(good);
      flipped[flipped.length - 1]! ^= 1;
      p.send(flipped, trs);
      // Expired ticket, and one ending further ahead than RELAY_TICKET_MAX_MS (both dropped before any crypto).
      p.send(probe(ticket(Date.now() - 600_000)), trs);
      p.send(probe(ticket(Date.now() + RELAY_TICKET_MAX_MS)), trs);
      // Too short to be answered size-neutrally, and too long to be worth opening.
      const short = Buffer.from(good.subarray(0, RELAY_PROBE_MIN_LEN - 1));
      short.writeUInt16BE(short.length - 28, 24); // a consistent header: only the size rule refuses it
      p.send(short, trs);
      const long = Buffer.concat([good, Buffer.alloc(200)]);
      long.writeUInt16BE(long.length - 28, 24);
      p.send(long, trs);
      await settle();
      assert.equal(p.got.length, 0, 'nothing answered');
      assert.equal(service.dropped.badProbe - d0.badProbe, 5, JSON.stringify(service.dropped));
      assert.equal(service.dropped.staleProbe - d0.staleProbe, 2);
      // The genuine probe is answered once; the same datagram replayed (from another source, too) is not.
      p.send(good, trs);
      await settle();
      assert.equal(p.got.length, 1);
      const q = await peer('127.0.0.3');
      try {
        q.send(good, trs);
        p.send(good, trs);
        await settle();
        assert.equal(q.got.length, 0);
        assert.equal(p.got.length, 1);
        assert.equal(service.dropped.replayedProbe - d0.replayedProbe, 2);
      } finally {
        q.close();
      }
    } finally {
      p.close();
    }
  });

  test('a flood from one source is dropped past its budget; another source is still answered', async () => {
    const flood = await peer('127.0.0.4');
    const other = await peer('127.0.0.5');
    try {
      const keys = ticket();
      const r0 = service.dropped.probeRateLimited;
      for (let i = 0; i < 50; i++) flood.send(probe(keys, 100 + i), trs);
      await settle(300);
      assert.ok(flood.got.length <= 7, `answered ${flood.got.length} of 50 (burst 6)`);
      assert.ok(flood.got.length >= 1);
      assert.ok(service.dropped.probeRateLimited - r0 >= 43, JSON.stringify(service.dropped));
      other.send(probe(ticket(), 7), trs);
      await settle();
      assert.equal(other.got.length, 1, 'the flood spends its own source budget only');
    } finally {
      flood.close();
      other.close();
    }
  });

  test('the node-side prober times every endpoint and reports the silent one with an error', async () => {
    const p = dgram.createSocket('udp4');
    await new Promise<void>((r) => p.bind(0, '127.0.0.6', () => r()));
    const prober = new RelayProber({ nodeId: () => 9, send: (d, to) => p.send(d, to.port, to.address) });
    p.on('message', (m) => prober.onDatagram(m));
    try {
      const silent = await peer(); // a socket that never answers
      const keys = ticket();
      const probeOne = (prober as unknown as { probe(k: RelayProbeKeys, id: string, e: Endpoint): Promise<{ rttMs: number | null; error: string | null }> }).probe.bind(prober);
      const [ok, dead] = await Promise.all([probeOne(keys, service.id, trs), probeOne(keys, service.id, { address: '127.0.0.1', port: silent.port })]);
      silent.close();
      assert.ok(ok.rttMs !== null && ok.error === null, JSON.stringify(ok));
      assert.equal(dead.rttMs, null);
      assert.match(dead.error ?? '', /no answer/);
      // An ack that does not open under our ticket is refused, never resolves anything.
      assert.equal(prober.onDatagram(Buffer.concat([Buffer.from([1, MessageType.RelayProbeAck]), Buffer.alloc(60)])), true);
      assert.equal(prober.counters.get('ack.unsolicited'), 1);
    } finally {
      p.close();
    }
  });
});
