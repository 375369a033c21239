// Path MTU helpers (see pmtu.h): the kernel's path MTU per destination, the usable inner MTU per peer, and what a
// router answers when a packet does not fit: ICMP "fragmentation needed", ICMPv6 "packet too big", IPv4
// fragmentation, and TCP MSS clamping. The engine (dataplane.c) calls these on its send and receive steps.
#define _GNU_SOURCE
#include "pmtu.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include "napi_util.h"

#ifndef IP_MTU
#define IP_MTU 14
#endif

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void wr16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

// RFC 1071 sum of n bytes (big-endian words) added to s.
static uint32_t sum16(uint32_t s, const uint8_t *p, size_t n) {
  for (; n >= 2; p += 2, n -= 2) s += rd16(p);
  if (n) s += (uint32_t)p[0] << 8;
  return s;
}
static uint16_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}

/* ---------- kernel path MTU ---------- */

void pmtu_query_init(pmtu_query_t *q) { q->fd4 = q->fd6 = -1; }

void pmtu_query_close(pmtu_query_t *q) {
  if (q->fd4 >= 0) close(q->fd4);
  if (q->fd6 >= 0) close(q->fd6);
  q->fd4 = q->fd6 = -1;
}

static bool is_v4(const struct sockaddr_storage *to) {
  if (to->ss_family == AF_INET) return true;
  const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)to;
  return to->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr);
}

size_t pmtu_ip_overhead(const struct sockaddr_storage *to) { return is_v4(to) ? 20 : 40; }

unsigned pmtu_kernel_mtu(pmtu_query_t *q, const struct sockaddr_storage *to) {
  struct sockaddr_storage d;
  socklen_t dl;
  int *fd, level, opt;
  memset(&d, 0, sizeof d);
  if (is_v4(to)) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&d;
    s4->sin_family = AF_INET;
    if (to->ss_family == AF_INET) {
      *s4 = *(const struct sockaddr_in *)to;
    } else {
      const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)to;
      memcpy(&s4->sin_addr, s6->sin6_addr.s6_addr + 12, 4);
      s4->sin_port = s6->sin6_port;
    }
    dl = sizeof *s4;
    fd = &q->fd4;
    level = IPPROTO_IP;
    opt = IP_MTU;
  } else if (to->ss_family == AF_INET6) {
    memcpy(&d, to, sizeof(struct sockaddr_in6));
    dl = sizeof(struct sockaddr_in6);
    fd = &q->fd6;
    level = IPPROTO_IPV6;
    opt = IPV6_MTU;
  } else {
    return 0;
  }
  if (*fd < 0) *fd = socket(d.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (*fd < 0) return 0;
  // connect() on UDP sends nothing: it looks up the route (with what ICMP taught it) for getsockopt to report.
  if (connect(*fd, (struct sockaddr *)&d, dl) < 0) return 0;
  int mtu = 0;
  socklen_t ml = sizeof mtu;
  if (getsockopt(*fd, level, opt, &mtu, &ml) < 0 || mtu <= 0) return 0;
  return mtu > 65535 ? 65535u : (unsigned)mtu;
}

void pmtu_recompute(pmtu_peer_t *p, size_t tun_mtu, const struct sockaddr_storage *to) {
  size_t outer = 65535;
  if (p->kernel) outer = p->kernel;
  if (p->plpmtu && p->plpmtu < outer) outer = p->plpmtu;
  size_t oh = pmtu_ip_overhead(to) + PMTU_CAPSULE_OVERHEAD;
  size_t u = outer > oh ? outer - oh : 0;
  if (u > tun_mtu) u = tun_mtu;
  if (u < PMTU_MIN_INNER) u = PMTU_MIN_INNER;
  p->usable = (uint16_t)u;
}

/* ---------- ICMP answers ---------- */

size_t pmtu_icmp4_frag_needed(const uint8_t *pkt, size_t n, unsigned mtu, uint8_t *out, size_t cap) {
  if (n < 20 || (pkt[0] >> 4) != 4) return 0;
  size_t ihl = (size_t)(pkt[0] & 15) * 4;
  if (ihl < 20 || n < ihl || (rd16(pkt + 6) & 0x1fff) != 0) return 0;  // non-first fragments get no ICMP error
  if (pkt[9] == 1 && (n < ihl + 1 || (pkt[ihl] != 0 && pkt[ihl] != 8))) return 0;  // never answer an ICMP error
  if (pkt[12] == 0 || pkt[12] >= 224) return 0;  // unspecified / multicast / broadcast-ish source
  size_t quote = n;
  if (quote > 576 - 28) quote = 576 - 28;
  size_t len = 28 + quote;
  if (len > cap) return 0;
  memset(out, 0, 28);
  out[0] = 0x45;
  wr16(out + 2, (unsigned)len);
  out[8] = 64;  // TTL
  out[9] = 1;   // ICMP
  memcpy(out + 12, pkt + 16, 4);  // from the packet's destination (the node a router would stand for)
  memcpy(out + 16, pkt + 12, 4);  // to its source
  wr16(out + 10, fold(sum16(0, out, 20)));
  uint8_t *ic = out + 20;
  ic[0] = 3;
  ic[1] = 4;
  wr16(ic + 6, mtu > 65535 ? 65535 : mtu);
  memcpy(ic + 8, pkt, quote);
  wr16(ic + 2, fold(sum16(0, ic, 8 + quote)));
  return len;
}

size_t pmtu_icmp6_too_big(const uint8_t *pkt, size_t n, unsigned mtu, uint8_t *out, size_t cap) {
  if (n < 40 || (pkt[0] >> 4) != 6) return 0;
  if (pkt[8] == 0xff) return 0;  // multicast source: malformed
  bool zero = true;
  for (int i = 8; i < 24; i++) zero = zero && pkt[i] == 0;
  if (zero) return 0;  // unspecified source
  if (pkt[6] == 58 && (n < 41 || pkt[40] < 128)) return 0;  // never answer an ICMPv6 error
  size_t quote = n;
  if (quote > 1280 - 48) quote = 1280 - 48;
  size_t len = 48 + quote;
  if (len > cap) return 0;
  memset(out, 0, 48);
  out[0] = 0x60;
  wr16(out + 4, (unsigned)(8 + quote));
  out[6] = 58;
  out[7] = 64;
  memcpy(out + 8, pkt + 24, 16);   // from the packet's destination
  memcpy(out + 24, pkt + 8, 16);   // to its source
  uint8_t *ic = out + 40;
  ic[0] = 2;
  ic[1] = 0;
  ic[4] = (uint8_t)(mtu >> 24);
  ic[5] = (uint8_t)(mtu >> 16);
  ic[6] = (uint8_t)(mtu >> 8);
  ic[7] = (uint8_t)mtu;
  memcpy(ic + 8, pkt, quote);
  uint32_t s = sum16(0, out + 8, 32) + (uint32_t)(8 + quote) + 58;  // pseudo-header
  wr16(ic + 2, fold(sum16(s, ic, 8 + quote)));
  return len;
}

/* ---------- IPv4 fragmentation ---------- */

long pmtu_fragment4_next(const uint8_t *pkt, size_t n, size_t mtu, size_t *at, uint8_t *out) {
  if (n < 20 || (pkt[0] >> 4) != 4) return -1;
  size_t ihl = (size_t)(pkt[0] & 15) * 4, total = rd16(pkt + 2);
  unsigned ff = rd16(pkt + 6);
  if (ihl < 20 || total != n || n <= ihl || (ff & 0x4000)) return -1;
  if (mtu < ihl + 8) return -1;
  size_t payload = n - ihl;
  if (*at >= payload) return 0;
  size_t chunk = (mtu - ihl) & ~(size_t)7;
  bool last = payload - *at <= chunk;
  if (last) chunk = payload - *at;
  // Options are copied into every fragment (they are rare on overlay traffic; receivers ignore the uncopied kinds).
  memcpy(out, pkt, ihl);
  memcpy(out + ihl, pkt + ihl + *at, chunk);
  size_t off = (size_t)(ff & 0x1fff) * 8 + *at;
  unsigned mf = last ? (ff & 0x2000) : 0x2000;  // the last piece keeps the original's MF (it may be a fragment)
  wr16(out + 2, (unsigned)(ihl + chunk));
  wr16(out + 6, mf | (unsigned)(off / 8));
  out[10] = out[11] = 0;
  wr16(out + 10, fold(sum16(0, out, ihl)));
  *at += chunk;
  return (long)(ihl + chunk);
}

/* ---------- TCP MSS clamping ---------- */

int pmtu_clamp_mss(uint8_t *pkt, size_t n, size_t mtu) {
  size_t iphl;
  if (n < 20) return 0;
  if ((pkt[0] >> 4) == 4) {
    iphl = (size_t)(pkt[0] & 15) * 4;
    if (iphl < 20 || pkt[9] != 6 || (rd16(pkt + 6) & 0x3fff) != 0 || rd16(pkt + 2) != n) return 0;
  } else if ((pkt[0] >> 4) == 6) {
    iphl = 40;
    if (n < 40 || pkt[6] != 6 || (size_t)rd16(pkt + 4) + 40 != n) return 0;
  } else {
    return 0;
  }
  if (n < iphl + 20) return 0;
  uint8_t *th = pkt + iphl;
  if (!(th[13] & 0x02)) return 0;  // SYN (and SYN-ACK) only
  size_t thl = (size_t)(th[12] >> 4) * 4;
  if (thl < 20 || n < iphl + thl || mtu < iphl + 20 + 8) return 0;
  unsigned want = (unsigned)(mtu - iphl - 20);
  for (size_t i = 20; i < thl;) {
    uint8_t kind = th[i];
    if (kind == 0) break;
    if (kind == 1) {
      i++;
      continue;
    }
    if (i + 1 >= thl || th[i + 1] < 2 || i + th[i + 1] > thl) break;
    if (kind == 2 && th[i + 1] == 4) {
      unsigned old = rd16(th + i + 2);
      if (old <= want) return 0;
      wr16(th + i + 2, want);
      // RFC 1624 incremental update: HC' = ~(~HC + ~m + m'), summing 16-bit words.
      uint32_t s = (uint16_t)~rd16(th + 16);
      s += (uint16_t)~old;
      s += want;
      wr16(th + 16, fold(s));
      return 1;
    }
    i += th[i + 1];
  }
  return 0;
}

/* ---------- N-API (tests) ---------- */

static napi_value bytes_or_null(napi_env env, const uint8_t *p, size_t n) {
  napi_value r;
  if (n == 0) {
    napi_get_null(env, &r);
    return r;
  }
  void *d;
  if (napi_create_buffer_copy(env, n, p, &d, &r) != napi_ok) return NULL;
  return r;
}

// pmtuFragNeeded(packet, mtu) -> Buffer | null; pmtuTooBig(packet, mtu) -> Buffer | null.
static napi_value icmp_js(napi_env env, napi_callback_info info, bool v6) {
  napi_value argv[2];
  uint8_t *pkt, out[1280];
  size_t n;
  int64_t mtu;
  if (!get_args(env, info, 2, argv) || !get_bytes(env, argv[0], &pkt, &n, "packet") || !get_int(env, argv[1], 0, 65535, &mtu, "mtu"))
    return NULL;
  size_t len = v6 ? pmtu_icmp6_too_big(pkt, n, (unsigned)mtu, out, sizeof out) : pmtu_icmp4_frag_needed(pkt, n, (unsigned)mtu, out, sizeof out);
  return bytes_or_null(env, out, len);
}
static napi_value frag_needed_js(napi_env env, napi_callback_info info) { return icmp_js(env, info, false); }
static napi_value too_big_js(napi_env env, napi_callback_info info) { return icmp_js(env, info, true); }

// pmtuFragment4(packet, mtu) -> Buffer[] (the fragments) | null (cannot be fragmented).
static napi_value fragment4_js(napi_env env, napi_callback_info info) {
  napi_value argv[2], arr;
  uint8_t *pkt;
  size_t n;
  int64_t mtu;
  if (!get_args(env, info, 2, argv) || !get_bytes(env, argv[0], &pkt, &n, "packet") || !get_int(env, argv[1], 28, 65535, &mtu, "mtu"))
    return NULL;
  static uint8_t out[65536];
  size_t at = 0;
  uint32_t i = 0;
  napi_create_array(env, &arr);
  for (;;) {
    long len = pmtu_fragment4_next(pkt, n, (size_t)mtu, &at, out);
    if (len < 0) return bytes_or_null(env, NULL, 0);
    if (len == 0) break;
    napi_set_element(env, arr, i++, bytes_or_null(env, out, (size_t)len));
  }
  return arr;
}

// pmtuClampMss(packet, mtu) -> whether the packet (changed in place) had its MSS lowered.
static napi_value clamp_js(napi_env env, napi_callback_info info) {
  napi_value argv[2], r;
  uint8_t *pkt;
  size_t n;
  int64_t mtu;
  if (!get_args(env, info, 2, argv) || !get_bytes(env, argv[0], &pkt, &n, "packet") || !get_int(env, argv[1], 0, 65535, &mtu, "mtu"))
    return NULL;
  napi_get_boolean(env, pmtu_clamp_mss(pkt, n, (size_t)mtu) == 1, &r);
  return r;
}

bool pmtu_register(napi_env env, napi_value exports) {
  static const export_fn fns[] = {{"pmtuFragNeeded", frag_needed_js}, {"pmtuTooBig", too_big_js}, {"pmtuFragment4", fragment4_js}, {"pmtuClampMss", clamp_js}};
  return export_fns(env, exports, fns, sizeof fns / sizeof fns[0]);
}
