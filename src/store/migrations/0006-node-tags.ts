// Migration 6: node_tags — the policy tags of each node or general node (`cloud enroll NAME --tags`,
// `cloud tags NAME --set`). Keyed by node name, not id: tags may be given at enrollment, before the node row exists.

import type { Migration } from './types.js';

const DDL = `CREATE TABLE node_tags (
  name TEXT NOT NULL,
  tag  TEXT NOT NULL,
  PRIMARY KEY (name, tag)
);
`;

export const nodeTags: Migration = {
  version: 6,
  name: 'node-tags',
  sqlite: DDL,
  postgres: DDL,
};
