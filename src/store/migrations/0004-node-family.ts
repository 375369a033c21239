// Migration 4: nodes.family — which virtual address families a node uses ('dual', 'v4' or 'v6').
// Every node still gets both addresses allocated (so a family can be turned on later without renumbering);
// a general node set to 'v4' or 'v6' is served only that family by its adapter (DHCPv4 vs DHCPv6).

import type { Migration } from './types.js';

const DDL = `ALTER TABLE nodes ADD COLUMN family TEXT NOT NULL DEFAULT 'dual' CHECK (family IN ('dual', 'v4', 'v6'));\n`;

export const nodeFamily: Migration = {
  version: 4,
  name: 'node-family',
  sqlite: DDL,
  postgres: DDL,
};
