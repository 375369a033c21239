// Wire-protocol constants: version, header/body sizes, message types, status codes, path types.
// The "spec" section is fixed by docs/PROTOCOL.md; the "tunables" section holds defaults a deployment may change.

/*
 * Protocol version history (the header's first byte; receivers reject any other value with ERR_VERSION):
 *   v1 — initial: 28-byte header, TLV bodies, AS over TLS 1.3, NMS sealed with AES-256-GCM.
 * Bump PROTOCOL_VERSION only for changes an old peer cannot skip; new optional TLV tags do not need a bump.
 */

// ───────────────────────────── spec ─────────────────────────────

/** Version carried in byte 0 of every header. */
export const PROTOCOL_VERSION = 1;

/** Fixed header size: version, type, status, txid, seq, id, length, reserved (see header.ts). */
export const HEADER_LEN = 28;

/** AES-256-GCM authentication tag appended to sealed bodies (counted in the header's length). */
export const AEAD_TAG_LEN = 16;

/** Largest body the u16 length field can describe (sealed bodies: ciphertext + tag). */
export const MAX_BODY_LEN = 65535;

/** Largest plaintext body that still fits once sealed. */
export const MAX_SEALED_PLAINTEXT_LEN = MAX_BODY_LEN - AEAD_TAG_LEN;

/** TLV field header: tag u8 + length u16. */
export const TLV_HEADER_LEN = 3;

/** Message type, header byte 1. */
export enum MessageType {
  EnrollRequest = 0x01,
  EnrollResponse = 0x02,
  LoginRequest = 0x03,
  LoginResponse = 0x04,
  InfoRequest = 0x05,
  InfoResponse = 0x06,
  GeneralEnrollRequest = 0x07,
  /** Node → AS over mTLS: a new certificate for the same node before the current one expires (answered with EnrollResponse). */
  RenewRequest = 0x08,
  RegistrationRequest = 0x10,
  RegistrationResponse = 0x11,
  Keepalive = 0x12,
  KeepaliveAck = 0x13,
  PolicyUpdate = 0x14,
  /** Node → NMS (sealed with the Common Key): the live TRS and a short-lived probe ticket for each (`node netcheck`). */
  RelayTicketRequest = 0x15,
  RelayTicketResponse = 0x16,
  /** The peers a node may reach, paged (docs/PROTOCOL.md, "Directory"). */
  DirectoryRequest = 0x18,
  DirectoryPage = 0x19,
  DirectoryNotice = 0x1a,
  DirectionRequest = 0x20,
  RouteDirectionResponder = 0x21,
  RouteConfirmation = 0x22,
  RouteDirectionInitiator = 0x23,
  RelayRequest = 0x24,
  RelayResponse = 0x25,
  RelayBind = 0x26,
  RelayBindAck = 0x27,
  /** NMS → TRS (sealed under the relay key): these nodes were revoked; drop their paths and refuse their binds. */
  RelayRevoke = 0x28,
  /** Node → TRS, sealed with a key from a probe ticket (src/channel/relay-probe.ts): a timed reachability check. */
  RelayProbe = 0x29,
  RelayProbeAck = 0x2a,
  TunnelRequest = 0x30,
  TunnelResponse = 0x31,
  EndpointUpdate = 0x32,
  EndpointUpdateAck = 0x33,
  /** Reachability check before a full TunnelRequest goes to an unverified endpoint (src/channel/path-probe.ts). */
  PathProbe = 0x36,
  PathProbeAck = 0x37,
  Capsule = 0x40,
  Ack = 0x7e,
  Nack = 0x7f,
}

const MESSAGE_TYPES: ReadonlySet<number> = new Set(
  Object.values(MessageType).filter((v): v is number => typeof v === 'number'),
);

/** True when `n` is a message type this version knows. */
export function isMessageType(n: number): n is MessageType {
  return MESSAGE_TYPES.has(n);
}

/** Enum name of a message type ('LoginRequest'), or `type 0x..` when unknown. */
export function messageTypeName(t: number): string {
  return isMessageType(t) ? MessageType[t] : `type 0x${t.toString(16).padStart(2, '0')}`;
}

/** Result status, header bytes 2-3. Requests always carry Ok; responses carry the outcome. */
export enum Status {
  Ok = 0,
  BadRequest = 1,
  Unauthorized = 2,
  TokenInvalid = 3,
  TokenUsed = 4,
  TokenExpired = 5,
  CertInvalid = 6,
  CertRevoked = 7,
  CommonKeyExpired = 8,
  NotRegistered = 9,
  UnknownPeer = 10,
  Internal = 11,
  UnsupportedVersion = 12,
  Replay = 13,
  NoRoute = 14,
}

/** Stable string codes for statuses (printed by CLI/control APIs, listed in docs/PROTOCOL.md). */
export const STATUS_CODES: Readonly<Record<Status, string>> = {
  [Status.Ok]: 'OK',
  [Status.BadRequest]: 'ERR_BAD_REQUEST',
  [Status.Unauthorized]: 'ERR_UNAUTHORIZED',
  [Status.TokenInvalid]: 'ERR_TOKEN_INVALID',
  [Status.TokenUsed]: 'ERR_TOKEN_USED',
  [Status.TokenExpired]: 'ERR_TOKEN_EXPIRED',
  [Status.CertInvalid]: 'ERR_CERT_INVALID',
  [Status.CertRevoked]: 'ERR_CERT_REVOKED',
  [Status.CommonKeyExpired]: 'ERR_COMMON_KEY_EXPIRED',
  [Status.NotRegistered]: 'ERR_NOT_REGISTERED',
  [Status.UnknownPeer]: 'ERR_UNKNOWN_PEER',
  [Status.Internal]: 'ERR_INTERNAL',
  [Status.UnsupportedVersion]: 'ERR_UNSUPPORTED_VERSION',
  [Status.Replay]: 'ERR_REPLAY',
  [Status.NoRoute]: 'ERR_NO_ROUTE',
};

/** True when `n` is a status this version knows. */
export function isStatus(n: number): n is Status {
  return Object.prototype.hasOwnProperty.call(STATUS_CODES, n);
}

/** Stable string code of a status ('ERR_TOKEN_USED'); unknown values give 'ERR_STATUS_<n>'. */
export function statusName(s: number): string {
  return isStatus(s) ? STATUS_CODES[s] : `ERR_STATUS_${s}`;
}

/** Reverse of statusName for known codes. */
export function statusFromCode(code: string): Status | undefined {
  for (const [k, v] of Object.entries(STATUS_CODES)) if (v === code) return Number(k) as Status;
  return undefined;
}

/** How a node-to-node path is carried. */
export enum PathType {
  Direct = 1,
  Punched = 2,
  Relayed = 3,
}

/** True when `n` is a known PathType. */
export function isPathType(n: number): n is PathType {
  return n === PathType.Direct || n === PathType.Punched || n === PathType.Relayed;
}

// ─────────────────────────── tunables ───────────────────────────

/** Default listening ports: AS TLS/TCP, NMS UDP, TRS UDP, node data UDP. */
export const DEFAULT_PORTS = { as: 4501, nms: 4502, trs: 4503, data: 30000, nmsProbe: 4505 } as const;

/** Keepalive period behind NAT: below the ~30 s UDP mapping timeout of common home routers. */
export const KEEPALIVE_NAT_SEC = 5;

/** Keepalive period without NAT: only liveness for the NMS, so it can be slow. */
export const KEEPALIVE_OPEN_SEC = 20;
