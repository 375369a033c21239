// The NMS↔TRS control channel: the cloud-internal relay key (store meta, made once) and the per-request keys derived from it.
// RelayRequest (NMS → TRS) and RelayResponse/Nack (TRS → NMS) are sealed frames (src/channel/sealed.ts) under these keys.

/*
 * relay key: 32 random bytes, meta 'relay.key' (base64), written by `cloud init` or by the first process that
 * needs it (setMetaIfAbsent: two processes starting together agree on one key).
 *
 * For one path on one TRS:  ChannelKeys(relay key, salt = path id (u64 BE) ‖ UTF-8 TRS id,
 *                                       up   = "cyphonic v1 nms->trs",  seals RelayRequest
 *                                       down = "cyphonic v1 trs->nms")  seals RelayResponse / Nack
 * Why per path and per TRS: several NMS and several TRS processes share the relay key, and each seals with
 * its own clock-based sequence numbers. A (key, nonce) pair must never repeat; with the path id (random, chosen
 * by one NMS) and the TRS id (random per process) in the salt, each key has exactly one sender per direction.
 * It also binds a request to the TRS it was meant for: replayed to another TRS, it does not open.
 */

import { randomBytes } from 'node:crypto';
import { ChannelKeys } from '../../channel/sealed.js';
import type { Store } from '../../store/types.js';
import { ConfigError } from '../../util/errors.js';

/** Store meta key holding the relay key (base64). */
export const RELAY_KEY_META = 'relay.key';
export const INFO_NMS_TO_TRS = 'cyphonic v1 nms->trs';
export const INFO_TRS_TO_NMS = 'cyphonic v1 trs->nms';
const RELAY_KEY_LEN = 32;

/** The cloud's relay key: read it, or create it if this is the first process to need it. Race-safe across processes. */
export async function loadRelayKey(store: Store): Promise<Buffer> {
  const text = await store.setMetaIfAbsent(RELAY_KEY_META, randomBytes(RELAY_KEY_LEN).toString('base64'));
  const key = Buffer.from(text, 'base64');
  if (key.length !== RELAY_KEY_LEN || key.toString('base64') !== text) {
    throw new ConfigError(`store meta ${RELAY_KEY_META} is not a base64 ${RELAY_KEY_LEN}-byte key`, 'ERR_RELAY_KEY');
  }
  return key;
}

/** Keys for the control messages about `pathId` exchanged with the TRS whose id is `serverId`. */
export function relayControlKeys(relayKey: Buffer, pathId: bigint, serverId: string): ChannelKeys {
  const id = Buffer.from(serverId, 'utf8');
  const salt = Buffer.allocUnsafe(8 + id.length);
  salt.writeBigUInt64BE(pathId, 0);
  id.copy(salt, 8);
  return new ChannelKeys(relayKey, { salt, up: INFO_NMS_TO_TRS, down: INFO_TRS_TO_NMS });
}
