// The ARP / ND proxy fast path of the LAN reader thread (native/lan_proxy.c, through the addon's lanProxyAnswer
// hook: no socket needed) against the TypeScript proxy it stands in for (classify + answerArp / answerNs):
// - a plain request for an address in the table is answered with exactly the bytes the TypeScript proxy sends
//   (ARP and NS, R set for the router address, the NA to the source link-layer address option);
// - everything the TypeScript proxy must decide or refuse is left to it: probes and DAD, gratuitous ARP, a forged
//   sender MAC, a target not in the table, 802.1Q tags, extension headers, hop limit 254, a bad checksum, broken
//   options, a wrong destination, a frame from the adapter itself, truncated frames;
// - thousands of mutated frames never make it answer what the TypeScript proxy would not, byte for byte;
// - a replaced table takes effect at once; a cleared one answers nothing.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadNativeAddon } from '../../../src/native/addon.js';
import { fastProxyTable, lanNative, type FastProxyEntry } from '../../../src/adapter/lan-port.js';
import {
  ARP_REPLY,
  ARP_REQUEST,
  answerArp,
  answerNs,
  buildIcmpv6,
  classify,
  emptyNdOptions,
  encodeArp,
  encodeEthernet,
  encodeNdp,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV6,
  multicastMac,
  solicitedNodeAddress,
  type ProxyContext,
} from '../../../src/adapter/lan/index.js';
import { prng } from '../../harness/prng.js';

const skip = loadNativeAddon() ? false : 'native addon not built';
const FD = 987_654; // tables are keyed by the socket's number; the hook needs no socket
const ADAPTER = '02:00:00:00:00:aa';
const DEVICE = '02:00:00:00:00:01';
const DEV4 = '100.64.0.20';
const DEV6 = 'fd00:1:2::20';
const DEV_LL = 'fe80::1';
const PEER4 = '100.64.0.9';
const PEER6 = 'fd00:1:2::9';
const ROUTER6 = 'fd00:1:2::1';
const OTHER4 = '100.64.0.77'; // in the pool, not in the table (the TypeScript proxy may still answer it)
const TABLE: FastProxyEntry[] = [
  { address: PEER4, router: false },
  { address: PEER6, router: false },
  { address: ROUTER6, router: true },
];

/** The TypeScript proxy restricted to the table: the reference every fast answer must equal. */
const ctx: ProxyContext = {
  adapterMac: ADAPTER,
  isProxied: (a) => TABLE.some((e) => e.address === a),
  holderOf: () => undefined,
  isDefended: () => false,
  isRouter: (a) => a === ROUTER6,
};
const classifyCtx = { adapterMac: ADAPTER, isAdapterAddress: () => false, isOverlay: () => false, leasedAddress: () => undefined };

function reference(frame: Buffer): Buffer | null {
  const p = classify(frame, classifyCtx);
  if (p.kind === 'arp') return answerArp({ frame: p.frame, arp: p.arp }, ctx);
  if (p.kind === 'ns') return answerNs({ frame: p.frame, ip: p.ip, ns: p.ns }, ctx);
  return null;
}

function fast(frame: Buffer): Buffer | null {
  const out = Buffer.alloc(128);
  const n = lanNative().lanProxyAnswer(FD, frame, 0, frame.length, out);
  return n ? out.subarray(0, n) : null;
}

const arp = (o: { op?: number; smac?: string; sip?: string; tip?: string; src?: string; dst?: string; vlan?: boolean } = {}): Buffer =>
  encodeEthernet({
    dst: o.dst ?? 'ff:ff:ff:ff:ff:ff',
    src: o.src ?? DEVICE,
    ethertype: ETHERTYPE_ARP,
    payload: encodeArp({ op: (o.op ?? ARP_REQUEST) as 1 | 2, senderMac: o.smac ?? o.src ?? DEVICE, senderIp: o.sip ?? DEV4, targetMac: '00:00:00:00:00:00', targetIp: o.tip ?? PEER4 }),
    ...(o.vlan ? { vlan: { pcp: 0, dei: false, vid: 5 } } : {}),
  });

function ns(o: { target?: string; src?: string; dst?: string; slla?: string | null; hop?: number; mac?: string; ethDst?: string } = {}): Buffer {
  const target = o.target ?? PEER6;
  const options = emptyNdOptions();
  if (o.slla !== null) options.sourceLinkAddr = o.slla ?? DEVICE;
  const { type, body } = encodeNdp({ type: 'ns', target, options });
  const dst = o.dst ?? solicitedNodeAddress(target);
  const src = o.src ?? DEV_LL;
  let payload = buildIcmpv6({ src, dst, type, body });
  if (o.hop !== undefined) payload = buildIcmpv6({ src, dst, type, body, hopLimit: o.hop });
  return encodeEthernet({ dst: o.ethDst ?? multicastMac(dst), src: o.mac ?? DEVICE, ethertype: ETHERTYPE_IPV6, payload });
}

describe('the ARP / ND proxy fast path (native/lan_proxy.c)', { skip }, () => {
  it('answers plain requests for table addresses with the TypeScript proxy\'s exact bytes', () => {
    lanNative().lanProxySet(FD, Buffer.from(ADAPTER.split(':').map((h) => parseInt(h, 16))), fastProxyTable(TABLE));
    const cases = [
      arp(),
      arp({ dst: ADAPTER }), // unicast refresh
      ns(),
      ns({ dst: PEER6, ethDst: ADAPTER }), // unicast NUD
      ns({ slla: null }), // no source link-layer option: the answer goes to the frame's source
      ns({ slla: '02:00:00:00:00:33' }), // the option wins over the frame's source
      ns({ target: ROUTER6 }), // R set
      ns({ src: DEV6 }),
    ];
    for (const f of cases) {
      const want = reference(f);
      assert.ok(want, 'the reference answers');
      assert.deepEqual(fast(f), want);
    }
  });

  it('leaves to the TypeScript proxy everything it must decide or refuse', () => {
    const badSum = ns();
    badSum[14 + 40 + 2]! ^= 0x01;
    const zeroOpt = ns();
    zeroOpt[14 + 40 + 24 + 1] = 0; // option length 0
    const longOpt = ns();
    longOpt[14 + 40 + 24 + 1] = 2; // runs past the message
    const extHdr = ns();
    extHdr[14 + 6] = 0; // hop-by-hop options header in front
    const cases: [string, Buffer][] = [
      ['ARP probe (sender 0.0.0.0)', arp({ sip: '0.0.0.0' })],
      ['gratuitous ARP', arp({ sip: PEER4 })],
      ['forged sender MAC', arp({ smac: '02:00:00:00:00:66' })],
      ['target not in the table', arp({ tip: OTHER4 })],
      ['an ARP reply', arp({ op: ARP_REPLY })],
      ['802.1Q-tagged ARP', arp({ vlan: true })],
      ['a frame from the adapter itself', arp({ src: ADAPTER })],
      ['unicast to another MAC', arp({ dst: '02:00:00:00:00:77' })],
      ['truncated ARP', arp().subarray(0, 14 + 27)],
      ['DAD solicitation (source ::)', ns({ src: '::', slla: null })],
      ['hop limit 254', ns({ hop: 254 })],
      ['bad checksum', badSum],
      ['zero-length option', zeroOpt],
      ['option past the end', longOpt],
      ['extension header', extHdr],
      ['wrong destination', ns({ dst: solicitedNodeAddress('fd00:1:2::abcd') })],
      ['target not in the table (NS)', ns({ target: 'fd00:1:2::77' })],
      ['NS from the adapter itself', ns({ mac: ADAPTER })],
      ['truncated NS', ns().subarray(0, 14 + 40 + 23)],
      ['an empty frame', Buffer.alloc(0)],
    ];
    for (const [what, f] of cases) assert.equal(fast(f), null, what);
  });

  it('never answers what the TypeScript proxy would not, over 20 000 mutated frames', () => {
    const rnd = prng(0x1a9);
    const seeds = [arp(), ns(), ns({ target: ROUTER6 }), ns({ dst: PEER6, ethDst: ADAPTER })];
    let answered = 0;
    for (let i = 0; i < 20_000; i++) {
      const f = Buffer.from(seeds[i % seeds.length]!);
      const flips = 1 + Math.floor(rnd() * 3);
      for (let k = 0; k < flips; k++) f[Math.floor(rnd() * f.length)] = Math.floor(rnd() * 256);
      const cut = rnd() < 0.1 ? f.subarray(0, Math.floor(rnd() * f.length)) : f;
      const got = fast(cut);
      if (!got) continue;
      answered++;
      assert.deepEqual(got, reference(cut), `mutation ${i}: ${cut.toString('hex')}`);
    }
    assert.ok(answered > 0, 'some mutations (e.g. in padding-free fields the answer ignores) are still answered');
  });

  it('takes a new table at once and answers nothing once cleared', () => {
    const n = lanNative();
    const mac = Buffer.from(ADAPTER.split(':').map((h) => parseInt(h, 16)));
    n.lanProxySet(FD, mac, fastProxyTable([{ address: PEER6, router: false }]));
    assert.equal(fast(arp()), null, 'PEER4 left the table');
    assert.ok(fast(ns()));
    n.lanProxyClear(FD);
    assert.equal(fast(ns()), null);
    assert.throws(() => n.lanProxySet(FD, mac, Buffer.alloc(17)), /n\*18/);
    assert.throws(() => n.lanProxySet(FD, Buffer.alloc(5), Buffer.alloc(0)), /6 bytes/);
    const bad = fastProxyTable(TABLE);
    bad[0] = 5;
    assert.throws(() => n.lanProxySet(FD, mac, bad), /family/);
    assert.equal(fast(ns()), null, 'a refused table changes nothing');
  });
});
