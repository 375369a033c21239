// One conformance suite for every implementation of a node's sessions with a peer: the native engine
// (native/dataplane.c, through engine-rig.ts: a socket pair as its TUN) and the TypeScript reference (below: the
// rules of docs/PROTOCOL.md "Rekey and limits" written over DataSession, the reference of one session). Each case
// runs on both, against a peer made of plain DataSessions: first sessions, retransmitted and reordered installs
// (the responder answers every request; the initiator completes with any response), late responses, rekeys under
// loss, both ends initiating, the replay window across sessions, the age limits (no sealing, then no opening), and
// a responder's packets waiting until the initiator is seen using the session it answered.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DataSession, type DropReason } from '../../../src/crypto/data-session.js';
import { MAX_PENDING_REQUESTS } from '../../../src/crypto/handshake.js';
import { HEADER_LEN } from '../../../src/protocol/constants.js';
import { native, Rig, type EngineKeys } from './engine-rig.js';

type Reason = DropReason | 'unknownPath' | 'spoofed';
interface InstallOpts {
  receiveOnly?: boolean;
  sealForMs?: number;
  openForMs?: number;
  candidates?: number;
}

type Counter = 'sealExpired' | 'candidatesDropped' | 'expired' | 'queued';

/** A node's sessions with one peer (one slot, one virtual IP), as an implementation keeps them. */
interface Impl {
  /** Installs a session; returns the capsules it sent at once (an announcement, queued packets). */
  install(k: EngineKeys, o?: InstallOpts): Buffer[];
  /**
   * A packet from the node toward the peer: the capsule sealed for it (any queued packets sent first are in
   * `outbox`), 'queued' (held until its session is confirmed) or 'miss' (no session to seal with).
   */
  send(pkt: Buffer): Buffer | 'miss' | 'queued';
  /** A capsule from the peer: the packet delivered (empty for a keepalive), or why it was dropped. Capsules it
   *  made the node send (queued packets) go to `outbox`. */
  receive(frame: Buffer): Buffer | Reason;
  /** Capsules sent besides the ones returned, in order. */
  readonly outbox: Buffer[];
  counter(name: Counter): number;
  close(): void;
}

const VIP = [10, 99, 0, 2];
const DEFAULT_SEAL_MS = 60_000;
/** The engine's queue (native/dataplane.c QUEUE_PACKETS, QUEUE_WAIT_MS). */
const QUEUE_PACKETS = 256;
const QUEUE_WAIT_MS = 1000;
const REASONS = ['badTag', 'replayed', 'tooOld', 'expired', 'malformed', 'unknownPath', 'spoofed'] as const;

function engineImpl(): Impl {
  const rig = new Rig();
  const outbox: Buffer[] = [];
  return {
    outbox,
    install: (k, o = {}) => {
      rig.install(0, k, { vip4: VIP, ...o });
      return rig.atPeer(0); // the engine sends synchronously: whatever it sent is queued at the peer socket now
    },
    send: (pkt) => {
      const before = rig.stats.globals();
      rig.toTun(pkt);
      rig.turn();
      const after = rig.stats.globals();
      if (after.miss > before.miss) return 'miss';
      if (after.queued > before.queued) return 'queued';
      const got = rig.atPeer();
      assert.ok(got.length >= 1, 'a capsule for the packet');
      outbox.push(...got.slice(0, -1));
      return got.at(-1)!;
    },
    receive: (frame) => {
      const before = rig.stats.globals();
      rig.toEngine(frame);
      rig.turn();
      outbox.push(...rig.atPeer(0));
      const after = rig.stats.globals();
      for (const r of REASONS) if (after[r] > before[r]) return r;
      if (after.keepaliveCapsules > before.keepaliveCapsules) return Buffer.alloc(0);
      const p = rig.fromTun();
      assert.ok(p, 'neither delivered nor counted');
      return p;
    },
    counter: (name) => rig.global(name),
    close: () => rig.close(),
  };
}

interface RefPath {
  current: DataSession | null;
  previous: DataSession | null;
  /** A responder's answered, unconfirmed sessions, oldest first. */
  cand: DataSession[];
}

/** The rules of docs/PROTOCOL.md "Rekey and limits", over DataSession (what the engine must do, in TypeScript). */
class Reference implements Impl {
  readonly paths = new Map<bigint, RefPath>();
  sending: DataSession | null = null;
  used = false;
  readonly counts = { sealExpired: 0, candidatesDropped: 0, expired: 0, queued: 0 };
  readonly outbox: Buffer[] = [];
  /** Sessions the peer is known to hold (we initiated them, or a capsule opened under them), and install times. */
  readonly confirmed = new WeakSet<DataSession>();
  readonly born = new WeakMap<DataSession, number>();
  /** Packets waiting for a confirmed send session (the engine's one bounded queue; the oldest go when full). */
  queue: Buffer[] = [];

  install(k: EngineKeys, o: InstallOpts = {}): Buffer[] {
    const now = Date.now();
    const sealForMs = o.sealForMs ?? DEFAULT_SEAL_MS;
    const openForMs = o.openForMs ?? sealForMs + 5000;
    this.sweep(now);
    const s = new DataSession({ ...k, peerNodeId: 1, peerCertDer: Buffer.alloc(0), establishedAt: now, expiresAt: now + sealForMs }, undefined, Date.now, openForMs - sealForMs);
    this.born.set(s, now);
    if (k.initiator) this.confirmed.add(s);
    let path = this.paths.get(k.pathId);
    if (!path) this.paths.set(k.pathId, (path = { current: null, previous: null, cand: [] }));
    if (k.initiator || !path.current) {
      path.previous = path.current;
      path.current = s;
      path.cand = [];
    } else {
      while (path.cand.length >= (o.candidates ?? MAX_PENDING_REQUESTS)) {
        path.cand.shift();
        this.counts.candidatesDropped++;
      }
      path.cand.push(s);
    }
    if (o.receiveOnly) return [];
    const cur = this.sending;
    const waits = !k.initiator && this.used && cur !== null && cur.pathId === k.pathId && !cur.expired(now) && path.current !== s;
    this.used = true;
    if (waits || !k.initiator) {
      if (!waits) this.sending = s;
      return [];
    }
    this.sending = s;
    return [s.seal(Buffer.alloc(0)), ...this.flush()];
  }

  send(pkt: Buffer): Buffer | 'miss' | 'queued' {
    const now = Date.now();
    const s = this.sendSession(now);
    if (!s) return 'miss';
    if (!this.confirmed.has(s)) {
      if (now < this.born.get(s)! + QUEUE_WAIT_MS) {
        this.counts.queued++;
        this.queue.push(Buffer.from(pkt));
        if (this.queue.length > QUEUE_PACKETS) this.queue.shift();
        return 'queued';
      }
      this.confirmed.add(s);
      this.outbox.push(...this.flush());
    }
    return s.seal(pkt);
  }

  /** The queued packets, sealed with the send session. */
  private flush(): Buffer[] {
    const s = this.sending;
    if (!s) return [];
    const out = this.queue.map((p) => s.seal(p));
    this.queue = [];
    return out;
  }

  receive(frame: Buffer): Buffer | Reason {
    if (frame.length < HEADER_LEN) return 'malformed';
    const path = this.paths.get(frame.readBigUInt64BE(16));
    if (!path) return 'unknownPath';
    let best: Reason = 'badTag';
    for (const s of [path.current, ...[...path.cand].reverse(), path.previous]) {
      if (!s) continue;
      const r = s.tryOpen(frame);
      if (typeof r !== 'string') {
        if (path.cand.includes(s)) this.confirm(path, s);
        if (!this.confirmed.has(s)) {
          this.confirmed.add(s);
          if (this.sending === s) this.outbox.push(...this.flush());
        }
        // Cryptokey routing: an authentic capsule whose inner source is not the peer's virtual address is dropped.
        if (r.length > 0 && !(r.length >= 20 && r[0]! >> 4 === 4 && r.subarray(12, 16).equals(Buffer.from(VIP)))) return 'spoofed';
        return r;
      }
      if (r === 'malformed' || r === 'wrongPath') return 'malformed';
      if (r === 'expired' || (best === 'badTag' && r !== 'badTag')) best = r;
    }
    if (best === 'expired') this.counts.expired++;
    return best;
  }

  counter(name: Counter): number {
    return this.counts[name];
  }

  close(): void {}

  /** The send session; one past its seal limit goes, and the newest answer of its path takes over if there is one. */
  private sendSession(now: number): DataSession | null {
    const s = this.sending;
    if (!s || !s.expired(now)) return s;
    this.counts.sealExpired++;
    const c = this.paths.get(s.pathId)?.cand.at(-1);
    this.sending = c && !c.expired(now) ? c : null;
    return this.sending;
  }

  private confirm(path: RefPath, s: DataSession): void {
    path.previous = path.current;
    path.current = s;
    path.cand = [];
    if (this.used && (!this.sending || this.sending.pathId === s.pathId)) this.sending = s;
  }

  private sweep(now: number): void {
    const dead = (s: DataSession | null): boolean => s !== null && now >= s.openUntil;
    for (const [id, p] of this.paths) {
      if (dead(p.previous)) p.previous = null;
      p.cand = p.cand.filter((c) => !dead(c));
      if ((!p.current || dead(p.current)) && !p.previous && p.cand.length === 0) this.paths.delete(id);
    }
  }
}

/** Keys of one session: the node's half (for install) and the peer's DataSession. */
function session(pathId: bigint, nodeInitiates: boolean): { node: EngineKeys; peer: DataSession } {
  const a = randomBytes(32);
  const b = randomBytes(32);
  return {
    node: { pathId, send: a, recv: b, initiator: nodeInitiates },
    peer: new DataSession({ pathId, send: b, recv: a, initiator: !nodeInitiates, peerNodeId: 2, peerCertDer: Buffer.alloc(0), establishedAt: Date.now() }),
  };
}

/** An IPv4 packet between the node and the peer (source and destination: the peer's virtual address, the one the
 *  source check accepts from the peer; the engine routes sends by the destination). */
function ipv4(fill: number, bytes = 64): Buffer {
  const p = Buffer.alloc(bytes, fill);
  p[0] = 0x45;
  Buffer.from(VIP).copy(p, 12);
  Buffer.from(VIP).copy(p, 16);
  return p;
}

/** The peer opens a capsule the node sent: the packet (it must open). */
function peerOpens(s: DataSession, frame: Buffer | 'miss' | 'queued'): Buffer {
  assert.ok(Buffer.isBuffer(frame), `the node sealed it at once (${String(frame)})`);
  const r = s.tryOpen(frame as Buffer);
  assert.ok(Buffer.isBuffer(r), `the peer's session does not open it: ${String(r)}`);
  return r;
}

/** Dropped: its session is gone (a bad tag, or a replay verdict of a session that saw the same counter). */
function assertDropped(r: Buffer | Reason, what: string): void {
  assert.ok(r === 'badTag' || r === 'replayed', `${what}: ${Buffer.isBuffer(r) ? 'delivered' : r}`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const IMPLS: [string, () => Impl][] = [
  ['engine (native/dataplane.c)', engineImpl],
  ['reference (DataSession)', () => new Reference()],
];

for (const [name, make] of IMPLS) {
  const skip = name.startsWith('engine') && !native ? 'native addon not built' : false;
  describe(`session conformance: ${name}`, { skip }, () => {
    const P = 0x5e55_0000_0000_0001n;

    test('a first session is announced and carries both directions; receive-only installs never seal', () => {
      const n = make();
      try {
        const s = session(P, true);
        const sent = n.install(s.node);
        assert.equal(sent.length, 1, 'announced with one capsule');
        assert.equal(peerOpens(s.peer, sent[0]!).length, 0, 'an empty one');
        assert.deepEqual(peerOpens(s.peer, n.send(ipv4(1))), ipv4(1));
        assert.deepEqual(n.receive(s.peer.seal(ipv4(2))), ipv4(2));
        assert.deepEqual(n.receive(s.peer.seal(Buffer.alloc(0))), Buffer.alloc(0), 'keepalive');
        const other = session(P + 1n, false);
        assert.deepEqual(n.install(other.node, { receiveOnly: true }), []);
        assert.deepEqual(n.receive(other.peer.seal(ipv4(3))), ipv4(3), 'a receive-only path opens');
        assert.deepEqual(peerOpens(s.peer, n.send(ipv4(4))), ipv4(4), 'and the slot still sends on its own path');
        assert.equal(n.receive(session(P + 2n, true).peer.seal(ipv4(5))), 'unknownPath');
      } finally {
        n.close();
      }
    });

    test('retransmitted requests: whichever response the initiator completes with, the responder follows (in any install order)', () => {
      const orders = [
        [0, 1, 2, 3],
        [3, 2, 1, 0],
        [1, 3, 0, 2],
      ];
      for (const order of orders) {
        for (let k = 0; k < MAX_PENDING_REQUESTS; k++) {
          const n = make();
          try {
            const first = session(P, false);
            assert.deepEqual(n.install(first.node), [], 'an answered session is not announced: the initiator speaks first');
            // The initiator rekeys with MAX_PENDING_REQUESTS requests (retransmissions); each answer is a session.
            const answers = Array.from({ length: MAX_PENDING_REQUESTS }, () => session(P, false));
            for (const i of order) assert.deepEqual(n.install(answers[i]!.node), [], 'an answer to a rekey is not announced');
            // Meanwhile both ends still use the first session.
            assert.deepEqual(n.receive(first.peer.seal(ipv4(1))), ipv4(1), 'the session in use still opens');
            assert.deepEqual(peerOpens(first.peer, n.send(ipv4(2))), ipv4(2), 'and still seals');
            // The initiator completes with response k and speaks first under it.
            const chosen = answers[k]!;
            assert.deepEqual(n.receive(chosen.peer.seal(ipv4(3))), ipv4(3), `order ${order.join('')}, response ${k}: opens`);
            assert.deepEqual(peerOpens(chosen.peer, n.send(ipv4(4))), ipv4(4), `order ${order.join('')}, response ${k}: the responder seals with it`);
            for (const [j, a] of answers.entries()) if (j !== k) assertDropped(n.receive(a.peer.seal(ipv4(5))), 'the other answers are gone');
            assert.deepEqual(n.receive(first.peer.seal(ipv4(6))), ipv4(6), 'stragglers of the replaced session still open');
          } finally {
            n.close();
          }
        }
      }
    });

    test('retransmitted requests of a first tunnel: a late response to an earlier request still works', () => {
      for (const k of [0, 2]) {
        const n = make();
        try {
          const answers = [session(P, false), session(P, false), session(P, false)];
          for (const a of answers) assert.deepEqual(n.install(a.node), []);
          // Our packets wait: the initiator may not have our response yet.
          assert.equal(n.send(ipv4(9)), 'queued');
          assert.equal(n.send(ipv4(8)), 'queued');
          assert.deepEqual(n.receive(answers[k]!.peer.seal(ipv4(1))), ipv4(1));
          const flushed = n.outbox.splice(0);
          assert.deepEqual(flushed.map((f) => peerOpens(answers[k]!.peer, f)), [ipv4(9), ipv4(8)], 'queued packets go, in order, once it speaks');
          assert.deepEqual(peerOpens(answers[k]!.peer, n.send(ipv4(2))), ipv4(2));
          assert.equal(n.counter('queued'), 2);
        } finally {
          n.close();
        }
      }
    });

    test('a response older than the kept answers finds no session (counted); the newer ones still work', () => {
      const n = make();
      try {
        n.install(session(P, false).node);
        const answers = Array.from({ length: MAX_PENDING_REQUESTS + 1 }, () => session(P, false));
        for (const a of answers) n.install(a.node);
        assert.equal(n.counter('candidatesDropped'), 1);
        assert.equal(n.receive(answers[0]!.peer.seal(ipv4(1))), 'badTag');
        assert.deepEqual(n.receive(answers[1]!.peer.seal(ipv4(2))), ipv4(2));
        assert.deepEqual(peerOpens(answers[1]!.peer, n.send(ipv4(3))), ipv4(3));
      } finally {
        n.close();
      }
    });

    test('rekeys under loss: a lost announcement, a lost response and a retried request', () => {
      const n = make();
      try {
        // As initiator: the new session is sent on at once; its announcement is lost, the peer's next capsules
        // under either session open.
        const s1 = session(P, true);
        n.install(s1.node);
        const s2 = session(P, true);
        assert.equal(n.install(s2.node).length, 1); // announcement, dropped
        assert.deepEqual(peerOpens(s2.peer, n.send(ipv4(1))), ipv4(1));
        assert.deepEqual(n.receive(s1.peer.seal(ipv4(2))), ipv4(2), 'the peer has not switched yet');
        assert.deepEqual(n.receive(s2.peer.seal(ipv4(3))), ipv4(3));
        // As responder: the peer rekeys, our response is lost, it retries, we answer again, it completes.
        const lost = session(P, false);
        n.install(lost.node);
        const retry = session(P, false);
        n.install(retry.node);
        assert.deepEqual(peerOpens(s2.peer, n.send(ipv4(4))), ipv4(4), 'sealing stays on the confirmed session');
        assert.deepEqual(n.receive(retry.peer.seal(Buffer.alloc(0))), Buffer.alloc(0), 'its first (empty) capsule');
        assert.deepEqual(peerOpens(retry.peer, n.send(ipv4(5))), ipv4(5));
        assertDropped(n.receive(lost.peer.seal(ipv4(6))), 'the lost answer is gone');
      } finally {
        n.close();
      }
    });

    test('both ends initiate rekeys in turn; traffic flows both ways at every step', () => {
      const n = make();
      try {
        const s1 = session(P, true);
        n.install(s1.node);
        // The peer (responder of s1) rekeys: we answer; we keep sealing with s1 until it speaks under s2.
        const s2 = session(P, false);
        n.install(s2.node);
        assert.deepEqual(peerOpens(s1.peer, n.send(ipv4(1))), ipv4(1));
        assert.deepEqual(n.receive(s2.peer.seal(ipv4(2))), ipv4(2));
        assert.deepEqual(peerOpens(s2.peer, n.send(ipv4(3))), ipv4(3));
        // Now we rekey: s3 seals at once, the peer's s2 stragglers still open.
        const s3 = session(P, true);
        assert.equal(peerOpens(s3.peer, n.install(s3.node)[0]!).length, 0);
        assert.deepEqual(n.receive(s2.peer.seal(ipv4(4))), ipv4(4));
        assert.deepEqual(peerOpens(s3.peer, n.send(ipv4(5))), ipv4(5));
        assert.deepEqual(n.receive(s3.peer.seal(ipv4(6))), ipv4(6));
        // Two generations back is gone.
        assertDropped(n.receive(s1.peer.seal(ipv4(7))), 'two generations back');
      } finally {
        n.close();
      }
    });

    test('replay window: duplicates and too-old counters drop, reordering within the window passes, sessions do not share a window', () => {
      const n = make();
      try {
        const s1 = session(P, true);
        n.install(s1.node);
        const a = s1.peer.seal(ipv4(1));
        const b = s1.peer.seal(ipv4(2));
        assert.deepEqual(n.receive(b), ipv4(2));
        assert.deepEqual(n.receive(a), ipv4(1), 'out of order, within the window');
        assert.equal(n.receive(a), 'replayed');
        const old = s1.peer.seal(ipv4(3));
        for (let i = 0; i < 4100; i++) s1.peer.seal(Buffer.alloc(0));
        assert.deepEqual(n.receive(s1.peer.seal(ipv4(4))), ipv4(4));
        assert.equal(n.receive(old), 'tooOld');
        // A new session's counters start at 0 again: counter 0 under s2 is not a replay of counter 0 under s1.
        const s2 = session(P, true);
        n.install(s2.node);
        assert.deepEqual(n.receive(s2.peer.seal(ipv4(5))), ipv4(5));
        assert.equal(n.receive(a), 'replayed', 'and a replay under the previous session is still one');
      } finally {
        n.close();
      }
    });

    test('age limits: past its seal limit a session seals nothing (a miss), past its open limit it opens nothing (counted); a new session replaces it', async () => {
      const n = make();
      try {
        const s1 = session(P, true);
        n.install(s1.node, { sealForMs: 150, openForMs: 1000 });
        assert.deepEqual(peerOpens(s1.peer, n.send(ipv4(1))), ipv4(1));
        const late = s1.peer.seal(ipv4(2));
        await sleep(250);
        assert.equal(n.send(ipv4(3)), 'miss');
        assert.equal(n.counter('sealExpired'), 1);
        assert.equal(n.send(ipv4(3)), 'miss', 'still none');
        assert.equal(n.counter('sealExpired'), 1, 'counted once per session');
        assert.deepEqual(n.receive(s1.peer.seal(ipv4(4))), ipv4(4), 'it still opens until its open limit');
        await sleep(850);
        assert.equal(n.receive(late), 'expired');
        assert.equal(n.counter('expired'), 1);
        const s2 = session(P, true);
        assert.equal(n.install(s2.node).length, 1);
        assert.deepEqual(peerOpens(s2.peer, n.send(ipv4(5))), ipv4(5));
        assert.deepEqual(n.receive(s2.peer.seal(ipv4(6))), ipv4(6));
        // A responder whose session in use expired sends on its newest answer at once (the peer most likely has it).
        const s3 = session(P + 5n, false);
        n.install(s3.node, { sealForMs: 100, openForMs: 2000 });
        const s4 = session(P + 5n, false);
        assert.deepEqual(n.install(s4.node), []);
        await sleep(200);
        assert.equal(n.send(ipv4(7)), 'queued', 'the newest answer takes over, once the initiator uses it');
        assert.deepEqual(n.receive(s4.peer.seal(Buffer.alloc(0))), Buffer.alloc(0));
        assert.deepEqual(peerOpens(s4.peer, n.outbox.splice(0)[0]!), ipv4(7));
      } finally {
        n.close();
      }
    });

    test('an answered session nobody used for QUEUE_WAIT_MS is sealed with anyway (a lost announcement does not stall)', async () => {
      const n = make();
      try {
        const s = session(P, false);
        assert.deepEqual(n.install(s.node), []);
        assert.equal(n.send(ipv4(1)), 'queued');
        await sleep(QUEUE_WAIT_MS + 100);
        assert.deepEqual(peerOpens(s.peer, n.send(ipv4(2))), ipv4(2));
        assert.deepEqual(n.outbox.splice(0).map((f) => peerOpens(s.peer, f)), [ipv4(1)], 'the queued packet went first');
      } finally {
        n.close();
      }
    });

    test('cryptokey routing: an authentic capsule whose inner source is another address is dropped (spoofed), IPv4 and IPv6', () => {
      const n = make();
      try {
        const s = session(P, true);
        n.install(s.node);
        const forged = ipv4(7);
        Buffer.from([10, 99, 0, 3]).copy(forged, 12); // another node's virtual address
        assert.equal(n.receive(s.peer.seal(forged)), 'spoofed');
        const v6 = Buffer.alloc(80, 8);
        v6[0] = 0x60; // the peer has no IPv6 address on this slot: nothing IPv6 can be its
        assert.equal(n.receive(s.peer.seal(v6)), 'spoofed');
        assert.equal(n.receive(s.peer.seal(Buffer.from([0x00, 1, 2, 3]))), 'spoofed', 'not IP at all');
        assert.deepEqual(n.receive(s.peer.seal(ipv4(9))), ipv4(9), 'the peer\'s own packets still pass');
      } finally {
        n.close();
      }
    });

    test('expired sessions are wiped at the next install and their path forgotten', async () => {
      const n = make();
      try {
        const old = session(P, true);
        n.install(old.node, { sealForMs: 50, openForMs: 100 });
        await sleep(200);
        const fresh = session(P + 9n, true);
        n.install(fresh.node);
        assert.equal(n.receive(old.peer.seal(ipv4(1))), 'unknownPath', 'nothing of the old path is left');
        assert.deepEqual(n.receive(fresh.peer.seal(ipv4(2))), ipv4(2));
      } finally {
        n.close();
      }
    });
  });
}
