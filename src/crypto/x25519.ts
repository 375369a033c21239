// Ephemeral X25519 key agreement for per-tunnel session keys (raw 32-byte public keys on the wire).
// Feed sharedSecret() into hkdf(); never use it directly as a key.
import { createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { CryptoError } from '../util/errors.js';

export const X25519_KEY_LEN = 32;

/** A fresh X25519 key pair; `publicKey` is the raw 32-byte u-coordinate. */
export function generateEphemeral(): { publicKey: Buffer; privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const jwk = publicKey.export({ format: 'jwk' });
  return { publicKey: Buffer.from(jwk.x!, 'base64url'), privateKey };
}

/** X25519(privateKey, peerPublic). Throws CryptoError('ERR_X25519') on a bad key or an all-zero result. */
export function sharedSecret(privateKey: KeyObject, peerPublic: Buffer): Buffer {
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'x25519') {
    throw new CryptoError('X25519: private key is not an X25519 private key', 'ERR_X25519');
  }
  if (!Buffer.isBuffer(peerPublic) || peerPublic.length !== X25519_KEY_LEN) {
    throw new CryptoError(`X25519: peer public key must be ${X25519_KEY_LEN} bytes`, 'ERR_X25519');
  }
  let secret: Buffer;
  try {
    const publicKey = createPublicKey({
      key: { kty: 'OKP', crv: 'X25519', x: peerPublic.toString('base64url') },
      format: 'jwk',
    });
    secret = diffieHellman({ privateKey, publicKey });
  } catch {
    throw new CryptoError('X25519: key agreement failed', 'ERR_X25519');
  }
  let acc = 0;
  for (const b of secret) acc |= b;
  if (acc === 0) throw new CryptoError('X25519: all-zero shared secret (low-order point)', 'ERR_X25519');
  return secret;
}
