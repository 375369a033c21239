// Ordered list of schema migrations for every backend, plus the bootstrap table that records them.
// Append new migrations at the end with the next version number; released ones are immutable.

import { initial } from './0001-initial.js';
import { relayServers } from './0002-relay-servers.js';
import { natMapping } from './0003-nat-mapping.js';
import { nodeFamily } from './0004-node-family.js';
import { cloudInstances } from './0005-cloud-instances.js';
import { nodeTags } from './0006-node-tags.js';
import type { Migration } from './types.js';

export type { Migration } from './types.js';

/** Created before anything else (same text in both dialects); one row per applied migration. */
export const SCHEMA_MIGRATIONS_DDL = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  applied_at BIGINT NOT NULL
)`;

export const MIGRATIONS: readonly Migration[] = [initial, relayServers, natMapping, nodeFamily, cloudInstances, nodeTags];

// Guard against editing mistakes: versions must be 1, 2, 3… in order.
MIGRATIONS.forEach((m, i) => {
  if (m.version !== i + 1) throw new Error(`migration list out of order at ${m.name}: version ${m.version}, expected ${i + 1}`);
});

/** Highest schema version this build knows. */
export const LATEST_SCHEMA_VERSION = MIGRATIONS.length;
