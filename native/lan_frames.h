// The adapter's LAN frames (lan_frames.c): a packet socket read with PACKET_VNET_HDR, GSO super-frames cut into
// wire-size frames, partial checksums completed, plain ARP/ND solicitations for known addresses answered at once
// (lan_proxy.c). Registers lanSetVnetHdr, lanRecv, lanSend and lanSegment.
#ifndef CYPHONIC_LAN_FRAMES_H
#define CYPHONIC_LAN_FRAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <node_api.h>

// Indices of the stats array (Uint32Array) that lanRecv / lanSegment add to; LAN_ST_PENDING is lanRecv's state.
enum {
  LAN_ST_FRAMES,           // wire frames handed out
  LAN_ST_GSO_TCP,          // TCP super-frames (GRO/TSO) cut into segments
  LAN_ST_GSO_UDP,          // UDP GSO super-frames cut into datagrams
  LAN_ST_SEGMENTS,         // frames made from super-frames
  LAN_ST_CSUM,             // partial checksums (CHECKSUM_PARTIAL) completed
  LAN_ST_DROP_MALFORMED,   // header or lengths inconsistent
  LAN_ST_DROP_TOO_BIG,     // a frame longer than the read buffer, or a segment longer than a slot
  LAN_ST_DROP_UNSUPPORTED, // a GSO type the kernel cannot describe (recvmsg EINVAL) or we do not cut
  LAN_ST_DROP_TOO_MANY,    // more segments than the output holds
  LAN_ST_PROXY_ARP,        // ARP requests answered on the reader thread (lan_proxy.c), not handed out
  LAN_ST_PROXY_ND,         // Neighbor Solicitations answered there
  LAN_ST_PROXY_ERR,        // fast answers the socket refused to send
  LAN_ST_COUNT,
  LAN_ST_PENDING = LAN_ST_COUNT,  // length of a frame kept in scratch for the next lanRecv (its segments did not fit)
  LAN_ST_LEN
};

// Cuts one frame read with PACKET_VNET_HDR (`in`: virtio_net_hdr + Ethernet frame, `len` bytes) into wire frames:
// frame i at out + i*slot, lens[i] bytes. `out` must hold nslots*slot + 18 bytes. `in` is used as scratch and
// restored when the result is SEG_TOO_MANY. Returns the frame count (0 = dropped, counted in st) or SEG_TOO_MANY.
int lan_segment(uint8_t *in, size_t len, uint8_t *out, size_t slot, size_t nslots, uint32_t *lens, uint32_t *st);

bool lan_frames_register(napi_env env, napi_value exports);

#endif
