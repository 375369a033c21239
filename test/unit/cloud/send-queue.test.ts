// The NMS's send queue on real loopback sockets: the datagrams of one event-loop turn leave in one sendmmsg call, each
// to its own destination (IPv4 through a dual-stack socket, IPv6, an IPv4-only socket), bytes intact; what cannot be
// parsed goes the ordinary way; address parsing refuses what is not an address.

import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { addressInto, SendQueue } from '../../../src/cloud/nms/send-queue.js';
import { dgramFd } from '../../../src/cloud/udp-reader.js';
import { loadNativeAddon } from '../../../src/native/addon.js';

const nativeOnly = { skip: loadNativeAddon()?.udpSendEach ? false : 'no addon' };

async function bound(type: 'udp4' | 'udp6', address: string): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type, ipv6Only: type === 'udp6' && address !== '::' });
  await new Promise<void>((r) => s.bind({ address, port: 0 }, () => r()));
  return s;
}

function nextMessage(s: dgram.Socket): Promise<{ msg: Buffer; from: dgram.RemoteInfo }> {
  return new Promise((resolve) => s.once('message', (msg, from) => resolve({ msg, from })));
}

describe('NMS send queue', () => {
  test('addresses: IPv4 (plain and mapped) on both kinds of socket, IPv6; garbage refused', () => {
    const out = new Uint8Array(16);
    assert.ok(addressInto('127.0.0.9', true, out, 0));
    assert.deepEqual([...out], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 9]);
    assert.ok(addressInto('::FFFF:10.1.2.3', true, out, 0));
    assert.deepEqual([...out.subarray(10)], [0xff, 0xff, 10, 1, 2, 3]);
    assert.ok(addressInto('fd00::1:2', true, out, 0));
    assert.deepEqual([...out], [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2]);
    assert.ok(addressInto('192.0.2.1', false, out, 0));
    assert.deepEqual([...out.subarray(0, 4)], [192, 0, 2, 1]);
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '1.2.3.256', '1..2.3', '1.2.3.4 ', '64:ff9b::1.2.3.4', 'fe80::1%eth0', 'x', '::1::2']) {
      assert.equal(addressInto(bad, true, out, 0), false, bad);
    }
    assert.equal(addressInto('::1', false, out, 0), false, 'IPv6 on an IPv4 socket');
  });

  test('one turn of replies to three destinations leaves in one sendmmsg, bytes intact', nativeOnly, async () => {
    const nms = await bound('udp6', '::');
    const a = await bound('udp4', '127.0.0.1');
    const b = await bound('udp6', '::1');
    const c = await bound('udp4', '127.0.0.1');
    const fallback: unknown[] = [];
    try {
      const q = SendQueue.create(dgramFd(nms), true, (d, p, addr) => fallback.push([d, p, addr]), () => assert.fail('refused'))!;
      assert.ok(q, 'a queue on the dgram socket fd');
      const payloads = [randomBytes(100), randomBytes(1400), randomBytes(1)];
      const got = Promise.all([nextMessage(a), nextMessage(b), nextMessage(c)]);
      q.send(payloads[0]!, a.address().port, '::ffff:127.0.0.1');
      q.send(payloads[1]!, b.address().port, '::1');
      q.send(payloads[2]!, c.address().port, '127.0.0.1');
      q.send(randomBytes(10), 9, 'not an address');
      const [ra, rb, rc] = await got;
      assert.deepEqual(ra.msg, payloads[0]);
      assert.deepEqual(rb.msg, payloads[1]);
      assert.deepEqual(rc.msg, payloads[2]);
      assert.equal(ra.from.port, nms.address().port, 'sent from the NMS socket');
      assert.equal(q.batches, 1, 'one sendmmsg call');
      assert.equal(q.sent, 3);
      assert.equal(fallback.length, 1, 'the unparsable destination went the ordinary way');
    } finally {
      for (const s of [nms, a, b, c]) s.close();
    }
  });

  test('an IPv4-only NMS socket', nativeOnly, async () => {
    const nms = await bound('udp4', '127.0.0.1');
    const a = await bound('udp4', '127.0.0.1');
    try {
      const q = SendQueue.create(dgramFd(nms), false, () => assert.fail('fallback'), () => assert.fail('refused'))!;
      const got = nextMessage(a);
      q.send(Buffer.from('hello'), a.address().port, '127.0.0.1');
      assert.deepEqual((await got).msg, Buffer.from('hello'));
    } finally {
      nms.close();
      a.close();
    }
  });
});
