// iperf3 driver for the data-plane and adapter benchmarks: a server process in one namespace (killed at stop or
// at testbed cleanup), bounded TCP/UDP client runs whose JSON reports are reduced to a few figures, and the search
// for the highest UDP rate carried at <= 1 % loss.

import type { ChildProcess } from 'node:child_process';
import { killGroup, type Host } from '../../test/harness/netns/index.js';
import { waitFor } from '../../test/harness/cluster.js';
import { sleep } from './measure.js';

export const IPERF_PORT = 5201;

export interface TcpResult {
  gbps: number;
  /** Bytes the receiver got. */
  bytes: number;
  seconds: number;
  retransmits: number | null;
}

export interface UdpResult {
  /** Datagrams received per second at the server. */
  pps: number;
  lossPct: number;
  /** Goodput at the receiver. */
  gbps: number;
  sentPps: number;
}

interface IperfSum {
  seconds?: number;
  bytes?: number;
  bits_per_second?: number;
  packets?: number;
  lost_packets?: number;
  lost_percent?: number;
  retransmits?: number;
}

interface IperfJson {
  error?: string;
  end?: { sum?: IperfSum; sum_sent?: IperfSum; sum_received?: IperfSum };
}

/** `iperf3 -s` in `host`; restarted on demand when a failed client run may have wedged it. */
export class IperfServer {
  private child: ChildProcess | null = null;

  constructor(
    private readonly host: Host,
    private readonly logFile: string,
  ) {}

  async start(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return;
    const child = this.host.spawn('iperf3', ['-s', '-p', String(IPERF_PORT)], { logFile: this.logFile });
    this.child = child;
    await waitFor('iperf3 server listening', async () => {
      if (child.exitCode !== null) throw new Error(`iperf3 -s exited (${child.exitCode}); see ${this.logFile}`);
      const r = await this.host.exec('ss', ['-Hltn', `sport = :${IPERF_PORT}`], { timeoutMs: 5000 });
      return r.stdout.includes(`:${IPERF_PORT}`);
    }, 10_000, 100);
  }

  async stop(): Promise<void> {
    const c = this.child;
    this.child = null;
    if (!c || c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    killGroup(c.pid, 'SIGKILL');
    await Promise.race([gone, sleep(3000)]);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

async function runClient(client: Host, args: string[], seconds: number): Promise<IperfJson> {
  const r = await client.exec('iperf3', [...args, '-J', '--connect-timeout', '3000'], { timeoutMs: (seconds + 25) * 1000 });
  let j: IperfJson;
  try {
    j = JSON.parse(r.stdout) as IperfJson;
  } catch {
    throw new Error(`iperf3 ${args.join(' ')}: no JSON report (exit ${r.code}) ${r.stderr.trim()}`);
  }
  if (j.error) throw new Error(`iperf3 ${args.join(' ')}: ${j.error}`);
  if (r.code !== 0) throw new Error(`iperf3 ${args.join(' ')}: exit ${r.code} ${r.stderr.trim()}`);
  return j;
}

/** TCP from `client` to `target` for `seconds` with `streams` parallel streams; receiver-side goodput. */
export async function iperfTcp(client: Host, target: string, seconds: number, streams = 1): Promise<TcpResult> {
  const j = await runClient(client, ['-c', target, '-p', String(IPERF_PORT), '-t', String(seconds), '-P', String(streams)], seconds);
  const rx = j.end?.sum_received;
  if (!rx || rx.bytes === undefined || rx.seconds === undefined) throw new Error('iperf3 TCP report has no end.sum_received');
  return {
    gbps: (rx.bytes * 8) / rx.seconds / 1e9,
    bytes: rx.bytes,
    seconds: rx.seconds,
    retransmits: j.end?.sum_sent?.retransmits ?? null,
  };
}

/**
 * UDP flood (`-b rate`, 0 = unlimited) of `len`-byte datagrams; packets received per second and loss. `window`
 * (iperf3 -w, e.g. '4M') sizes both ends' socket buffers; without it they keep the system default.
 */
export async function iperfUdp(client: Host, target: string, seconds: number, len: number, rate = '0', window?: string): Promise<UdpResult> {
  const w = window ? ['-w', window] : [];
  const j = await runClient(client, ['-c', target, '-p', String(IPERF_PORT), '-u', '-b', rate, '-l', String(len), '-t', String(seconds), ...w], seconds);
  const rx = j.end?.sum_received ?? j.end?.sum;
  const tx = j.end?.sum_sent ?? j.end?.sum;
  if (!rx || rx.packets === undefined || rx.lost_packets === undefined || !rx.seconds) throw new Error('iperf3 UDP report has no packet counts');
  const got = rx.packets - rx.lost_packets;
  return {
    pps: got / rx.seconds,
    lossPct: rx.packets > 0 ? (100 * rx.lost_packets) / rx.packets : 0,
    gbps: (got * len * 8) / rx.seconds / 1e9,
    sentPps: tx?.packets !== undefined && tx.seconds ? tx.packets / tx.seconds : 0,
  };
}

/** Loss (percent) a UDP run may have and still count as carried. */
export const UDP_MAX_LOSS = 1;

/**
 * The highest UDP goodput with at most UDP_MAX_LOSS % loss: bisection over the offered rate between 0 and
 * `ceilMbps` (what an unpaced sender managed to offer, in IP Mbit/s), `steps` runs of `run(rate)`. Each run that
 * stays under the loss limit raises the floor; the best such run's received goodput is the answer.
 */
export async function searchLowLoss(
  ceilMbps: number,
  steps: number,
  run: (at: string, mbps: number) => Promise<{ lossPct: number; goodMbps: number }>,
): Promise<{ mbps: number; at: string }> {
  let lo = 0;
  let hi = Math.max(10, ceilMbps);
  let best: { mbps: number; at: string } = { mbps: 0, at: 'none' };
  // The first try is the ceiling itself: a path that carries what the sender can offer needs no search.
  let rate = hi;
  for (let step = 0; step < steps; step++) {
    const at = `${Math.max(1, Math.round(rate))}M`;
    const r = await run(at, Math.max(1, Math.round(rate)));
    if (r.lossPct <= UDP_MAX_LOSS) {
      if (r.goodMbps > best.mbps) best = { mbps: r.goodMbps, at: `${at}: ${r.lossPct.toFixed(2)} % loss` };
      if (step === 0) break;
      lo = rate;
    } else {
      hi = rate;
    }
    rate = (lo + hi) / 2;
  }
  return best;
}

/** searchLowLoss with iperf3 -u -b RATE runs of `len`-byte datagrams from `client` to `target`. */
export async function udpAtLowLoss(
  client: Host,
  target: string,
  len: number,
  ceilMbps: number,
  steps: number,
  stepSeconds: number,
  window?: string,
): Promise<{ mbps: number; at: string }> {
  const best = await searchLowLoss(ceilMbps, steps, async (at) => {
    const r = await iperfUdp(client, target, stepSeconds, len, at, window);
    return { lossPct: r.lossPct, goodMbps: r.gbps * 1000 };
  });
  return { ...best, at: best.mbps > 0 ? `-b ${best.at}` : best.at };
}
