/*
 * wanem: a user-space WAN emulator for the netns testbed (there is no tc netem on the test kernel).
 *
 * A transparent bump in the wire: it forwards Ethernet frames between two interfaces of its own namespace
 * (interfaces without addresses) through AF_PACKET sockets, and impairs each direction on its own:
 * delay, jitter (uniform or normal; it lets packets overtake each other), loss, duplication, explicit
 * reordering (a packet skips the delay line) and a rate limit with a bounded drop-tail queue.
 *
 * Veths hand AF_PACKET offload super-frames (TSO, UDP GSO, up to 64 KiB) with partial checksums, as a NIC
 * with GRO does. The receive sockets use PACKET_VNET_HDR to learn gso_type/gso_size/csum_start, and such
 * frames are cut here into wire-size packets (TCP: per-segment IP/TCP headers, IPv4 ids, sequence numbers,
 * flags and checksums; UDP_L4: payload cut by gso_size with fresh UDP headers and checksums); partial
 * checksums are completed. Loss, delay and the rate then apply per wire packet, as on a real link.
 *
 *   wanem IF_A IF_B [--a2b SPEC] [--b2a SPEC] [--seed N] [--max-life SEC] [--slots N]
 *   SPEC: "delay=MS jitter=MS dist=uniform|normal loss=PCT dup=PCT reorder=PCT rate=KBIT queue=BYTES"
 *
 * stdin commands (one per line): "a2b SPEC", "b2a SPEC", "both SPEC" (replace a direction's settings),
 * "stats" (one JSON line on stdout), "quit". Prints "ready" once both sockets are bound. Memory is bounded
 * (a fixed pool of frame slots per direction; a full pool drops). Dies with its parent (PR_SET_PDEATHSIG),
 * when stdin closes, and after --max-life seconds (default 900).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <math.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif
#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

#define RXBUF (256 * 1024)
#define MAX_BATCH 256

struct params {
  double delay_ms, jitter_ms, loss, dup, reorder, rate_kbit;
  int normal;
  long queue_bytes;
};

struct dstats {
  uint64_t rx, rx_super, segs, wire, lost, dup, reordered, qdrop, pooldrop, sent, senderr, bad, toobig, csum;
};

struct dir {
  struct params p;
  struct dstats st;
  int in_fd, out_fd;
  int out_max; /* largest frame the out interface takes (MTU + Ethernet header) */
  uint64_t serializer_free_ns;
  int free_top;
  int *free_list;
};

struct slot {
  uint64_t t, seq;
  uint32_t len;
  uint8_t dir;
};

static struct dir dirs[2];
static struct slot *slots;
static uint8_t *slot_data;
static int slot_size, nslots_per_dir;
static int *heap, heap_n;
static uint64_t seq_counter;
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint8_t segbuf[RXBUF];

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: uniform in [0, 1) */
static double rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static double rnd_normal(void) {
  double u = rnd(), v = rnd();
  if (u < 1e-12) u = 1e-12;
  return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

static int parse_spec(const char *s, struct params *p) {
  struct params q = {0};
  char buf[512];
  snprintf(buf, sizeof buf, "%s", s);
  for (char *save = NULL, *tok = strtok_r(buf, " ,\t\n", &save); tok; tok = strtok_r(NULL, " ,\t\n", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq) return -1;
    *eq = 0;
    const char *k = tok, *v = eq + 1;
    if (!strcmp(k, "dist")) {
      if (!strcmp(v, "normal")) q.normal = 1;
      else if (!strcmp(v, "uniform")) q.normal = 0;
      else return -1;
      continue;
    }
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || d < 0 || !isfinite(d)) return -1;
    if (!strcmp(k, "delay")) q.delay_ms = d;
    else if (!strcmp(k, "jitter")) q.jitter_ms = d;
    else if (!strcmp(k, "loss")) q.loss = d / 100.0;
    else if (!strcmp(k, "dup")) q.dup = d / 100.0;
    else if (!strcmp(k, "reorder")) q.reorder = d / 100.0;
    else if (!strcmp(k, "rate")) q.rate_kbit = d;
    else if (!strcmp(k, "queue")) q.queue_bytes = (long)d;
    else return -1;
  }
  if (q.loss > 1 || q.dup > 1 || q.reorder > 1) return -1;
  if (q.rate_kbit > 0 && q.queue_bytes == 0) {
    /* default: 100 ms at the rate, at least 32 KiB */
    long b = (long)(q.rate_kbit * 1000.0 / 8.0 * 0.1);
    q.queue_bytes = b < 32768 ? 32768 : b;
  }
  *p = q;
  return 0;
}

/* ---- checksums ---------------------------------------------------------------------------- */

static uint64_t sum16(const uint8_t *p, size_t n, uint64_t s) {
  while (n > 1) {
    s += (uint32_t)(p[0] << 8 | p[1]);
    p += 2;
    n -= 2;
  }
  if (n) s += (uint32_t)(p[0] << 8);
  return s;
}

static uint16_t fold(uint64_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)s;
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = v >> 8;
  p[1] = v & 0xff;
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void put32(uint8_t *p, uint32_t v) {
  p[0] = v >> 24;
  p[1] = (v >> 16) & 0xff;
  p[2] = (v >> 8) & 0xff;
  p[3] = v & 0xff;
}

/* Pseudo-header sum for an L4 segment of l4len bytes. */
static uint64_t pseudo(const uint8_t *ip, int v4, uint8_t proto, uint32_t l4len) {
  uint64_t s = 0;
  if (v4) s = sum16(ip + 12, 8, 0);
  else s = sum16(ip + 8, 32, 0);
  return s + proto + (l4len & 0xffff) + (l4len >> 16);
}

/* Fills in the L4 checksum of a whole segment at l4 (field at l4+coff). */
static void l4_csum(uint8_t *f, int l3, int l4, int len, int v4, uint8_t proto, int coff) {
  put16(f + l4 + coff, 0);
  uint16_t c = (uint16_t)~fold(sum16(f + l4, (size_t)(len - l4), pseudo(f + l3, v4, proto, (uint32_t)(len - l4))));
  if (proto == IPPROTO_UDP && c == 0) c = 0xffff;
  put16(f + l4 + coff, c);
}

static void ip_fix(uint8_t *f, int l3, int v4, int len, uint16_t id) {
  if (v4) {
    int ihl = (f[l3] & 15) * 4;
    put16(f + l3 + 2, (uint16_t)(len - l3));
    put16(f + l3 + 4, id);
    put16(f + l3 + 10, 0);
    put16(f + l3 + 10, (uint16_t)~fold(sum16(f + l3, (size_t)ihl, 0)));
  } else {
    put16(f + l3 + 4, (uint16_t)(len - l3 - 40));
  }
}

/* ---- the delay line (one min-heap over both directions, by release time then arrival order) ---- */

static int before(int a, int b) {
  return slots[a].t < slots[b].t || (slots[a].t == slots[b].t && slots[a].seq < slots[b].seq);
}

static void heap_push(int s) {
  int i = heap_n++;
  heap[i] = s;
  while (i > 0) {
    int par = (i - 1) / 2;
    if (!before(heap[i], heap[par])) break;
    int t = heap[i];
    heap[i] = heap[par];
    heap[par] = t;
    i = par;
  }
}

static int heap_pop(void) {
  int top = heap[0];
  heap[0] = heap[--heap_n];
  int i = 0;
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < heap_n && before(heap[l], heap[m])) m = l;
    if (r < heap_n && before(heap[r], heap[m])) m = r;
    if (m == i) break;
    int t = heap[i];
    heap[i] = heap[m];
    heap[m] = t;
    i = m;
  }
  return top;
}

/* One wire packet entering direction d: loss, duplication, rate/queue, delay, jitter, reordering. */
static void wire(int d, const uint8_t *f, int len) {
  struct dir *D = &dirs[d];
  D->st.wire++;
  if (len > D->out_max) {
    D->st.toobig++;
    return;
  }
  if (D->p.loss > 0 && rnd() < D->p.loss) {
    D->st.lost++;
    return;
  }
  int copies = 1;
  if (D->p.dup > 0 && rnd() < D->p.dup) {
    copies = 2;
    D->st.dup++;
  }
  for (int c = 0; c < copies; c++) {
    if (D->free_top == 0) {
      D->st.pooldrop++;
      return;
    }
    uint64_t now = now_ns();
    uint64_t tx = now;
    if (D->p.rate_kbit > 0) {
      double bps = D->p.rate_kbit * 1000.0;
      uint64_t backlog_ns = D->serializer_free_ns > now ? D->serializer_free_ns - now : 0;
      double backlog_bytes = (double)backlog_ns * bps / 8e9;
      if (backlog_bytes + len > (double)D->p.queue_bytes) {
        D->st.qdrop++;
        continue;
      }
      uint64_t start = D->serializer_free_ns > now ? D->serializer_free_ns : now;
      D->serializer_free_ns = start + (uint64_t)((double)len * 8e9 / bps);
      tx = D->serializer_free_ns;
    }
    double delay = D->p.delay_ms;
    if (D->p.jitter_ms > 0) {
      if (D->p.normal) {
        double j = rnd_normal();
        if (j > 3) j = 3;
        if (j < -3) j = -3;
        delay += j * D->p.jitter_ms;
      } else {
        delay += (2 * rnd() - 1) * D->p.jitter_ms;
      }
    }
    if (D->p.reorder > 0 && rnd() < D->p.reorder) {
      delay = 0;
      D->st.reordered++;
    }
    if (delay < 0) delay = 0;
    int s = D->free_list[--D->free_top];
    memcpy(slot_data + (size_t)s * (size_t)slot_size, f, (size_t)len);
    slots[s].len = (uint32_t)len;
    slots[s].dir = (uint8_t)d;
    slots[s].seq = seq_counter++;
    slots[s].t = tx + (uint64_t)(delay * 1e6);
    heap_push(s);
  }
}

/* ---- segmentation of offload super-frames --------------------------------------------------- */

static void handle(int d, const struct virtio_net_hdr *vh, uint8_t *f, int len) {
  struct dir *D = &dirs[d];
  D->st.rx++;
  int gso = vh->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  int needs = vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM;
  if (gso == VIRTIO_NET_HDR_GSO_NONE) {
    if (needs) {
      int cs = vh->csum_start, co = vh->csum_offset;
      if (cs + co + 2 > len) {
        D->st.bad++;
        return;
      }
      put16(f + cs + co, (uint16_t)~fold(sum16(f + cs, (size_t)(len - cs), 0)));
      if (co == 6 && get16(f + cs + co) == 0) put16(f + cs + co, 0xffff); /* UDP: 0 means "no checksum" */
      D->st.csum++;
    }
    wire(d, f, len);
    return;
  }
  D->st.rx_super++;
  if (len < 14) {
    D->st.bad++;
    return;
  }
  int l3 = 14;
  uint16_t et = get16(f + 12);
  if (et == ETH_P_8021Q) {
    et = get16(f + 16);
    l3 = 18;
  }
  int v4 = et == ETH_P_IP;
  if (!v4 && et != ETH_P_IPV6) {
    D->st.bad++;
    return;
  }
  int l4 = v4 ? l3 + (f[l3] & 15) * 4 : l3 + 40;
  if (needs) l4 = vh->csum_start; /* skips IPv6 extension headers too */
  int mss = vh->gso_size;
  if (mss <= 0 || l4 + 8 > len) {
    D->st.bad++;
    return;
  }
  uint16_t id0 = v4 ? get16(f + l3 + 4) : 0;
  if (gso == VIRTIO_NET_HDR_GSO_TCPV4 || gso == VIRTIO_NET_HDR_GSO_TCPV6) {
    int thl = (f[l4 + 12] >> 4) * 4;
    int hl = l4 + thl;
    if (thl < 20 || hl > len) {
      D->st.bad++;
      return;
    }
    int pay = len - hl;
    uint32_t seq0 = get32(f + l4 + 4);
    uint8_t flags0 = f[l4 + 13];
    int i = 0;
    int off = 0;
    do {
      int n = pay - off < mss ? pay - off : mss;
      int last = off + n >= pay;
      memcpy(segbuf, f, (size_t)hl);
      memcpy(segbuf + hl, f + hl + off, (size_t)n);
      put32(segbuf + l4 + 4, seq0 + (uint32_t)off);
      uint8_t fl = flags0;
      if (!last) fl &= (uint8_t)~(0x01 | 0x08); /* FIN, PSH only on the last segment */
      if (off > 0) fl &= (uint8_t)~0x80;        /* CWR only on the first */
      segbuf[l4 + 13] = fl;
      ip_fix(segbuf, l3, v4, hl + n, (uint16_t)(id0 + i));
      l4_csum(segbuf, l3, l4, hl + n, v4, IPPROTO_TCP, 16);
      D->st.segs++;
      wire(d, segbuf, hl + n);
      off += n;
      i++;
    } while (off < pay);
  } else if (gso == VIRTIO_NET_HDR_GSO_UDP_L4) {
    int hl = l4 + 8;
    int pay = len - hl;
    int i = 0;
    int off = 0;
    do {
      int n = pay - off < mss ? pay - off : mss;
      memcpy(segbuf, f, (size_t)hl);
      memcpy(segbuf + hl, f + hl + off, (size_t)n);
      put16(segbuf + l4 + 4, (uint16_t)(8 + n));
      ip_fix(segbuf, l3, v4, hl + n, (uint16_t)(id0 + i));
      l4_csum(segbuf, l3, l4, hl + n, v4, IPPROTO_UDP, 6);
      D->st.segs++;
      wire(d, segbuf, hl + n);
      off += n;
      i++;
    } while (off < pay);
  } else {
    D->st.bad++; /* UFO (IP fragmentation offload) and tunnel GSO are not produced on this testbed */
  }
}

/* ---- sockets and the loop ----------------------------------------------------------------- */

static int open_if(const char *name, int *mtu) {
  unsigned idx = if_nametoindex(name);
  if (!idx) {
    fprintf(stderr, "wanem: no interface %s\n", name);
    exit(2);
  }
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    perror("wanem: socket");
    exit(2);
  }
  int one = 1, big = 8 << 20;
  if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) {
    perror("wanem: PACKET_VNET_HDR");
    exit(2);
  }
  setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) < 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  struct packet_mreq mr = {.mr_ifindex = (int)idx, .mr_type = PACKET_MR_PROMISC};
  if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) {
    perror("wanem: promisc");
    exit(2);
  }
  struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)idx};
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
    perror("wanem: bind");
    exit(2);
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
  *mtu = ioctl(fd, SIOCGIFMTU, &ifr) == 0 ? ifr.ifr_mtu : 1500;
  return fd;
}

static void print_dir(FILE *o, const char *name, const struct dir *D) {
  const struct dstats *s = &D->st;
  fprintf(o,
          "\"%s\":{\"rx\":%llu,\"rxSuper\":%llu,\"segments\":%llu,\"wire\":%llu,\"lost\":%llu,\"duplicated\":%llu,"
          "\"reordered\":%llu,\"queueDrops\":%llu,\"poolDrops\":%llu,\"sent\":%llu,\"sendErrors\":%llu,\"bad\":%llu,"
          "\"tooBig\":%llu,\"csumCompleted\":%llu}",
          name, (unsigned long long)s->rx, (unsigned long long)s->rx_super, (unsigned long long)s->segs, (unsigned long long)s->wire,
          (unsigned long long)s->lost, (unsigned long long)s->dup, (unsigned long long)s->reordered, (unsigned long long)s->qdrop,
          (unsigned long long)s->pooldrop, (unsigned long long)s->sent, (unsigned long long)s->senderr, (unsigned long long)s->bad,
          (unsigned long long)s->toobig, (unsigned long long)s->csum);
}

static void print_stats(FILE *o) {
  fputc('{', o);
  print_dir(o, "a2b", &dirs[0]);
  fputc(',', o);
  print_dir(o, "b2a", &dirs[1]);
  fprintf(o, ",\"queued\":%d}\n", heap_n);
  fflush(o);
}

static char cmdbuf[4096];
static size_t cmdlen;

/* Returns 1 to quit. */
static int on_stdin(void) {
  ssize_t n = read(0, cmdbuf + cmdlen, sizeof cmdbuf - 1 - cmdlen);
  if (n == 0) return 1;
  if (n < 0) return errno == EINTR || errno == EAGAIN ? 0 : 1;
  cmdlen += (size_t)n;
  cmdbuf[cmdlen] = 0;
  char *line = cmdbuf, *nl;
  while ((nl = strchr(line, '\n'))) {
    *nl = 0;
    if (!strcmp(line, "stats")) print_stats(stdout);
    else if (!strcmp(line, "quit")) return 1;
    else if (!strncmp(line, "a2b ", 4) || !strncmp(line, "b2a ", 4) || !strncmp(line, "both ", 5)) {
      struct params p;
      int both = line[1] == 'o';
      if (parse_spec(line + (both ? 5 : 4), &p) < 0) {
        printf("error bad spec\n");
      } else {
        if (both || line[0] == 'a') dirs[0].p = p;
        if (both || line[0] == 'b') dirs[1].p = p;
        printf("ok\n");
      }
      fflush(stdout);
    } else if (*line) {
      printf("error unknown command\n");
      fflush(stdout);
    }
    line = nl + 1;
  }
  cmdlen = strlen(line);
  memmove(cmdbuf, line, cmdlen);
  if (cmdlen >= sizeof cmdbuf - 1) cmdlen = 0; /* an overlong line is dropped */
  return 0;
}

static void release_due(uint64_t now) {
  static uint8_t zero_hdr[sizeof(struct virtio_net_hdr)];
  while (heap_n > 0 && slots[heap[0]].t <= now + 20000) {
    int s = heap_pop();
    struct dir *D = &dirs[slots[s].dir];
    struct iovec iov[2] = {{zero_hdr, sizeof zero_hdr}, {slot_data + (size_t)s * (size_t)slot_size, slots[s].len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    if (sendmsg(D->out_fd, &mh, MSG_DONTWAIT) < 0) D->st.senderr++;
    else D->st.sent++;
    D->free_list[D->free_top++] = s;
  }
}

static void drain(int d) {
  static uint8_t buf[RXBUF];
  struct virtio_net_hdr vh;
  for (int i = 0; i < MAX_BATCH; i++) {
    struct sockaddr_ll from;
    struct iovec iov[2] = {{&vh, sizeof vh}, {buf, sizeof buf}};
    struct msghdr mh = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = iov, .msg_iovlen = 2};
    ssize_t n = recvmsg(dirs[d].in_fd, &mh, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      dirs[d].st.bad++; /* e.g. EINVAL for a GSO type the kernel cannot describe */
      continue;
    }
    if (from.sll_pkttype == PACKET_OUTGOING) continue;
    if ((mh.msg_flags & MSG_TRUNC) || n < (ssize_t)sizeof vh) {
      dirs[d].st.bad++;
      continue;
    }
    handle(d, &vh, buf, (int)(n - (ssize_t)sizeof vh));
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: wanem IF_A IF_B [--a2b SPEC] [--b2a SPEC] [--seed N] [--max-life SEC] [--slots N]\n");
    return 2;
  }
  pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) return 1; /* the parent died before prctl */
  long max_life = 900;
  nslots_per_dir = 4096;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--a2b") || !strcmp(argv[i], "--b2a")) {
      if (parse_spec(argv[i + 1], &dirs[argv[i][2] == 'a' ? 0 : 1].p) < 0) {
        fprintf(stderr, "wanem: bad spec %s\n", argv[i + 1]);
        return 2;
      }
    } else if (!strcmp(argv[i], "--seed")) {
      rng_state = strtoull(argv[i + 1], NULL, 0) * 0x9e3779b97f4a7c15ULL + 1;
    } else if (!strcmp(argv[i], "--max-life")) {
      max_life = strtol(argv[i + 1], NULL, 10);
    } else if (!strcmp(argv[i], "--slots")) {
      nslots_per_dir = atoi(argv[i + 1]);
      if (nslots_per_dir < 16 || nslots_per_dir > 65536) return 2;
    } else {
      fprintf(stderr, "wanem: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (max_life > 0) alarm((unsigned)max_life); /* SIGALRM's default action ends the process */
  signal(SIGPIPE, SIG_IGN);
  int mtu_a, mtu_b;
  int fa = open_if(argv[1], &mtu_a), fb = open_if(argv[2], &mtu_b);
  dirs[0].in_fd = fa;
  dirs[0].out_fd = fb;
  dirs[0].out_max = mtu_b + 14;
  dirs[1].in_fd = fb;
  dirs[1].out_fd = fa;
  dirs[1].out_max = mtu_a + 14;
  int maxmtu = mtu_a > mtu_b ? mtu_a : mtu_b;
  slot_size = ((maxmtu + 14 + 63) / 64) * 64;
  int total = 2 * nslots_per_dir;
  slots = calloc((size_t)total, sizeof *slots);
  slot_data = malloc((size_t)total * (size_t)slot_size);
  heap = calloc((size_t)total, sizeof *heap);
  for (int d = 0; d < 2; d++) {
    dirs[d].free_list = calloc((size_t)nslots_per_dir, sizeof(int));
    if (!dirs[d].free_list) return 3;
    for (int i = 0; i < nslots_per_dir; i++) dirs[d].free_list[dirs[d].free_top++] = d * nslots_per_dir + i;
  }
  if (!slots || !slot_data || !heap) return 3;
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  printf("ready\n");
  fflush(stdout);
  struct pollfd pf[3] = {{fa, POLLIN, 0}, {fb, POLLIN, 0}, {0, POLLIN, 0}};
  for (;;) {
    uint64_t now = now_ns();
    release_due(now);
    struct timespec ts = {1, 0};
    if (heap_n > 0) {
      uint64_t t = slots[heap[0]].t;
      uint64_t w = t > now ? t - now : 0;
      ts.tv_sec = (time_t)(w / 1000000000ULL);
      ts.tv_nsec = (long)(w % 1000000000ULL);
    }
    int r = ppoll(pf, 3, &ts, NULL);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    if (pf[0].revents & POLLIN) drain(0);
    if (pf[1].revents & POLLIN) drain(1);
    if (pf[2].revents & (POLLIN | POLLHUP | POLLERR)) {
      if (on_stdin()) break;
    }
    int gone = 0;
    for (int i = 0; i < 2; i++) {
      if (!(pf[i].revents & (POLLERR | POLLNVAL))) continue;
      int err = 0;
      socklen_t el = sizeof err;
      getsockopt(pf[i].fd, SOL_SOCKET, SO_ERROR, &err, &el); /* clears it */
      if (!if_nametoindex(argv[1 + i]) || (pf[i].revents & POLLNVAL)) gone = 1;
    }
    if (gone) break; /* an interface went away (the host was unplugged or moved) */
  }
  print_stats(stderr);
  return 0;
}
