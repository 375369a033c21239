// End-to-end test of the tunnel's path MTU handling in network namespaces, offloads on (the default):
//   1. both nodes on 1280-byte links: refused UDP GSO sends are re-sent, the usable MTU follows the kernel's path
//      MTU, TCP over the IPv4 and the IPv6 overlay moves 10 MB each way intact;
//   2. a router between the nodes narrows the path to 1280 bytes while the hosts' links stay at 1500, first with its
//      ICMP errors delivered (IPv4 underlay), then with them dropped by nft on the router (IPv6 underlay: a black
//      hole only probes can find): 10 MB each way intact within 60 s, and the counters say what happened;
//   3. a relayed path whose far hop (TRS -> beta) is narrow: only probes through the TRS can see it.
//
//              global segment 198.18.0.0/24, 2001:db8::/64
//   [cloud] ──────┬───────────────┬───────────────┐
//              [alpha]          [beta]          [rtr] forwards; host routes send alpha⇄beta through it,
//                 └──── via rtr ──┘                   its routes toward them carry mtu 1280

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { CloudProc, NodeProc, REPO, waitFor, workDir, type NodeStatusJson } from '../harness/cluster.js';
import { Testbed, type Host } from '../harness/netns/index.js';
import { e2eSkip } from '../harness/requires.js';

const skip = e2eSkip();
const TOOLS = join(REPO, 'dist', 'test', 'e2e', 'tools');
const MB10 = 10 * 1024 * 1024;

describe('path MTU: narrow links, narrowing routers, black holes (netns, offloads on)', { skip, timeout: 300_000 }, () => {
  let tb: Testbed;
  let work: ReturnType<typeof workDir>;
  let cloud: CloudProc;
  let alpha: NodeProc;
  let beta: NodeProc;
  let rtr: Host;
  let tokens: { alpha?: string; beta?: string };

  /** Starts both nodes (enrolling them the first time) and waits for their registration. */
  const start = async (): Promise<[NodeStatusJson, NodeStatusJson]> => {
    alpha.start(tokens.alpha);
    beta.start(tokens.beta);
    tokens = {};
    const [a, b] = await Promise.all([alpha.waitRegistered(), beta.waitRegistered()]);
    return [a, b];
  };
  const stop = async (): Promise<void> => {
    await Promise.all([alpha.stop(), beta.stop()]);
  };

  /** 10 MB from one node to the other's virtual address, checksummed at the far end, within `deadlineS`. */
  const transfer = async (from: NodeProc, to: NodeProc, vip: string, port: number, deadlineS = 60): Promise<void> => {
    const env = { TCP_CHECK_DEADLINE_S: String(deadlineS) };
    const server = to.host.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'server', vip, String(port)], { timeoutMs: (deadlineS + 10) * 1000, env });
    await new Promise((r) => setTimeout(r, 400));
    const out = await from.host.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'client', vip, String(port), String(MB10)], { timeoutMs: (deadlineS + 10) * 1000, env });
    assert.equal(out.code, 0, `${from.name} -> ${vip}: ${out.stderr}`);
    const sent = JSON.parse(out.stdout) as { sha256: string };
    const got = await server;
    assert.equal(got.code, 0, `${from.name} -> ${vip} (server): ${got.stderr}`);
    const recv = JSON.parse(got.stdout) as { bytes: number; sha256: string };
    assert.equal(recv.bytes, MB10, `${from.name} -> ${vip}`);
    assert.equal(recv.sha256, sent.sha256, `${from.name} -> ${vip}`);
  };

  /** Pings the peer's virtual addresses until the tunnel is up. */
  const tunnel = async (from: NodeProc, vips: string[]): Promise<void> => {
    for (const v of vips) {
      await waitFor(`${from.name} reaches ${v}`, async () => (await from.host.exec('ping', ['-c', '1', '-W', '1', v])).code === 0, 20_000, 200);
    }
  };

  const counters = async (n: NodeProc): Promise<Record<string, number>> => (await n.status()).counters as unknown as Record<string, number>;
  const PMTU_COUNTERS = ['udpSendErrors', 'gsoResegmented', 'tsoNarrowed', 'mssClamped', 'pmtuIcmpSent', 'pmtuFragmented', 'pmtuTooBigDropped', 'pmtuProbes', 'pmtuProbeAcks', 'pmtuProbesAnswered', 'pmtuBlackHoles'];
  /** Prints the path MTU counters of both nodes (the test log says what happened). */
  const report = async (label: string): Promise<void> => {
    for (const n of [alpha, beta]) {
      const st = await n.status();
      const c = st.counters as unknown as Record<string, number>;
      const peer = st.peers[0];
      process.stdout.write(`# ${label} ${n.name}: endpoint ${peer?.endpoint} pmtu ${peer?.pmtu} ${PMTU_COUNTERS.map((k) => `${k}=${c[`data.${k}`]}`).join(' ')}\n`);
    }
  };
  const pmtuOf = async (n: NodeProc, peer: string): Promise<number | null> => (await n.status()).peers.find((p) => p.name === peer)?.pmtu ?? null;

  before(async () => {
    tb = await Testbed.create();
    work = workDir('pmtu');
    const cloudHost = await tb.addHost('cloud', { site: tb.global, family: 'dual' });
    cloud = new CloudProc(cloudHost, work.dir);
    await cloud.init();
    await cloud.start();
    alpha = new NodeProc(await tb.addHost('alpha', { site: tb.global, family: 'dual' }), work.dir, 'alpha');
    beta = new NodeProc(await tb.addHost('beta', { site: tb.global, family: 'dual' }), work.dir, 'beta');
    rtr = await tb.addHost('rtr', { site: tb.global, family: 'dual' });
    tokens = { alpha: await cloud.enroll('alpha'), beta: await cloud.enroll('beta') };
  });

  after(async () => {
    await tb?.cleanup();
    work?.remove();
  });

  test('both nodes\' links narrow to 1280 under open connections: refused GSO sends re-sent, 10 MB each way over the IPv4 and IPv6 overlay', async () => {
    const [a, b] = await start();
    try {
      await tunnel(alpha, [b.vip4!, b.vip6!]);
      await tunnel(beta, [a.vip4!, a.vip6!]);
      assert.equal((await pmtuOf(alpha, 'beta')), 1400, 'the full TUN MTU while the links are 1500 bytes');
      await concurrently(a, b, 5101, async () => {
        for (const h of [alpha.host, beta.host]) await h.run('ip', ['link', 'set', 'eth0', 'mtu', '1280']);
      });
      // New connections on the narrow links, the other overlay family each way.
      await transfer(alpha, beta, b.vip6!, 5103);
      await transfer(beta, alpha, a.vip4!, 5104);
      await report('1280 links');
      const [pa, pb] = [await pmtuOf(alpha, 'beta'), await pmtuOf(beta, 'alpha')];
      assert.ok(pa === 1280 - 20 - 52 && pb === 1280 - 20 - 52, `the usable MTU follows the 1280 links (${pa}, ${pb})`);
      const [ca, cb] = [await counters(alpha), await counters(beta)];
      assert.ok(ca['data.gsoResegmented']! + cb['data.gsoResegmented']! > 0, 'GSO sends refused by the narrowed link were re-sent');
      assert.equal(ca['data.udpSendErrors'], 0, 'no refused send left unsent (alpha)');
      assert.equal(cb['data.udpSendErrors'], 0, 'no refused send left unsent (beta)');
      assert.ok(ca['data.mssClamped']! > 0 && cb['data.mssClamped']! > 0, 'new connections\' SYNs clamped');
    } finally {
      await stop();
      for (const h of [alpha.host, beta.host]) await h.run('ip', ['link', 'set', 'eth0', 'mtu', '1500']);
    }
  });

  /** Sends alpha⇄beta through rtr (hairpin on the global segment; hosts' links stay at 1500). */
  const viaRouter = async (): Promise<void> => {
    await rtr.run('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv4.conf.all.send_redirects=0', 'net.ipv4.conf.eth0.send_redirects=0']);
    for (const [h, peer] of [[alpha.host, beta.host], [beta.host, alpha.host]] as const) {
      await h.run('sysctl', ['-qw', 'net.ipv4.conf.all.accept_redirects=0', 'net.ipv6.conf.all.accept_redirects=0', 'net.ipv6.conf.eth0.accept_redirects=0']);
      if (peer.addr4 && h.addr4) await h.run('ip', ['route', 'replace', `${peer.addr4}/32`, 'via', rtr.addr4!]);
      if (peer.addr6 && h.addr6) await h.run('ip', ['-6', 'route', 'replace', `${peer.addr6}/128`, 'via', rtr.addr6!]);
    }
  };
  /** rtr drops the ICMP errors it would send (fragmentation needed, packet too big), as many firewalls do; or stops. */
  const icmpBlackhole = async (on: boolean): Promise<void> => {
    await rtr.exec('nft', ['delete', 'table', 'inet', 'pmtu_blackhole']);
    if (!on) return;
    await rtr.run('nft', ['-f', '-'], {
      input: [
        'table inet pmtu_blackhole {',
        '  chain out { type filter hook output priority 0; policy accept;',
        '    icmp type destination-unreachable counter drop',
        '    icmpv6 type packet-too-big counter drop',
        '  }',
        '}',
      ].join('\n'),
    });
  };
  /** The router's nft counted dropped ICMP errors. */
  const icmpDropped = async (): Promise<void> => {
    assert.match(await rtr.run('nft', ['list', 'chain', 'inet', 'pmtu_blackhole', 'out']), /packets [1-9]/, 'the router did drop ICMP errors');
  };
  /** rtr's routes toward alpha and beta carry mtu 1280 (narrow) or not (wide); hosts forget what ICMP taught them. */
  const routerMtu = async (narrow: boolean): Promise<void> => {
    for (const x of [alpha.host, beta.host]) {
      if (x.addr4) await rtr.run('ip', ['route', 'replace', `${x.addr4}/32`, 'dev', 'eth0', ...(narrow ? ['mtu', '1280'] : [])]);
      if (x.addr6) await rtr.run('ip', ['-6', 'route', 'replace', `${x.addr6}/128`, 'dev', 'eth0', ...(narrow ? ['mtu', '1280'] : [])]);
    }
    if (!narrow) {
      for (const h of [alpha.host, beta.host]) {
        await h.run('ip', ['route', 'flush', 'cache']);
        await h.run('ip', ['-6', 'route', 'flush', 'cache']);
      }
    }
  };

  /**
   * 10 MB alpha -> beta over the IPv4 overlay and 10 MB beta -> alpha over the IPv6 overlay at once, paced so they
   * last a few seconds; `narrow` runs a second in, under the open connections (TCP had chosen its segment size for
   * 1500). Both arrive intact within 60 s.
   */
  const concurrently = async (a: NodeStatusJson, b: NodeStatusJson, port: number, narrow: () => Promise<void>): Promise<void> => {
    const env = { TCP_CHECK_DEADLINE_S: '60', TCP_CHECK_PACE_MS: '15' };
    const run = async (from: NodeProc, to: NodeProc, vip: string, p: number): Promise<void> => {
      const server = to.host.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'server', vip, String(p)], { timeoutMs: 70_000, env });
      await new Promise((r) => setTimeout(r, 400));
      const out = await from.host.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'client', vip, String(p), String(MB10)], { timeoutMs: 70_000, env });
      assert.equal(out.code, 0, `${from.name} -> ${vip}: ${out.stderr}`);
      const got = await server;
      assert.equal(got.code, 0, `${from.name} -> ${vip} (server): ${got.stderr}`);
      const recv = JSON.parse(got.stdout) as { bytes: number; sha256: string };
      assert.equal(recv.bytes, MB10, `${from.name} -> ${vip}`);
      assert.equal(recv.sha256, (JSON.parse(out.stdout) as { sha256: string }).sha256, `${from.name} -> ${vip}`);
    };
    const both = Promise.all([run(alpha, beta, b.vip4!, port), run(beta, alpha, a.vip6!, port + 1)]);
    await new Promise((r) => setTimeout(r, 1400));
    await narrow();
    await both;
  };

  test('IPv4 underlay: a router narrows the path to 1280 under open connections, its ICMP errors arrive: 10 MB each way within 60 s', async () => {
    await viaRouter();
    await routerMtu(false);
    const [a, b] = await start();
    try {
      await tunnel(alpha, [b.vip4!, b.vip6!]);
      await tunnel(beta, [a.vip4!, a.vip6!]);
      await concurrently(a, b, 5201, () => routerMtu(true));
      // The path really is narrow: a 1400-byte DF ping through rtr is refused by it.
      const big = await alpha.host.exec('ping', ['-c', '1', '-W', '1', '-M', 'do', '-s', '1400', beta.host.addr4!]);
      assert.notEqual(big.code, 0, 'rtr does not carry 1428-byte packets');
      assert.equal(alpha.host.addr4 !== null && (await alpha.status()).peers[0]?.endpoint, `${beta.host.addr4}:30000`, 'an IPv4 underlay');
      // The kernel learns the router's MTU from its ICMP errors (our GSO sends leave DF off, so the router
      // fragments those; probes and single datagrams carry DF): the usable MTU follows within a confirmation period.
      await waitFor('alpha and beta follow the router\'s MTU', async () => {
        const [pa, pb] = [await pmtuOf(alpha, 'beta'), await pmtuOf(beta, 'alpha')];
        return pa !== null && pb !== null && pa <= 1280 - 20 - 52 && pb <= 1280 - 20 - 52;
      }, 15_000, 250);
      await report('router, ICMP delivered');
    } finally {
      await stop();
    }
  });

  test('IPv4 underlay: the router drops its ICMP errors (nft), narrows under open connections: probes find the path, 10 MB each way within 60 s', async () => {
    await routerMtu(false);
    await viaRouter();
    await icmpBlackhole(true);
    const [a, b] = await start();
    try {
      await tunnel(alpha, [b.vip4!, b.vip6!]);
      await tunnel(beta, [a.vip4!, a.vip6!]);
      await concurrently(a, b, 5251, () => routerMtu(true));
      await report('router v4, ICMP dropped');
      assert.equal((await alpha.status()).peers[0]?.endpoint, `${beta.host.addr4}:30000`, 'an IPv4 underlay');
      // The router fragments our GSO sends (no DF) but silently drops what carries DF (probes, single datagrams).
      await waitFor('probes find the narrow path', async () => {
        const [pa, pb] = [await pmtuOf(alpha, 'beta'), await pmtuOf(beta, 'alpha')];
        return pa !== null && pb !== null && pa <= 1280 - 20 - 52 && pb <= 1280 - 20 - 52;
      }, 15_000, 250);
      await icmpDropped();
    } finally {
      await stop();
      await icmpBlackhole(false);
    }
  });

  test('IPv6 underlay: the router drops its ICMP errors (nft), narrows under open connections: probes find the path, 10 MB each way within 60 s', async () => {
    await routerMtu(false);
    // IPv6-only hosts: the underlay is IPv6, where no router fragments: a true black hole for anything over 1280.
    for (const h of [alpha.host, beta.host]) await tb.moveHost(h, tb.global, { family: 'v6' });
    await viaRouter();
    await icmpBlackhole(true);
    const [a, b] = await start();
    try {
      await tunnel(alpha, [b.vip4!, b.vip6!]);
      await tunnel(beta, [a.vip4!, a.vip6!]);
      await concurrently(a, b, 5301, () => routerMtu(true));
      await report('router, ICMP dropped');
      assert.equal((await alpha.status()).peers[0]?.endpoint, `[${beta.host.addr6}]:30000`, 'an IPv6 underlay');
      const [pa, pb] = [await pmtuOf(alpha, 'beta'), await pmtuOf(beta, 'alpha')];
      assert.ok(pa !== null && pa <= 1280 - 20 - 52 && pb !== null && pb <= 1280 - 20 - 52, `probes found the narrow path (${pa}, ${pb})`);
      const [ca, cb] = [await counters(alpha), await counters(beta)];
      assert.ok(ca['data.pmtuBlackHoles']! >= 1 && cb['data.pmtuBlackHoles']! >= 1, `black holes found (${ca['data.pmtuBlackHoles']}, ${cb['data.pmtuBlackHoles']})`);
      assert.ok(ca['data.pmtuProbeAcks']! > 0 && cb['data.pmtuProbesAnswered']! > 0, 'probes acked');
      await icmpDropped();
    } finally {
      await stop();
      await icmpBlackhole(false);
    }
  });

  test('IPv6 underlay: a router narrows the path to 1280 under open connections, its ICMPv6 errors arrive: 10 MB each way within 60 s', async () => {
    // alpha and beta are IPv6-only since the test before.
    await routerMtu(false);
    await viaRouter();
    const [a, b] = await start();
    try {
      await tunnel(alpha, [b.vip4!, b.vip6!]);
      await tunnel(beta, [a.vip4!, a.vip6!]);
      await concurrently(a, b, 5351, () => routerMtu(true));
      assert.equal((await alpha.status()).peers[0]?.endpoint, `[${beta.host.addr6}]:30000`, 'an IPv6 underlay');
      await waitFor('alpha and beta follow the router\'s MTU', async () => {
        const [pa, pb] = [await pmtuOf(alpha, 'beta'), await pmtuOf(beta, 'alpha')];
        return pa !== null && pb !== null && pa <= 1280 - 40 - 52 && pb <= 1280 - 40 - 52;
      }, 15_000, 250);
      await report('router v6, ICMPv6 delivered');
    } finally {
      await stop();
    }
  });

  test('relayed path (IPv6-only alpha, IPv4-only beta on a 1280 link): the far hop is found by probes through the TRS, 10 MB each way', async () => {
    await cloud.startTrs(4503);
    // alpha stays IPv6-only; beta becomes IPv4-only behind a 1280-byte link: the NMS relays them (family mismatch).
    // alpha's kernel sees only its own leg to the TRS (1500); the TRS -> beta leg drops what exceeds 1280 silently.
    await tb.moveHost(beta.host, tb.global, { family: 'v4' });
    await beta.host.run('ip', ['link', 'set', 'eth0', 'mtu', '1280']);
    const [a, b] = await start();
    try {
      await tunnel(alpha, [b.vip4!, b.vip6!]);
      await waitFor('a relayed path', async () => (await alpha.status()).peers.find((p) => p.name === 'beta')?.path === 'relayed', 10_000);
      await waitFor('alpha probes the far hop down', async () => {
        const pa = await pmtuOf(alpha, 'beta');
        return pa !== null && pa <= 1280 - 20 - 52;
      }, 20_000, 200);
      await transfer(alpha, beta, b.vip4!, 5401);
      await transfer(beta, alpha, a.vip6!, 5402);
      await report('relayed, narrow far hop');
      const ca = await counters(alpha);
      assert.ok(ca['data.pmtuBlackHoles']! >= 1, 'alpha found the far hop by probing (its kernel cannot see it)');
      const pb = await pmtuOf(beta, 'alpha');
      assert.ok(pb !== null && pb <= 1280 - 20 - 52, `beta's own narrow link counts (${pb})`);
    } finally {
      await stop();
    }
  });
});
