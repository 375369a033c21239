// A throwaway PKI for PeerManager tests: a root and an intermediate CA, the trust anchors that go with them, and
// node identities (key, certificate, chain) issued by the intermediate, as the AS would issue them.

import { createCsr, createIntermediateCa, createRootCa, generateKeyPair, issueNodeCertificate, toDer } from '../../../src/crypto/index.js';
import type { LocalIdentity, TrustAnchors } from '../../../src/crypto/handshake.js';

export interface TestPki {
  anchors: TrustAnchors;
  /** A node named `name` with node id `id`: its LocalIdentity and its certificate (DER). */
  identity(name: string, id: number, vips?: string[], privateKeyPem?: string): Promise<{ local: LocalIdentity; certDer: Buffer }>;
}

export async function createTestPki(): Promise<TestPki> {
  const root = await createRootCa({ commonName: 'root' });
  const inter = await createIntermediateCa(root, { commonName: 'as' });
  return {
    anchors: { rootsDer: [toDer(root.certPem)], intermediatesDer: [toDer(inter.certPem)], isRevoked: () => false },
    async identity(name, id, vips, key) {
      // Many identities (a test with a thousand peers) may share one key pair: certificates differ by name and id.
      const privateKeyPem = key ?? (await generateKeyPair()).privateKeyPem;
      const c = await issueNodeCertificate(inter, await createCsr(privateKeyPem, name), { name, fqdn: `${name}.cyphonic.internal`, nodeId: id, ...(vips ? { vips } : {}) });
      return { local: { nodeId: id, certDer: c.certDer, chainDer: [toDer(inter.certPem)], privateKeyPem }, certDer: c.certDer };
    },
  };
}
