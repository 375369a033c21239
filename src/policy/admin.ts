// The cloud side of the policy: the running policy in the store (meta key "policy"; absent = ALLOW_ALL), node tags,
// and what `cloud policy set/show/check` and `cloud tags` do (the stored policy itself: store.ts, which the NMS reads).

import { join } from 'node:path';
import { CLOUD_CONFIG_FILE, loadCloudConfig } from '../config/cloud.js';
import { validateNodeName } from '../config/token.js';
import { openCloudStore } from '../cloud/cloud.js';
import { TAG_PATTERN, type Store } from '../store/types.js';
import { ConfigError } from '../util/errors.js';
import { decide, parseFlow, type Decision, type Policy, type Subject } from './policy.js';
import { loadPolicy, setPolicy, setTags, subject } from './store.js';

/** "a,b" → ['a', 'b'] checked against TAG_PATTERN (ConfigError naming the bad one), deduplicated and sorted. */
export function parseTags(list: string[]): string[] {
  for (const t of list) if (!TAG_PATTERN.test(t)) throw new ConfigError(`--tags: "${t}" is not a tag (a-z, 0-9, '-', 1-63 characters)`, 'ERR_BAD_TAG');
  return [...new Set(list)].sort();
}

export interface CheckResult extends Decision {
  from: Subject;
  to: Subject;
  flow: string;
  /** The deciding rule as JSON text (null: no rule allows it). */
  ruleText: string | null;
}

/** `cloud policy check FROM TO PORT`. */
export async function checkFlow(store: Store, from: string, to: string, flow: string): Promise<CheckResult> {
  const f = parseFlow(flow);
  const [policy, a, b] = await Promise.all([loadPolicy(store), subject(store, from), subject(store, to)]);
  const d = decide(policy, a, b, f);
  return { ...d, from: a, to: b, flow, ruleText: d.rule === null ? null : JSON.stringify(policy.allow[d.rule]) };
}

async function withStore<T>(dir: string, db: string | undefined, f: (store: Store) => Promise<T>): Promise<T> {
  const cfg = loadCloudConfig(join(dir, CLOUD_CONFIG_FILE));
  const store = await openCloudStore(dir, cfg, db);
  try {
    return await f(store);
  } finally {
    await store.close();
  }
}

export const adminSetPolicy = (dir: string, text: string, db?: string): Promise<Policy> => withStore(dir, db, (s) => setPolicy(s, text));
export const adminShowPolicy = (dir: string, db?: string): Promise<Policy> => withStore(dir, db, (s) => loadPolicy(s));
export const adminCheck = (dir: string, from: string, to: string, flow: string, db?: string): Promise<CheckResult> =>
  withStore(dir, db, (s) => checkFlow(s, from, to, flow));

/** `cloud tags NAME --set a,b` (also `enroll --tags`, `general-node add --tags`). */
export function adminSetTags(dir: string, name: string, tags: string[], db?: string): Promise<string[]> {
  validateNodeName(name);
  const clean = parseTags(tags);
  return withStore(dir, db, async (s) => {
    await setTags(s, name, clean);
    return clean;
  });
}
