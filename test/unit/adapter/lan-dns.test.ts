// The adapter's DNS service on messages: overlay names through the lookup (A/AAAA, NXDOMAIN, NODATA), other names
// relayed to an upstream on loopback (its answer passed back as is), REFUSED without upstreams, SERVFAIL when the
// upstream is silent, FORMERR/NOTIMP for bad queries and nothing for responses.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { LanDns } from '../../../src/adapter/lan-dns.js';
import { decodeResponse, encodeQuery } from '../../../src/net/dns/codec.js';

const lookup = async (fqdn: string): Promise<{ vip4: string; vip6: string } | null> =>
  fqdn === 'alpha.cyphonic.internal' ? { vip4: '100.64.0.1', vip6: 'fd00::1' } : null;

async function upstream(answer: boolean): Promise<{ port: number; close: () => void; seen: () => number }> {
  const sock = dgram.createSocket('udp4');
  let n = 0;
  sock.on('message', (msg, r) => {
    n++;
    if (!answer) return;
    const reply = Buffer.from(msg);
    reply[2] = reply[2]! | 0x80; // QR: a response with no answers
    sock.send(reply, r.port, r.address);
  });
  await new Promise<void>((res) => sock.bind(0, '127.0.0.1', () => res()));
  return { port: sock.address().port, close: () => sock.close(), seen: () => n };
}

test('overlay names answered through the lookup', async () => {
  const dns = new LanDns('cyphonic.internal', []);
  const a = decodeResponse((await dns.answer(encodeQuery('alpha.cyphonic.internal', 'A', 1), lookup))!);
  assert.deepEqual(a.answers.map((x) => x.address), ['100.64.0.1']);
  const aaaa = decodeResponse((await dns.answer(encodeQuery('ALPHA.cyphonic.internal', 'AAAA', 2), lookup))!);
  assert.deepEqual(aaaa.answers.map((x) => x.address), ['fd00::1']);
  const nx = decodeResponse((await dns.answer(encodeQuery('nobody.cyphonic.internal', 'A', 3), lookup))!);
  assert.equal(nx.rcode, 3);
  const nodata = decodeResponse((await dns.answer(encodeQuery('alpha.cyphonic.internal', 16, 4), lookup))!);
  assert.equal(nodata.rcode, 0);
  assert.equal(nodata.answers.length, 0);
  assert.equal(dns.counters.get('overlay.answer'), 2);
});

test('other names go upstream; REFUSED without one, SERVFAIL when it is silent', async () => {
  const up = await upstream(true);
  const silent = await upstream(false);
  try {
    const fwd = new LanDns('cyphonic.internal', [{ address: '127.0.0.1', port: up.port }]);
    const r = decodeResponse((await fwd.answer(encodeQuery('example.org', 'A', 77), lookup))!);
    assert.equal(r.id, 77);
    assert.equal(up.seen(), 1);
    assert.equal(fwd.counters.get('forward.answer'), 1);
    const none = new LanDns('cyphonic.internal', []);
    assert.equal(decodeResponse((await none.answer(encodeQuery('example.org', 'A', 5), lookup))!).rcode, 5);
    const mute = new LanDns('cyphonic.internal', [{ address: '127.0.0.1', port: silent.port }]);
    assert.equal(decodeResponse((await mute.answer(encodeQuery('example.org', 'A', 6), lookup))!).rcode, 2);
    assert.equal(silent.seen(), 1);
  } finally {
    up.close();
    silent.close();
  }
});

test('bad queries: FORMERR, NOTIMP, and no answer to a response or to garbage', async () => {
  const dns = new LanDns('cyphonic.internal', []);
  assert.equal(await dns.answer(Buffer.from('xx'), lookup), null);
  const q = encodeQuery('alpha.cyphonic.internal', 'A', 9);
  const resp = Buffer.from(q);
  resp[2] = resp[2]! | 0x80;
  assert.equal(await dns.answer(resp, lookup), null);
  const loop = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
  assert.equal(decodeResponse((await dns.answer(loop, lookup))!).rcode, 1);
  const notify = Buffer.from(q);
  notify[2] = (4 << 3) | (notify[2]! & 0x87);
  assert.equal(decodeResponse((await dns.answer(notify, lookup))!).rcode, 4);
  assert.ok(dns.counters.get('refused.decode') >= 2);
});
