// Path probes (PathProbe 0x36, PathProbeAck 0x37): a small, authenticated "are you there?" that a node sends to an
// endpoint nobody has seen its peer at before it sends that endpoint a full TunnelRequest (certificate and chain,
// ~1.5 KB, retransmitted up to four times). Only a node holding the path's Tunnel Key can answer, so a third party
// whose address a registration or an endpoint update named gets one 44-byte datagram per attempt and never the big
// ones: peers cannot be used to amplify traffic at it. Pure helpers, no I/O or state.
/*
 *   prober (node id P)                                         peer (node id Q)
 *     │── PathProbe     id = path id, seq = P's counter ──────────►│ opens with P's probe key,
 *     │   sealed empty body (44 bytes in all)                      │ answers where it came from
 *     │◄─ PathProbeAck  id = path id, seq = Q's counter ───────────│
 *         sealed body: u64 seq of the probe (52 bytes in all)
 *
 * Keys (ChannelKeys of the Tunnel Key, salt = the sender's node id, u64 BE):
 *   probe: info "cyphonic v1 path probe", ack: info "cyphonic v1 path probe ack".
 * Sequence numbers are the sender's clock-based counter (never repeats under one key). A replayed probe draws one ack
 * of about the same size (no amplification; acks are budgeted per path by the receiver); an ack counts only for an
 * outstanding probe of ours and from the endpoint probed.
 */

import { ChannelKeys, openFrame, sealFrame } from './sealed.js';
import { MessageType } from '../protocol/constants.js';
import { splitFrame } from '../protocol/header.js';

export const INFO_PATH_PROBE = 'cyphonic v1 path probe';
export const INFO_PATH_PROBE_ACK = 'cyphonic v1 path probe ack';

/** The probe (`up`) and ack (`down`) keys of one sender on one path. */
export function pathProbeKeys(tunnelKey: Buffer, senderNodeId: number): ChannelKeys {
  const salt = Buffer.alloc(8);
  salt.writeBigUInt64BE(BigInt(senderNodeId));
  return new ChannelKeys(tunnelKey, { salt, up: INFO_PATH_PROBE, down: INFO_PATH_PROBE_ACK });
}

/** A PathProbe from the holder of `mine` (its own pathProbeKeys). */
export function sealPathProbe(mine: ChannelKeys, pathId: bigint, seq: bigint): Buffer {
  return sealFrame(mine.up, { type: MessageType.PathProbe, txid: 0, seq, id: pathId }, Buffer.alloc(0));
}

/** The seq of a PathProbe sealed by the holder of `theirs`, or null when it does not authenticate. */
export function openPathProbe(theirs: ChannelKeys, frame: Buffer): bigint | null {
  try {
    const { header, headerBytes, body } = splitFrame(frame);
    if (header.type !== MessageType.PathProbe || body.length !== 16) return null;
    openFrame(theirs.up, header, headerBytes, body);
    return header.seq;
  } catch {
    return null;
  }
}

/** The answer to probe `probeSeq`, sealed with `mine` (the answering node's own pathProbeKeys). */
export function sealPathProbeAck(mine: ChannelKeys, pathId: bigint, seq: bigint, probeSeq: bigint): Buffer {
  const body = Buffer.alloc(8);
  body.writeBigUInt64BE(probeSeq);
  return sealFrame(mine.down, { type: MessageType.PathProbeAck, txid: 0, seq, id: pathId }, body);
}

/** The probe seq a PathProbeAck sealed by the holder of `theirs` answers, or null when it does not authenticate. */
export function openPathProbeAck(theirs: ChannelKeys, frame: Buffer): bigint | null {
  try {
    const { header, headerBytes, body } = splitFrame(frame);
    if (header.type !== MessageType.PathProbeAck || body.length !== 24) return null;
    return openFrame(theirs.down, header, headerBytes, body).readBigUInt64BE(0);
  } catch {
    return null;
  }
}
