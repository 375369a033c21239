// Node tags in the SQLite store (migration 5) and the stored policy: set/get/list, validation, replacement, and a
// policy that does not parse never replaces the running one.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openStore } from '../../../src/store/index.js';
import { StoreError } from '../../../src/store/errors.js';
import { ALLOW_ALL } from '../../../src/policy/policy.js';
import { loadPolicy, pairAllowance, setPolicy } from '../../../src/policy/store.js';

describe('node tags and the stored policy', () => {
  test('tags: set, replace, list, clear; names need not exist yet', async () => {
    const s = await openStore(':memory:');
    try {
      assert.deepEqual(await s.getNodeTags('cam1'), []);
      await s.setNodeTags('cam1', ['video', 'cam', 'cam']);
      assert.deepEqual(await s.getNodeTags('cam1'), ['cam', 'video']);
      await s.setNodeTags('ops1', ['ops']);
      assert.deepEqual([...(await s.listNodeTags())], [['cam1', ['cam', 'video']], ['ops1', ['ops']]]);
      await s.setNodeTags('cam1', ['cam']);
      assert.deepEqual(await s.getNodeTags('cam1'), ['cam']);
      await s.setNodeTags('cam1', []);
      assert.deepEqual(await s.getNodeTags('cam1'), []);
      for (const bad of ['', 'Caps', '-x', 'a b', 'x'.repeat(64)]) {
        await assert.rejects(s.setNodeTags('n', [bad]), (e: unknown) => e instanceof StoreError && e.code === 'ERR_STORE_INVALID');
      }
      assert.deepEqual(await s.getNodeTags('n'), []);
    } finally {
      await s.close();
    }
  });

  test('the policy: allow-all until set; an invalid one is refused and the old one holds', async () => {
    const s = await openStore(':memory:');
    try {
      assert.deepEqual(await loadPolicy(s), ALLOW_ALL);
      await setPolicy(s, '{"allow": [{"from": ["tag:ops"], "to": ["tag:cam"], "ports": ["icmp"]}]}');
      await assert.rejects(setPolicy(s, '{"allow": [{"from": ["tag:ops"], "to": ["tag:cam"], "ports": ["tcp:0-"]}]}'), /ports\[0\]/);
      assert.deepEqual((await loadPolicy(s)).allow[0]!.ports, ['icmp']);
      await s.setNodeTags('o', ['ops']);
      await s.setNodeTags('c', ['cam']);
      assert.deepEqual(await pairAllowance(s, 'o', 'c'), { connected: true, aToB: ['icmp'], bToA: [] });
      assert.deepEqual(await pairAllowance(s, 'o', 'x'), { connected: false, aToB: [], bToA: [] });
    } finally {
      await s.close();
    }
  });
});
