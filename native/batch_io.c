// Batched packet I/O cores (see batch_io.h): the syscall loops behind udpRecvMany, udpSendMany and tunWriteMany,
// callable from C without N-API so the data-plane engine (dataplane.c) moves packets with the same code.
#define _GNU_SOURCE  // recvmmsg, sendmmsg
#include "batch_io.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include "napi_util.h"
#include "offload.h"

int udp_recv_batch(int fd, uint8_t *buf, size_t slot, size_t nbuf, uint32_t *offsets, uint32_t *lengths, uint8_t *metas,
                   uint32_t *scopes, size_t cap) {
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  struct sockaddr_storage addrs[MAX_BATCH];
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl[MAX_BATCH];
  if (nbuf > MAX_BATCH) nbuf = MAX_BATCH;
  memset(msgs, 0, sizeof(struct mmsghdr) * nbuf);
  for (size_t i = 0; i < nbuf; i++) {
    iov[i].iov_base = buf + i * slot;
    iov[i].iov_len = slot;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &addrs[i];
    msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
    msgs[i].msg_hdr.msg_control = ctl[i].buf;
    msgs[i].msg_hdr.msg_controllen = sizeof ctl[i].buf;
  }
  int got = recvmmsg(fd, msgs, (unsigned)nbuf, MSG_DONTWAIT, NULL);
  if (got < 0) return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
  size_t out = 0;
  for (int i = 0; i < got && out < cap; i++) {
    struct msghdr *h = &msgs[i].msg_hdr;
    size_t total = msgs[i].msg_len, seg = total;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
      if (c->cmsg_level == IPPROTO_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
        int g;
        memcpy(&g, CMSG_DATA(c), sizeof g);
        if (g > 0) seg = (size_t)g;
      }
    }
    size_t base = (size_t)i * slot;
    uint32_t scope = addrs[i].ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addrs[i])->sin6_scope_id : 0;
    if ((h->msg_flags & MSG_TRUNC) || total == 0) {
      offsets[out] = (uint32_t)base;
      lengths[out] = 0;
      write_meta(metas + out * 20, &addrs[i]);
      if (h->msg_flags & MSG_TRUNC) metas[out * 20 + 1] = 1;  // cut, not empty
      if (scopes) scopes[out] = scope;
      out++;
      continue;
    }
    for (size_t at = 0; at < total && out < cap; at += seg) {
      offsets[out] = (uint32_t)(base + at);
      lengths[out] = (uint32_t)(total - at < seg ? total - at : seg);
      write_meta(metas + out * 20, &addrs[i]);
      if (scopes) scopes[out] = scope;
      out++;
    }
  }
  return (int)out;
}

// Set once a GSO send failed in a way that means the kernel or device cannot do it; later sends use plain sendmmsg.
static volatile int udp_gso_broken = 0;

int udp_send_batch(int fd, struct iovec *iov, int count, const struct sockaddr_storage *to, socklen_t tolen, bool gso) {
  return udp_send_batch_ex(fd, iov, count, to, tolen, gso, NULL);
}

// Sends the `n` datagrams at iov one per message (no UDP_SEGMENT): what a refused GSO send becomes. The kernel then
// sizes each datagram against the path on its own (and fragments locally what the path MTU it knows cannot carry).
// Returns how many went, or -errno when none did.
static int send_singly(int fd, struct iovec *iov, size_t n, const struct sockaddr_storage *to, socklen_t tolen) {
  size_t went = 0;
  int err = 0;
  for (size_t k = 0; k < n; k++) {
    struct msghdr h = {.msg_name = (void *)to, .msg_namelen = tolen, .msg_iov = &iov[k], .msg_iovlen = 1};
    ssize_t r;
    do r = sendmsg(fd, &h, 0);
    while (r < 0 && errno == EINTR);
    if (r >= 0) went++;
    else err = errno;
  }
  return went > 0 || err == 0 ? (int)went : -err;
}

int udp_send_batch_ex(int fd, struct iovec *iov, int count, const struct sockaddr_storage *to, socklen_t tolen, bool gso,
                      int *resegmented) {
  struct mmsghdr msgs[MAX_SEND];
  size_t members[MAX_SEND];  // datagrams in each message
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctl[MAX_SEND];
  if (count > MAX_SEND) count = MAX_SEND;
  int use_gso = gso && !udp_gso_broken;
  int sent = 0;  // datagrams
  while (sent < count) {
    size_t nm = 0;
    memset(msgs, 0, sizeof msgs[0] * (size_t)(count - sent));
    for (int i = sent; i < count;) {
      size_t seg = iov[i].iov_len, tot = 0;
      int j = i;
      if (use_gso && seg > 0) {
        while (j < count && j - i < GSO_MAX_SEGS && iov[j].iov_len <= seg && tot + iov[j].iov_len <= GSO_MAX_BYTES) {
          tot += iov[j++].iov_len;
          if (iov[j - 1].iov_len < seg) break;
        }
      }
      if (j == i) j = i + 1;
      struct msghdr *h = &msgs[nm].msg_hdr;
      h->msg_name = (void *)to;
      h->msg_namelen = tolen;
      h->msg_iov = &iov[i];
      h->msg_iovlen = (size_t)(j - i);
      if (j - i > 1) {
        h->msg_control = ctl[nm].buf;
        h->msg_controllen = sizeof ctl[nm].buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(h);
        c->cmsg_level = IPPROTO_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t s16 = (uint16_t)seg;
        memcpy(CMSG_DATA(c), &s16, sizeof s16);
      }
      members[nm++] = (size_t)(j - i);
      i = j;
    }
    int r = sendmmsg(fd, msgs, (unsigned)nm, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EMSGSIZE && members[0] > 1) {
        // The first GSO send was refused: its segment size exceeds the path MTU the kernel knows (a narrow link, or
        // ICMP taught it). Re-send its datagrams one by one; GSO stays on for the runs that fit.
        int w = send_singly(fd, &iov[sent], members[0], to, tolen);
        if (resegmented) *resegmented += (int)members[0];
        if (w < 0) return sent > 0 ? sent : w;
        if ((size_t)w < members[0]) return sent + w;
        sent += w;
        continue;
      }
      if (use_gso && (errno == EIO || errno == EINVAL || errno == ENOPROTOOPT || errno == EOPNOTSUPP)) {
        udp_gso_broken = 1;  // retry this batch, and all later ones, one datagram per message
        use_gso = 0;
        continue;
      }
      return sent > 0 ? sent : -errno;
    }
    for (int k = 0; k < r; k++) sent += (int)members[k];
    if (r == 0) break;
  }
  return sent;
}

size_t tun_write_batch(int fd, uint8_t *const *ptrs, const uint32_t *lens, size_t count, bool vnet, bool uso, uint8_t *scratch,
                       size_t slen, size_t *gso_writes) {
  size_t head = vnet ? VNET_HDR_LEN : 0;
  size_t written = 0;
  for (size_t i = 0; i < count;) {
    size_t used = 1, wlen;
    const uint8_t *w;
    size_t merged = vnet ? vnet_coalesce(ptrs, lens, count, i, scratch, slen, &used, uso) : 0;
    if (merged > 0) {
      w = scratch;
      wlen = merged;
    } else {
      memset(ptrs[i] - head, 0, head);
      w = ptrs[i] - head;
      wlen = lens[i] + head;
    }
    ssize_t r;
    do r = write(fd, w, wlen);
    while (r < 0 && errno == EINTR);
    if (r < 0 && merged > 0 && errno == EINVAL) {
      // The kernel refused the merged packet (a GSO type it does not take after all): the packets go one by one.
      for (size_t k = i; k < i + used; k++) {
        memset(ptrs[k] - head, 0, head);
        do r = write(fd, ptrs[k] - head, lens[k] + head);
        while (r < 0 && errno == EINTR);
        if (r >= 0) written++;
      }
      i += used;
      continue;
    }
    if (r >= 0) written += used;
    if (r >= 0 && merged > 0 && gso_writes) (*gso_writes)++;
    i += used;
  }
  return written;
}
