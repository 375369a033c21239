// Test helper: an assert.throws / assert.rejects matcher for a CertificateError with a given code, shared by the
// PKI tests (pki.test.ts) and the DER-field certificate tests (cert-fields.test.ts).
import assert from 'node:assert/strict';
import { CertificateError } from '../../src/util/errors.js';

/** Matches a CertificateError whose code is `code` (its message shown when the code differs). */
export const certCode = (code: string) => (err: unknown) => {
  assert.ok(err instanceof CertificateError, `expected CertificateError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  return true;
};
