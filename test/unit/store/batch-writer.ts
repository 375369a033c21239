// Child of batch.test.ts: registers the given nodes in waves of concurrent (group-committed) upserts and prints each
// node id as soon as its write is acknowledged, until it is killed.

import { openStore } from '../../../src/store/index.js';

const [path, list] = process.argv.slice(2);
const ids = list!.split(',').map(Number);
const s = await openStore(path!);
for (let round = 1; ; round++) {
  await Promise.all(
    ids.map((id) =>
      s
        .upsertRegistration({ nodeId: id, reported: [], observed: { address: '127.0.0.1', port: 1000 + (id % 1000) }, nat: false, keepaliveSec: 25, registeredAt: round, lastSeen: round, lastSeq: BigInt(round) })
        .then(() => void process.stdout.write(`${id}\n`)),
    ),
  );
}
