// SQLite backend of the Store interface (better-sqlite3, WAL), shared safely by the cloud daemon and the CLI.
// Synchronous underneath, async outside; writes that read-then-write use BEGIN IMMEDIATE so other processes serialise.

import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { addressAt, formatCidr, nextUsableOffset, normalizeAddress } from '../../net/addr/cidr.js';
import type { Cidr } from '../../net/addr/cidr.js';
import { CyphonicError } from '../../util/errors.js';
import { StoreError } from '../errors.js';
import { CERTS_REV_KEY } from '../types.js';
import { batchErrorPerItem, GroupCommit, TurnReads } from '../batch.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, SCHEMA_MIGRATIONS_DDL } from '../migrations/index.js';
import { certFromRow, checkEndpoint, checkTags, checkInstance, checkMessage, checkNewNode, checkNms, checkRelay, checkSeq, decodeEndpoints, instanceFromRow, MAX_ALLOCATION_PROBES, nodeFromRow, ownBytes } from '../common.js';
import type { CertRow, InstanceRow, NodeRow } from '../common.js';
import type {
  CertificateRecord,
  CommonKeyRecord,
  Endpoint,
  NewCertificate,
  NewEnrollmentToken,
  NewNode,
  NodeRecord,
  NodeSessionRecord,
  Pools,
  NatMapping,
  RegistrationRecord,
  RelayServerRecord,
  CloudInstanceRecord,
  InstanceMessageHandler,
  Store,
  TokenResult,
} from '../types.js';

type Db = Database.Database;
type Stmt = Database.Statement;



interface KeyRow {
  node_id: number;
  key: Buffer;
  expires_at: number;
  created_at: number;
}

interface RelayRow {
  id: string;
  endpoints: string;
  load: number;
  started_at: number;
  heartbeat_at: number;
}

interface TokenRow {
  used_at: number | null;
  expires_at: number;
}

/** The columns of a registration row, read by position (raw rows: no object per row) in regFromRaw's order. */
const REG_COLUMNS = 'node_id, reported, observed_address, observed_port, nat, keepalive_sec, registered_at, last_seen, last_seq, mapping, nms';

/**
 * A registration from a REG_COLUMNS row: one literal, then the optional fields (no conditional objects spread into
 * it: a route selection reads two of these).
 */
function regFromRaw(r: unknown[]): RegistrationRecord {
  const rec: RegistrationRecord = {
    nodeId: r[0] as number,
    reported: decodeEndpoints(r[1] as string),
    observed: { address: r[2] as string, port: r[3] as number },
    nat: r[4] !== 0,
    keepaliveSec: r[5] as number,
    registeredAt: r[6] as number,
    lastSeen: r[7] as number,
    lastSeq: BigInt(r[8] as string),
  };
  const mapping = r[9];
  if (mapping === 'independent' || mapping === 'dependent') rec.mapping = mapping;
  if (r[10] !== null) rec.nms = r[10] as string;
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

/** A raw row of the nodeSession statement (columns in its order) as a NodeSessionRecord (as nodeSessionFromRow does). */
function nodeSessionFromRaw(r: unknown[]): NodeSessionRecord {
  const id = r[0] as number;
  return {
    key: { nodeId: id, key: ownBytes(r[9] as Buffer), expiresAt: Number(r[10]), createdAt: Number(r[11]) },
    node: nodeFromRow({ id, name: r[1] as string, kind: r[2] as string, vip4: r[3] as string, vip6: r[4] as string, adapter_id: r[5] as number | null, mac: r[6] as string | null, family: r[7] as string, created_at: r[8] as number }),
    lastSeq: r[12] === null ? null : BigInt(r[12] as string),
  };
}

/** Maps driver errors to StoreError codes; ours pass through untouched. */
function translate(err: unknown): unknown {
  if (err instanceof CyphonicError) return err;
  const code = (err as { code?: unknown })?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (typeof code === 'string') {
    if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
      return new StoreError('ERR_STORE_DUPLICATE', message, { cause: err });
    }
    if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY') return new StoreError('ERR_STORE_REFERENCE', message, { cause: err });
    if (code.startsWith('SQLITE_CONSTRAINT')) return new StoreError('ERR_STORE_INVALID', message, { cause: err });
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
      return new StoreError('ERR_STORE_BUSY', `database is busy: ${message}`, { cause: err });
    }
  }
  return new StoreError('ERR_STORE', message, { cause: err });
}

/** Applies missing migrations inside one IMMEDIATE transaction (safe when several processes open at once). */
function migrateDb(db: Db): void {
  db.exec(SCHEMA_MIGRATIONS_DDL);
  const apply = db.transaction(() => {
    const rows = db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[];
    const applied = new Set(rows.map((r) => r.version));
    const newest = Math.max(0, ...applied);
    if (newest > LATEST_SCHEMA_VERSION) {
      throw new StoreError(
        'ERR_STORE_SCHEMA',
        `database schema version ${newest} is newer than this build supports (${LATEST_SCHEMA_VERSION}); upgrade cyphonic`,
      );
    }
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue;
      db.exec(m.sqlite);
      record.run(m.version, m.name, Date.now());
    }
  });
  apply.immediate();
}

class SqliteStore implements Store {
  readonly #db: Db;
  #closed = false;
  #closing: Promise<void> | null = null;
  readonly #s: Record<string, Stmt>;
  /** Instance message listeners: a SQLite cloud is one process, so delivery stays in it. */
  readonly #listeners = new Set<InstanceMessageHandler>();
  readonly #maxV4: Stmt;
  readonly #maxV6: Stmt;
  readonly #createNodeTx: (input: NewNode, pools: Pools) => NodeRecord;
  readonly #setTagsTx: (name: string, tags: string[]) => void;
  readonly #deleteNodeTx: (id: number) => boolean;
  /** Group commit (batch.ts) of registrations and keepalive touches: one transaction per batch. */
  readonly #upserts: GroupCommit<unknown[], void>;
  readonly #touches: GroupCommit<{ stmt: string; args: unknown[] }, boolean>;
  /**
   * The point reads of the NMS's hot paths (a node's first message, each registration, route selection) come in
   * bursts: the reads after the first of an event-loop turn are made together in one read transaction (batch.ts
   * TurnReads: one WAL snapshot and lock instead of one per statement, ~3-4 µs a read instead of ~9-13). Nothing is
   * served from memory.
   */
  readonly #sessionReads: TurnReads<number, NodeSessionRecord | null>;
  readonly #keyReads: TurnReads<number, CommonKeyRecord | null>;
  readonly #metaReads: TurnReads<string, string | null>;
  readonly #nodeByIdReads: TurnReads<number, NodeRecord | null>;
  readonly #nodeByNameReads: TurnReads<string, NodeRecord | null>;
  readonly #certReads: TurnReads<number, CertificateRecord[]>;
  readonly #regReads: TurnReads<number, RegistrationRecord | null>;
  readonly #tagReads: TurnReads<string, string[]>;

  constructor(db: Db) {
    this.#db = db;
    const p = (sql: string): Stmt => db.prepare(sql);
    this.#s = {
      getMeta: p('SELECT value FROM meta WHERE key = ?'),
      setMeta: p('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      insertMetaIfAbsent: p('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING'),
      insertToken: p('INSERT INTO enrollment_tokens (token_hash, name, expires_at, created_at, used_at) VALUES (?, ?, ?, ?, NULL)'),
      consumeToken: p(
        'UPDATE enrollment_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING name',
      ),
      getToken: p('SELECT used_at, expires_at FROM enrollment_tokens WHERE token_hash = ?'),
      nodeIdByName: p('SELECT id FROM nodes WHERE name = ?'),
      vipTaken: p('SELECT 1 AS taken FROM nodes WHERE vip4 = ? OR vip6 = ?'),
      insertNode: p(
        `INSERT INTO nodes (name, kind, vip4, vip6, vip4_pool, vip4_index, vip6_pool, vip6_index, adapter_id, mac, family, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
      ),
      nodeById: p('SELECT * FROM nodes WHERE id = ?'),
      nodeByName: p('SELECT * FROM nodes WHERE name = ?'),
      nodeByVip: p('SELECT * FROM nodes WHERE vip4 = ? OR vip6 = ?'),
      listNodes: p('SELECT * FROM nodes ORDER BY id'),
      listGeneralNodes: p("SELECT * FROM nodes WHERE adapter_id = ? AND kind = 'general' ORDER BY id"),
      listAllGeneralNodes: p("SELECT * FROM nodes WHERE adapter_id IS NOT NULL AND kind = 'general' ORDER BY id"),
      insertCert: p(
        'INSERT INTO certificates (serial, node_id, der, not_after, created_at, revoked_at, revoke_reason) VALUES (?, ?, ?, ?, ?, NULL, NULL)',
      ),
      getCert: p('SELECT * FROM certificates WHERE serial = ?'),
      nodeCerts: p('SELECT * FROM certificates WHERE node_id = ? ORDER BY created_at, serial'),
      revokeCert: p('UPDATE certificates SET revoked_at = ?, revoke_reason = ? WHERE serial = ? AND revoked_at IS NULL'),
      revokeNodeCerts: p('UPDATE certificates SET revoked_at = ?, revoke_reason = ? WHERE node_id = ? AND revoked_at IS NULL'),
      isRevoked: p('SELECT 1 AS revoked FROM certificates WHERE serial = ? AND revoked_at IS NOT NULL'),
      // INDEXED BY: without statistics (no ANALYZE) the planner walks every certificate in serial order instead, which
      // was ~0.5 s of an NMS's start with 100 000 nodes (PERFORMANCE.md).
      listRevoked: p('SELECT serial FROM certificates INDEXED BY certificates_revoked_at WHERE revoked_at IS NOT NULL ORDER BY serial'),
      putKey: p(
        `INSERT INTO common_keys (node_id, key, expires_at, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (node_id) DO UPDATE SET key = excluded.key, expires_at = excluded.expires_at, created_at = excluded.created_at`,
      ),
      getKey: p('SELECT * FROM common_keys WHERE node_id = ?'),
      bumpCertsRev: p('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      // Columns by position (raw rows: no object per row), the ones nodeSessionFromRaw reads and in its order.
      nodeSession: p(
        `SELECT n.id, n.name, n.kind, n.vip4, n.vip6, n.adapter_id, n.mac, n.family, n.created_at, k.key, k.expires_at, k.created_at, r.last_seq
         FROM common_keys k JOIN nodes n ON n.id = k.node_id LEFT JOIN registrations r ON r.node_id = k.node_id WHERE k.node_id = ?`,
      ).raw(true),
      upsertReg: p(
        `INSERT INTO registrations (node_id, reported, observed_address, observed_port, nat, keepalive_sec, registered_at, last_seen, last_seq, mapping, nms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (node_id) DO UPDATE SET reported = excluded.reported, observed_address = excluded.observed_address,
           observed_port = excluded.observed_port, nat = excluded.nat, keepalive_sec = excluded.keepalive_sec,
           registered_at = excluded.registered_at, last_seen = excluded.last_seen, last_seq = excluded.last_seq,
           mapping = excluded.mapping, nms = excluded.nms`,
      ),
      touchReg: p(
        'UPDATE registrations SET last_seen = ?, last_seq = ?, observed_address = ?, observed_port = ? WHERE node_id = ?',
      ),
      touchRegIf: p(
        'UPDATE registrations SET last_seen = ?, last_seq = ? WHERE node_id = ? AND observed_address = ? AND observed_port = ? AND nms IS ?',
      ),
      getReg: p(`SELECT ${REG_COLUMNS} FROM registrations WHERE node_id = ?`).raw(true),
      setRegMapping: p('UPDATE registrations SET mapping = ? WHERE node_id = ?'),
      listRegs: p(`SELECT ${REG_COLUMNS} FROM registrations ORDER BY node_id`).raw(true),
      deleteReg: p('DELETE FROM registrations WHERE node_id = ?'),
      upsertRelay: p(
        `INSERT INTO relay_servers (id, endpoints, load, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET endpoints = excluded.endpoints, load = excluded.load,
           started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`,
      ),
      listRelays: p('SELECT * FROM relay_servers ORDER BY id'),
      deleteRelay: p('DELETE FROM relay_servers WHERE id = ?'),
      deleteTags: p('DELETE FROM node_tags WHERE name = ?'),
      insertTag: p('INSERT INTO node_tags (name, tag) VALUES (?, ?)'),
      getTags: p('SELECT tag FROM node_tags WHERE name = ? ORDER BY tag').pluck(true),
      listTags: p('SELECT name, tag FROM node_tags ORDER BY name, tag'),
      upsertInstance: p(
        `INSERT INTO cloud_instances (id, as_endpoints, nms_endpoints, trs_endpoints, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET as_endpoints = excluded.as_endpoints, nms_endpoints = excluded.nms_endpoints,
           trs_endpoints = excluded.trs_endpoints, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`,
      ),
      listInstances: p('SELECT * FROM cloud_instances ORDER BY id'),
      deleteInstance: p('DELETE FROM cloud_instances WHERE id = ?'),
    };
    // Indexes can exceed 2^53 in a big IPv6 pool in principle: read them as bigint.
    this.#maxV4 = p('SELECT MAX(vip4_index) AS m FROM nodes WHERE vip4_pool = ?').safeIntegers(true);
    this.#maxV6 = p('SELECT MAX(vip6_index) AS m FROM nodes WHERE vip6_pool = ?').safeIntegers(true);
    this.#createNodeTx = db.transaction((input: NewNode, pools: Pools) => this.#createNodeSync(input, pools)).immediate;
    this.#deleteNodeTx = db.transaction((id: number): boolean => {
      const row = db.prepare('SELECT name FROM nodes WHERE id = ?').get(id) as { name: string } | undefined;
      if (!row) return false;
      for (const t of ['certificates', 'common_keys', 'registrations']) db.prepare(`DELETE FROM ${t} WHERE node_id = ?`).run(id);
      db.prepare('DELETE FROM node_tags WHERE name = ?').run(row.name);
      db.prepare('DELETE FROM nodes WHERE id = ?').run(id);
      this.#bumpCertsRev();
      return true;
    }).immediate;
    const upsertMany = db.transaction((rows: unknown[][]) => {
      for (const r of rows) this.#stmt('upsertReg').run(...r);
    });
    this.#upserts = new GroupCommit<unknown[], void>({
      many: (rows) => this.#run(() => void upsertMany.immediate(rows)).then(() => rows.map(() => undefined)),
      one: (row) => this.#run(() => void this.#stmt('upsertReg').run(...row)),
      perItem: batchErrorPerItem,
    });
    const touchMany = db.transaction((ws: { stmt: string; args: unknown[] }[]) => ws.map((w) => this.#stmt(w.stmt).run(...w.args).changes > 0));
    this.#touches = new GroupCommit<{ stmt: string; args: unknown[] }, boolean>({
      many: (ws) => this.#run(() => touchMany.immediate(ws)),
      one: (w) => this.#run(() => this.#stmt(w.stmt).run(...w.args).changes > 0),
      perItem: batchErrorPerItem,
    });
    // Deferred (read) transactions: the rows of one batch come from one snapshot, taken when it runs.
    const turnReads = <K, R>(one: (k: K) => R): TurnReads<K, R> => {
      const many = db.transaction((ks: K[]) => ks.map(one));
      return new TurnReads<K, R>({
        one,
        many: (ids) => many(ids),
        closed: () => this.#closed,
        closedError: () => new StoreError('ERR_STORE_CLOSED', 'store is closed'),
        translate,
      });
    };
    this.#metaReads = turnReads((key: string): string | null => (this.#stmt('getMeta').get(key) as { value: string } | undefined)?.value ?? null);
    this.#nodeByIdReads = turnReads((id: number): NodeRecord | null => {
      const row = this.#stmt('nodeById').get(id) as NodeRow | undefined;
      return row === undefined ? null : nodeFromRow(row);
    });
    this.#nodeByNameReads = turnReads((name: string): NodeRecord | null => {
      const row = this.#stmt('nodeByName').get(name) as NodeRow | undefined;
      return row === undefined ? null : nodeFromRow(row);
    });
    this.#certReads = turnReads((id: number): CertificateRecord[] => (this.#stmt('nodeCerts').all(id) as CertRow[]).map(certFromRow));
    this.#regReads = turnReads((id: number): RegistrationRecord | null => {
      const row = this.#stmt('getReg').get(id) as unknown[] | undefined;
      return row === undefined ? null : regFromRaw(row);
    });
    this.#tagReads = turnReads((name: string): string[] => this.#stmt('getTags').all(name) as string[]);
    this.#sessionReads = turnReads((id: number): NodeSessionRecord | null => {
      const row = this.#stmt('nodeSession').get(id) as unknown[] | undefined;
      return row === undefined ? null : nodeSessionFromRaw(row);
    });
    this.#keyReads = turnReads((id: number): CommonKeyRecord | null => {
      const row = this.#stmt('getKey').get(id) as KeyRow | undefined;
      return row === undefined ? null : { nodeId: row.node_id, key: ownBytes(row.key), expiresAt: row.expires_at, createdAt: row.created_at };
    });
    this.#setTagsTx = db.transaction((name: string, tags: string[]) => {
      this.#stmt('deleteTags').run(name);
      for (const t of tags) this.#stmt('insertTag').run(name, t);
    }).immediate;
  }

  /** A write of certificates and the new CERTS_REV_KEY value, in one transaction. */
  #certWrite<T>(body: () => T): T {
    return this.#db.transaction(() => {
      const out = body();
      this.#bumpCertsRev();
      return out;
    }).immediate();
  }

  #bumpCertsRev(): void {
    this.#stmt('bumpCertsRev').run(CERTS_REV_KEY, randomBytes(8).toString('hex'));
  }

  /** Runs a synchronous body as an async call, with closed-check and error translation. */
  async #run<T>(body: () => T): Promise<T> {
    if (this.#closed) throw new StoreError('ERR_STORE_CLOSED', 'store is closed');
    try {
      return body();
    } catch (err) {
      throw translate(err);
    }
  }

  #stmt(name: string): Stmt {
    const s = this.#s[name];
    if (s === undefined) throw new Error(`no statement ${name}`);
    return s;
  }

  migrate(): Promise<void> {
    return this.#run(() => migrateDb(this.#db));
  }

  close(): Promise<void> {
    // Reads already asked for are answered, and writes already queued commit first (their callers were promised a
    // commit or an error).
    for (const r of [this.#sessionReads, this.#keyReads, this.#metaReads, this.#nodeByIdReads, this.#nodeByNameReads, this.#certReads, this.#regReads, this.#tagReads]) r.flush();
    this.#closing ??= Promise.all([this.#upserts.drain(), this.#touches.drain()]).then(() => {
      this.#closed = true;
      this.#listeners.clear();
      this.#db.close();
    });
    return this.#closing;
  }

  getMeta(key: string): Promise<string | null> {
    return this.#metaReads.read(key);
  }

  setMeta(key: string, value: string): Promise<void> {
    return this.#run(() => {
      this.#stmt('setMeta').run(key, value);
    });
  }

  setMetaIfAbsent(key: string, value: string): Promise<string> {
    return this.#run(() => {
      // INSERT … DO NOTHING is the atomic step; whoever wrote first, every caller then reads the same row.
      this.#stmt('insertMetaIfAbsent').run(key, value);
      return (this.#stmt('getMeta').get(key) as { value: string }).value;
    });
  }

  createEnrollmentToken(rec: NewEnrollmentToken): Promise<void> {
    return this.#run(() => {
      this.#stmt('insertToken').run(rec.tokenHash, rec.name, rec.expiresAt, rec.createdAt);
    });
  }

  consumeEnrollmentToken(tokenHash: string, now: number): Promise<TokenResult> {
    return this.#run((): TokenResult => {
      // One conditional UPDATE is the atomic step: only one caller can flip used_at from NULL.
      const won = this.#stmt('consumeToken').get(now, tokenHash, now) as { name: string } | undefined;
      if (won !== undefined) return { ok: true, name: won.name };
      const row = this.#stmt('getToken').get(tokenHash) as TokenRow | undefined;
      if (row === undefined) return { ok: false, reason: 'unknown' };
      if (row.used_at !== null) return { ok: false, reason: 'used' };
      return { ok: false, reason: 'expired' };
    });
  }

  #allocate(pool: Cidr, poolText: string, max: Stmt, what: string): { index: bigint; address: string } {
    const row = max.get(poolText) as { m: bigint | null } | undefined;
    let candidate = nextUsableOffset(pool, (row?.m ?? 0n) + 1n);
    for (let probes = 0; candidate !== null && probes < MAX_ALLOCATION_PROBES; probes++) {
      const address = addressAt(pool, candidate);
      if (this.#stmt('vipTaken').get(address, address) === undefined) return { index: candidate, address };
      candidate = nextUsableOffset(pool, candidate + 1n);
    }
    throw new StoreError('ERR_POOL_EXHAUSTED', `${what} pool ${poolText} has no free address left`);
  }

  #createNodeSync(input: NewNode, pools: Pools): NodeRecord {
    const { v4, v6, family, adapterId, mac, createdAt } = checkNewNode(input, pools);
    if (this.#stmt('nodeIdByName').get(input.name) !== undefined) {
      throw new StoreError('ERR_NAME_TAKEN', `a node named "${input.name}" already exists`);
    }
    const v4Text = formatCidr(v4);
    const v6Text = formatCidr(v6);
    const a4 = this.#allocate(v4, v4Text, this.#maxV4, 'IPv4');
    const a6 = this.#allocate(v6, v6Text, this.#maxV6, 'IPv6');
    const inserted = this.#stmt('insertNode').get(
      input.name,
      input.kind,
      a4.address,
      a6.address,
      v4Text,
      a4.index,
      v6Text,
      a6.index,
      adapterId,
      mac,
      family,
      createdAt,
    ) as { id: number };
    return {
      id: inserted.id,
      name: input.name,
      kind: input.kind,
      vip4: a4.address,
      vip6: a6.address,
      adapterId,
      mac,
      family,
      createdAt,
    };
  }

  createNode(input: NewNode, pools: Pools): Promise<NodeRecord> {
    return this.#run(() => this.#createNodeTx(input, pools));
  }

  getNodeById(id: number): Promise<NodeRecord | null> {
    return this.#nodeByIdReads.read(id);
  }

  getNodeByName(name: string): Promise<NodeRecord | null> {
    return this.#nodeByNameReads.read(name);
  }

  getNodeByVip(address: string): Promise<NodeRecord | null> {
    return this.#run(() => {
      const canonical = normalizeAddress(address);
      if (canonical === null) return null;
      const row = this.#stmt('nodeByVip').get(canonical, canonical) as NodeRow | undefined;
      return row === undefined ? null : nodeFromRow(row);
    });
  }

  listNodes(): Promise<NodeRecord[]> {
    return this.#run(() => (this.#stmt('listNodes').all() as NodeRow[]).map(nodeFromRow));
  }

  listGeneralNodes(adapterId?: number): Promise<NodeRecord[]> {
    return this.#run(() => (adapterId === undefined ? (this.#stmt('listAllGeneralNodes').all() as NodeRow[]) : (this.#stmt('listGeneralNodes').all(adapterId) as NodeRow[])).map(nodeFromRow));
  }

  addCertificate(rec: NewCertificate): Promise<void> {
    return this.#run(() => {
      this.#certWrite(() => this.#stmt('insertCert').run(rec.serial, rec.nodeId, rec.der, rec.notAfter, rec.createdAt));
    });
  }

  getCertificate(serial: string): Promise<CertificateRecord | null> {
    return this.#run(() => {
      const row = this.#stmt('getCert').get(serial) as CertRow | undefined;
      return row === undefined ? null : certFromRow(row);
    });
  }

  listNodeCertificates(nodeId: number): Promise<CertificateRecord[]> {
    return this.#certReads.read(nodeId);
  }

  revokeCertificate(serial: string, reason: string, at: number): Promise<boolean> {
    return this.#run(() => this.#certWrite(() => this.#stmt('revokeCert').run(at, reason, serial).changes > 0));
  }

  revokeNodeCertificates(nodeId: number, reason: string, at: number): Promise<number> {
    return this.#run(() => this.#certWrite(() => this.#stmt('revokeNodeCerts').run(at, reason, nodeId).changes));
  }

  isRevoked(serial: string): Promise<boolean> {
    return this.#run(() => this.#stmt('isRevoked').get(serial) !== undefined);
  }

  listRevokedSerials(): Promise<string[]> {
    return this.#run(() => (this.#stmt('listRevoked').all() as { serial: string }[]).map((r) => r.serial));
  }

  putCommonKey(rec: CommonKeyRecord): Promise<void> {
    return this.#run(() => {
      this.#stmt('putKey').run(rec.nodeId, rec.key, rec.expiresAt, rec.createdAt);
    });
  }

  getCommonKey(nodeId: number): Promise<CommonKeyRecord | null> {
    return this.#keyReads.read(nodeId);
  }

  getNodeSession(nodeId: number): Promise<NodeSessionRecord | null> {
    return this.#sessionReads.read(nodeId);
  }

  upsertRegistration(rec: RegistrationRecord): Promise<void> {
    return this.#run(() => {
      const reported = rec.reported.map((e, i) => checkEndpoint(e, `reported[${i}]`));
      const observed = checkEndpoint(rec.observed, 'observed');
      return [
        rec.nodeId,
        JSON.stringify(reported),
        observed.address,
        observed.port,
        rec.nat ? 1 : 0,
        rec.keepaliveSec,
        rec.registeredAt,
        rec.lastSeen,
        checkSeq(rec.lastSeq),
        rec.mapping ?? null,
        checkNms(rec.nms),
      ];
    }).then((row) => this.#upserts.write(row));
  }

  setRegistrationMapping(nodeId: number, mapping: NatMapping): Promise<boolean> {
    return this.#run(() => {
      if (mapping !== 'independent' && mapping !== 'dependent') throw new StoreError('ERR_STORE_INVALID', `invalid NAT mapping ${String(mapping)}`);
      return this.#stmt('setRegMapping').run(mapping, nodeId).changes > 0;
    });
  }

  touchRegistration(nodeId: number, lastSeen: number, lastSeq: bigint, observed: Endpoint): Promise<boolean> {
    return this.#run(() => {
      const o = checkEndpoint(observed, 'observed');
      return { stmt: 'touchReg', args: [lastSeen, checkSeq(lastSeq), o.address, o.port, nodeId] };
    }).then((w) => this.#touches.write(w));
  }

  touchRegistrationIf(nodeId: number, lastSeen: number, lastSeq: bigint, observed: Endpoint, nms: string | null): Promise<boolean> {
    return this.#run(() => {
      const o = checkEndpoint(observed, 'observed');
      return { stmt: 'touchRegIf', args: [lastSeen, checkSeq(lastSeq), nodeId, o.address, o.port, nms === null ? null : checkNms(nms)] };
    }).then((w) => this.#touches.write(w));
  }

  getRegistration(nodeId: number): Promise<RegistrationRecord | null> {
    return this.#regReads.read(nodeId);
  }

  listRegistrations(): Promise<RegistrationRecord[]> {
    return this.#run(() => (this.#stmt('listRegs').all() as unknown[][]).map(regFromRaw));
  }

  deleteRegistration(nodeId: number): Promise<void> {
    return this.#run(() => {
      this.#stmt('deleteReg').run(nodeId);
    });
  }

  upsertRelayServer(rec: RelayServerRecord): Promise<void> {
    return this.#run(() => {
      const { id, endpoints } = checkRelay(rec);
      this.#stmt('upsertRelay').run(id, endpoints, rec.load, rec.startedAt, rec.heartbeatAt);
    });
  }

  listRelayServers(): Promise<RelayServerRecord[]> {
    return this.#run(() => (this.#stmt('listRelays').all() as RelayRow[]).map(relayFromRow));
  }

  deleteRelayServer(id: string): Promise<void> {
    return this.#run(() => {
      this.#stmt('deleteRelay').run(id);
    });
  }

  deleteNode(nodeId: number): Promise<boolean> {
    return this.#run(() => this.#deleteNodeTx(nodeId));
  }

  setNodeTags(name: string, tags: string[]): Promise<void> {
    return this.#run(() => {
      this.#setTagsTx(name, checkTags(name, tags));
    });
  }

  getNodeTags(name: string): Promise<string[]> {
    return this.#tagReads.read(name);
  }

  listNodeTags(): Promise<Map<string, string[]>> {
    return this.#run(() => {
      const out = new Map<string, string[]>();
      for (const r of this.#stmt('listTags').all() as { name: string; tag: string }[]) {
        const l = out.get(r.name);
        if (l) l.push(r.tag);
        else out.set(r.name, [r.tag]);
      }
      return out;
    });
  }

  upsertInstance(rec: CloudInstanceRecord): Promise<void> {
    return this.#run(() => {
      const r = checkInstance(rec);
      this.#stmt('upsertInstance').run(r.id, r.as, r.nms, r.trs, rec.startedAt, rec.heartbeatAt);
    });
  }

  listInstances(): Promise<CloudInstanceRecord[]> {
    return this.#run(() => (this.#stmt('listInstances').all() as InstanceRow[]).map(instanceFromRow));
  }

  deleteInstance(id: string): Promise<void> {
    return this.#run(() => {
      this.#stmt('deleteInstance').run(id);
    });
  }

  publish(payload: string): Promise<void> {
    return this.#run(() => {
      checkMessage(payload);
      // Asynchronous like a NOTIFY: listeners run after the caller's turn.
      for (const h of this.#listeners) setImmediate(() => h(payload));
    });
  }

  subscribe(handler: InstanceMessageHandler): Promise<() => Promise<void>> {
    return this.#run(() => {
      const h: InstanceMessageHandler = (p) => handler(p);
      this.#listeners.add(h);
      return async () => {
        this.#listeners.delete(h);
      };
    });
  }
}

/** mkdir -p, one level at a time: Node 20's recursive mkdirSync can spin forever under /proc. */
function ensureDir(dir: string): void {
  if (existsSync(dir)) return;
  const parent = dirname(dir);
  if (parent !== dir) ensureDir(parent);
  mkdirSync(dir, { mode: 0o700 });
}

/**
 * Opens (creating if needed) an SQLite store at `path` (':memory:' for a private in-memory one),
 * configures WAL / synchronous=NORMAL / foreign keys / busy_timeout 5000, and runs migrations.
 * A new database file is created with mode 0600 (it holds common keys); its directory is created if missing.
 */
export async function openSqliteStore(path: string): Promise<Store> {
  if (typeof path !== 'string' || path === '') throw new StoreError('ERR_STORE_URL', 'SQLite store path must be a non-empty string');
  let db: Db | undefined;
  try {
    if (path !== ':memory:' && !path.startsWith('file:')) {
      ensureDir(dirname(path));
      closeSync(openSync(path, 'a', 0o600));
    }
    db = new Database(path, { timeout: 5000 });
    db.pragma('busy_timeout = 5000');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    migrateDb(db);
    return new SqliteStore(db);
  } catch (err) {
    db?.close();
    const e = translate(err);
    if (e instanceof StoreError && e.code === 'ERR_STORE') {
      throw new StoreError('ERR_STORE', `cannot open SQLite store ${path}: ${e.message}`, { cause: err });
    }
    throw e;
  }
}
