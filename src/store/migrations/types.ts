// Shape of one schema migration: a version, a name and the DDL for each supported SQL dialect.
// Versions are applied in ascending order and recorded in schema_migrations; never edit a released one.

export interface Migration {
  version: number;
  name: string;
  sqlite: string;
  postgres: string;
}
