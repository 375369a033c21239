// The latency floor for bench/rtt.ts: the least a user-space TUN ⇄ UDP tunnel with AES-256-GCM can do on this
// machine. One thread, one poll() over TUN and UDP, each packet sealed or opened with a reused OpenSSL context
// (nonce = counter, the 16-byte tag appended, no header, no replay window, one peer); received packets first, then
// what the TUN has (an echo reply queued by the TUN write leaves in the same turn, as in the engine). Not part of the product:
// bench/rtt.ts builds it with gcc against Node's bundled OpenSSL headers and the system libcrypto, runs it in two
// namespaces and pings through it beside veth and cyphonic, so the table shows how much of the added RTT any
// user-space tunnel pays here (wake-ups, kernel crossings) and how much is ours.
//
// usage: relay TUN_NAME PEER_IPV4 PORT KEY_HEX(64) SECONDS [plain]   — exits by itself after SECONDS.
// plain: no crypto at all (packets go as they are), to split the floor into wake-ups/kernel and cipher.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int hexkey(const char *s, unsigned char *k) {
  if (strlen(s) != 64) return 0;
  for (int i = 0; i < 32; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) return 0;
    k[i] = (unsigned char)v;
  }
  return 1;
}

int main(int argc, char **argv) {
  unsigned char key[32];
  if (argc < 6 || argc > 7 || !hexkey(argv[4], key) || (argc == 7 && strcmp(argv[6], "plain") != 0)) {
    fprintf(stderr, "usage: relay TUN_NAME PEER_IPV4 PORT KEY_HEX(64) SECONDS [plain]\n");
    return 2;
  }
  int plain = argc == 7;
  int port = atoi(argv[3]), seconds = atoi(argv[5]);
  int tun = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
  if (tun < 0 || ioctl(tun, TUNSETIFF, &ifr) < 0) {
    perror("tun");
    return 1;
  }
  int udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, argv[2], &peer.sin_addr) != 1 || bind(udp, (struct sockaddr *)&me, sizeof me) < 0 ||
      connect(udp, (struct sockaddr *)&peer, sizeof peer) < 0) {
    perror("udp");
    return 1;
  }
  EVP_CIPHER_CTX *enc = EVP_CIPHER_CTX_new(), *dec = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(enc, EVP_aes_256_gcm(), NULL, key, NULL);
  EVP_DecryptInit_ex(dec, EVP_aes_256_gcm(), NULL, key, NULL);
  unsigned char in[2048], out[2048 + 32], nonce[12] = {0};
  uint64_t counter = 0;
  time_t end = time(NULL) + seconds;
  struct pollfd fds[2] = {{.fd = tun, .events = POLLIN}, {.fd = udp, .events = POLLIN}};
  while (time(NULL) < end) {
    if (poll(fds, 2, 200) <= 0) continue;
    for (;;) {  // UDP → open → TUN
      ssize_t n = recv(udp, in, sizeof in, 0);
      if (n <= 0) break;
      if (plain) {
        if (write(tun, in, (size_t)n) < 0) continue;
        continue;
      }
      if (n < 24) continue;
      int l, ct = (int)n - 24;
      memcpy(nonce + 4, in, 8);
      EVP_DecryptInit_ex(dec, NULL, NULL, NULL, nonce);
      EVP_DecryptUpdate(dec, out, &l, in + 8, ct);
      EVP_CIPHER_CTX_ctrl(dec, EVP_CTRL_GCM_SET_TAG, 16, in + 8 + ct);
      if (EVP_DecryptFinal_ex(dec, out + ct, &l) != 1) continue;
      if (write(tun, out, (size_t)ct) < 0) continue;  // EIO until the TUN is up
    }
    for (;;) {  // TUN → seal → UDP
      ssize_t n = read(tun, in, sizeof in);
      if (n <= 0) break;
      if (plain) {
        if (send(udp, in, (size_t)n, 0) < 0) break;
        continue;
      }
      int l;
      counter++;
      memcpy(nonce + 4, &counter, 8);
      memcpy(out, nonce + 4, 8);
      EVP_EncryptInit_ex(enc, NULL, NULL, NULL, nonce);
      EVP_EncryptUpdate(enc, out + 8, &l, in, (int)n);
      EVP_EncryptFinal_ex(enc, out + 8 + n, &l);
      EVP_CIPHER_CTX_ctrl(enc, EVP_CTRL_GCM_GET_TAG, 16, out + 8 + n);
      if (send(udp, out, (size_t)n + 24, 0) < 0) break;
    }
  }
  return 0;
}
