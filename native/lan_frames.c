// The adapter's LAN side in C: frames from a packet socket opened with PACKET_VNET_HDR, so each read says what
// offloads left undone (a virtio_net_hdr before the frame):
//   - a TCP super-frame (a NIC's GRO, or a veth peer's TSO: up to 64 KiB in one frame) is cut into wire-size
//     frames by offload.c's vnet_segment (the TUN's TSO splitter), each with the original Ethernet header;
//   - a UDP GSO super-frame (UDP_SEGMENT from a local sender, UDP GRO forwarding) is cut into its datagrams here;
//   - a frame whose checksum was left to offload (NEEDS_CSUM: CHECKSUM_PARTIAL from a local sender) gets it
//     completed at csum_start/csum_offset.
// So everything after the reader sees frames a wire could carry, with full checksums. lanSend writes frames
// back with an empty header (the socket wants one before every frame once PACKET_VNET_HDR is set).
// lanRecv first offers each frame read to lan_fast.c's lan_fast_super (a TCP super-frame or UDP GSO super-datagram
// for a general node's engine whose pair takes virtio headers goes there whole, not cut), and hands the cut frames to
// lan_fast.c, which carries plain TCP/UDP packets of general nodes to their engines' packet pairs on this thread (not
// handed out either) — the frames of many reads together, so that a run of one UDP flow's datagrams becomes one
// write (they are offered before a super-frame goes into a pair, so none overtakes another, and whenever few slots
// are left) — and lets lan_proxy.c answer a plain ARP request or Neighbor Solicitation for an address in the socket's
// fast table on this thread; such a frame is counted (LAN_ST_PROXY_*) and not handed out.
//
// Every length is checked before it is used: a hostile device chooses the header and the frame.
#include "lan_frames.h"

#include <errno.h>
#include <limits.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lan_fast.h"
#include "lan_proxy.h"
#include "napi_util.h"
#include "offload.h"

#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif

#define ETH_LEN 14
#define L2_MAX 18        // Ethernet + one 802.1Q tag
#define MIN_FREE 64      // free output slots wanted before another read (a 64 KiB frame at MSS >= 1024 fits)
#define MAX_READS 512    // reads per lanRecv call, refused ones included: the call always ends

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void put16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

// One's-complement sum of n bytes as big-endian 16-bit words (an odd last byte is the high byte of a word).
static uint32_t sum16(uint32_t s, const uint8_t *p, size_t n) {
  for (; n >= 2; p += 2, n -= 2) {
    s += (uint32_t)(p[0] << 8 | p[1]);
    if (s & 0x80000000u) s = (s & 0xffff) + (s >> 16);
  }
  if (n) s += (uint32_t)p[0] << 8;
  return s;
}

static uint16_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)s;
}

// Length of the L2 header (14, or 18 with one VLAN tag) and the ethertype after it; 0 when the frame is too short.
static size_t l2_header(const uint8_t *f, size_t flen, uint16_t *type) {
  if (flen < ETH_LEN) return 0;
  *type = be16(f + 12);
  if (*type != 0x8100) return ETH_LEN;
  if (flen < L2_MAX) return 0;
  *type = be16(f + 16);
  return L2_MAX;
}

// End of the IP packet inside the frame (Ethernet padding excluded) and its protocol; 0 when not plain IPv4/IPv6.
static size_t ip_end(const uint8_t *f, size_t flen, size_t l2, uint16_t type, uint8_t *proto) {
  const uint8_t *ip = f + l2;
  size_t room = flen - l2, end;
  if (type == 0x0800 && room >= 20 && ip[0] >> 4 == 4) {
    end = be16(ip + 2);
    *proto = ip[9];
  } else if (type == 0x86dd && room >= 40 && ip[0] >> 4 == 6) {
    end = 40 + (size_t)be16(ip + 4);
    *proto = ip[6];
  } else {
    return 0;
  }
  return end <= room ? l2 + end : 0;
}

// Completes a checksum left to offload: the field at cs+co holds the pseudo-header sum; the sum from cs to the end
// of the IP packet is what the NIC would have written. False when the offsets do not fit the frame.
static bool complete_partial(uint8_t *f, size_t flen, size_t cs, size_t co) {
  uint16_t type;
  uint8_t proto = 0;
  size_t l2 = l2_header(f, flen, &type);
  size_t end = l2 ? ip_end(f, flen, l2, type, &proto) : 0;
  if (end == 0) end = flen;  // not IP: the checksum covers the rest of the frame
  if (cs < l2 || cs >= end || end - cs < 2 || co > end - cs - 2) return false;
  uint16_t c = (uint16_t)~fold(sum16(0, f + cs, end - cs));
  if (c == 0 && proto == 17) c = 0xffff;  // UDP: zero means "no checksum"
  put16(f + cs + co, c);
  return true;
}

// Cuts a UDP GSO super-datagram (IP packet `ip`, iplen bytes, after an l2-byte Ethernet header `eth`) into
// datagrams of gso_size payload bytes. Returns the count, 0 when malformed (counted), SEG_TOO_MANY.
static int udp_segment(const uint8_t *eth, size_t l2, const uint8_t *ip, size_t iplen, size_t mss, uint8_t *out,
                       size_t slot, size_t nslots, uint32_t *lens, uint32_t *st) {
  int v6 = ip[0] >> 4 == 6;
  size_t iphl = v6 ? 40 : (size_t)(ip[0] & 15) * 4;
  if (iphl < 20 || iplen < iphl + 8 || ip[v6 ? 6 : 9] != 17) return st[LAN_ST_DROP_MALFORMED]++, 0;
  if (v6 ? (size_t)be16(ip + 4) + 40 != iplen : be16(ip + 2) != iplen || (be16(ip + 6) & 0x3fff) != 0)
    return st[LAN_ST_DROP_MALFORMED]++, 0;
  size_t hl = iphl + 8, payload = iplen - hl;
  if (mss == 0 || payload == 0) return st[LAN_ST_DROP_MALFORMED]++, 0;
  if (l2 + hl + mss > slot) return st[LAN_ST_DROP_TOO_BIG]++, 0;
  size_t nseg = (payload + mss - 1) / mss;
  if (nseg > nslots) return SEG_TOO_MANY;
  uint16_t id0 = v6 ? 0 : be16(ip + 4);
  for (size_t i = 0; i < nseg; i++) {
    size_t chunk = i + 1 < nseg ? mss : payload - i * mss;
    uint8_t *o = out + i * slot, *p = o + l2, *u = p + iphl;
    memcpy(o, eth, l2);
    memcpy(p, ip, hl);
    memcpy(p + hl, ip + hl + i * mss, chunk);
    uint32_t s;
    if (v6) {
      put16(p + 4, (uint32_t)(8 + chunk));
      s = sum16(0, p + 8, 32);
    } else {
      put16(p + 2, (uint32_t)(hl + chunk));
      put16(p + 4, (uint32_t)(id0 + i));
      p[10] = p[11] = 0;
      put16(p + 10, (uint16_t)~fold(sum16(0, p, iphl)));
      s = sum16(0, p + 12, 8);
    }
    put16(u + 4, (uint32_t)(8 + chunk));
    u[6] = u[7] = 0;
    s += 17 + (uint32_t)(8 + chunk);
    uint16_t c = (uint16_t)~fold(sum16(s, u, 8 + chunk));
    put16(u + 6, c ? c : 0xffff);
    lens[i] = (uint32_t)(l2 + hl + chunk);
  }
  return (int)nseg;
}

// Header length (IP + TCP) of a TCP packet, 0 when it is not one.
static size_t tcp_header_len(const uint8_t *ip, size_t iplen) {
  size_t iphl = ip[0] >> 4 == 6 ? 40 : (size_t)(ip[0] & 15) * 4;
  if (iphl < 20 || iplen < iphl + 20) return 0;
  size_t thl = (size_t)(ip[iphl + 12] >> 4) * 4;
  return thl >= 20 && iplen >= iphl + thl ? iphl + thl : 0;
}

int lan_segment(uint8_t *in, size_t len, uint8_t *out, size_t slot, size_t nslots, uint32_t *lens, uint32_t *st) {
  if (len < VNET_HDR_LEN + ETH_LEN) return st[LAN_ST_DROP_MALFORMED]++, 0;
  struct virtio_net_hdr h;
  memcpy(&h, in, sizeof h);
  uint8_t *f = in + VNET_HDR_LEN;
  size_t flen = len - VNET_HDR_LEN;
  uint8_t gso = h.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;

  if (gso == VIRTIO_NET_HDR_GSO_NONE) {
    if (flen > slot) return st[LAN_ST_DROP_TOO_BIG]++, 0;
    if (nslots == 0) return SEG_TOO_MANY;
    memcpy(out, f, flen);
    if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      if (!complete_partial(out, flen, h.csum_start, h.csum_offset)) return st[LAN_ST_DROP_MALFORMED]++, 0;
      st[LAN_ST_CSUM]++;
    }
    lens[0] = (uint32_t)flen;
    st[LAN_ST_FRAMES]++;
    return 1;
  }

  uint16_t type;
  size_t l2 = l2_header(f, flen, &type);
  if (l2 == 0 || flen < l2 + 20) return st[LAN_ST_DROP_MALFORMED]++, 0;
  uint8_t *ip = f + l2;
  size_t iplen = flen - l2, mss = h.gso_size;
  int n;
  if (gso == VIRTIO_NET_HDR_GSO_UDP_L4) {
    if ((type == 0x0800) != (ip[0] >> 4 == 4) || (type == 0x86dd) != (ip[0] >> 4 == 6)) return st[LAN_ST_DROP_MALFORMED]++, 0;
    n = udp_segment(f, l2, ip, iplen, mss, out, slot, nslots, lens, st);
    if (n > 0) st[LAN_ST_GSO_UDP]++;
  } else if (gso == VIRTIO_NET_HDR_GSO_TCPV4 || gso == VIRTIO_NET_HDR_GSO_TCPV6) {
    if (type != (gso == VIRTIO_NET_HDR_GSO_TCPV4 ? 0x0800 : 0x86dd)) return st[LAN_ST_DROP_MALFORMED]++, 0;
    size_t hl = tcp_header_len(ip, iplen);
    if (hl == 0 || mss == 0) return st[LAN_ST_DROP_MALFORMED]++, 0;
    if (l2 + hl + mss > slot) return st[LAN_ST_DROP_TOO_BIG]++, 0;
    // vnet_segment reads a virtio_net_hdr right before the IP packet: put one over the end of the Ethernet header
    // (kept aside, put back if the segments do not fit), and let it write packet i at out + l2 + i*slot, so the
    // Ethernet header of frame i goes in front of it. Every packet is <= slot - l2 (checked above), so none runs
    // into the next frame's header; `out` has l2 spare bytes after its last slot.
    uint8_t eth[L2_MAX];
    memcpy(eth, f, l2);
    struct virtio_net_hdr t = h;
    t.flags = 0;
    t.hdr_len = 0;  // the packet socket's hdr_len counts the Ethernet header: not the IP packet's (vnet_segment checks it)
    memcpy(ip - VNET_HDR_LEN, &t, VNET_HDR_LEN);
    n = vnet_segment(ip - VNET_HDR_LEN, iplen + VNET_HDR_LEN, out + l2, slot, nslots, lens);
    if (n == SEG_TOO_MANY) {
      memcpy(f, eth, l2);
      return SEG_TOO_MANY;
    }
    if (n <= 0) return st[LAN_ST_DROP_MALFORMED]++, 0;
    for (int i = 0; i < n; i++) {
      memcpy(out + (size_t)i * slot, eth, l2);
      lens[i] += (uint32_t)l2;
    }
    st[LAN_ST_GSO_TCP]++;
  } else {
    return st[LAN_ST_DROP_UNSUPPORTED]++, 0;
  }
  if (n > 0) {
    st[LAN_ST_SEGMENTS] += (uint32_t)n;
    st[LAN_ST_FRAMES] += (uint32_t)n;
  }
  return n;
}

// Writes one frame behind an empty virtio_net_hdr; bytes written (header included) or -1 with errno.
static ssize_t write_frame(int fd, const uint8_t *frame, size_t len) {
  uint8_t hdr[VNET_HDR_LEN] = {0};
  struct iovec iov[2] = {{.iov_base = hdr, .iov_len = sizeof hdr}, {.iov_base = (void *)frame, .iov_len = len}};
  ssize_t w;
  do w = writev(fd, iov, 2);
  while (w < 0 && errno == EINTR);
  return w;
}

// A plain frame the fast proxy answers is sent its reply here and not handed out: true when that happened.
static bool fast_answered(int fd, const uint8_t *frame, size_t len, uint32_t *st) {
  uint8_t reply[LAN_PROXY_REPLY_MAX];
  size_t rlen = 0;
  int kind = lan_proxy_answer(fd, frame, len, reply, &rlen);
  if (kind == LAN_PROXY_NONE) return false;
  if (write_frame(fd, reply, rlen) < 0) st[LAN_ST_PROXY_ERR]++;
  else st[kind == LAN_PROXY_ARP ? LAN_ST_PROXY_ARP : LAN_ST_PROXY_ND]++;
  return true;
}

/* ---------- N-API ---------- */

// lanSetVnetHdr(fd): PACKET_VNET_HDR on a packet socket. From then on every read starts with a virtio_net_hdr
// (lanRecv) and every write needs one (lanSend).
static napi_value lan_set_vnet_hdr(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!get_args(env, info, 1, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd")) return NULL;
  int one = 1;
  if (setsockopt((int)fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) {
    throw_errno(env, "setsockopt PACKET_VNET_HDR", errno);
    return NULL;
  }
  return NULL;
}

// The output layout shared by lanRecv and lanSegment: how many slots fit (with the L2_MAX spare bytes).
static bool out_slots(napi_env env, size_t olen, int64_t slot, size_t nl, size_t *nslots) {
  if (olen < (size_t)slot + L2_MAX) return arg_error(env, 1, "out holds no slot"), false;
  size_t n = (olen - L2_MAX) / (size_t)slot;
  *nslots = n < nl ? n : nl;
  if (*nslots == 0) return arg_error(env, 1, "lengths is empty"), false;
  return true;
}

// Offers frames [*fresh, *count) of lanRecv's output to the fast path (lan_fast_filter), which carries some and
// moves the rest down: *count shrinks by what it carried, and every frame is then offered.
static void offer(int fd, uint8_t *out, size_t slot, uint32_t *lens, size_t *count, size_t *fresh) {
  if (*count > *fresh) *count = *fresh + lan_fast_filter(fd, out + *fresh * slot, slot, lens + *fresh, *count - *fresh);
  *fresh = *count;
}

// lanRecv(fd, scratch, out, slot, lengths: Uint32Array, stats: Uint32Array(LAN_ST_LEN), timeoutMs) -> frame count.
// Waits up to timeoutMs for the first frame, then reads what is queued (no blocking) while MIN_FREE slots are
// free; frame i at out[i*slot], lengths[i] bytes. scratch (>= 65 KiB) receives each frame; a super-frame whose
// segments do not fit the slots left stays there (stats[LAN_ST_PENDING] = its length) for the next call.
static napi_value lan_recv(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  uint8_t *scratch, *out;
  uint32_t *lens, *st;
  size_t slen, olen, nl, sn, nslots;
  int64_t fd, slot, timeout;
  if (!get_args(env, info, 7, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd") ||
      !get_bytes(env, argv[1], &scratch, &slen, "scratch") || !get_bytes(env, argv[2], &out, &olen, "out") ||
      !get_int(env, argv[3], 64, 65536, &slot, "slot") || !get_u32s(env, argv[4], &lens, &nl, "lengths") ||
      !get_u32s(env, argv[5], &st, &sn, "stats") || !get_int(env, argv[6], -1, INT_MAX, &timeout, "timeoutMs"))
    return NULL;
  if (sn < LAN_ST_LEN || slen < 65536 || !out_slots(env, olen, slot, nl, &nslots)) {
    if (sn < LAN_ST_LEN || slen < 65536) arg_error(env, 1, "lanRecv: stats too short or scratch under 64 KiB");
    return NULL;
  }
  // Frames [fresh, count) are not yet offered to the fast path: it gets them together (offer), so that it can merge a
  // run of one UDP flow's datagrams into one write; before a super-frame goes into a pair whole, and when few slots
  // are left (carried frames free theirs).
  size_t count = 0, fresh = 0;
  if (st[LAN_ST_PENDING]) {
    size_t plen = st[LAN_ST_PENDING];
    st[LAN_ST_PENDING] = 0;
    int n = plen <= slen ? lan_segment(scratch, plen, out, (size_t)slot, nslots, lens, st) : 0;
    if (n == SEG_TOO_MANY) st[LAN_ST_DROP_TOO_MANY]++;
    else if (n > 0) count = (size_t)n;
    offer((int)fd, out, (size_t)slot, lens, &count, &fresh);
  }
  if (count == 0 && timeout != 0) {
    struct pollfd p = {.fd = (int)fd, .events = POLLIN};
    int r;
    do r = poll(&p, 1, (int)timeout);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      throw_errno(env, "poll", errno);
      return NULL;
    }
    if (r == 0) return num(env, 0);
    if (p.revents & (POLLERR | POLLNVAL)) {
      throw_errno(env, "poll", EBADF);
      return NULL;
    }
  }
  for (int reads = 0; reads < MAX_READS; reads++) {
    if (count > fresh && nslots - count < MIN_FREE) offer((int)fd, out, (size_t)slot, lens, &count, &fresh);
    if ((count > 0 && nslots - count < MIN_FREE) || count >= nslots) break;
    struct iovec iov = {.iov_base = scratch, .iov_len = slen};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n = recvmsg((int)fd, &mh, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      if (errno == EINVAL) {  // a GSO frame the kernel cannot describe in a virtio_net_hdr: it is gone
        st[LAN_ST_DROP_UNSUPPORTED]++;
        continue;
      }
      if (count > 0) break;  // keep what was read; the error shows up again on the next call
      throw_errno(env, "recvmsg", errno);
      return NULL;
    }
    if ((size_t)n > slen) {
      st[LAN_ST_DROP_TOO_BIG]++;
      continue;
    }
    if ((size_t)n > VNET_HDR_LEN && scratch[1] != VIRTIO_NET_HDR_GSO_NONE) offer((int)fd, out, (size_t)slot, lens, &count, &fresh);  // what came before goes first
    if (lan_fast_super((int)fd, scratch, (size_t)n) != LAN_FAST_LEFT) continue;  // a super-frame for an engine, whole
    int got = lan_segment(scratch, (size_t)n, out + count * (size_t)slot, (size_t)slot, nslots - count, lens + count, st);
    if (got == SEG_TOO_MANY) {
      if (count == 0) {
        st[LAN_ST_DROP_TOO_MANY]++;
        continue;
      }
      st[LAN_ST_PENDING] = (uint32_t)n;
      break;
    }
    if (got == 1 && fast_answered((int)fd, out + count * (size_t)slot, lens[count], st)) continue;
    if (got > 0) count += (size_t)got;
  }
  offer((int)fd, out, (size_t)slot, lens, &count, &fresh);
  return num(env, (double)count);
}

// lanSegment(frame, offset, length, out, slot, lengths, stats) -> frame count (or -2: more segments than slots).
// What lanRecv does to one frame read with its virtio_net_hdr (frame[offset..] = header + Ethernet frame; the input
// is not modified), for tests and tools without a socket.
static napi_value lan_segment_js(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  uint8_t *buf, *out;
  uint32_t *lens, *st;
  size_t len, olen, nl, sn, nslots;
  int64_t off, n, slot;
  if (!get_args(env, info, 7, argv) || !get_bytes(env, argv[0], &buf, &len, "frame") ||
      !get_int(env, argv[1], 0, MAX_SAFE, &off, "offset") || !get_int(env, argv[2], 0, 65536 + 64, &n, "length") ||
      !get_bytes(env, argv[3], &out, &olen, "out") || !get_int(env, argv[4], 64, 65536, &slot, "slot") ||
      !get_u32s(env, argv[5], &lens, &nl, "lengths") || !get_u32s(env, argv[6], &st, &sn, "stats"))
    return NULL;
  if ((uint64_t)off > len || (uint64_t)n > len - (uint64_t)off) return arg_error(env, 1, "lanSegment: offset/length outside frame"), NULL;
  if (sn < LAN_ST_COUNT) return arg_error(env, 1, "lanSegment: stats too short"), NULL;
  if (!out_slots(env, olen, slot, nl, &nslots)) return NULL;
  uint8_t *copy = malloc((size_t)n + 1);
  if (!copy) return throw_errno(env, "malloc", ENOMEM), NULL;
  memcpy(copy, buf + off, (size_t)n);
  int r = lan_segment(copy, (size_t)n, out, (size_t)slot, nslots, lens, st);
  free(copy);
  return num(env, r);
}

// lanSend(fd, buf, offset, length) -> bytes of the frame written: one frame behind an empty virtio_net_hdr.
static napi_value lan_send(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  uint8_t *buf;
  size_t len;
  int64_t fd, off, n;
  if (!get_args(env, info, 4, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd") ||
      !get_bytes(env, argv[1], &buf, &len, "buf") || !get_int(env, argv[2], 0, MAX_SAFE, &off, "offset") ||
      !get_int(env, argv[3], 0, 65535, &n, "length"))
    return NULL;
  if ((uint64_t)off > len || (uint64_t)n > len - (uint64_t)off) return arg_error(env, 1, "lanSend: offset/length outside buf"), NULL;
  ssize_t w = write_frame((int)fd, buf + off, (size_t)n);
  if (w < 0) {
    throw_errno(env, "writev", errno);
    return NULL;
  }
  return num(env, w >= VNET_HDR_LEN ? (double)(w - VNET_HDR_LEN) : 0);
}

bool lan_frames_register(napi_env env, napi_value exports) {
  static const export_fn fns[] = {{"lanSetVnetHdr", lan_set_vnet_hdr}, {"lanRecv", lan_recv}, {"lanSegment", lan_segment_js}, {"lanSend", lan_send}};
  return export_fns(env, exports, fns, sizeof fns / sizeof fns[0]);
}
