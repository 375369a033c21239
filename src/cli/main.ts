// Entry point of the `cyphonic` binary: picks the command from argv and runs it.
// Errors print as "cyphonic: CODE: message" with exit status 1 (2 for usage errors); never a stack.

import { commands } from './commands.js';
import { parseCommand, usage } from './args.js';
import { CyphonicError, describeError } from '../util/errors.js';

function overview(): string {
  return ['usage: cyphonic <command> [options]   (cyphonic <command> --help for its options)', '', 'commands:', ...commands.map((c) => `  ${c.name.padEnd(14)} ${c.summary}`)].join('\n');
}

/** Long-running commands: a stray rejected promise is logged and the daemon keeps serving. */
const DAEMONS = new Set(['node up', 'adapter up', 'cloud start']);

/**
 * Safety net for the daemons: every handler catches its own errors, but one that slips through (an input nobody
 * thought of) must cost a log line, not the process and everyone it serves.
 */
function keepServing(): void {
  process.on('unhandledRejection', (err) => {
    process.stderr.write(JSON.stringify({ t: new Date().toISOString(), level: 'error', msg: 'unhandled rejection (kept serving)', err: describeError(err) }) + '\n');
  });
}

export async function main(argv: string[]): Promise<number> {
  const words = argv.filter((a) => !a.startsWith('-'));
  const cmd = commands.find((c) => {
    const parts = c.name.split(' ');
    return parts.every((p, i) => words[i] === p) && argv.slice(0, parts.length).every((a, i) => a === parts[i]);
  });
  if (!cmd) {
    const asked = argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help';
    (asked ? process.stdout : process.stderr).write(overview() + '\n');
    return asked ? 0 : 2;
  }
  if (DAEMONS.has(cmd.name)) keepServing();
  try {
    const { opts, positionals, help } = parseCommand(cmd, argv.slice(cmd.name.split(' ').length));
    if (help) {
      process.stdout.write(usage(cmd) + '\n');
      return 0;
    }
    return (await cmd.run(opts, positionals)) ?? 0;
  } catch (err) {
    process.stderr.write(`cyphonic: ${describeError(err)}\n`);
    return err instanceof CyphonicError && err.code === 'ERR_USAGE' ? 2 : 1;
  }
}
