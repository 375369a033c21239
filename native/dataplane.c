// The data-plane engine: the per-packet work of a node (TUN ⇄ capsules ⇄ UDP) in C, driven one turn at a time by
// the data-plane worker thread (src/node/dataplane/worker.ts). It is the latency path: a ping that crosses a node
// costs one poll wake-up and a few hundred instructions here, where the same steps in JavaScript cost ~150 µs more
// on a cold core (bench/rtt.ts, bench/cold-path.ts).
//
// What stays in TypeScript: everything that decides — handshakes, which sessions exist and when they rekey,
// routes, held packets of unknown destinations, signaling. The worker tells the engine about sessions
// (dpInstall/dpPromote/dpEndpoint); the engine tells the worker what it cannot handle (events: packets to
// destinations without a session, frames for the main thread).
//
// Sessions of a path (docs/PROTOCOL.md, "Rekey and limits"): `current` opens and (for the slot's path) seals;
// `previous` (the one current replaced) still opens stragglers; `cand` are a responder's answered but unconfirmed
// sessions, one per TunnelRequest it answered (the initiator keeps MAX_PENDING_REQUESTS outstanding requests and
// may complete with any of their responses, so the worker passes that number with each install). The first
// capsule that opens under a candidate makes it current (and the slot's send session, if the slot sends on that
// path); the other candidates are dropped. Each session carries its expiry on the engine's monotonic clock: it
// seals before seal_until and opens before open_until (a little later: the two ends derive the keys up to a
// handshake round trip apart). An expired send session is a miss (the worker asks for a new handshake); a capsule
// that authenticates only under an expired session is dropped and counted (expired).
//
// A responder's session is unconfirmed until a capsule opens under it: its TunnelResponse may still be on the way
// (or lost), so the initiator could not open what we seal. A slot whose send session is unconfirmed (a first
// session we answered, a new path, or the newest answer taking over an expired session) queues its packets (one
// bounded queue for the engine) and sends them, sealed, when the initiator's first capsule arrives — the initiator
// sends one at once — or after QUEUE_WAIT_MS without one.
//
// What the engine does per turn (dpTurn):
//   wait   poll(TUN, UDP, wake eventfd) — sleeps only when both queues are empty;
//   recv   recvmmsg (UDP GRO split) ─► capsule? path by id ─► replay window + AES-256-GCM open ─► TUN writes
//          (runs of one TCP flow, and with USO runs of equal-sized datagrams of one UDP flow, merged into GSO writes
//          with IFF_VNET_HDR); other frames of the protocol ─► events;
//   send   TUN reads (TSO segments and USO super-frames cut with vnet_segment) ─► peer by destination virtual IP ─►
//          seal ─► sendmmsg per run of capsules to one peer (UDP GSO).
// The send step follows the receive step in the same turn: a TUN write runs the local stack synchronously, so an
// echo reply or ACK is queued before it returns and leaves without another wake-up.
//
// Capsule (docs/PROTOCOL.md): header(version 1, type 0x40, status 0, txid 0, seq = counter, id = path id, length =
// ciphertext + tag, reserved 0) ‖ AES-256-GCM(packet) ‖ tag; nonce = 0^4 ‖ counter (u64 BE); AAD = the 28 header
// bytes. The replay window is the one of src/crypto/replay-window.ts (128 blocks of 32 bits; 4064 counters). The
// TypeScript DataSession seals and opens the same bytes (unit tests check one against the other).
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "batch_io.h"
#include "dataplane.h"
#include "filter.h"
#include "napi_util.h"
#include "offload.h"
#include "pmtu.h"

#define KEY_LEN 32
#define HDR_LEN 28
#define TAG_LEN 16
#define PROTOCOL_VERSION 1
#define TYPE_CAPSULE 0x40
#define OFF_SEQ 8
#define OFF_ID 16
#define OFF_LENGTH 24
#define OFF_RESERVED 26
// Largest packet one capsule carries (the u16 length field minus the tag).
#define MAX_PAYLOAD (65535 - TAG_LEN)
// Never seal past this counter (the nonce must not wrap; room for packets in flight), as REJECT_AFTER_MESSAGES.
#define SEND_LIMIT (UINT64_MAX - 8191)
#define REPLAY_BLOCKS 128
#define REPLAY_WINDOW ((uint64_t)(REPLAY_BLOCKS - 1) * 32)
// Most unconfirmed responder sessions one path can keep (the number kept comes with each dpInstall).
#define MAX_CANDIDATES 16
// Destinations per route table (open addressing, never deleted: virtual IPs are stable per peer slot).
#define ROUTE_CAP 4096
// TUN reads per turn: up to READ_BATCH, packed one after another into a buffer of read_batch slots of read_slot
// bytes (plain: a packet each; vnet: up to 64 KiB each, so a turn takes 8 TSO/USO super-frames, or 64 single
// packets — a UDP sender's datagrams come one per read, and 8 per turn cost a poll and a short GSO send per 8).
#define READ_BATCH 64
#define VNET_READ_BATCH 8
#define VNET_SLOT (65536 + 256)
// Packets one TSO segment may be cut into (gso_size down to ~410 bytes; smaller ones are dropped).
#define SEG_SLOTS 160
// Receive layout: BATCH slots of 4 KiB, or with UDP_GRO, buffers of a whole GRO packet (up to 64 datagrams each).
#define UDP_SLOT 4096
#define GRO_SLOT 65536
#define GRO_BUFFERS 16
#define EVENT_HEAD 24
// Packets held for slots whose send session is unconfirmed (one ring for the engine; the oldest go when full), and
// how long a session stays unconfirmed at most before the slot seals with it anyway.
#define QUEUE_PACKETS 256
#define QUEUE_WAIT_MS 1000

typedef enum { OPEN_MALFORMED = -1, OPEN_REPLAYED = -2, OPEN_TOO_OLD = -3, OPEN_BAD_TAG = -4, OPEN_EXPIRED = -5 } open_fail_t;

typedef struct session {
  int refs;
  EVP_CIPHER_CTX *enc;  // our send key, schedule set once; each seal only sets the IV
  EVP_CIPHER_CTX *dec;  // the peer's send key
  uint64_t path_id;
  uint64_t next;  // send counter
  uint64_t seal_until, open_until;  // engine clock (ms): seals before seal_until, opens before open_until
  uint64_t born;                    // engine clock at install
  bool confirmed;                   // the peer holds it: we initiated it, or a capsule opened under it
  bool started;   // replay window
  uint64_t highest;
  uint32_t bitmap[REPLAY_BLOCKS];
} session_t;

typedef struct {
  bool used;
  session_t *session;  // sealing with this one (NULL: none, or it expired)
  struct sockaddr_storage to;
  socklen_t tolen;
  // The peer's virtual addresses (from its certificate-checked Route Direction): the only inner sources we accept
  // from its paths (cryptokey routing: a peer cannot speak with another node's address).
  bool has4, has6;
  uint8_t vip4[4], vip6[16];
  pmtu_peer_t mtu;  // path MTU toward the peer (pmtu.h; dataplane_pmtu.inc)
} peer_t;

typedef struct {
  bool used;
  uint64_t id;
  int slot;
  session_t *current;               // opens; the slot seals with it when the slot sends on this path
  session_t *previous;              // the session current replaced: opens stragglers
  session_t *cand[MAX_CANDIDATES];  // a responder's answered, unconfirmed sessions, oldest first
  int ncand;
} path_t;

typedef struct {
  bool used;
  uint8_t key[16];
  int slot;
} route_t;

// Stats indexes into the shared Float64Array (src/node/dataplane/stats.ts), read by name at dpCreate.
typedef struct {
  int slot_width, rx_bytes, tx_bytes, rx_packets, tx_packets;
  int miss, send_err, bad_tag, replayed, too_old, malformed, tun_write_err, keepalive, unknown_path, tso_dropped;
  int expired, seal_expired, events_dropped, candidates_dropped, queued, queue_dropped, spoofed;
  int pmtu, gso_resegmented, tso_narrowed, icmp_sent, fragmented, mss_clamped, too_big_dropped, probes_answered, probe_acks;
  int uso_frames, tun_gso_writes;
} stat_idx_t;

typedef struct {
  int slot;  // -1: sent or dropped
  uint32_t len;
} queued_t;

typedef struct {
  bool closed;
  int tun, udp, wake;
  size_t mtu;
  bool vnet, gso, gro, uso;
  pmtu_query_t pq;
  double *stats;
  size_t nstats;
  napi_ref stats_ref;
  stat_idx_t ix;
  uint8_t to_main[256];
  int max_slots;
  peer_t *peers;
  route_t r4[ROUTE_CAP], r6[ROUTE_CAP];
  path_t *paths;
  size_t pcap, pcount;
  uint64_t now;  // engine clock: CLOCK_MONOTONIC ms, refreshed each turn and at each call from the worker
  // packets of slots whose send session is unconfirmed: ring of QUEUE_PACKETS entries of pkt_slot bytes
  queued_t q[QUEUE_PACKETS];
  uint8_t *qbuf;
  size_t qhead, qcount;
  // send step
  size_t pkt_slot, read_slot, read_batch;
  uint8_t *in;
  uint32_t in_lens[READ_BATCH], in_offs[READ_BATCH];
  uint8_t *seg;
  uint32_t seg_lens[SEG_SLOTS];
  size_t frame_room;
  uint8_t *out;
  struct iovec out_iov[MAX_SEND];
  size_t out_used;
  int nb;
  peer_t *batch_peer;
  double batch_bytes;
  // receive step
  size_t rslot, rbufs, rmax;
  uint8_t *rbuf, *rmetas;
  uint32_t *roffs, *rlens;
  size_t head;  // virtio_net_hdr room before each packet written to the TUN
  uint8_t *tbuf, *scratch;
  size_t tcap, tused, scap;
  uint8_t **tptrs;
  uint32_t *tlens;
  size_t nt, tmax;
  // a hard error of the TUN or a closed fd: dpTurn throws it (the worker stops) instead of polling a dead fd forever
  int fatal_errno;
  const char *fatal_call;
  filter_t *filter;  // the policy filter (filter.c), optional: dpCreate's `filter`
  // events for the worker (buffer of the current turn)
  uint8_t *ev;
  size_t evcap, evused;
  uint32_t nev;
} engine_t;

static const napi_type_tag ENGINE_TAG = {0x6379706f6e696331ULL, 0x64705f656e67696eULL};

/* ---------- sessions: seal, open, replay window ---------- */

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}
static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

static void session_unref(session_t *s) {
  if (s == NULL || --s->refs > 0) return;
  EVP_CIPHER_CTX_free(s->enc);  // cleanses the key schedules
  EVP_CIPHER_CTX_free(s->dec);
  free(s);
}

// The engine clock: monotonic milliseconds (the coarse clock: a vDSO read, a few ms of resolution).
static uint64_t clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static session_t *session_new(uint64_t path_id, const uint8_t *send_key, const uint8_t *recv_key, uint64_t seal_until, uint64_t open_until,
                              uint64_t born, bool confirmed) {
  session_t *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->refs = 1;
  s->born = born;
  s->confirmed = confirmed;
  s->path_id = path_id;
  s->seal_until = seal_until;
  s->open_until = open_until;
  s->enc = EVP_CIPHER_CTX_new();
  s->dec = EVP_CIPHER_CTX_new();
  if (s->enc == NULL || s->dec == NULL || EVP_EncryptInit_ex(s->enc, EVP_aes_256_gcm(), NULL, send_key, NULL) != 1 ||
      EVP_DecryptInit_ex(s->dec, EVP_aes_256_gcm(), NULL, recv_key, NULL) != 1) {
    session_unref(s);
    return NULL;
  }
  return s;
}

// Seals `len` bytes of `pkt` as a capsule frame at out (room for len + 44); its length, or -1 when the session's
// counter is exhausted or the packet too large (the worker rekeys long before).
static long seal(session_t *s, const uint8_t *pkt, size_t len, uint8_t *out) {
  if (len > MAX_PAYLOAD || s->next >= SEND_LIMIT) return -1;
  uint64_t n = s->next++;
  memset(out, 0, HDR_LEN);
  out[0] = PROTOCOL_VERSION;
  out[1] = TYPE_CAPSULE;
  put64(out + OFF_SEQ, n);
  put64(out + OFF_ID, s->path_id);
  out[OFF_LENGTH] = (uint8_t)((len + TAG_LEN) >> 8);
  out[OFF_LENGTH + 1] = (uint8_t)(len + TAG_LEN);
  uint8_t nonce[12] = {0};
  put64(nonce + 4, n);
  int l = 0;
  EVP_CIPHER_CTX *c = s->enc;
  if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, nonce) != 1 || EVP_EncryptUpdate(c, NULL, &l, out, HDR_LEN) != 1 ||
      (len > 0 && EVP_EncryptUpdate(c, out + HDR_LEN, &l, pkt, (int)len) != 1) ||
      EVP_EncryptFinal_ex(c, out + HDR_LEN + len, &l) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, out + HDR_LEN + len) != 1)
    return -1;
  return (long)(HDR_LEN + len + TAG_LEN);
}

static int replay_check(const session_t *s, uint64_t c) {
  if (!s->started || c > s->highest) return 0;
  if (s->highest - c >= REPLAY_WINDOW) return OPEN_TOO_OLD;
  return (s->bitmap[(c >> 5) & (REPLAY_BLOCKS - 1)] >> (c & 31)) & 1 ? OPEN_REPLAYED : 0;
}

static bool replay_update(session_t *s, uint64_t c) {
  if (!s->started || c > s->highest) {
    if (s->started) {
      uint64_t old_block = s->highest >> 5, advance = (c >> 5) - old_block;
      if (advance > REPLAY_BLOCKS) advance = REPLAY_BLOCKS;
      for (uint64_t i = 1; i <= advance; i++) s->bitmap[(old_block + i) & (REPLAY_BLOCKS - 1)] = 0;
    }
    s->started = true;
    s->highest = c;
  } else if (replay_check(s, c) != 0) {
    return false;
  }
  s->bitmap[(c >> 5) & (REPLAY_BLOCKS - 1)] |= 1u << (c & 31);
  return true;
}

// Opens capsule frame f (n bytes) into out (room for n - 44): the packet length, or an open_fail_t. The window
// moves only for capsules that authenticated; on a bad tag the output is wiped.
static long open_capsule(session_t *s, const uint8_t *f, size_t n, uint8_t *out) {
  if (n < HDR_LEN + TAG_LEN || f[0] != PROTOCOL_VERSION || f[1] != TYPE_CAPSULE || f[OFF_RESERVED] != 0 ||
      f[OFF_RESERVED + 1] != 0 || (((size_t)f[OFF_LENGTH] << 8) | f[OFF_LENGTH + 1]) != n - HDR_LEN ||
      get64(f + OFF_ID) != s->path_id)
    return OPEN_MALFORMED;
  uint64_t seq = get64(f + OFF_SEQ);
  int v = replay_check(s, seq);
  if (v != 0) return v;
  size_t len = n - HDR_LEN - TAG_LEN;
  uint8_t nonce[12] = {0}, tag[TAG_LEN];
  put64(nonce + 4, seq);
  memcpy(tag, f + n - TAG_LEN, TAG_LEN);
  int l = 0;
  EVP_CIPHER_CTX *c = s->dec;
  bool ok = EVP_DecryptInit_ex(c, NULL, NULL, NULL, nonce) == 1 && EVP_DecryptUpdate(c, NULL, &l, f, HDR_LEN) == 1 &&
            (len == 0 || EVP_DecryptUpdate(c, out, &l, f + HDR_LEN, (int)len) == 1) &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1 && EVP_DecryptFinal_ex(c, out + len, &l) == 1;
  if (!ok) {
    memset(out, 0, len);
    return OPEN_BAD_TAG;
  }
  if (!replay_update(s, seq)) return OPEN_REPLAYED;
  return (long)len;
}

/* ---------- tables: routes by virtual IP, paths by id ---------- */

static size_t hash_bytes(const uint8_t *k, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ k[i]) * 1099511628211ULL;
  return (size_t)(h ^ (h >> 29));
}

// The slot routed for destination key k (4 or 16 bytes), or -1.
static int route_find(const route_t *t, const uint8_t *k, size_t n) {
  for (size_t i = hash_bytes(k, n) & (ROUTE_CAP - 1), probes = 0; probes < ROUTE_CAP; i = (i + 1) & (ROUTE_CAP - 1), probes++) {
    if (!t[i].used) return -1;
    if (memcmp(t[i].key, k, n) == 0) return t[i].slot;
  }
  return -1;
}

static bool route_set(route_t *t, const uint8_t *k, size_t n, int slot) {
  for (size_t i = hash_bytes(k, n) & (ROUTE_CAP - 1), probes = 0; probes < ROUTE_CAP; i = (i + 1) & (ROUTE_CAP - 1), probes++) {
    if (!t[i].used || memcmp(t[i].key, k, n) == 0) {
      t[i].used = true;
      memset(t[i].key, 0, sizeof t[i].key);
      memcpy(t[i].key, k, n);
      t[i].slot = slot;
      return true;
    }
  }
  return false;
}

// Removes every destination routed to `slot` (backward-shift deletion keeps route_find's probe chains intact).
static void route_drop_slot(route_t *t, size_t n, int slot) {
  for (size_t i = 0; i < ROUTE_CAP;) {
    if (!t[i].used || t[i].slot != slot) {
      i++;
      continue;
    }
    size_t hole = i;
    t[hole].used = false;
    for (size_t j = (hole + 1) & (ROUTE_CAP - 1); t[j].used; j = (j + 1) & (ROUTE_CAP - 1)) {
      size_t home = hash_bytes(t[j].key, n) & (ROUTE_CAP - 1);
      bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
      if (stays) continue;
      t[hole] = t[j];
      t[j].used = false;
      hole = j;
    }
    // an entry may have shifted into i: look at i again (i never passes an unexamined entry)
  }
}

static path_t *path_find(engine_t *e, uint64_t id) {
  if (e->pcap == 0) return NULL;
  uint8_t k[8];
  put64(k, id);
  for (size_t i = hash_bytes(k, 8) & (e->pcap - 1);; i = (i + 1) & (e->pcap - 1)) {
    if (!e->paths[i].used) return NULL;
    if (e->paths[i].id == id) return &e->paths[i];
  }
}

// The entry for `id`, created (and the table grown at half load) if new; NULL when out of memory.
static path_t *path_get(engine_t *e, uint64_t id) {
  path_t *p = path_find(e, id);
  if (p != NULL) return p;
  if ((e->pcount + 1) * 2 > e->pcap) {
    size_t ncap = e->pcap ? e->pcap * 2 : 64;
    path_t *np = calloc(ncap, sizeof *np), *old = e->paths;
    if (np == NULL) return NULL;
    size_t ocap = e->pcap;
    e->paths = np;
    e->pcap = ncap;
    e->pcount = 0;
    for (size_t i = 0; i < ocap; i++) {
      if (!old[i].used) continue;
      path_t *q = path_get(e, old[i].id);
      *q = old[i];
    }
    free(old);
  }
  uint8_t k[8];
  put64(k, id);
  size_t i = hash_bytes(k, 8) & (e->pcap - 1);
  while (e->paths[i].used) i = (i + 1) & (e->pcap - 1);
  p = &e->paths[i];
  memset(p, 0, sizeof *p);
  p->used = true;
  p->id = id;
  e->pcount++;
  return p;
}

/* ---------- stats and events ---------- */

static inline void count(engine_t *e, int idx, double v) {
  if (idx >= 0 && (size_t)idx < e->nstats) e->stats[idx] += v;
}
static inline void count_slot(engine_t *e, int slot, int field, double v) {
  count(e, slot * e->ix.slot_width + field, v);
}

/* ---------- the sessions of a path ---------- */

static void queue_flush(engine_t *e, int slot);

// A capsule opened under s: the peer holds it. The slot's queued packets go if it seals with s.
static void confirmed(engine_t *e, int slot, session_t *s) {
  if (s->confirmed) return;
  s->confirmed = true;
  if (e->peers[slot].session == s) queue_flush(e, slot);
}

static void path_clear(path_t *p) {
  session_unref(p->current);
  session_unref(p->previous);
  for (int i = 0; i < p->ncand; i++) session_unref(p->cand[i]);
  p->current = p->previous = NULL;
  p->ncand = 0;
}

// Removes entry p (backward-shift deletion, so linear probing needs no tombstones). Entry pointers move.
static void path_remove(engine_t *e, path_t *p) {
  size_t mask = e->pcap - 1, i = (size_t)(p - e->paths);
  path_clear(p);
  memset(p, 0, sizeof *p);
  e->pcount--;
  for (size_t j = (i + 1) & mask; e->paths[j].used; j = (j + 1) & mask) {
    uint8_t k[8];
    put64(k, e->paths[j].id);
    size_t home = hash_bytes(k, 8) & mask;
    bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);  // home in (i, j]: cannot move to i
    if (stays) continue;
    e->paths[i] = e->paths[j];
    memset(&e->paths[j], 0, sizeof e->paths[j]);
    i = j;
  }
}

static bool dead(const engine_t *e, const session_t *s) {
  return s != NULL && e->now >= s->open_until;
}

// Frees every session past its open limit (wiping its keys) and forgets paths left without any, so the table
// holds only what can still open a capsule. Run at each install (O(table), installs are rare).
static void path_sweep(engine_t *e) {
  for (size_t i = 0; i < e->pcap;) {
    path_t *p = &e->paths[i];
    if (!p->used) {
      i++;
      continue;
    }
    if (dead(e, p->previous)) {
      session_unref(p->previous);
      p->previous = NULL;
    }
    int kept = 0;
    for (int c = 0; c < p->ncand; c++) {
      if (dead(e, p->cand[c])) session_unref(p->cand[c]);
      else p->cand[kept++] = p->cand[c];
    }
    p->ncand = kept;
    if ((p->current == NULL || dead(e, p->current)) && p->previous == NULL && p->ncand == 0) {
      path_remove(e, p);  // an entry may have shifted into i: look at i again
      continue;
    }
    i++;
  }
}

// Candidate idx opened a capsule: the initiator completed with it. It becomes current (the old current becomes
// previous), the other candidates go, and the slot seals with it if the slot sends on this path (or has nothing).
static void path_confirm(engine_t *e, path_t *path, int idx) {
  session_t *s = path->cand[idx];
  session_unref(path->previous);
  path->previous = path->current;
  path->current = s;  // the candidate's reference
  for (int i = 0; i < path->ncand; i++)
    if (i != idx) session_unref(path->cand[i]);
  path->ncand = 0;
  peer_t *p = &e->peers[path->slot];
  if (p->used && p->session != s && (p->session == NULL || p->session->path_id == path->id)) {
    session_unref(p->session);
    p->session = s;
    s->refs++;
  }
  confirmed(e, path->slot, s);
}

// The slot's send session, or NULL. One past its seal limit is let go (counted once); the newest unconfirmed
// candidate of its path (the answer to the peer's latest request, which it most likely holds) takes over if there
// is one, else there is none and the packet is a miss (the worker asks for a new handshake).
static session_t *send_session(engine_t *e, peer_t *p) {
  session_t *s = p->session;
  if (s == NULL || e->now < s->seal_until) return s;
  count(e, e->ix.seal_expired, 1);
  p->session = NULL;
  path_t *path = path_find(e, s->path_id);
  session_unref(s);
  if (path != NULL && path->ncand > 0 && e->now < path->cand[path->ncand - 1]->seal_until) {
    p->session = path->cand[path->ncand - 1];
    p->session->refs++;
  }
  return p->session;
}

// Opens capsule f under the path's sessions: current, candidates (newest first), previous. Counters of different
// sessions overlap, so a replay verdict of one says nothing about the others. Returns the packet length or the
// reason to count: expired if it authenticated only under an expired session, else the first reason that is not
// a bad tag, else a bad tag.
static long path_open(engine_t *e, path_t *path, const uint8_t *f, size_t n, uint8_t *out) {
  long best = OPEN_BAD_TAG;
  for (int t = 0; t < path->ncand + 2; t++) {
    int ci = -1;
    session_t *s;
    if (t == 0) s = path->current;
    else if (t <= path->ncand) s = path->cand[ci = path->ncand - t];
    else s = path->previous;
    if (s == NULL) continue;
    long r = open_capsule(s, f, n, out);
    if (r >= 0 && e->now >= s->open_until) {
      memset(out, 0, (size_t)r);
      r = OPEN_EXPIRED;
    } else if (r >= 0) {
      if (ci >= 0) path_confirm(e, path, ci);
      else confirmed(e, path->slot, s);
      return r;
    }
    if (r == OPEN_MALFORMED) return r;  // header checks: the same for every session of the path
    if (r == OPEN_EXPIRED || (best == OPEN_BAD_TAG && r != OPEN_BAD_TAG)) best = r;
  }
  return best;
}

// Appends an event: kind 1 = packet to a destination without a session (meta: family, address at [4..]),
// kind 2 = frame for the main thread (meta: its source, write_meta layout). Dropped when the buffer is full.
static void event(engine_t *e, uint8_t kind, const uint8_t meta[20], const uint8_t *data, size_t len) {
  if (e->ev == NULL || len > 65535 || e->evused + EVENT_HEAD + len > e->evcap) {
    count(e, e->ix.events_dropped, 1);
    return;
  }
  uint8_t *r = e->ev + e->evused;
  r[0] = kind;
  r[1] = 0;
  r[2] = (uint8_t)(len >> 8);
  r[3] = (uint8_t)len;
  memcpy(r + 4, meta, 20);
  memcpy(r + EVENT_HEAD, data, len);
  e->evused += EVENT_HEAD + len;
  e->nev++;
}

/* ---------- send step: TUN → capsules → UDP ---------- */

static void pmtu_resegmented(engine_t *e, int slot, int n);
static size_t dest_usable(engine_t *e, const uint8_t *pkt, size_t n);
static bool pmtu_too_big(engine_t *e, peer_t *p, session_t *s, const uint8_t *pkt, size_t n);

static void flush_batch(engine_t *e) {
  peer_t *p = e->batch_peer;
  if (p != NULL && e->nb > 0) {
    int reseg = 0;
    int n = udp_send_batch_ex(e->udp, e->out_iov, e->nb, &p->to, p->tolen, e->gso, &reseg);
    int slot = (int)(p - e->peers);
    if (reseg > 0) pmtu_resegmented(e, slot, reseg);
    if (n < e->nb) count(e, e->ix.send_err, e->nb - (n > 0 ? n : 0));
    count_slot(e, slot, e->ix.tx_bytes, e->batch_bytes);
    count_slot(e, slot, e->ix.tx_packets, n > 0 ? n : 0);
  }
  e->batch_peer = NULL;
  e->nb = 0;
  e->out_used = 0;
  e->batch_bytes = 0;
}

/* ---------- the queue of slots whose send session is unconfirmed ---------- */

static void emit(engine_t *e, peer_t *p, session_t *s, const uint8_t *pkt, size_t n);

static void enqueue(engine_t *e, int slot, const uint8_t *pkt, size_t n) {
  if (n > e->pkt_slot) return;
  if (e->qcount == QUEUE_PACKETS) {  // full: the oldest goes
    if (e->q[e->qhead].slot >= 0) count(e, e->ix.queue_dropped, 1);
    e->qhead = (e->qhead + 1) % QUEUE_PACKETS;
    e->qcount--;
  }
  size_t i = (e->qhead + e->qcount++) % QUEUE_PACKETS;
  e->q[i].slot = slot;
  e->q[i].len = (uint32_t)n;
  if (n > 0) memcpy(e->qbuf + i * e->pkt_slot, pkt, n);
  count(e, e->ix.queued, 1);
}

// Sends the slot's queued packets, in order, sealed with its send session (now confirmed).
static void queue_flush(engine_t *e, int slot) {
  peer_t *p = &e->peers[slot];
  session_t *s = p->session;
  if (s == NULL || e->qcount == 0) return;
  for (size_t k = 0; k < e->qcount; k++) {
    size_t i = (e->qhead + k) % QUEUE_PACKETS;
    if (e->q[i].slot != slot) continue;
    e->q[i].slot = -1;
    emit(e, p, s, e->qbuf + i * e->pkt_slot, e->q[i].len);
  }
  while (e->qcount > 0 && e->q[e->qhead].slot < 0) {
    e->qhead = (e->qhead + 1) % QUEUE_PACKETS;
    e->qcount--;
  }
  flush_batch(e);
}

// Whether the slot may seal with s now: s is confirmed, or waited QUEUE_WAIT_MS (then the queue goes first).
static bool ready(engine_t *e, int slot, session_t *s) {
  if (s->confirmed) return true;
  if (e->now < s->born + QUEUE_WAIT_MS) return false;
  s->confirmed = true;
  queue_flush(e, slot);
  return true;
}

// Routes one plain IP packet to its peer's batch, or reports it (kind 1) when no session serves its destination.
static void route_packet(engine_t *e, const uint8_t *pkt, size_t n) {
  uint8_t meta[20] = {0};
  int slot;
  if (n >= 20 && (pkt[0] >> 4) == 4) {
    meta[0] = 4;
    memcpy(meta + 4, pkt + 16, 4);
    slot = route_find(e->r4, pkt + 16, 4);
  } else if (n >= 40 && (pkt[0] >> 4) == 6) {
    meta[0] = 6;
    memcpy(meta + 4, pkt + 24, 16);
    slot = route_find(e->r6, pkt + 24, 16);
  } else {
    return;  // not IP: nothing to route
  }
  peer_t *p = slot >= 0 ? &e->peers[slot] : NULL;
  session_t *s = p != NULL ? send_session(e, p) : NULL;
  if (s == NULL) {
    count(e, e->ix.miss, 1);
    event(e, 1, meta, pkt, n);
    return;
  }
  if (e->filter != NULL && !filter_out(e->filter, slot, pkt, n, e->now)) return;  // records our flows; a revoked peer gets nothing
  if (pmtu_clamp_mss((uint8_t *)pkt, n, p->mtu.usable)) count(e, e->ix.mss_clamped, 1);
  if (!ready(e, slot, s)) {
    enqueue(e, slot, pkt, n);
    return;
  }
  if (p->mtu.usable && n > p->mtu.usable && pmtu_too_big(e, p, s, pkt, n)) return;
  emit(e, p, s, pkt, n);
}

// Seals one packet into the batch of peer p (sent by flush_batch).
static void emit(engine_t *e, peer_t *p, session_t *s, const uint8_t *pkt, size_t n) {
  if (p != e->batch_peer || e->nb == MAX_SEND || e->out_used + n + HDR_LEN + TAG_LEN > e->frame_room * MAX_SEND) {
    flush_batch(e);
    e->batch_peer = p;
  }
  long len = seal(s, pkt, n, e->out + e->out_used);
  if (len < 0) {
    count(e, e->ix.send_err, 1);  // session exhausted: the worker rekeys on time well before this
    return;
  }
  e->out_iov[e->nb].iov_base = e->out + e->out_used;
  e->out_iov[e->nb].iov_len = (size_t)len;
  e->nb++;
  e->out_used += (size_t)len;
  e->batch_bytes += (double)n;
}

// Reads one batch from the TUN (non-blocking) and sends it; returns how many reads it took.
static int send_step(engine_t *e) {
  size_t got = 0, used = 0, room = e->read_slot * e->read_batch;
  while (got < READ_BATCH && room - used >= e->read_slot) {
    uint8_t spill;
    uint8_t *dst = e->in + used;
    struct iovec iov[2] = {{.iov_base = dst, .iov_len = e->read_slot}, {.iov_base = &spill, .iov_len = 1}};
    ssize_t r = readv(e->tun, iov, 2);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {  // e.g. EBADFD: the interface was deleted under us
        e->fatal_errno = errno;
        e->fatal_call = "read (TUN)";
      }
      break;
    }
    if ((size_t)r > e->read_slot) continue;  // truncated: dropped
    e->in_offs[got] = (uint32_t)used;
    e->in_lens[got++] = (uint32_t)r;
    used += ((size_t)r + 7) & ~(size_t)7;
  }
  for (size_t i = 0; i < got; i++) {
    uint8_t *b = e->in + e->in_offs[i];
    size_t n = e->in_lens[i];
    if (!e->vnet) {
      route_packet(e, b, n);
      continue;
    }
    if (b[0] == 0 && b[1] == 0 && n > VNET_HDR_LEN && n - VNET_HDR_LEN <= e->pkt_slot) {
      route_packet(e, b + VNET_HDR_LEN, n - VNET_HDR_LEN);  // no GSO, no checksum to complete
      continue;
    }
    if ((b[1] & (uint8_t)~VNET_GSO_ECN) == VNET_GSO_UDP_L4) count(e, e->ix.uso_frames, 1);
    int narrowed = 0;
    int segs = vnet_segment_cap(b, n, e->seg, e->pkt_slot, SEG_SLOTS, e->seg_lens, dest_usable(e, b + VNET_HDR_LEN, n - VNET_HDR_LEN), &narrowed);
    if (narrowed) count(e, e->ix.tso_narrowed, 1);
    if (segs <= 0) {
      count(e, e->ix.tso_dropped, 1);
      continue;
    }
    for (int j = 0; j < segs; j++) route_packet(e, e->seg + (size_t)j * e->pkt_slot, e->seg_lens[j]);
  }
  flush_batch(e);
  return (int)got;
}

/* ---------- receive step: UDP → capsules opened → TUN ---------- */

static void flush_tun(engine_t *e) {
  if (e->nt == 0) return;
  size_t merged = 0;
  size_t w = tun_write_batch(e->tun, e->tptrs, e->tlens, e->nt, e->vnet, e->uso, e->scratch, e->scap, &merged);
  if (w < e->nt) count(e, e->ix.tun_write_err, (double)(e->nt - w));
  if (merged > 0) count(e, e->ix.tun_gso_writes, (double)merged);
  e->nt = 0;
  e->tused = 0;
}

// dpPromote: the slot seals with the newest candidate of the path it sends on, or its unconfirmed send session, now.
static void promote(engine_t *e, int slot) {
  peer_t *p = &e->peers[slot];
  if (!p->used || p->session == NULL) return;
  path_t *path = path_find(e, p->session->path_id);
  if (path != NULL && path->ncand > 0) path_confirm(e, path, path->ncand - 1);
  else confirmed(e, slot, p->session);  // an answered session of a new path: send on it now, queue first
}

// The inner packet's source is one of the virtual addresses of the peer the path belongs to.
static bool source_is_peer(const engine_t *e, int slot, const uint8_t *pkt, size_t n) {
  if (slot < 0) return false;
  const peer_t *p = &e->peers[slot];
  if (n >= 20 && (pkt[0] >> 4) == 4) return p->has4 && memcmp(pkt + 12, p->vip4, 4) == 0;
  if (n >= 40 && (pkt[0] >> 4) == 6) return p->has6 && memcmp(pkt + 8, p->vip6, 16) == 0;
  return false;
}

static void pmtu_control(engine_t *e, int slot, const uint8_t *m, size_t n);

static void receive_one(engine_t *e, const uint8_t *f, size_t n, const uint8_t *meta) {
  if (n >= HDR_LEN && f[1] == TYPE_CAPSULE) {
    path_t *path = path_find(e, get64(f + OFF_ID));
    if (path == NULL) {
      count(e, e->ix.unknown_path, 1);
      return;
    }
    if (e->nt == e->tmax || e->tused + e->head + n > e->tcap) flush_tun(e);
    uint8_t *at = e->tbuf + e->tused + e->head;
    long r = path_open(e, path, f, n, at);
    if (r < 0) {
      count(e, r == OPEN_REPLAYED ? e->ix.replayed : r == OPEN_TOO_OLD ? e->ix.too_old : r == OPEN_BAD_TAG ? e->ix.bad_tag
                   : r == OPEN_EXPIRED ? e->ix.expired : e->ix.malformed, 1);
      return;
    }
    if (r == 0) {
      count(e, e->ix.keepalive, 1);
      return;
    }
    if (at[0] == PMTU_CTL_MAGIC && r >= PMTU_CTL_LEN && (at[1] == PMTU_CTL_PROBE || at[1] == PMTU_CTL_ACK)) {
      pmtu_control(e, path->slot, at, (size_t)r);
      return;
    }
    if (!source_is_peer(e, path->slot, at, (size_t)r)) {
      count(e, e->ix.spoofed, 1);  // authentic capsule, inner source not the peer's: never reaches the TUN
      return;
    }
    if (e->filter != NULL && !filter_in(e->filter, path->slot, at, (size_t)r, e->now)) return;  // the policy (counted there)
    if (pmtu_clamp_mss(at, (size_t)r, e->peers[path->slot].mtu.usable)) count(e, e->ix.mss_clamped, 1);
    e->tptrs[e->nt] = at;
    e->tlens[e->nt] = (uint32_t)r;
    e->nt++;
    e->tused = (size_t)(at - e->tbuf) + (size_t)r;
    count_slot(e, path->slot, e->ix.rx_bytes, (double)r);
    count_slot(e, path->slot, e->ix.rx_packets, 1);
    return;
  }
  if (n < HDR_LEN || f[0] != PROTOCOL_VERSION || !e->to_main[f[1]]) {
    count(e, e->ix.malformed, 1);  // garbage costs a counter here, not a message to the main thread
    return;
  }
  event(e, 2, meta, f, n);
}

static int receive_step(engine_t *e) {
  int got = udp_recv_batch(e->udp, e->rbuf, e->rslot, e->rbufs, e->roffs, e->rlens, e->rmetas, NULL, e->rmax);
  for (int i = 0; i < got; i++) {
    if (e->rlens[i] == 0) {
      count(e, e->ix.malformed, 1);  // truncated: larger than any datagram we send
      continue;
    }
    receive_one(e, e->rbuf + e->roffs[i], e->rlens[i], e->rmetas + (size_t)i * 20);
  }
  flush_tun(e);
  return got > 0 ? got : 0;
}

/* ---------- the turn ---------- */

// poll over TUN, UDP and the wake eventfd: bits 1 TUN, 2 UDP, 4 wake (drained); 0 on timeout. (A bounded busy
// poll after sends was measured and dropped: on the 2-vCPU test VM it took the CPU the peer needed, bench/rtt.ts.)
static int wait_any_fd(engine_t *e, int timeout_ms) {
  struct pollfd p[3] = {{.fd = e->tun, .events = POLLIN}, {.fd = e->udp, .events = POLLIN}, {.fd = e->wake, .events = POLLIN}};
  int rc = poll(p, 3, timeout_ms);
  if (rc <= 0) return 0;
  if ((p[0].revents | p[1].revents | p[2].revents) & POLLNVAL) {
    e->fatal_errno = EBADF;
    e->fatal_call = "poll";
    return 0;
  }
  int bits = 0;
  if (p[0].revents) bits |= 1;
  if (p[1].revents) bits |= 2;
  if (p[2].revents & POLLIN) {
    uint64_t v;
    ssize_t r = read(e->wake, &v, sizeof v);
    (void)r;
    bits |= 4;
  }
  return bits;
}

#include "dataplane_pmtu.inc"

/* ---------- N-API ---------- */

static void engine_free(engine_t *e) {
  if (e->closed) return;
  e->closed = true;
  for (int i = 0; i < e->max_slots; i++) session_unref(e->peers[i].session);
  for (size_t i = 0; i < e->pcap; i++)
    if (e->paths[i].used) path_clear(&e->paths[i]);
  free(e->paths);
  free(e->peers);
  free(e->in);
  free(e->seg);
  free(e->out);
  free(e->rbuf);
  free(e->rmetas);
  free(e->roffs);
  free(e->rlens);
  free(e->tbuf);
  free(e->scratch);
  free(e->tptrs);
  free(e->tlens);
  free(e->qbuf);
  pmtu_query_close(&e->pq);
  e->paths = NULL;
  e->pcap = e->pcount = 0;
}

static void engine_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  engine_t *e = data;
  engine_free(e);
  if (e->stats_ref) napi_delete_reference(env, e->stats_ref);
  free(e);
}

static engine_t *get_engine_any(napi_env env, napi_value v, bool allow_closed) {
  bool ok = false;
  void *data = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_check_object_type_tag(env, v, &ENGINE_TAG, &ok) != napi_ok ||
      !ok || napi_get_value_external(env, v, &data) != napi_ok) {
    arg_error(env, 0, "not a data-plane engine handle");
    return NULL;
  }
  engine_t *e = data;
  if (e->closed && !allow_closed) {
    napi_throw_error(env, "ERR_CLOSED", "data-plane engine was destroyed");
    return NULL;
  }
  return e;
}

static engine_t *get_engine(napi_env env, napi_value v) {
  return get_engine_any(env, v, false);
}

static int prop_int(napi_env env, napi_value obj, const char *key, int64_t lo, int64_t hi, int64_t *out) {
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return 0;
  return get_int(env, v, lo, hi, out, key);
}

static int get_object(napi_env env, napi_value v, const char *what) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) == napi_ok && t == napi_object) return 1;
  char msg[96];
  snprintf(msg, sizeof msg, "%s must be an object", what);
  return arg_error(env, 0, msg);
}

static int prop_bool(napi_env env, napi_value obj, const char *key, bool *out) {
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_get_value_bool(env, v, out) != napi_ok) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a boolean", key);
    return arg_error(env, 0, msg);
  }
  return 1;
}

// dpCreate({ tunFd, udpFd, wakeFd, mtu, vnet, gso, gro, maxSlots, stats: Float64Array, statIndex: {...},
//            toMain: Uint8Array(256) }) -> engine handle. statIndex names the shared counters' positions: slotWidth,
// rxBytes, txBytes, rxPackets, txPackets (per-slot offsets) and the absolute indexes miss, udpSendErrors, badTag,
// replayed, tooOld, malformed, tunWriteErrors, keepaliveCapsules, unknownPath, tsoDropped, expired, sealExpired,
// eventsDropped, candidatesDropped, queued, queueDropped, spoofed, pmtu, gsoResegmented, tsoNarrowed, pmtuIcmpSent,
// pmtuFragmented, mssClamped, pmtuTooBigDropped, pmtuProbesAnswered, pmtuProbeAcks, usoFrames, tunGsoWrites.
// toMain[type] != 0 marks the message types handed to the worker as events. uso (optional): the TUN took USO, so
// datagrams of one UDP flow may be merged into one TUN write. The TUN fd must be non-blocking.
static napi_value dp_create(napi_env env, napi_callback_info info) {
  napi_value argv[1], sv, iv, tv, ext;
  int64_t tun, udp, wake, mtu, slots;
  bool vnet, gso, gro;
  if (!get_args(env, info, 1, argv) || !prop_int(env, argv[0], "tunFd", 0, INT_MAX, &tun) ||
      !prop_int(env, argv[0], "udpFd", 0, INT_MAX, &udp) || !prop_int(env, argv[0], "wakeFd", 0, INT_MAX, &wake) ||
      !prop_int(env, argv[0], "mtu", 576, 65535, &mtu) || !prop_int(env, argv[0], "maxSlots", 1, 65536, &slots) ||
      !prop_bool(env, argv[0], "vnet", &vnet) || !prop_bool(env, argv[0], "gso", &gso) || !prop_bool(env, argv[0], "gro", &gro))
    return NULL;
  napi_typedarray_type type;
  size_t nstats = 0, tmlen = 0;
  void *sdata = NULL;
  uint8_t *tm;
  if (napi_get_named_property(env, argv[0], "stats", &sv) != napi_ok ||
      napi_get_typedarray_info(env, sv, &type, &nstats, &sdata, NULL, NULL) != napi_ok || type != napi_float64_array) {
    arg_error(env, 0, "stats must be a Float64Array");
    return NULL;
  }
  if (napi_get_named_property(env, argv[0], "toMain", &tv) != napi_ok || !get_bytes(env, tv, &tm, &tmlen, "toMain")) return NULL;
  if (tmlen != 256) {
    arg_error(env, 1, "toMain must have 256 entries");
    return NULL;
  }
  if (napi_get_named_property(env, argv[0], "statIndex", &iv) != napi_ok) return NULL;
  static const char *names[] = {"slotWidth", "rxBytes", "txBytes", "rxPackets", "txPackets", "miss", "udpSendErrors",
                                "badTag", "replayed", "tooOld", "malformed", "tunWriteErrors", "keepaliveCapsules",
                                "unknownPath", "tsoDropped", "expired", "sealExpired", "eventsDropped",
                                "candidatesDropped", "queued", "queueDropped", "spoofed", "pmtu", "gsoResegmented", "tsoNarrowed",
                                "pmtuIcmpSent", "pmtuFragmented", "mssClamped", "pmtuTooBigDropped", "pmtuProbesAnswered",
                                "pmtuProbeAcks", "usoFrames", "tunGsoWrites"};
  int64_t idx[sizeof names / sizeof names[0]];
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!prop_int(env, iv, names[i], 0, INT_MAX, &idx[i])) return NULL;

  engine_t *e = calloc(1, sizeof *e);
  if (e == NULL) {
    throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  e->tun = (int)tun;
  e->udp = (int)udp;
  e->wake = (int)wake;
  e->mtu = (size_t)mtu;
  e->vnet = vnet;
  e->gso = gso;
  e->gro = gro;
  // uso (optional, default false): the TUN took USO, so runs of one UDP flow may be written as one USO packet.
  napi_value uv;
  napi_valuetype ut;
  if (napi_get_named_property(env, argv[0], "uso", &uv) == napi_ok && napi_typeof(env, uv, &ut) == napi_ok && ut == napi_boolean)
    napi_get_value_bool(env, uv, &e->uso);
  e->uso = e->uso && vnet;
  e->stats = sdata;
  e->nstats = nstats;
  memcpy(e->to_main, tm, 256);
  e->ix = (stat_idx_t){(int)idx[0],  (int)idx[1],  (int)idx[2],  (int)idx[3],  (int)idx[4],  (int)idx[5],
                       (int)idx[6],  (int)idx[7],  (int)idx[8],  (int)idx[9],  (int)idx[10], (int)idx[11],
                       (int)idx[12], (int)idx[13], (int)idx[14], (int)idx[15], (int)idx[16], (int)idx[17], (int)idx[18],
                       (int)idx[19], (int)idx[20], (int)idx[21], (int)idx[22], (int)idx[23], (int)idx[24],
                       (int)idx[25], (int)idx[26], (int)idx[27], (int)idx[28], (int)idx[29], (int)idx[30],
                       (int)idx[31], (int)idx[32]};
  pmtu_query_init(&e->pq);
  e->max_slots = (int)slots;
  e->pkt_slot = e->mtu + 64;
  e->read_slot = vnet ? VNET_SLOT : e->pkt_slot;
  e->read_batch = vnet ? VNET_READ_BATCH : READ_BATCH;
  e->frame_room = e->pkt_slot + 64;
  e->rslot = gro ? GRO_SLOT : UDP_SLOT;
  e->rbufs = gro ? GRO_BUFFERS : MAX_BATCH;
  e->rmax = gro ? GRO_BUFFERS * GRO_MAX_SEGS : MAX_BATCH;
  e->head = vnet ? VNET_HDR_LEN : 0;
  e->tmax = e->rmax;
  e->tcap = e->rmax * (e->pkt_slot + e->head) + GRO_SLOT;
  e->scap = GRO_SLOT + 64;
  e->peers = calloc((size_t)slots, sizeof *e->peers);
  e->in = malloc(e->read_slot * e->read_batch);
  e->seg = malloc(e->pkt_slot * SEG_SLOTS);
  e->out = malloc(e->frame_room * MAX_SEND);
  e->rbuf = malloc(e->rslot * e->rbufs);
  e->rmetas = malloc(20 * e->rmax);
  e->roffs = malloc(sizeof(uint32_t) * e->rmax);
  e->rlens = malloc(sizeof(uint32_t) * e->rmax);
  e->tbuf = malloc(e->tcap);
  e->scratch = malloc(e->scap);
  e->tptrs = malloc(sizeof(uint8_t *) * e->tmax);
  e->tlens = malloc(sizeof(uint32_t) * e->tmax);
  e->qbuf = malloc(e->pkt_slot * QUEUE_PACKETS);
  if (!e->qbuf || !e->peers || !e->in || !e->seg || !e->out || !e->rbuf || !e->rmetas || !e->roffs || !e->rlens || !e->tbuf ||
      !e->scratch || !e->tptrs || !e->tlens || napi_create_reference(env, sv, 1, &e->stats_ref) != napi_ok) {
    engine_free(e);
    free(e);
    throw_errno(env, "malloc", ENOMEM);
    return NULL;
  }
  if (napi_create_external(env, e, engine_finalize, NULL, &ext) != napi_ok) {
    engine_finalize(env, e, NULL);
    return NULL;
  }
  napi_type_tag_object(env, ext, &ENGINE_TAG);
  napi_value fv;  // optional policy filter (filterCreate); the caller keeps it alive while the engine runs
  if (napi_get_named_property(env, argv[0], "filter", &fv) == napi_ok) e->filter = filter_from_value(env, fv);
  return ext;
}

// Optional address argument: null/undefined -> 0 bytes, else a Uint8Array of exactly `want` bytes.
static int get_opt_addr(napi_env env, napi_value v, size_t want, uint8_t **out, size_t *len, const char *what) {
  napi_valuetype t;
  *len = 0;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t == napi_null || t == napi_undefined) return 1;
  if (!get_bytes(env, v, out, len, what)) return 0;
  if (*len != want) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be %zu bytes", what, want);
    return arg_error(env, 1, msg);
  }
  return 1;
}

static int get_slot(napi_env env, engine_t *e, napi_value v, int64_t *slot) {
  return get_int(env, v, 0, e->max_slots - 1, slot, "slot");
}

static int get_endpoint(napi_env env, napi_value a, napi_value p, struct sockaddr_storage *ss, socklen_t *sl) {
  uint8_t *addr;
  size_t alen;
  int64_t port;
  if (!get_bytes(env, a, &addr, &alen, "addr") || !get_int(env, p, 1, 65535, &port, "port")) return 0;
  if (alen != 4 && alen != 16) return arg_error(env, 1, "addr must be 4 or 16 bytes");
  *sl = fill_sockaddr(ss, addr, alen, port);
  return 1;
}

// Seals one packet on the slot's session and sends it at once (outside a batch); whether it went.
static bool send_single(engine_t *e, int slot, const uint8_t *pkt, size_t n) {
  peer_t *p = &e->peers[slot];
  session_t *s = p->used ? send_session(e, p) : NULL;
  if (s == NULL) return false;
  if (e->filter != NULL && !filter_out(e->filter, slot, pkt, n, e->now)) return false;
  if (!ready(e, slot, s)) {
    enqueue(e, slot, pkt, n);
    return true;
  }
  uint8_t *buf = e->out;  // the batch buffer is empty between turns
  long len = seal(s, pkt, n, buf);
  if (len < 0) {
    count(e, e->ix.send_err, 1);
    return false;
  }
  ssize_t r;
  do r = sendto(e->udp, buf, (size_t)len, 0, (struct sockaddr *)&p->to, p->tolen);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    count(e, e->ix.send_err, 1);
    return false;
  }
  count_slot(e, slot, e->ix.tx_bytes, (double)n);
  count_slot(e, slot, e->ix.tx_packets, 1);
  return true;
}

// dpInstall(h, slot, pathId: 8 bytes BE, sendKey, recvKey, initiator, receiveOnly, vip4: 4 bytes|null,
// vip6: 16 bytes|null, addr: 4|16 bytes, port, { sealForMs, openForMs, candidates }). The session seals for
// sealForMs from now and opens for openForMs (≥ sealForMs). The receive side first: a session we initiated (the
// peer holds its keys) or the path's first one becomes the path's current at once (the old current becomes
// previous, candidates go); a responder's further session joins the path's candidates (the newest `candidates`
// are kept: one per outstanding request of the initiator) until a capsule under it arrives. Then, unless
// receiveOnly, the send side: a session we initiated, a first session, one of another path, or any session when
// the slot's current one has expired, is sent on at once and announced with an empty capsule; a responder's
// rekey of the path the slot sends on waits until the initiator is seen using it. Routes the virtual IPs to the
// slot. Sessions past their open limit are wiped first, and paths left without any are forgotten.
static napi_value dp_install(napi_env env, napi_callback_info info) {
  napi_value argv[12];
  uint8_t *pid, *sk, *rk, *v4 = NULL, *v6 = NULL;
  size_t pl, skl, rkl, v4l, v6l;
  int64_t slot, seal_ms, open_ms, keep;
  bool initiator = false, receive_only = false;
  struct sockaddr_storage ss;
  socklen_t sl;
  if (!get_args(env, info, 12, argv)) return NULL;
  engine_t *e = get_engine(env, argv[0]);
  if (e == NULL || !get_slot(env, e, argv[1], &slot) || !get_bytes(env, argv[2], &pid, &pl, "pathId") ||
      !get_bytes(env, argv[3], &sk, &skl, "sendKey") || !get_bytes(env, argv[4], &rk, &rkl, "recvKey") ||
      napi_get_value_bool(env, argv[5], &initiator) != napi_ok || napi_get_value_bool(env, argv[6], &receive_only) != napi_ok ||
      !get_opt_addr(env, argv[7], 4, &v4, &v4l, "vip4") || !get_opt_addr(env, argv[8], 16, &v6, &v6l, "vip6") ||
      !get_endpoint(env, argv[9], argv[10], &ss, &sl) || !get_object(env, argv[11], "dpInstall limits") ||
      !prop_int(env, argv[11], "sealForMs", 0, INT64_C(1) << 40, &seal_ms) ||
      !prop_int(env, argv[11], "openForMs", 0, INT64_C(1) << 40, &open_ms) ||
      !prop_int(env, argv[11], "candidates", 1, MAX_CANDIDATES, &keep))
    return NULL;
  if (pl != 8 || skl != KEY_LEN || rkl != KEY_LEN || open_ms < seal_ms) {
    arg_error(env, 1, "dpInstall: pathId must be 8 bytes, keys 32 bytes, and openForMs >= sealForMs");
    return NULL;
  }
  uint64_t id = get64(pid);
  e->now = clock_ms();
  path_sweep(e);
  session_t *fresh = session_new(id, sk, rk, e->now + (uint64_t)seal_ms, e->now + (uint64_t)open_ms, e->now, initiator);
  path_t *path = fresh ? path_get(e, id) : NULL;
  if (path == NULL) {
    session_unref(fresh);
    napi_throw_error(env, "ERR_CRYPTO", "dpInstall: out of memory or OpenSSL context setup failed");
    return NULL;
  }
  path->slot = (int)slot;
  peer_t *pv = &e->peers[slot];
  if (v4) {
    memcpy(pv->vip4, v4, 4);
    pv->has4 = true;
  }
  if (v6) {
    memcpy(pv->vip6, v6, 16);
    pv->has6 = true;
  }
  if (initiator || path->current == NULL) {
    session_unref(path->previous);
    path->previous = path->current;
    path->current = fresh;  // the path's reference
    for (int i = 0; i < path->ncand; i++) session_unref(path->cand[i]);
    path->ncand = 0;
  } else {
    while (path->ncand >= keep) {  // the oldest answer goes: the initiator no longer holds its request
      session_unref(path->cand[0]);
      memmove(&path->cand[0], &path->cand[1], sizeof(session_t *) * (size_t)(path->ncand - 1));
      path->ncand--;
      count(e, e->ix.candidates_dropped, 1);
    }
    path->cand[path->ncand++] = fresh;  // the path's reference
  }
  if (receive_only) return NULL;
  peer_t *p = &e->peers[slot];
  bool waits = !initiator && p->used && p->session != NULL && p->session->path_id == id && e->now < p->session->seal_until &&
               path->current != fresh;
  p->used = true;
  p->to = ss;
  p->tolen = sl;
  pmtu_refresh(e, (int)slot);
  if (!waits) {
    session_unref(p->session);
    p->session = fresh;
    fresh->refs++;  // the peer's reference
    // We initiated it: announce it (the peer may switch at once) and send what waited for a confirmed session.
    // We answered it: the slot's packets wait until the initiator is seen using it (queue).
    if (initiator) {
      send_single(e, (int)slot, NULL, 0);
      queue_flush(e, (int)slot);
    }
  }
  if ((v4 && !route_set(e->r4, v4, 4, (int)slot)) || (v6 && !route_set(e->r6, v6, 16, (int)slot))) {
    napi_throw_range_error(env, "ERR_NATIVE_ARG", "dpInstall: route table full");
    return NULL;
  }
  return NULL;
}

// dpRemove(h, slot): the peer in `slot` is forgotten so the slot can serve another: its paths (and every session
// on them, keys wiped), its routes, its held packets and its counters go. Capsules on its paths then count as
// unknownPath; packets to its virtual addresses are misses.
static napi_value dp_remove(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t slot;
  if (!get_args(env, info, 2, argv)) return NULL;
  engine_t *e = get_engine(env, argv[0]);
  if (e == NULL || !get_slot(env, e, argv[1], &slot)) return NULL;
  for (size_t i = 0; i < e->pcap;) {
    if (e->paths[i].used && e->paths[i].slot == (int)slot) path_remove(e, &e->paths[i]);  // may shift another into i
    else i++;
  }
  route_drop_slot(e->r4, 4, (int)slot);
  route_drop_slot(e->r6, 16, (int)slot);
  for (size_t i = 0; i < QUEUE_PACKETS; i++)
    if (e->q[i].slot == (int)slot) e->q[i].slot = -1;
  while (e->qcount > 0 && e->q[e->qhead].slot < 0) {
    e->qhead = (e->qhead + 1) % QUEUE_PACKETS;
    e->qcount--;
  }
  if (e->batch_peer == &e->peers[slot]) flush_batch(e);
  peer_t *p = &e->peers[slot];
  session_unref(p->session);
  memset(p, 0, sizeof *p);
  for (int f = 0; f < e->ix.slot_width; f++) {
    size_t at = (size_t)slot * (size_t)e->ix.slot_width + (size_t)f;
    if (at < e->nstats) e->stats[at] = 0;
  }
  return NULL;
}

// dpPromote(h, slot): the slot seals with the newest unconfirmed session of the path it sends on, now.
static napi_value dp_promote(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t slot;
  if (!get_args(env, info, 2, argv)) return NULL;
  engine_t *e = get_engine(env, argv[0]);
  if (e == NULL || !get_slot(env, e, argv[1], &slot)) return NULL;
  e->now = clock_ms();
  promote(e, (int)slot);
  return NULL;
}

// dpEndpoint(h, slot, addr, port): the peer moved (or we did and use another of its addresses); same session.
static napi_value dp_endpoint(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int64_t slot;
  struct sockaddr_storage ss;
  socklen_t sl;
  if (!get_args(env, info, 4, argv)) return NULL;
  engine_t *e = get_engine(env, argv[0]);
  if (e == NULL || !get_slot(env, e, argv[1], &slot) || !get_endpoint(env, argv[2], argv[3], &ss, &sl)) return NULL;
  peer_t *p = &e->peers[slot];
  if (p->used) {
    p->to = ss;
    p->tolen = sl;
    p->mtu.plpmtu = 0;  // a new path: what probes found on the old one no longer holds (the worker probes again)
    pmtu_refresh(e, (int)slot);
  }
  return NULL;
}

// dpSend(h, slot, packet) -> whether it was sealed and sent on the slot's session (held packets, once a session came).
static napi_value dp_send(napi_env env, napi_callback_info info) {
  napi_value argv[3], r;
  int64_t slot;
  uint8_t *pkt;
  size_t n;
  if (!get_args(env, info, 3, argv)) return NULL;
  engine_t *e = get_engine(env, argv[0]);
  if (e == NULL || !get_slot(env, e, argv[1], &slot) || !get_bytes(env, argv[2], &pkt, &n, "packet")) return NULL;
  e->now = clock_ms();
  if (n > e->pkt_slot) {
    arg_error(env, 1, "dpSend: packet larger than the MTU slot");
    return NULL;
  }
  napi_get_boolean(env, send_single(e, (int)slot, pkt, n), &r);
  return r;
}

// dpTurn(h, timeoutMs, events: Uint8Array) -> bits | moved << 3 | eventCount << 4. Runs turns (wait, receive step,
// send step) until the worker has something to do: events to handle, the wake eventfd signalled (a control message
// is waiting), a wait that timed out, or TURNS_PER_CALL busy turns. So a steady exchange of packets runs in C
// alone, without a call into JavaScript per packet. bits says what the waits saw (1 TUN, 2 UDP, 4 wake eventfd;
// 0 = nothing before the timeout), moved (8) that packets went through. Events are records [kind u8, 0, length u16 BE,
// meta 20 bytes, data]: kind 1 = a packet to a destination without a session (meta[0] = 4|6, address at
// meta[4..]), kind 2 = a frame for the main thread (meta = its source as udpRecvMany reports it). Throws (errno
// error) when the TUN fails for good (deleted interface) or an fd was closed, rather than spin on a dead fd.
#define TURNS_PER_CALL 64
static napi_value dp_turn(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int64_t timeout;
  if (!get_args(env, info, 3, argv)) return NULL;
  engine_t *e = get_engine(env, argv[0]);
  if (e == NULL || !get_int(env, argv[1], -1, INT_MAX, &timeout, "timeoutMs") || !get_bytes(env, argv[2], &e->ev, &e->evcap, "events"))
    return NULL;
  e->evused = 0;
  e->nev = 0;
  int seen = 0, moved = 0;
  for (int turn = 0; turn < TURNS_PER_CALL; turn++) {
    int bits = wait_any_fd(e, (int)timeout);
    e->now = clock_ms();
    seen |= bits;
    if (bits & 2) moved += receive_step(e);
    // Always after a receive: its TUN writes may have queued replies (ICMP, TCP ACKs) to take in this turn.
    if (bits & 3) moved += send_step(e);
    if (e->fatal_errno) {
      throw_errno(env, e->fatal_call, e->fatal_errno);
      e->ev = NULL;
      return NULL;
    }
    if (bits == 0 || (bits & 4) || e->nev > 0) break;
  }
  uint32_t nev = e->nev;
  e->ev = NULL;
  e->evcap = 0;
  return num(env, (double)((uint32_t)seen | (moved > 0 ? 8u : 0u)) + (double)nev * 16);
}

// dpDestroy(h): frees the sessions (wiping their keys) and buffers now; the handle then throws ERR_CLOSED (except
// here: destroying twice is fine).
static napi_value dp_destroy(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  engine_t *e = get_engine_any(env, argv[0], true);
  if (e != NULL) engine_free(e);
  return NULL;
}

// Registers the dp* functions on the addon's exports (called from cyphonic_native.c's module init).
bool dataplane_register(napi_env env, napi_value exports) {
  static const export_fn fns[] = {{"dpCreate", dp_create}, {"dpInstall", dp_install}, {"dpPromote", dp_promote}, {"dpEndpoint", dp_endpoint},
             {"dpSend", dp_send},     {"dpTurn", dp_turn},       {"dpDestroy", dp_destroy},
             {"dpPmtu", dp_pmtu},     {"dpProbe", dp_probe},     {"dpRemove", dp_remove}};
  return export_fns(env, exports, fns, sizeof fns / sizeof fns[0]);
}
