// Every data-path figure of issue #19 in one run, one after the other on the same machine: first contact over fresh
// peers (bench/first-contact), TCP / UDP / RTT for plain veth, wireguard-go, Nebula and cyphonic (bench/dataplane),
// and TCP, RTT, DNS and ARP/ND timings through the adapter beside node ↔ node (bench/adapter). Each part builds and
// tears down its own testbed; their outputs are printed whole, under a header naming the machine, the time and the
// load average before each part, so the run-to-run spread of a shared machine can be judged.
//
// usage: node dist/bench/all.js [--peers N (20)] [--seconds N (5)] [--repeat N (3)] [--probes N (200)]
// needs root and what the three parts need (scripts/setup.sh installs it).

import { spawn } from 'node:child_process';
import { cpus, loadavg, release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { intArg } from './lib/args.js';

const HERE = dirname(fileURLToPath(import.meta.url));

const arg = (name: string, def: number): string => String(intArg(`--${name}`, def, 1, 10_000));

/** Runs one part to completion, its output passed through; resolves with its exit code (a failed part does not stop the others). */
function part(title: string, script: string, args: string[]): Promise<number> {
  const load = loadavg().map((l) => l.toFixed(1)).join(' ');
  process.stdout.write(`\n=== ${title} — ${new Date().toISOString()}, load average ${load}\n$ node dist/bench/${script} ${args.join(' ')}\n`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(HERE, script), ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    child.on('error', () => resolve(1));
  });
}

async function main(): Promise<void> {
  const seconds = arg('seconds', 5);
  process.stdout.write(`cyphonic bench/all: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, Linux ${release()}, node ${process.version}\n`);
  const codes = [
    await part('first contact', 'first-contact.js', ['--peers', arg('peers', 20)]),
    await part('data plane (TCP, UDP, RTT)', 'dataplane.js', ['--seconds', seconds, '--repeat', arg('repeat', 3)]),
    await part('adapter (general node beside node)', 'adapter.js', ['--seconds', seconds, '--probes', arg('probes', 200)]),
  ];
  const failed = codes.filter((c) => c !== 0).length;
  process.stdout.write(`\n=== done — ${new Date().toISOString()}, ${failed === 0 ? 'every part completed' : `${failed} part(s) failed (see above)`}\n`);
  if (failed > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/all: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
