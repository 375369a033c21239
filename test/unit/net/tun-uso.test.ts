// UDP segmentation offload on a real TUN (root, a throwaway network namespace): tunOpen asks for USO with the TCP
// offloads and gets it on Linux 6.2+; a UDP GSO send routed into the TUN then arrives as ONE super-frame
// (VIRTIO_NET_HDR_GSO_UDP_L4), and a merged USO packet written by tunWriteMany reaches a local socket as the
// original datagrams. Asked not to (noUso, what an older kernel leaves us), the TUN keeps TSO, the kernel cuts the
// same GSO send before the TUN, and merged writes are not made: the data plane works the same, one datagram per read.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { release } from 'node:os';
import { promisify } from 'node:util';
import { nativeAvailable } from '../../../src/net/tun/native.js';

const execFileAsync = promisify(execFile);

const CHILD = (addonUrl: string): string => `
import { execFileSync } from 'node:child_process';
import { loadNativeAddon } from ${JSON.stringify(addonUrl)};
const n = loadNativeAddon();
const out = {};
for (const noUso of [false, true]) {
  const name = noUso ? 'cyu1' : 'cyu0';
  const net = noUso ? 96 : 97;
  const t = n.tunOpen(name, { vnetHdr: true, noUso });
  execFileSync('ip', ['link', 'set', 'dev', name, 'mtu', '1400', 'up']);
  execFileSync('ip', ['addr', 'add', '10.' + net + '.0.1/24', 'dev', name]);
  n.setNonblocking(t.fd);
  // A UDP GSO send of ten 1000-byte datagrams (and a shorter last) to an address routed into the TUN.
  const s = n.udpOpen(0, false);
  const sizes = [1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 400];
  const buf = Buffer.alloc(10 * 1000, 7);
  const offs = Uint32Array.from(sizes.map((_, i) => i * 1000));
  const lens = Uint32Array.from(sizes);
  const sent = n.udpSendMany(s, buf, offs, lens, 10, Buffer.from([10, net, 0, 2]), 9000, true);
  const frames = [];
  const rb = Buffer.alloc(70000);
  for (let k = 0; k < 50; k++) {
    const len = n.tunRead(t.fd, rb, 200);
    if (len <= 0) break;
    const ip = rb.subarray(10, len);
    if (ip[0] >> 4 !== 4 || ip[9] !== 17 || ip.readUInt16BE(22) !== 9000) continue; // IPv6 noise (RS, MLD)
    frames.push({ gsoType: rb[1], gsoSize: rb.readUInt16LE(4), len: ip.length });
  }
  // Four datagrams from 10.x.0.2:5555 to a socket on 10.x.0.1:9001, written with tunWriteMany (uso as the TUN took it).
  const r = n.udpOpen(9001, false);
  const pk = [];
  for (const size of [900, 900, 900, 300]) {
    const p = Buffer.alloc(28 + size, pk.length + 1);
    p.fill(0, 0, 28);
    p[0] = 0x45; p.writeUInt16BE(p.length, 2); p.writeUInt16BE(0x4000, 6); p[8] = 64; p[9] = 17;
    Buffer.from([10, net, 0, 2, 10, net, 0, 1]).copy(p, 12);
    p.writeUInt16BE(0, 10);
    let sum = 0;
    for (let i = 0; i < 20; i += 2) sum += p.readUInt16BE(i);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    p.writeUInt16BE(0xffff - sum, 10);
    p.writeUInt16BE(5555, 20); p.writeUInt16BE(9001, 22); p.writeUInt16BE(8 + size, 24);
    let u = 10 * 256 + net + 2 + 10 * 256 + net + 1 + 17 + 8 + size; // pseudo header (addresses as 16-bit words)
    for (let i = 20; i < p.length; i += 2) u += i + 1 < p.length ? p.readUInt16BE(i) : p[i] << 8;
    while (u > 0xffff) u = (u & 0xffff) + (u >>> 16);
    p.writeUInt16BE(0xffff - u || 0xffff, 26);
    pk.push(p);
  }
  const wbuf = Buffer.alloc(pk.reduce((a, p) => a + p.length + 10, 0));
  const woffs = new Uint32Array(4), wlens = new Uint32Array(4);
  let at = 0;
  pk.forEach((p, i) => { at += 10; p.copy(wbuf, at); woffs[i] = at; wlens[i] = p.length; at += p.length; });
  const written = n.tunWriteMany(t.fd, wbuf, woffs, wlens, 4, true, Buffer.alloc(70000), t.uso);
  const got = [];
  const gb = Buffer.alloc(64 * 2048), go = new Uint32Array(64), gl = new Uint32Array(64), gm = new Uint8Array(64 * 20);
  for (let k = 0; k < 10 && got.length < 4; k++) {
    const c = n.udpRecvMany(r, gb, 2048, go, gl, gm, 300, undefined, false);
    for (let i = 0; i < c; i++) got.push({ len: gl[i], fill: gb[go[i]] });
  }
  out[noUso ? 'fallback' : 'uso'] = { offload: t.offload, uso: t.uso, sent, frames, written, got };
  n.fdClose(s); n.fdClose(r); n.fdClose(t.fd);
}
console.log(JSON.stringify(out));
`;

const [major, minor] = release().split('.').map(Number) as [number, number];
const kernelUso = major > 6 || (major === 6 && minor >= 2);
const skip =
  process.getuid?.() !== 0 ? 'needs root (network namespace + TUN)' : !existsSync('/dev/net/tun') ? 'no /dev/net/tun' : !nativeAvailable() ? 'native addon unavailable' : false;

describe('USO on a real TUN: super-frames in, merged datagrams out, and the fallback without it', { skip }, () => {
  it('a GSO send arrives as one USO frame, a merged write as the datagrams; without USO, one datagram per read', async (t) => {
    const ns = `cy${randomBytes(4).toString('hex').slice(0, 4)}-uso`;
    try {
      await execFileAsync('ip', ['netns', 'add', ns]);
    } catch (err) {
      t.skip(`cannot create a network namespace: ${(err as Error).message}`);
      return;
    }
    try {
      const addonUrl = new URL('../../../src/native/addon.js', import.meta.url).href;
      const { stdout } = await execFileAsync('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', CHILD(addonUrl)], { timeout: 30_000 });
      type Side = { offload: boolean; uso: boolean; sent: number; frames: { gsoType: number; gsoSize: number; len: number }[]; written: number; got: { len: number; fill: number }[] };
      const r = JSON.parse(stdout.trim().split('\n').pop()!) as { uso: Side; fallback: Side };
      const datagrams = [900, 900, 900, 300].map((size, i) => ({ len: size, fill: i + 1 }));

      assert.equal(r.uso.offload, true);
      assert.equal(r.uso.uso, kernelUso, `USO taken on kernel ${release()}`);
      assert.equal(r.uso.sent, 10);
      if (kernelUso) {
        assert.deepEqual(r.uso.frames, [{ gsoType: 5, gsoSize: 1000, len: 28 + 9400 }], 'one USO super-frame for the whole send');
      }
      assert.equal(r.uso.written, 4);
      assert.deepEqual(r.uso.got, datagrams, 'the merged write reaches the socket as the four datagrams');

      assert.deepEqual({ offload: r.fallback.offload, uso: r.fallback.uso }, { offload: true, uso: false }, 'without USO the TCP offloads stay');
      assert.equal(r.fallback.sent, 10);
      assert.deepEqual(
        r.fallback.frames,
        [...Array(9).fill({ gsoType: 0, gsoSize: 0, len: 1028 }), { gsoType: 0, gsoSize: 0, len: 428 }],
        'the kernel cut the GSO send before the TUN: one datagram per read',
      );
      assert.equal(r.fallback.written, 4);
      assert.deepEqual(r.fallback.got, datagrams, 'written one by one, the same datagrams');
    } finally {
      await execFileAsync('ip', ['netns', 'del', ns]).catch(() => undefined);
    }
  });
});
