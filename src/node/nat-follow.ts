// What NAT traversal needs after each registration, shared by the node daemon and the adapter's general-node agents
// (every node identity with its own UDP socket does the same): the NAT mapping probe, and TRS bindings that follow
// a new public address.
//
//   RegistrationResponse {nat, observed, probePort} ─► observed ≠ last one? ─► relay.rebindAll()   (NAT rebinding, moves)
//                                                    └► nat && probePort   ─► client.probe(port)   (the NMS learns the mapping;
//                                                                              unanswered: again after PROBE_RETRY_MS)

import type { Endpoint } from '../protocol/endpoint.js';
import type { RegistrationResponse } from '../protocol/messages.js';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.address === b.address && a.port === b.port;
}

/**
 * Tunable: waits (ms) before probing again after a probe went unanswered (its own three tries all lost). Without a
 * mapping on record the NMS relays every path of the node that punching could have carried, until the next
 * registration, which may be hours away; so a lossy moment at registration is tried past, a few times, then left.
 */
export const PROBE_RETRY_MS = [5_000, 30_000, 120_000] as const;

export interface NatFollowers {
  relay: { rebindAll(): void } | null;
  client: { probe(port: number): Promise<unknown> };
  logger: Logger;
  /**
   * Whether the registration being followed is still the node's: an unanswered probe is tried again only while it
   * is (a later registration probes for itself; a stopped node probes no more). Absent: no second try.
   */
  current?: () => boolean;
  /** @default PROBE_RETRY_MS */
  probeRetryMs?: readonly number[];
}

/**
 * Acts on one registration's answer; `prev` is the public endpoint the NMS saw before (null for the first one).
 * Returns true when the public endpoint moved (the TRS bindings were refreshed).
 */
export function followRegistration(prev: Endpoint | null, res: Pick<RegistrationResponse, 'nat' | 'observed' | 'probePort'>, f: NatFollowers): boolean {
  const moved = prev !== null && !sameEndpoint(prev, res.observed);
  // A new public address or port: our TRS bindings must follow (telling direct peers is mobility's job: natRebound).
  if (moved) f.relay?.rebindAll();
  // Let the NMS learn our NAT's mapping behaviour (punchable or not); failures only cost a relay later.
  if (res.nat && res.probePort) void probeUntilAnswered(res.probePort, f);
  return moved;
}

/** Probes (each probe three tries) until one is answered, the waits run out, or the registration is not current. */
async function probeUntilAnswered(port: number, f: NatFollowers): Promise<void> {
  const waits = f.probeRetryMs ?? PROBE_RETRY_MS;
  for (let i = 0; ; i++) {
    try {
      await f.client.probe(port);
      return;
    } catch (err) {
      const again = i < waits.length && (f.current?.() ?? false);
      f.logger.debug('NAT mapping probe unanswered', { err: describeError(err), ...(again ? { retryMs: waits[i] } : {}) });
      if (!again) return;
    }
    await new Promise<void>((r) => setTimeout(r, waits[i]).unref());
    if (!f.current?.()) return;
  }
}
