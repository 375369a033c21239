// The OpenAPI 3 document of /api/v1/ (served at /api/v1/openapi.json), written by hand next to the routes it
// describes (routes.ts); test/unit/api/api.test.ts checks that every route is in it and every path in it is a route.

const error = { $ref: '#/components/schemas/Error' };
// Every authenticated operation may also answer 429 (too many wrong tokens from the client's address).
const errors = (...codes: number[]): Record<string, unknown> =>
  Object.fromEntries((codes.includes(401) ? [...codes, 429] : codes).map((c) => [String(c), { description: DESCRIPTIONS[c] ?? 'error', content: { 'application/json': { schema: error } } }]));
const DESCRIPTIONS: Record<number, string> = {
  400: 'bad body (ERR_BAD_BODY, ERR_BAD_JSON, ERR_NAME, ERR_BAD_TAG, ERR_BAD_MAC, ERR_BAD_ADAPTER, ERR_POLICY, ERR_CONFIG); nothing changed',
  401: 'no or wrong bearer token (ERR_UNAUTHORIZED)',
  404: 'unknown node (ERR_UNKNOWN_NODE)',
  409: 'conflict (ERR_NAME_TAKEN, ERR_MAC_TAKEN, ERR_POOL_EXHAUSTED; ERR_NOT_GENERAL: not a general node)',
  413: 'body larger than 256 KiB (ERR_BODY_TOO_LARGE)',
  415: 'body not application/json (ERR_CONTENT_TYPE)',
  429: 'more than 10 wrong bearer tokens from this address within a minute (ERR_RATE_LIMITED; Retry-After says when to try again)',
};
const json = (schema: unknown, description = 'OK'): Record<string, unknown> => ({ description, content: { 'application/json': { schema } } });
const body = (schema: unknown): Record<string, unknown> => ({ required: true, content: { 'application/json': { schema } } });
const str = { type: 'string' };
const nullable = (t: string): Record<string, unknown> => ({ type: [t, 'null'] });
const tags = { type: 'array', items: { type: 'string', pattern: '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$' }, maxItems: 64 };
const name = { type: 'string', pattern: '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$' };

export const OPENAPI = {
  openapi: '3.1.0',
  info: { title: 'cyphonic cloud API', version: '1', description: 'Administration of a cyphonic cloud. Every operation but this document wants `Authorization: Bearer TOKEN` (DIR/admin-token).' },
  security: [{ bearer: [] }],
  paths: {
    '/api/v1/nodes': {
      get: { summary: 'Nodes (as `cloud nodes --json`)', responses: { 200: json({ type: 'array', items: { $ref: '#/components/schemas/Node' } }), ...errors(401) } },
    },
    '/api/v1/tokens': {
      post: {
        summary: 'A one-time enrollment token for a node (as `cloud enroll NAME --tags …`)',
        requestBody: body({ type: 'object', additionalProperties: false, required: ['name'], properties: { name, tags } }),
        responses: {
          201: json({ type: 'object', required: ['token', 'name', 'tags', 'qr'], properties: { token: str, name: str, tags, qr: { type: 'string', description: 'the token as a QR code (SVG document)' } } }, 'created'),
          ...errors(400, 401, 413, 415),
        },
      },
    },
    '/api/v1/nodes/{name}/revoke': {
      post: {
        summary: "Revoke the node's certificates (as `cloud revoke NAME`)",
        parameters: [{ name: 'name', in: 'path', required: true, schema: name }],
        responses: { 200: json({ type: 'object', properties: { name: str, revokedCertificates: { type: 'integer' } } }), ...errors(400, 401, 404) },
      },
    },
    '/api/v1/nodes/{name}/peers': {
      get: {
        summary: "The node's peers and their paths as this cloud instance knows them: its NMS's last route selection with each (direct / punched / relayed, the relay) and, relayed by this process's TRS, the bytes relayed. RTT is not reported to the cloud (null)",
        parameters: [{ name: 'name', in: 'path', required: true, schema: name }],
        responses: { 200: json({ $ref: '#/components/schemas/NodePeers' }), ...errors(400, 401, 404) },
      },
    },
    '/api/v1/relays': {
      get: { summary: 'Registered TRS processes (as `cloud relays --json`)', responses: { 200: json({ type: 'array', items: { $ref: '#/components/schemas/Relay' } }), ...errors(401) } },
    },
    '/api/v1/general-nodes': {
      get: { summary: 'General nodes (as `cloud general-node list --json`)', responses: { 200: json({ type: 'array', items: { $ref: '#/components/schemas/GeneralNode' } }), ...errors(401) } },
      post: {
        summary: 'Define a general node served by an adapter (enrolled now or later); a running adapter learns of it within about a second',
        requestBody: body({
          type: 'object',
          additionalProperties: false,
          required: ['name', 'mac', 'adapter'],
          properties: { name, mac: { type: 'string', example: '02:00:5e:10:00:01' }, adapter: name, family: { enum: ['dual', 'v4', 'v6'], default: 'dual' }, tags },
        }),
        responses: { 201: json({ $ref: '#/components/schemas/GeneralNode' }, 'created'), ...errors(400, 401, 409, 413, 415) },
      },
    },
    '/api/v1/general-nodes/{name}': {
      delete: {
        summary: 'Remove a general node (as `cloud general-node remove NAME`): its adapter stops serving it and its peers close their tunnels within about a second',
        parameters: [{ name: 'name', in: 'path', required: true, schema: name }],
        responses: { 200: json({ $ref: '#/components/schemas/GeneralNode' }, 'removed (the record as it was)'), ...errors(400, 401, 404, 409) },
      },
    },
    '/api/v1/policy': {
      get: { summary: 'The running policy (a fresh cloud allows everything)', responses: { 200: json({ $ref: '#/components/schemas/Policy' }), ...errors(401) } },
      put: {
        summary: 'Replace the running policy (refused with the problem named if invalid; the old one stays)',
        requestBody: body({ $ref: '#/components/schemas/Policy' }),
        responses: { 200: json({ $ref: '#/components/schemas/Policy' }), ...errors(400, 401, 413, 415) },
      },
    },
    '/api/v1/openapi.json': { get: { summary: 'This document', security: [], responses: { 200: json({ type: 'object' }) } } },
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'the contents of DIR/admin-token (`cloud admin-token --rotate` replaces it)' } },
    schemas: {
      Error: {
        type: 'object',
        required: ['error'],
        properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string', example: 'ERR_UNAUTHORIZED' }, message: str } } },
      },
      Node: {
        type: 'object',
        properties: {
          id: { type: 'integer' }, name: str, fqdn: str, vip4: str, vip6: str, online: { type: 'boolean' }, nat: nullable('boolean'),
          observed: nullable('string'), families: { type: 'array', items: { enum: ['v4', 'v6'] }, description: 'underlay address families the node registered with' }, mapping: { enum: ['independent', 'dependent', null] }, lastSeen: nullable('string'), tags, nms: nullable('string'),
        },
      },
      NodePeers: {
        type: 'object',
        properties: {
          name: str,
          source: str,
          peers: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                name: str, online: { type: 'boolean' }, vip4: str, vip6: str, path: { enum: ['direct', 'punched', 'relayed'] }, initiator: { type: 'boolean' },
                relayId: nullable('string'), relay: nullable('string'), why: str, selectedAt: str,
                relayed: { type: ['object', 'null'], properties: { packets: { type: 'integer' }, bytes: { type: 'integer' }, lastActive: str } }, rttMs: { type: 'null' },
              },
            },
          },
        },
      },
      Relay: { type: 'object', properties: { id: str, endpoints: { type: 'array', items: str }, load: { type: 'integer' }, live: { type: 'boolean' }, startedAt: str, heartbeatAt: str } },
      GeneralNode: {
        type: 'object',
        properties: { id: { type: 'integer' }, name: str, fqdn: str, mac: str, adapter: str, family: { enum: ['dual', 'v4', 'v6'] }, vip4: nullable('string'), vip6: nullable('string'), tags },
      },
      Policy: {
        type: 'object',
        required: ['allow'],
        properties: {
          allow: {
            type: 'array',
            items: { type: 'object', required: ['from', 'to', 'ports'], properties: { from: { type: 'array', items: str }, to: { type: 'array', items: str }, ports: { type: 'array', items: str } } },
          },
        },
      },
    },
  },
} as const;
