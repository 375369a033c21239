// The access policy: who may open flows to whom, on which ports. Pure (no I/O): the parser for the JSON policy file,
// the evaluator (`decide`, `allowedPorts`, `connected`) and the compact port-list text the NMS hands to nodes.
//
//   {"allow": [{"from": ["tag:ops", "alpha"], "to": ["tag:cam"], "ports": ["icmp", "tcp:22", "tcp:8000-8100", "udp:*"]}]}
//
// Selectors: "*" (every node), a node or general-node name, "tag:NAME". Ports: "*", "icmp" (ICMP and ICMPv6),
// "tcp:N", "tcp:N-M", "tcp:*", and the same for "udp:". A rule allows NEW flows from a `from` node to a `to` node;
// replies to an allowed flow pass (the node's data-plane filter is stateful). Nothing is allowed that no rule allows.
// A cloud without a stored policy runs ALLOW_ALL.

import { CyphonicError } from '../util/errors.js';

/** A refused policy file; the message names the problem (and where: `allow[2].ports[0]`). */
export class PolicyError extends CyphonicError {
  constructor(message: string, code = 'ERR_POLICY') {
    super(code, message);
    this.name = 'PolicyError';
  }
}

export interface PolicyRule {
  from: string[];
  to: string[];
  ports: string[];
}

export interface Policy {
  allow: PolicyRule[];
}

/** What a fresh cloud runs: everyone to everyone on every port. */
export const ALLOW_ALL: Policy = { allow: [{ from: ['*'], to: ['*'], ports: ['*'] }] };

/** One port selector, parsed. `proto: 'any'` is "*" (every protocol and port). lo..hi are inclusive (0..65535). */
export interface PortRange {
  proto: 'any' | 'icmp' | 'tcp' | 'udp';
  lo: number;
  hi: number;
}

/** Tunables: bounds that keep a policy cheap to evaluate and to carry in a Route Direction. */
export const MAX_RULES = 1000;
export const MAX_SELECTORS = 256;
export const MAX_PORTS = 64;
/** Bytes of a policy file `policy set` reads. */
export const MAX_POLICY_BYTES = 1 << 20;

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const TAG_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** The node a selector is matched against. */
export interface Subject {
  name: string;
  tags: readonly string[];
}

function portNumber(text: string, where: string): number {
  if (!/^[0-9]{1,5}$/.test(text) || Number(text) > 65535) throw new PolicyError(`${where}: "${text}" is not a port number (0..65535)`);
  return Number(text);
}

/** Parses one port selector ("*", "icmp", "tcp:22", "tcp:8000-8100", "udp:*"). PolicyError names what is wrong. */
export function parsePort(text: string, where = 'port'): PortRange {
  if (typeof text !== 'string') throw new PolicyError(`${where}: must be a string`);
  if (text === '*') return { proto: 'any', lo: 0, hi: 65535 };
  if (text === 'icmp') return { proto: 'icmp', lo: 0, hi: 65535 };
  const m = /^(tcp|udp):(.*)$/.exec(text);
  if (!m) throw new PolicyError(`${where}: "${text}" is not a port (use *, icmp, tcp:N, tcp:N-M, tcp:*, udp:…)`);
  const proto = m[1] as 'tcp' | 'udp';
  const range = m[2]!;
  if (range === '*') return { proto, lo: 0, hi: 65535 };
  const dash = range.indexOf('-');
  if (dash < 0) {
    const n = portNumber(range, where);
    return { proto, lo: n, hi: n };
  }
  const lo = portNumber(range.slice(0, dash), where);
  const hi = portNumber(range.slice(dash + 1), where);
  if (lo > hi) throw new PolicyError(`${where}: range "${text}" runs backwards`);
  return { proto, lo, hi };
}

function checkSelector(s: unknown, where: string): string {
  if (typeof s !== 'string') throw new PolicyError(`${where}: must be a string`);
  if (s === '*') return s;
  if (s.startsWith('tag:')) {
    if (!TAG_RE.test(s.slice(4))) throw new PolicyError(`${where}: "${s}" is not a valid tag (a-z, 0-9, '-', 1-63 characters)`);
    return s;
  }
  if (!NAME_RE.test(s)) throw new PolicyError(`${where}: "${s}" is not a node name, "tag:NAME" or "*"`);
  return s;
}

function stringList(v: unknown, where: string, max: number, check: (s: unknown, w: string) => string): string[] {
  if (!Array.isArray(v)) throw new PolicyError(`${where}: must be a list`);
  if (v.length === 0) throw new PolicyError(`${where}: must not be empty`);
  if (v.length > max) throw new PolicyError(`${where}: more than ${max} entries`);
  return v.map((s, i) => check(s, `${where}[${i}]`));
}

/** Validates a parsed JSON value as a policy; returns a clean copy. */
export function validatePolicy(v: unknown): Policy {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new PolicyError('the policy must be a JSON object {"allow": [...]}');
  for (const k of Object.keys(v)) if (k !== 'allow') throw new PolicyError(`unknown key "${k}" (only "allow")`);
  const allow = (v as { allow?: unknown }).allow;
  if (allow === undefined) throw new PolicyError('missing "allow" (a list of rules; [] allows nothing)');
  if (!Array.isArray(allow)) throw new PolicyError('"allow" must be a list of rules');
  if (allow.length > MAX_RULES) throw new PolicyError(`"allow" has more than ${MAX_RULES} rules`);
  return {
    allow: allow.map((r: unknown, i): PolicyRule => {
      const where = `allow[${i}]`;
      if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new PolicyError(`${where}: a rule must be an object {"from", "to", "ports"}`);
      for (const k of Object.keys(r)) if (!['from', 'to', 'ports'].includes(k)) throw new PolicyError(`${where}: unknown key "${k}"`);
      const o = r as Record<string, unknown>;
      for (const k of ['from', 'to', 'ports']) if (!(k in o)) throw new PolicyError(`${where}: missing "${k}"`);
      return {
        from: stringList(o['from'], `${where}.from`, MAX_SELECTORS, checkSelector),
        to: stringList(o['to'], `${where}.to`, MAX_SELECTORS, checkSelector),
        ports: stringList(o['ports'], `${where}.ports`, MAX_PORTS, (s, w) => {
          parsePort(s as string, w);
          return s as string;
        }),
      };
    }),
  };
}

/** Parses the text of a policy file. PolicyError (naming the problem) for bad JSON or a bad policy. */
export function parsePolicy(text: string): Policy {
  if (text.length > MAX_POLICY_BYTES) throw new PolicyError(`the policy file is larger than ${MAX_POLICY_BYTES} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new PolicyError(`not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  return validatePolicy(v);
}

export function selectorMatches(selector: string, n: Subject): boolean {
  if (selector === '*') return true;
  if (selector.startsWith('tag:')) return n.tags.includes(selector.slice(4));
  return selector === n.name;
}

function ruleApplies(r: PolicyRule, from: Subject, to: Subject): boolean {
  return r.from.some((s) => selectorMatches(s, from)) && r.to.some((s) => selectorMatches(s, to));
}

/** What a flow is: ICMP (either family), or TCP/UDP to a destination port. */
export type Flow = { proto: 'icmp' } | { proto: 'tcp' | 'udp'; port: number };

/** "icmp", "tcp:22", "udp:53" → Flow (PolicyError otherwise). */
export function parseFlow(text: string): Flow {
  if (text === 'icmp') return { proto: 'icmp' };
  const m = /^(tcp|udp):([0-9]{1,5})$/.exec(text);
  if (!m || Number(m[2]) > 65535) throw new PolicyError(`"${text}" is not a flow to check (icmp, tcp:N or udp:N)`);
  return { proto: m[1] as 'tcp' | 'udp', port: Number(m[2]) };
}

export function portMatches(p: PortRange, f: Flow): boolean {
  if (p.proto === 'any') return true;
  if (p.proto !== f.proto) return false;
  return f.proto === 'icmp' || (f.port >= p.lo && f.port <= p.hi);
}

export interface Decision {
  allowed: boolean;
  /** Index of the deciding rule in `allow` (the first that allows), null when none does (denied by default). */
  rule: number | null;
  /** The deciding port selector of that rule. */
  port: string | null;
}

/** May `from` open this flow to `to`? The first rule that allows it decides. */
export function decide(policy: Policy, from: Subject, to: Subject, flow: Flow): Decision {
  for (let i = 0; i < policy.allow.length; i++) {
    const r = policy.allow[i]!;
    if (!ruleApplies(r, from, to)) continue;
    const p = r.ports.find((s) => portMatches(parsePort(s), flow));
    if (p !== undefined) return { allowed: true, rule: i, port: p };
  }
  return { allowed: false, rule: null, port: null };
}

/** Every port selector `from` may open flows to `to` on (union over the rules that apply; "*" alone when one says so). */
export function allowedPorts(policy: Policy, from: Subject, to: Subject): string[] {
  const out = new Set<string>();
  for (const r of policy.allow) {
    if (!ruleApplies(r, from, to)) continue;
    for (const p of r.ports) {
      if (p === '*') return ['*'];
      out.add(p);
    }
  }
  return [...out];
}

/** Whether any rule connects the two nodes in either direction (the NMS selects routes only for those). */
export function connected(policy: Policy, a: Subject, b: Subject): boolean {
  return policy.allow.some((r) => ruleApplies(r, a, b) || ruleApplies(r, b, a));
}

/** The compact text carried to nodes ("icmp,tcp:22,udp:*"; "" = nothing). */
export function formatPortList(ports: readonly string[]): string {
  return ports.join(',');
}

/** Parses formatPortList's text (PolicyError on anything else). */
export function parsePortList(text: string): PortRange[] {
  if (text === '') return [];
  return text.split(',').map((p, i) => parsePort(p, `ports[${i}]`));
}

/** Canonical JSON of a policy (what the cloud stores and `policy show --json` prints). */
export function policyJson(p: Policy, pretty = false): string {
  return JSON.stringify(p, null, pretty ? 2 : undefined);
}

/** The store's meta key of the running policy (absent: ALLOW_ALL). */
export const POLICY_META_KEY = 'policy';
