// The /api/v1/ routes over an open store: the same operations as the `cloud …` commands (cloud.ts, general-nodes.ts,
// policy/), each body validated field by field before anything is written (a refused request changes nothing).

import type { CloudConfig } from '../../config/cloud.js';
import { validateNodeName } from '../../config/token.js';
import { parseTags } from '../../policy/admin.js';
import { policyJson } from '../../policy/policy.js';
import { loadPolicy, setPolicy, setTags } from '../../policy/store.js';
import type { Store } from '../../store/types.js';
import { ConfigError } from '../../util/errors.js';
import { enrollmentToken, listNodes, listRelays, revokeNodeIn } from '../cloud.js';
import { addGeneralNode, listGeneralNodes, normalizeGeneralMac, parseFamily, removeGeneralNode } from '../general-nodes.js';
import { nodePeers, tokenQr, type PeerDeps } from '../console/peers.js';
import { OPENAPI } from './openapi.js';
import { ApiError, type ApiRoute } from './server.js';

export interface RouteDeps {
  store: Store;
  config: CloudConfig;
  /** DIR (the root certificate for enrollment tokens). */
  dir: string;
  /** What this process knows of each node's paths (GET /nodes/NAME/peers): its NMS's selections, its TRS's counts. */
  peers?: PeerDeps;
}

/** `body` as an object with only `allowed` keys; ApiError 400 otherwise. */
function object(body: unknown, allowed: string[], required: string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'ERR_BAD_BODY', 'the body must be a JSON object');
  const o = body as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new ApiError(400, 'ERR_BAD_BODY', `unknown field "${k}" (allowed: ${allowed.join(', ')})`);
  for (const k of required) if (o[k] === undefined) throw new ApiError(400, 'ERR_BAD_BODY', `missing field "${k}"`);
  return o;
}

function string(o: Record<string, unknown>, k: string): string | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new ApiError(400, 'ERR_BAD_BODY', `field "${k}" must be a string`);
  return v;
}

function tags(o: Record<string, unknown>): string[] | null {
  const v = o['tags'];
  if (v === undefined) return null;
  if (!Array.isArray(v) || v.length > 64 || !v.every((t) => typeof t === 'string')) throw new ApiError(400, 'ERR_BAD_BODY', 'field "tags" must be an array of at most 64 strings');
  return parseTags(v as string[]);
}

export function apiRoutes(d: RouteDeps): ApiRoute[] {
  const { store, config } = d;
  return [
    { method: 'GET', path: '/api/v1/openapi.json', public: true, handle: () => ({ body: OPENAPI }) },
    { method: 'GET', path: '/api/v1/nodes', handle: async () => ({ body: await listNodes(store, config) }) },
    {
      method: 'POST',
      path: '/api/v1/tokens',
      async handle(req) {
        const o = object(req.body, ['name', 'tags'], ['name']);
        const name = validateNodeName(string(o, 'name')!);
        const t = tags(o); // checked before the token exists
        const token = await enrollmentToken(store, config, d.dir, name);
        if (t !== null) await setTags(store, name, t);
        return { status: 201, body: { token, name, tags: t ?? (await store.getNodeTags(name)), qr: await tokenQr(token) } };
      },
    },
    {
      method: 'POST',
      path: '/api/v1/nodes/:name/revoke',
      async handle(req) {
        if (req.body !== undefined) object(req.body, [], []);
        const name = validateNodeName(req.params['name']!);
        const certificates = await revokeNodeIn(store, name);
        return { body: { name, revokedCertificates: certificates } };
      },
    },
    { method: 'GET', path: '/api/v1/nodes/:name/peers', handle: async (req) => ({ body: await nodePeers(store, config, validateNodeName(req.params['name']!), d.peers ?? {}) }) },
    { method: 'GET', path: '/api/v1/relays', handle: async () => ({ body: await listRelays(store) }) },
    { method: 'GET', path: '/api/v1/general-nodes', handle: async () => ({ body: await listGeneralNodes(store, config.domain) }) },
    {
      method: 'POST',
      path: '/api/v1/general-nodes',
      async handle(req) {
        const o = object(req.body, ['name', 'mac', 'adapter', 'family', 'tags'], ['name', 'mac', 'adapter']);
        const input = { name: validateNodeName(string(o, 'name')!), mac: normalizeGeneralMac(string(o, 'mac')!), adapter: validateNodeName(string(o, 'adapter')!), family: parseFamily(string(o, 'family')) };
        const t = tags(o);
        const row = await addGeneralNode(store, config.pools, config.domain, input);
        if (t !== null) await setTags(store, row.name, t);
        return { status: 201, body: { ...row, tags: t ?? [] } };
      },
    },
    {
      method: 'DELETE',
      path: '/api/v1/general-nodes/:name',
      async handle(req) {
        try {
          return { body: await removeGeneralNode(store, config.domain, validateNodeName(req.params['name']!)) };
        } catch (err) {
          if (err instanceof ConfigError && err.code === 'ERR_NOT_GENERAL') throw new ApiError(409, err.code, err.message);
          throw err;
        }
      },
    },
    { method: 'GET', path: '/api/v1/policy', handle: async () => ({ body: JSON.parse(policyJson(await loadPolicy(store))) as unknown }) },
    {
      method: 'PUT',
      path: '/api/v1/policy',
      async handle(req) {
        if (req.body === undefined) throw new ApiError(400, 'ERR_BAD_BODY', 'send the policy as the body');
        const p = await setPolicy(store, JSON.stringify(req.body)); // PolicyError (400) names the problem; nothing changes
        return { body: JSON.parse(policyJson(p)) as unknown };
      },
    },
  ];
}
