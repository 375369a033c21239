// cyphonic_native: the N-API addon for what Node cannot do itself: TUNSETIFF on /dev/net/tun, synchronous
// poll()+read()/write() on the TUN fd and on the node's UDP socket (usable from worker threads without an event
// loop), and AES-256-GCM with OpenSSL contexts reused across calls. This file holds those calls and the module
// init; the data-plane engine is in dataplane.c, the batched I/O cores in batch_io.c, shared helpers in
// napi_util.c, TSO/GRO packet helpers in offload.c.

// Every length coming from JavaScript is validated before any pointer arithmetic; OpenSSL symbols come from
// the node binary itself (Node's bundled OpenSSL), so nothing else is linked.
#define _GNU_SOURCE  // strerrorname_np
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/udp.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "batch_io.h"
#include "filter.h"
#include "dataplane.h"
#include "lan_frames.h"  // the adapter's LAN frames: PACKET_VNET_HDR reads, GSO super-frames cut (lan_frames.c)
#include "lan_fast.h"    // the IP fast path between the LAN and general nodes' engines (lan_fast.c)
#include "lan_proxy.h"   // the ARP/ND proxy fast path on the LAN reader thread (lan_proxy.c)
#include "pmtu.h"
#include "napi_util.h"
#include "offload.h"

// TUNSETOFFLOAD's UDP segmentation offload flags (Linux 6.2; older userspace headers lack them).
#define CYP_TUN_F_USO4 0x20
#define CYP_TUN_F_USO6 0x40
#define KEY_LEN 32
#define NONCE_LEN 12
#define TAG_LEN 16

/* ---------- TUN ---------- */

// An optional boolean property of an options object (false when absent or not a boolean).
static bool opt_bool(napi_env env, napi_value obj, const char *key) {
  napi_valuetype t;
  bool has = false, val = false;
  napi_value v;
  if (napi_typeof(env, obj, &t) != napi_ok || t != napi_object) return false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return false;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_get_value_bool(env, v, &val) != napi_ok) return false;
  return val;
}

// tunOpen(name: string, opts?: { multiQueue?, vnetHdr? }) -> { fd, name, vnetHdr, offload, uso }. Empty name lets
// the kernel pick. vnetHdr: IFF_VNET_HDR (every packet carries a virtio_net_hdr) plus TUNSETOFFLOAD for checksum and
// TCP segmentation offload (TSO4/TSO6), so one read can carry a 64 KiB TCP segment, and where the kernel has it
// (6.2+) UDP segmentation offload (USO4/USO6): a UDP GSO sender's datagrams arrive as one super-frame, and merged
// datagrams may be written as one. `offload` says whether the kernel accepted the TCP offloads (without them the
// header is still there, always "no GSO"), `uso` whether it accepted USO too (older kernels refuse the flags with
// EINVAL; the TCP offloads are then asked for alone).
static napi_value tun_open(napi_env env, napi_callback_info info) {
  napi_value argv[2], result, v;
  char name[IFNAMSIZ + 1];
  size_t name_len = 0;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (napi_get_value_string_utf8(env, argv[0], name, sizeof name, &name_len) != napi_ok) {
    arg_error(env, 0, "tunOpen: name must be a string");
    return NULL;
  }
  if (name_len >= IFNAMSIZ || strlen(name) != name_len || strchr(name, '/') != NULL) {
    arg_error(env, 1, "tunOpen: interface name must be at most 15 bytes, without '/' or NUL");
    return NULL;
  }
  bool multi = opt_bool(env, argv[1], "multiQueue"), vnet = opt_bool(env, argv[1], "vnetHdr"), offload = false, uso = false;

  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    throw_errno(env, "open /dev/net/tun", errno);
    return NULL;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (multi ? IFF_MULTI_QUEUE : 0) | (vnet ? IFF_VNET_HDR : 0);
  memcpy(ifr.ifr_name, name, name_len);  // name_len < IFNAMSIZ, so the name stays NUL-terminated
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    throw_errno(env, "ioctl TUNSETIFF", err);
    return NULL;
  }
  ifr.ifr_name[IFNAMSIZ - 1] = '\0';
  // txQueueLen: the device's transmit queue, which for a TUN is the ring of packets waiting for our reads (500 by
  // default; a full ring drops what the local stack sends). Best effort: the device works without it.
  napi_valuetype qt;
  napi_value qv;
  if (napi_typeof(env, argv[1], &qt) == napi_ok && qt == napi_object && napi_get_named_property(env, argv[1], "txQueueLen", &qv) == napi_ok &&
      napi_typeof(env, qv, &qt) == napi_ok && qt == napi_number) {
    int64_t qlen = 0;
    napi_get_value_int64(env, qv, &qlen);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s >= 0 && qlen > 0 && qlen <= 65536) {
      struct ifreq q;
      memset(&q, 0, sizeof q);
      memcpy(q.ifr_name, ifr.ifr_name, IFNAMSIZ);
      q.ifr_qlen = (int)qlen;
      (void)ioctl(s, SIOCSIFTXQLEN, &q);
    }
    if (s >= 0) close(s);
  }
  if (vnet) {
    int hdr = VNET_HDR_LEN;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
      int err = errno;
      close(fd);
      throw_errno(env, "ioctl TUNSETVNETHDRSZ", err);
      return NULL;
    }
    const unsigned long tcp = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    uso = !opt_bool(env, argv[1], "noUso") && ioctl(fd, TUNSETOFFLOAD, tcp | CYP_TUN_F_USO4 | CYP_TUN_F_USO6) == 0;
    offload = uso || ioctl(fd, TUNSETOFFLOAD, tcp) == 0;
  }
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "fd", num(env, fd));
  napi_create_string_utf8(env, ifr.ifr_name, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, result, "name", v);
  napi_get_boolean(env, vnet, &v);
  napi_set_named_property(env, result, "vnetHdr", v);
  napi_get_boolean(env, offload, &v);
  napi_set_named_property(env, result, "offload", v);
  napi_get_boolean(env, uso, &v);
  napi_set_named_property(env, result, "uso", v);
  return result;
}

// Waits up to timeout_ms (-1 = forever) for the fd to become readable. Returns 1 readable, 0 timeout/EINTR,
// -1 after throwing.
static int wait_readable(napi_env env, int fd, int timeout_ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
  int rc = poll(&p, 1, timeout_ms);
  if (rc == 0 || (rc < 0 && errno == EINTR)) return 0;
  if (rc < 0) {
    throw_errno(env, "poll", errno);
    return -1;
  }
  if (p.revents & POLLIN) return 1;
  throw_errno(env, "poll", (p.revents & POLLNVAL) ? EBADF : EIO);  // POLLERR/POLLHUP without data
  return -1;
}

// Like wait_readable, but also wakes (returning 0) when `wakefd` (an eventfd, or -1 for none) is signalled;
// the eventfd is drained so the next wait blocks again. Lets a worker blocked on I/O see control messages at once.
static int wait_readable_or_wake(napi_env env, int fd, int wakefd, int timeout_ms) {
  if (wakefd < 0) return wait_readable(env, fd, timeout_ms);
  struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = wakefd, .events = POLLIN}};
  int rc = poll(p, 2, timeout_ms);
  if (rc == 0 || (rc < 0 && errno == EINTR)) return 0;
  if (rc < 0) {
    throw_errno(env, "poll", errno);
    return -1;
  }
  if (p[1].revents & POLLIN) {
    uint64_t v;
    ssize_t r = read(wakefd, &v, sizeof v);
    (void)r;
    return 0;
  }
  if (p[0].revents & POLLIN) return 1;
  throw_errno(env, "poll", (p[0].revents & POLLNVAL) ? EBADF : EIO);
  return -1;
}

// Optional trailing wake-fd argument: a number >= 0, or absent/undefined for none.
static int get_wakefd(napi_env env, napi_value v, int64_t *out) {
  napi_valuetype t;
  *out = -1;
  if (napi_typeof(env, v, &t) != napi_ok || t == napi_undefined) return 1;
  return get_int(env, v, -1, INT_MAX, out, "wakeFd");
}

// One read(); returns bytes, 0 if nothing was there after all (EAGAIN/EINTR) or the packet did not fit,
// -1 after throwing. The kernel silently truncates a packet longer than the buffer, so a 1-byte spill slot
// follows `dst`: anything landing in it means truncation, and the packet is dropped rather than handed on.
static ssize_t read_one(napi_env env, int fd, uint8_t *dst, size_t cap) {
  uint8_t spill;
  struct iovec iov[2] = {{.iov_base = dst, .iov_len = cap}, {.iov_base = &spill, .iov_len = 1}};
  ssize_t n = readv(fd, iov, 2);
  if (n >= 0) return (size_t)n > cap ? 0 : n;
  if (errno == EAGAIN || errno == EINTR) return 0;
  throw_errno(env, "readv", errno);
  return -1;
}

// tunRead(fd, buf, timeoutMs) -> length, 0 on timeout. buf must hold a whole packet (>= MTU).
static napi_value tun_read(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  uint8_t *buf;
  size_t len;
  int64_t fd, timeout, wakefd;
  if (!get_args(env, info, 4, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd") ||
      !get_bytes(env, argv[1], &buf, &len, "buf") || !get_int(env, argv[2], -1, INT_MAX, &timeout, "timeoutMs") ||
      !get_wakefd(env, argv[3], &wakefd))
    return NULL;
  if (len == 0) {
    arg_error(env, 1, "tunRead: buf is empty");
    return NULL;
  }
  int ready = wait_readable_or_wake(env, (int)fd, (int)wakefd, (int)timeout);
  if (ready <= 0) return ready == 0 ? num(env, 0) : NULL;
  ssize_t n = read_one(env, (int)fd, buf, len);
  return n < 0 ? NULL : num(env, (double)n);
}

// tunReadBatch(fd, buf, slotSize, lengths: Uint32Array, timeoutMs) -> count. Packet i lands at
// buf[i*slotSize] with its length in lengths[i]; blocks (up to timeoutMs) only for the first packet.
static napi_value tun_read_batch(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  uint8_t *buf;
  size_t len, nlen;
  int64_t fd, slot, timeout;
  bool is_ta = false;
  napi_typedarray_type type;
  void *lptr = NULL;
  if (!get_args(env, info, 5, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd") ||
      !get_bytes(env, argv[1], &buf, &len, "buf") || !get_int(env, argv[2], 1, INT32_MAX, &slot, "slotSize") ||
      !get_int(env, argv[4], -1, INT_MAX, &timeout, "timeoutMs"))
    return NULL;
  if (napi_is_typedarray(env, argv[3], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[3], &type, &nlen, &lptr, NULL, NULL) != napi_ok ||
      type != napi_uint32_array) {
    arg_error(env, 0, "tunReadBatch: lengths must be a Uint32Array");
    return NULL;
  }
  uint32_t *lengths = lptr;
  size_t max = len / (size_t)slot;  // only whole slots are used, so no read can pass the end of buf
  if (nlen < max) max = nlen;
  if (max == 0) {
    arg_error(env, 1, "tunReadBatch: buf holds no slot or lengths is empty");
    return NULL;
  }
  size_t count = 0;
  for (; count < max; count++) {
    int ready = wait_readable(env, (int)fd, count == 0 ? (int)timeout : 0);
    if (ready < 0) {
      if (count == 0) return NULL;
      napi_value ignored;  // keep the packets already read; the error will show up again on the next call
      napi_get_and_clear_last_exception(env, &ignored);
      break;
    }
    if (ready == 0) break;
    ssize_t n = read_one(env, (int)fd, buf + count * (size_t)slot, (size_t)slot);
    if (n < 0) {
      if (count == 0) return NULL;
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
      break;
    }
    if (n == 0) break;
    lengths[count] = (uint32_t)n;
  }
  return num(env, (double)count);
}

// tunWrite(fd, buf, offset, length) -> bytes written (one packet per call).
static napi_value tun_write(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  uint8_t *buf;
  size_t len;
  int64_t fd, off, n;
  if (!get_args(env, info, 4, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd") ||
      !get_bytes(env, argv[1], &buf, &len, "buf") || !get_int(env, argv[2], 0, MAX_SAFE, &off, "offset") ||
      !get_int(env, argv[3], 0, MAX_SAFE, &n, "length"))
    return NULL;
  if ((uint64_t)off > len || (uint64_t)n > len - (uint64_t)off) {
    arg_error(env, 1, "tunWrite: offset/length outside buf");
    return NULL;
  }
  ssize_t w;
  do w = write((int)fd, buf + off, (size_t)n);
  while (w < 0 && errno == EINTR);
  if (w < 0) {
    throw_errno(env, "write", errno);
    return NULL;
  }
  return num(env, (double)w);
}

/* ---------- AES-256-GCM with reused contexts ---------- */

typedef struct {
  EVP_CIPHER_CTX *enc;  // key schedule set once; each seal only sets the IV (NULL: a key that only opens)
  EVP_CIPHER_CTX *dec;  // NULL: a key that only seals
  int closed;
} aead_t;

// AES-256-GCM and SHA-256 fetched once: with OpenSSL 3 the EVP_aes_256_gcm()/EVP_sha256() handles make every
// EncryptInit/DigestInit look the algorithm up in the provider again (about half of a context's setup time).
static EVP_CIPHER *gcm_cipher;
static EVP_MD *sha256_md;
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static void fetch_algs(void) {
  gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
  sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}
static const EVP_CIPHER *aes_256_gcm(void) {
  pthread_once(&algs_once, fetch_algs);
  return gcm_cipher != NULL ? gcm_cipher : EVP_aes_256_gcm();
}
static const EVP_MD *sha_256(void) {
  pthread_once(&algs_once, fetch_algs);
  return sha256_md != NULL ? sha256_md : EVP_sha256();
}

// Tags the external so a foreign external (or a plain object) can never be taken for an aead_t.
static const napi_type_tag AEAD_TAG = {0x6379706f6e696331ULL, 0x616561645f63747aULL};

static void aead_free_ctx(aead_t *a) {
  EVP_CIPHER_CTX_free(a->enc);  // EVP_CIPHER_CTX_free cleanses the key schedule
  EVP_CIPHER_CTX_free(a->dec);
  a->enc = a->dec = NULL;
  a->closed = 1;
}

static void aead_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  aead_free_ctx(data);
  free(data);
}

static aead_t *get_aead(napi_env env, napi_value v, int allow_destroyed) {
  bool ok = false;
  void *data = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
      napi_check_object_type_tag(env, v, &AEAD_TAG, &ok) != napi_ok || !ok ||
      napi_get_value_external(env, v, &data) != napi_ok) {
    arg_error(env, 0, "not an AEAD handle");
    return NULL;
  }
  aead_t *a = data;
  if (a->closed && !allow_destroyed) {
    napi_throw_error(env, "ERR_CLOSED", "AEAD handle was destroyed");
    return NULL;
  }
  return a;
}

// aeadCreate(key: 32 bytes, mode?: 0 both | 1 seal only | 2 open only) -> external handle. A one-way key sets up
// one OpenSSL context instead of two (the NMS seals with one derived key and opens with the other).
static napi_value aead_create(napi_env env, napi_callback_info info) {
  napi_value argv[2], ext;
  uint8_t *key;
  size_t len, argc = 2;
  int64_t mode = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) {
    arg_error(env, 0, "aeadCreate: key required");
    return NULL;
  }
  if (!get_bytes(env, argv[0], &key, &len, "key")) return NULL;
  if (argc >= 2) {
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t != napi_undefined && !get_int(env, argv[1], 0, 2, &mode, "mode")) return NULL;
  }
  if (len != KEY_LEN) {
    arg_error(env, 1, "aeadCreate: key must be 32 bytes");
    return NULL;
  }
  aead_t *a = calloc(1, sizeof *a);
  if (a == NULL) {
    throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  if (mode != 2) a->enc = EVP_CIPHER_CTX_new();
  if (mode != 1) a->dec = EVP_CIPHER_CTX_new();
  // The default GCM IV length is 12, which is what we use.
  if ((mode != 2 && (a->enc == NULL || EVP_EncryptInit_ex(a->enc, aes_256_gcm(), NULL, key, NULL) != 1)) ||
      (mode != 1 && (a->dec == NULL || EVP_DecryptInit_ex(a->dec, aes_256_gcm(), NULL, key, NULL) != 1))) {
    aead_free_ctx(a);
    free(a);
    napi_throw_error(env, "ERR_CRYPTO", "aeadCreate: OpenSSL context setup failed");
    return NULL;
  }
  if (napi_create_external(env, a, aead_finalize, NULL, &ext) != napi_ok) {
    aead_free_ctx(a);
    free(a);
    return NULL;
  }
  napi_type_tag_object(env, ext, &AEAD_TAG);
  return ext;
}

// aeadDestroy(h): frees (and wipes) the contexts now; the handle then throws ERR_CLOSED.
static napi_value aead_destroy(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  aead_t *a = get_aead(env, argv[0], 1);  // idempotent
  if (a != NULL) aead_free_ctx(a);
  return NULL;
}

// Arguments shared by seal and open: (h | key, nonce, aad, input, out, outOffset), with out[outOffset..] having
// room for `need(inlen)` bytes. `input` and that out region must either not overlap or start at the same byte.
// The first argument is an aeadCreate handle, or (`keyed`) the raw 32-byte key for the per-thread shared contexts.
typedef struct {
  aead_t *a;
  uint8_t *key;
  uint8_t *nonce, *aad, *in, *out;
  size_t aad_len, in_len, out_room;
} aead_args_t;

static int get_aead_args(napi_env env, napi_callback_info info, aead_args_t *r, const char *fn, int keyed) {
  napi_value argv[7];
  size_t nonce_len, out_len, key_len;
  int64_t off, key_off = 0;
  char msg[128];
  if (!get_args(env, info, 7, argv)) return 0;
  r->a = NULL;
  r->key = NULL;
  if (keyed) {
    // The key is key[keyOffset .. keyOffset + 32): a caller keeping many keys in one buffer passes no subarrays.
    napi_valuetype t;
    if (!get_bytes(env, argv[0], &r->key, &key_len, "key")) return 0;
    if (napi_typeof(env, argv[6], &t) != napi_ok) return 0;
    if (t != napi_undefined && !get_int(env, argv[6], 0, MAX_SAFE, &key_off, "keyOffset")) return 0;
    if (t == napi_undefined ? key_len != KEY_LEN : (uint64_t)key_off > key_len || key_len - (size_t)key_off < KEY_LEN) {
      snprintf(msg, sizeof msg, t == napi_undefined ? "%s: key must be 32 bytes" : "%s: key must be 32 bytes at keyOffset", fn);
      return arg_error(env, 1, msg);
    }
    r->key += key_off;
  } else if ((r->a = get_aead(env, argv[0], 0)) == NULL) {
    return 0;
  }
  if (!get_bytes(env, argv[1], &r->nonce, &nonce_len, "nonce") ||
      !get_bytes(env, argv[2], &r->aad, &r->aad_len, "aad") || !get_bytes(env, argv[3], &r->in, &r->in_len, "input") ||
      !get_bytes(env, argv[4], &r->out, &out_len, "out") || !get_int(env, argv[5], 0, MAX_SAFE, &off, "outOffset"))
    return 0;
  if (nonce_len != NONCE_LEN) {
    snprintf(msg, sizeof msg, "%s: nonce must be 12 bytes", fn);
    return arg_error(env, 1, msg);
  }
  if ((uint64_t)off > out_len) {
    snprintf(msg, sizeof msg, "%s: outOffset beyond out", fn);
    return arg_error(env, 1, msg);
  }
  // OpenSSL takes int lengths.
  if (r->aad_len > INT_MAX || r->in_len > (size_t)INT_MAX - TAG_LEN) {
    snprintf(msg, sizeof msg, "%s: input too large", fn);
    return arg_error(env, 1, msg);
  }
  r->out += off;
  r->out_room = out_len - (size_t)off;
  return 1;
}

static int overlaps_badly(const uint8_t *in, size_t in_len, const uint8_t *out, size_t out_len) {
  if (in == out || in_len == 0 || out_len == 0) return 0;
  return in < out + out_len && out < in + in_len;
}

/* One sealing and one opening context per thread, re-keyed for each call of aeadSealKey/aeadOpenKey: a key used a
   few times (the NMS opens a registration and seals its answer once per node) costs a key schedule (~0.2 µs) per
   call instead of its own contexts (~5 µs and ~1.2 kB each to set up). Never freed (one pair per thread, like
   hmac_md); aeadSharedWipe() overwrites the last key's schedule with the schedule of a zero key. */
static __thread EVP_CIPHER_CTX *shared_ctx[2];  // [0] seals, [1] opens

static EVP_CIPHER_CTX *shared_aead(int open) {
  EVP_CIPHER_CTX *c = shared_ctx[open];
  if (c != NULL) return c;
  c = EVP_CIPHER_CTX_new();
  if (c == NULL) return NULL;
  if ((open ? EVP_DecryptInit_ex(c, aes_256_gcm(), NULL, NULL, NULL) : EVP_EncryptInit_ex(c, aes_256_gcm(), NULL, NULL, NULL)) != 1) {
    EVP_CIPHER_CTX_free(c);
    return NULL;
  }
  return shared_ctx[open] = c;
}

// aeadSeal(h, nonce, aad, plaintext, out, outOffset) -> bytes written (plaintext.length + 16);
// aeadSealKey(key, ..., outOffset, keyOffset?) the same on the thread's shared context, keyed for this call with
// key[keyOffset .. keyOffset + 32) (without keyOffset, key must be exactly 32 bytes).
static napi_value aead_seal_common(napi_env env, napi_callback_info info, int keyed) {
  aead_args_t r;
  int n = 0, fin = 0;
  const char *fn = keyed ? "aeadSealKey" : "aeadSeal";
  char msg[128];
  if (!get_aead_args(env, info, &r, fn, keyed)) return NULL;
  size_t total = r.in_len + TAG_LEN;
  if (r.out_room < total) {
    snprintf(msg, sizeof msg, "%s: out too small for ciphertext + tag", fn);
    arg_error(env, 1, msg);
    return NULL;
  }
  if (overlaps_badly(r.in, r.in_len, r.out, total)) {
    snprintf(msg, sizeof msg, "%s: plaintext and out partially overlap", fn);
    arg_error(env, 1, msg);
    return NULL;
  }
  EVP_CIPHER_CTX *c = keyed ? shared_aead(0) : r.a->enc;
  if (c == NULL) {
    if (keyed) napi_throw_error(env, "ERR_CRYPTO", "aeadSealKey: OpenSSL context setup failed");
    else napi_throw_error(env, "ERR_AEAD_DIRECTION", "aeadSeal: this key only opens");
    return NULL;
  }
  if (EVP_EncryptInit_ex(c, NULL, NULL, r.key, r.nonce) != 1 ||
      (r.aad_len > 0 && EVP_EncryptUpdate(c, NULL, &n, r.aad, (int)r.aad_len) != 1) ||
      (r.in_len > 0 && EVP_EncryptUpdate(c, r.out, &n, r.in, (int)r.in_len) != 1) ||
      EVP_EncryptFinal_ex(c, r.out + r.in_len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, r.out + r.in_len) != 1) {
    snprintf(msg, sizeof msg, "%s: OpenSSL failure", fn);
    napi_throw_error(env, "ERR_CRYPTO", msg);
    return NULL;
  }
  return num(env, (double)total);
}

// aeadOpen(h, nonce, aad, sealed, out, outOffset) -> plaintext length, or -1 if authentication fails
// (including sealed shorter than the tag). Never throws for bad network bytes; on failure the out region
// is zeroed so no unauthenticated plaintext is left behind. aeadOpenKey(key, ...): on the shared context.
static napi_value aead_open_common(napi_env env, napi_callback_info info, int keyed) {
  aead_args_t r;
  int n = 0, fin = 0;
  uint8_t tag[TAG_LEN];
  const char *fn = keyed ? "aeadOpenKey" : "aeadOpen";
  char msg[128];
  if (!get_aead_args(env, info, &r, fn, keyed)) return NULL;
  if (r.in_len < TAG_LEN) return num(env, -1);
  size_t ct_len = r.in_len - TAG_LEN;
  if (r.out_room < ct_len) {
    snprintf(msg, sizeof msg, "%s: out too small for the plaintext", fn);
    arg_error(env, 1, msg);
    return NULL;
  }
  if (overlaps_badly(r.in, r.in_len, r.out, ct_len)) {
    snprintf(msg, sizeof msg, "%s: sealed and out partially overlap", fn);
    arg_error(env, 1, msg);
    return NULL;
  }
  memcpy(tag, r.in + ct_len, TAG_LEN);  // copied first: in-place decryption may not clobber it, but be safe
  EVP_CIPHER_CTX *c = keyed ? shared_aead(1) : r.a->dec;
  if (c == NULL) {
    if (keyed) napi_throw_error(env, "ERR_CRYPTO", "aeadOpenKey: OpenSSL context setup failed");
    else napi_throw_error(env, "ERR_AEAD_DIRECTION", "aeadOpen: this key only seals");
    return NULL;
  }
  int ok = EVP_DecryptInit_ex(c, NULL, NULL, r.key, r.nonce) == 1 &&
           (r.aad_len == 0 || EVP_DecryptUpdate(c, NULL, &n, r.aad, (int)r.aad_len) == 1) &&
           (ct_len == 0 || EVP_DecryptUpdate(c, r.out, &n, r.in, (int)ct_len) == 1) &&
           EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1 &&
           EVP_DecryptFinal_ex(c, r.out + ct_len, &fin) == 1;
  if (!ok) {
    memset(r.out, 0, ct_len);
    return num(env, -1);
  }
  return num(env, (double)ct_len);
}

static napi_value aead_seal(napi_env env, napi_callback_info info) { return aead_seal_common(env, info, 0); }
static napi_value aead_open(napi_env env, napi_callback_info info) { return aead_open_common(env, info, 0); }
static napi_value aead_seal_key(napi_env env, napi_callback_info info) { return aead_seal_common(env, info, 1); }
static napi_value aead_open_key(napi_env env, napi_callback_info info) { return aead_open_common(env, info, 1); }

// aeadSharedWipe(which: 1 the sealing context | 2 the opening context | 3 both): re-keys this thread's shared
// context(s) with a zero key, so the schedule of the last key used there is gone (a destroyed or promoted key).
static napi_value aead_shared_wipe(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t which;
  static const uint8_t zero[KEY_LEN];
  if (!get_args(env, info, 1, argv) || !get_int(env, argv[0], 1, 3, &which, "which")) return NULL;
  int ok = 1;
  if ((which & 1) && shared_ctx[0] != NULL) ok = EVP_EncryptInit_ex(shared_ctx[0], NULL, NULL, zero, NULL) == 1;
  if ((which & 2) && shared_ctx[1] != NULL) ok = EVP_DecryptInit_ex(shared_ctx[1], NULL, NULL, zero, NULL) == 1 && ok;
  if (!ok) napi_throw_error(env, "ERR_CRYPTO", "aeadSharedWipe: OpenSSL failure");
  return NULL;
}

/* ---------- module ---------- */

/* ---------- UDP helpers shared by the single and batched calls ---------- */

/* ---------- UDP: the node's one socket, shared by the main thread (signaling) and the data-plane worker ---------- */

// udpOpen(port, ipv6: boolean) -> fd. ipv6: a dual-stack [::] socket (IPV6_V6ONLY off); else 0.0.0.0.
// Blocking fd (reads wait in poll()); 4 MiB socket buffers so bursts survive a busy worker.
static napi_value udp_open(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t port;
  bool v6 = false;
  if (!get_args(env, info, 2, argv) || !get_int(env, argv[0], 0, 65535, &port, "port")) return NULL;
  if (napi_get_value_bool(env, argv[1], &v6) != napi_ok) {
    arg_error(env, 0, "ipv6 must be a boolean");
    return NULL;
  }
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, "socket", errno);
    return NULL;
  }
  // Room for bursts: 4 MiB each way. The *FORCE options (CAP_NET_ADMIN, which the node has for its TUN) are not
  // capped by net.core.rmem_max/wmem_max (212992 by default, which holds ~90 full-size datagrams); without the
  // capability the plain options get what the sysctls allow.
  int off = 0, bufsz = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsz, sizeof bufsz) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsz, sizeof bufsz) < 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
  int rc;
  if (v6) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_any};
    rc = bind(fd, (struct sockaddr *)&a, sizeof a);
  } else {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_ANY)};
    rc = bind(fd, (struct sockaddr *)&a, sizeof a);
  }
  if (rc < 0) {
    int e = errno;
    close(fd);
    throw_errno(env, "bind", e);
    return NULL;
  }
  return num(env, fd);
}

// packetOpen(ifname) -> fd: the adapter's LAN side. An AF_PACKET/SOCK_RAW socket for every ethertype, bound to
// the interface, in promiscuous mode (the adapter answers for MACs and multicast groups the NIC may filter), and,
// where the kernel has PACKET_IGNORE_OUTGOING (4.20+), not seeing its own frames. Blocking; read with tunRead
// (one whole Ethernet frame per read) and write one frame per tunWrite. Needs CAP_NET_RAW.
static napi_value packet_open(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char name[IFNAMSIZ + 1];
  size_t name_len = 0;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (napi_get_value_string_utf8(env, argv[0], name, sizeof name, &name_len) != napi_ok || name_len == 0 ||
      name_len >= IFNAMSIZ || strlen(name) != name_len) {
    arg_error(env, 0, "packetOpen: interface name must be 1..15 bytes");
    return NULL;
  }
  unsigned int ifindex = if_nametoindex(name);
  if (ifindex == 0) {
    throw_errno(env, "if_nametoindex", errno);
    return NULL;
  }
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
  if (fd < 0) {
    throw_errno(env, "socket AF_PACKET", errno);
    return NULL;
  }
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = (int)ifindex;
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
    int e = errno;
    close(fd);
    throw_errno(env, "bind AF_PACKET", e);
    return NULL;
  }
  struct packet_mreq mr;
  memset(&mr, 0, sizeof mr);
  mr.mr_ifindex = (int)ifindex;
  mr.mr_type = PACKET_MR_PROMISC;
  if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) {
    int e = errno;
    close(fd);
    throw_errno(env, "setsockopt PACKET_ADD_MEMBERSHIP", e);
    return NULL;
  }
  int one = 1;
  setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one);  // tp_status per frame, see packetRead
#ifdef PACKET_IGNORE_OUTGOING
  setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);  // best effort: the classifier drops own frames too
#endif
  int bufsz = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
  return num(env, fd);
}

// One non-blocking recvmsg of a frame into `mh` (its one iovec holds `len` bytes): the frame's length; 0 when none is
// queued, or when it was longer than `len` (MSG_TRUNC reports the real length: such a frame is dropped); -1 after
// throwing.
static ssize_t recv_frame(napi_env env, int fd, struct msghdr *mh, size_t len) {
  ssize_t n;
  do n = recvmsg(fd, mh, MSG_DONTWAIT | MSG_TRUNC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return 0;
    throw_errno(env, "recvmsg", errno);
    return -1;
  }
  return (size_t)n > len ? 0 : n;
}

// packetRead(fd, buf, timeoutMs, status: Uint32Array) -> frame length, 0 on timeout or a frame longer than buf.
// status[0] = the frame's tp_status (PACKET_AUXDATA): TP_STATUS_CSUMNOTREADY (8) means the sender was local (a veth
// peer) and left the UDP/TCP checksum to offload — the field holds only the pseudo-header sum; the caller completes it.
static napi_value packet_read(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  uint8_t *buf;
  size_t len, slen;
  uint32_t *status;
  int64_t fd, timeout;
  if (!get_args(env, info, 4, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd") || !get_bytes(env, argv[1], &buf, &len, "buf") ||
      !get_int(env, argv[2], -1, INT_MAX, &timeout, "timeoutMs") || !get_u32s(env, argv[3], &status, &slen, "status"))
    return NULL;
  if (slen < 1) {
    arg_error(env, 3, "packetRead: status needs one element");
    return NULL;
  }
  status[0] = 0;
  if (timeout != 0) {
    int r = wait_readable(env, (int)fd, (int)timeout);
    if (r <= 0) return r < 0 ? NULL : num(env, 0);
  }
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
  } ctl;
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  ssize_t n = recv_frame(env, (int)fd, &mh, len);
  if (n <= 0) return n < 0 ? NULL : num(env, 0);
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA && c->cmsg_len >= CMSG_LEN(sizeof(struct tpacket_auxdata))) {
      struct tpacket_auxdata aux;
      memcpy(&aux, CMSG_DATA(c), sizeof aux);
      status[0] = aux.tp_status;
    }
  }
  return num(env, (double)n);
}

// packetStampOn(fd): a packet socket (packetOpen) becomes a capture point that times frames the way a capture on
// the interface does (bench/lib/lan-probe.ts: what a device on the adapter's LAN sees). SO_TIMESTAMPNS: each frame
// read carries the kernel's software timestamp (CLOCK_REALTIME) taken as it arrived on the interface; and the socket
// sees the host's outgoing frames (PACKET_IGNORE_OUTGOING off), each stamped as it was handed to the driver
// (dev_queue_xmit_nit) — those other sockets sent: the kernel never shows a socket its own. Read with packetReadStamped.
static napi_value packet_stamp_on(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!get_args(env, info, 1, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd")) return NULL;
  int one = 1;
  if (setsockopt((int)fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0) {
    throw_errno(env, "setsockopt SO_TIMESTAMPNS", errno);
    return NULL;
  }
#ifdef PACKET_IGNORE_OUTGOING
  int zero = 0;
  if (setsockopt((int)fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &zero, sizeof zero) < 0 && errno != ENOPROTOOPT) {
    throw_errno(env, "setsockopt PACKET_IGNORE_OUTGOING", errno);
    return NULL;
  }
#endif
  return NULL;
}

// packetReadStamped(fd, buf, timeoutMs, info: Uint32Array(>= 4)) -> frame length, 0 on timeout or a frame longer
// than buf (dropped). info = [seconds (low 32 bits), nanoseconds, sll_pkttype (4 = PACKET_OUTGOING: our own frame),
// 1 when the kernel gave a timestamp else 0]. Every cmsg is checked for its full length before it is read.
static napi_value packet_read_stamped(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  uint8_t *buf;
  size_t len, ilen;
  uint32_t *out;
  int64_t fd, timeout;
  if (!get_args(env, info, 4, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd") || !get_bytes(env, argv[1], &buf, &len, "buf") ||
      !get_int(env, argv[2], -1, INT_MAX, &timeout, "timeoutMs") || !get_u32s(env, argv[3], &out, &ilen, "info"))
    return NULL;
  if (ilen < 4) return arg_error(env, 1, "packetReadStamped: info needs four elements"), NULL;
  if (len == 0) return arg_error(env, 1, "packetReadStamped: buf is empty"), NULL;
  out[0] = out[1] = out[2] = out[3] = 0;
  if (timeout != 0) {
    int r = wait_readable(env, (int)fd, (int)timeout);
    if (r <= 0) return r < 0 ? NULL : num(env, 0);
  }
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(struct timespec)) + CMSG_SPACE(sizeof(struct tpacket_auxdata))];
  } ctl;
  struct sockaddr_ll from;
  memset(&from, 0, sizeof from);
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  struct msghdr mh = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  ssize_t n = recv_frame(env, (int)fd, &mh, len);
  if (n <= 0) return n < 0 ? NULL : num(env, 0);
  if (mh.msg_namelen >= offsetof(struct sockaddr_ll, sll_pkttype) + sizeof from.sll_pkttype) out[2] = from.sll_pkttype;
  if (!(mh.msg_flags & MSG_CTRUNC)) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS && c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
        struct timespec ts;
        memcpy(&ts, CMSG_DATA(c), sizeof ts);
        out[0] = (uint32_t)ts.tv_sec;
        out[1] = (uint32_t)ts.tv_nsec;
        out[3] = 1;
      }
    }
  }
  return num(env, (double)n);
}

// udpLocalPort(fd) -> the bound port.
static napi_value udp_local_port(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!get_args(env, info, 1, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd")) return NULL;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname((int)fd, (struct sockaddr *)&ss, &sl) < 0) {
    throw_errno(env, "getsockname", errno);
    return NULL;
  }
  uint16_t p = ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port;
  return num(env, ntohs(p));
}

// udpSend(fd, buf, offset, length, addr: 4 or 16 bytes, port) -> bytes sent, or -errno.
// A 16-byte address is sent as AF_INET6 (dual-stack sockets get IPv4 as ::ffff:a.b.c.d), 4 bytes as AF_INET.
static napi_value udp_send(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  uint8_t *buf, *addr;
  size_t len, alen;
  int64_t fd, off, n, port;
  if (!get_args(env, info, 6, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd") ||
      !get_bytes(env, argv[1], &buf, &len, "buf") || !get_int(env, argv[2], 0, INT_MAX, &off, "offset") ||
      !get_int(env, argv[3], 0, 65535, &n, "length") || !get_bytes(env, argv[4], &addr, &alen, "addr") ||
      !get_int(env, argv[5], 1, 65535, &port, "port"))
    return NULL;
  if ((size_t)off > len || (size_t)n > len - (size_t)off || (alen != 4 && alen != 16)) {
    arg_error(env, 1, "udpSend: range outside buf or address not 4/16 bytes");
    return NULL;
  }
  struct sockaddr_storage ss;
  socklen_t sl = fill_sockaddr(&ss, addr, alen, port);
  ssize_t w = sendto((int)fd, buf + off, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&ss, sl);
  return num(env, w < 0 ? -(double)errno : (double)w);
}

// eventfdCreate() -> fd: a wake-up channel for a thread blocked in tunRead/udpRecvMany (wakeFd) or in the engine's dpTurn.
static napi_value eventfd_create(napi_env env, napi_callback_info info) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) {
    throw_errno(env, "eventfd", errno);
    return NULL;
  }
  return num(env, fd);
}

// eventfdSignal(fd): wakes whoever polls it.
static napi_value eventfd_signal(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!get_args(env, info, 1, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd")) return NULL;
  uint64_t one = 1;
  ssize_t r = write((int)fd, &one, sizeof one);
  (void)r;
  return NULL;
}

// threadCpuUs() -> CPU time (user + system) the calling thread has used, in µs (CLOCK_THREAD_CPUTIME_ID): what the
// first-contact trace (src/util/trace.ts) writes beside each step, so a step's work is told apart from its waiting.
static napi_value thread_cpu_us(napi_env env, napi_callback_info info) {
  (void)info;
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return num(env, -1);
  return num(env, (double)ts.tv_sec * 1e6 + (double)(ts.tv_nsec / 1000));
}

// packetPair() -> [fd, fd]: two connected AF_UNIX datagram sockets. Each write is one read at the other end, as
// with a TUN fd: the data-plane engine's device for a general node (the adapter holds the other end), and tests
// drive the engine through one end without creating a device. What a sender may have queued is bounded by its
// send buffer (212 KB by default: under 100 full-size packets, less than two batches of the engine or of the
// adapter's LAN reader, and three 64 KiB super-frames when the pair carries virtio_net_hdr), so both ends get the UDP
// sockets' 4 MiB: SO_SNDBUFFORCE where allowed (CAP_NET_ADMIN, as the adapter runs), else SO_SNDBUF (capped by
// net.core.wmem_max). (A socketpair's receiver has no queue limit of its own: the sender's buffer is the bound.)
static napi_value packet_pair(napi_env env, napi_callback_info info) {
  (void)info;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0) {
    throw_errno(env, "socketpair", errno);
    return NULL;
  }
  int bufsz = 4 << 20;
  for (int i = 0; i < 2; i++)
    if (setsockopt(sv[i], SOL_SOCKET, SO_SNDBUFFORCE, &bufsz, sizeof bufsz) < 0) setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
  napi_value arr;
  napi_create_array_with_length(env, 2, &arr);
  for (uint32_t i = 0; i < 2; i++) napi_set_element(env, arr, i, num(env, sv[i]));
  return arr;
}

// fdClose(fd): closes a descriptor this addon opened.
static napi_value fd_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!get_args(env, info, 1, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd")) return NULL;
  close((int)fd);
  return NULL;
}

/* ---------- batched I/O (cores in batch_io.c, shared with the engine) ---------- */

// setNonblocking(fd): O_NONBLOCK, so batch reads can drain a queue without a poll() per packet.
static napi_value set_nonblocking(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!get_args(env, info, 1, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd")) return NULL;
  int fl = fcntl((int)fd, F_GETFL);
  if (fl < 0 || fcntl((int)fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    throw_errno(env, "fcntl", errno);
    return NULL;
  }
  return NULL;
}

// Validates a batch layout: `count` slots of `slot` bytes in buf, lengths array of at least count.
static int batch_layout(napi_env env, size_t buflen, int64_t slot, size_t nlen, size_t *count) {
  if (slot <= 0 || (size_t)slot > buflen || nlen == 0) return arg_error(env, 1, "bad batch layout");
  size_t n = buflen / (size_t)slot;
  if (n > nlen) n = nlen;
  if (n > MAX_BATCH) n = MAX_BATCH;
  *count = n;
  return 1;
}

// udpSetGro(fd) -> whether the kernel accepted UDP_GRO: coalesced datagrams then arrive as one buffer (see
// udpRecvMany), and a UDP GSO packet from a local sender crosses veth/bridges unsegmented.
static napi_value udp_set_gro(napi_env env, napi_callback_info info) {
  napi_value argv[1], r;
  int64_t fd;
  if (!get_args(env, info, 1, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd")) return NULL;
  int one = 1;
  napi_get_boolean(env, setsockopt((int)fd, IPPROTO_UDP, UDP_GRO, &one, sizeof one) == 0, &r);
  return r;
}

// udpRecvMany(fd, buf, slotSize, offsets: Uint32Array, lengths: Uint32Array, metas: Uint8Array(20*n), timeoutMs,
// wakeFd?, gro?, scopes?: Uint32Array) -> datagram count. One recvmmsg into slots of slotSize bytes, without blocking;
// waits (poll) only when nothing is queued. A GRO buffer (UDP_GRO cmsg) is split into its datagrams: datagram i is at
// buf[offsets[i]], lengths[i] bytes (0 = truncated or empty: metas[i*20+1] is 1 when truncated), source in
// metas[i*20..] (see write_meta), and with scopes the IPv6 scope id of a link-local source in scopes[i] (else 0).
// With gro, at most offsets.length/64 buffers are received per call so that every split fits.
static napi_value udp_recv_many(napi_env env, napi_callback_info info) {
  napi_value argv[10];
  uint8_t *buf, *metas;
  uint32_t *offsets, *lengths, *scopes = NULL;
  size_t len, no, nl, mlen, ns = 0, n = 0;
  int64_t fd, slot, timeout, wakefd;
  if (!get_args(env, info, 10, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd") ||
      !get_bytes(env, argv[1], &buf, &len, "buf") || !get_int(env, argv[2], 1, 65536, &slot, "slotSize") ||
      !get_u32s(env, argv[3], &offsets, &no, "offsets") || !get_u32s(env, argv[4], &lengths, &nl, "lengths") ||
      !get_bytes(env, argv[5], &metas, &mlen, "metas") || !get_int(env, argv[6], -1, INT_MAX, &timeout, "timeoutMs") ||
      !get_wakefd(env, argv[7], &wakefd))
    return NULL;
  bool gro = false;
  napi_get_value_bool(env, argv[8], &gro);  // absent/not boolean: false
  napi_valuetype st;
  if (napi_typeof(env, argv[9], &st) != napi_ok) return NULL;
  if (st != napi_undefined && !get_u32s(env, argv[9], &scopes, &ns, "scopes")) return NULL;
  size_t cap = no < nl ? no : nl;
  if (cap > mlen / 20) cap = mlen / 20;
  if (scopes && cap > ns) cap = ns;
  if (!batch_layout(env, len, slot, cap, &n)) return NULL;
  if (gro) n = n < cap / GRO_MAX_SEGS ? n : cap / GRO_MAX_SEGS;
  if (n == 0) {
    arg_error(env, 1, "udpRecvMany: offsets/lengths/metas/scopes too short");
    return NULL;
  }
  for (int pass = 0;; pass++) {
    int got = udp_recv_batch((int)fd, buf, (size_t)slot, n, offsets, lengths, metas, scopes, cap);
    if (got != 0 || pass == 1) return num(env, got < 0 ? -1 : got);
    if (timeout == 0) return num(env, 0);  // a non-blocking look: no poll() when nothing was queued
    int ready = wait_readable_or_wake(env, (int)fd, (int)wakefd, (int)timeout);
    if (ready <= 0) return ready == 0 ? num(env, 0) : NULL;
  }
}

// udpSendMany(fd, buf, offsets: Uint32Array, lengths: Uint32Array, count, addr (4|16 bytes), port, gso?) -> sent
// count (or -errno). One sendmmsg for up to 256 datagrams to one destination. With gso, each run of equal-sized
// datagrams (the last may be shorter) goes as one UDP GSO send (UDP_SEGMENT), which the kernel splits — or, over
// veth and bridges to a UDP_GRO socket, delivers whole. Falls back to one datagram per message when GSO fails.
static napi_value udp_send_many(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  uint8_t *buf, *addr;
  uint32_t *offs, *lens;
  size_t len, alen, no, nl;
  int64_t fd, count, port;
  if (!get_args(env, info, 8, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd") ||
      !get_bytes(env, argv[1], &buf, &len, "buf") || !get_u32s(env, argv[2], &offs, &no, "offsets") ||
      !get_u32s(env, argv[3], &lens, &nl, "lengths") || !get_int(env, argv[4], 0, MAX_SEND, &count, "count") ||
      !get_bytes(env, argv[5], &addr, &alen, "addr") || !get_int(env, argv[6], 1, 65535, &port, "port"))
    return NULL;
  bool gso = false;
  napi_get_value_bool(env, argv[7], &gso);
  if ((size_t)count > no || (size_t)count > nl || (alen != 4 && alen != 16)) {
    arg_error(env, 1, "udpSendMany: count beyond offsets/lengths or bad address");
    return NULL;
  }
  struct iovec iov[MAX_SEND];
  for (int64_t i = 0; i < count; i++) {
    if ((size_t)offs[i] > len || (size_t)lens[i] > len - (size_t)offs[i]) {
      arg_error(env, 1, "udpSendMany: a datagram lies outside buf");
      return NULL;
    }
    iov[i].iov_base = buf + offs[i];
    iov[i].iov_len = lens[i];
  }
  struct sockaddr_storage ss;
  socklen_t sl = fill_sockaddr(&ss, addr, alen, port);
  return num(env, udp_send_batch((int)fd, iov, (int)count, &ss, sl, gso));
}

// udpSendEach(fd, buf, offsets: Uint32Array, lengths: Uint32Array, count, addrs: 16 bytes each, ports: Uint32Array,
// v6: boolean, stats: Uint32Array) -> how many datagrams were dealt with (sent, or refused for good: counted in
// stats[0]). Datagram i (buf[offsets[i]], lengths[i] bytes) goes to addrs[16i..] port ports[i], each to its own
// destination, in sendmmsg calls of up to MAX_SEND: the NMS answers a burst of nodes with a few syscalls. With v6 the
// address is an IPv6 one (IPv4 as ::ffff:a.b.c.d on a dual-stack socket), else its first 4 bytes are IPv4. Stops
// early (returns less than count) only when the socket's buffer is full (EAGAIN): the caller sends the rest its way.
static napi_value udp_send_each(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  uint8_t *buf, *addrs;
  uint32_t *offs, *lens, *ports, *stats;
  size_t len, alen, no, nl, np, ns;
  int64_t fd, count;
  bool v6 = false;
  if (!get_args(env, info, 9, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd") ||
      !get_bytes(env, argv[1], &buf, &len, "buf") || !get_u32s(env, argv[2], &offs, &no, "offsets") ||
      !get_u32s(env, argv[3], &lens, &nl, "lengths") || !get_int(env, argv[4], 0, INT_MAX, &count, "count") ||
      !get_bytes(env, argv[5], &addrs, &alen, "addrs") || !get_u32s(env, argv[6], &ports, &np, "ports") ||
      !get_u32s(env, argv[8], &stats, &ns, "stats"))
    return NULL;
  napi_get_value_bool(env, argv[7], &v6);
  if ((size_t)count > no || (size_t)count > nl || (size_t)count > np || (size_t)count > alen / 16 || ns < 1) {
    arg_error(env, 1, "udpSendEach: count beyond offsets/lengths/addrs/ports, or no stats");
    return NULL;
  }
  for (int64_t i = 0; i < count; i++) {
    if ((size_t)offs[i] > len || (size_t)lens[i] > len - (size_t)offs[i] || ports[i] < 1 || ports[i] > 65535) {
      arg_error(env, 1, "udpSendEach: a datagram lies outside buf or has a bad port");
      return NULL;
    }
  }
  struct mmsghdr msgs[MAX_SEND];
  struct iovec iov[MAX_SEND];
  struct sockaddr_storage to[MAX_SEND];
  int64_t done = 0;
  while (done < count) {
    int n = count - done > MAX_SEND ? MAX_SEND : (int)(count - done);
    memset(msgs, 0, sizeof msgs[0] * (size_t)n);
    for (int k = 0; k < n; k++) {
      int64_t i = done + k;
      iov[k].iov_base = buf + offs[i];
      iov[k].iov_len = lens[i];
      msgs[k].msg_hdr.msg_name = &to[k];
      msgs[k].msg_hdr.msg_namelen = fill_sockaddr(&to[k], addrs + 16 * i, v6 ? 16 : 4, ports[i]);
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg((int)fd, msgs, (unsigned)n, MSG_DONTWAIT);
    if (r > 0) {
      done += r;
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
      break;  // the socket's buffer is full: the caller queues the rest
    } else {
      stats[0]++;  // this datagram is refused (bad destination, unreachable): the others still go
      done++;
    }
  }
  return num(env, (double)done);
}

/* HMAC-SHA-256 on one reused (per thread) digest context: HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)), with K
   at most one block (here: 32-byte secrets and salts). Parts of m are given as (pointer, length) pairs. */
static __thread EVP_MD_CTX *hmac_md;

static int hmac_sha256(const uint8_t *key, size_t klen, const uint8_t *m1, size_t l1, const uint8_t *m2, size_t l2,
                       uint8_t out[32]) {
  uint8_t pad[64], inner[32];
  unsigned int ol = 0;
  if (klen > 64) return 0;
  if (hmac_md == NULL && (hmac_md = EVP_MD_CTX_new()) == NULL) return 0;
  memset(pad, 0x36, sizeof pad);
  for (size_t i = 0; i < klen; i++) pad[i] ^= key[i];
  int ok = EVP_DigestInit_ex(hmac_md, sha_256(), NULL) == 1 && EVP_DigestUpdate(hmac_md, pad, 64) == 1 &&
           (l1 == 0 || EVP_DigestUpdate(hmac_md, m1, l1) == 1) && (l2 == 0 || EVP_DigestUpdate(hmac_md, m2, l2) == 1) &&
           EVP_DigestFinal_ex(hmac_md, inner, &ol) == 1;
  memset(pad, 0x5c, sizeof pad);
  for (size_t i = 0; i < klen; i++) pad[i] ^= key[i];
  ok = ok && EVP_DigestInit_ex(hmac_md, sha_256(), NULL) == 1 && EVP_DigestUpdate(hmac_md, pad, 64) == 1 &&
       EVP_DigestUpdate(hmac_md, inner, 32) == 1 && EVP_DigestFinal_ex(hmac_md, out, &ol) == 1;
  OPENSSL_cleanse(pad, sizeof pad);
  OPENSSL_cleanse(inner, sizeof inner);
  return ok;
}

// hkdfSha256Pair(secret, salt, infoA, infoB, out: 64 bytes): HKDF-SHA-256 (RFC 5869) of `secret` into two 32-byte
// keys, out[0..32) with infoA and out[32..64) with infoB: one extract and two single-block expands, T(1) = HMAC(PRK,
// info || 0x01). An empty salt is 32 zero bytes, as the RFC says. Salt at most 64 bytes, infos at most 255.
static napi_value hkdf_sha256_pair(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  uint8_t *secret, *salt, *ia, *ib, *out, prk[32], zero[32] = {0}, a[256], b[256];
  size_t sl, sal, la, lb, ol;
  if (!get_args(env, info, 5, argv) || !get_bytes(env, argv[0], &secret, &sl, "secret") ||
      !get_bytes(env, argv[1], &salt, &sal, "salt") || !get_bytes(env, argv[2], &ia, &la, "infoA") ||
      !get_bytes(env, argv[3], &ib, &lb, "infoB") || !get_bytes(env, argv[4], &out, &ol, "out"))
    return NULL;
  if (sal > 64 || la > 255 || lb > 255 || ol < 64) {
    arg_error(env, 1, "hkdfSha256Pair: salt over 64 bytes, info over 255, or out under 64");
    return NULL;
  }
  memcpy(a, ia, la);
  a[la] = 1;
  memcpy(b, ib, lb);
  b[lb] = 1;
  int ok = hmac_sha256(sal ? salt : zero, sal ? sal : sizeof zero, secret, sl, NULL, 0, prk) &&
           hmac_sha256(prk, 32, a, la + 1, NULL, 0, out) && hmac_sha256(prk, 32, b, lb + 1, NULL, 0, out + 32);
  OPENSSL_cleanse(prk, sizeof prk);
  if (!ok) {
    memset(out, 0, 64);
    napi_throw_error(env, "ERR_CRYPTO", "hkdfSha256Pair: OpenSSL failure");
    return NULL;
  }
  return NULL;
}

// hkdfSha256(secret, salt, info, out): HKDF-SHA-256 (RFC 5869) of `secret` into all of `out` (1..8160 bytes): one
// extract, then T(i) = HMAC(PRK, T(i-1) || info || i). An empty salt is 32 zero bytes. Salt at most 64 bytes, info at
// most 255 (crypto/kdf.ts takes node's hkdfSync beyond). The same bytes as node's hkdfSync, on the per-thread digest
// context with SHA-256 fetched once: a first call after the thread slept costs a fraction of hkdfSync's.
static napi_value hkdf_sha256(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  uint8_t *secret, *salt, *inf, *out, prk[32], zero[32] = {0}, t[32], m[32 + 255 + 1];
  size_t sl, sal, il, ol;
  if (!get_args(env, info, 4, argv) || !get_bytes(env, argv[0], &secret, &sl, "secret") ||
      !get_bytes(env, argv[1], &salt, &sal, "salt") || !get_bytes(env, argv[2], &inf, &il, "info") ||
      !get_bytes(env, argv[3], &out, &ol, "out"))
    return NULL;
  if (sal > 64 || il > 255 || ol < 1 || ol > 255 * 32) {
    arg_error(env, 1, "hkdfSha256: salt over 64 bytes, info over 255, or out not 1..8160 bytes");
    return NULL;
  }
  int ok = hmac_sha256(sal ? salt : zero, sal ? sal : sizeof zero, secret, sl, NULL, 0, prk);
  size_t done = 0, tl = 0;
  for (unsigned i = 1; ok && done < ol; i++) {
    memcpy(m, t, tl);
    memcpy(m + tl, inf, il);
    m[tl + il] = (uint8_t)i;
    ok = hmac_sha256(prk, 32, m, tl + il + 1, NULL, 0, t);
    size_t n = ol - done < 32 ? ol - done : 32;
    if (ok) memcpy(out + done, t, n);
    done += n;
    tl = 32;
  }
  OPENSSL_cleanse(prk, sizeof prk);
  OPENSSL_cleanse(t, sizeof t);
  OPENSSL_cleanse(m, sizeof m);
  if (!ok) {
    memset(out, 0, ol);
    napi_throw_error(env, "ERR_CRYPTO", "hkdfSha256: OpenSSL failure");
  }
  return NULL;
}

// vnetSegment(buf, offset, length, out, outSlot, outLengths: Uint32Array) -> count of plain IP packets written to
// out (packet i at out[i*outSlot]), or -1 (malformed) / -2 (more segments than slots). See offload.c.
static napi_value vnet_segment_js(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  uint8_t *buf, *out;
  uint32_t *lens;
  size_t len, olen, nl;
  int64_t off, n, slot;
  if (!get_args(env, info, 6, argv) || !get_bytes(env, argv[0], &buf, &len, "buf") ||
      !get_int(env, argv[1], 0, MAX_SAFE, &off, "offset") || !get_int(env, argv[2], 0, MAX_SAFE, &n, "length") ||
      !get_bytes(env, argv[3], &out, &olen, "out") || !get_int(env, argv[4], 1, 65536, &slot, "outSlot") ||
      !get_u32s(env, argv[5], &lens, &nl, "outLengths"))
    return NULL;
  if ((uint64_t)off > len || (uint64_t)n > len - (uint64_t)off) {
    arg_error(env, 1, "vnetSegment: offset/length outside buf");
    return NULL;
  }
  size_t slots = olen / (size_t)slot;
  if (slots > nl) slots = nl;
  return num(env, vnet_segment(buf + off, (size_t)n, out, (size_t)slot, slots, lens));
}

// tunWriteMany(fd, buf, offsets: Uint32Array, lengths: Uint32Array, count, vnet: boolean, scratch, uso?: boolean)
// -> packets written. Without vnet: one write per packet. With vnet (the TUN has IFF_VNET_HDR): each packet needs
// VNET_HDR_LEN bytes of headroom before buf[offsets[i]] (overwritten); runs of one TCP flow (and with uso, runs of
// equal-sized datagrams of one UDP flow) are merged in scratch (>= 65546 bytes) into one GSO write, the rest go
// singly with an empty header.
static napi_value tun_write_many(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  uint8_t *buf, *scratch;
  uint32_t *offs, *lens;
  size_t len, no, nl, slen;
  int64_t fd, count;
  bool vnet = false, uso = false;
  if (!get_args(env, info, 8, argv) || !get_int(env, argv[0], 0, INT_MAX, &fd, "fd") ||
      !get_bytes(env, argv[1], &buf, &len, "buf") || !get_u32s(env, argv[2], &offs, &no, "offsets") ||
      !get_u32s(env, argv[3], &lens, &nl, "lengths") || !get_int(env, argv[4], 0, MAX_TUN_WRITE, &count, "count") ||
      napi_get_value_bool(env, argv[5], &vnet) != napi_ok || !get_bytes(env, argv[6], &scratch, &slen, "scratch"))
    return NULL;
  if ((size_t)count > no || (size_t)count > nl) {
    arg_error(env, 1, "tunWriteMany: count beyond offsets/lengths");
    return NULL;
  }
  napi_valuetype ut;
  if (napi_typeof(env, argv[7], &ut) == napi_ok && ut == napi_boolean) napi_get_value_bool(env, argv[7], &uso);
  size_t head = vnet ? VNET_HDR_LEN : 0;
  uint8_t *ptrs[MAX_TUN_WRITE];
  for (int64_t i = 0; i < count; i++) {
    if ((size_t)offs[i] < head || (size_t)offs[i] > len || (size_t)lens[i] > len - (size_t)offs[i]) {
      arg_error(env, 1, "tunWriteMany: a packet (with its header room) lies outside buf");
      return NULL;
    }
    ptrs[i] = buf + offs[i];
  }
  return num(env, (double)tun_write_batch((int)fd, ptrs, lens, (size_t)count, vnet, uso, scratch, slen, NULL));
}

NAPI_MODULE_INIT() {
  static const export_fn fns[] = {
      {"tunOpen", tun_open},       {"tunRead", tun_read},       {"tunReadBatch", tun_read_batch},
      {"tunWrite", tun_write},     {"aeadCreate", aead_create}, {"aeadDestroy", aead_destroy},
      {"aeadSeal", aead_seal},     {"aeadOpen", aead_open},
      {"aeadSealKey", aead_seal_key}, {"aeadOpenKey", aead_open_key}, {"aeadSharedWipe", aead_shared_wipe},
      {"udpOpen", udp_open},       {"udpLocalPort", udp_local_port},
      {"udpSend", udp_send},       {"fdClose", fd_close},       {"eventfdCreate", eventfd_create},
      {"eventfdSignal", eventfd_signal},  {"setNonblocking", set_nonblocking}, {"threadCpuUs", thread_cpu_us},
      {"udpRecvMany", udp_recv_many},     {"udpSendMany", udp_send_many},  {"udpSendEach", udp_send_each},
      {"hkdfSha256Pair", hkdf_sha256_pair},  {"hkdfSha256", hkdf_sha256},  {"udpSetGro", udp_set_gro},
      {"vnetSegment", vnet_segment_js},   {"tunWriteMany", tun_write_many},
                     {"packetOpen", packet_open}, {"packetPair", packet_pair},         {"packetRead", packet_read}, {"packetStampOn", packet_stamp_on}, {"packetReadStamped", packet_read_stamped},
  };
  if (!export_fns(env, exports, fns, sizeof fns / sizeof fns[0])) return NULL;
  // Path MTU helpers (pmtu.c): pmtuFragNeeded, pmtuTooBig, pmtuFragment4, pmtuClampMss.
  if (!pmtu_register(env, exports)) return NULL;
  // The policy filter the engine runs (filter.c): filterCreate/filterSet/filterPacket.
  if (!filter_register(env, exports)) return NULL;
  return dataplane_register(env, exports) && lan_frames_register(env, exports) && lan_proxy_register(env, exports) && lan_fast_register(env, exports) ? exports : NULL;
}
