// A node started with a token before it can reach any AS (the network is not up yet, the cloud is still starting,
// a satellite link drops the first attempt) keeps trying and enrolls once the AS answers; a token the AS refuses
// fails `node up` at once with the AS's reason. Cloud and node daemon in one process on loopback.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEnrollment, initCloud, startCloud } from '../../../src/cloud/cloud.js';
import { NodeDaemon } from '../../../src/node/daemon.js';
import { RequestError } from '../../../src/util/errors.js';
import { silentLogger } from '../../../src/util/log.js';

/** A loopback TCP port nobody listens on (yet). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('node enrollment retry', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cyp-enroll-retry-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('an unreachable AS is retried until it answers; a refused token fails start at once', async () => {
    const cloudDir = join(dir, 'cloud');
    await initCloud({ dir: cloudDir, advertise: ['127.0.0.1'] });
    const token = await createEnrollment(cloudDir, 'alpha');
    const asPort = await freePort();
    const node = new NodeDaemon({ stateDir: join(dir, 'alpha'), token, cloud: [`127.0.0.1:${asPort}`], port: 0, tun: false }, silentLogger);
    let settled: 'ok' | Error | null = null;
    const starting = node.start().then(
      () => (settled = 'ok'),
      (err: Error) => (settled = err),
    );
    // Nothing listens yet: the first attempt is refused by the kernel. The old node gave up here.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(settled, null, `start still waits for the AS (got ${String(settled)})`);
    const cloud = await startCloud({ dir: cloudDir, logger: silentLogger, host: '127.0.0.1', ports: { as: asPort, nms: 0 } });
    try {
      let limit: NodeJS.Timeout | undefined;
      await Promise.race([starting, new Promise((r) => (limit = setTimeout(r, 20_000)))]);
      clearTimeout(limit);
      assert.equal(settled, 'ok', `the node enrolled once the AS answered (got ${String(settled)})`);
      assert.equal(node.status().name, 'alpha');
      assert.equal(cloud.as!.counters.get('enroll.ok'), 1);

      // The same token again (spent): the AS's refusal ends start at once, nothing is retried.
      const again = new NodeDaemon({ stateDir: join(dir, 'alpha2'), token, cloud: [`127.0.0.1:${asPort}`], port: 0, tun: false }, silentLogger);
      const t0 = Date.now();
      await assert.rejects(again.start(), (err: unknown) => err instanceof RequestError && /used/i.test(err.message));
      assert.ok(Date.now() - t0 < 5000, 'refused without retrying');
      await again.stop();
    } finally {
      await node.stop();
      await cloud.stop();
    }
  });
});
