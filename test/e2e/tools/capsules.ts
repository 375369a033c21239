// Replays and tampers with captured capsules: reads a pcap (Ethernet/IPv4 or IPv6/UDP) written by tcpdump, picks the
// last capsule sent to DST:PORT, and sends it again unchanged and with one flipped ciphertext byte.
// With TYPE (a message type number, e.g. 0x32 EndpointUpdate) it does the same with the last frame of that type.
//
//   node capsules.js PCAP DST PORT [TYPE]  -> {"found":true,"sent":3}

import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { HEADER_LEN, MessageType } from '../../../src/protocol/constants.js';
import { parseIp } from '../../../src/protocol/ip.js';
import { HEADER_OFFSETS } from '../../../src/protocol/header.js';

function lastCapsule(pcap: Buffer, dst: string, port: number, type: number = MessageType.Capsule): Buffer | null {
  if (pcap.length < 24 || pcap.readUInt32LE(0) !== 0xa1b2c3d4) throw new Error('not a little-endian pcap');
  if (pcap.readUInt32LE(20) !== 1) throw new Error('pcap link type is not Ethernet');
  const want = parseIp(dst);
  if (!want) throw new Error(`bad address ${dst}`);
  let found: Buffer | null = null;
  for (let off = 24; off + 16 <= pcap.length; ) {
    const capLen = pcap.readUInt32LE(off + 8);
    const pkt = pcap.subarray(off + 16, off + 16 + capLen);
    off += 16 + capLen;
    if (pkt.length < 14 + 40 + 8) continue;
    const ip = pkt.subarray(14);
    let udp: Buffer;
    if (want.length === 4 && pkt.readUInt16BE(12) === 0x0800) {
      if (ip[9] !== 17 || !ip.subarray(16, 20).equals(want)) continue;
      udp = ip.subarray((ip[0]! & 15) * 4);
    } else if (want.length === 16 && pkt.readUInt16BE(12) === 0x86dd) {
      if (ip[6] !== 17 || !ip.subarray(24, 40).equals(want)) continue;
      udp = ip.subarray(40);
    } else continue;
    if (udp.readUInt16BE(2) !== port) continue;
    const payload = udp.subarray(8, udp.readUInt16BE(4));
    if (payload.length > HEADER_LEN + 16 && payload[HEADER_OFFSETS.type] === type) found = Buffer.from(payload);
  }
  return found;
}

const [file, dst, portStr, typeStr] = process.argv.slice(2);
const port = Number(portStr);
const capsule = lastCapsule(readFileSync(file!), dst!, port, typeStr ? Number(typeStr) : MessageType.Capsule);
if (!capsule) {
  process.stdout.write(JSON.stringify({ found: false, sent: 0 }) + '\n');
  process.exit(0);
}
// Tampered: a counter the receiver has not seen yet (so the replay window lets it through to the AEAD check)
// and one flipped ciphertext bit.
const tampered = Buffer.from(capsule);
tampered.writeBigUInt64BE(tampered.readBigUInt64BE(HEADER_OFFSETS.seq) + 100_000n, HEADER_OFFSETS.seq);
tampered[HEADER_LEN + 2] = tampered[HEADER_LEN + 2]! ^ 0x40;
const sock = dgram.createSocket(dst!.includes(':') ? 'udp6' : 'udp4');
let sent = 0;
for (const b of [capsule, capsule, tampered]) {
  sock.send(b, port, dst, () => {
    if (++sent === 3) {
      sock.close();
      process.stdout.write(JSON.stringify({ found: true, sent }) + '\n');
    }
  });
}
