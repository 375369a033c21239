// The demo's mobility part: a TCP transfer runs from a peer to alpha while alpha moves to a new network; the
// transfer finishes with the same checksum at both ends.

import { join } from 'node:path';
import { REPO, waitFor, type NodeProc } from '../test/harness/cluster.js';
import type { Testbed } from '../test/harness/netns/index.js';

const TOOLS = join(REPO, 'dist', 'test', 'e2e', 'tools');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function demoMobility(tb: Testbed, alpha: NodeProc, peer: NodeProc, say: (s: string) => void): Promise<void> {
  const a = await alpha.status();
  const RATE = 64 * 1024;
  const BYTES = RATE * 6;
  say(`\n== mobility: ${peer.name} sends ${BYTES / 1024} KiB over TCP to alpha (${a.vip4}) at ${RATE / 1024} KiB/s; alpha moves meanwhile`);
  const server = alpha.host.exec(process.execPath, [join(TOOLS, 'tcp-check.js'), 'server', a.vip4!, '5001'], { timeoutMs: 60_000 });
  await sleep(300);
  const client = peer.host.exec(process.execPath, [join(TOOLS, 'tcp-paced.js'), a.vip4!, '5001', String(BYTES), String(RATE)], { timeoutMs: 60_000 });
  await sleep(1500);
  const before = alpha.host.addr4;
  await tb.moveHost(alpha.host, tb.global, { family: 'dual' });
  say(`   alpha moved: ${before} -> ${alpha.host.addr4} / ${alpha.host.addr6} (old link deleted, new one attached)`);
  const st = await waitFor('the handover', async () => {
    const s = await alpha.status();
    return s.mobility?.lastHandoverMs != null ? s : null;
  }, 5000);
  say(`   alpha: netlink event -> ${peer.name}'s acknowledgement of the new endpoint in ${st.mobility!.lastHandoverMs} ms; re-registered with the NMS from ${st.observed}`);
  const [c, sv] = [await client, await server];
  if (c.code !== 0 || sv.code !== 0) throw new Error(`the transfer failed: client ${c.code} ${c.stderr.trim()}; server ${sv.code} ${sv.stderr.trim()}`);
  const sent = JSON.parse(c.stdout) as { bytes: number; sha256: string };
  const got = JSON.parse(sv.stdout) as { bytes: number; sha256: string };
  say(`   sent     ${sent.bytes} bytes sha256 ${sent.sha256.slice(0, 16)}…`);
  say(`   received ${got.bytes} bytes sha256 ${got.sha256.slice(0, 16)}…  ${got.sha256 === sent.sha256 && got.bytes === sent.bytes ? '(intact: the TCP connection survived the move)' : '(MISMATCH)'}`);
}
