// Batched packet I/O in plain C (no N-API), shared by the JS-facing calls in cyphonic_native.c and by the data-plane
// engine (dataplane.c): recvmmsg with UDP GRO splitting, sendmmsg with UDP GSO runs, and TUN writes that merge
// runs of one TCP flow into GSO writes (vnet). None of them blocks on an empty queue or allocates.
#ifndef CYPHONIC_BATCH_IO_H
#define CYPHONIC_BATCH_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

// Receive buffers per recvmmsg; most datagrams one GRO buffer can hold (the kernel's UDP_GRO_CNT_MAX).
#define MAX_BATCH 64
#define GRO_MAX_SEGS 64
// Datagrams per send batch, per GSO send, and bytes per GSO send (UDP length field, with margin).
#define MAX_SEND 256
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 65000
// Packets per TUN write batch.
#define MAX_TUN_WRITE 4096

// One non-blocking recvmmsg into `nbuf` (<= MAX_BATCH) slots of `slot` bytes at buf. Datagram i ends up at
// buf[offsets[i]], lengths[i] bytes (0 = truncated or empty; metas[i*20+1] is 1 when truncated), its source in
// metas[i*20..] (write_meta) and, when scopes is not NULL, its IPv6 scope id (interface index of a link-local source,
// else 0) in scopes[i]; a GRO buffer is split into its datagrams. At most `cap` datagrams are reported (callers size
// nbuf so that every split fits). Returns the count, 0 when nothing is queued (EAGAIN/EINTR), or -1 with errno set.
int udp_recv_batch(int fd, uint8_t *buf, size_t slot, size_t nbuf, uint32_t *offsets, uint32_t *lengths, uint8_t *metas,
                   uint32_t *scopes, size_t cap);

// sendmmsg of `count` (<= MAX_SEND) datagrams iov[0..count) to one destination. With gso, each run of equal-sized
// datagrams (the last may be shorter) goes as one UDP GSO send; falls back to one datagram per message for good
// when the kernel refuses GSO. Returns how many datagrams went, or -errno when none did.
int udp_send_batch(int fd, struct iovec *iov, int count, const struct sockaddr_storage *to, socklen_t tolen, bool gso);
// The same; a GSO send refused with EMSGSIZE (segment size over the path MTU the kernel knows) is re-sent one datagram
// per message, and the datagrams so re-sent are added to *resegmented (may be NULL).
int udp_send_batch_ex(int fd, struct iovec *iov, int count, const struct sockaddr_storage *to, socklen_t tolen, bool gso,
                      int *resegmented);

// Writes `count` (<= MAX_TUN_WRITE) packets ptrs[i] (lens[i] bytes) to the TUN. Without vnet: one write each. With
// vnet, each packet needs VNET_HDR_LEN bytes of writable headroom before ptrs[i]; runs of one TCP flow are merged in
// scratch (>= 65546 bytes) into one GSO write, and with uso (the TUN took USO) so are runs of equal-sized datagrams
// of one UDP flow. Returns how many packets were written; *gso_writes (may be NULL) counts the merged writes.
size_t tun_write_batch(int fd, uint8_t *const *ptrs, const uint32_t *lens, size_t count, bool vnet, bool uso, uint8_t *scratch,
                       size_t slen, size_t *gso_writes);

#endif
