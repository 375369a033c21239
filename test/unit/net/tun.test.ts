// Unit tests for the TUN layer (src/net/tun): the TunDevice contract on MemoryTun, LinuxTun over a FIFO fd,
// option validation, and (root only) a real TUN device inside a throwaway network namespace.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { LinuxTun, openLinuxTun } from '../../../src/net/tun/linux.js';
import { MemoryTun, createMemoryTunPair } from '../../../src/net/tun/memory.js';
import { nativeAvailable, nativeUnavailableReason } from '../../../src/net/tun/native.js';
import { TunError, type TunDevice } from '../../../src/net/tun/tun.js';

const execFileAsync = promisify(execFile);

const isTunError = (code: string) => (err: unknown) => {
  assert.ok(err instanceof TunError, `expected TunError, got ${String(err)}`);
  assert.equal(err.code, code);
  return true;
};

/** The parts of the TunDevice contract every implementation must satisfy once closed. */
function checkClosedContract(dev: TunDevice): void {
  dev.close();
  dev.close(); // idempotent
  assert.throws(() => dev.read(Buffer.alloc(dev.mtu), 0), isTunError('ERR_CLOSED'));
  assert.throws(() => dev.write(Buffer.from([0x45])), isTunError('ERR_CLOSED'));
}

describe('MemoryTun', () => {
  it('reads injected packets in order, copying them', () => {
    const tun = new MemoryTun({ name: 'memx', mtu: 1400 });
    assert.equal(tun.name, 'memx');
    assert.equal(tun.mtu, 1400);
    const p = Buffer.from([0x45, 1, 2, 3]);
    tun.inject(p);
    p[1] = 99; // the device keeps its own copy
    tun.inject(Buffer.from([0x60, 9]));
    const buf = Buffer.alloc(1400);
    assert.equal(tun.read(buf, 100), 4);
    assert.deepEqual(buf.subarray(0, 4), Buffer.from([0x45, 1, 2, 3]));
    assert.equal(tun.read(buf, -1), 2);
    assert.equal(tun.read(buf, 0), 0, 'empty queue: 0 (timeout)');
  });

  it('drops packets that do not fit the read buffer or the queue', () => {
    const tun = new MemoryTun({ queueLimit: 2 });
    assert.equal(tun.inject(Buffer.alloc(100, 1)), true);
    assert.equal(tun.inject(Buffer.alloc(10, 2)), true);
    assert.equal(tun.inject(Buffer.alloc(10, 3)), false);
    const small = Buffer.alloc(50);
    assert.equal(tun.read(small, 0), 0, 'oversize packet dropped, reported as 0');
    assert.equal(tun.read(small, 0), 10);
    assert.equal(small[0], 2);
    assert.equal(tun.dropped, 2);
  });

  it('captures writes, or delivers them to a linked peer', () => {
    const solo = new MemoryTun();
    const pkt = Buffer.from([0x45, 0, 0, 20]);
    solo.write(pkt);
    pkt[0] = 0;
    assert.deepEqual(solo.takeWritten(), [Buffer.from([0x45, 0, 0, 20])]);
    assert.deepEqual(solo.takeWritten(), []);

    const [a, b] = createMemoryTunPair({ mtu: 1280 });
    assert.notEqual(a.name, b.name);
    a.write(Buffer.from('from-a'));
    b.write(Buffer.from('from-b'));
    const buf = Buffer.alloc(1280);
    assert.equal(buf.toString('utf8', 0, b.read(buf, 0)), 'from-a');
    assert.equal(buf.toString('utf8', 0, a.read(buf, 0)), 'from-b');
    assert.equal(a.written.length + b.written.length, 0);
  });

  it('rejects empty writes, bad timeouts and bad options', () => {
    const tun = new MemoryTun();
    assert.throws(() => tun.write(Buffer.alloc(0)), isTunError('ERR_TUN_IO'));
    for (const t of [-2, 1.5, NaN, 2 ** 31]) assert.throws(() => tun.read(Buffer.alloc(10), t), isTunError('ERR_TUN_ARG'));
    assert.throws(() => new MemoryTun({ mtu: 20 }), isTunError('ERR_TUN_ARG'));
    assert.throws(() => new MemoryTun({ name: 'this-name-is-too-long' }), isTunError('ERR_TUN_ARG'));
    assert.throws(() => new MemoryTun({ queueLimit: 0 }), isTunError('ERR_TUN_ARG'));
  });

  it('throws ERR_CLOSED after close', () => {
    const [a, b] = createMemoryTunPair();
    checkClosedContract(a);
    assert.equal(b.closed, false);
    b.write(Buffer.from([1])); // writing towards a closed peer is a silent drop, like a downed link
    assert.equal(a.dropped, 1);
  });
});

describe('openLinuxTun option validation', () => {
  const base = { mtu: 1400, addresses: { v4: '10.99.0.1/24' } };
  const cases: [string, Parameters<typeof openLinuxTun>[0]][] = [
    ['name too long', { ...base, name: 'abcdefghijklmnop' }],
    ['name with slash', { ...base, name: 'a/b' }],
    ['mtu too small', { ...base, mtu: 67 }],
    ['mtu not integer', { ...base, mtu: 1400.5 }],
    ['v4 without prefix', { ...base, addresses: { v4: '10.99.0.1' } }],
    ['v4 bad prefix', { ...base, addresses: { v4: '10.99.0.1/33' } }],
    ['v4 given a v6 address', { ...base, addresses: { v4: 'fd00::1/64' } }],
    ['v6 bad', { ...base, addresses: { v6: 'fd00::zz/64' } }],
    ['route with host bits', { ...base, routes: ['10.98.0.1/16'] }],
    ['route garbage', { ...base, routes: ['nope'] }],
  ];
  for (const [what, opts] of cases) {
    it(`rejects ${what} before touching the system`, async () => {
      await assert.rejects(openLinuxTun(opts), isTunError('ERR_TUN_ARG'));
    });
  }
});

const nativeSkip = nativeAvailable() ? {} : { skip: `native addon unavailable: ${nativeUnavailableReason()}` };

describe('LinuxTun over a FIFO fd (native read/write path without a device)', nativeSkip, () => {
  const withFifo = (fn: (tun: LinuxTun) => void) => {
    const dir = mkdtempSync(join(tmpdir(), 'cyp-tun-'));
    const path = join(dir, 'fifo');
    execFileSync('mkfifo', [path]);
    const fd = openSync(path, 'r+'); // O_RDWR on a FIFO does not block on Linux
    const tun = LinuxTun.fromFd(fd, 'fifo0', 1500);
    try {
      fn(tun);
    } finally {
      tun.close();
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('read times out with 0, returns written bytes, honours writeFrom bounds', () => {
    withFifo((tun) => {
      const buf = Buffer.alloc(1500);
      const t0 = process.hrtime.bigint();
      assert.equal(tun.read(buf, 50), 0);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      assert.ok(ms >= 45 && ms < 1000, `timeout took ${ms} ms`);
      const pkt = randomBytes(300);
      tun.write(pkt);
      assert.equal(tun.read(buf, 1000), 300);
      assert.deepEqual(buf.subarray(0, 300), pkt);
      tun.writeFrom(pkt, 100, 50);
      assert.equal(tun.read(buf, 0), 50);
      assert.deepEqual(buf.subarray(0, 50), pkt.subarray(100, 150));
      assert.throws(() => tun.writeFrom(pkt, 290, 11), isTunError('ERR_TUN_ARG'));
      assert.throws(() => tun.writeFrom(pkt, -1, 1), isTunError('ERR_TUN_ARG'));
      assert.throws(() => tun.read(buf, -2), isTunError('ERR_TUN_ARG'));
      assert.throws(() => tun.read(Buffer.alloc(0), 0), isTunError('ERR_TUN_ARG'));
      assert.throws(() => tun.readBatch(buf, 0, new Uint32Array(4), 0), isTunError('ERR_TUN_ARG'));
      assert.throws(() => tun.readBatch(buf, 2000, new Uint32Array(4), 0), isTunError('ERR_TUN_ARG'));
      assert.throws(
        () => tun.readBatch(buf, 100, new Int32Array(4) as unknown as Uint32Array, 0),
        isTunError('ERR_TUN_ARG'),
      );
      assert.throws(() => tun.openQueue(), isTunError('ERR_TUN_ARG'));
    });
  });

  it('detach hands over the fd without closing it; close is final', () => {
    withFifo((tun) => {
      const other = LinuxTun.fromFd(tun.detach(), 'fifo0', 1500);
      assert.equal(tun.fd, -1);
      assert.throws(() => tun.read(Buffer.alloc(10), 0), isTunError('ERR_CLOSED'));
      other.write(Buffer.from('still open'));
      assert.equal(other.read(Buffer.alloc(100), 0), 10);
      checkClosedContract(other);
    });
  });

  it('maps OS errors to ERR_TUN_IO with errno, and validates fromFd', () => {
    const bogus = LinuxTun.fromFd(1_000_000, 'bogus0', 1500); // beyond any fd limit: EBADF
    assert.throws(() => bogus.read(Buffer.alloc(10), 0), (err: unknown) => {
      assert.ok(err instanceof TunError);
      assert.equal(err.code, 'ERR_TUN_IO');
      assert.equal(err.errno, 'EBADF');
      return true;
    });
    assert.throws(() => bogus.write(Buffer.from([0x45])), isTunError('ERR_TUN_IO'));
    bogus.detach(); // never close a number we do not own
    assert.throws(() => LinuxTun.fromFd(-1, 'x', 1500), isTunError('ERR_TUN_ARG'));
    assert.throws(() => LinuxTun.fromFd(3, '', 1500), isTunError('ERR_TUN_ARG'));
    assert.throws(() => LinuxTun.fromFd(3, 'x', 10), isTunError('ERR_TUN_ARG'));
  });
});

/** Runs inside the namespace: opens cyt0, captures ping's echo request, answers it, reads a UDP batch. */
const CHILD = (linuxUrl: string) => `
import { openLinuxTun } from ${JSON.stringify(linuxUrl)};
import { spawn, execFileSync } from 'node:child_process';
import dgram from 'node:dgram';

const ipj = (...args) => JSON.parse(execFileSync('ip', ['-j', ...args], { encoding: 'utf8' }));
const csum = (b) => {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length % 2) s += b[b.length - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
};
const out = {};
const tun = await openLinuxTun({
  name: 'cyt0', mtu: 1400,
  addresses: { v4: '10.99.0.1/24', v6: 'fd99::1/64' },
  routes: ['10.98.0.0/16', 'fd98::/64'],
});
out.name = tun.name;
const link = ipj('link', 'show', 'dev', 'cyt0')[0];
out.mtu = link.mtu;
out.up = link.flags.includes('UP');
out.addrs = ipj('addr', 'show', 'dev', 'cyt0')[0].addr_info.map((a) => a.local + '/' + a.prefixlen);
out.route4 = ipj('route', 'get', '10.98.1.1')[0].dev;
out.route6 = ipj('-6', 'route', 'get', 'fd98::1')[0].dev;

// 1. ping 10.99.0.2: the echo request must come out of tunRead; our reply written with tunWrite must reach ping.
const ping = spawn('ping', ['-n', '-c1', '-W3', '10.99.0.2'], { stdio: ['ignore', 'pipe', 'pipe'] });
let pingOut = '';
ping.stdout.on('data', (d) => (pingOut += d));
const pingExit = new Promise((r) => ping.on('exit', r));
const buf = Buffer.alloc(2048);
let req = null;
for (const end = Date.now() + 4000; !req && Date.now() < end; ) {
  const n = tun.read(buf, 500);
  if (n > 0 && buf[0] >> 4 === 4 && buf[9] === 1) req = Buffer.from(buf.subarray(0, n));
}
out.request = req ? req.toString('hex') : null;
if (req) {
  const reply = Buffer.from(req);
  req.copy(reply, 12, 16, 20); // src <- dst
  req.copy(reply, 16, 12, 16); // dst <- src
  reply.writeUInt16BE(0, 10);
  reply.writeUInt16BE(csum(reply.subarray(0, 20)), 10);
  reply[20] = 0; // ICMP echo reply
  reply.writeUInt16BE(0, 22);
  reply.writeUInt16BE(csum(reply.subarray(20)), 22);
  tun.write(reply);
}
out.pingExit = await pingExit;
out.pingOut = pingOut;

// 2. five UDP datagrams queued, then one readBatch takes them all without blocking after the first.
const sock = dgram.createSocket('udp4');
for (let i = 0; i < 5; i++) await new Promise((r) => sock.send(Buffer.alloc(20 + i, i), 9999, '10.99.0.2', r));
const slot = 1500;
const batch = Buffer.alloc(slot * 16);
const lengths = new Uint32Array(16);
const count = tun.readBatch(batch, slot, lengths, 1000);
out.batch = [];
for (let i = 0; i < count; i++) {
  const p = batch.subarray(i * slot, i * slot + lengths[i]);
  if (p[0] >> 4 === 4 && p[9] === 17) out.batch.push(p.length);
}

// 3. a packet larger than the read buffer is dropped (0), never returned truncated; then timeouts give 0.
await new Promise((r) => sock.send(Buffer.alloc(200), 9999, '10.99.0.2', r));
out.oversize = tun.read(Buffer.alloc(100), 500);
while (tun.read(buf, 0) > 0); // drain IPv6 noise (MLD/RS)
out.timeout = tun.read(buf, 50);
sock.close();
tun.close();
try { execFileSync('ip', ['link', 'show', 'dev', 'cyt0'], { stdio: 'ignore' }); out.goneAfterClose = false; }
catch { out.goneAfterClose = true; }

// 4. with vnetHdr the kernel takes the offloads (this kernel has TSO for TUN), and plain reads are refused.
const vt = await openLinuxTun({ name: 'cyt1', mtu: 1400, addresses: { v4: '10.98.0.1/24' }, vnetHdr: true });
out.vnet = { vnetHdr: vt.vnetHdr, offload: vt.offload };
try { vt.read(buf, 0); out.vnetRead = 'allowed'; } catch (err) { out.vnetRead = err.code; }
vt.close();
console.log(JSON.stringify(out));
`;

const rootSkip =
  process.getuid?.() !== 0
    ? { skip: 'needs root (network namespace + TUN)' }
    : !existsSync('/dev/net/tun')
      ? { skip: 'no /dev/net/tun' }
      : nativeSkip;

describe('LinuxTun on a real TUN device in a throwaway network namespace', rootSkip, () => {
  it('carries ping both ways, batches reads, drops oversize packets and disappears on close', async (t) => {
    const ns = `cy${randomBytes(4).toString('hex').slice(0, 4)}-tun`; // matches scripts/netns-cleanup.sh
    try {
      await execFileAsync('ip', ['netns', 'add', ns]);
    } catch (err) {
      t.skip(`cannot create a network namespace: ${(err as Error).message}`);
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'cyp-tun-'));
    try {
      const linuxUrl = new URL('../../../src/net/tun/linux.js', import.meta.url).href;
      const { stdout } = await execFileAsync(
        'ip',
        ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', CHILD(linuxUrl)],
        { timeout: 30_000, cwd: dir },
      );
      const r = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
      assert.equal(r['name'], 'cyt0');
      assert.equal(r['mtu'], 1400);
      assert.equal(r['up'], true);
      assert.ok((r['addrs'] as string[]).includes('10.99.0.1/24'), String(r['addrs']));
      assert.ok((r['addrs'] as string[]).includes('fd99::1/64'), String(r['addrs']));
      assert.equal(r['route4'], 'cyt0');
      assert.equal(r['route6'], 'cyt0');

      assert.ok(typeof r['request'] === 'string', 'echo request read from the TUN');
      const req = Buffer.from(r['request'] as string, 'hex');
      assert.equal(req[0], 0x45, 'IPv4, 20-byte header');
      assert.equal(req.readUInt16BE(2), req.length, 'total length matches the read length');
      assert.equal(req[9], 1, 'protocol ICMP');
      assert.deepEqual([...req.subarray(12, 16)], [10, 99, 0, 1]);
      assert.deepEqual([...req.subarray(16, 20)], [10, 99, 0, 2]);
      let sum = 0;
      for (let i = 0; i < 20; i += 2) sum += req.readUInt16BE(i);
      while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
      assert.equal(sum, 0xffff, 'valid IPv4 header checksum');
      assert.equal(req[20], 8, 'ICMP echo request');
      assert.equal(r['pingExit'], 0, `ping got our reply written with tunWrite:\n${String(r['pingOut'])}`);
      assert.match(String(r['pingOut']), /1 received/);

      assert.deepEqual(r['batch'], [48, 49, 50, 51, 52], 'five UDP packets in one readBatch');
      assert.equal(r['oversize'], 0);
      assert.equal(r['timeout'], 0);
      assert.equal(r['goneAfterClose'], true, 'the device we created vanishes with its fd');
      assert.deepEqual(r['vnet'], { vnetHdr: true, offload: true }, 'IFF_VNET_HDR with TSO accepted');
      assert.equal(r['vnetRead'], 'ERR_TUN_ARG', 'plain read refused on a virtio_net_hdr device');
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await execFileAsync('ip', ['netns', 'del', ns]).catch(() => undefined);
    }
  });
});
