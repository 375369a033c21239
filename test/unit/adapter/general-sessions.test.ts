// Unit tests for the general-node agent's JS data path (src/adapter/general-node.ts JsSessions) in NAT traversal:
// the path keepalive it builds and seals itself (no TUN), promote to the newest path's session, setEndpoint.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { JsSessions } from '../../../src/adapter/general-node.js';
import { decodeIp, decodeUdp } from '../../../src/adapter/lan/ip.js';
import type { SessionKeys } from '../../../src/crypto/handshake.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { HEADER_OFFSETS } from '../../../src/protocol/header.js';

const A = { vip4: '100.64.0.6', vip6: 'fd00::6' };
const B = { vip4: '100.64.0.7', vip6: 'fd00::7' };

/** Both ends' keys for one path (A initiated it). */
function pathKeys(pathId: bigint): { a: SessionKeys; b: SessionKeys } {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  const common = { pathId, peerCertDer: Buffer.alloc(0), establishedAt: Date.now() };
  return { a: { ...common, send: k1, recv: k2, initiator: true, peerNodeId: 2 }, b: { ...common, send: k2, recv: k1, initiator: false, peerNodeId: 1 } };
}

function end(own: { vip4: string | null; vip6: string | null }): { s: JsSessions; out: { d: Buffer; to: Endpoint }[] } {
  const out: { d: Buffer; to: Endpoint }[] = [];
  return { s: new JsSessions((d, to) => out.push({ d, to }), () => own), out };
}

const EP_B: Endpoint = { address: '198.18.0.12', port: 40000 };
const EP_A: Endpoint = { address: '198.18.0.11', port: 40001 };

describe('general-node JS sessions: NAT traversal hooks', () => {
  it('a path keepalive is a checksummed 1-byte UDP packet from our vip4 to the peer\'s port 9, sealed for the peer', async () => {
    const a = end(A);
    const b = end(B);
    const k = pathKeys(0x1111n);
    await a.s.install({ slot: 1, ...B, endpoint: EP_B }, k.a);
    await b.s.install({ slot: 1, ...A, endpoint: EP_A }, k.b);
    a.out.length = 0;
    a.s.keepalive(B);
    assert.equal(a.out.length, 1);
    assert.deepEqual(a.out[0]!.to, EP_B);
    const ip = b.s.open(a.out[0]!.d);
    assert.ok(ip, 'the keepalive opens at the peer as an IP packet');
    const pkt = decodeIp(ip);
    assert.equal(pkt.src, A.vip4);
    assert.equal(pkt.dst, B.vip4);
    const udp = decodeUdp(pkt); // verifies the checksum
    assert.equal(udp.dstPort, 9);
    assert.deepEqual([...udp.payload], [0]);
    assert.equal(a.s.counters.get('tx.path-keepalive'), 1);
  });

  it('an IPv6-only general node keeps paths alive over IPv6; without a session nothing is sent or queued', async () => {
    const a = end({ vip4: null, vip6: A.vip6 });
    a.s.keepalive(B);
    assert.equal(a.out.length, 0, 'no session: no keepalive (and nothing queued for later)');
    const k = pathKeys(0x2222n);
    await a.s.install({ slot: 1, ...B, endpoint: EP_B }, k.a);
    a.out.length = 0;
    a.s.keepalive(B);
    const b = end(B);
    await b.s.install({ slot: 1, ...A, endpoint: EP_A }, k.b);
    const pkt = decodeIp(b.s.open(a.out[0]!.d)!);
    assert.equal(pkt.src, A.vip6);
    assert.equal(pkt.dst, B.vip6);
    assert.equal(decodeUdp(pkt).dstPort, 9);
  });

  it('a newer path\'s session sends at once; promote switches to a responder\'s newest session without waiting', async () => {
    const b = end(B);
    const first = pathKeys(0x3333n);
    const second = pathKeys(0x4444n);
    const a1 = end(A);
    const a2 = end(A);
    await a1.s.install({ slot: 1, ...B, endpoint: EP_B }, first.a);
    await a2.s.install({ slot: 1, ...B, endpoint: EP_B }, second.a);
    // b is the responder of both paths: the second replaces the first.
    await b.s.install({ slot: 7, ...A, endpoint: EP_A }, first.b);
    await b.s.install({ slot: 7, ...A, endpoint: EP_A }, second.b);
    b.s.sendPacket(A.vip4, Buffer.from('hello'));
    const sent = b.out.at(-1)!;
    assert.equal(sent.d.readBigUInt64BE(HEADER_OFFSETS.id), 0x4444n, 'sealed on the newer path');
    assert.equal(a2.s.open(sent.d)?.toString(), 'hello');
    assert.equal(a1.s.open(sent.d), null, 'the old path\'s session cannot open it');
    // A rekey of the same path where b responds: b keeps sending on the old session until a speaks under the new
    // one — or until promote says the new one is in use.
    const rekey = pathKeys(0x4444n);
    const a3 = end(A);
    await a3.s.install({ slot: 1, ...B, endpoint: EP_B }, rekey.a);
    await b.s.install({ slot: 7, ...A, endpoint: EP_A }, rekey.b);
    b.s.sendPacket(A.vip4, Buffer.from('old'));
    assert.equal(a2.s.open(b.out.at(-1)!.d)?.toString(), 'old', 'still the previous session before promote');
    b.s.promote(7);
    b.s.sendPacket(A.vip4, Buffer.from('new'));
    assert.equal(a3.s.open(b.out.at(-1)!.d)?.toString(), 'new', 'the newest session after promote');
    const moved: Endpoint = { address: '198.18.0.99', port: 5 };
    b.s.setEndpoint(7, moved);
    b.s.sendPacket(A.vip4, Buffer.from('again'));
    assert.deepEqual(b.out.at(-1)!.to, moved);
    assert.equal(a3.s.open(b.out.at(-1)!.d)?.toString(), 'again');
  });
});
