// The adapter's IP fast path between its LAN and its general nodes' engines, both ways, without the main thread.
//
//   out: LAN reader thread (lanRecv, after cutting super-frames) ─► lan_fast_filter: a plain unicast IPv4/IPv6
//        TCP/UDP frame to the adapter's MAC, from a general node's MAC, whose source is the address leased to that MAC
//        (lease unexpired), whose destination is a known peer's virtual address, no SYN, at most LAN_MTU bytes
//        ─► written straight into that general node's packet pair (its engine seals it)
//   out, whole: when that pair carries a virtio_net_hdr before every datagram (NF_VNET: the engine opened it with
//        offloads, as a TUN with TSO), lanRecv first offers each frame it read to lan_fast_super: a TCP super-frame
//        (the LAN veth's GRO, a device's TSO) or a UDP GSO super-datagram (a device's UDP_SEGMENT send, UDP GRO
//        forwarding) that passes the same checks (its one IP header is every segment's), with segments within
//        LAN_MTU, goes into the pair uncut behind a virtio_net_hdr at IP offsets; the engine cuts it and seals every
//        segment (vnet_segment: TCP segments, or datagrams of gso_size as it does a TUN's USO frames; fresh
//        checksums), one write and one read per 64 KiB instead of ~45. Its header must describe its bytes exactly
//        (super_check): one that does not is dropped and counted, never forwarded. Plain packets into such a pair
//        get an empty header (no GSO, checksums complete).
//   out, merged: into such a pair, a run of consecutive plain UDP datagrams of one flow in the frames of one call
//        (lanRecv offers what it read together) goes as one UDP GSO super-datagram (run_joins, uso_headers: what
//        the engine reads from a TUN with USO), when the engine's segmenter gives back exactly the datagrams read:
//        equal payload sizes (the last may be shorter), the same IP fields, consecutive IPv4 ids, UDP checksums
//        present and right; at most RUN_MAX_SEGS datagrams and 64 KiB. Only adjacent frames merge, so nothing is
//        reordered; one pair write and one engine read per run instead of one per datagram (iperf3 -u, a game,
//        a VoIP or QUIC stack without UDP_SEGMENT).
//   in:  pair reader thread (pair-reader.ts, after tunReadBatch) ─► lanFastIn: an IPv4/IPv6 TCP/UDP packet from a
//        known peer's address to the general node's own virtual address, no SYN, at most LAN_MTU bytes, not a
//        fragment ─► Ethernet header (adapter MAC → the general node's MAC) ─► the LAN packet socket; consecutive
//        segments of one TCP flow in a batch leave as one GSO frame (offload.c's vnet_coalesce, as the engine
//        writes a TUN: a virtio_net_hdr with CHECKSUM_PARTIAL before the frame), which the kernel (or the NIC)
//        cuts back into the same segments with fresh checksums before they reach the wire; from a pair with virtio
//        headers, a TCP GSO packet the engine merged (its header exactly as vnet_coalesce writes it, segments within
//        LAN_MTU, the same address checks) leaves whole the same way; one the fast path does not take (and any UDP
//        GSO packet: the engine merges none into a pair, which has no USO) stays for the pair reader, which cuts it
//        into plain packets for TypeScript
//
// Everything else goes on to TypeScript (src/adapter/lan-service.ts) exactly as before: ARP/ND, DHCP, DNS to the
// adapter, multicast, fragments, IPv4 options, IPv6 extension headers, ICMP, TCP SYNs (the MSS clamp), packets over
// LAN_MTU (fragmentation / ICMP too-big), unknown MACs and destinations, anything spoofed or malformed — where the
// classifier's checks count and log it. So this file never refuses a plain frame itself: a frame is either carried
// here (it passed every check the classifier makes for an overlay packet) or handed on untouched. The one refusal is
// a super-frame for a pair with virtio headers whose header contradicts its bytes (lan.fast.out.bad-gso: a wrong
// gso type or offsets, an IP or UDP length other than the frame's, a fragment, no payload): the kernel makes no
// such frame, and the segmenter would drop it as malformed too.
//
// The table of each LAN socket (lanFastSet, replaced whole by the LAN service when leases, general nodes, their
// engines or the known peers change): the adapter's MAC; per general node its MAC, leased addresses with their
// expiry, its virtual addresses and a dup() of its pair's host end (so a closed and reused fd number can never
// receive LAN frames; the socket's inode identifies the pair reader's fd); the known peers (sorted, binary search),
// each with a "seen" flag the service collects (lanFastHits) to keep them known, as per-packet notePeer does.
// The device on the LAN chooses every byte: every length is checked before it is read.
#define _GNU_SOURCE  // sendmmsg, pthread_rwlockattr_setkind_np
#include "lan_fast.h"

#include <errno.h>
#include <linux/virtio_net.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "napi_util.h"
#include "offload.h"

#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 VNET_GSO_UDP_L4
#endif

#define ETH_LEN 14
#define IN_BATCH 128      // engine packets looked at per coalescing pass
#define OUT_BATCH 64      // writes per sendmmsg into a pair
#define OUT_IOVS 512      // iovecs of one sendmmsg (a merged run takes one per datagram and one for its headers)
#define RUN_MAX_SEGS 128  // plain UDP datagrams merged into one write: as many as a LAN super-datagram (SUPER_MAX_UDP_SEGS)
#define RUN_MAX_LEN 65535 // IP bytes of one merged write (the engine reads 64 KiB + 256 from a pair with virtio headers)
#define RUN_HDR (VNET_HDR_LEN + 40 + 8)  // a merged write's virtio_net_hdr + IP + UDP headers
#define CO_CAP (VNET_HDR_LEN + 65535 + 40)  // one coalesced GSO packet
#define MAX_TABLES 16     // LAN sockets with a table
#define MAX_NODES 1024    // general nodes per LAN
#define MAX_PEERS 4096    // known peers (KnownPeers keeps at most 1024)
#define NODE_WIRE 72      // lanFastSet node entry (see lanFastSet)
#define PEER_WIRE 18      // lanFastSet peer entry: family, 0, 16 address bytes

struct gnode {
  uint8_t mac[6];
  uint8_t flags;  // NF_*
  uint8_t lease4[4], vip4[4];
  uint8_t lease6[16], vip6[16];
  double exp4, exp6;  // lease expiry, ms since the epoch
  int fd;             // dup of the pair's host end, -1 without one
  dev_t dev;
  ino_t ino;
};
// NF_VNET: the pair carries a virtio_net_hdr before every packet, both ways (the engine opened it with offloads:
// dataplane.ts); written packets get one (an empty one for a plain packet), and TCP super-frames go in whole.
enum { NF_LEASE4 = 1, NF_LEASE6 = 2, NF_VIP4 = 4, NF_VIP6 = 8, NF_VNET = 16 };

struct peer {
  uint8_t key[17];  // family (4/6), address (IPv4 in the first 4, rest zero)
  uint8_t hit;
};

struct table {
  int fd;  // the LAN packet socket, -1: free
  uint8_t mac[6];
  size_t nn, np;
  struct gnode *n;
  struct peer *p;
  uint64_t st[LAN_FAST_ST_COUNT];
};

// Readers (the LAN reader and every pair reader, both directions at once) share the lock; lanFastSet, lanFastClear
// and lanFastHits take it alone. Writers are preferred, so a busy path never holds the main thread off.
static pthread_rwlock_t lock;
static pthread_once_t lock_once = PTHREAD_ONCE_INIT;
static void lock_init(void) {
  pthread_rwlockattr_t a;
  pthread_rwlockattr_init(&a);
  pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&lock, &a);
  pthread_rwlockattr_destroy(&a);
}
static void rd_lock(void) {
  pthread_once(&lock_once, lock_init);
  pthread_rwlock_rdlock(&lock);
}
static void wr_lock(void) {
  pthread_once(&lock_once, lock_init);
  pthread_rwlock_wrlock(&lock);
}
static void un_lock(void) { pthread_rwlock_unlock(&lock); }
#define ST_ADD(t, i, n) __atomic_fetch_add(&(t)->st[i], (uint64_t)(n), __ATOMIC_RELAXED)
static struct table tables[MAX_TABLES] = {[0 ... MAX_TABLES - 1] = {.fd = -1}};

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

static struct table *table_of(int fd) {
  for (size_t t = 0; t < MAX_TABLES; t++)
    if (tables[t].fd == fd) return &tables[t];
  return NULL;
}

static int peer_cmp(const void *a, const void *b) { return memcmp(a, b, 17); }

// The known peer with this address, or NULL. Caller holds the lock.
static struct peer *peer_find(struct table *t, uint8_t family, const uint8_t *addr) {
  uint8_t key[17] = {family};
  memcpy(key + 1, addr, family == 4 ? 4 : 16);
  return t->np ? bsearch(key, t->p, t->np, sizeof *t->p, peer_cmp) : NULL;
}

static bool ipv4_header_ok(const uint8_t *ip) {
  uint32_t s = 0;
  for (int i = 0; i < 20; i += 2) s += be16(ip + i);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return s == 0xffff;
}

// Length of the plain IP packet `ip` (room bytes available) the fast path may carry, or 0: IPv4 without options
// and not a fragment, or IPv6 without extension headers; TCP (not a SYN) or UDP; lengths consistent; <= LAN_MTU.
// *v gets the version.
static size_t plain_ip(const uint8_t *ip, size_t room, int *v) {
  size_t len, hl;
  uint8_t proto;
  if (room >= 20 && ip[0] == 0x45) {
    len = be16(ip + 2);
    if (len < 20 || len > room || (be16(ip + 6) & 0x3fff) != 0 || !ipv4_header_ok(ip)) return 0;
    proto = ip[9], hl = 20, *v = 4;
  } else if (room >= 40 && ip[0] >> 4 == 6) {
    len = 40 + (size_t)be16(ip + 4);
    if (len > room) return 0;
    proto = ip[6], hl = 40, *v = 6;
  } else {
    return 0;
  }
  if (len > LAN_FAST_MTU) return 0;
  if (proto == 17) return len >= hl + 8 ? len : 0;
  if (proto != 6 || len < hl + 20) return 0;
  size_t thl = (size_t)(ip[hl + 12] >> 4) * 4;
  if (thl < 20 || hl + thl > len || (ip[hl + 13] & 0x02)) return 0;  // SYN: the MSS clamp is TypeScript's
  return len;
}

// One frame from the LAN (table t, read lock held): the general node whose pair takes its IP packet (*ip, *len), or
// NULL when the frame is left to TypeScript.
static struct gnode *fast_out(struct table *t, uint8_t *f, size_t flen, double now, uint8_t **ipp, size_t *lenp) {
  if (flen < ETH_LEN + 20 || memcmp(f, t->mac, 6) != 0 || memcmp(f + 6, t->mac, 6) == 0) return NULL;
  uint16_t type = be16(f + 12);
  if (type != 0x0800 && type != 0x86dd) return NULL;
  int v = 0;
  uint8_t *ip = f + ETH_LEN;
  size_t len = plain_ip(ip, flen - ETH_LEN, &v);
  if (len == 0 || (v == 4) != (type == 0x0800)) return NULL;
  struct gnode *g = NULL;
  for (size_t i = 0; i < t->nn && !g; i++)
    if (memcmp(t->n[i].mac, f + 6, 6) == 0) g = &t->n[i];
  if (!g || g->fd < 0) return NULL;
  // The anti-spoof rule: the source is the address leased to this MAC, and the lease has not run out.
  if (v == 4 ? !(g->flags & NF_LEASE4) || !(g->exp4 > now) || memcmp(ip + 12, g->lease4, 4) != 0
             : !(g->flags & NF_LEASE6) || !(g->exp6 > now) || memcmp(ip + 8, g->lease6, 16) != 0)
    return NULL;
  struct peer *p = peer_find(t, (uint8_t)v, ip + (v == 4 ? 16 : 24));
  if (!p) return NULL;
  __atomic_store_n(&p->hit, 1, __ATOMIC_RELAXED);
  *ipp = ip, *lenp = len;
  return g;
}

static const uint8_t empty_hdr[VNET_HDR_LEN];  // a plain packet's virtio_net_hdr: no GSO, checksums complete

// One sendmmsg's worth of writes into one pair. Message k's iovecs are in iov (a plain packet: its IP packet, behind
// an empty virtio_net_hdr on a vnet pair; a merged run: its headers in hdr[k], then each datagram's payload). The
// last message may be a run of plain UDP datagrams still growing (r_ip: its first datagram, r_len bytes with an IP
// header of r_iphl, payloads of r_seg; r_total: the IP bytes of the merged packet so far; r_open: more may join;
// r_sum: the first one's checksum was checked).
struct out_batch {
  struct gnode *g;
  size_t m, used;
  struct mmsghdr mm[OUT_BATCH];
  struct iovec iov[OUT_IOVS];
  uint32_t segs[OUT_BATCH];  // datagrams in each message (> 1: a merged run)
  uint8_t hdr[OUT_BATCH][RUN_HDR];
  uint8_t *r_ip;
  size_t r_len, r_iphl, r_seg, r_total;
  bool r_open, r_sum;
};

// Whether datagram q (qlen bytes, IP packet of the same pair as the run) joins the run of plain UDP datagrams that
// the batch's last message is. The merged packet goes to the engine as a UDP GSO super-datagram, which its segmenter
// (offload.c vnet_segment) cuts into datagrams of r_seg bytes, copying the first one's IP header (IPv4: id + i) and
// UDP ports into every one and writing fresh lengths and checksums; so q joins only when that gives back exactly the
// bytes read: same addresses and ports; the same IP fields (IPv4: TOS, the DF/fragment field, TTL, no options;
// IPv6: version, class, flow label, hop limit, no extension header); the next IPv4 id; its UDP length the rest of the
// packet; a payload, at most r_seg bytes (a shorter one ends the run); a UDP checksum present and right (the first
// datagram's too). The run stays within what a UDP GSO super-datagram from the LAN may carry (RUN_MAX_SEGS
// datagrams, RUN_MAX_LEN bytes) and within the batch's iovecs.
static bool run_joins(struct out_batch *b, const uint8_t *q, size_t qlen) {
  const uint8_t *f = b->r_ip;
  size_t iphl = b->r_iphl, n = b->segs[b->m - 1];
  if (qlen <= iphl + 8 || n >= RUN_MAX_SEGS || b->used >= OUT_IOVS || q[0] != f[0]) return false;
  size_t qpay = qlen - iphl - 8;
  if (qpay > b->r_seg || b->r_total + qpay > RUN_MAX_LEN) return false;
  if (iphl == 20) {
    if (q[9] != 17 || q[1] != f[1] || memcmp(q + 6, f + 6, 3) != 0 || memcmp(q + 12, f + 12, 8) != 0 ||
        be16(q + 4) != (uint16_t)(be16(f + 4) + n))
      return false;
  } else if (q[6] != 17 || memcmp(q, f, 4) != 0 || q[7] != f[7] || memcmp(q + 8, f + 8, 32) != 0) {
    return false;
  }
  if (memcmp(q + iphl, f + iphl, 4) != 0 || be16(q + iphl + 4) != qlen - iphl) return false;
  if (!b->r_sum) {
    b->r_sum = true;
    if (!udp_csum_ok(f, b->r_len, iphl)) return b->r_open = false, false;
  }
  return udp_csum_ok(q, qlen, iphl);
}

// Ends the run the last message is, if any: a merged one gets its headers (offload.c uso_headers: what the engine
// reads from a TUN with USO) in place of the first datagram's.
static void run_close(struct out_batch *b) {
  if (!b->r_ip) return;
  size_t k = b->m - 1, hl = b->r_iphl + 8;
  if (b->segs[k] > 1) {
    struct iovec *v = b->mm[k].msg_hdr.msg_iov;
    uso_headers(b->hdr[k], b->r_ip, b->r_iphl, b->r_total, b->r_seg);
    v[0] = (struct iovec){.iov_base = b->hdr[k], .iov_len = VNET_HDR_LEN + hl};
    v[1] = (struct iovec){.iov_base = b->r_ip + hl, .iov_len = b->r_len - hl};
  }
  b->r_ip = NULL;
}

// Sends the batch into its pair in one sendmmsg (as many calls as refusals need) and counts it: lan.fast.out the
// datagrams, merged runs apart; a refused message is counted once (out.full / out.errors), whatever it carried.
static void batch_send(struct table *t, struct out_batch *b) {
  run_close(b);
  for (size_t at = 0; at < b->m;) {
    int r;
    do r = sendmmsg(b->g->fd, b->mm + at, (unsigned)(b->m - at), MSG_DONTWAIT | MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r > 0) {
      for (size_t k = at; k < at + (size_t)r; k++) {
        ST_ADD(t, LAN_FAST_ST_OUT, b->segs[k]);
        if (b->segs[k] > 1) {
          ST_ADD(t, LAN_FAST_ST_OUT_MERGED_UDP, 1);
          ST_ADD(t, LAN_FAST_ST_OUT_MERGED_UDP_DGRAMS, b->segs[k]);
        }
      }
      at += (size_t)r;
      continue;
    }
    ST_ADD(t, errno == EAGAIN || errno == ENOBUFS ? LAN_FAST_ST_OUT_FULL : LAN_FAST_ST_OUT_ERR, 1);  // this one is lost
    at++;
  }
  b->m = b->used = 0;
}

// Adds IP packet ip (len bytes, passed fast_out for g) to the batch: as the next datagram of the run the last
// message is, when it joins (run_joins), else as a message of its own, which may start a run when g's pair takes
// virtio headers and it is a whole UDP datagram with a payload. The batch is sent first when it is for another pair
// or full.
static void batch_add(struct table *t, struct out_batch *b, struct gnode *g, uint8_t *ip, size_t len) {
  bool vh = g->flags & NF_VNET;
  if (b->m && b->g == g && b->r_ip && b->r_open && run_joins(b, ip, len)) {
    size_t k = b->m - 1, pay = len - b->r_iphl - 8;
    b->iov[b->used++] = (struct iovec){.iov_base = ip + b->r_iphl + 8, .iov_len = pay};
    b->mm[k].msg_hdr.msg_iovlen++;
    b->segs[k]++;
    b->r_total += pay;
    if (pay < b->r_seg) b->r_open = false;  // a shorter datagram is the run's last
    return;
  }
  run_close(b);
  if (b->m && (b->g != g || b->m == OUT_BATCH || b->used + 2 > OUT_IOVS)) batch_send(t, b);
  b->g = g;
  // A pair with virtio headers gets an empty one before the packet (the engine reads it as a TUN's).
  struct iovec *v = b->iov + b->used;
  size_t k = 0;
  if (vh) v[k++] = (struct iovec){.iov_base = (void *)empty_hdr, .iov_len = VNET_HDR_LEN};
  v[k++] = (struct iovec){.iov_base = ip, .iov_len = len};
  b->mm[b->m] = (struct mmsghdr){.msg_hdr = {.msg_iov = v, .msg_iovlen = k}};
  b->used += k;
  b->segs[b->m++] = 1;
  // plain_ip passed it: IPv4 without options or IPv6 without extension headers, so UDP starts at 20 or 40.
  size_t iphl = ip[0] >> 4 == 4 ? 20 : 40;
  if (vh && ip[iphl == 20 ? 9 : 6] == 17 && len > iphl + 8 && be16(ip + iphl + 4) == len - iphl) {
    b->r_ip = ip, b->r_len = len, b->r_iphl = iphl, b->r_seg = len - iphl - 8, b->r_total = len;
    b->r_open = true, b->r_sum = false;
  }
}

size_t lan_fast_filter(int fd, uint8_t *out, size_t slot, uint32_t *lens, size_t n) {
  size_t kept = 0;
  rd_lock();
  struct table *t = table_of(fd);
  if (!t || t->nn == 0 || t->np == 0) {
    un_lock();
    return n;
  }
  double now = now_ms();
  struct out_batch b;
  b.m = b.used = 0;
  b.r_ip = NULL;
  for (size_t i = 0; i < n; i++) {
    uint8_t *f = out + i * slot, *ip;
    size_t len;
    struct gnode *g = fast_out(t, f, lens[i], now, &ip, &len);
    if (g) {
      batch_add(t, &b, g, ip, len);
      continue;
    }
    // Carried frames are sent before any later frame is moved down over them; a frame left for TypeScript also
    // ends the batch, so no run merges packets across it.
    if (b.m) batch_send(t, &b);
    if (kept != i) memmove(out + kept * slot, f, lens[i]);
    lens[kept++] = lens[i];
  }
  if (b.m) batch_send(t, &b);
  un_lock();
  return kept;
}

// The super-frame at ip (room bytes, IP version v, no Ethernet header) described by virtio_net_hdr h, checked
// against it. TCP (gso type TCPV4/TCPV6, of this IP version, the ECN bit allowed) or UDP (gso type UDP_L4 exactly,
// either IP version: a UDP_SEGMENT send or UDP GRO forwarding): plain IPv4 (no options, not a fragment, header
// checksum right) or IPv6 (no extension headers) of that protocol whose IP length is exactly room; a TCP header
// inside it, or a UDP header whose length field covers the rest of the packet (as the kernel writes it for both);
// payload after it; gso_size > 0, hdr_len within the frame (`off`: bytes before the IP packet that h's offsets
// count) and, when the checksum is left to offload, csum_start/csum_offset at the TCP or UDP checksum. Sets *hl (IP
// + transport headers), *segs (segments it makes) and *udp. SUPER_BAD when the header or the lengths disagree (a
// frame no kernel made: a fragment, the other transport, a short UDP length...), SUPER_LEFT when it is sound but
// not one the fast path carries (IPv4 options, IPv6 extension headers, a SYN, segments over LAN_MTU or more than
// SUPER_MAX_SEGS / SUPER_MAX_UDP_SEGS of them), SUPER_OK when it is. Every segment shares the checked IP header,
// so the caller's address checks cover them all.
enum { SUPER_OK, SUPER_LEFT, SUPER_BAD };
#define SUPER_MAX_SEGS 64       // TCP: as GRO merges, and under the engine's 160 segment slots even when it narrows the MSS
#define SUPER_MAX_UDP_SEGS 128  // UDP: the kernel's UDP_MAX_SEGMENTS; under the engine's 160 slots (never narrowed)
static int super_check(const struct virtio_net_hdr *h, const uint8_t *ip, size_t room, int v, size_t off, size_t *hl, size_t *segs, bool *udp) {
  bool u = h->gso_type == VIRTIO_NET_HDR_GSO_UDP_L4;
  uint8_t gso = h->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
  if (!u && gso != (v == 4 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6)) return SUPER_BAD;
  if (h->flags & (uint8_t)~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID)) return SUPER_BAD;
  uint8_t proto = u ? 17 : 6, other = u ? 6 : 17;
  size_t iphl;
  if (v == 4) {
    if (room < 20 || ip[0] >> 4 != 4) return SUPER_BAD;
    if (ip[0] != 0x45) return SUPER_LEFT;  // IPv4 options
    if (be16(ip + 2) != room || (be16(ip + 6) & 0x3fff) != 0 || !ipv4_header_ok(ip) || ip[9] != proto) return SUPER_BAD;
    iphl = 20;
  } else {
    if (room < 40 || ip[0] >> 4 != 6 || 40 + (size_t)be16(ip + 4) != room || ip[6] == other) return SUPER_BAD;
    if (ip[6] != proto) return SUPER_LEFT;  // an extension header (a fragment header included): the segmenter's
    iphl = 40;
  }
  size_t thl;
  if (u) {
    if (room < iphl + 8 || be16(ip + iphl + 4) != room - iphl) return SUPER_BAD;
    thl = 8;
  } else {
    if (room < iphl + 20) return SUPER_BAD;
    thl = (size_t)(ip[iphl + 12] >> 4) * 4;
    if (thl < 20) return SUPER_BAD;
  }
  if (iphl + thl >= room) return SUPER_BAD;  // no payload: nothing to segment
  size_t mss = h->gso_size, payload = room - iphl - thl;
  if (mss == 0 || h->hdr_len > off + room) return SUPER_BAD;
  if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && (h->csum_start != off + iphl || h->csum_offset != (u ? 6 : 16))) return SUPER_BAD;
  if (!u && (ip[iphl + 13] & 0x02)) return SUPER_LEFT;  // SYN: the MSS clamp is TypeScript's
  size_t n = (payload + mss - 1) / mss;
  if (iphl + thl + mss > LAN_FAST_MTU || n > (u ? SUPER_MAX_UDP_SEGS : SUPER_MAX_SEGS)) return SUPER_LEFT;
  *hl = iphl + thl, *segs = n, *udp = u;
  return SUPER_OK;
}

int lan_fast_super(int fd, const uint8_t *in, size_t len) {
  if (len < VNET_HDR_LEN + ETH_LEN) return LAN_FAST_LEFT;
  struct virtio_net_hdr h;
  memcpy(&h, in, sizeof h);
  uint8_t gso = h.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
  if (gso != VIRTIO_NET_HDR_GSO_TCPV4 && gso != VIRTIO_NET_HDR_GSO_TCPV6 && gso != VIRTIO_NET_HDR_GSO_UDP_L4) return LAN_FAST_LEFT;
  const uint8_t *f = in + VNET_HDR_LEN;
  size_t flen = len - VNET_HDR_LEN;
  int res = LAN_FAST_LEFT;
  rd_lock();
  struct table *t = table_of(fd);
  struct gnode *g = NULL;
  uint16_t type = be16(f + 12);
  // Only a frame to the adapter's MAC, from a general node whose engine takes super-frames, is looked at here;
  // the rest (and VLAN-tagged frames) go to the segmenter as before.
  if (t && t->np && (type == 0x0800 || type == 0x86dd) && memcmp(f, t->mac, 6) == 0 && memcmp(f + 6, t->mac, 6) != 0)
    for (size_t i = 0; i < t->nn && !g; i++)
      if (memcmp(t->n[i].mac, f + 6, 6) == 0) g = &t->n[i];
  if (g && g->fd >= 0 && (g->flags & NF_VNET)) {
    int v = type == 0x0800 ? 4 : 6;
    const uint8_t *ip = f + ETH_LEN;
    size_t hl = 0, segs = 0;
    bool udp = false;
    int c = super_check(&h, ip, flen - ETH_LEN, v, ETH_LEN, &hl, &segs, &udp);
    double now = now_ms();
    struct peer *p = NULL;
    if (c == SUPER_BAD) {
      ST_ADD(t, LAN_FAST_ST_OUT_BAD, 1);
      res = LAN_FAST_DROPPED;
    } else if (c == SUPER_OK &&
               (v == 4 ? (g->flags & NF_LEASE4) && g->exp4 > now && memcmp(ip + 12, g->lease4, 4) == 0
                       : (g->flags & NF_LEASE6) && g->exp6 > now && memcmp(ip + 8, g->lease6, 16) == 0) &&
               (p = peer_find(t, (uint8_t)v, ip + (v == 4 ? 16 : 24))) != NULL) {
      // The same rules as a plain packet (fast_out): the leased source, a known peer; every segment carries this
      // one IP header. The engine's vnet_segment cuts it (TCP segments, or UDP datagrams of gso_size) and computes
      // every segment's checksums itself (the TCP/UDP checksum field is not read).
      __atomic_store_n(&p->hit, 1, __ATOMIC_RELAXED);
      struct virtio_net_hdr o = {.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .gso_type = h.gso_type, .hdr_len = (uint16_t)hl,
                                 .gso_size = h.gso_size, .csum_start = (uint16_t)(v == 4 ? 20 : 40), .csum_offset = udp ? 6 : 16};
      struct iovec iov[2] = {{.iov_base = &o, .iov_len = VNET_HDR_LEN}, {.iov_base = (void *)ip, .iov_len = flen - ETH_LEN}};
      struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
      ssize_t w;
      do w = sendmsg(g->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
      while (w < 0 && errno == EINTR);
      if (w >= 0) {
        ST_ADD(t, LAN_FAST_ST_OUT, segs);
        ST_ADD(t, LAN_FAST_ST_OUT_GSO, 1);
        if (udp) ST_ADD(t, LAN_FAST_ST_OUT_GSO_UDP, 1);
      } else {
        ST_ADD(t, errno == EAGAIN || errno == ENOBUFS ? LAN_FAST_ST_OUT_FULL : LAN_FAST_ST_OUT_ERR, 1);  // lost (TCP resends)
      }
      res = LAN_FAST_CARRIED;
    }
  }
  un_lock();
  return res;
}

// A TCP GSO packet from general node g's engine (virtio_net_hdr h, IP packet ip of len bytes) the fast path sends to
// the device whole: the header as vnet_coalesce writes it (checksum left to offload, at the TCP checksum; hdr_len
// the IP + TCP headers), segments within LAN_MTU, to the node's own virtual address from a known peer (marked
// seen). Returns the segments it makes, 0 when it is left (the pair reader cuts it for TypeScript).
static size_t fast_in_gso(struct table *t, struct gnode *g, const struct virtio_net_hdr *h, const uint8_t *ip, size_t len) {
  int v = len > 0 ? ip[0] >> 4 : 0;
  size_t hl = 0, segs = 0;
  bool udp = false;
  // TCP only: the engine writes no UDP GSO into a pair (no USO there); the pair reader would cut one.
  if ((v != 4 && v != 6) || h->flags != VIRTIO_NET_HDR_F_NEEDS_CSUM || h->gso_type == VIRTIO_NET_HDR_GSO_UDP_L4 ||
      super_check(h, ip, len, v, 0, &hl, &segs, &udp) != SUPER_OK || h->hdr_len != hl)
    return 0;
  if (v == 4 ? !(g->flags & NF_VIP4) || memcmp(ip + 16, g->vip4, 4) != 0 : !(g->flags & NF_VIP6) || memcmp(ip + 24, g->vip6, 16) != 0)
    return 0;
  struct peer *p = peer_find(t, (uint8_t)v, ip + (v == 4 ? 12 : 8));
  if (!p) return 0;
  __atomic_store_n(&p->hit, 1, __ATOMIC_RELAXED);
  return segs;
}

// Whether a packet from general node g's engine (table t, lock held) is one the fast path sends to the device:
// plain (plain_ip), exactly its length, to the node's own virtual address, from a known peer (marked seen).
static bool fast_in_ok(struct table *t, struct gnode *g, const uint8_t *ip, size_t plen) {
  int v = 0;
  size_t len = plain_ip(ip, plen, &v);
  if (len == 0 || len != plen) return false;
  // Only to the general node's own virtual address, only from a peer the service knows.
  if (v == 4 ? !(g->flags & NF_VIP4) || memcmp(ip + 16, g->vip4, 4) != 0 : !(g->flags & NF_VIP6) || memcmp(ip + 24, g->vip6, 16) != 0)
    return false;
  struct peer *p = peer_find(t, (uint8_t)v, ip + (v == 4 ? 12 : 8));
  if (!p) return false;
  __atomic_store_n(&p->hit, 1, __ATOMIC_RELAXED);
  return true;
}

// Sends IP packet `ip` (len bytes) to g's MAC on t's LAN socket, behind virtio_net_hdr `vh` (NULL: an empty one).
// A GSO header's offsets count from the IP packet (as vnet_coalesce writes them) and are moved past the Ethernet
// header here. Counts `segs` packets.
static void send_lan(struct table *t, struct gnode *g, const struct virtio_net_hdr *vh, const uint8_t *ip, size_t len, size_t segs) {
  struct virtio_net_hdr h = {0};
  if (vh) {
    h = *vh;
    h.hdr_len = (uint16_t)(h.hdr_len + ETH_LEN);
    h.csum_start = (uint16_t)(h.csum_start + ETH_LEN);
  }
  uint8_t eth[ETH_LEN];
  memcpy(eth, g->mac, 6);
  memcpy(eth + 6, t->mac, 6);
  eth[12] = ip[0] >> 4 == 4 ? 0x08 : 0x86;
  eth[13] = ip[0] >> 4 == 4 ? 0x00 : 0xdd;
  struct iovec iov[3] = {{.iov_base = &h, .iov_len = VNET_HDR_LEN}, {.iov_base = eth, .iov_len = ETH_LEN}, {.iov_base = (void *)ip, .iov_len = len}};
  ssize_t w;
  do w = writev(t->fd, iov, 3);
  while (w < 0 && errno == EINTR);
  ST_ADD(t, w < 0 ? LAN_FAST_ST_IN_ERR : LAN_FAST_ST_IN, segs);  // a refused GSO frame loses all (TCP resends)
  if (vh && w >= 0) ST_ADD(t, LAN_FAST_ST_IN_GSO, 1);
}

// The packets of ptrs/lens (n, in order, all passed fast_in_ok) to the device: runs of one TCP flow's consecutive
// segments leave as one GSO frame (vnet_coalesce: what the engine does for a TUN), the rest one frame each.
static void fast_in_send(struct table *t, struct gnode *g, uint8_t *const *ptrs, const uint32_t *lens, size_t n) {
  static __thread uint8_t *co;  // coalescing buffer of this (pair reader) thread, kept for its lifetime
  if (!co) co = malloc(CO_CAP);
  for (size_t first = 0; first < n;) {
    size_t used = 1, got = co ? vnet_coalesce(ptrs, lens, n, first, co, CO_CAP, &used, false) : 0;
    if (got > VNET_HDR_LEN) {
      struct virtio_net_hdr vh;
      memcpy(&vh, co, sizeof vh);
      send_lan(t, g, &vh, co + VNET_HDR_LEN, got - VNET_HDR_LEN, used);
    } else {
      used = 1;
      send_lan(t, g, NULL, ptrs[first], lens[first], 1);
    }
    first += used;
  }
}

/* ---------- N-API ---------- */

// An optional boolean argument: undefined is false; anything else but a boolean is a TypeError.
static bool get_bool_opt(napi_env env, napi_value v, bool *out, const char *what) {
  napi_valuetype type;
  if (napi_typeof(env, v, &type) != napi_ok) return false;
  if (type == napi_undefined) return *out = false, true;
  if (type != napi_boolean || napi_get_value_bool(env, v, out) != napi_ok) {
    char msg[64];
    snprintf(msg, sizeof msg, "%s must be a boolean", what);
    return arg_error(env, 0, msg), false;
  }
  return true;
}

static void close_nodes(struct gnode *n, size_t nn) {
  for (size_t i = 0; i < nn; i++)
    if (n[i].fd >= 0) close(n[i].fd);
  free(n);
}

// lanFastSet(lanFd, mac: Uint8Array(6), nodes: Uint8Array(n*72), peers: Uint8Array(m*18)): replaces the fast table
// of LAN socket `lanFd`. Node entry (little-endian numbers): [0..6) MAC, [6] flags (1 lease4, 2 lease6, 4 vip4,
// 8 vip6), [8..12) pair fd (int32, -1: none; dup()ed here), [12..16) lease4, [16..20) vip4, [20..36) lease6,
// [36..52) vip6, [56..64) lease4 expiry, [64..72) lease6 expiry (float64, ms since the epoch). Peer entry: family
// (4/6), 0, 16 address bytes.
static napi_value lan_fast_set(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int64_t fd;
  uint8_t *mac, *rn, *rp;
  size_t mlen, nlen, plen;
  if (!get_args(env, info, 4, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "lanFd") ||
      !get_bytes(env, argv[1], &mac, &mlen, "mac") || !get_bytes(env, argv[2], &rn, &nlen, "nodes") ||
      !get_bytes(env, argv[3], &rp, &plen, "peers"))
    return NULL;
  if (mlen != 6) return arg_error(env, 1, "lanFastSet: mac must be 6 bytes"), NULL;
  if (nlen % NODE_WIRE || nlen / NODE_WIRE > MAX_NODES) return arg_error(env, 1, "lanFastSet: nodes must be n*72 bytes, n <= 1024"), NULL;
  if (plen % PEER_WIRE || plen / PEER_WIRE > MAX_PEERS) return arg_error(env, 1, "lanFastSet: peers must be n*18 bytes, n <= 4096"), NULL;
  size_t nn = nlen / NODE_WIRE, np = plen / PEER_WIRE;
  struct gnode *n = calloc(nn ? nn : 1, sizeof *n);
  struct peer *p = calloc(np ? np : 1, sizeof *p);
  if (!n || !p) {
    free(n), free(p);
    return throw_errno(env, "calloc", ENOMEM), NULL;
  }
  for (size_t i = 0; i < nn; i++) n[i].fd = -1;
  for (size_t i = 0; i < nn; i++) {
    const uint8_t *w = rn + i * NODE_WIRE;
    struct gnode *g = &n[i];
    int32_t pfd;
    memcpy(g->mac, w, 6);
    g->flags = w[6] & 31;
    memcpy(&pfd, w + 8, 4);
    memcpy(g->lease4, w + 12, 4);
    memcpy(g->vip4, w + 16, 4);
    memcpy(g->lease6, w + 20, 16);
    memcpy(g->vip6, w + 36, 16);
    memcpy(&g->exp4, w + 56, 8);
    memcpy(&g->exp6, w + 64, 8);
    if (g->mac[0] & 1) g->flags = 0;  // a group MAC is never a device's source
    if (pfd >= 0) {
      struct stat s;
      g->fd = fcntl(pfd, F_DUPFD_CLOEXEC, 3);
      if (g->fd < 0 || fstat(g->fd, &s) < 0 || !S_ISSOCK(s.st_mode)) {
        int err = g->fd < 0 ? errno : EBADF;
        close_nodes(n, nn), free(p);
        return throw_errno(env, "lanFastSet: pair fd", err), NULL;
      }
      g->dev = s.st_dev, g->ino = s.st_ino;
    }
  }
  for (size_t i = 0; i < np; i++) {
    const uint8_t *w = rp + i * PEER_WIRE;
    if (w[0] != 4 && w[0] != 6) {
      close_nodes(n, nn), free(p);
      return arg_error(env, 1, "lanFastSet: peer family must be 4 or 6"), NULL;
    }
    p[i].key[0] = w[0];
    memcpy(p[i].key + 1, w + 2, w[0] == 4 ? 4 : 16);
  }
  qsort(p, np, sizeof *p, peer_cmp);
  wr_lock();
  struct table *t = table_of((int)fd);
  if (!t) t = table_of(-1);
  struct gnode *old_n = NULL;
  struct peer *old_p = NULL;
  size_t old_nn = 0;
  if (t) {
    if (t->fd != (int)fd) memset(t->st, 0, sizeof t->st);
    // Keep the "seen" flags of peers still known: they were set since the last lanFastHits.
    for (size_t i = 0; i < t->np; i++)
      if (t->p[i].hit) {
        struct peer *q = np ? bsearch(t->p[i].key, p, np, sizeof *p, peer_cmp) : NULL;
        if (q) q->hit = 1;
      }
    old_n = t->n, old_p = t->p, old_nn = t->nn;
    t->fd = (int)fd;
    memcpy(t->mac, mac, 6);
    t->n = n, t->nn = nn, t->p = p, t->np = np;
  }
  un_lock();
  if (!t) {
    close_nodes(n, nn), free(p);
    return arg_error(env, 1, "lanFastSet: too many LAN sockets with a fast table"), NULL;
  }
  close_nodes(old_n, old_nn);
  free(old_p);
  return NULL;
}

// lanFastClear(lanFd): forgets the table of `lanFd` and closes its pair dups (call before closing the socket).
static napi_value lan_fast_clear(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!get_args(env, info, 1, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "lanFd")) return NULL;
  wr_lock();
  struct table *t = table_of((int)fd), old = {.fd = -1};
  if (t) {
    old = *t;
    *t = (struct table){.fd = -1};
  }
  un_lock();
  if (old.fd >= 0) close_nodes(old.n, old.nn), free(old.p);
  return NULL;
}

// lanFastHits(lanFd) -> Uint8Array(m*18): the known peers that carried a packet since the last call (flags cleared).
static napi_value lan_fast_hits(napi_env env, napi_callback_info info) {
  napi_value argv[1], res;
  int64_t fd;
  if (!get_args(env, info, 1, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "lanFd")) return NULL;
  uint8_t buf[256 * PEER_WIRE];
  size_t m = 0;
  wr_lock();
  struct table *t = table_of((int)fd);
  for (size_t i = 0; t && i < t->np && m < 256; i++) {
    if (!t->p[i].hit) continue;
    t->p[i].hit = 0;
    uint8_t *w = buf + m++ * PEER_WIRE;
    memset(w, 0, PEER_WIRE);
    w[0] = t->p[i].key[0];
    memcpy(w + 2, t->p[i].key + 1, 16);
  }
  un_lock();
  void *data;
  if (napi_create_buffer_copy(env, m * PEER_WIRE, buf, &data, &res) != napi_ok) return NULL;
  return res;
}

// lanFastStats(lanFd, out: Uint32Array(>= LAN_FAST_ST_COUNT)): the fast path's counters of `lanFd` (totals).
static napi_value lan_fast_stats(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t fd;
  uint32_t *out;
  size_t n;
  if (!get_args(env, info, 2, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "lanFd") || !get_u32s(env, argv[1], &out, &n, "out")) return NULL;
  if (n < LAN_FAST_ST_COUNT) return arg_error(env, 1, "lanFastStats: out too short"), NULL;
  rd_lock();
  struct table *t = table_of((int)fd);
  for (size_t i = 0; i < LAN_FAST_ST_COUNT; i++) out[i] = t ? (uint32_t)__atomic_load_n(&t->st[i], __ATOMIC_RELAXED) : 0;
  un_lock();
  return NULL;
}

// lanFastOut(lanFd, out, slot, lengths: Uint32Array, count) -> frames left: what lanRecv does with the frames it read
// (frame i at out[i*slot], lengths[i] bytes): those the fast path takes go into their pairs, the rest are moved to
// the front in order (their lengths too). For tests and tools without a packet socket.
static napi_value lan_fast_out_js(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  int64_t fd, slot, count;
  uint8_t *buf;
  uint32_t *lens;
  size_t blen, nl;
  if (!get_args(env, info, 5, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "lanFd") || !get_bytes(env, argv[1], &buf, &blen, "out") ||
      !get_int(env, argv[2], 64, 65536, &slot, "slot") || !get_u32s(env, argv[3], &lens, &nl, "lengths") ||
      !get_int(env, argv[4], 0, INT_MAX, &count, "count"))
    return NULL;
  if ((size_t)count > nl || (size_t)count > blen / (size_t)slot) return arg_error(env, 1, "lanFastOut: count beyond lengths or out"), NULL;
  for (size_t i = 0; i < (size_t)count; i++)
    if (lens[i] > (size_t)slot) return arg_error(env, 1, "lanFastOut: a length beyond its slot"), NULL;
  return num(env, (double)lan_fast_filter((int)fd, buf, (size_t)slot, lens, (size_t)count));
}

// lanFastIn(pairFd, buf, slot, lengths: Uint32Array, count, vnet?) -> packets sent on the LAN. Packet i of a
// tunReadBatch on a pair's host end is at buf[i*slot], lengths[i] bytes (with vnet: a virtio_net_hdr first); each
// one carried is sent framed on the LAN of the table that holds this pair, and its length set to 0 (the caller hands
// on the rest). A TCP GSO packet (vnet) leaves as one GSO frame, which the kernel cuts into wire-size segments with
// their checksums. Nothing happens when no table holds the pair.
static napi_value lan_fast_in(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  int64_t pfd, slot, count;
  uint8_t *buf;
  uint32_t *lens;
  size_t blen, nl;
  bool vnet = false;
  if (!get_args(env, info, 6, argv) || !get_bool_opt(env, argv[5], &vnet, "vnet") || !get_int(env, argv[0], 0, INT_MAX, &pfd, "pairFd") || !get_bytes(env, argv[1], &buf, &blen, "buf") ||
      !get_int(env, argv[2], 1, 1 << 20, &slot, "slot") || !get_u32s(env, argv[3], &lens, &nl, "lengths") ||
      !get_int(env, argv[4], 0, INT_MAX, &count, "count"))
    return NULL;
  if ((size_t)count > nl || (size_t)count > blen / (size_t)slot) return arg_error(env, 1, "lanFastIn: count beyond lengths or buf"), NULL;
  struct stat s;
  if (count == 0 || fstat((int)pfd, &s) < 0) return num(env, 0);
  size_t sent = 0;
  rd_lock();
  struct table *t = NULL;
  struct gnode *g = NULL;
  for (size_t i = 0; i < MAX_TABLES && !g; i++) {
    if (tables[i].fd < 0) continue;
    for (size_t j = 0; j < tables[i].nn && !g; j++)
      if (tables[i].n[j].fd >= 0 && tables[i].n[j].ino == s.st_ino && tables[i].n[j].dev == s.st_dev) t = &tables[i], g = &tables[i].n[j];
  }
  uint8_t *ptrs[IN_BATCH];
  uint32_t plens[IN_BATCH];
  size_t m = 0;
  for (size_t i = 0; g && t->np && i < (size_t)count; i++) {
    uint8_t *p = buf + i * (size_t)slot;
    size_t l = lens[i];
    if (l == 0 || l > (size_t)slot) continue;
    if (vnet) {
      struct virtio_net_hdr h;
      if (l <= VNET_HDR_LEN) continue;
      memcpy(&h, p, sizeof h);
      p += VNET_HDR_LEN, l -= VNET_HDR_LEN;
      if (h.flags != 0 || h.gso_type != VIRTIO_NET_HDR_GSO_NONE) {
        size_t segs = fast_in_gso(t, g, &h, p, l);
        if (segs == 0) continue;
        fast_in_send(t, g, ptrs, plens, m);  // the packets before it leave first
        m = 0;
        send_lan(t, g, &h, p, l, segs);
        lens[i] = 0, sent++;
        continue;
      }
    }
    if (!fast_in_ok(t, g, p, l)) continue;
    ptrs[m] = p, plens[m++] = (uint32_t)l;
    lens[i] = 0, sent++;
    if (m == IN_BATCH) {
      fast_in_send(t, g, ptrs, plens, m);
      m = 0;
    }
  }
  if (m) fast_in_send(t, g, ptrs, plens, m);
  un_lock();
  return num(env, (double)sent);
}

bool lan_fast_register(napi_env env, napi_value exports) {
  static const export_fn fns[] = {{"lanFastSet", lan_fast_set}, {"lanFastClear", lan_fast_clear}, {"lanFastHits", lan_fast_hits},
                                  {"lanFastStats", lan_fast_stats}, {"lanFastOut", lan_fast_out_js}, {"lanFastIn", lan_fast_in}};
  return export_fns(env, exports, fns, sizeof fns / sizeof fns[0]);
}
