// The stored policy: allow-all until set, and a policy that does not parse never replaces the running one. (The
// tags themselves are part of the Store compliance suite, test/unit/store/compliance.ts, run on both backends.)

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openStore } from '../../../src/store/index.js';
import { ALLOW_ALL } from '../../../src/policy/policy.js';
import { loadPolicy, pairAllowance, setPolicy } from '../../../src/policy/store.js';

describe('node tags and the stored policy', () => {
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
