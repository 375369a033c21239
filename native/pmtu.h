// Path MTU helpers for the data-plane engine (pmtu.c): what the tunnel does when an inner packet does not fit the
// path to its peer. Pure C (no N-API) apart from pmtu_register, which exposes the packet helpers for unit tests.
//
//   usable inner MTU of a peer = min(TUN MTU, min(kernel path MTU, PLPMTU) − outer IP header − UDP − capsule overhead)
//
// The kernel's path MTU toward a destination (route MTU, or what ICMP "fragmentation needed" / ICMPv6 "packet too
// big" taught it) is read with IP_MTU / IPV6_MTU on a helper socket connected to that destination; the PLPMTU comes
// from the worker's probes (src/node/dataplane/pmtu.ts, docs/PROTOCOL.md "Path MTU probes").
#ifndef CYPHONIC_PMTU_H
#define CYPHONIC_PMTU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <node_api.h>

// UDP header + capsule header (28) + AEAD tag (16): what a capsule adds on top of the outer IP header.
#define PMTU_CAPSULE_OVERHEAD (8 + 28 + 16)
// Smallest usable inner MTU the engine ever uses (the IPv4 minimum every host must accept).
#define PMTU_MIN_INNER 576
// IPv6 links carry at least this; an inner IPv6 packet up to it is sent whole (the outer may be fragmented).
#define PMTU_IPV6_MIN 1280

// Control messages carried inside capsules instead of an IP packet (first byte 0: no IP version 0 exists).
#define PMTU_CTL_MAGIC 0x00
#define PMTU_CTL_PROBE 1
#define PMTU_CTL_ACK 2
#define PMTU_CTL_LEN 10  // magic, kind, 2 reserved, id u32 BE, size u16 BE (then a probe's zero padding)

// Per-peer path MTU state held by the engine.
typedef struct {
  uint16_t kernel;  // kernel path MTU toward the peer's endpoint (outer IP datagram bytes; 0 = unknown)
  uint16_t plpmtu;  // probed PLPMTU (outer bytes; 0 = not limited by probes)
  uint16_t usable;  // largest inner packet sent whole to this peer
} pmtu_peer_t;

// Helper sockets for path MTU queries (one per family, opened on first use).
typedef struct {
  int fd4, fd6;
} pmtu_query_t;

void pmtu_query_init(pmtu_query_t *q);
void pmtu_query_close(pmtu_query_t *q);

// Outer IP header bytes toward `to` (20 for IPv4 and IPv4-mapped, 40 for IPv6).
size_t pmtu_ip_overhead(const struct sockaddr_storage *to);

// The kernel's path MTU toward `to` (outer IP datagram bytes), or 0 when it cannot tell.
unsigned pmtu_kernel_mtu(pmtu_query_t *q, const struct sockaddr_storage *to);

// Recomputes p->usable from its kernel and probed MTUs, the TUN MTU and the outer header toward `to`.
void pmtu_recompute(pmtu_peer_t *p, size_t tun_mtu, const struct sockaddr_storage *to);

// ICMP "fragmentation needed" (type 3 code 4) answering IPv4 packet pkt (n bytes) with next-hop MTU `mtu`, from the
// packet's destination to its source; quotes what fits in 576 bytes. Returns its length (0: pkt is not answerable:
// an ICMP error, a non-first fragment, malformed).
size_t pmtu_icmp4_frag_needed(const uint8_t *pkt, size_t n, unsigned mtu, uint8_t *out, size_t cap);

// ICMPv6 "packet too big" (type 2) answering IPv6 packet pkt with `mtu`; quotes what fits in 1280 bytes. Returns its
// length (0: not answerable: an ICMPv6 error, multicast source, malformed).
size_t pmtu_icmp6_too_big(const uint8_t *pkt, size_t n, unsigned mtu, uint8_t *out, size_t cap);

// The next fragment of IPv4 packet pkt (DF clear) that fits `mtu`, starting at payload byte *at (0 first); writes it
// to out (>= mtu bytes) and advances *at. Returns its length, 0 when the payload is done, or -1 when the packet
// cannot be fragmented (DF set, malformed, mtu too small for the header).
long pmtu_fragment4_next(const uint8_t *pkt, size_t n, size_t mtu, size_t *at, uint8_t *out);

// A TCP SYN whose MSS option exceeds what `mtu` allows (mtu − IP header − 20) gets it lowered (checksum updated in
// place). Returns 1 when it changed the packet, 0 otherwise (not a SYN, no MSS option, already small enough).
int pmtu_clamp_mss(uint8_t *pkt, size_t n, size_t mtu);

// Registers pmtuFragNeeded / pmtuTooBig / pmtuFragment4 / pmtuClampMss (tests of the helpers above).
bool pmtu_register(napi_env env, napi_value exports);

#endif
