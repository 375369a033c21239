// AES-256-GCM for short messages (pings, ACKs, handshakes' capsules) with AES-NI and PCLMULQDQ, used by
// aeadSeal/aeadOpen below a size threshold instead of OpenSSL's EVP path. The output is bit-identical (it is
// the same algorithm, NIST SP 800-38D, 96-bit IV, 128-bit tag); what changes is the instruction footprint: a
// few hundred bytes of straight-line code and 256 bytes of key material, against OpenSSL 3's provider dispatch.
// On a VM whose caches are cold after every idle gap, footprint is what a lone packet waits for.
//
//   seal: J0 = IV ‖ 1;  C = P ⊕ AES(J0+1, J0+2, …);  S = GHASH_H(A ‖ 0* ‖ C ‖ 0* ‖ len(A) ‖ len(C));
//         tag = AES(J0) ⊕ S, where H = AES(0^128)
//   open: S over A and C first; the plaintext is written only if the tag matches (constant-time compare).
//
// GHASH works on byte-reversed blocks so that PCLMULQDQ's bit order lines up (the "reflected" method: a carry-less
// 128×128 product, shifted left one bit, reduced modulo x^128 + x^7 + x^2 + x + 1).
#include "gcm_small.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TGT __attribute__((target("aes,pclmul,ssse3")))

struct gcm_small {
  __m128i rk[15];  // AES-256 round keys
  __m128i h;       // H = AES(0), byte-reversed for GHASH
};

int gcm_small_supported(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("ssse3");
}

// Each 32-bit lane becomes the xor of itself and all lower lanes (the w[i] = w[i-1] ^ … chain of one round key).
TGT static __m128i prefix_xor(__m128i k) {
  __m128i t = _mm_slli_si128(k, 4);
  k = _mm_xor_si128(k, t);
  t = _mm_slli_si128(t, 4);
  k = _mm_xor_si128(k, t);
  t = _mm_slli_si128(t, 4);
  return _mm_xor_si128(k, t);
}

// Even round keys: SubWord(RotWord(last word)) ^ rcon; odd ones: SubWord(last word). Both from AESKEYGENASSIST.
#define EVEN_KEY(i, rcon) \
  rk[i] = _mm_xor_si128(prefix_xor(rk[(i) - 2]), _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[(i) - 1], rcon), 0xff))
#define ODD_KEY(i) \
  rk[i] = _mm_xor_si128(prefix_xor(rk[(i) - 2]), _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[(i) - 1], 0), 0xaa))

TGT static __m128i aes_block(const __m128i *rk, __m128i x) {
  x = _mm_xor_si128(x, rk[0]);
  for (int i = 1; i < 14; i++) x = _mm_aesenc_si128(x, rk[i]);
  return _mm_aesenclast_si128(x, rk[14]);
}

TGT static __m128i bswap128(__m128i x) {
  return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

// a·b in GF(2^128), both byte-reversed (see above).
TGT static __m128i gf_mul(__m128i a, __m128i b) {
  __m128i lo = _mm_clmulepi64_si128(a, b, 0x00);
  __m128i hi = _mm_clmulepi64_si128(a, b, 0x11);
  __m128i mid = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x10), _mm_clmulepi64_si128(a, b, 0x01));
  lo = _mm_xor_si128(lo, _mm_slli_si128(mid, 8));
  hi = _mm_xor_si128(hi, _mm_srli_si128(mid, 8));
  // The product of reflected operands comes out one bit short: shift the 256-bit hi:lo left by one.
  __m128i lc = _mm_srli_epi32(lo, 31);
  __m128i hc = _mm_srli_epi32(hi, 31);
  lo = _mm_slli_epi32(lo, 1);
  hi = _mm_slli_epi32(hi, 1);
  hi = _mm_or_si128(hi, _mm_or_si128(_mm_slli_si128(hc, 4), _mm_srli_si128(lc, 12)));
  lo = _mm_or_si128(lo, _mm_slli_si128(lc, 4));
  // Reduce: fold the low half into the high half with the polynomial's x^7 + x^2 + x terms (two steps).
  __m128i s = _mm_xor_si128(_mm_xor_si128(_mm_slli_epi32(lo, 31), _mm_slli_epi32(lo, 30)), _mm_slli_epi32(lo, 25));
  __m128i carry = _mm_srli_si128(s, 4);
  lo = _mm_xor_si128(lo, _mm_slli_si128(s, 12));
  __m128i t = _mm_xor_si128(_mm_xor_si128(_mm_srli_epi32(lo, 1), _mm_srli_epi32(lo, 2)), _mm_srli_epi32(lo, 7));
  lo = _mm_xor_si128(lo, _mm_xor_si128(t, carry));
  return _mm_xor_si128(hi, lo);
}

// y ⊕= bytes (zero-padded to 16), y = y·H; for every 16-byte block of p[0..n).
TGT static __m128i ghash(__m128i y, __m128i h, const uint8_t *p, size_t n) {
  while (n > 0) {
    uint8_t blk[16] = {0};
    size_t k = n < 16 ? n : 16;
    memcpy(blk, p, k);
    y = gf_mul(_mm_xor_si128(y, bswap128(_mm_loadu_si128((const __m128i *)blk))), h);
    p += k;
    n -= k;
  }
  return y;
}

// Counter block i: IV ‖ BE32(i).
static __m128i ctr_block(const uint8_t iv[12], uint32_t i) {
  uint8_t b[16];
  memcpy(b, iv, 12);
  b[12] = (uint8_t)(i >> 24);
  b[13] = (uint8_t)(i >> 16);
  b[14] = (uint8_t)(i >> 8);
  b[15] = (uint8_t)i;
  return _mm_loadu_si128((const __m128i *)b);
}

// out = in ⊕ keystream from counter 2 on (in and out may be the same buffer).
TGT static void ctr_xor(const gcm_small_t *g, const uint8_t iv[12], const uint8_t *in, uint8_t *out, size_t n) {
  for (uint32_t i = 2; n > 0; i++) {
    uint8_t ks[16];
    _mm_storeu_si128((__m128i *)ks, aes_block(g->rk, ctr_block(iv, i)));
    size_t k = n < 16 ? n : 16;
    for (size_t j = 0; j < k; j++) out[j] = in[j] ^ ks[j];
    in += k;
    out += k;
    n -= k;
  }
}

// tag = AES(J0) ⊕ GHASH(A, C).
TGT static void tag_of(const gcm_small_t *g, const uint8_t iv[12], const uint8_t *aad, size_t alen, const uint8_t *ct, size_t clen, uint8_t tag[16]) {
  __m128i y = ghash(_mm_setzero_si128(), g->h, aad, alen);
  y = ghash(y, g->h, ct, clen);
  uint8_t lens[16];
  uint64_t ab = (uint64_t)alen * 8, cb = (uint64_t)clen * 8;
  for (int i = 0; i < 8; i++) {
    lens[i] = (uint8_t)(ab >> (56 - 8 * i));
    lens[8 + i] = (uint8_t)(cb >> (56 - 8 * i));
  }
  y = ghash(y, g->h, lens, 16);
  _mm_storeu_si128((__m128i *)tag, _mm_xor_si128(aes_block(g->rk, ctr_block(iv, 1)), bswap128(y)));
}

TGT void gcm_small_init(gcm_small_t *g, const uint8_t key[32]) {
  __m128i *rk = g->rk;
  rk[0] = _mm_loadu_si128((const __m128i *)key);
  rk[1] = _mm_loadu_si128((const __m128i *)(key + 16));
  EVEN_KEY(2, 0x01);
  ODD_KEY(3);
  EVEN_KEY(4, 0x02);
  ODD_KEY(5);
  EVEN_KEY(6, 0x04);
  ODD_KEY(7);
  EVEN_KEY(8, 0x08);
  ODD_KEY(9);
  EVEN_KEY(10, 0x10);
  ODD_KEY(11);
  EVEN_KEY(12, 0x20);
  ODD_KEY(13);
  EVEN_KEY(14, 0x40);
  g->h = bswap128(aes_block(rk, _mm_setzero_si128()));
}

size_t gcm_small_size(void) { return sizeof(gcm_small_t); }

void gcm_small_seal(const gcm_small_t *g, const uint8_t iv[12], const uint8_t *aad, size_t alen, const uint8_t *in, size_t n, uint8_t *out) {
  ctr_xor(g, iv, in, out, n);
  tag_of(g, iv, aad, alen, out, n, out + n);
}

int gcm_small_open(const gcm_small_t *g, const uint8_t iv[12], const uint8_t *aad, size_t alen, const uint8_t *in, size_t n, uint8_t *out) {
  uint8_t want[16];
  tag_of(g, iv, aad, alen, in, n, want);
  uint8_t diff = 0;
  for (int i = 0; i < 16; i++) diff |= (uint8_t)(want[i] ^ in[n + i]);
  if (diff != 0) return 0;
  ctr_xor(g, iv, in, out, n);
  return 1;
}

#else  // not x86: never supported, OpenSSL does all the work

struct gcm_small {
  uint8_t unused;
};
int gcm_small_supported(void) { return 0; }
size_t gcm_small_size(void) { return sizeof(gcm_small_t); }
void gcm_small_init(gcm_small_t *g, const uint8_t key[32]) { (void)g, (void)key; }
void gcm_small_seal(const gcm_small_t *g, const uint8_t iv[12], const uint8_t *aad, size_t alen, const uint8_t *in, size_t n, uint8_t *out) {}
int gcm_small_open(const gcm_small_t *g, const uint8_t iv[12], const uint8_t *aad, size_t alen, const uint8_t *in, size_t n, uint8_t *out) { return 0; }
#endif
