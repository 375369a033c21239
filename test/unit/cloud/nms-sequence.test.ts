// NMS sealing sequence numbers are AES-GCM nonces under each node's Common Key, and the Common Key outlives an NMS
// restart. A restart with the clock stepped back (NTP correction, a VM restored) must never reuse a number: the NMS
// persists a reservation ahead of use and continues above it. Two runs of the NMS on one store, the second one
// "earlier" by 100 s: every reply of the second run carries a higher sequence number than any of the first.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { NmsService } from '../../../src/cloud/nms/service.js';
import { NmsClient } from '../../../src/node/signaling.js';
import { decodeHeader } from '../../../src/protocol/header.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { openStore } from '../../../src/store/index.js';
import { silentLogger } from '../../../src/util/log.js';

const NMS: Endpoint = { address: '198.18.0.10', port: 4502 };
const NODE: Endpoint = { address: '198.18.0.11', port: 30000 };

test('a restarted NMS whose clock went back continues above every sequence number it used', async () => {
  const store = await openStore(':memory:');
  try {
    const n = await store.createNode({ name: 'alpha', kind: 'node' }, { v4: '100.64.0.0/10', v6: 'fd00:1:2::/48' });
    const key = randomBytes(32);
    await store.putCommonKey({ nodeId: n.id, key, expiresAt: Date.now() + 3_600_000, createdAt: Date.now() });
    const run = async (clock: () => number, times: number): Promise<bigint[]> => {
      const service = new NmsService({ domain: 'cyphonic.internal' }, { store, logger: silentLogger, now: clock });
      await service.restoreSequence();
      const seqs: bigint[] = [];
      const client = new NmsClient({ nodeId: n.id, commonKey: key, nms: NMS }, {
        send: (msg) =>
          void service.handle(msg, NODE).then((r) => {
            if (!r) return;
            seqs.push(decodeHeader(r).seq);
            client.handleDatagram(r);
          }),
      });
      try {
        for (let i = 0; i < times; i++) await client.register([NODE], i > 0);
      } finally {
        client.close();
        service.close();
      }
      return seqs;
    };
    const first = await run(Date.now, 20);
    const skewed = Date.now() - 100_000; // within the receivers' skew window, so the node still talks to it
    let tick = 0;
    const second = await run(() => skewed + tick++, 5);
    assert.equal(first.length, 20);
    assert.equal(second.length, 5);
    const maxFirst = first.reduce((a, b) => (a > b ? a : b));
    for (const s of second) assert.ok(s > maxFirst, `reused or lower sequence ${s} <= ${maxFirst}`);
  } finally {
    await store.close();
  }
});
