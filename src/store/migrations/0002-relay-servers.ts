// Migration 2: the relay_servers table, where every running TRS process registers itself and heartbeats its load.
// Both dialects side by side, semantically identical (times BIGINT unix ms; endpoints a JSON list of {address, port}).

import type { Migration } from './types.js';

export const relayServers: Migration = {
  version: 2,
  name: 'relay-servers',
  sqlite: `
CREATE TABLE relay_servers (
  id           TEXT PRIMARY KEY,
  endpoints    TEXT NOT NULL,
  load         INTEGER NOT NULL CHECK (load >= 0),
  started_at   BIGINT NOT NULL,
  heartbeat_at BIGINT NOT NULL
);
CREATE INDEX relay_servers_heartbeat_at ON relay_servers (heartbeat_at);
`,
  postgres: `
CREATE TABLE relay_servers (
  id           TEXT PRIMARY KEY,
  endpoints    TEXT NOT NULL,
  load         INTEGER NOT NULL CHECK (load >= 0),
  started_at   BIGINT NOT NULL,
  heartbeat_at BIGINT NOT NULL
);
CREATE INDEX relay_servers_heartbeat_at ON relay_servers (heartbeat_at);
`,
};
