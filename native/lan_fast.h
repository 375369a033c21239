// The adapter's IP fast path (lan_fast.c): plain unicast TCP/UDP packets between a general node on the LAN and its
// C engine's packet pair, carried by the LAN reader thread (out) and the pair reader thread (in), never by the main
// thread; whatever the fast path does not take goes to the TypeScript LAN service unchanged.
#ifndef CYPHONIC_LAN_FAST_H
#define CYPHONIC_LAN_FAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <node_api.h>

// The largest IP packet carried (LAN_MTU in src/adapter/lan-service.ts): longer ones get TypeScript's MTU rules.
#define LAN_FAST_MTU 1400

// Counters of one LAN socket's fast path (lanFastStats, same order as FAST_STATS in src/adapter/lan-port.ts).
enum {
  LAN_FAST_ST_OUT,       // LAN frames written into a general node's pair
  LAN_FAST_ST_OUT_FULL,  // ... dropped: the pair's queue was full (as tx.device-full)
  LAN_FAST_ST_OUT_ERR,   // ... refused by the pair otherwise
  LAN_FAST_ST_IN,        // engine packets framed and sent on the LAN
  LAN_FAST_ST_IN_ERR,    // ... the packet socket refused
  LAN_FAST_ST_IN_GSO,    // GSO frames sent (each carries several of LAN_FAST_ST_IN)
  LAN_FAST_ST_OUT_GSO,   // LAN super-frames (GRO/TSO, UDP GSO) written whole into a pair (each carries several of ..._OUT)
  LAN_FAST_ST_OUT_BAD,   // LAN super-frames for a general node's pair dropped: their virtio_net_hdr or lengths disagree
  LAN_FAST_ST_OUT_GSO_UDP,  // ... of LAN_FAST_ST_OUT_GSO: UDP GSO super-datagrams (UDP_SEGMENT, UDP GRO forwarding)
  LAN_FAST_ST_OUT_MERGED_UDP,         // writes into a pair that merged a run of plain UDP datagrams into one super-datagram
  LAN_FAST_ST_OUT_MERGED_UDP_DGRAMS,  // ... the datagrams they carried (also in LAN_FAST_ST_OUT)
  LAN_FAST_ST_COUNT
};

// Frames out[i*slot], lens[i] bytes, i < n, read from LAN socket `fd`: carries those the fast path takes into their
// general node's pair and moves the rest to the front (same order). Returns how many are left. Into a pair with
// virtio headers, a run of consecutive plain UDP datagrams of one flow goes as one UDP GSO super-datagram (the
// engine cuts it back into the same datagrams), so the more frames one call gets, the fewer writes.
size_t lan_fast_filter(int fd, uint8_t *out, size_t slot, uint32_t *lens, size_t n);

// A frame read from LAN socket `fd` with its virtio_net_hdr (`in`, len bytes), before it is cut: a TCP super-frame
// (GRO/TSO) or UDP GSO super-datagram (UDP_SEGMENT, UDP GRO forwarding) from a general node whose pair takes virtio headers, which passes the checks a plain packet passes (and
// segments within LAN_MTU), goes into that pair whole, for its engine to cut and seal (LAN_FAST_CARRIED); one whose
// header disagrees with its bytes is counted and dropped (LAN_FAST_DROPPED); anything else is left to the
// segmenter (LAN_FAST_LEFT).
enum { LAN_FAST_LEFT, LAN_FAST_CARRIED, LAN_FAST_DROPPED };
int lan_fast_super(int fd, const uint8_t *in, size_t len);

// Registers lanFastSet, lanFastClear, lanFastHits, lanFastStats, lanFastOut and lanFastIn.
bool lan_fast_register(napi_env env, napi_value exports);

#endif
