// PostgreSQL backend of the Store interface (the `pg` client, a small connection pool), for clouds that run several
// instances on one shared database. Races between instances are settled by PostgreSQL itself: conditional UPDATEs
// (token consumption), INSERT … ON CONFLICT (meta), and a transaction-scoped advisory lock around address allocation
// and migrations. Connection and authentication failures become StoreErrors with a clear code and no password.

import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { addressAt, formatCidr, nextUsableOffset, normalizeAddress, type Cidr } from '../../net/addr/cidr.js';
import { CyphonicError } from '../../util/errors.js';
import { certFromRow, checkEndpoint, checkTags, checkInstance, checkMessage, checkNewNode, checkNms, checkRelay, checkSeq, decodeEndpoints, instanceFromRow, MAX_ALLOCATION_PROBES, NODE_SESSION_SQL, nodeFromRow, nodeSessionFromRow, ownBytes } from '../common.js';
import type { CertRow, InstanceRow, NodeRow, NodeSessionRow } from '../common.js';
import { StoreError } from '../errors.js';
import { CERTS_REV_KEY } from '../types.js';
import { batchErrorPerItem, GroupCommit } from '../batch.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, SCHEMA_MIGRATIONS_DDL } from '../migrations/index.js';
import type {
  CertificateRecord,
  CloudInstanceRecord,
  CommonKeyRecord,
  NodeSessionRecord,
  InstanceMessageHandler,
  Endpoint,
  NatMapping,
  NewCertificate,
  NewEnrollmentToken,
  NewNode,
  NodeRecord,
  Pools,
  RegistrationRecord,
  RelayServerRecord,
  Store,
  TokenResult,
} from '../types.js';

/** Advisory lock keys (arbitrary constants, one per serialised activity). */
const LOCK_MIGRATE = 0x63790001;
const LOCK_ALLOCATE = 0x63790002;
/** The LISTEN/NOTIFY channel of instance messages. */
const CHANNEL = 'cyphonic_instances';
/** Tunable: wait before a lost LISTEN connection is opened again (ms). */
const RELISTEN_MS = 1_000;

/** Tunable: connections per store (one process); allocation holds one for the length of its transaction. */
const POOL_SIZE = 8;
/**
 * Tunable: connections for liveness writes and instance messages (keepalive touches, heartbeats, NOTIFY), which commit
 * with `synchronous_commit = off`: they do not wait for the WAL flush, so thousands of keepalives per second are not
 * capped by the disk's fsync rate (about 700 commits/s here, shared by every instance). A crash of the PostgreSQL
 * server (not of an instance) may lose the last fraction of a second of them: a node then looks seen a keepalive
 * earlier, and a NOTIFY is lost as on any reconnection (callers retransmit). Registrations, tokens and allocations stay
 * on the synchronous pool.
 */
const LIVE_POOL_SIZE = 4;
/** Tunable: how long opening a connection may take before the call fails (ms). */
const CONNECT_TIMEOUT_MS = 5_000;

const OID_INT8 = 20;
/** BIGINT columns hold unix ms and ids, all below 2^53: read them as numbers (indexes are read as text). */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === OID_INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};



interface RegRow {
  node_id: number;
  reported: string;
  observed_address: string;
  observed_port: number;
  nat: boolean;
  keepalive_sec: number;
  registered_at: number;
  last_seen: number;
  last_seq: string;
  mapping: string | null;
  nms: string | null;
}

interface RelayRow {
  id: string;
  endpoints: string;
  load: number;
  started_at: number;
  heartbeat_at: number;
}



function regFromRow(r: RegRow): RegistrationRecord {
  // One literal, then the optional fields (no conditional objects spread into it: a route selection reads two of these).
  const rec: RegistrationRecord = {
    nodeId: r.node_id,
    reported: decodeEndpoints(r.reported),
    observed: { address: r.observed_address, port: r.observed_port },
    nat: r.nat,
    keepaliveSec: r.keepalive_sec,
    registeredAt: r.registered_at,
    lastSeen: r.last_seen,
    lastSeq: BigInt(r.last_seq),
  };
  if (r.mapping === 'independent' || r.mapping === 'dependent') rec.mapping = r.mapping;
  if (r.nms !== null) rec.nms = r.nms;
  return rec;
}

function relayFromRow(r: RelayRow): RelayServerRecord {
  return {
    id: r.id,
    endpoints: decodeEndpoints(r.endpoints, 'relay server row: endpoints'),
    load: r.load,
    startedAt: r.started_at,
    heartbeatAt: r.heartbeat_at,
  };
}

/** The URL with any password replaced, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@');
  }
}

/** Maps driver and server errors to StoreError codes; ours pass through untouched. */
export function translatePg(err: unknown, where = ''): unknown {
  if (err instanceof CyphonicError) return err;
  const code = (err as { code?: unknown })?.code;
  const message = `${where}${err instanceof Error ? err.message : String(err)}`;
  if (typeof code === 'string') {
    if (code === '23505') return new StoreError('ERR_STORE_DUPLICATE', message, { cause: err });
    if (code === '23503') return new StoreError('ERR_STORE_REFERENCE', message, { cause: err });
    if (code.startsWith('23') || code === '22P02' || code === '22003') return new StoreError('ERR_STORE_INVALID', message, { cause: err });
    if (code === '40001' || code === '40P01' || code === '55P03') return new StoreError('ERR_STORE_BUSY', `database is busy: ${message}`, { cause: err });
    if (code === '28P01' || code === '28000') return new StoreError('ERR_STORE_AUTH', `authentication refused: ${message}`, { cause: err });
    if (code === '3D000') return new StoreError('ERR_STORE_URL', message, { cause: err });
    // Class 08 (connection exception), 57P01..03 (admin shutdown, cannot connect now), and socket errors.
    if (code.startsWith('08') || code.startsWith('57P') || /^E[A-Z]+$/.test(code)) {
      return new StoreError('ERR_STORE_UNAVAILABLE', `database unreachable: ${message}`, { cause: err });
    }
  }
  if (/timeout|Connection terminated|connection is closed/i.test(message)) {
    return new StoreError('ERR_STORE_UNAVAILABLE', `database unreachable: ${message}`, { cause: err });
  }
  return new StoreError('ERR_STORE', message, { cause: err });
}

type Queryable = pg.Pool | pg.PoolClient;

async function rows<T>(q: Queryable, sql: string, params: unknown[] = []): Promise<T[]> {
  return (await q.query(sql, params)).rows as T[];
}

async function migrateDb(pool: pg.Pool): Promise<void> {
  await inTransaction(pool, async (c) => {
    // Every instance may start at once: one at a time, the others then find everything applied.
    await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK_MIGRATE]);
    await c.query(SCHEMA_MIGRATIONS_DDL);
    const applied = new Set((await rows<{ version: number }>(c, 'SELECT version FROM schema_migrations')).map((r) => r.version));
    const newest = Math.max(0, ...applied);
    if (newest > LATEST_SCHEMA_VERSION) {
      throw new StoreError(
        'ERR_STORE_SCHEMA',
        `database schema version ${newest} is newer than this build supports (${LATEST_SCHEMA_VERSION}); upgrade cyphonic`,
      );
    }
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue;
      await c.query(m.postgres);
      await c.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, Date.now()]);
    }
  });
}

async function inTransaction<T>(pool: pg.Pool, body: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  let broken = false;
  try {
    await c.query('BEGIN');
    const out = await body(c);
    await c.query('COMMIT');
    return out;
  } catch (err) {
    try {
      await c.query('ROLLBACK');
    } catch {
      broken = true; // the connection is gone: do not hand it out again
    }
    throw err;
  } finally {
    c.release(broken);
  }
}

type RegParams = [number, string, string, number, boolean, number, number, number, string, string | null, string | null];
interface Touch {
  nodeId: number;
  lastSeen: number;
  lastSeq: string;
  address: string;
  port: number;
  /** touchRegistrationIf: only where observed and nms match. */
  cond: boolean;
  nms: string | null;
}

const UPSERT_REG_HEAD = 'INSERT INTO registrations (node_id, reported, observed_address, observed_port, nat, keepalive_sec, registered_at, last_seen, last_seq, mapping, nms)';
const UPSERT_REG_TAIL = `ON CONFLICT (node_id) DO UPDATE SET reported = excluded.reported, observed_address = excluded.observed_address,
  observed_port = excluded.observed_port, nat = excluded.nat, keepalive_sec = excluded.keepalive_sec,
  registered_at = excluded.registered_at, last_seen = excluded.last_seen, last_seq = excluded.last_seq,
  mapping = excluded.mapping, nms = excluded.nms`;
const TOUCH_REG_HEAD = 'UPDATE registrations r SET last_seen = v.ls, last_seq = v.seq, observed_address = v.addr, observed_port = v.port';
const TOUCH_REG_TAIL = `WHERE r.node_id = v.node_id
  AND (NOT v.cond OR (r.observed_address = v.addr AND r.observed_port = v.port AND r.nms IS NOT DISTINCT FROM v.nms)) RETURNING r.node_id`;

/** Gives CERTS_REV_KEY a new value (parameters $i: the key, $i+1: the value). */
const BUMP_CERTS_REV_SQL = (i: number): string => `INSERT INTO meta (key, value) VALUES ($${i}, $${i + 1}) ON CONFLICT (key) DO UPDATE SET value = excluded.value`;
const certsRevValue = (): string => randomBytes(8).toString('hex');

class PostgresStore implements Store {
  /** The gathered readers (#gather), drained by close(). */
  readonly #readers: { drain(): Promise<void> }[] = [];
  #closed = false;
  #closing: Promise<void> | null = null;
  /** Group commit (batch.ts): registrations on the synchronous pool, keepalive touches on the live one. */
  readonly #upserts = new GroupCommit<RegParams, void>({
    many: (rows) => this.#upsertMany(rows),
    one: async (row) => {
      await this.#run(() => this.pool.query(`${UPSERT_REG_HEAD} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ${UPSERT_REG_TAIL}`, row));
    },
    inFlight: 2,
    perItem: batchErrorPerItem,
  });
  /**
   * The point reads of registration and route selection (and every other caller of them), gathered as the writes
   * above are (#gather): the reads of one kind asked for while the event loop is busy are one `… = ANY($1)` query, a
   * key asked for twice is read once, and each caller gets records of its own. A round trip costs the instance a
   * socket write that wakes a server process (over loopback, ~0.15 ms of CPU); one per read was most of a route
   * selection's cost (docs/PERFORMANCE.md, "Eighth round").
   */
  readonly #metaReads = this.#gather<string, { key: string; value: string }, string | null>(
    'cyp-meta', 'SELECT key, value FROM meta WHERE key = ANY($1::text[])', (r) => [r.key], (rs) => rs[0]?.value ?? null);
  readonly #nodesByName = this.#gather<string, NodeRow, NodeRecord | null>(
    'cyp-nodes-by-name', 'SELECT * FROM nodes WHERE name = ANY($1::text[])', (r) => [r.name], (rs) => (rs[0] === undefined ? null : nodeFromRow(rs[0])));
  readonly #nodesByVip = this.#gather<string, NodeRow, NodeRecord | null>(
    'cyp-nodes-by-vip', 'SELECT * FROM nodes WHERE vip4 = ANY($1::text[]) OR vip6 = ANY($1::text[])', (r) => [r.vip4, r.vip6], (rs) => (rs[0] === undefined ? null : nodeFromRow(rs[0])));
  readonly #tagReads = this.#gather<string, { name: string; tag: string }, string[]>(
    'cyp-tags', 'SELECT name, tag FROM node_tags WHERE name = ANY($1::text[]) ORDER BY name, tag', (r) => [r.name], (rs) => rs.map((r) => r.tag));
  readonly #regReads = this.#gather<number, RegRow, RegistrationRecord | null>(
    'cyp-registrations', 'SELECT * FROM registrations WHERE node_id = ANY($1::bigint[])', (r) => [r.node_id], (rs) => (rs[0] === undefined ? null : regFromRow(rs[0])));
  readonly #certLists = this.#gather<number, CertRow, CertificateRecord[]>(
    'cyp-certificates', 'SELECT * FROM certificates WHERE node_id = ANY($1::bigint[]) ORDER BY node_id, created_at, serial', (r) => [r.node_id], (rs) => rs.map(certFromRow));
  /** A first contact's node, Common Key and replay floor (a burst of registrations is one round trip, not one per node). */
  readonly #sessionReads = this.#gather<number, NodeSessionRow, NodeSessionRecord | null>(
    'cyp-node-sessions', NODE_SESSION_SQL(() => 'ANY($1::bigint[])'), (r) => [Number(r.id)], (rs) => (rs[0] === undefined ? null : nodeSessionFromRow(rs[0])));
  readonly #touches = new GroupCommit<Touch, boolean>({
    many: (ts) => this.#touchMany(ts),
    one: (t) => this.#touchOne(t),
    inFlight: 2,
    perItem: batchErrorPerItem,
  });
  readonly #stops = new Set<() => Promise<void>>();

  constructor(
    readonly pool: pg.Pool,
    private readonly url: string,
    /** Liveness writes and NOTIFY (asynchronous commit, LIVE_POOL_SIZE); `pool` when not given. */
    private readonly live: pg.Pool = pool,
  ) {}

  async #run<T>(body: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreError('ERR_STORE_CLOSED', 'store is closed');
    try {
      return await body();
    } catch (err) {
      throw translatePg(err);
    }
  }

  #q<T>(sql: string, params: unknown[] = []): Promise<T[]> {
    return this.#run(() => rows<T>(this.pool, sql, params));
  }

  /** A gathered point read (#metaReads): `sql` takes the distinct keys as $1; `keysOf` names the keys a row answers. */
  #gather<K, Row extends pg.QueryResultRow, R>(name: string, sql: string, keysOf: (row: Row) => K[], convert: (rows: readonly Row[]) => R): GroupCommit<K, R> {
    const many = async (keys: K[]): Promise<R[]> => {
      const found = new Map<K, Row[]>();
      // Named: each connection parses it once, and PostgreSQL may keep its plan.
      const r = await this.#run(() => this.pool.query<Row>({ name, text: sql, values: [[...new Set(keys)]] }));
      for (const row of r.rows) {
        for (const k of keysOf(row)) {
          const list = found.get(k);
          if (list) list.push(row);
          else found.set(k, [row]);
        }
      }
      return keys.map((k) => convert(found.get(k) ?? []));
    };
    const reader = new GroupCommit<K, R>({ many, one: async (k) => (await many([k]))[0]!, inFlight: 2, perItem: batchErrorPerItem });
    this.#readers.push(reader);
    return reader;
  }

  /** An UPDATE of certificates (three parameters) and the new CERTS_REV_KEY value in one statement; rows updated. */
  async #certChanges(update: string, params: unknown[]): Promise<number> {
    const r = await this.#q<{ n: number }>(`WITH upd AS (${update} RETURNING 1), bump AS (${BUMP_CERTS_REV_SQL(4)}) SELECT count(*)::int AS n FROM upd`, [...params, CERTS_REV_KEY, certsRevValue()]);
    return r[0]?.n ?? 0;
  }

  migrate(): Promise<void> {
    return this.#run(() => migrateDb(this.pool));
  }

  close(): Promise<void> {
    // Writes already queued commit first (their callers were promised a commit or an error).
    this.#closing ??= (async () => {
      await Promise.all([this.#upserts.drain(), this.#touches.drain(), ...this.#readers.map((r) => r.drain())]);
      this.#closed = true;
      for (const stop of [...this.#stops]) await stop();
      await this.pool.end();
      if (this.live !== this.pool) await this.live.end();
    })();
    return this.#closing;
  }

  getMeta(key: string): Promise<string | null> {
    return this.#metaReads.write(key);
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.#q('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [key, value]);
  }

  async setMetaIfAbsent(key: string, value: string): Promise<string> {
    // The INSERT settles the race (the unique key); a loser's read then sees the winner's committed row.
    await this.#q('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [key, value]);
    return (await this.getMeta(key)) ?? value;
  }

  deleteNode(nodeId: number): Promise<boolean> {
    return this.#run(() =>
      inTransaction(this.pool, async (c) => {
        const r = await c.query<{ name: string }>('SELECT name FROM nodes WHERE id = $1 FOR UPDATE', [nodeId]);
        const name = r.rows[0]?.name;
        if (name === undefined) return false;
        for (const t of ['certificates', 'common_keys', 'registrations']) await c.query(`DELETE FROM ${t} WHERE node_id = $1`, [nodeId]);
        await c.query('DELETE FROM node_tags WHERE name = $1', [name]);
        await c.query('DELETE FROM nodes WHERE id = $1', [nodeId]);
        await c.query(BUMP_CERTS_REV_SQL(1), [CERTS_REV_KEY, certsRevValue()]);
        return true;
      }),
    );
  }

  async setNodeTags(name: string, tags: string[]): Promise<void> {
    const list = checkTags(name, tags);
    await this.#run(() =>
      inTransaction(this.pool, async (c) => {
        await c.query('DELETE FROM node_tags WHERE name = $1', [name]);
        for (const t of list) await c.query('INSERT INTO node_tags (name, tag) VALUES ($1, $2)', [name, t]);
      }),
    );
  }

  getNodeTags(name: string): Promise<string[]> {
    return this.#tagReads.write(name);
  }

  async listNodeTags(): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const r of await this.#q<{ name: string; tag: string }>('SELECT name, tag FROM node_tags ORDER BY name, tag')) {
      const l = out.get(r.name);
      if (l) l.push(r.tag);
      else out.set(r.name, [r.tag]);
    }
    return out;
  }

  async createEnrollmentToken(rec: NewEnrollmentToken): Promise<void> {
    await this.#q('INSERT INTO enrollment_tokens (token_hash, name, expires_at, created_at, used_at) VALUES ($1, $2, $3, $4, NULL)', [
      rec.tokenHash,
      rec.name,
      rec.expiresAt,
      rec.createdAt,
    ]);
  }

  async consumeEnrollmentToken(tokenHash: string, now: number): Promise<TokenResult> {
    // One conditional UPDATE: PostgreSQL row-locks the token and re-checks used_at for a concurrent updater, so
    // exactly one caller (in any instance) flips it.
    const won = await this.#q<{ name: string }>(
      'UPDATE enrollment_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING name',
      [now, tokenHash],
    );
    if (won[0] !== undefined) return { ok: true, name: won[0].name };
    const row = (await this.#q<{ used_at: number | null }>('SELECT used_at FROM enrollment_tokens WHERE token_hash = $1', [tokenHash]))[0];
    if (row === undefined) return { ok: false, reason: 'unknown' };
    if (row.used_at !== null) return { ok: false, reason: 'used' };
    return { ok: false, reason: 'expired' };
  }

  async #allocate(c: pg.PoolClient, pool: Cidr, poolText: string, column: 'vip4' | 'vip6', what: string): Promise<{ index: bigint; address: string }> {
    const max = (await rows<{ m: string | null }>(c, `SELECT MAX(${column}_index)::text AS m FROM nodes WHERE ${column}_pool = $1`, [poolText]))[0];
    let candidate = nextUsableOffset(pool, BigInt(max?.m ?? '0') + 1n);
    for (let probes = 0; candidate !== null && probes < MAX_ALLOCATION_PROBES; probes++) {
      const address = addressAt(pool, candidate);
      const taken = await rows(c, 'SELECT 1 FROM nodes WHERE vip4 = $1 OR vip6 = $1', [address]);
      if (taken.length === 0) return { index: candidate, address };
      candidate = nextUsableOffset(pool, candidate + 1n);
    }
    throw new StoreError('ERR_POOL_EXHAUSTED', `${what} pool ${poolText} has no free address left`);
  }

  createNode(input: NewNode, pools: Pools): Promise<NodeRecord> {
    return this.#run(async () => {
      const { v4, v6, family, adapterId, mac, createdAt } = checkNewNode(input, pools);
      return inTransaction(this.pool, async (c) => {
        // Allocation reads MAX(index) then inserts: instances take turns (the lock ends with the transaction).
        await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK_ALLOCATE]);
        if ((await rows(c, 'SELECT 1 FROM nodes WHERE name = $1', [input.name])).length > 0) {
          throw new StoreError('ERR_NAME_TAKEN', `a node named "${input.name}" already exists`);
        }
        const v4Text = formatCidr(v4);
        const v6Text = formatCidr(v6);
        const a4 = await this.#allocate(c, v4, v4Text, 'vip4', 'IPv4');
        const a6 = await this.#allocate(c, v6, v6Text, 'vip6', 'IPv6');
        const inserted = await rows<{ id: number }>(
          c,
          `INSERT INTO nodes (name, kind, vip4, vip6, vip4_pool, vip4_index, vip6_pool, vip6_index, adapter_id, mac, family, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id`,
          [input.name, input.kind, a4.address, a6.address, v4Text, a4.index.toString(), v6Text, a6.index.toString(), adapterId, mac, family, createdAt],
        );
        return { id: inserted[0]!.id, name: input.name, kind: input.kind, vip4: a4.address, vip6: a6.address, adapterId, mac, family, createdAt };
      });
    });
  }

  async #oneNode(sql: string, params: unknown[]): Promise<NodeRecord | null> {
    const r = await this.#q<NodeRow>(sql, params);
    return r[0] === undefined ? null : nodeFromRow(r[0]);
  }

  getNodeById(id: number): Promise<NodeRecord | null> {
    if (!Number.isSafeInteger(id)) return this.#run(async () => null);
    return this.#oneNode('SELECT * FROM nodes WHERE id = $1', [id]);
  }

  getNodeByName(name: string): Promise<NodeRecord | null> {
    return this.#nodesByName.write(name);
  }

  getNodeByVip(address: string): Promise<NodeRecord | null> {
    const canonical = normalizeAddress(address);
    if (canonical === null) return this.#run(async () => null);
    return this.#nodesByVip.write(canonical);
  }

  async listNodes(): Promise<NodeRecord[]> {
    return (await this.#q<NodeRow>('SELECT * FROM nodes ORDER BY id')).map(nodeFromRow);
  }

  async listGeneralNodes(adapterId?: number): Promise<NodeRecord[]> {
    const rows = adapterId === undefined
      ? await this.#q<NodeRow>("SELECT * FROM nodes WHERE adapter_id IS NOT NULL AND kind = 'general' ORDER BY id")
      : await this.#q<NodeRow>("SELECT * FROM nodes WHERE adapter_id = $1 AND kind = 'general' ORDER BY id", [adapterId]);
    return rows.map(nodeFromRow);
  }

  async addCertificate(rec: NewCertificate): Promise<void> {
    // One statement: the certificate and the new CERTS_REV_KEY value commit together.
    await this.#q(
      `WITH cert AS (INSERT INTO certificates (serial, node_id, der, not_after, created_at, revoked_at, revoke_reason) VALUES ($1, $2, $3, $4, $5, NULL, NULL))
       ${BUMP_CERTS_REV_SQL(6)}`,
      [rec.serial, rec.nodeId, rec.der, rec.notAfter, rec.createdAt, CERTS_REV_KEY, certsRevValue()],
    );
  }

  async getCertificate(serial: string): Promise<CertificateRecord | null> {
    const r = await this.#q<CertRow>('SELECT * FROM certificates WHERE serial = $1', [serial]);
    return r[0] === undefined ? null : certFromRow(r[0]);
  }

  listNodeCertificates(nodeId: number): Promise<CertificateRecord[]> {
    if (!Number.isSafeInteger(nodeId)) return this.#run(async () => []);
    return this.#certLists.write(nodeId);
  }

  revokeCertificate(serial: string, reason: string, at: number): Promise<boolean> {
    return this.#certChanges('UPDATE certificates SET revoked_at = $1, revoke_reason = $2 WHERE serial = $3 AND revoked_at IS NULL', [at, reason, serial]).then((n) => n > 0);
  }

  revokeNodeCertificates(nodeId: number, reason: string, at: number): Promise<number> {
    return this.#certChanges('UPDATE certificates SET revoked_at = $1, revoke_reason = $2 WHERE node_id = $3 AND revoked_at IS NULL', [at, reason, nodeId]);
  }

  async isRevoked(serial: string): Promise<boolean> {
    return (await this.#q('SELECT 1 FROM certificates WHERE serial = $1 AND revoked_at IS NOT NULL', [serial])).length > 0;
  }

  async listRevokedSerials(): Promise<string[]> {
    // COLLATE "C": byte order, the same order SQLite gives, whatever the database's locale.
    return (await this.#q<{ serial: string }>('SELECT serial FROM certificates WHERE revoked_at IS NOT NULL ORDER BY serial COLLATE "C"')).map((r) => r.serial);
  }

  async putCommonKey(rec: CommonKeyRecord): Promise<void> {
    await this.#q(
      `INSERT INTO common_keys (node_id, key, expires_at, created_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (node_id) DO UPDATE SET key = excluded.key, expires_at = excluded.expires_at, created_at = excluded.created_at`,
      [rec.nodeId, rec.key, rec.expiresAt, rec.createdAt],
    );
  }

  async getCommonKey(nodeId: number): Promise<CommonKeyRecord | null> {
    const r = (await this.#q<{ node_id: number; key: Buffer; expires_at: number; created_at: number }>('SELECT * FROM common_keys WHERE node_id = $1', [nodeId]))[0];
    if (r === undefined) return null;
    return { nodeId: r.node_id, key: ownBytes(r.key), expiresAt: r.expires_at, createdAt: r.created_at };
  }

  getNodeSession(nodeId: number): Promise<NodeSessionRecord | null> {
    return this.#sessionReads.write(nodeId);
  }

  upsertRegistration(rec: RegistrationRecord): Promise<void> {
    return this.#run(async () => {
      const reported = rec.reported.map((e, i) => checkEndpoint(e, `reported[${i}]`));
      const observed = checkEndpoint(rec.observed, 'observed');
      const row: RegParams = [rec.nodeId, JSON.stringify(reported), observed.address, observed.port, rec.nat, rec.keepaliveSec, rec.registeredAt, rec.lastSeen, checkSeq(rec.lastSeq), rec.mapping ?? null, checkNms(rec.nms)];
      return row;
    }).then((row) => this.#upserts.write(row));
  }

  /** One statement for a batch of registrations (the last one of a node wins, as it would one after another). */
  async #upsertMany(rows: RegParams[]): Promise<void[]> {
    const last = new Map<number, RegParams>();
    for (const r of rows) last.set(r[0], r);
    const cols: unknown[][] = Array.from({ length: 11 }, () => []);
    for (const r of last.values()) for (let i = 0; i < 11; i++) cols[i]!.push(r[i]);
    await this.#run(() =>
      this.pool.query(
        `${UPSERT_REG_HEAD}
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::boolean[], $6::int[], $7::bigint[], $8::bigint[], $9::text[], $10::text[], $11::text[])
         ${UPSERT_REG_TAIL}`,
        cols,
      ),
    );
    return rows.map(() => undefined);
  }

  setRegistrationMapping(nodeId: number, mapping: NatMapping): Promise<boolean> {
    return this.#run(async () => {
      if (mapping !== 'independent' && mapping !== 'dependent') throw new StoreError('ERR_STORE_INVALID', `invalid NAT mapping ${String(mapping)}`);
      return ((await this.pool.query('UPDATE registrations SET mapping = $1 WHERE node_id = $2', [mapping, nodeId])).rowCount ?? 0) > 0;
    });
  }

  touchRegistration(nodeId: number, lastSeen: number, lastSeq: bigint, observed: Endpoint): Promise<boolean> {
    return this.#run(async () => {
      const o = checkEndpoint(observed, 'observed');
      const t: Touch = { nodeId, lastSeen, lastSeq: checkSeq(lastSeq), address: o.address, port: o.port, cond: false, nms: null };
      return t;
    }).then((t) => this.#touches.write(t));
  }

  touchRegistrationIf(nodeId: number, lastSeen: number, lastSeq: bigint, observed: Endpoint, nms: string | null): Promise<boolean> {
    return this.#run(async () => {
      const o = checkEndpoint(observed, 'observed');
      const t: Touch = { nodeId, lastSeen, lastSeq: checkSeq(lastSeq), address: o.address, port: o.port, cond: true, nms: nms === null ? null : checkNms(nms) };
      return t;
    }).then((t) => this.#touches.write(t));
  }

  /** Keepalive touches of many nodes in one UPDATE on the asynchronous-commit pool; a node twice goes one at a time. */
  async #touchMany(ts: Touch[]): Promise<boolean[]> {
    const ids = new Set(ts.map((t) => t.nodeId));
    if (ids.size !== ts.length) {
      const out: boolean[] = [];
      for (const t of ts) out.push(await this.#touchOne(t));
      return out;
    }
    const r = await this.#run(() =>
      this.live.query<{ node_id: number }>(
        `${TOUCH_REG_HEAD} FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::int[], $6::boolean[], $7::text[]) AS v(node_id, ls, seq, addr, port, cond, nms) ${TOUCH_REG_TAIL}`,
        [ts.map((t) => t.nodeId), ts.map((t) => t.lastSeen), ts.map((t) => t.lastSeq), ts.map((t) => t.address), ts.map((t) => t.port), ts.map((t) => t.cond), ts.map((t) => t.nms)],
      ),
    );
    const done = new Set(r.rows.map((x) => Number(x.node_id)));
    return ts.map((t) => done.has(t.nodeId));
  }

  async #touchOne(t: Touch): Promise<boolean> {
    const r = await this.#run(() =>
      this.live.query(
        `${TOUCH_REG_HEAD} FROM (VALUES ($1::bigint, $2::bigint, $3::text, $4::text, $5::int, $6::boolean, $7::text)) AS v(node_id, ls, seq, addr, port, cond, nms) ${TOUCH_REG_TAIL}`,
        [t.nodeId, t.lastSeen, t.lastSeq, t.address, t.port, t.cond, t.nms],
      ),
    );
    return (r.rowCount ?? 0) > 0;
  }

  getRegistration(nodeId: number): Promise<RegistrationRecord | null> {
    if (!Number.isSafeInteger(nodeId)) return this.#run(async () => null);
    return this.#regReads.write(nodeId);
  }

  async listRegistrations(): Promise<RegistrationRecord[]> {
    return (await this.#q<RegRow>('SELECT * FROM registrations ORDER BY node_id')).map(regFromRow);
  }

  async deleteRegistration(nodeId: number): Promise<void> {
    await this.#q('DELETE FROM registrations WHERE node_id = $1', [nodeId]);
  }

  upsertRelayServer(rec: RelayServerRecord): Promise<void> {
    return this.#run(async () => {
      const { id, endpoints } = checkRelay(rec);
      await this.pool.query(
        `INSERT INTO relay_servers (id, endpoints, load, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET endpoints = excluded.endpoints, load = excluded.load,
           started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`,
        [id, endpoints, rec.load, rec.startedAt, rec.heartbeatAt],
      );
    });
  }

  async listRelayServers(): Promise<RelayServerRecord[]> {
    return (await this.#q<RelayRow>('SELECT * FROM relay_servers ORDER BY id COLLATE "C"')).map(relayFromRow);
  }

  async deleteRelayServer(id: string): Promise<void> {
    await this.#q('DELETE FROM relay_servers WHERE id = $1', [id]);
  }

  upsertInstance(rec: CloudInstanceRecord): Promise<void> {
    return this.#run(async () => {
      const r = checkInstance(rec);
      await this.live.query(
        `INSERT INTO cloud_instances (id, as_endpoints, nms_endpoints, trs_endpoints, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET as_endpoints = excluded.as_endpoints, nms_endpoints = excluded.nms_endpoints,
           trs_endpoints = excluded.trs_endpoints, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`,
        [r.id, r.as, r.nms, r.trs, rec.startedAt, rec.heartbeatAt],
      );
    });
  }

  async listInstances(): Promise<CloudInstanceRecord[]> {
    return (await this.#q<InstanceRow>('SELECT * FROM cloud_instances ORDER BY id COLLATE "C"')).map(instanceFromRow);
  }

  async deleteInstance(id: string): Promise<void> {
    await this.#q('DELETE FROM cloud_instances WHERE id = $1', [id]);
  }

  publish(payload: string): Promise<void> {
    return this.#run(async () => {
      checkMessage(payload);
      await this.live.query('SELECT pg_notify($1, $2)', [CHANNEL, payload]);
    });
  }

  /**
   * LISTEN on a connection of its own (a pooled one would be handed to other queries). A lost connection is opened
   * again after RELISTEN_MS, for as long as the subscription lasts; messages sent meanwhile are lost (callers retry).
   */
  subscribe(handler: InstanceMessageHandler): Promise<() => Promise<void>> {
    return this.#run(async () => {
      let client: pg.Client | null = null;
      let stopped = false;
      let timer: NodeJS.Timeout | null = null;
      const connect = async (): Promise<void> => {
        const c = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, types: TYPES });
        const again = (): void => {
          if (client === c) client = null;
          c.removeAllListeners('notification');
          c.end().catch(() => undefined);
          if (!stopped && timer === null) {
            timer = setTimeout(() => {
              timer = null;
              connect().catch(again);
            }, RELISTEN_MS);
            timer.unref();
          }
        };
        c.on('error', again);
        c.on('end', again);
        c.on('notification', (n) => {
          if (n.channel === CHANNEL && n.payload !== undefined) handler(n.payload);
        });
        client = c;
        await c.connect();
        await c.query(`LISTEN ${CHANNEL}`);
        if (stopped) await c.end();
      };
      try {
        await connect();
      } catch (err) {
        stopped = true;
        if (timer) clearTimeout(timer);
        throw err;
      }
      const stop = async (): Promise<void> => {
        stopped = true;
        this.#stops.delete(stop);
        if (timer) clearTimeout(timer);
        const c = client;
        client = null;
        if (c) {
          c.removeAllListeners();
          c.on('error', () => undefined);
          await c.end().catch(() => undefined);
        }
      };
      this.#stops.add(stop);
      return stop;
    });
  }
}

/**
 * Connects to the PostgreSQL database named by `url` (postgres://user:password@host:port/db), checks that it answers,
 * and runs migrations. A wrong host, user, password or database name rejects with a StoreError whose message names
 * the URL with its password hidden: ERR_STORE_UNAVAILABLE, ERR_STORE_AUTH or ERR_STORE_URL.
 */
export async function openPostgresStore(url: string): Promise<Store> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new StoreError('ERR_STORE_URL', `store URL ${redactUrl(url)} is not a valid URL`);
  }
  if (parsed.pathname === '' || parsed.pathname === '/') throw new StoreError('ERR_STORE_URL', `store URL ${redactUrl(url)} names no database`);
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, types: TYPES });
  // An idle connection that dies (server restart) is dropped by the pool; without a listener it would crash us.
  pool.on('error', () => undefined);
  try {
    await migrateDb(pool);
  } catch (err) {
    await pool.end().catch(() => undefined);
    const e = translatePg(err, `cannot open PostgreSQL store ${redactUrl(url)}: `);
    throw e;
  }
  const live = new pg.Pool({ connectionString: url, max: LIVE_POOL_SIZE, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, types: TYPES, options: '-c synchronous_commit=off' });
  live.on('error', () => undefined);
  return new PostgresStore(pool, url, live);
}
