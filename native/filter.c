// The policy filter of the data-plane engine: every packet that arrives from a tunnel (after it opened and its inner
// source was checked to be the peer's virtual address) passes here before the TUN. The rules per peer slot come from
// the NMS (a Route Direction's `allowIn`: the ports that peer may open new flows to us on), set by the worker with
// filterSet; a slot never set passes everything (no policy information). Packets pass when
//   - the slot allows everything ("*"), or
//   - they answer a flow this node opened: the send path records outgoing flows (filter_out: a TCP SYN, any UDP
//     datagram, an ICMP echo request) in a bounded hash table keyed by (slot, family, protocol, our port, their port)
//     — ICMP echo by identifier, an ICMP error by the packet it quotes — and an entry lives on while packets use it
//     (TCP 30 min, UDP 2 min, ICMP 30 s), or
//   - they open a new flow the slot's rules allow: "icmp" (echo requests and other ICMP), tcp/udp destination port
//     ranges.
// Everything else is dropped and counted by reason in a Float64Array the main thread reads (FILTER_STATS below).
// A revoked peer's slot is blocked: nothing from it passes and nothing is sent to it (filter_out says drop).
// IPv4 fragments after the first and IPv6 fragments with a non-zero offset carry no ports: dropped unless the slot
// allows everything. Costs per packet: a header walk and one probe sequence of a 64 K-entry table.
#include "filter.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "napi_util.h"

#define FLOW_CAP 65536  // power of two
#define FLOW_PROBES 16
#define MAX_RANGES 512
#define TTL_TCP_MS (30ULL * 60 * 1000)
#define TTL_UDP_MS (120ULL * 1000)
#define TTL_ICMP_MS (30ULL * 1000)

// Counter indexes in the stats array (src/node/dataplane/filter.ts FILTER_STATS mirrors them).
enum { ST_PASS_RULE, ST_PASS_REPLY, ST_PASS_ANY, ST_DROP_NO_RULE, ST_DROP_FRAGMENT, ST_DROP_MALFORMED, ST_FLOWS_EVICTED, ST_DROP_REVOKED, ST_DROP_REVOKED_OUT, ST_COUNT };

enum { P_ANY = 0, P_ICMP = 1, P_TCP = 6, P_UDP = 17, P_BLOCK = 255 };

typedef struct {
  uint8_t proto;
  uint16_t lo, hi;
} range_t;

// Slots with more ranges than this get a port bitmap per protocol (16 KiB), so a long rule list costs one bit test.
#define BITMAP_AFTER 8

typedef struct {
  bool set;  // rules given (else everything passes)
  bool any;  // "*"
  bool block;  // the peer was revoked: nothing passes either way
  bool icmp;
  int n;
  range_t *r;
  uint8_t *bits;  // NULL, or tcp ports (8192 bytes) then udp ports (8192 bytes)
} slot_rules_t;

typedef struct {
  uint64_t key;  // 0: never used
  uint64_t until;
} flow_t;

struct filter {
  int max_slots;
  slot_rules_t *slots;
  flow_t *flows;
  double *stats;
  napi_ref stats_ref;
};

static const napi_type_tag FILTER_TAG = {0x6379706f6e696332ULL, 0x66696c7465720001ULL};

static inline void bump(filter_t *f, int i) {
  f->stats[i] += 1;
}

// (slot, family, protocol, our port, their port) in 64 bits; the top bit keeps it non-zero.
static inline uint64_t flow_key(int slot, int fam, int proto, uint16_t lport, uint16_t rport) {
  return (1ULL << 63) | ((uint64_t)(slot & 0xffff) << 40) | ((uint64_t)(fam == 6) << 39) | ((uint64_t)(proto & 0xff) << 32) |
         ((uint64_t)lport << 16) | rport;
}

static inline size_t flow_hash(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  return (size_t)k & (FLOW_CAP - 1);
}

static bool flow_hit(filter_t *f, uint64_t key, uint64_t now, uint64_t ttl) {
  size_t h = flow_hash(key);
  for (int i = 0; i < FLOW_PROBES; i++) {
    flow_t *e = &f->flows[(h + (size_t)i) & (FLOW_CAP - 1)];
    if (e->key == 0) return false;
    if (e->key == key) {
      if (e->until <= now) return false;
      e->until = now + ttl;  // a flow stays open while either side uses it
      return true;
    }
  }
  return false;
}

static void flow_note(filter_t *f, uint64_t key, uint64_t now, uint64_t ttl) {
  size_t h = flow_hash(key);
  flow_t *free_e = NULL, *oldest = NULL;
  for (int i = 0; i < FLOW_PROBES; i++) {
    flow_t *e = &f->flows[(h + (size_t)i) & (FLOW_CAP - 1)];
    if (e->key == key) {
      e->until = now + ttl;
      return;
    }
    if (e->key == 0) {
      if (free_e == NULL) free_e = e;
      break;  // the key cannot sit past a never-used entry
    }
    if (e->until <= now && free_e == NULL) free_e = e;
    if (oldest == NULL || e->until < oldest->until) oldest = e;
  }
  if (free_e == NULL) {
    free_e = oldest;
    bump(f, ST_FLOWS_EVICTED);
  }
  free_e->key = key;
  free_e->until = now + ttl;
}

// What the parser learns of one packet.
typedef struct {
  int fam;       // 4 or 6
  int proto;     // P_ICMP (both families), P_TCP, P_UDP, or the raw next header
  bool later_fragment;
  const uint8_t *l4;
  size_t l4len;
} pkt_t;

// Walks the IP header (and IPv6 extension headers); false when the packet is too short to say.
static bool parse_ip(const uint8_t *p, size_t n, pkt_t *o) {
  memset(o, 0, sizeof *o);
  if (n >= 20 && (p[0] >> 4) == 4) {
    size_t ihl = (size_t)(p[0] & 15) * 4;
    if (ihl < 20 || ihl > n) return false;
    o->fam = 4;
    o->proto = p[9];
    o->later_fragment = ((p[6] & 0x1f) | p[7]) != 0;
    o->l4 = p + ihl;
    o->l4len = n - ihl;
    return true;
  }
  if (n >= 40 && (p[0] >> 4) == 6) {
    o->fam = 6;
    int nh = p[6];
    size_t off = 40;
    for (int hops = 0; hops < 8; hops++) {
      if (nh == 0 || nh == 43 || nh == 60) {  // hop-by-hop, routing, destination options
        if (off + 8 > n) return false;
        nh = p[off];
        off += ((size_t)p[off + 1] + 1) * 8;
        if (off > n) return false;
      } else if (nh == 44) {  // fragment
        if (off + 8 > n) return false;
        if (((p[off + 2] << 8 | p[off + 3]) & 0xfff8) != 0) o->later_fragment = true;
        nh = p[off];
        off += 8;
      } else {
        break;
      }
    }
    o->proto = nh == 58 ? P_ICMP : nh;
    o->l4 = p + off;
    o->l4len = n - off;
    return true;
  }
  return false;
}

static inline uint16_t be16(const uint8_t *p) {
  return (uint16_t)(p[0] << 8 | p[1]);
}

static inline bool icmp_is_echo_request(int fam, uint8_t t) { return fam == 4 ? t == 8 : t == 128; }
static inline bool icmp_is_echo_reply(int fam, uint8_t t) { return fam == 4 ? t == 0 : t == 129; }
static inline bool icmp_is_error(int fam, uint8_t t) {
  return fam == 4 ? (t == 3 || t == 4 || t == 5 || t == 11 || t == 12) : (t >= 1 && t <= 4);
}

static bool rules_allow(const slot_rules_t *r, int proto, uint16_t port) {
  if (r->bits != NULL) {
    if (proto == P_ICMP) return r->icmp;
    const uint8_t *b = r->bits + (proto == P_UDP ? 8192 : 0);
    return proto == P_TCP || proto == P_UDP ? (b[port >> 3] >> (port & 7)) & 1 : false;
  }
  for (int i = 0; i < r->n; i++) {
    const range_t *x = &r->r[i];
    if (x->proto == P_ANY) return true;
    if (x->proto != proto) continue;
    if (proto == P_ICMP || (port >= x->lo && port <= x->hi)) return true;
  }
  return false;
}

bool filter_in(filter_t *f, int slot, const uint8_t *pkt, size_t n, uint64_t now) {
  if (slot < 0 || slot >= f->max_slots) return true;
  const slot_rules_t *r = &f->slots[slot];
  if (!r->set) return true;
  if (r->block) {
    bump(f, ST_DROP_REVOKED);
    return false;
  }
  if (r->any) {
    bump(f, ST_PASS_ANY);
    return true;
  }
  pkt_t p;
  if (!parse_ip(pkt, n, &p)) {
    bump(f, ST_DROP_MALFORMED);
    return false;
  }
  if (p.later_fragment) {
    bump(f, ST_DROP_FRAGMENT);
    return false;
  }
  if (p.proto == P_TCP || p.proto == P_UDP) {
    if (p.l4len < 4) {
      bump(f, ST_DROP_MALFORMED);
      return false;
    }
    uint16_t sport = be16(p.l4), dport = be16(p.l4 + 2);
    // A reply: their source port is the port we sent to, their destination port ours.
    if (flow_hit(f, flow_key(slot, p.fam, p.proto, dport, sport), now, p.proto == P_TCP ? TTL_TCP_MS : TTL_UDP_MS)) {
      bump(f, ST_PASS_REPLY);
      return true;
    }
    if (rules_allow(r, p.proto, dport)) {
      bump(f, ST_PASS_RULE);
      return true;
    }
    bump(f, ST_DROP_NO_RULE);
    return false;
  }
  if (p.proto == P_ICMP) {
    if (p.l4len < 8) {
      bump(f, ST_DROP_MALFORMED);
      return false;
    }
    uint8_t t = p.l4[0];
    if (icmp_is_echo_reply(p.fam, t) && flow_hit(f, flow_key(slot, p.fam, P_ICMP, be16(p.l4 + 4), 0), now, TTL_ICMP_MS)) {
      bump(f, ST_PASS_REPLY);
      return true;
    }
    if (icmp_is_error(p.fam, t)) {
      // It quotes a packet we sent (source = us): its flow must be one we opened.
      pkt_t q;
      if (parse_ip(p.l4 + 8, p.l4len - 8, &q) && q.fam == p.fam && q.l4len >= 4) {
        bool hit = false;
        if (q.proto == P_TCP || q.proto == P_UDP) hit = flow_hit(f, flow_key(slot, q.fam, q.proto, be16(q.l4), be16(q.l4 + 2)), now, q.proto == P_TCP ? TTL_TCP_MS : TTL_UDP_MS);
        else if (q.proto == P_ICMP && q.l4len >= 8 && icmp_is_echo_request(q.fam, q.l4[0])) hit = flow_hit(f, flow_key(slot, q.fam, P_ICMP, be16(q.l4 + 4), 0), now, TTL_ICMP_MS);
        if (hit) {
          bump(f, ST_PASS_REPLY);
          return true;
        }
      }
    }
    if (rules_allow(r, P_ICMP, 0)) {
      bump(f, ST_PASS_RULE);
      return true;
    }
    bump(f, ST_DROP_NO_RULE);
    return false;
  }
  // Other protocols (SCTP, GRE, ...) only under "*".
  bump(f, ST_DROP_NO_RULE);
  return false;
}

bool filter_out(filter_t *f, int slot, const uint8_t *pkt, size_t n, uint64_t now) {
  if (slot < 0 || slot >= f->max_slots) return true;
  const slot_rules_t *r = &f->slots[slot];
  if (r->block) {
    bump(f, ST_DROP_REVOKED_OUT);
    return false;
  }
  // Flows are recorded under "*" too: a later, narrower policy must still let the replies to them in.
  if (!r->set) return true;
  pkt_t p;
  if (!parse_ip(pkt, n, &p) || p.later_fragment) return true;
  if (p.proto == P_TCP && p.l4len >= 14) {
    // Only a SYN we send opens a TCP flow; other segments keep an open one alive. So our answers to a connection the
    // peer opened never make it a flow of ours: when the policy stops allowing it, its packets stop at this filter.
    uint64_t key = flow_key(slot, p.fam, P_TCP, be16(p.l4), be16(p.l4 + 2));
    if ((p.l4[13] & 0x12) == 0x02) flow_note(f, key, now, TTL_TCP_MS);
    else (void)flow_hit(f, key, now, TTL_TCP_MS);
  } else if (p.proto == P_UDP && p.l4len >= 4) {
    flow_note(f, flow_key(slot, p.fam, P_UDP, be16(p.l4), be16(p.l4 + 2)), now, TTL_UDP_MS);
  } else if (p.proto == P_ICMP && p.l4len >= 8 && icmp_is_echo_request(p.fam, p.l4[0])) {
    flow_note(f, flow_key(slot, p.fam, P_ICMP, be16(p.l4 + 4), 0), now, TTL_ICMP_MS);
  }
  return true;
}

/* ---------- N-API ---------- */

static void filter_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  filter_t *f = data;
  for (int i = 0; i < f->max_slots; i++) {
    free(f->slots[i].r);
    free(f->slots[i].bits);
  }
  free(f->slots);
  free(f->flows);
  if (f->stats_ref) napi_delete_reference(env, f->stats_ref);
  free(f);
}

filter_t *filter_from_value(napi_env env, napi_value v) {
  napi_valuetype t;
  bool ok = false;
  void *data = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
  if (napi_check_object_type_tag(env, v, &FILTER_TAG, &ok) != napi_ok || !ok) return NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok) return NULL;
  return data;
}

static filter_t *get_filter(napi_env env, napi_value v) {
  filter_t *f = filter_from_value(env, v);
  if (f == NULL) arg_error(env, 0, "not a filter handle");
  return f;
}

// filterCreate(maxSlots, stats: Float64Array(ST_COUNT or more)) -> handle.
static napi_value f_create(napi_env env, napi_callback_info info) {
  napi_value argv[2], ext;
  int64_t slots;
  if (!get_args(env, info, 2, argv) || !get_int(env, argv[0], 1, 65536, &slots, "maxSlots")) return NULL;
  bool is_ta = false;
  napi_typedarray_type type;
  size_t len = 0;
  void *data = NULL;
  if (napi_is_typedarray(env, argv[1], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[1], &type, &len, &data, NULL, NULL) != napi_ok || type != napi_float64_array || len < ST_COUNT) {
    arg_error(env, 0, "stats must be a Float64Array with room for the filter counters");
    return NULL;
  }
  filter_t *f = calloc(1, sizeof *f);
  if (f != NULL) {
    f->max_slots = (int)slots;
    f->slots = calloc((size_t)slots, sizeof *f->slots);
    f->flows = calloc(FLOW_CAP, sizeof *f->flows);
    f->stats = data;
  }
  if (f == NULL || f->slots == NULL || f->flows == NULL || napi_create_reference(env, argv[1], 1, &f->stats_ref) != napi_ok) {
    if (f) {
      free(f->slots);
      free(f->flows);
      free(f);
    }
    throw_errno(env, "malloc", ENOMEM);
    return NULL;
  }
  if (napi_create_external(env, f, filter_finalize, NULL, &ext) != napi_ok) {
    filter_finalize(env, f, NULL);
    return NULL;
  }
  napi_type_tag_object(env, ext, &FILTER_TAG);
  return ext;
}

// filterForget(handle, slot): the slot's peer is gone and the slot will serve another: its rules go (a slot never
// set passes everything until the new peer's rules come) and so do the flows it had open (their entries expire, so
// probe chains stay intact): a new peer in the slot never answers the old peer's flows.
static napi_value f_forget(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t slot;
  if (!get_args(env, info, 2, argv)) return NULL;
  filter_t *f = get_filter(env, argv[0]);
  if (f == NULL || !get_int(env, argv[1], 0, f->max_slots - 1, &slot, "slot")) return NULL;
  slot_rules_t *s = &f->slots[slot];
  free(s->r);
  free(s->bits);
  memset(s, 0, sizeof *s);
  for (size_t i = 0; i < FLOW_CAP; i++) {
    flow_t *e = &f->flows[i];
    if (e->key != 0 && (int)((e->key >> 40) & 0xffff) == (int)slot) e->until = 0;
  }
  return NULL;
}

// filterSet(handle, slot, rules: Uint8Array | null): rules are 5-byte records (proto u8: 0 any, 1 icmp, 6 tcp,
// 17 udp, 255 block: the peer was revoked, nothing passes either way; lo u16 BE; hi u16 BE); null = no rules
// (everything passes); an empty array = only replies pass.
static napi_value f_set(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int64_t slot;
  if (!get_args(env, info, 3, argv)) return NULL;
  filter_t *f = get_filter(env, argv[0]);
  if (f == NULL || !get_int(env, argv[1], 0, f->max_slots - 1, &slot, "slot")) return NULL;
  slot_rules_t *s = &f->slots[slot];
  napi_valuetype t;
  napi_typeof(env, argv[2], &t);
  if (t == napi_null || t == napi_undefined) {
    free(s->r);
    free(s->bits);
    memset(s, 0, sizeof *s);
    return NULL;
  }
  uint8_t *b;
  size_t len;
  if (!get_bytes(env, argv[2], &b, &len, "rules")) return NULL;
  if (len % 5 != 0 || len / 5 > MAX_RANGES) {
    arg_error(env, 1, "rules must be at most 512 records of 5 bytes");
    return NULL;
  }
  int n = (int)(len / 5);
  range_t *r = n ? calloc((size_t)n, sizeof *r) : NULL;
  if (n && r == NULL) {
    throw_errno(env, "malloc", ENOMEM);
    return NULL;
  }
  bool any = false, block = false, icmp = false;
  for (int i = 0; i < n; i++) {
    uint8_t proto = b[i * 5];
    if (proto != P_ANY && proto != P_ICMP && proto != P_TCP && proto != P_UDP && proto != P_BLOCK) {
      free(r);
      arg_error(env, 1, "rule protocol must be 0, 1, 6, 17 or 255");
      return NULL;
    }
    r[i] = (range_t){proto, be16(b + i * 5 + 1), be16(b + i * 5 + 3)};
    if (proto == P_ANY) any = true;
    if (proto == P_BLOCK) block = true;
    if (proto == P_ICMP) icmp = true;
  }
  uint8_t *bits = NULL;
  if (n > BITMAP_AFTER && !any && !block) {
    bits = calloc(2, 8192);
    if (bits == NULL) {
      free(r);
      throw_errno(env, "malloc", ENOMEM);
      return NULL;
    }
    for (int i = 0; i < n; i++) {
      if (r[i].proto != P_TCP && r[i].proto != P_UDP) continue;
      uint8_t *b = bits + (r[i].proto == P_UDP ? 8192 : 0);
      for (uint32_t p = r[i].lo; p <= r[i].hi; p++) b[p >> 3] |= (uint8_t)(1u << (p & 7));
    }
  }
  free(s->r);
  free(s->bits);
  s->set = true;
  s->any = any && !block;
  s->block = block;
  s->icmp = icmp;
  s->bits = bits;
  s->n = n;
  s->r = r;
  return NULL;
}

// filterPacket(handle, slot, packet, outbound, nowMs) -> boolean: runs one packet through filter_out (outbound) or
// filter_in (inbound); whether it passes. For unit tests and benchmarks; the engine calls the C functions directly.
static napi_value f_packet(napi_env env, napi_callback_info info) {
  napi_value argv[5], out;
  int64_t slot, now;
  uint8_t *b;
  size_t len;
  bool outbound;
  if (!get_args(env, info, 5, argv)) return NULL;
  filter_t *f = get_filter(env, argv[0]);
  if (f == NULL || !get_int(env, argv[1], 0, f->max_slots - 1, &slot, "slot") || !get_bytes(env, argv[2], &b, &len, "packet") ||
      napi_get_value_bool(env, argv[3], &outbound) != napi_ok || !get_int(env, argv[4], 0, MAX_SAFE, &now, "nowMs"))
    return NULL;
  bool pass = outbound ? filter_out(f, (int)slot, b, len, (uint64_t)now) : filter_in(f, (int)slot, b, len, (uint64_t)now);
  napi_get_boolean(env, pass, &out);
  return out;
}

bool filter_register(napi_env env, napi_value exports) {
  napi_property_descriptor d[] = {
      {"filterCreate", NULL, f_create, NULL, NULL, NULL, napi_default, NULL},
      {"filterSet", NULL, f_set, NULL, NULL, NULL, napi_default, NULL},
      {"filterForget", NULL, f_forget, NULL, NULL, NULL, napi_default, NULL},
      {"filterPacket", NULL, f_packet, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof d / sizeof d[0], d) == napi_ok;
}
