// writeFileAtomic: the whole new content or the old one, never a mix; temporary files with unpredictable names,
// created exclusively, so a link planted where a predictable temp name would be cannot redirect a key write.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../../../src/util/fsx.js';

test('writeFileAtomic replaces the file, keeps the mode, leaves no temp file, and ignores planted links', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-fsx-'));
  try {
    const target = join(dir, 'key.pem');
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'untouched');
    // What the old code would have opened (and followed): .key.pem.<pid>.tmp
    symlinkSync(victim, join(dir, `.key.pem.${process.pid}.tmp`));
    writeFileAtomic(target, 'secret-1', 0o600);
    writeFileAtomic(target, 'secret-2', 0o600);
    assert.equal(readFileSync(target, 'utf8'), 'secret-2');
    assert.equal(statSync(target).mode & 0o777, 0o600);
    assert.equal(readFileSync(victim, 'utf8'), 'untouched', 'the planted link was not followed');
    const left = readdirSync(dir).filter((f) => f.endsWith('.tmp') && f !== `.key.pem.${process.pid}.tmp`);
    assert.deepEqual(left, [], 'no temporary file left behind');
    assert.ok(existsSync(target));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
