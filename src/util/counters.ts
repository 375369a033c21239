// Named monotonic counters (received, refused by reason, …) that services expose on their control API.
// Every parser that drops input increments one, so refusals are visible, never silent.

export class Counters {
  private readonly map = new Map<string, number>();

  inc(name: string, by = 1): void {
    this.map.set(name, (this.map.get(name) ?? 0) + by);
  }

  get(name: string): number {
    return this.map.get(name) ?? 0;
  }

  /** Sum of every counter whose name starts with `prefix`. */
  sum(prefix: string): number {
    let n = 0;
    for (const [k, v] of this.map) if (k.startsWith(prefix)) n += v;
    return n;
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.map].sort(([a], [b]) => a.localeCompare(b)));
  }
}

/** `rec`'s counters with `prefix` before each name (merging several components' counters into one status). */
export function prefixed(prefix: string, rec: Record<string, number> | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(rec ?? {})) out[prefix + k] = v;
  return out;
}
