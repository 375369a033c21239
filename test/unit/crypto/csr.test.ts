// Unit tests for PKCS#10 CSR creation and the strict CSR parser, including fuzzing:
// every malformed, truncated, bit-flipped or re-signed CSR must fail with ERR_CSR_INVALID and nothing else.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, randomBytes } from 'node:crypto';
import { createCsr, generateKeyPair, parseCsr } from '../../../src/crypto/index.js';
import { CertificateError } from '../../../src/util/errors.js';

async function assertCsrInvalid(der: Buffer, label: string): Promise<void> {
  await assert.rejects(
    () => parseCsr(der),
    (err: unknown) => {
      assert.ok(err instanceof CertificateError, `${label}: expected CertificateError, got ${String(err)}`);
      assert.equal(err.code, 'ERR_CSR_INVALID', label);
      return true;
    },
  );
}

describe('createCsr / parseCsr', () => {
  let keyPem: string;
  let publicKeyPem: string;
  let csr: Buffer;

  before(async () => {
    ({ privateKeyPem: keyPem, publicKeyPem } = await generateKeyPair());
    csr = await createCsr(keyPem, 'node-α.example');
  });

  it('round-trips the common name and the public key', async () => {
    assert.equal(csr[0], 0x30);
    const parsed = await parseCsr(csr);
    assert.equal(parsed.commonName, 'node-α.example');
    const expected = createPublicKey(publicKeyPem).export({ format: 'der', type: 'spki' });
    assert.deepEqual(parsed.publicKeySpkiDer, expected);
  });

  it('rejects every single-bit flip', async () => {
    for (let bit = 0; bit < csr.length * 8; bit++) {
      const bad = Buffer.from(csr);
      bad[bit >> 3] = bad[bit >> 3]! ^ (1 << (bit & 7));
      await assertCsrInvalid(bad, `bit ${bit}`);
    }
  });

  it('rejects every truncation and trailing data', async () => {
    for (let len = 0; len < csr.length; len++) await assertCsrInvalid(csr.subarray(0, len), `truncated to ${len}`);
    await assertCsrInvalid(Buffer.concat([csr, Buffer.from([0])]), 'trailing byte');
  });

  it('rejects a CSR whose public key was swapped for another key', async () => {
    const other = await createCsr((await generateKeyPair()).privateKeyPem, 'node-α.example');
    // Same structure and lengths: splice the other CSR's SPKI into ours (signature no longer matches).
    const ourSpki = (await parseCsr(csr)).publicKeySpkiDer;
    const theirSpki = (await parseCsr(other)).publicKeySpkiDer;
    const at = csr.indexOf(ourSpki);
    assert.ok(at > 0);
    const spliced = Buffer.from(csr);
    theirSpki.copy(spliced, at);
    await assertCsrInvalid(spliced, 'spliced key');
  });

  it('rejects random garbage and DER-looking garbage', async () => {
    for (let i = 0; i < 500; i++) {
      const junk = randomBytes(1 + (i % 300));
      if (i % 2 === 0) junk[0] = 0x30;
      if (i % 4 === 0 && junk.length > 2) junk[1] = Math.min(junk.length - 2, 0x7f);
      await assertCsrInvalid(junk, `junk ${i}`);
    }
    await assertCsrInvalid(Buffer.alloc(0), 'empty');
    await assertCsrInvalid(Buffer.alloc(20_000, 0x30), 'oversized');
    await assertCsrInvalid(Buffer.from('3080' + '00'.repeat(10), 'hex'), 'indefinite length');
    await assertCsrInvalid(Buffer.from('308400000010' + '00'.repeat(16), 'hex'), 'non-minimal length');
  });

  it('rejects random byte substitutions', async () => {
    for (let i = 0; i < 500; i++) {
      const bad = Buffer.from(csr);
      const pos = Math.floor(Math.random() * bad.length);
      const value = (bad[pos]! + 1 + Math.floor(Math.random() * 255)) & 0xff;
      bad[pos] = value;
      await assertCsrInvalid(bad, `substitution at ${pos}`);
    }
  });

  it('rejects non-Buffer input', async () => {
    await assertCsrInvalid('MIIB' as unknown as Buffer, 'string');
  });
});
