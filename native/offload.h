// Packet offload helpers for the data plane (pure C, no N-API): Internet checksums, splitting a TUN GSO
// super-packet (virtio_net_hdr + TCP segment, or UDP datagrams (USO), of up to 64 KiB) into MTU-sized packets, and
// the reverse: coalescing consecutive in-order TCP segments, or equal-sized datagrams, of one flow into one GSO
// packet for a single TUN write.
#ifndef CYPHONIC_OFFLOAD_H
#define CYPHONIC_OFFLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Size of struct virtio_net_hdr (no mergeable buffers): what IFF_VNET_HDR puts before every TUN packet.
#define VNET_HDR_LEN 10
// virtio_net_hdr gso_type values we read: the ECN bit, and UDP_L4 (USO; older userspace headers lack it).
#define VNET_GSO_ECN 0x80
#define VNET_GSO_UDP_L4 5

// Ways a GSO super-packet can be refused by vnet_segment.
#define SEG_MALFORMED -1   // header or lengths inconsistent, or an offload type we did not ask for
#define SEG_TOO_MANY -2    // more segments than output slots (tiny gso_size)

// Splits one packet read from an IFF_VNET_HDR TUN (`in`, `len` bytes including the 10-byte header: no GSO, TCPV4/6
// or UDP_L4) into plain IP packets with complete checksums: packet i at out + i*slot, its length in lens[i]. Returns the count (>= 1),
// or SEG_MALFORMED / SEG_TOO_MANY. Never reads past in+len nor writes past out + nslots*slot.
int vnet_segment(const uint8_t *in, size_t len, uint8_t *out, size_t slot, size_t nslots, uint32_t *lens);
// The same, with segments of at most max_pkt bytes each (0: as gso_size says): a super-packet whose gso_size does
// not fit the peer's path is cut into smaller segments (sets *narrowed) instead of being refused.
int vnet_segment_cap(const uint8_t *in, size_t len, uint8_t *out, size_t slot, size_t nslots, uint32_t *lens,
                     size_t max_pkt, int *narrowed);

// Coalesces, starting at packet `first`, the longest run of packets (ptrs[i], lens[i]) that form one TCP
// GSO packet: same flow and headers, consecutive sequence numbers, equal payload sizes (the last may be
// shorter), only ACK (PSH on the last). Writes virtio_net_hdr + the merged packet into `out` (cap bytes) and
// returns its total length, setting *used to the number of input packets merged (>= 2). Returns 0 (and
// *used = 1) when packet `first` starts no run of two or more; the caller then writes it alone.
// With uso (the TUN took TUN_F_USO4|USO6), a run of UDP datagrams of one flow with equal payload sizes (the last
// may be shorter) merges the same way into one VIRTIO_NET_HDR_GSO_UDP_L4 packet (at most 64 datagrams).
size_t vnet_coalesce(uint8_t *const *ptrs, const uint32_t *lens, size_t count, size_t first, uint8_t *out, size_t cap,
                     size_t *used, bool uso);

// The virtio_net_hdr and IP + UDP headers (out: VNET_HDR_LEN + iphl + 8 bytes) of one USO packet of `total` IP bytes
// whose payload is the datagrams of a run, the first at `first` (IPv4 without options or IPv6 without extension
// headers, IP header iphl bytes; its headers are copied, lengths set): CHECKSUM_PARTIAL at the UDP checksum, hdr_len
// the IP + UDP headers, gso_size `seg` — what vnet_coalesce writes for such a run, and what vnet_segment cuts back
// into datagrams of seg bytes (the last may be shorter), each with IPv4 id + i and a fresh checksum.
void uso_headers(uint8_t *out, const uint8_t *first, size_t iphl, size_t total, size_t seg);

// Whether UDP datagram `ip` (len bytes, IP header iphl) carries a checksum (not 0) and it is right.
bool udp_csum_ok(const uint8_t *ip, size_t len, size_t iphl);

#endif
