// Message catalogue: the TypeScript type and TLV schema of every message body, keyed by MessageType.
// encodeBody/decodeBody are typed through BodyMap so decodeBody(MessageType.LoginResponse, b) yields a LoginResponse.

import { DecodeError } from '../util/errors.js';
import { MAX_BODY_LEN, MessageType, isMessageType, isPathType } from './constants.js';
import type { Endpoint } from './endpoint.js';
import { type Frame, type FrameHeader, decodeFrame, encodeFrame } from './frame.js';
import type { Header } from './header.js';
import { type Schema, decodeTlv, encodeTlv, encodeTlvAfter, encodeTlvTransient } from './tlv.js';

export type { Endpoint } from './endpoint.js';

// ───────────────────────────── limits ─────────────────────────────

/** Symmetric keys (Common Key, tunnel key, temp key) and X25519 public keys. */
export const KEY_LEN = 32;
/** Node name and DNS names (RFC 1035 limit on a full name). */
export const MAX_NAME_LEN = 253;
export const MAX_TOKEN_LEN = 512;
/** One DER certificate or CSR. */
export const MAX_CERT_LEN = 8192;
/** Certificates in an enrollment chain (intermediates + root). */
export const MAX_CHAIN_LEN = 4;
/** Endpoints in one list (reported local addresses, NMS list, relay candidates). */
export const MAX_ENDPOINTS = 16;
/** A TRS's id in RelayResponse (random text, the key of its relay_servers row). */
export const MAX_RELAY_ID_LEN = 64;
export const MAX_SIGNATURE_LEN = 256;
export const MAX_REASON_LEN = 512;
/** Probe tickets in one RelayTicketResponse (one per live TRS; the NMS lists the least-loaded first). */
export const MAX_RELAY_TICKETS = 16;
/** One encoded RelayTicket record inside RelayTicketResponse. */
export const MAX_RELAY_TICKET_LEN = 3 + MAX_RELAY_ID_LEN + MAX_ENDPOINTS * 22 + 11 + 35;
/** Padding a RelayProbe may carry (it pads itself so the answer is never larger than the probe). */
export const MAX_RELAY_PROBE_PAD = 256;
/** One encoded GeneralNodeInfo record inside InfoResponse. */
export const MAX_GENERAL_NODE_LEN = 1024;
/** Longest port list a Route Direction or a PolicyEntry carries (policy.ts MAX_PORTS selectors per rule, merged). */
export const MAX_ALLOW_LEN = 4096;
/** PolicyEntry records in one PolicyUpdate (the NMS splits longer lists over several). */
export const MAX_POLICY_ENTRIES = 64;
/** Revoked certificate serials one PolicyEntry carries at most (the newest of the peer's certificates). */
export const MAX_REVOKED_SERIALS = 8;
/** A certificate serial as lowercase hex (our CA's are 32 digits; 20 bytes at most by RFC 5280). */
export const MAX_SERIAL_LEN = 40;
/** One encoded PolicyEntry record inside PolicyUpdate. */
export const MAX_POLICY_ENTRY_LEN = MAX_ALLOW_LEN + 32 + MAX_REVOKED_SERIALS * (3 + MAX_SERIAL_LEN);

// ───────────────────────────── types ─────────────────────────────

/** Body with no fields (InfoRequest, Keepalive, Ack). Encodes to zero bytes; unknown tags are ignored. */
export type EmptyBody = Record<string, never>;

export interface EnrollRequest {
  token: string;
  /** PKCS#10 CSR, DER. */
  csr: Buffer;
}

export interface EnrollResponse {
  nodeId: number;
  name: string;
  fqdn: string;
  /** Node certificate, DER. */
  certificate: Buffer;
  /** Intermediate(s) then root, DER. */
  chain: Buffer[];
}

export interface LoginRequest {
  clientVersion: number;
}

export interface LoginResponse {
  nodeId: number;
  name: string;
  fqdn: string;
  domain: string;
  vip4: string;
  vip6: string;
  /** 32-byte Common Key for sealing node<->NMS traffic. */
  commonKey: Buffer;
  /** Unix ms. */
  commonKeyExpiresAt: bigint;
  nmsEndpoints: Endpoint[];
  /** The overlay's address pools (CIDR text), routed into the node's TUN device. */
  pool4?: string;
  pool6?: string;
}

export type InfoRequest = EmptyBody;

/**
 * Adapter → AS over mTLS (the adapter's own certificate): a certificate for general node `name`, which the
 * adapter owns, from a CSR whose key the adapter made and keeps. Answered with EnrollResponse.
 */
export interface GeneralEnrollRequest {
  name: string;
  /** PKCS#10 CSR, DER. */
  csr: Buffer;
}

export interface InfoResponse {
  /** Each entry an encoded GeneralNodeInfo (see encodeGeneralNodeInfo). */
  generalNodes: Buffer[];
}

/** A non-CYPHONIC ("general") host reachable through a node; carried opaquely in InfoResponse. */
export interface GeneralNodeInfo {
  name: string;
  /** 6-byte MAC address. */
  mac: Buffer;
  vip4?: string;
  vip6?: string;
  fqdn: string;
}

export interface RegistrationRequest {
  /** Local addresses with the node's UDP data port. */
  endpoints: Endpoint[];
  reRegistration: boolean;
}

export interface RegistrationResponse {
  nodeId: number;
  vip4: string;
  vip6: string;
  fqdn: string;
  /** Source address the NMS saw. */
  observed: Endpoint;
  nat: boolean;
  keepaliveSec: number;
  /** UDP port of the NMS's mapping probe (same addresses): the node sends a Keepalive there once after registering. */
  probePort?: number;
  /** The revision of the node's directory (DirectoryPage); the node fetches it when it differs from what it holds. */
  directoryRev?: string;
}

export interface Keepalive {
  /** What the node's tunnels carry now (encoded PeerReport records, the busiest first): the operator's view of its
   *  peers (`GET /api/v1/nodes/NAME/peers`). Absent from the NAT mapping probe. */
  peers?: Buffer[];
}

/** Peers one Keepalive reports at most. */
export const MAX_PEER_REPORTS = 32;
/** Longest encoded PeerReport (5 fields, 3-byte TLV header each). */
export const MAX_PEER_REPORT_LEN = 64;

/** One peer as the reporting node sees it (record inside Keepalive.peers). */
export interface PeerReport {
  peerNodeId: number;
  /** PathType of the path carrying the traffic. */
  pathType: number;
  /** Round trip to the peer (ms; from the last endpoint update's ack, else the last handshake); absent: unknown. */
  rttMs?: number;
  txBytes: bigint;
  rxBytes: bigint;
}

export interface KeepaliveAck {
  observed: Endpoint;
  /** The revision of the node's directory at the NMS (see DirectoryPage); absent from an NMS without one. */
  directoryRev?: string;
}

/** Longest directory revision text. */
export const MAX_DIRECTORY_REV_LEN = 64;
/** Longest encoded DirectoryEntry (a 63-byte label, an id and two addresses, 3-byte TLV headers). */
export const MAX_DIRECTORY_ENTRY_LEN = 3 + 63 + 3 + 4 + 3 + 4 + 3 + 16;
/** Pages one directory has at most (MAX_DIRECTORY_ENTRIES / entries per page, rounded up). */
export const MAX_DIRECTORY_PAGES = 1024;

/** Node → NMS: page `page` (0-based) of the peers this node may reach. */
export interface DirectoryRequest {
  page: number;
}

/**
 * NMS → node, the answer to a DirectoryRequest: one page of the directory at revision `rev` (pages 0..pages-1 of one
 * revision make the whole list; a page of another revision means it changed meanwhile). Entries are encoded
 * DirectoryEntry records.
 */
export interface DirectoryPage {
  rev: string;
  page: number;
  pages: number;
  entries: Buffer[];
}

/** NMS → node, pushed once when the node's directory changed (a lost one is caught up by the next KeepaliveAck). */
export interface DirectoryNotice {
  rev: string;
}

/** A peer the node may reach (record inside DirectoryPage.entries): what its DNS answers before any route selection. */
export interface DirectoryEntry {
  nodeId: number;
  /** The node's name: a DNS label under the overlay domain. */
  name: string;
  vip4: string;
  vip6: string;
}

/** Exactly one of targetFqdn / targetVip is present. */
export interface DirectionRequest {
  targetFqdn?: string;
  targetVip?: string;
  /** Ask for a relayed path (a punch failed, or the TRS in use died). */
  relayOnly?: boolean;
  /** A TRS endpoint not to use (the one that stopped answering). */
  avoidRelay?: Endpoint;
  /** Only a direct or punched path (a relayed one retries a punch); NoRoute when a relay would be needed. */
  noRelay?: boolean;
}

/** Body of both RouteDirectionResponder and RouteDirectionInitiator. */
export interface RouteDirection {
  pathId: bigint;
  /** PathType. */
  pathType: number;
  initiator: boolean;
  peerNodeId: number;
  peerName: string;
  peerFqdn: string;
  peerVip4: string;
  peerVip6: string;
  peerEndpoints: Endpoint[];
  relay?: Endpoint;
  tunnelKey: Buffer;
  tempKey?: Buffer;
  peerCertificate: Buffer;
  /**
   * The ports the peer may open new flows to the receiving node on (policy text "icmp,tcp:22,udp:*"; "" = none,
   * only replies to flows the receiver opened). Absent: no policy information (an older NMS): everything passes.
   */
  allowIn?: string;
}

/** Node → AS (mTLS with its current certificate): certify this CSR for the same node (certificate renewal). */
export interface RenewRequest {
  csr: Buffer;
}

/** NMS → node, pushed: the policy changed for peers the node has paths with. Each entry an encoded PolicyEntry. */
export interface PolicyUpdate {
  entries: Buffer[];
  /** Set for an adapter node: its list of general nodes changed (one was added or removed); it fetches the list now. */
  generalNodes?: boolean;
}

/** One peer's new policy as seen by the receiving node (record inside PolicyUpdate.entries). */
export interface PolicyEntry {
  peerNodeId: number;
  /** Whether any rule still connects the two nodes (either direction); false: no new flow either way. */
  connected: boolean;
  /** What the peer may open to the receiver, as RouteDirection.allowIn. */
  allowIn: string;
  /** The peer's certificates were revoked: close the tunnel (drop everything both ways) and refuse its handshakes. */
  revoked?: boolean;
  /** With `revoked`: the serials (lowercase hex) of the revoked certificates; the node adds them to its revocation list. */
  revokedSerials?: string[];
}

export interface RouteConfirmation {
  pathId: bigint;
  accepted: boolean;
}

/** NMS → TRS (sealed with the cloud's relay key): relay path `pathId` between node `nodeA` and node `nodeB`. */
export interface RelayRequest {
  /** Equal to the header id. Never 0. */
  pathId: bigint;
  /** Node id of one end (never 0, never equal to nodeB). */
  nodeA: number;
  /** Node id of the other end. */
  nodeB: number;
  /** The path's 32-byte Temp Key; the ends seal their RelayBind with keys derived from it. */
  tempKey: Buffer;
  /** Unix ms after which the TRS forgets the path. */
  expiresAt: bigint;
}

/** NMS → TRS (sealed with the relay key; header id = a random nonzero u64): revoked nodes. Answered with a sealed Ack. */
export interface RelayRevoke {
  /** Node ids (never 0) whose relayed paths the TRS drops; it refuses paths and binds for them for RELAY_REVOKE_HOLD_MS. */
  nodeIds: number[];
}

/** Node ids in one RelayRevoke (the NMS splits longer lists). */
export const MAX_RELAY_REVOKE_IDS = 512;

/** TRS → NMS (sealed): the endpoints the two ends must send to. */
export interface RelayResponse {
  pathId: bigint;
  /** The TRS's own endpoints (IPv4 and/or IPv6), at least one. */
  relay: Endpoint[];
  /** The answering TRS's id (its relay_servers row). */
  relayId: string;
}

/** Node → TRS, sealed with a key derived from the Temp Key (see src/channel/relay-bind.ts). */
export interface RelayBind {
  /** The sender; must be end A or end B of the path. */
  nodeId: number;
  /** Sender's clock, unix ms (accepted within ±120 s). */
  timestamp: bigint;
}

/** TRS → node, sealed: the bind was accepted. */
export interface RelayBindAck {
  /** Echo of the bind's nodeId. */
  nodeId: number;
  /** TRS clock, unix ms. */
  timestamp: bigint;
  /** Source address and port the TRS saw the bind from (the node's mapping toward the TRS). */
  observed: Endpoint;
  /** True when the other end is bound too, so capsules can flow. */
  peerBound: boolean;
}

/** NMS → node (sealed with the Common Key): a probe ticket per live TRS (`node netcheck`). Unknown tags ignored. */
export interface RelayTicketResponse {
  /** Each an encoded RelayTicket (encodeRelayTicket); empty when no TRS is live. */
  tickets: Buffer[];
}

/**
 * What a node needs to probe one TRS: where it is, and a key only that TRS (and the cloud) can derive. Carried opaquely
 * in RelayTicketResponse so a record can grow fields without a new message.
 */
export interface RelayTicket {
  /** The TRS's id (its relay_servers row). */
  relayId: string;
  /** The TRS's endpoints (IPv4 and/or IPv6), at least one. */
  relay: Endpoint[];
  /** Header id of the probes under this ticket: (notAfter in unix seconds) << 32 | 32 random bits. */
  ticketId: bigint;
  /** 32 bytes: HKDF of the relay key for this ticket id and this TRS (src/channel/relay-probe.ts). */
  secret: Buffer;
}

/** Node → TRS, sealed with the ticket's probe key: "are you there?". Padded so the answer is never larger. */
export interface RelayProbe {
  /** The node the ticket was issued to (logging only: the key already binds the ticket). */
  nodeId: number;
  /** Sender's clock, unix ms (accepted within ±120 s). */
  timestamp: bigint;
  /** Zero bytes, so the probe is at least RELAY_PROBE_MIN_LEN long. */
  pad?: Buffer;
}

/** TRS → node, sealed with the ticket's ack key: the probe was authentic and within budget. */
export interface RelayProbeAck {
  /** TRS clock, unix ms. */
  timestamp: bigint;
  /** Source address and port the TRS saw the probe from. */
  observed: Endpoint;
}

/** Body of both TunnelRequest and TunnelResponse (semantics: see the tunnels issue). */
export interface TunnelHandshake {
  pathId: bigint;
  nodeId: number;
  /** X25519 ephemeral public key. */
  ephemeral: Buffer;
  /** Unix ms. */
  timestamp: bigint;
  certificate: Buffer;
  signature: Buffer;
  /** The sender's intermediate certificates (DER), so the peer can build the path to the root. */
  chain: Buffer[];
}
export type TunnelRequest = TunnelHandshake;
export type TunnelResponse = TunnelHandshake;

/**
 * Node → peer over an established path (mobility): "I moved; my traffic now comes from here". Sealed with a key
 * derived from the path's End Key (src/node/mobility.ts); the header id is the path id, the header seq the
 * replay counter. The peer takes the datagram's source address as the new endpoint.
 */
export interface EndpointUpdate {
  /** The sender (must be the path's peer). */
  nodeId: number;
  /** Sender's clock, unix ms. */
  timestamp: bigint;
  /** The sender's local addresses now (with its data port): candidates when the peer must change family. */
  endpoints: Endpoint[];
}

/** Peer → moved node, sealed the other way: the update with header seq `acked` was applied. */
export interface EndpointUpdateAck {
  /** The acknowledging node. */
  nodeId: number;
  /** Header seq of the update acknowledged. */
  acked: bigint;
  /** Source address and port the update came from (the endpoint now in use). */
  observed: Endpoint;
}

/** Opaque; format specified by the tunnels issue. */
export type Capsule = Buffer;

export type Ack = EmptyBody;

export interface Nack {
  reason: string;
}

/** Body type of every message type. */
export interface BodyMap {
  [MessageType.EnrollRequest]: EnrollRequest;
  [MessageType.EnrollResponse]: EnrollResponse;
  [MessageType.LoginRequest]: LoginRequest;
  [MessageType.LoginResponse]: LoginResponse;
  [MessageType.InfoRequest]: InfoRequest;
  [MessageType.InfoResponse]: InfoResponse;
  [MessageType.GeneralEnrollRequest]: GeneralEnrollRequest;
  [MessageType.RenewRequest]: RenewRequest;
  [MessageType.RegistrationRequest]: RegistrationRequest;
  [MessageType.RegistrationResponse]: RegistrationResponse;
  [MessageType.Keepalive]: Keepalive;
  [MessageType.KeepaliveAck]: KeepaliveAck;
  [MessageType.PolicyUpdate]: PolicyUpdate;
  [MessageType.DirectoryRequest]: DirectoryRequest;
  [MessageType.DirectoryPage]: DirectoryPage;
  [MessageType.DirectoryNotice]: DirectoryNotice;
  [MessageType.DirectionRequest]: DirectionRequest;
  [MessageType.RouteDirectionResponder]: RouteDirection;
  [MessageType.RouteConfirmation]: RouteConfirmation;
  [MessageType.RouteDirectionInitiator]: RouteDirection;
  [MessageType.RelayRequest]: RelayRequest;
  [MessageType.RelayResponse]: RelayResponse;
  [MessageType.RelayBind]: RelayBind;
  [MessageType.RelayTicketRequest]: EmptyBody;
  [MessageType.RelayTicketResponse]: RelayTicketResponse;
  [MessageType.RelayProbe]: RelayProbe;
  [MessageType.RelayProbeAck]: RelayProbeAck;
  [MessageType.RelayBindAck]: RelayBindAck;
  [MessageType.RelayRevoke]: RelayRevoke;
  [MessageType.TunnelRequest]: TunnelRequest;
  [MessageType.TunnelResponse]: TunnelResponse;
  [MessageType.EndpointUpdate]: EndpointUpdate;
  [MessageType.EndpointUpdateAck]: EndpointUpdateAck;
  [MessageType.PathProbe]: Capsule;
  [MessageType.PathProbeAck]: Capsule;
  [MessageType.Capsule]: Capsule;
  [MessageType.Ack]: Ack;
  [MessageType.Nack]: Nack;
}

// ───────────────────────────── schemas ─────────────────────────────

const EMPTY: Schema<EmptyBody> = [];

export const GENERAL_NODE_INFO_SCHEMA: Schema<GeneralNodeInfo> = [
  { tag: 1, name: 'name', kind: 'string', maxSize: MAX_NAME_LEN },
  { tag: 2, name: 'mac', kind: 'bytes', size: 6 },
  { tag: 3, name: 'vip4', kind: 'ip4', optional: true },
  { tag: 4, name: 'vip6', kind: 'ip6', optional: true },
  { tag: 5, name: 'fqdn', kind: 'string', maxSize: MAX_NAME_LEN },
];

const ROUTE_DIRECTION: Schema<RouteDirection> = [
  { tag: 1, name: 'pathId', kind: 'u64' },
  { tag: 2, name: 'pathType', kind: 'u8' },
  { tag: 3, name: 'initiator', kind: 'bool' },
  { tag: 4, name: 'peerNodeId', kind: 'id' },
  { tag: 5, name: 'peerName', kind: 'string', maxSize: MAX_NAME_LEN },
  { tag: 6, name: 'peerFqdn', kind: 'string', maxSize: MAX_NAME_LEN },
  { tag: 7, name: 'peerVip4', kind: 'ip4' },
  { tag: 8, name: 'peerVip6', kind: 'ip6' },
  { tag: 9, name: 'peerEndpoints', kind: 'endpoint', repeated: true, maxCount: MAX_ENDPOINTS },
  { tag: 10, name: 'relay', kind: 'endpoint', optional: true },
  { tag: 11, name: 'tunnelKey', kind: 'bytes', size: KEY_LEN },
  { tag: 12, name: 'tempKey', kind: 'bytes', size: KEY_LEN, optional: true },
  { tag: 13, name: 'peerCertificate', kind: 'bytes', maxSize: MAX_CERT_LEN },
  { tag: 14, name: 'allowIn', kind: 'string', maxSize: MAX_ALLOW_LEN, optional: true },
];

const TUNNEL_HANDSHAKE: Schema<TunnelHandshake> = [
  { tag: 1, name: 'pathId', kind: 'u64' },
  { tag: 2, name: 'nodeId', kind: 'id' },
  { tag: 3, name: 'ephemeral', kind: 'bytes', size: KEY_LEN },
  { tag: 4, name: 'timestamp', kind: 'u64' },
  { tag: 5, name: 'certificate', kind: 'bytes', maxSize: MAX_CERT_LEN },
  { tag: 6, name: 'signature', kind: 'bytes', maxSize: MAX_SIGNATURE_LEN },
  { tag: 7, name: 'chain', kind: 'bytes', maxSize: MAX_CERT_LEN, repeated: true, maxCount: MAX_CHAIN_LEN },
];

export const PEER_REPORT_SCHEMA: Schema<PeerReport> = [
  { tag: 1, name: 'peerNodeId', kind: 'id' },
  { tag: 2, name: 'pathType', kind: 'u8' },
  { tag: 3, name: 'rttMs', kind: 'u32', optional: true },
  { tag: 4, name: 'txBytes', kind: 'u64' },
  { tag: 5, name: 'rxBytes', kind: 'u64' },
];

export const DIRECTORY_ENTRY_SCHEMA: Schema<DirectoryEntry> = [
  { tag: 1, name: 'nodeId', kind: 'id' },
  { tag: 2, name: 'name', kind: 'string', maxSize: 63 },
  { tag: 3, name: 'vip4', kind: 'ip4' },
  { tag: 4, name: 'vip6', kind: 'ip6' },
];

export const RELAY_TICKET_SCHEMA: Schema<RelayTicket> = [
  { tag: 1, name: 'relayId', kind: 'string', maxSize: MAX_RELAY_ID_LEN },
  { tag: 2, name: 'relay', kind: 'endpoint', repeated: true, maxCount: MAX_ENDPOINTS },
  { tag: 3, name: 'ticketId', kind: 'u64' },
  { tag: 4, name: 'secret', kind: 'bytes', size: KEY_LEN },
];

export const POLICY_ENTRY_SCHEMA: Schema<PolicyEntry> = [
  { tag: 1, name: 'peerNodeId', kind: 'id' },
  { tag: 2, name: 'connected', kind: 'bool' },
  { tag: 3, name: 'allowIn', kind: 'string', maxSize: MAX_ALLOW_LEN },
  { tag: 4, name: 'revoked', kind: 'bool', optional: true },
  { tag: 5, name: 'revokedSerials', kind: 'string', maxSize: MAX_SERIAL_LEN, repeated: true, maxCount: MAX_REVOKED_SERIALS },
];

type SchemaMap = { [K in MessageType]: BodyMap[K] extends Buffer ? 'opaque' : Schema<BodyMap[K]> };

/** TLV schema of every message type ('opaque' = body passed through untouched). */
export const SCHEMAS: Readonly<SchemaMap> = {
  [MessageType.EnrollRequest]: [
    { tag: 1, name: 'token', kind: 'string', maxSize: MAX_TOKEN_LEN },
    { tag: 2, name: 'csr', kind: 'bytes', maxSize: MAX_CERT_LEN },
  ],
  [MessageType.EnrollResponse]: [
    { tag: 1, name: 'nodeId', kind: 'id' },
    { tag: 2, name: 'name', kind: 'string', maxSize: MAX_NAME_LEN },
    { tag: 3, name: 'fqdn', kind: 'string', maxSize: MAX_NAME_LEN },
    { tag: 4, name: 'certificate', kind: 'bytes', maxSize: MAX_CERT_LEN },
    { tag: 5, name: 'chain', kind: 'bytes', maxSize: MAX_CERT_LEN, repeated: true, maxCount: MAX_CHAIN_LEN },
  ],
  [MessageType.LoginRequest]: [{ tag: 1, name: 'clientVersion', kind: 'u16' }],
  [MessageType.LoginResponse]: [
    { tag: 1, name: 'nodeId', kind: 'id' },
    { tag: 2, name: 'name', kind: 'string', maxSize: MAX_NAME_LEN },
    { tag: 3, name: 'fqdn', kind: 'string', maxSize: MAX_NAME_LEN },
    { tag: 4, name: 'domain', kind: 'string', maxSize: MAX_NAME_LEN },
    { tag: 5, name: 'vip4', kind: 'ip4' },
    { tag: 6, name: 'vip6', kind: 'ip6' },
    { tag: 7, name: 'commonKey', kind: 'bytes', size: KEY_LEN },
    { tag: 8, name: 'commonKeyExpiresAt', kind: 'u64' },
    { tag: 9, name: 'nmsEndpoints', kind: 'endpoint', repeated: true, maxCount: MAX_ENDPOINTS },
    { tag: 10, name: 'pool4', kind: 'string', maxSize: 64, optional: true },
    { tag: 11, name: 'pool6', kind: 'string', maxSize: 64, optional: true },
  ],
  [MessageType.InfoRequest]: EMPTY,
  [MessageType.InfoResponse]: [
    { tag: 1, name: 'generalNodes', kind: 'bytes', maxSize: MAX_GENERAL_NODE_LEN, repeated: true },
  ],
  [MessageType.RenewRequest]: [{ tag: 1, name: 'csr', kind: 'bytes', maxSize: MAX_CERT_LEN }],
  [MessageType.GeneralEnrollRequest]: [
    { tag: 1, name: 'name', kind: 'string', maxSize: MAX_NAME_LEN },
    { tag: 2, name: 'csr', kind: 'bytes', maxSize: MAX_CERT_LEN },
  ],
  [MessageType.RegistrationRequest]: [
    { tag: 1, name: 'endpoints', kind: 'endpoint', repeated: true, maxCount: MAX_ENDPOINTS },
    { tag: 2, name: 'reRegistration', kind: 'bool' },
  ],
  [MessageType.RegistrationResponse]: [
    { tag: 1, name: 'nodeId', kind: 'id' },
    { tag: 2, name: 'vip4', kind: 'ip4' },
    { tag: 3, name: 'vip6', kind: 'ip6' },
    { tag: 4, name: 'fqdn', kind: 'string', maxSize: MAX_NAME_LEN },
    { tag: 5, name: 'observed', kind: 'endpoint' },
    { tag: 6, name: 'nat', kind: 'bool' },
    { tag: 7, name: 'keepaliveSec', kind: 'u16' },
    { tag: 8, name: 'probePort', kind: 'u16', optional: true },
    { tag: 9, name: 'directoryRev', kind: 'string', maxSize: MAX_DIRECTORY_REV_LEN, optional: true },
  ],
  [MessageType.Keepalive]: [{ tag: 1, name: 'peers', kind: 'bytes', maxSize: MAX_PEER_REPORT_LEN, repeated: true, maxCount: MAX_PEER_REPORTS }],
  [MessageType.KeepaliveAck]: [
    { tag: 1, name: 'observed', kind: 'endpoint' },
    { tag: 2, name: 'directoryRev', kind: 'string', maxSize: MAX_DIRECTORY_REV_LEN, optional: true },
  ],
  [MessageType.DirectoryRequest]: [{ tag: 1, name: 'page', kind: 'u16' }],
  [MessageType.DirectoryPage]: [
    { tag: 1, name: 'rev', kind: 'string', maxSize: MAX_DIRECTORY_REV_LEN },
    { tag: 2, name: 'page', kind: 'u16' },
    { tag: 3, name: 'pages', kind: 'u16' },
    { tag: 4, name: 'entries', kind: 'bytes', maxSize: MAX_DIRECTORY_ENTRY_LEN, repeated: true, maxCount: 64 },
  ],
  [MessageType.DirectoryNotice]: [{ tag: 1, name: 'rev', kind: 'string', maxSize: MAX_DIRECTORY_REV_LEN }],
  [MessageType.PolicyUpdate]: [
    { tag: 1, name: 'entries', kind: 'bytes', maxSize: MAX_POLICY_ENTRY_LEN, repeated: true, maxCount: MAX_POLICY_ENTRIES },
    { tag: 2, name: 'generalNodes', kind: 'bool', optional: true },
  ],
  [MessageType.DirectionRequest]: [
    { tag: 1, name: 'targetFqdn', kind: 'string', maxSize: MAX_NAME_LEN, optional: true },
    { tag: 2, name: 'targetVip', kind: 'ip', optional: true },
    { tag: 3, name: 'relayOnly', kind: 'bool', optional: true },
    { tag: 4, name: 'avoidRelay', kind: 'endpoint', optional: true },
    { tag: 5, name: 'noRelay', kind: 'bool', optional: true },
  ],
  [MessageType.RouteDirectionResponder]: ROUTE_DIRECTION,
  [MessageType.RouteConfirmation]: [
    { tag: 1, name: 'pathId', kind: 'u64' },
    { tag: 2, name: 'accepted', kind: 'bool' },
  ],
  [MessageType.RouteDirectionInitiator]: ROUTE_DIRECTION,
  [MessageType.RelayRequest]: [
    { tag: 1, name: 'pathId', kind: 'u64' },
    { tag: 2, name: 'nodeA', kind: 'id' },
    { tag: 3, name: 'nodeB', kind: 'id' },
    { tag: 4, name: 'tempKey', kind: 'bytes', size: KEY_LEN },
    { tag: 5, name: 'expiresAt', kind: 'u64' },
  ],
  [MessageType.RelayResponse]: [
    { tag: 1, name: 'pathId', kind: 'u64' },
    { tag: 2, name: 'relay', kind: 'endpoint', repeated: true, maxCount: MAX_ENDPOINTS },
    { tag: 3, name: 'relayId', kind: 'string', maxSize: MAX_RELAY_ID_LEN },
  ],
  [MessageType.RelayBind]: [
    { tag: 1, name: 'nodeId', kind: 'id' },
    { tag: 2, name: 'timestamp', kind: 'u64' },
  ],
  [MessageType.RelayBindAck]: [
    { tag: 1, name: 'nodeId', kind: 'id' },
    { tag: 2, name: 'timestamp', kind: 'u64' },
    { tag: 3, name: 'observed', kind: 'endpoint' },
    { tag: 4, name: 'peerBound', kind: 'bool' },
  ],
  [MessageType.RelayTicketRequest]: EMPTY,
  [MessageType.RelayTicketResponse]: [
    { tag: 1, name: 'tickets', kind: 'bytes', maxSize: MAX_RELAY_TICKET_LEN, repeated: true, maxCount: MAX_RELAY_TICKETS },
  ],
  [MessageType.RelayProbe]: [
    { tag: 1, name: 'nodeId', kind: 'id' },
    { tag: 2, name: 'timestamp', kind: 'u64' },
    { tag: 3, name: 'pad', kind: 'bytes', maxSize: MAX_RELAY_PROBE_PAD, optional: true },
  ],
  [MessageType.RelayProbeAck]: [
    { tag: 1, name: 'timestamp', kind: 'u64' },
    { tag: 2, name: 'observed', kind: 'endpoint' },
  ],
  [MessageType.TunnelRequest]: TUNNEL_HANDSHAKE,
  [MessageType.TunnelResponse]: TUNNEL_HANDSHAKE,
  [MessageType.EndpointUpdate]: [
    { tag: 1, name: 'nodeId', kind: 'id' },
    { tag: 2, name: 'timestamp', kind: 'u64' },
    { tag: 3, name: 'endpoints', kind: 'endpoint', repeated: true, maxCount: MAX_ENDPOINTS },
  ],
  [MessageType.EndpointUpdateAck]: [
    { tag: 1, name: 'nodeId', kind: 'id' },
    { tag: 2, name: 'acked', kind: 'u64' },
    { tag: 3, name: 'observed', kind: 'endpoint' },
  ],
  // Sealed by src/channel/path-probe.ts (an empty body; the ack: the probe's seq): opaque to the TLV codec.
  [MessageType.PathProbe]: 'opaque',
  [MessageType.PathProbeAck]: 'opaque',
  [MessageType.Capsule]: 'opaque',
  [MessageType.RelayRevoke]: [{ tag: 1, name: 'nodeIds', kind: 'id', repeated: true, maxCount: MAX_RELAY_REVOKE_IDS }],
  [MessageType.Ack]: EMPTY,
  [MessageType.Nack]: [{ tag: 1, name: 'reason', kind: 'string', maxSize: MAX_REASON_LEN }],
};

// ──────────────────────── cross-field checks ────────────────────────

/** Rules a schema cannot express; return a reason when the body is invalid. Run on encode and decode. */
type Check<T> = (b: T) => string | undefined;

const checkDirectionRequest: Check<DirectionRequest> = (b) =>
  (b.targetFqdn === undefined) === (b.targetVip === undefined)
    ? 'exactly one of targetFqdn and targetVip must be present'
    : undefined;

const checkRouteDirection: Check<RouteDirection> = (b) =>
  isPathType(b.pathType) ? undefined : `pathType ${b.pathType} is not a PathType`;

const checkRelayRequest: Check<RelayRequest> = (b) => {
  if (b.pathId === 0n) return 'pathId must not be 0';
  if (b.nodeA === 0 || b.nodeB === 0) return 'node ids must not be 0';
  return b.nodeA === b.nodeB ? 'nodeA and nodeB must differ' : undefined;
};

const checkRelayResponse: Check<RelayResponse> = (b) => {
  if (b.relay.length === 0) return 'at least one relay endpoint is required';
  return b.relayId === '' ? 'relayId must not be empty' : undefined;
};

const checkRelayRevoke: Check<RelayRevoke> = (b) => {
  if (b.nodeIds.length === 0) return 'at least one node id is required';
  return b.nodeIds.includes(0) ? 'node ids must not be 0' : undefined;
};

const checkNodeId: Check<{ nodeId: number }> = (b) => (b.nodeId === 0 ? 'nodeId must not be 0' : undefined);

const CHECKS: { [K in MessageType]?: Check<BodyMap[K]> } = {
  [MessageType.DirectionRequest]: checkDirectionRequest,
  [MessageType.RelayRequest]: checkRelayRequest,
  [MessageType.RelayResponse]: checkRelayResponse,
  [MessageType.RelayBind]: checkNodeId,
  [MessageType.RelayBindAck]: checkNodeId,
  [MessageType.RelayProbe]: checkNodeId,
  [MessageType.RelayRevoke]: checkRelayRevoke,
  [MessageType.EndpointUpdate]: checkNodeId,
  [MessageType.EndpointUpdateAck]: checkNodeId,
  [MessageType.RouteDirectionResponder]: checkRouteDirection,
  [MessageType.RouteDirectionInitiator]: checkRouteDirection,
  [MessageType.DirectoryPage]: (b) => (b.pages < 1 || b.pages > MAX_DIRECTORY_PAGES ? `pages ${b.pages}` : b.page >= b.pages ? `page ${b.page} of ${b.pages}` : undefined),
  [MessageType.DirectoryRequest]: (b) => (b.page >= MAX_DIRECTORY_PAGES ? `page ${b.page}` : undefined),
};

function runCheck<T extends MessageType>(type: T, body: BodyMap[T]): string | undefined {
  const check = CHECKS[type] as Check<BodyMap[T]> | undefined;
  return check?.(body);
}

// ───────────────────────────── codec ─────────────────────────────

/** Encode a body. Capsule bodies are returned as-is. Throws RangeError on invalid input. */
export function encodeBody<T extends MessageType>(type: T, body: BodyMap[T]): Buffer {
  if (!isMessageType(type)) throw new RangeError(`unknown message type ${String(type)}`);
  const schema = SCHEMAS[type];
  if (schema === 'opaque') {
    const raw = body as Uint8Array;
    if (!(raw instanceof Uint8Array)) throw new RangeError('opaque body must be a Buffer');
    if (raw.length > MAX_BODY_LEN) throw new RangeError(`body too long: ${raw.length} > ${MAX_BODY_LEN}`);
    return Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  }
  const why = runCheck(type, body);
  if (why) throw new RangeError(`encode ${MessageType[type]}: ${why}`);
  return encodeTlv(schema as Schema<BodyMap[T]>, body);
}

/**
 * encodeBody's bytes for a caller that copies them at once (sealFrame): a view of the encoders' scratch buffer, valid
 * only until the next encode (tlv.ts encodeTlvTransient). Not for opaque bodies.
 */
export function encodeBodyTransient<T extends MessageType>(type: T, body: BodyMap[T]): Buffer {
  if (!isMessageType(type)) throw new RangeError(`unknown message type ${String(type)}`);
  const schema = SCHEMAS[type];
  if (schema === 'opaque') throw new RangeError(`${MessageType[type]} has an opaque body: use encodeBody`);
  const why = runCheck(type, body);
  if (why) throw new RangeError(`encode ${MessageType[type]}: ${why}`);
  return encodeTlvTransient(schema as Schema<BodyMap[T]>, body);
}

/** The fields of a RegistrationResponse that never change for a node (ids are never reused, nor names or addresses changed). */
export type RegistrationHead = Pick<RegistrationResponse, 'nodeId' | 'vip4' | 'vip6' | 'fqdn'>;
const REGISTRATION_SCHEMA = SCHEMAS[MessageType.RegistrationResponse] as Schema<RegistrationResponse>;
const REGISTRATION_HEAD_SCHEMA = REGISTRATION_SCHEMA.filter((f) => f.tag <= 4) as unknown as Schema<RegistrationHead>;
const REGISTRATION_TAIL_SCHEMA = REGISTRATION_SCHEMA.filter((f) => f.tag > 4) as unknown as Schema<Omit<RegistrationResponse, keyof RegistrationHead>>;
if (REGISTRATION_HEAD_SCHEMA.length !== 4 || REGISTRATION_SCHEMA.slice(0, 4).some((f, i) => f !== REGISTRATION_HEAD_SCHEMA[i])) {
  throw new Error('messages: RegistrationResponse no longer starts with its four per-node fields');
}

/**
 * The per-node head of a RegistrationResponse (nodeId, vip4, vip6, fqdn TLVs), encoded once per node by the NMS so a
 * registration does not parse the addresses again. Throws RangeError like encodeBody.
 */
export function encodeRegistrationHead(head: RegistrationHead): Buffer {
  return encodeTlv(REGISTRATION_HEAD_SCHEMA, head);
}

/**
 * A RegistrationResponse body from a head made by encodeRegistrationHead and the fields of this registration:
 * byte for byte what encodeBody(MessageType.RegistrationResponse, …) gives for the same values. Throws RangeError.
 */
export function encodeRegistrationResponse(head: Buffer, rest: Omit<RegistrationResponse, keyof RegistrationHead>): Buffer {
  return encodeTlvAfter(head, REGISTRATION_TAIL_SCHEMA, rest);
}

/** Decode a body of the given type. Capsule bodies are returned as a zero-copy view. Throws DecodeError. */
export function decodeBody<T extends MessageType>(type: T, bytes: Uint8Array): BodyMap[T] {
  if (!isMessageType(type)) throw new DecodeError(`unknown message type ${String(type)}`, 'ERR_DECODE_TYPE');
  const schema = SCHEMAS[type];
  if (schema === 'opaque') {
    const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return b as BodyMap[T];
  }
  const body = decodeTlv(schema as Schema<BodyMap[T]>, bytes);
  const why = runCheck(type, body);
  if (why) throw new DecodeError(`${MessageType[type]}: ${why}`, 'ERR_DECODE_BODY');
  return body;
}

/** Encode a PolicyEntry record for PolicyUpdate.entries. Throws RangeError. */
export function encodePolicyEntry(e: PolicyEntry): Buffer {
  return encodeTlv(POLICY_ENTRY_SCHEMA, e);
}

/** Encode a DirectoryEntry record for DirectoryPage.entries. Throws RangeError. */
export function encodeDirectoryEntry(e: DirectoryEntry): Buffer {
  return encodeTlv(DIRECTORY_ENTRY_SCHEMA, e);
}

/** Decode one DirectoryPage.entries record; the name must be a DNS label (letters, digits, hyphens). Throws DecodeError. */
export function decodeDirectoryEntry(bytes: Uint8Array): DirectoryEntry {
  const e = decodeTlv(DIRECTORY_ENTRY_SCHEMA, bytes);
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/i.test(e.name)) throw new DecodeError(`DirectoryEntry: ${JSON.stringify(e.name)} is not a DNS label`, 'ERR_DECODE_BODY');
  return e;
}

/** Encode a PeerReport record for Keepalive.peers. Throws RangeError. */
export function encodePeerReport(r: PeerReport): Buffer {
  return encodeTlv(PEER_REPORT_SCHEMA, r);
}

/** Decode one Keepalive.peers record. Throws DecodeError (also for a path type that does not exist). */
export function decodePeerReport(bytes: Uint8Array): PeerReport {
  const r = decodeTlv(PEER_REPORT_SCHEMA, bytes);
  if (!isPathType(r.pathType)) throw new DecodeError(`PeerReport: path type ${r.pathType}`, 'ERR_DECODE_BODY');
  return r;
}

/** Decode one PolicyUpdate.entries record. Throws DecodeError. */
export function decodePolicyEntry(bytes: Uint8Array): PolicyEntry {
  const e = decodeTlv(POLICY_ENTRY_SCHEMA, bytes);
  if (e.revokedSerials?.some((s) => !/^[0-9a-f]+$/.test(s))) throw new DecodeError('PolicyEntry: a revoked serial is not lowercase hex', 'ERR_DECODE_BODY');
  if (e.revokedSerials?.length === 0) delete e.revokedSerials; // absent, as before the field existed
  return e;
}

/** Encode a RelayTicket record for RelayTicketResponse.tickets. Throws RangeError. */
export function encodeRelayTicket(t: RelayTicket): Buffer {
  if (t.relayId === '' || t.relay.length === 0 || t.ticketId === 0n) throw new RangeError('RelayTicket: relayId, an endpoint and a ticket id are required');
  return encodeTlv(RELAY_TICKET_SCHEMA, t);
}

/** Decode one RelayTicketResponse.tickets record. Throws DecodeError. */
export function decodeRelayTicket(bytes: Uint8Array): RelayTicket {
  const t = decodeTlv(RELAY_TICKET_SCHEMA, bytes);
  if (t.relayId === '' || t.relay.length === 0 || t.ticketId === 0n) throw new DecodeError('RelayTicket: relayId, an endpoint and a ticket id are required', 'ERR_DECODE_BODY');
  return t;
}

/** Encode a GeneralNodeInfo record for InfoResponse.generalNodes. Throws RangeError. */
export function encodeGeneralNodeInfo(info: GeneralNodeInfo): Buffer {
  return encodeTlv(GENERAL_NODE_INFO_SCHEMA, info);
}

/** Decode one InfoResponse.generalNodes entry. Throws DecodeError. */
export function decodeGeneralNodeInfo(bytes: Uint8Array): GeneralNodeInfo {
  return decodeTlv(GENERAL_NODE_INFO_SCHEMA, bytes);
}

// ──────────────────────── whole plain frames ────────────────────────

/** A decoded plain frame, discriminated on `type`. */
export type Message = { [K in MessageType]: { header: Header; type: K; body: BodyMap[K] } }[MessageType];

/** Encode header + body as one plain (unsealed) frame. Throws RangeError. */
export function encodeMessage<T extends MessageType>(h: FrameHeader & { type: T }, body: BodyMap[T]): Buffer {
  return encodeFrame(h, encodeBody(h.type, body));
}

/** Decode one whole plain frame (datagram or a FrameReader frame's parts) and its body. Throws DecodeError. */
export function decodeMessage(buf: Uint8Array | Frame): Message {
  const { header, body } = buf instanceof Uint8Array ? decodeFrame(buf) : buf;
  return { header, type: header.type, body: decodeBody(header.type, body) } as Message;
}
