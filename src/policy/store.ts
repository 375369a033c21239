// The policy as the cloud keeps it: the running policy in the store's meta table (key "policy"; absent = ALLOW_ALL)
// and node tags (node_tags). Shared by the admin commands (admin.ts) and the NMS (route selection).

import type { Store } from '../store/types.js';
import { ALLOW_ALL, allowedPorts, connected, parsePolicy, POLICY_META_KEY, policyJson, validatePolicy, type Policy, type Subject } from './policy.js';

/** The last policy text parsed and its result: route selection reads the policy every time, parses it once. */
let parsed: { text: string; policy: Policy } | null = null;

/** The running policy; ALLOW_ALL when none was ever set. */
export async function loadPolicy(store: Store): Promise<Policy> {
  const text = await store.getMeta(POLICY_META_KEY);
  if (text === null) return ALLOW_ALL;
  if (parsed?.text === text) return parsed.policy;
  const policy = validatePolicy(JSON.parse(text));
  parsed = { text, policy };
  return policy;
}

/** Meta key the NMS watches: changed by every policy or tag change, so running nodes are told (PolicyUpdate). */
export const POLICY_REV_KEY = 'policy.rev';

/** Marks a change of the policy or of tags; a running NMS pushes the new filters within about a second. */
export async function bumpPolicyRev(store: Store): Promise<void> {
  await store.setMeta(POLICY_REV_KEY, `${Date.now()}-${Math.random().toString(36).slice(2, 10)}`);
}

/** Parses `text` and, only if it is a valid policy, makes it the running one. PolicyError otherwise (nothing changes). */
export async function setPolicy(store: Store, text: string): Promise<Policy> {
  const p = parsePolicy(text);
  await store.setMeta(POLICY_META_KEY, policyJson(p));
  await bumpPolicyRev(store);
  return p;
}

/** Replaces a node's tags (already validated) and tells running NMSs. */
export async function setTags(store: Store, name: string, tags: string[]): Promise<void> {
  await store.setNodeTags(name, tags);
  await bumpPolicyRev(store);
}

/** The policy's view of node `name`: its name and tags (a name the cloud does not know has no tags). */
export async function subject(store: Store, name: string): Promise<Subject> {
  return { name, tags: await store.getNodeTags(name) };
}

/** What the NMS tells each end of a path: the ports the *other* end may open flows to it on. */
export interface PairAllowance {
  connected: boolean;
  /** Ports `a` may open to `b` on (what b's filter lets in from a). */
  aToB: string[];
  bToA: string[];
}

export async function pairAllowance(store: Store, a: string, b: string): Promise<PairAllowance> {
  const [policy, sa, sb] = await Promise.all([loadPolicy(store), subject(store, a), subject(store, b)]);
  return { connected: connected(policy, sa, sb), aToB: allowedPorts(policy, sa, sb), bToA: allowedPorts(policy, sb, sa) };
}
