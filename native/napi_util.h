// Shared N-API argument helpers and sockaddr conversions (napi_util.c), used by cyphonic_native.c and dataplane.c.
// Helpers that can throw return 0 after throwing a JS exception, 1 on success.
#ifndef CYPHONIC_NAPI_UTIL_H
#define CYPHONIC_NAPI_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <node_api.h>

#define MAX_SAFE 9007199254740991LL  // Number.MAX_SAFE_INTEGER

// Throws an Error whose code is the errno name (EPERM...) and that carries `errno` and `syscall`.
void throw_errno(napi_env env, const char *syscall, int err);
// Bad arguments are programming errors: TypeError (range 0) or RangeError (range 1), code ERR_NATIVE_ARG.
int arg_error(napi_env env, int range, const char *msg);
// Fetches exactly `want` arguments (missing ones become undefined and fail their type checks).
int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
// A Uint8Array (Buffer or subarray): pointer to its first byte and its byte length.
int get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len, const char *what);
// An integral number in [lo, hi].
int get_int(napi_env env, napi_value v, int64_t lo, int64_t hi, int64_t *out, const char *what);
napi_value num(napi_env env, double d);
// A Uint32Array argument: pointer to its elements and their count.
int get_u32s(napi_env env, napi_value v, uint32_t **data, size_t *len, const char *what);
// Destination from raw bytes: 16 bytes -> AF_INET6, 4 -> AF_INET.
socklen_t fill_sockaddr(struct sockaddr_storage *ss, const uint8_t *addr, size_t alen, int64_t port);
// Source of a received datagram into 20 bytes: [0]=4|6, [2..3]=port (BE), [4..]=address; IPv4-mapped -> 4.
void write_meta(uint8_t *meta, const struct sockaddr_storage *ss);

// One exported function of the addon.
typedef struct {
  const char *name;
  napi_callback fn;
} export_fn;
// Sets exports[name] = a function calling fn, for each of the `n`; 0 if N-API refused one.
int export_fns(napi_env env, napi_value exports, const export_fn *fns, size_t n);

#endif
