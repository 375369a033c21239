// The persistent-store contract shared by every backend (SQLite now, PostgreSQL later).
// Async on purpose: a networked backend implements the same interface; times are unix milliseconds.

export interface Endpoint {
  address: string;
  port: number;
}

export type NodeKind = 'node' | 'adapter' | 'general';
export const NODE_KINDS: readonly NodeKind[] = ['node', 'adapter', 'general'];

/** Which virtual address families a node uses: both, IPv4 only or IPv6 only (both are always allocated). */
export type AddressFamily = 'dual' | 'v4' | 'v6';
export const ADDRESS_FAMILIES: readonly AddressFamily[] = ['dual', 'v4', 'v6'];

export interface NodeRecord {
  id: number;
  name: string;
  kind: NodeKind;
  /** Virtual IPv4 address, allocated once from the v4 pool, never changes. */
  vip4: string;
  /** Virtual IPv6 address, allocated once from the v6 pool, never changes. */
  vip6: string;
  /** For 'general' devices behind an adapter: the adapter's node id. */
  adapterId: number | null;
  mac: string | null;
  /** Families the node uses (general nodes: what its adapter serves it). */
  family: AddressFamily;
  createdAt: number;
}

export interface CertificateRecord {
  /** Serial number as text (hex or decimal, opaque to the store). */
  serial: string;
  nodeId: number;
  der: Buffer;
  notAfter: number;
  createdAt: number;
  revokedAt: number | null;
  revokeReason: string | null;
}

export interface NodeSessionRecord {
  key: CommonKeyRecord;
  node: NodeRecord;
  lastSeq: bigint | null;
}

export interface CommonKeyRecord {
  nodeId: number;
  key: Buffer;
  expiresAt: number;
  createdAt: number;
}

export interface RegistrationRecord {
  nodeId: number;
  /** Endpoints the node reports for itself (its local interfaces). */
  reported: Endpoint[];
  /** Source endpoint the service observed. */
  observed: Endpoint;
  nat: boolean;
  keepaliveSec: number;
  registeredAt: number;
  lastSeen: number;
  /** Highest signaling sequence number seen; may exceed 2^53 (stored as text). */
  lastSeq: bigint;
  /** NAT mapping behaviour learned by the NMS's probe; absent until probed (and for nodes not behind NAT). */
  mapping?: NatMapping;
  /** Id of the cloud instance whose NMS holds this registration; absent for a single-instance cloud's old rows. */
  nms?: string;
}

/** 'independent': one public port for every destination (endpoint-independent mapping); 'dependent': a new one per destination. */
export type NatMapping = 'independent' | 'dependent';

/** One running TRS (Tunnel Relay Service) process, as it registers itself and heartbeats. */
export interface RelayServerRecord {
  /** Random text id chosen by the TRS process at start (unique per process, ≤ 64 characters). */
  id: string;
  /** Where nodes and the NMS reach it (its advertised addresses with its UDP port). */
  endpoints: Endpoint[];
  /** Active relayed paths. */
  load: number;
  startedAt: number;
  heartbeatAt: number;
}

/** One running cloud instance (the AS, NMS and TRS roles it runs), as it registers itself and heartbeats. */
export interface CloudInstanceRecord {
  /** Random text id chosen at start (unique per process, ≤ 64 characters). */
  id: string;
  /** Endpoints of its roles; empty for a role it does not run. */
  as: Endpoint[];
  nms: Endpoint[];
  trs: Endpoint[];
  startedAt: number;
  heartbeatAt: number;
}

/** A message between cloud instances (the `instance` channel): delivered to every listener, the sender included. */
export type InstanceMessageHandler = (payload: string) => void;

export type TokenResult = { ok: true; name: string } | { ok: false; reason: 'unknown' | 'used' | 'expired' };

/** Address pools as CIDR text, e.g. { v4: '100.64.0.0/10', v6: 'fd12:3456:789a::/48' }. */
export interface Pools {
  v4: string;
  v6: string;
}

export interface NewEnrollmentToken {
  name: string;
  /** Hash of the token; the token itself is never stored. */
  tokenHash: string;
  expiresAt: number;
  createdAt: number;
}

export interface NewNode {
  name: string;
  kind: NodeKind;
  adapterId?: number | null;
  mac?: string | null;
  /** @default 'dual' */
  family?: AddressFamily;
  /** @default Date.now() */
  createdAt?: number;
}

export interface NewCertificate {
  serial: string;
  nodeId: number;
  der: Buffer;
  notAfter: number;
  createdAt: number;
}

export interface Store {
  /** Applies missing versioned migrations (recorded in schema_migrations); idempotent, already run at open. */
  migrate(): Promise<void>;
  /** Releases the connection; any later call rejects with StoreError 'ERR_STORE_CLOSED'. Idempotent. */
  close(): Promise<void>;

  getMeta(key: string): Promise<string | null>;
  setMeta(key: string, value: string): Promise<void>;
  /**
   * Stores `value` under `key` unless the key already has a value; returns the value stored now (the
   * existing one, or `value`). Atomic: concurrent callers, also in other processes, all get the same answer.
   */
  setMetaIfAbsent(key: string, value: string): Promise<string>;

  /** StoreError 'ERR_STORE_DUPLICATE' if the hash already exists. */
  createEnrollmentToken(rec: NewEnrollmentToken): Promise<void>;
  /** Atomic: a token is consumed at most once, even with concurrent callers or processes. Expired when now >= expiresAt. */
  consumeEnrollmentToken(tokenHash: string, now: number): Promise<TokenResult>;

  /**
   * Creates a node and allocates its vip4/vip6 (lowest unused usable offset of each pool) in one
   * transaction. StoreError 'ERR_NAME_TAKEN' if the name exists, 'ERR_POOL_EXHAUSTED' if a pool is full,
   * 'ERR_STORE_REFERENCE' if adapterId names no node.
   */
  createNode(input: NewNode, pools: Pools): Promise<NodeRecord>;
  getNodeById(id: number): Promise<NodeRecord | null>;
  getNodeByName(name: string): Promise<NodeRecord | null>;
  /** Matches vip4 or vip6; the address may be given in any valid textual form. */
  getNodeByVip(address: string): Promise<NodeRecord | null>;
  /** Ordered by id. */
  listNodes(): Promise<NodeRecord[]>;
  /** General nodes owned by the adapter node `adapterId` (without it: every adapter's), ordered by id. */
  listGeneralNodes(adapterId?: number): Promise<NodeRecord[]>;

  /**
   * StoreError 'ERR_STORE_DUPLICATE' for a known serial, 'ERR_STORE_REFERENCE' for an unknown node. Like every write of
   * certificates (the revocations below, deleteNode), it gives the meta key CERTS_REV_KEY a new value in the same
   * transaction: a reader that cached certificates under the old value knows they may be stale.
   */
  addCertificate(rec: NewCertificate): Promise<void>;
  getCertificate(serial: string): Promise<CertificateRecord | null>;
  /** Certificates of one node, oldest first. */
  listNodeCertificates(nodeId: number): Promise<CertificateRecord[]>;
  /** True if this call revoked it; false if the serial is unknown or was already revoked (the first revocation is kept). */
  revokeCertificate(serial: string, reason: string, at: number): Promise<boolean>;
  /** Revokes every not-yet-revoked certificate of the node; returns how many were revoked now. */
  revokeNodeCertificates(nodeId: number, reason: string, at: number): Promise<number>;
  /** False for unknown serials. */
  isRevoked(serial: string): Promise<boolean>;
  /** Sorted by serial text. */
  listRevokedSerials(): Promise<string[]>;

  /** One current key per node: replaces any previous one. */
  putCommonKey(rec: CommonKeyRecord): Promise<void>;
  getCommonKey(nodeId: number): Promise<CommonKeyRecord | null>;
  /**
   * What the NMS needs at a node's first message, in one read: its Common Key, its node record and the lastSeq of its
   * registration (null: none). Null when the node has no Common Key.
   */
  getNodeSession(nodeId: number): Promise<NodeSessionRecord | null>;

  /**
   * Inserts or replaces the node's registration. Concurrent calls are group-committed (one transaction per batch,
   * src/store/batch.ts); each settles only after its transaction committed.
   */
  upsertRegistration(rec: RegistrationRecord): Promise<void>;
  /** Updates lastSeen/lastSeq/observed; false if the node has no registration. Group-committed like upsertRegistration. */
  touchRegistration(nodeId: number, lastSeen: number, lastSeq: bigint, observed: Endpoint): Promise<boolean>;
  /**
   * A keepalive's one write: updates lastSeen/lastSeq only if the node's registration was observed at `observed` and
   * names instance `nms` (null: none); false (nothing written) otherwise, or if there is none. Group-committed.
   */
  touchRegistrationIf(nodeId: number, lastSeen: number, lastSeq: bigint, observed: Endpoint, nms: string | null): Promise<boolean>;
  getRegistration(nodeId: number): Promise<RegistrationRecord | null>;
  /** Records the probed NAT mapping of a registration (upsertRegistration resets it); false if there is none. */
  setRegistrationMapping(nodeId: number, mapping: NatMapping): Promise<boolean>;
  /** Ordered by node id. */
  listRegistrations(): Promise<RegistrationRecord[]>;
  /** No-op if absent. */
  deleteRegistration(nodeId: number): Promise<void>;
  /**
   * Deletes a node and everything keyed by it (certificates, Common Key, registration, tags) in one transaction
   * (`general-node remove`); its id is never given out again, its addresses may be. False if there was no such node.
   * StoreError ERR_STORE_REFERENCE (nothing deleted) while general nodes still name it as their adapter.
   */
  deleteNode(nodeId: number): Promise<boolean>;

  /**
   * Inserts or replaces a TRS's row (its heartbeat). StoreError 'ERR_STORE_INVALID' for an empty or over-long
   * id (> 64 characters), a bad endpoint or a load that is not a non-negative integer.
   */
  upsertRelayServer(rec: RelayServerRecord): Promise<void>;
  /** Every registered TRS, live or not (callers judge liveness by heartbeatAt), ordered by id. */
  listRelayServers(): Promise<RelayServerRecord[]>;
  /** No-op if absent. */
  deleteRelayServer(id: string): Promise<void>;

  /**
   * Replaces the policy tags of the node named `name` (which need not exist yet: tags given at enrollment).
   * Stored sorted and deduplicated; an empty list removes them. StoreError 'ERR_STORE_INVALID' for a tag that is
   * not 1..63 characters of [a-z0-9-] starting with a letter or digit.
   */
  setNodeTags(name: string, tags: string[]): Promise<void>;
  /** Sorted; empty when the node has none. */
  getNodeTags(name: string): Promise<string[]>;
  /** Every node name with tags → its sorted tags. */
  listNodeTags(): Promise<Map<string, string[]>>;

  /** Inserts or replaces an instance's row (its heartbeat). StoreError 'ERR_STORE_INVALID' as for relay servers. */
  upsertInstance(rec: CloudInstanceRecord): Promise<void>;
  /** Every registered instance, live or not (callers judge liveness by heartbeatAt), ordered by id. */
  listInstances(): Promise<CloudInstanceRecord[]>;
  /** No-op if absent. */
  deleteInstance(id: string): Promise<void>;

  /**
   * Sends `payload` (≤ MAX_INSTANCE_MESSAGE bytes of text) to every listener of this store's database — PostgreSQL
   * NOTIFY across instances; SQLite, one process only (a SQLite cloud is one instance). StoreError 'ERR_STORE_INVALID'
   * for an over-long payload.
   */
  publish(payload: string): Promise<void>;
  /** Starts delivering published payloads to `handler` (PostgreSQL: LISTEN on a dedicated connection); returns a stop function. */
  subscribe(handler: InstanceMessageHandler): Promise<() => Promise<void>>;
}

/** Meta key whose value changes (in the same transaction) with every write of certificates; absent before the first. */
export const CERTS_REV_KEY = 'certs.rev';

/** A policy tag: lower-case letters, digits and '-', 1..63 characters, not starting with '-'. */
export const TAG_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Longest instance message (PostgreSQL's NOTIFY payload limit is 8000 bytes). */
export const MAX_INSTANCE_MESSAGE = 7_900;
