// DataPlane.install with a `reply` (the responder's TunnelResponse): the engine's worker sends it from the data
// socket right after it installed the session, once; an install without one sends nothing. A real engine with a
// packet pair for a device and a plain UDP socket for the peer; no root needed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { loadNativeAddon } from '../../../src/native/addon.js';
import { DataPlane } from '../../../src/node/dataplane/dataplane.js';
import { silentLogger } from '../../../src/util/log.js';

const skip = loadNativeAddon() ? false : 'native addon not built';

test('install() sends its reply from the engine\'s socket once the session is in; without one it sends nothing', { skip }, async () => {
  const dp = await DataPlane.open({ device: { kind: 'pair', mtu: 1500 }, port: 0 }, silentLogger);
  const peer = dgram.createSocket('udp4');
  const got: { msg: Buffer; port: number }[] = [];
  peer.on('message', (msg, rinfo) => got.push({ msg, port: rinfo.port }));
  await new Promise<void>((r) => peer.bind(0, '127.0.0.1', () => r()));
  const to = { address: '127.0.0.1', port: peer.address().port };
  const keys = (pathId: bigint) => ({ pathId, send: randomBytes(32), recv: randomBytes(32), initiator: false, peerNodeId: 2, peerCertDer: Buffer.alloc(0), establishedAt: Date.now() });
  try {
    const reply = Buffer.from('tunnel-response-stand-in');
    await dp.install({ slot: 1, vip4: '100.64.0.2', vip6: 'fd00::2', endpoint: to }, keys(0x77n), false, { datagram: reply, to });
    for (let i = 0; i < 100 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got.length, 1);
    assert.deepEqual(got[0]!.msg, reply);
    assert.equal(got[0]!.port, dp.localPort, 'sent from the data socket, where the initiator sent its request');
    await dp.install({ slot: 2, vip4: '100.64.0.3', vip6: 'fd00::3', endpoint: to }, keys(0x78n));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(got.length, 1, 'exactly once, and nothing for an install without a reply');
  } finally {
    peer.close();
    await dp.close();
  }
});
