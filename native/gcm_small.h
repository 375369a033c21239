// AES-256-GCM for short messages with AES-NI + PCLMULQDQ (see gcm_small.c): same output as OpenSSL's, smaller
// instruction footprint. Callers check gcm_small_supported() once and fall back to OpenSSL where it is 0.
#ifndef CYPHONIC_GCM_SMALL_H
#define CYPHONIC_GCM_SMALL_H

#include <stddef.h>
#include <stdint.h>

typedef struct gcm_small gcm_small_t;

// 1 when the CPU has AES-NI, PCLMULQDQ and SSSE3.
int gcm_small_supported(void);
// Bytes to allocate for a gcm_small_t (16-byte aligned).
size_t gcm_small_size(void);
// Expands the key (round keys and the GHASH key H).
void gcm_small_init(gcm_small_t *g, const uint8_t key[32]);
// Writes n bytes of ciphertext and the 16-byte tag at out[0..n+16); out may equal in.
void gcm_small_seal(const gcm_small_t *g, const uint8_t iv[12], const uint8_t *aad, size_t alen, const uint8_t *in, size_t n, uint8_t *out);
// in holds n bytes of ciphertext and the tag; returns 1 and writes n bytes of plaintext at out if the tag
// matches, else 0 and writes nothing. out may equal in.
int gcm_small_open(const gcm_small_t *g, const uint8_t iv[12], const uint8_t *aad, size_t alen, const uint8_t *in, size_t n, uint8_t *out);

#endif
