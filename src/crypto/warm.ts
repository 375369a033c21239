// Warm-up of the tunnel handshake's code at node start, so a node's first contact with a peer does not pay for it.
// V8 compiles JavaScript lazily, on a function's first call, and OpenSSL sets up each algorithm's tables on first use:
// in a one-off timing on the testbed VM (a scratch script, not kept), a first handshake step took 3–7× as long as later ones (bench/first-contact
// prints the first-contact figures). So at start a node runs one complete handshake between two throwaway identities
// under a throwaway CA (certificate chain check, TunnelRequest, TunnelResponse, both key derivations) and checks its
// own certificate against its real trust anchors, which also leaves the parsed anchors and the CA's signature check
// cached (verify.ts) for every peer to come. Nothing of the throwaway material is kept or sent.

import { randomBytes } from 'node:crypto';
import { createIntermediateCa, createRootCa, issueNodeCertificate } from './ca.js';
import { createCsr } from './csr.js';
import { HandshakeReplayCache, PathHandshake, preverifyPeerCertificate, type LocalIdentity, type TrustAnchors } from './handshake.js';
import { generateKeyPair } from './keys.js';
import { toDer } from './pem.js';

async function throwawayNode(ca: Awaited<ReturnType<typeof createIntermediateCa>>, chain: Buffer[], name: string, nodeId: number): Promise<LocalIdentity> {
  const { privateKeyPem } = await generateKeyPair();
  const issued = await issueNodeCertificate(ca, await createCsr(privateKeyPem, name), { name, fqdn: `${name}.warm.invalid`, nodeId });
  return { nodeId, certDer: issued.certDer, chainDer: chain, privateKeyPem };
}

/**
 * One full handshake between two throwaway nodes, then `own` checked against `anchors` (when given). Resolves when
 * done; throws if the handshake does not produce matching keys (a broken build, not a network condition).
 */
export async function warmHandshake(own?: { certDer: Buffer; anchors: TrustAnchors }): Promise<void> {
  const root = await createRootCa({ commonName: 'cyphonic warm-up root' });
  const inter = await createIntermediateCa(root, { commonName: 'cyphonic warm-up CA' });
  const interDer = toDer(inter.certPem);
  const anchors: TrustAnchors = { rootsDer: [toDer(root.certPem)], intermediatesDer: [interDer], isRevoked: () => false };
  const a = await throwawayNode(inter, [interDer], 'warm-a', 1);
  const b = await throwawayNode(inter, [interDer], 'warm-b', 2);
  const path = { pathId: 1n, tunnelKey: randomBytes(32) };
  preverifyPeerCertificate(anchors, b.certDer);
  const ha = new PathHandshake(a, anchors, path, { nodeId: 2, name: 'warm-b' }, new HandshakeReplayCache(4));
  const hb = new PathHandshake(b, anchors, path, { nodeId: 1, name: 'warm-a' }, new HandshakeReplayCache(4));
  const answered = hb.onRequest(ha.initiate(1n, 1), 1n);
  const keys = answered ? ha.onResponse(answered.response) : null;
  if (!answered || !keys || !keys.send.equals(answered.keys.recv)) throw new Error('warm-up handshake did not agree on keys');
  if (!own) return;
  try {
    preverifyPeerCertificate(own.anchors, own.certDer);
  } catch {
    // An expired or not yet valid certificate of our own is certificate renewal's business, not the warm-up's.
  }
}
