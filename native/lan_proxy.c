// The adapter's ARP / ND proxy fast path. The LAN reader thread (lanRecv in lan_frames.c) asks lan_proxy_answer
// about every plain frame; an ARP request or Neighbor Solicitation for an address in the fast table of that socket
// is answered right there with the adapter's MAC, and the frame goes no further. The table is what the TypeScript
// LAN service (src/adapter/lan-service.ts) knows it answers for a plain solicitation — its own addresses and the
// known peers' virtual addresses, never an address a device on the LAN holds — and it replaces the whole table
// (lanProxySet) whenever that knowledge changes.
//
// The fast path takes only the plain, well-formed case and answers exactly as src/adapter/lan/proxy.ts would (the
// unit test compares the bytes). Everything else goes up to the TypeScript proxy unchanged: 802.1Q-tagged frames,
// ARP probes (sender 0.0.0.0) and DAD solicitations (source ::), gratuitous ARP, a sender MAC that differs from the
// frame's source, IPv6 extension headers, a hop limit other than 255, a bad checksum, malformed options, and any
// target not in the table. Every length is checked before it is read: the device chooses every byte.
#include "lan_proxy.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "napi_util.h"

#define ETH_LEN 14
#define ARP_LEN 28
#define IP6_LEN 40
#define NS_LEN 24               // ICMPv6 header + reserved + target
#define MAX_TABLES 16           // packet sockets with a table (one per adapter LAN)
#define MAX_ENTRIES 4096        // addresses per table: own + known peers (KnownPeers keeps at most 1024)
#define ENTRY_WIRE 18           // lanProxySet entry: family, flags, 16 address bytes
#define FLAG_ROUTER 1           // the NA sets R (the adapter's own router addresses)

struct entry {
  uint8_t family;  // 4 or 6
  uint8_t flags;
  uint8_t addr[16];
};

struct table {
  int fd;  // -1: free
  uint8_t mac[6];
  size_t n;
  struct entry *e;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct table tables[MAX_TABLES] = {[0 ... MAX_TABLES - 1] = {.fd = -1}};

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

// Looks `addr` up in the table of `fd`; copies the adapter's MAC and the entry's flags. Caller holds the lock.
static bool lookup(int fd, uint8_t family, const uint8_t *addr, uint8_t *mac, uint8_t *flags) {
  size_t alen = family == 4 ? 4 : 16;
  for (size_t t = 0; t < MAX_TABLES; t++) {
    if (tables[t].fd != fd) continue;
    for (size_t i = 0; i < tables[t].n; i++) {
      const struct entry *e = &tables[t].e[i];
      if (e->family == family && memcmp(e->addr, addr, alen) == 0) {
        memcpy(mac, tables[t].mac, 6);
        *flags = e->flags;
        return true;
      }
    }
    return false;
  }
  return false;
}

static bool find(int fd, uint8_t family, const uint8_t *addr, uint8_t *mac, uint8_t *flags) {
  pthread_mutex_lock(&lock);
  bool ok = lookup(fd, family, addr, mac, flags);
  pthread_mutex_unlock(&lock);
  return ok;
}

// The Ethernet destination is ours or a group address (broadcast, multicast), as the LAN classifier demands.
static bool for_us(const uint8_t *f, const uint8_t *mac) { return (f[0] & 1) || memcmp(f, mac, 6) == 0; }

static size_t answer_arp(int fd, const uint8_t *f, size_t flen, uint8_t *out) {
  if (flen < ETH_LEN + ARP_LEN) return 0;
  const uint8_t *a = f + ETH_LEN;
  if (be16(a) != 1 || be16(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4 || be16(a + 6) != 1) return 0;
  const uint8_t *smac = a + 8, *sip = a + 14, *tip = a + 24;
  if (memcmp(smac, f + 6, 6) != 0) return 0;  // sender MAC must be the frame's source
  if (memcmp(sip, tip, 4) == 0) return 0;     // gratuitous
  static const uint8_t zero4[4] = {0};
  if (memcmp(sip, zero4, 4) == 0) return 0;   // a probe: the TypeScript proxy decides
  uint8_t mac[6], flags;
  if (!find(fd, 4, tip, mac, &flags)) return 0;
  if (memcmp(f + 6, mac, 6) == 0 || !for_us(f, mac)) return 0;
  memcpy(out, smac, 6);
  memcpy(out + 6, mac, 6);
  out[12] = 0x08, out[13] = 0x06;
  uint8_t *r = out + ETH_LEN;
  r[0] = 0, r[1] = 1, r[2] = 0x08, r[3] = 0, r[4] = 6, r[5] = 4, r[6] = 0, r[7] = 2;
  memcpy(r + 8, mac, 6);
  memcpy(r + 14, tip, 4);
  memcpy(r + 18, smac, 6);
  memcpy(r + 24, sip, 4);
  return ETH_LEN + ARP_LEN;
}

// One's-complement sum of the IPv6 pseudo-header (src, dst, upper-layer length, next header 58) and `len` bytes.
static uint16_t icmp6_checksum(const uint8_t *src, const uint8_t *dst, const uint8_t *msg, size_t len) {
  uint32_t s = 0;
  for (int i = 0; i < 16; i += 2) s += (uint32_t)be16(src + i) + be16(dst + i);
  s += (uint32_t)(len >> 16) + (uint32_t)(len & 0xffff) + 58;
  for (size_t i = 0; i + 1 < len; i += 2) s += be16(msg + i);
  if (len & 1) s += (uint32_t)msg[len - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}

static size_t answer_ns(int fd, const uint8_t *f, size_t flen, uint8_t *out) {
  if (flen < ETH_LEN + IP6_LEN + NS_LEN) return 0;
  const uint8_t *ip = f + ETH_LEN;
  if (ip[0] >> 4 != 6 || ip[6] != 58 || ip[7] != 255) return 0;  // no extension headers; off-link senders refused
  size_t plen = be16(ip + 4);
  if (plen < NS_LEN || plen > flen - ETH_LEN - IP6_LEN) return 0;
  const uint8_t *src = ip + 8, *dst = ip + 24, *m = ip + IP6_LEN;
  static const uint8_t unspecified[16] = {0};
  if (memcmp(src, unspecified, 16) == 0 || src[0] == 0xff) return 0;  // DAD (the TypeScript proxy decides) or bogus
  if (m[0] != 135 || m[1] != 0 || icmp6_checksum(src, dst, m, plen) != 0) return 0;
  const uint8_t *target = m + 8;
  if (target[0] == 0xff) return 0;
  // Sent to the target itself or to its solicited-node group ff02::1:ffXX:XXXX.
  static const uint8_t sn_prefix[13] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff};
  if (memcmp(dst, target, 16) != 0 && (memcmp(dst, sn_prefix, 13) != 0 || memcmp(dst + 13, target + 13, 3) != 0)) return 0;
  // Options: each at least 8 bytes and inside the message; a source link-layer address (type 1, length 1) is used.
  const uint8_t *slla = NULL;
  for (size_t o = NS_LEN; o < plen;) {
    if (plen - o < 2 || m[o + 1] == 0 || (size_t)m[o + 1] * 8 > plen - o) return 0;
    if (m[o] == 1 && m[o + 1] == 1) slla = m + o + 2;
    o += (size_t)m[o + 1] * 8;
  }
  uint8_t mac[6], flags;
  if (!find(fd, 6, target, mac, &flags)) return 0;
  if (memcmp(f + 6, mac, 6) == 0 || !for_us(f, mac)) return 0;
  memcpy(out, slla ? slla : f + 6, 6);
  memcpy(out + 6, mac, 6);
  out[12] = 0x86, out[13] = 0xdd;
  uint8_t *r = out + ETH_LEN;
  memset(r, 0, IP6_LEN);
  r[0] = 0x60;
  r[5] = 32;  // payload length: NA (24) + target link-layer address option (8)
  r[6] = 58;
  r[7] = 255;
  memcpy(r + 8, target, 16);
  memcpy(r + 24, src, 16);
  uint8_t *na = r + IP6_LEN;
  memset(na, 0, 32);
  na[0] = 136;
  na[4] = (uint8_t)((flags & FLAG_ROUTER ? 0x80 : 0) | 0x40 | 0x20);  // R?, S, O
  memcpy(na + 8, target, 16);
  na[24] = 2, na[25] = 1;
  memcpy(na + 26, mac, 6);
  uint16_t c = icmp6_checksum(target, src, na, 32);
  na[2] = (uint8_t)(c >> 8), na[3] = (uint8_t)c;
  return ETH_LEN + IP6_LEN + 32;
}

int lan_proxy_answer(int fd, const uint8_t *f, size_t flen, uint8_t *out, size_t *out_len) {
  if (flen < ETH_LEN) return LAN_PROXY_NONE;
  uint16_t type = be16(f + 12);
  size_t n = 0;
  int kind = LAN_PROXY_NONE;
  if (type == 0x0806) n = answer_arp(fd, f, flen, out), kind = LAN_PROXY_ARP;
  else if (type == 0x86dd && flen >= ETH_LEN + IP6_LEN + 1 && f[ETH_LEN + 6] == 58 && f[ETH_LEN + IP6_LEN] == 135)
    n = answer_ns(fd, f, flen, out), kind = LAN_PROXY_ND;
  if (n == 0) return LAN_PROXY_NONE;
  *out_len = n;
  return kind;
}

/* ---------- N-API ---------- */

// lanProxySet(fd, mac: Uint8Array(6), entries: Uint8Array(n*18)): replaces the fast table of packet socket `fd`.
// Entry: family (4 or 6), flags (1 = router: the NA sets R), 16 address bytes (IPv4 in the first 4).
static napi_value lan_proxy_set(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int64_t fd;
  uint8_t *mac, *raw;
  size_t mlen, rlen;
  if (!get_args(env, info, 3, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd") ||
      !get_bytes(env, argv[1], &mac, &mlen, "mac") || !get_bytes(env, argv[2], &raw, &rlen, "entries"))
    return NULL;
  if (mlen != 6) return arg_error(env, 1, "lanProxySet: mac must be 6 bytes"), NULL;
  if (rlen % ENTRY_WIRE != 0 || rlen / ENTRY_WIRE > MAX_ENTRIES) return arg_error(env, 1, "lanProxySet: entries must be n*18 bytes, n <= 4096"), NULL;
  size_t n = rlen / ENTRY_WIRE;
  struct entry *e = n ? malloc(n * sizeof *e) : NULL;
  if (n && !e) return throw_errno(env, "malloc", 12), NULL;
  for (size_t i = 0; i < n; i++) {
    const uint8_t *w = raw + i * ENTRY_WIRE;
    if (w[0] != 4 && w[0] != 6) {
      free(e);
      return arg_error(env, 1, "lanProxySet: entry family must be 4 or 6"), NULL;
    }
    e[i].family = w[0];
    e[i].flags = w[1];
    memcpy(e[i].addr, w + 2, 16);
  }
  pthread_mutex_lock(&lock);
  struct table *slot = NULL;
  for (size_t t = 0; t < MAX_TABLES && !slot; t++)
    if (tables[t].fd == (int)fd) slot = &tables[t];
  for (size_t t = 0; t < MAX_TABLES && !slot; t++)
    if (tables[t].fd < 0) slot = &tables[t];
  struct entry *old = NULL;
  if (slot) {
    old = slot->e;
    slot->fd = (int)fd;
    memcpy(slot->mac, mac, 6);
    slot->e = e;
    slot->n = n;
  }
  pthread_mutex_unlock(&lock);
  free(old);
  if (!slot) {
    free(e);
    return arg_error(env, 1, "lanProxySet: too many LAN sockets with a fast table"), NULL;
  }
  return NULL;
}

// lanProxyClear(fd): forgets the table of `fd` (call before closing the socket: fd numbers are reused).
static napi_value lan_proxy_clear(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!get_args(env, info, 1, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd")) return NULL;
  struct entry *old = NULL;
  pthread_mutex_lock(&lock);
  for (size_t t = 0; t < MAX_TABLES; t++) {
    if (tables[t].fd != (int)fd) continue;
    old = tables[t].e;
    tables[t] = (struct table){.fd = -1};
  }
  pthread_mutex_unlock(&lock);
  free(old);
  return NULL;
}

// lanProxyAnswer(fd, frame, offset, length, out: Uint8Array(>= 128)) -> reply length (0: not for the fast path).
// What lanRecv does with a frame, for tests and tools without a socket.
static napi_value lan_proxy_answer_js(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  int64_t fd, off, n;
  uint8_t *buf, *out;
  size_t len, olen;
  if (!get_args(env, info, 5, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd") ||
      !get_bytes(env, argv[1], &buf, &len, "frame") || !get_int(env, argv[2], 0, INT_MAX, &off, "offset") ||
      !get_int(env, argv[3], 0, 65536, &n, "length") || !get_bytes(env, argv[4], &out, &olen, "out"))
    return NULL;
  if ((uint64_t)off > len || (uint64_t)n > len - (uint64_t)off) return arg_error(env, 1, "lanProxyAnswer: offset/length outside frame"), NULL;
  if (olen < LAN_PROXY_REPLY_MAX) return arg_error(env, 1, "lanProxyAnswer: out under 128 bytes"), NULL;
  size_t rlen = 0;
  return num(env, lan_proxy_answer((int)fd, buf + off, (size_t)n, out, &rlen) ? (double)rlen : 0);
}

bool lan_proxy_register(napi_env env, napi_value exports) {
  static const export_fn fns[] = {{"lanProxySet", lan_proxy_set}, {"lanProxyClear", lan_proxy_clear}, {"lanProxyAnswer", lan_proxy_answer_js}};
  return export_fns(env, exports, fns, sizeof fns / sizeof fns[0]);
}
