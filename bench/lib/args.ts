// Command-line integers for the bench scripts: `--name N`, with a default and bounds; a bad value is an error that
// names the flag (a bench never runs on a guess).

/** The integer after `flag` (e.g. '--peers') in process.argv, or `def` when the flag is absent. */
export function intArg(flag: string, def: number, min = 1, max = 1_000_000): number {
  const i = process.argv.indexOf(flag);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < min || v > max) throw new Error(`${flag}: an integer in ${min}..${max}`);
  return v;
}
