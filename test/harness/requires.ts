// What an e2e suite needs from the machine (root for network namespaces, Debian tools), and what happens when
// something is missing: on a developer's machine the suite or test is skipped with the reason; in CI (CI=true) it
// fails with the reason instead, so a missing install step in scripts/setup.sh can never hide behind a green run.

import { existsSync } from 'node:fs';
import { join } from 'node:path';

const BIN_DIRS = ['/usr/bin', '/usr/sbin', '/bin', '/sbin', '/usr/local/bin', '/usr/local/sbin'];

/** True when `cmd` is an installed executable in one of the system bin directories. */
export function have(cmd: string): boolean {
  return BIN_DIRS.some((d) => existsSync(join(d, cmd)));
}

/** Thrown (in CI only) where a suite would otherwise be skipped. */
export class MissingPrerequisite extends Error {
  constructor(reason: string) {
    super(`CI: ${reason} — scripts/setup.sh must install it`);
    this.name = 'MissingPrerequisite';
  }
}

/** A skip reason as the `skip` option wants it: false when null; in CI, a MissingPrerequisite thrown instead. */
export function verdict(reason: string | null): string | false {
  if (reason === null) return false;
  if (process.env['CI']) throw new MissingPrerequisite(reason);
  return reason;
}

/**
 * The `skip` option of an e2e suite: false when we are root and every tool is installed, else the reason (outside CI)
 * — or a MissingPrerequisite thrown (in CI), which fails the suite.
 */
export function e2eSkip(...tools: string[]): string | false {
  if (process.getuid?.() !== 0) return verdict('needs root for network namespaces');
  const missing = tools.filter((t) => !have(t));
  return verdict(missing.length ? `needs ${missing.join(', ')} (scripts/setup.sh)` : null);
}

/** The `skip` option of one test that needs extra tools (same rule: skipped outside CI, failed in CI). */
export function needs(...tools: string[]): string | false {
  const missing = tools.filter((t) => !have(t));
  return verdict(missing.length ? `${missing.join(', ')} not installed` : null);
}
