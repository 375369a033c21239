// Command-line plumbing: a tiny command table over node:util parseArgs, `--help` everywhere,
// and `--config FILE` (JSON object of the same option names) under every command; flags win over the file.

import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError } from '../util/errors.js';

export type OptionSpec = { type: 'string' | 'boolean'; short?: string; help: string; default?: string | boolean; multiple?: false };

export interface Command {
  /** e.g. "cloud init" */
  name: string;
  summary: string;
  /** Positional arguments shown in usage, e.g. "NAME". */
  positionals?: string[];
  options: Record<string, OptionSpec>;
  /** Options that must end up set (from flags or the config file). */
  required?: string[];
  run(opts: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number | void>;
}

export function usage(cmd: Command): string {
  const lines = [`usage: cyphonic ${cmd.name}${(cmd.positionals ?? []).map((p) => ' ' + p).join('')} [options]`, '', cmd.summary, '', 'options:'];
  const all: [string, OptionSpec][] = [
    ...Object.entries(cmd.options),
    ['config', { type: 'string', help: 'read options from a JSON file (keys are option names); flags win' }],
    ['help', { type: 'boolean', help: 'show this help' }],
  ];
  for (const [name, o] of all) {
    const flag = `--${name}${o.type === 'string' ? ' VALUE' : ''}`;
    const req = cmd.required?.includes(name) ? ' (required)' : '';
    const def = o.default !== undefined ? ` [default: ${String(o.default)}]` : '';
    lines.push(`  ${flag.padEnd(24)} ${o.help}${req}${def}`);
  }
  return lines.join('\n');
}

export function parseCommand(cmd: Command, argv: string[]): { opts: Record<string, string | boolean | undefined>; positionals: string[]; help: boolean } {
  const options: ParseArgsConfig['options'] = { config: { type: 'string' }, help: { type: 'boolean', short: 'h' } };
  for (const [k, o] of Object.entries(cmd.options)) options[k] = { type: o.type, ...(o.short ? { short: o.short } : {}) };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n\n${usage(cmd)}`, 'ERR_USAGE');
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values['help']) return { opts: {}, positionals: [], help: true };
  const fromFile: Record<string, string | boolean> = {};
  if (typeof values['config'] === 'string') {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(values['config'], 'utf8'));
    } catch (err) {
      throw new ConfigError(`--config ${values['config']}: ${(err as Error).message}`);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`--config ${values['config']}: not a JSON object`);
    for (const [k, v] of Object.entries(raw)) {
      const spec = cmd.options[k];
      if (!spec) throw new ConfigError(`--config: unknown option "${k}" for cyphonic ${cmd.name}`);
      if ((spec.type === 'string' && typeof v !== 'string') || (spec.type === 'boolean' && typeof v !== 'boolean')) {
        throw new ConfigError(`--config: option "${k}" must be a ${spec.type}`);
      }
      fromFile[k] = v as string | boolean;
    }
  }
  const opts: Record<string, string | boolean | undefined> = {};
  for (const [k, o] of Object.entries(cmd.options)) opts[k] = values[k] ?? fromFile[k] ?? o.default;
  for (const r of cmd.required ?? []) {
    if (opts[r] === undefined || opts[r] === '') throw new ConfigError(`missing --${r}\n\n${usage(cmd)}`, 'ERR_USAGE');
  }
  const want = cmd.positionals ?? [];
  if (parsed.positionals.length !== want.length) {
    throw new ConfigError(`expected ${want.length ? want.join(' ') : 'no arguments'}\n\n${usage(cmd)}`, 'ERR_USAGE');
  }
  return { opts, positionals: parsed.positionals, help: false };
}
