// Small N-API helpers shared by the addon's files: typed argument checks that throw TypeError/RangeError
// (code ERR_NATIVE_ARG) and errno errors, plus socket-address conversions between JS byte arrays and sockaddrs.
// Every helper that can throw returns 0 after throwing a JS exception and 1 on success.
#define _GNU_SOURCE  // strerrorname_np
#include "napi_util.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

// Throws an Error whose code is the errno name (EPERM...) and that carries `errno` and `syscall`.
void throw_errno(napi_env env, const char *syscall, int err) {
  char msg[160];
  const char *name = strerrorname_np(err);
  snprintf(msg, sizeof msg, "%s: %s", syscall, strerror(err));
  napi_value code, text, error, num, sys;
  napi_create_string_utf8(env, name ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &error);
  napi_create_int32(env, -err, &num);
  napi_set_named_property(env, error, "errno", num);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys);
  napi_set_named_property(env, error, "syscall", sys);
  napi_throw(env, error);
}

// Bad arguments are programming errors: TypeError/RangeError with code ERR_NATIVE_ARG.
int arg_error(napi_env env, int range, const char *msg) {
  if (range) napi_throw_range_error(env, "ERR_NATIVE_ARG", msg);
  else napi_throw_type_error(env, "ERR_NATIVE_ARG", msg);
  return 0;
}

// Fetches exactly `want` arguments (missing ones become undefined and fail their type checks).
int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  return 1;
}

// A Uint8Array (Buffer or subarray): pointer to its first byte and its byte length.
int get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len, const char *what) {
  napi_typedarray_type type;
  void *ptr = NULL;
  // napi_get_typedarray_info itself fails (napi_invalid_arg) on anything that is not a typed array.
  if (napi_get_typedarray_info(env, v, &type, len, &ptr, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a Buffer or Uint8Array", what);
    return arg_error(env, 0, msg);
  }
  *data = ptr;
  return 1;
}

// An integral number in [lo, hi] (doubles are checked, so 1.5, NaN and 2^53 are all rejected).
int get_int(napi_env env, napi_value v, int64_t lo, int64_t hi, int64_t *out, const char *what) {
  double d;
  char msg[96];
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    snprintf(msg, sizeof msg, "%s must be a number", what);
    return arg_error(env, 0, msg);
  }
  if (!(d >= (double)lo && d <= (double)hi) || d != (double)(int64_t)d) {
    snprintf(msg, sizeof msg, "%s out of range", what);
    return arg_error(env, 1, msg);
  }
  *out = (int64_t)d;
  return 1;
}

napi_value num(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

// A Uint32Array argument: pointer to its elements and their count.
int get_u32s(napi_env env, napi_value v, uint32_t **data, size_t *len, const char *what) {
  bool is_ta = false;
  napi_typedarray_type t;
  void *ptr = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &t, len, &ptr, NULL, NULL) != napi_ok || t != napi_uint32_array) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a Uint32Array", what);
    return arg_error(env, 0, msg);
  }
  *data = ptr;
  return 1;
}

// Destination from raw bytes: 16 bytes -> AF_INET6 (dual-stack sockets get IPv4 as ::ffff:a.b.c.d), 4 -> AF_INET.
socklen_t fill_sockaddr(struct sockaddr_storage *ss, const uint8_t *addr, size_t alen, int64_t port) {
  memset(ss, 0, sizeof *ss);
  if (alen == 16) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    memcpy(&a->sin6_addr, addr, 16);
    return sizeof *a;
  }
  struct sockaddr_in *a = (struct sockaddr_in *)ss;
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)port);
  memcpy(&a->sin_addr, addr, 4);
  return sizeof *a;
}

// Source of a received datagram into 20 bytes: [0]=4|6, [2..3]=port (BE), [4..]=address; IPv4-mapped -> 4.
void write_meta(uint8_t *meta, const struct sockaddr_storage *ss) {
  memset(meta, 0, 20);
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    memcpy(&meta[2], &a->sin6_port, 2);
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
      meta[0] = 4;
      memcpy(&meta[4], &a->sin6_addr.s6_addr[12], 4);
    } else {
      meta[0] = 6;
      memcpy(&meta[4], &a->sin6_addr, 16);
    }
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    meta[0] = 4;
    memcpy(&meta[2], &a->sin_port, 2);
    memcpy(&meta[4], &a->sin_addr, 4);
  }
}


int export_fns(napi_env env, napi_value exports, const export_fn *fns, size_t n) {
  for (size_t i = 0; i < n; i++) {
    napi_value f;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, f) != napi_ok)
      return 0;
  }
  return 1;
}
