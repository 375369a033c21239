// Where a first contact's milliseconds go, from the trace lines (src/util/trace.ts) that the cloud and every node
// of a bench wrote into their log files with CYPHONIC_TRACE=1: for each route node `initiator` selected, the steps
// of the route selection and the handshake in the order they happened across the three processes, as durations
// between consecutive steps. The clock is the machine's monotonic one, shared by every process.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

interface Event {
  label: string;
  at: number; // µs
  cpu: number | undefined; // µs of CPU the writing thread had used
  th: string; // the writing thread ('process' when cpu is the whole process's)
  id: string;
  peer: string | undefined;
  who: string; // log file name
}

/**
 * One step of a first contact: the time from the previous step's end (ms), and for a step that begins and ends in
 * one thread, the CPU time that thread used meanwhile (ms); the rest was waiting (for a CPU, a wake-up).
 */
export interface Step {
  step: string;
  ms: number;
  cpuMs: number | undefined;
}

type Role = 'initiator' | 'nms' | 'responder';
const I: Role = 'initiator';
const N: Role = 'nms';
const R: Role = 'responder';

/** The steps, in order: from trace label `from` (written by role `fromBy`) to `to` (by `toBy`). */
const STEPS: { step: string; from: string; fromBy: Role; to: string; toBy: Role }[] = [
  { step: 'Direction Request to the NMS', from: 'route.ask', fromBy: I, to: 'nms.request', toBy: N },
  { step: 'NMS: selection (policy, registrations, certificates)', from: 'nms.request', fromBy: N, to: 'nms.planned', toBy: N },
  { step: 'NMS: push sealed, Route Direction answered', from: 'nms.planned', fromBy: N, to: 'nms.answer', toBy: N },
  { step: 'Route Direction to the initiator', from: 'nms.answer', fromBy: N, to: 'route.got', toBy: I },
  { step: 'initiator: peer certificate, path, TunnelRequest signed', from: 'route.got', fromBy: I, to: 'hs.request', toBy: I },
  { step: 'TunnelRequest to the responder (held for its push)', from: 'hs.request', fromBy: I, to: 'hs.request.in', toBy: R },
  { step: 'responder: request verified, X25519, response signed', from: 'hs.request.in', fromBy: R, to: 'hs.request.opened', toBy: R },
  { step: 'responder: session handed to its engine', from: 'hs.request.opened', fromBy: R, to: 'hs.response', toBy: R },
  { step: 'responder engine installs it; TunnelResponse to the initiator', from: 'hs.response', fromBy: R, to: 'hs.response.in', toBy: I },
  { step: 'initiator: response verified', from: 'hs.response.in', fromBy: I, to: 'hs.response.opened', toBy: I },
  { step: 'initiator: session installed in its engine', from: 'hs.response.opened', fromBy: I, to: 'hs.installed', toBy: I },
];

export const TRACE_STEPS = STEPS.map((s) => s.step);

/**
 * The responder's side branch, which runs beside the initiator's steps from the NMS's push on: the TunnelRequest
 * waits for its end ("held for its push") when it arrives first.
 */
const PUSH_STEPS: typeof STEPS = [
  { step: 'push to the responder (NMS sent -> responder read it)', from: 'nms.push', fromBy: N, to: 'route.pushed', toBy: R },
  { step: 'responder: peer certificate checked', from: 'route.pushed', fromBy: R, to: 'cert.checked', toBy: R },
  { step: 'responder: peer and path set up, confirming', from: 'cert.checked', fromBy: R, to: 'route.confirm', toBy: R },
];

export const PUSH_TRACE_STEPS = PUSH_STEPS.map((s) => s.step);

function logFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) logFiles(p, out);
    else if (name.endsWith('.log')) out.push(p);
  }
  return out;
}

function readEvents(dir: string): Event[] {
  const events: Event[] = [];
  for (const file of logFiles(dir)) {
    const who = file.slice(file.lastIndexOf('/') + 1, -'.log'.length);
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (!line.startsWith('{"trace"')) continue;
      try {
        const r = JSON.parse(line) as { trace: string; at: number; cpu?: number; th?: number; cpuOf?: string; id: string; peer?: string };
        events.push({ label: r.trace, at: r.at, cpu: r.cpu, th: r.cpuOf === 'process' ? 'process' : String(r.th ?? 0), id: r.id, peer: r.peer, who });
      } catch {
        /* a line cut by a kill: skip it */
      }
    }
  }
  return events.sort((a, b) => a.at - b.at);
}

/**
 * The first contacts `initiator` (its log file's name) made to the targets in `asked` (names or addresses as it
 * asked for them): each a list of steps, or null for a target with no complete trace.
 */
export function firstContactSteps(dir: string, initiator: string, asked: readonly string[], which: 'main' | 'push' = 'main'): Map<string, Step[] | null> {
  const list = which === 'push' ? PUSH_STEPS : STEPS;
  const events = readEvents(dir);
  const out = new Map<string, Step[] | null>();
  for (const target of asked) {
    const ask = events.find((e) => e.who === initiator && e.label === 'route.ask' && e.id === target);
    const got = ask && events.find((e) => e.who === initiator && e.label === 'route.got' && e.peer === target && e.at >= ask.at);
    if (!ask || !got) {
      out.set(target, null);
      continue;
    }
    const pathId = got.id;
    const answer = events.find((e) => e.label === 'nms.answer' && e.id === pathId);
    const nmsKey = answer?.peer;
    // The first time each label appears for this path (or this request, at the NMS), by whom it must be.
    const first = (label: string, by: Role): Event | undefined =>
      events.find((e) => {
        if (e.label !== label || e.at < ask.at) return false;
        if (label === 'route.ask') return e === ask;
        if (label === 'nms.request') return e.id === nmsKey;
        if (e.id !== pathId) return false;
        return by === I ? e.who === initiator : by === R ? e.who !== initiator : true;
      });
    const steps: Step[] = [];
    let complete = true;
    for (const s of list) {
      const a = first(s.from, s.fromBy);
      const b = first(s.to, s.toBy);
      if (!a || !b) {
        complete = false;
        break;
      }
      const oneThread = a.who === b.who && a.th === b.th && a.cpu !== undefined && b.cpu !== undefined;
      const cpuMs = oneThread ? (b.cpu! - a.cpu!) / 1000 : undefined;
      steps.push({ step: s.step, ms: (b.at - a.at) / 1000, cpuMs });
    }
    out.set(target, complete ? steps : null);
  }
  return out;
}
