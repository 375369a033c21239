// Packet offload helpers (see offload.h): what lets the data plane move 64 KiB per TUN read/write instead of
// one MTU-sized packet. Transmit: the kernel hands the TUN (opened with IFF_VNET_HDR and TSO enabled) a TCP
// super-segment; vnet_segment cuts it into packets as a NIC's TSO would, each with its own IP/TCP header and
// full checksums, so every packet is sealed and authenticated on its own. Receive: vnet_coalesce does what
// GRO does — merges the opened packets of one TCP flow back into one GSO packet for a single TUN write.
//
// Checksums are summed in host byte order over 32-bit words (RFC 1071: the one's-complement sum is
// byte-order independent), so the folded result is stored back with memcpy, never byte-swapped.
#include "offload.h"

#include <linux/virtio_net.h>
#include <string.h>

#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define UDP_HL 8
// Headers that older userspace headers lack (the kernel has had them since 6.2).
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 VNET_GSO_UDP_L4
#endif
// Most datagrams one USO write may carry (the kernel's UDP_GRO_CNT_MAX; virtio accepts up to 128).
#define USO_MAX_SEGS 64
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_CWR 0x80
#define MAX_IP_LEN 65535

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void wr16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static void wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

// One's-complement partial sum of n bytes added to s (host order; n may be odd only for the last chunk). The bulk is
// summed as 64-bit words into a 128-bit accumulator (two adds per 8 bytes, four words per turn: this is the one pass
// the send step makes over every payload byte besides the cipher's); 2^32 and 2^64 are 1 modulo 0xffff, so
// folding the words' carries back in gives the sum of the 16-bit words, and a non-zero sum never folds to zero.
static uint64_t csum_add(uint64_t s, const uint8_t *p, size_t n) {
  unsigned __int128 acc = s;
  while (n >= 32) {
    uint64_t w[4];
    memcpy(w, p, 32);
    acc += w[0];
    acc += w[1];
    acc += w[2];
    acc += w[3];
    p += 32;
    n -= 32;
  }
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    acc += w;
    p += 8;
    n -= 8;
  }
  uint64_t lo = (uint64_t)acc, hi = (uint64_t)(acc >> 64), r = lo + hi;
  r += r < hi;  // end-around carry
  r = (r & 0xffffffffu) + (r >> 32);
  r = (r & 0xffffffffu) + (r >> 32);  // at most 32 bits: the tail below cannot overflow
  if (n >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    r += w;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    r += w;
    p += 2;
    n -= 2;
  }
  if (n) {
    uint16_t w = 0;
    memcpy(&w, p, 1);  // a trailing byte is the high byte of a zero-padded big-endian word
    r += w;
  }
  return r;
}

static uint16_t csum_fold(uint64_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)s;
}

// A big-endian 16-bit value as it adds into a host-order sum.
static uint64_t be16_term(uint32_t v) {
  uint8_t b[2];
  wr16(b, v);
  uint16_t w;
  memcpy(&w, b, 2);
  return w;
}

// Sum of the pseudo-header for an IPv4 or IPv6 packet `ip` carrying `l4len` bytes of protocol `proto`.
static uint64_t pseudo_sum_p(const uint8_t *ip, int v6, size_t l4len, uint32_t proto) {
  uint64_t s = v6 ? csum_add(0, ip + 8, 32) : csum_add(0, ip + 12, 8);
  return s + be16_term(proto) + be16_term((uint32_t)l4len);
}
static uint64_t pseudo_sum(const uint8_t *ip, int v6, size_t l4len) {
  return pseudo_sum_p(ip, v6, l4len, IPPROTO_TCP_);
}

static void ipv4_fix_checksum(uint8_t *ip, size_t ihl) {
  ip[10] = ip[11] = 0;
  uint16_t c = (uint16_t)~csum_fold(csum_add(0, ip, ihl));
  memcpy(ip + 10, &c, 2);
}

// IP and TCP header lengths of a TCP packet; 0 when it is not plain TCP over IPv4/IPv6 with sane lengths.
// IPv6 extension headers and IPv4 fragments are not TCP segments we split or merge.
static size_t tcp_headers(const uint8_t *p, size_t len, int *v6, size_t *iphl) {
  if (len < 20) return 0;
  int ver = p[0] >> 4;
  if (ver == 4) {
    *v6 = 0;
    *iphl = (size_t)(p[0] & 15) * 4;
    if (*iphl < 20 || p[9] != IPPROTO_TCP_ || (rd16(p + 6) & 0x3fff) != 0 || rd16(p + 2) != len) return 0;
  } else if (ver == 6) {
    *v6 = 1;
    *iphl = 40;
    if (len < 40 || p[6] != IPPROTO_TCP_ || (size_t)rd16(p + 4) + 40 != len) return 0;
  } else {
    return 0;
  }
  if (len < *iphl + 20) return 0;
  size_t thl = (size_t)(p[*iphl + 12] >> 4) * 4;
  if (thl < 20 || len < *iphl + thl) return 0;
  return *iphl + thl;
}

// IP header length + 8 of a UDP datagram over IPv4 (not a fragment) or IPv6 (no extension headers) whose IP length
// is `len`; 0 otherwise. With exact, the UDP length field must cover the rest of the packet (one whole datagram);
// a USO super-frame's UDP length is not checked (each segment gets its own).
static size_t udp_headers(const uint8_t *p, size_t len, int *v6, size_t *iphl, int exact) {
  if (len < 20) return 0;
  int ver = p[0] >> 4;
  if (ver == 4) {
    *v6 = 0;
    *iphl = (size_t)(p[0] & 15) * 4;
    if (*iphl < 20 || p[9] != IPPROTO_UDP_ || (rd16(p + 6) & 0x3fff) != 0 || rd16(p + 2) != len) return 0;
  } else if (ver == 6) {
    *v6 = 1;
    *iphl = 40;
    if (len < 40 || p[6] != IPPROTO_UDP_ || (size_t)rd16(p + 4) + 40 != len) return 0;
  } else {
    return 0;
  }
  if (len < *iphl + UDP_HL) return 0;
  if (exact && rd16(p + *iphl + 4) != len - *iphl) return 0;
  return *iphl + UDP_HL;
}

// Cuts a USO super-frame (one UDP header, payload of many datagrams of gso_size bytes, the last may be shorter) into
// datagrams, as the kernel's UDP GSO would: each with its own IP header (IPv4: length, id + i, header checksum) and
// UDP length and full checksum. Datagrams are never narrowed to a path (that would move message boundaries): one
// over the peer's MTU gets the send step's "too big" answer like any other packet.
static int udp_segment(const struct virtio_net_hdr *h, const uint8_t *pkt, size_t plen, uint8_t *out, size_t slot, size_t nslots,
                       uint32_t *lens) {
  int v6;
  size_t iphl;
  size_t hl = udp_headers(pkt, plen, &v6, &iphl, 0);
  if (hl == 0) return SEG_MALFORMED;
  if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && (h->csum_start != iphl || h->csum_offset != 6)) return SEG_MALFORMED;
  size_t gso = h->gso_size, payload = plen - hl;
  if (gso == 0 || payload == 0 || hl + gso > slot) return SEG_MALFORMED;
  size_t nseg = (payload + gso - 1) / gso;
  if (nseg > nslots) return SEG_TOO_MANY;
  uint16_t id0 = v6 ? 0 : rd16(pkt + 4);
  for (size_t i = 0; i < nseg; i++) {
    size_t chunk = i + 1 < nseg ? gso : payload - i * gso;
    uint8_t *o = out + i * slot;
    memcpy(o, pkt, hl);
    memcpy(o + hl, pkt + hl + i * gso, chunk);
    if (v6) {
      wr16(o + 4, (uint32_t)(UDP_HL + chunk));
    } else {
      wr16(o + 2, (uint32_t)(hl + chunk));
      wr16(o + 4, (uint32_t)(id0 + i));
      ipv4_fix_checksum(o, iphl);
    }
    uint8_t *uh = o + iphl;
    wr16(uh + 4, (uint32_t)(UDP_HL + chunk));
    uh[6] = uh[7] = 0;
    uint16_t c = (uint16_t)~csum_fold(csum_add(pseudo_sum_p(o, v6, UDP_HL + chunk, IPPROTO_UDP_), uh, UDP_HL + chunk));
    if (c == 0) c = 0xffff;  // 0 means "no checksum" in UDP: a computed zero is sent as all ones
    memcpy(uh + 6, &c, 2);
    lens[i] = (uint32_t)(hl + chunk);
  }
  return (int)nseg;
}

int vnet_segment(const uint8_t *in, size_t len, uint8_t *out, size_t slot, size_t nslots, uint32_t *lens) {
  return vnet_segment_cap(in, len, out, slot, nslots, lens, 0, NULL);
}

int vnet_segment_cap(const uint8_t *in, size_t len, uint8_t *out, size_t slot, size_t nslots, uint32_t *lens,
                     size_t max_pkt, int *narrowed) {
  if (len < VNET_HDR_LEN || nslots == 0) return SEG_MALFORMED;
  struct virtio_net_hdr h;
  memcpy(&h, in, sizeof h);
  const uint8_t *pkt = in + VNET_HDR_LEN;
  size_t plen = len - VNET_HDR_LEN;
  uint8_t gso = h.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;

  if (gso == VIRTIO_NET_HDR_GSO_NONE) {
    if (plen > slot || plen == 0) return SEG_MALFORMED;
    memcpy(out, pkt, plen);
    if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      // The checksum field holds the pseudo-header sum; the rest is summed over from csum_start.
      size_t cs = h.csum_start, co = h.csum_offset;
      if (cs >= plen || co + 2 > plen - cs) return SEG_MALFORMED;
      uint16_t c = (uint16_t)~csum_fold(csum_add(0, out + cs, plen - cs));
      memcpy(out + cs + co, &c, 2);
    }
    lens[0] = (uint32_t)plen;
    return 1;
  }
  // What every GSO frame must get right: a header length inside the frame, and (when the kernel left the checksum
  // to us) the checksum where the transport header's is; we recompute every checksum, but a frame that lies about
  // its layout is not one the kernel made.
  if (h.hdr_len > plen) return SEG_MALFORMED;
  if (gso == VIRTIO_NET_HDR_GSO_UDP_L4) {
    return udp_segment(&h, pkt, plen, out, slot, nslots, lens);
  }
  if (gso != VIRTIO_NET_HDR_GSO_TCPV4 && gso != VIRTIO_NET_HDR_GSO_TCPV6) return SEG_MALFORMED;

  int v6;
  size_t iphl;
  size_t hl = tcp_headers(pkt, plen, &v6, &iphl);
  if (hl == 0 || v6 != (gso == VIRTIO_NET_HDR_GSO_TCPV6)) return SEG_MALFORMED;
  if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && (h.csum_start != iphl || h.csum_offset != 16)) return SEG_MALFORMED;
  size_t mss = h.gso_size, payload = plen - hl;
  if (mss == 0 || payload == 0 || hl + mss > slot) return SEG_MALFORMED;
  if (max_pkt > 0 && hl + mss > max_pkt && max_pkt >= hl + 64) {
    mss = max_pkt - hl;  // the path to the peer is narrower than the segments TCP chose: cut smaller ones
    if (narrowed) *narrowed = 1;
  }
  size_t nseg = (payload + mss - 1) / mss;
  if (nseg > nslots) return SEG_TOO_MANY;

  size_t thl = hl - iphl;
  uint32_t seq0 = rd32(pkt + iphl + 4);
  uint16_t id0 = v6 ? 0 : rd16(pkt + 4);
  for (size_t i = 0; i < nseg; i++) {
    size_t chunk = i + 1 < nseg ? mss : payload - i * mss;
    uint8_t *o = out + i * slot;
    memcpy(o, pkt, hl);
    memcpy(o + hl, pkt + hl + i * mss, chunk);
    if (v6) {
      wr16(o + 4, (uint32_t)(thl + chunk));
    } else {
      wr16(o + 2, (uint32_t)(hl + chunk));
      wr16(o + 4, (uint32_t)(id0 + i));
      ipv4_fix_checksum(o, iphl);
    }
    uint8_t *th = o + iphl;
    wr32(th + 4, seq0 + (uint32_t)(i * mss));
    if (i + 1 < nseg) th[13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
    if (i > 0) th[13] &= (uint8_t)~TCP_CWR;
    th[16] = th[17] = 0;
    uint16_t c = (uint16_t)~csum_fold(csum_add(pseudo_sum(o, v6, thl + chunk), th, thl + chunk));
    memcpy(th + 16, &c, 2);
    lens[i] = (uint32_t)(hl + chunk);
  }
  return (int)nseg;
}

// True when packet q (headers hl, iphl) continues the run whose first packet is f: same addresses, ports,
// IP fields that GRO requires equal, same TCP header (options included) apart from seq, flags and checksum.
static int same_flow(const uint8_t *f, const uint8_t *q, int v6, size_t iphl, size_t hl) {
  if (v6) {
    if (memcmp(f, q, 4) != 0 || f[7] != q[7] || memcmp(f + 8, q + 8, 32) != 0) return 0;  // class/flow, hop limit, addresses
  } else {
    if (f[1] != q[1] || f[8] != q[8] || (rd16(f + 6) ^ rd16(q + 6)) != 0 || memcmp(f + 12, q + 12, 8) != 0) return 0;
  }
  const uint8_t *a = f + iphl, *b = q + iphl;
  return memcmp(a, b, 4) == 0 &&               // ports
         memcmp(a + 8, b + 8, 4) == 0 &&       // ack
         a[12] == b[12] &&                     // data offset
         memcmp(a + 14, b + 14, 2) == 0 &&     // window
         memcmp(a + 18, b + 18, hl - iphl - 18) == 0;  // urgent pointer and options
}

// True when UDP datagram q continues the run whose first datagram is f: same addresses and ports, and the IP
// fields a segmentation would copy into every datagram (IPv4: TOS, TTL, DF; IPv6: class and flow label, hop limit).
static int same_udp_flow(const uint8_t *f, const uint8_t *q, int v6, size_t iphl) {
  if (v6) {
    if (memcmp(f, q, 4) != 0 || f[7] != q[7] || memcmp(f + 8, q + 8, 32) != 0) return 0;
  } else {
    if (f[1] != q[1] || f[8] != q[8] || rd16(f + 6) != rd16(q + 6) || memcmp(f + 12, q + 12, 8) != 0) return 0;
  }
  return memcmp(f + iphl, q + iphl, 4) == 0;
}

// The UDP half of vnet_coalesce: a run of datagrams of one flow with equal payload sizes (the last may be shorter)
// becomes one USO write (VIRTIO_NET_HDR_GSO_UDP_L4): the receiving stack cuts it back into the same datagrams (or
// hands it whole to a UDP_GRO socket). The UDP length of the merged packet covers all of it, and its checksum
// field holds the pseudo-header sum of that length (CHECKSUM_PARTIAL), which the segmentation adjusts per datagram.
// Writes packets first..first+n-1 of a coalescible run as one IP packet at `o`: the first one whole (headers of
// `hl` bytes), the payloads of the rest after it; sets the IP length (`total`) and, for IPv4, the header checksum.
// Returns `o`. The caller checked that `total` fits.
static uint8_t *merge_run(uint8_t *o, uint8_t *const *ptrs, const uint32_t *lens, size_t first, size_t n, size_t hl, int v6,
                          size_t iphl, size_t total) {
  memcpy(o, ptrs[first], lens[first]);
  size_t at = lens[first];
  for (size_t j = first + 1; j < first + n; j++) {
    memcpy(o + at, ptrs[j] + hl, lens[j] - hl);
    at += lens[j] - hl;
  }
  if (v6) {
    wr16(o + 4, (uint32_t)(total - 40));
  } else {
    wr16(o + 2, (uint32_t)total);
    ipv4_fix_checksum(o, iphl);
  }
  return o;
}

// Turns the IP + UDP headers at `ip` (IP header iphl bytes, v6) into those of a USO packet of `total` IP bytes and
// writes its virtio_net_hdr at `vh`: IP length (and the IPv4 header checksum), the UDP length covering all of it,
// the UDP checksum field the pseudo-header sum of that length (CHECKSUM_PARTIAL, as the kernel's UDP GSO leaves it),
// datagrams of `seg` payload bytes.
static void uso_finish(uint8_t *vh, uint8_t *ip, int v6, size_t iphl, size_t total, size_t seg) {
  if (v6) {
    wr16(ip + 4, (uint32_t)(total - 40));
  } else {
    wr16(ip + 2, (uint32_t)total);
    ipv4_fix_checksum(ip, iphl);
  }
  uint8_t *uh = ip + iphl;
  wr16(uh + 4, (uint32_t)(total - iphl));
  uint16_t ps = csum_fold(pseudo_sum_p(ip, v6, total - iphl, IPPROTO_UDP_));
  memcpy(uh + 6, &ps, 2);
  struct virtio_net_hdr h;
  memset(&h, 0, sizeof h);
  h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  h.gso_type = VIRTIO_NET_HDR_GSO_UDP_L4;
  h.hdr_len = (uint16_t)(iphl + UDP_HL);
  h.gso_size = (uint16_t)seg;
  h.csum_start = (uint16_t)iphl;
  h.csum_offset = 6;
  memcpy(vh, &h, VNET_HDR_LEN);
}

void uso_headers(uint8_t *out, const uint8_t *first, size_t iphl, size_t total, size_t seg) {
  memcpy(out + VNET_HDR_LEN, first, iphl + UDP_HL);
  uso_finish(out, out + VNET_HDR_LEN, (first[0] >> 4) == 6, iphl, total, seg);
}

bool udp_csum_ok(const uint8_t *ip, size_t len, size_t iphl) {
  if (len < iphl + UDP_HL || (ip[iphl + 6] == 0 && ip[iphl + 7] == 0)) return false;
  int v6 = (ip[0] >> 4) == 6;
  return csum_fold(csum_add(pseudo_sum_p(ip, v6, len - iphl, IPPROTO_UDP_), ip + iphl, len - iphl)) == 0xffff;
}

static size_t udp_coalesce(uint8_t *const *ptrs, const uint32_t *lens, size_t count, size_t first, uint8_t *out, size_t cap,
                           size_t *used) {
  const uint8_t *f = ptrs[first];
  size_t flen = lens[first];
  int v6;
  size_t iphl;
  size_t hl = udp_headers(f, flen, &v6, &iphl, 1);
  if (hl == 0 || flen <= hl) return 0;
  size_t seg = flen - hl, total = flen, n = 1;
  for (size_t j = first + 1; j < count && n < USO_MAX_SEGS; j++) {
    const uint8_t *q = ptrs[j];
    size_t qlen = lens[j];
    int qv6;
    size_t qiphl;
    if (udp_headers(q, qlen, &qv6, &qiphl, 1) != hl || qv6 != v6 || qiphl != iphl) break;
    size_t qpay = qlen - hl;
    if (qpay == 0 || qpay > seg || !same_udp_flow(f, q, v6, iphl)) break;
    if (total + qpay > MAX_IP_LEN + (v6 ? 40u : 0u) || VNET_HDR_LEN + total + qpay > cap) break;
    total += qpay;
    n++;
    if (qpay < seg) break;  // a short datagram ends the run
  }
  if (n < 2) return 0;
  uso_finish(out, merge_run(out + VNET_HDR_LEN, ptrs, lens, first, n, hl, v6, iphl, total), v6, iphl, total, seg);
  *used = n;
  return VNET_HDR_LEN + total;
}

size_t vnet_coalesce(uint8_t *const *ptrs, const uint32_t *lens, size_t count, size_t first, uint8_t *out, size_t cap,
                     size_t *used, bool uso) {
  *used = 1;
  const uint8_t *f = ptrs[first];
  size_t flen = lens[first];
  if (flen >= 20 && ((f[0] >> 4) == 4 ? f[9] : f[6]) == IPPROTO_UDP_) return uso ? udp_coalesce(ptrs, lens, count, first, out, cap, used) : 0;
  int v6;
  size_t iphl;
  size_t hl = tcp_headers(f, flen, &v6, &iphl);
  if (hl == 0 || flen <= hl || f[iphl + 13] != TCP_ACK) return 0;
  size_t mss = flen - hl;
  uint32_t next = rd32(f + iphl + 4) + (uint32_t)mss;
  size_t total = flen;  // merged IP packet length so far
  size_t n = 1;
  uint8_t last_flags = TCP_ACK;
  for (size_t j = first + 1; j < count && n < 64; j++) {
    const uint8_t *q = ptrs[j];
    size_t qlen = lens[j];
    int qv6;
    size_t qiphl;
    if (tcp_headers(q, qlen, &qv6, &qiphl) != hl || qv6 != v6 || qiphl != iphl) break;
    size_t qpay = qlen - hl;
    uint8_t fl = q[iphl + 13];
    if (qpay == 0 || qpay > mss || (fl != TCP_ACK && fl != (TCP_ACK | TCP_PSH))) break;
    if (rd32(q + iphl + 4) != next || !same_flow(f, q, v6, iphl, hl)) break;
    if (total + qpay > MAX_IP_LEN + (v6 ? 40u : 0u) || VNET_HDR_LEN + total + qpay > cap) break;
    total += qpay;
    next += (uint32_t)qpay;
    n++;
    last_flags = fl;
    if (qpay < mss || fl != TCP_ACK) break;  // a short or pushed segment ends the run, as in GRO
  }
  if (n < 2) return 0;

  uint8_t *o = merge_run(out + VNET_HDR_LEN, ptrs, lens, first, n, hl, v6, iphl, total);
  uint8_t *th = o + iphl;
  th[13] = last_flags;
  // CHECKSUM_PARTIAL: the field carries the folded pseudo-header sum; the kernel treats the payload as verified
  // (the AEAD tag already authenticated every byte of every merged packet).
  uint16_t ps = csum_fold(pseudo_sum(o, v6, total - iphl));
  memcpy(th + 16, &ps, 2);

  struct virtio_net_hdr h;
  memset(&h, 0, sizeof h);
  h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  h.gso_type = v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
  h.hdr_len = (uint16_t)hl;
  h.gso_size = (uint16_t)mss;
  h.csum_start = (uint16_t)iphl;
  h.csum_offset = 16;
  memcpy(out, &h, VNET_HDR_LEN);
  *used = n;
  return VNET_HDR_LEN + total;
}
