// Reads V8's `--trace-gc-nvp` lines (one name=value line per GC, written to stdout by a process started with that
// flag) and sums them per time window: how often the young generation was collected and how long the process stood
// still for it, the full GCs, and what was promoted. bench/cloud --gc uses it per phase for the NMS instances, to
// show how much of their time and of their latency tail the GC takes (docs/PERFORMANCE.md, "Cloud").

/** One GC as the line gives it. */
export interface GcEvent {
  /** ms since the isolate started (the line's own clock). */
  at: number;
  /** 's': scavenge (young generation); anything else is a full GC ('mc', 'ms'). */
  kind: string;
  /** The main thread's pause, ms. */
  pauseMs: number;
  /** Bytes moved to the old generation. */
  promoted: number;
  /** Heap size after the GC, bytes. */
  sizeAfter: number;
}

/** What happened in one window. */
export interface GcWindow {
  scavenges: number;
  scavengeMeanMs: number;
  scavengeMaxMs: number;
  fullGcs: number;
  fullMaxMs: number;
  promotedBytes: number;
  /** The heap after the last GC in the window (bytes), or NaN with none. */
  sizeAfter: number;
}

const LINE = /\]\s+(\d+(?:\.\d+)?) ms: (pause=.*)$/;

/** The GC events in `text` (lines that are not `--trace-gc-nvp` lines are skipped). */
export function parseGcNvp(text: string): GcEvent[] {
  const out: GcEvent[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const kv = new Map<string, string>();
    for (const pair of m[2]!.split(' ')) {
      const eq = pair.indexOf('=');
      if (eq > 0) kv.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    const kind = kv.get('gc');
    const pause = Number(kv.get('pause'));
    if (!kind || !Number.isFinite(pause)) continue;
    out.push({ at: Number(m[1]), kind, pauseMs: pause, promoted: Number(kv.get('promoted') ?? 0) || 0, sizeAfter: Number(kv.get('total_size_after') ?? NaN) });
  }
  return out;
}

/** Sums the events with `from` < at ≤ `to` (the events' clock). */
export function gcWindow(events: GcEvent[], from: number, to: number): GcWindow {
  let scavenges = 0;
  let scavengeSum = 0;
  let scavengeMax = 0;
  let fullGcs = 0;
  let fullMax = 0;
  let promoted = 0;
  let sizeAfter = NaN;
  for (const e of events) {
    if (e.at <= from || e.at > to) continue;
    if (e.kind === 's') {
      scavenges++;
      scavengeSum += e.pauseMs;
      scavengeMax = Math.max(scavengeMax, e.pauseMs);
    } else {
      fullGcs++;
      fullMax = Math.max(fullMax, e.pauseMs);
    }
    promoted += e.promoted;
    sizeAfter = e.sizeAfter;
  }
  return { scavenges, scavengeMeanMs: scavenges ? scavengeSum / scavenges : NaN, scavengeMaxMs: scavengeMax, fullGcs, fullMaxMs: fullMax, promotedBytes: promoted, sizeAfter };
}
