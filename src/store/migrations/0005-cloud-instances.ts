// Migration 5: cloud_instances — every running cloud instance (AS/NMS/TRS sharing one store) registers its
// endpoints and heartbeats here; registrations.nms names the instance whose NMS a node is registered at.
// (Numbered 5 on this branch; renumber at merge if another migration 5 lands first.)

import type { Migration } from './types.js';

const DDL = `
CREATE TABLE cloud_instances (
  id            TEXT PRIMARY KEY,
  as_endpoints  TEXT NOT NULL,
  nms_endpoints TEXT NOT NULL,
  trs_endpoints TEXT NOT NULL,
  started_at    BIGINT NOT NULL,
  heartbeat_at  BIGINT NOT NULL
);
CREATE INDEX cloud_instances_heartbeat_at ON cloud_instances (heartbeat_at);
ALTER TABLE registrations ADD COLUMN nms TEXT;
`;

export const cloudInstances: Migration = {
  version: 5,
  name: 'cloud-instances',
  sqlite: DDL,
  postgres: DDL,
};
