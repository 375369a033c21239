// The single place that loads @peculiar/x509 (certificate/CSR *building* only) and binds it to node's WebCrypto.
// reflect-metadata must be evaluated before @peculiar/x509, whose tsyringe dependency requires it.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };

const EC_IMPORT = { name: 'ECDSA', namedCurve: 'P-256' } as const;
/** ECDSA P-256 with SHA-256: the only signature algorithm cyphonic issues. */
export const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;

type WebKeyPair = { privateKey: webcrypto.CryptoKey; publicKey: webcrypto.CryptoKey };

/** Imports a PKCS#8 P-256 private key (DER) and its SPKI public key (DER) as a WebCrypto key pair. */
export async function importWebKeyPair(pkcs8Der: Buffer, spkiDer: Buffer): Promise<WebKeyPair> {
  const [privateKey, publicKey] = await Promise.all([
    webcrypto.subtle.importKey('pkcs8', pkcs8Der, EC_IMPORT, false, ['sign']),
    webcrypto.subtle.importKey('spki', spkiDer, EC_IMPORT, true, ['verify']),
  ]);
  return { privateKey, publicKey };
}

/** Imports an SPKI public key (DER) for embedding into a certificate. */
export async function importWebPublicKey(spkiDer: Buffer): Promise<webcrypto.CryptoKey> {
  return webcrypto.subtle.importKey('spki', spkiDer, EC_IMPORT, true, ['verify']);
}
