// Public surface of the crypto/PKI layer: keys, CSRs, CA issuance, chain verification, AEAD, KDF, X25519, signatures.
// Other layers import from here ('../crypto/index.js') rather than from individual modules.
export { generateKeyPair, loadPrivateKey, loadPublicKey, publicKeyFromCert } from './keys.js';
export { createCsr, parseCsr, MAX_CSR_BYTES, type ParsedCsr } from './csr.js';
export {
  createRootCa,
  createIntermediateCa,
  issueNodeCertificate,
  issueServerCertificate,
  hasAsPurpose,
  AS_SERVER_PURPOSE,
  DEFAULT_ROOT_DAYS,
  DEFAULT_INTERMEDIATE_DAYS,
  DEFAULT_NODE_DAYS,
  DEFAULT_SERVER_DAYS,
  type CaMaterial,
  type IssuedCertificate,
} from './ca.js';
export {
  verifyChain,
  fingerprint,
  serialOf,
  commonNameOf,
  nodeIdOf,
  certInfo,
  subjectAltNames,
  subjectAltNamesRaw,
  toDer,
  toPem,
  splitPemChain,
  MAX_CHAIN_LENGTH,
  MAX_INTERMEDIATES,
  type CertInput,
  type VerifyOptions,
  type VerifiedCertificate,
} from './verify.js';
export { AeadKey, nonceFromSeq, AEAD_KEY_LEN, AEAD_NONCE_LEN, AEAD_TAG_LEN } from './aead.js';
export { hkdf, randomKey } from './kdf.js';
export { generateEphemeral, sharedSecret, X25519_KEY_LEN } from './x25519.js';
export { sign, verify } from './sign.js';
export { sha256Hex, timingSafeEqualHex } from './hash.js';
