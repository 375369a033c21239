// The policy as the cloud keeps it: the running policy in the store's meta table (key "policy"; absent = ALLOW_ALL)
// and node tags (node_tags). Shared by the admin commands (admin.ts) and the NMS (route selection).

import type { Store } from '../store/types.js';
import { ALLOW_ALL, allowedPorts, connected, parsePolicy, POLICY_META_KEY, policyJson, validatePolicy, type Policy, type Subject } from './policy.js';

/** The running policy; ALLOW_ALL when none was ever set. */
export async function loadPolicy(store: Store): Promise<Policy> {
  const text = await store.getMeta(POLICY_META_KEY);
  if (text === null) return ALLOW_ALL;
  return validatePolicy(JSON.parse(text));
}

/** Parses `text` and, only if it is a valid policy, makes it the running one. PolicyError otherwise (nothing changes). */
export async function setPolicy(store: Store, text: string): Promise<Policy> {
  const p = parsePolicy(text);
  await store.setMeta(POLICY_META_KEY, policyJson(p));
  return p;
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
