// What NAT traversal needs after each registration, shared by the node daemon and the adapter's general-node agents
// (every node identity with its own UDP socket does the same): the NAT mapping probe, and TRS bindings that follow
// a new public address.
//
//   RegistrationResponse {nat, observed, probePort} ─► observed ≠ last one? ─► relay.rebindAll()   (NAT rebinding, moves)
//                                                    └► nat && probePort   ─► client.probe(port)   (the NMS learns the mapping)

import type { Endpoint } from '../protocol/endpoint.js';
import type { RegistrationResponse } from '../protocol/messages.js';
import { describeError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.address === b.address && a.port === b.port;
}

export interface NatFollowers {
  relay: { rebindAll(): void } | null;
  client: { probe(port: number): Promise<unknown> };
  logger: Logger;
}

/**
 * Acts on one registration's answer; `prev` is the public endpoint the NMS saw before (null for the first one).
 * Returns true when the public endpoint moved (the TRS bindings were refreshed).
 */
export function followRegistration(prev: Endpoint | null, res: Pick<RegistrationResponse, 'nat' | 'observed' | 'probePort'>, f: NatFollowers): boolean {
  const moved = prev !== null && !sameEndpoint(prev, res.observed);
  // A new public address or port: our TRS bindings must follow (telling direct peers is mobility's job: natRebound).
  if (moved) f.relay?.rebindAll();
  if (res.nat && res.probePort) {
    // Let the NMS learn our NAT's mapping behaviour (punchable or not); failures only cost a relay later.
    void f.client.probe(res.probePort).catch((err: unknown) => f.logger.debug('NAT mapping probe unanswered', { err: describeError(err) }));
  }
  return moved;
}
