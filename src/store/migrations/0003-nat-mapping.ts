// Migration 3: the NAT mapping behaviour the NMS learned for a registration (its probe port saw the same public
// port as the registration: 'independent'; another one: 'dependent'; not probed yet or not behind NAT: NULL).

import type { Migration } from './types.js';

export const natMapping: Migration = {
  version: 3,
  name: 'nat-mapping',
  sqlite: `ALTER TABLE registrations ADD COLUMN mapping TEXT CHECK (mapping IN ('independent', 'dependent'));`,
  postgres: `ALTER TABLE registrations ADD COLUMN mapping TEXT CHECK (mapping IN ('independent', 'dependent'));`,
};
