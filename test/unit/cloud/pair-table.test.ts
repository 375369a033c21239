// The NMS's flat table of selected paths (src/cloud/nms/pair-table.ts) against a plain model: a Map per node of its
// peers' records, least recently selected dropped when full. Random selections over a small id space make pairs
// selected again, nodes fill up and lose peers, rows freed and reused, and the table grow past its first size.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prng } from '../../harness/prng.js';
import { PairTable, type SelectedPath } from '../../../src/cloud/nms/pair-table.js';
import type { PathKind } from '../../../src/cloud/nms/paths.js';

class Model {
  readonly byNode = new Map<number, Map<number, SelectedPath>>();
  private order = 0;
  constructor(private readonly perNode: number) {}

  remember(node: number, peer: number, p: Omit<SelectedPath, 'peer' | 'order'>): void {
    const order = ++this.order;
    let m = this.byNode.get(node);
    if (!m) this.byNode.set(node, (m = new Map()));
    if (!m.has(peer) && m.size >= this.perNode) {
      const oldest = [...m.values()].sort((a, b) => a.order - b.order)[0]!;
      m.delete(oldest.peer);
    }
    m.set(peer, { ...p, peer, order });
  }

  list(node: number): SelectedPath[] {
    return [...(this.byNode.get(node)?.values() ?? [])].sort((a, b) => b.order - a.order);
  }
}

const KINDS: PathKind[] = ['direct', 'punched', 'relayed'];

function check(table: PairTable, model: Model, nodes: number): void {
  let rows = 0;
  for (let n = 0; n < nodes; n++) {
    const want = model.list(n);
    rows += want.length;
    assert.deepEqual(table.list(n), want, `node ${n}'s paths`);
    assert.deepEqual(table.peersOf(n), want.map((p) => p.peer), `node ${n}'s peers`);
  }
  assert.equal(table.size, rows);
  assert.deepEqual([...table.nodes()].sort((a, b) => a - b), [...model.byNode].filter(([, m]) => m.size > 0).map(([n]) => n).sort((a, b) => a - b));
}

for (const [perNode, nodes, seed] of [[1, 30, 1], [3, 40, 7], [8, 200, 99], [1024, 20, 5]] as const) {
  test(`pair table matches the model: ${perNode} peers per node, ${nodes} nodes`, () => {
    const rand = prng(seed);
    const table = new PairTable(perNode);
    const model = new Model(perNode);
    for (let i = 0; i < 6000; i++) {
      const node = Math.floor(rand() * nodes);
      let peer = Math.floor(rand() * nodes);
      if (peer === node) peer = (peer + 1) % nodes;
      const relayed = rand() < 0.2;
      const p = {
        pathId: BigInt(Math.floor(rand() * 2 ** 32)) * 2n ** 32n + BigInt(i + 1),
        kind: relayed ? KINDS[2]! : KINDS[Math.floor(rand() * 2)]!,
        initiator: rand() < 0.5,
        relayId: relayed ? `trs-${i % 3}` : null,
        relay: relayed ? { address: '192.0.2.1', port: 4000 + (i % 3) } : null,
        why: `why ${i % 5}`,
        at: 1_000_000 + i,
      };
      table.remember(node, peer, p.pathId, p.kind, p.initiator, p.relayId, p.relay, p.why, p.at);
      model.remember(node, peer, p);
      if (i % 500 === 499) check(table, model, nodes);
    }
    check(table, model, nodes);
  });
}

test('pair table: what it hands out are copies; unknown nodes are empty; one end recorded is not the other', () => {
  const t = new PairTable(4);
  t.remember(1, 2, 5n, 'direct', true, null, null, 'responder reachable', 10);
  const got = t.list(1)[0]!;
  got.pathId = 9n;
  got.kind = 'relayed';
  assert.equal(t.list(1)[0]!.pathId, 5n);
  assert.equal(t.list(1)[0]!.kind, 'direct');
  assert.deepEqual(t.list(3), []);
  assert.deepEqual(t.peersOf(3), []);
  assert.deepEqual(t.peersOf(2), [], 'one end recorded, not the other');
});

test('pair table: ids must be unsigned 32-bit integers and a node must keep at least one peer', () => {
  const t = new PairTable(2);
  assert.throws(() => t.remember(-1, 2, 1n, 'direct', true, null, null, '', 0), RangeError);
  assert.throws(() => t.remember(1, 2 ** 32, 1n, 'direct', true, null, null, '', 0), RangeError);
  assert.throws(() => t.remember(1.5, 2, 1n, 'direct', true, null, null, '', 0), RangeError);
  assert.throws(() => new PairTable(0), RangeError);
  assert.equal(t.size, 0);
  t.remember(2 ** 32 - 1, 0, 1n, 'punched', false, null, null, '', 0);
  assert.deepEqual(t.peersOf(2 ** 32 - 1), [0]);
});
