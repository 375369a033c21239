// Entry point of the persistent store: pick a backend from a URL and re-export the contract.
// Accepted: a file path, ':memory:', or 'sqlite:PATH' (SQLite); 'postgres://…' or 'postgresql://…' (PostgreSQL).

import { StoreError } from './errors.js';
import { openPostgresStore } from './postgres/postgres-store.js';
import { openSqliteStore } from './sqlite/sqlite-store.js';
import type { Store } from './types.js';

export * from './types.js';
export { StoreError } from './errors.js';
export { openSqliteStore } from './sqlite/sqlite-store.js';
export { openPostgresStore, redactUrl } from './postgres/postgres-store.js';
export { MIGRATIONS, LATEST_SCHEMA_VERSION } from './migrations/index.js';
export type { Migration } from './migrations/index.js';

/** Opens the store named by `url` and runs its migrations. */
export async function openStore(url: string): Promise<Store> {
  if (typeof url !== 'string' || url.trim() === '') throw new StoreError('ERR_STORE_URL', 'store URL is empty');
  if (isPostgresUrl(url)) return openPostgresStore(url);
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length);
    if (path === '') throw new StoreError('ERR_STORE_URL', `store URL "${url}" has no path`);
    return openSqliteStore(path);
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url);
  if (scheme !== null) throw new StoreError('ERR_STORE_UNSUPPORTED', `unsupported store URL scheme "${scheme[1]}:"`);
  return openSqliteStore(url);
}

/** True for a URL the PostgreSQL backend takes (postgres:// or postgresql://). */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}
