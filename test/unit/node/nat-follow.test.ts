// What a node does after each registration answer (src/node/nat-follow.ts): TRS bindings follow a new public
// endpoint, and the NAT mapping probe goes out, and out again after a wait when it went unanswered, for as long as
// the registration it follows is still the node's.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { followRegistration } from '../../../src/node/nat-follow.js';
import type { Endpoint } from '../../../src/protocol/endpoint.js';
import { silentLogger } from '../../../src/util/log.js';

const PUB: Endpoint = { address: '198.18.0.20', port: 30000 };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A client whose probes fail `failures` times, then are answered; records each port probed. */
function client(failures: number): { probe(port: number): Promise<unknown>; probes: number[] } {
  const probes: number[] = [];
  return {
    probes,
    probe(port: number) {
      probes.push(port);
      return probes.length <= failures ? Promise.reject(new Error('no answer from the NMS')) : Promise.resolve({});
    },
  };
}

test('an unanswered probe is sent again after each wait until one is answered', async () => {
  const c = client(2);
  followRegistration(null, { nat: true, observed: PUB, probePort: 4505 }, { relay: null, client: c, logger: silentLogger, current: () => true, probeRetryMs: [5, 5, 5, 5] });
  await sleep(100);
  assert.deepEqual(c.probes, [4505, 4505, 4505], 'two unanswered, the third answered, then no more');
});

test('probes stop after the last wait, when the registration is no longer current, and without a current check', async () => {
  const always = client(100);
  followRegistration(null, { nat: true, observed: PUB, probePort: 4505 }, { relay: null, client: always, logger: silentLogger, current: () => true, probeRetryMs: [5, 5] });
  await sleep(100);
  assert.equal(always.probes.length, 3, 'the first try and one after each of the two waits');

  let current = true;
  const superseded = client(100);
  followRegistration(null, { nat: true, observed: PUB, probePort: 4505 }, { relay: null, client: superseded, logger: silentLogger, current: () => current, probeRetryMs: [30, 30, 30] });
  await sleep(10);
  current = false; // a new registration (or the node stopped) while the first retry waits
  await sleep(100);
  assert.equal(superseded.probes.length, 1, 'no retry for a registration that is no longer the node\'s');

  const once = client(100);
  followRegistration(null, { nat: true, observed: PUB, probePort: 4505 }, { relay: null, client: once, logger: silentLogger, probeRetryMs: [5, 5] });
  await sleep(50);
  assert.equal(once.probes.length, 1);
});

test('no probe when the node is not behind NAT or the NMS has no probe port; bindings follow a new public endpoint', async () => {
  const c = client(0);
  let rebinds = 0;
  const relay = { rebindAll: () => void rebinds++ };
  assert.equal(followRegistration(null, { nat: false, observed: PUB, probePort: 4505 }, { relay, client: c, logger: silentLogger, current: () => true }), false);
  assert.equal(followRegistration(PUB, { nat: true, observed: PUB }, { relay, client: c, logger: silentLogger, current: () => true }), false);
  assert.equal(rebinds, 0, 'the same public endpoint: nothing to rebind');
  assert.equal(followRegistration(PUB, { nat: true, observed: { ...PUB, port: 30001 } }, { relay, client: c, logger: silentLogger }), true);
  assert.equal(rebinds, 1);
  await sleep(10);
  assert.deepEqual(c.probes, []);
});
