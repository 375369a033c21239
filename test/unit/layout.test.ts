// Keeps the codebase easy to pick up: every module opens with a comment saying what it is for,
// and node/ and cloud/ never import each other (ESLint checks the rest of the import direction).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from '../harness/cluster.js';

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const sources = ['src', 'test', 'bench', 'scripts'].flatMap((d) => files(join(REPO, d)));

test('every TypeScript module starts with a comment of at least two lines', () => {
  const missing = sources.filter((f) => {
    const lines = readFileSync(f, 'utf8').split('\n');
    return !(lines[0]?.startsWith('//') && lines[1]?.startsWith('//'));
  });
  assert.deepEqual(missing.map((f) => f.slice(REPO.length + 1)), []);
});

test('node/ and cloud/ share only protocol, crypto, channel and util', () => {
  const bad: string[] = [];
  for (const f of sources) {
    const rel = f.slice(REPO.length + 1);
    const text = readFileSync(f, 'utf8');
    if (rel.startsWith('src/node/') && /from '\.\.\/cloud\//.test(text)) bad.push(rel);
    if (rel.startsWith('src/cloud/') && /from '(\.\.\/)+node\//.test(text)) bad.push(rel);
  }
  assert.deepEqual(bad, []);
});
