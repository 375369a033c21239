// The adapter's ARP / ND proxy fast path (lan_proxy.c): answers a general node's plain "who has X?" for an address
// the adapter already knows it answers for, on the LAN reader thread, without a trip through JavaScript. Anything
// else (probes, tagged frames, unknown targets, anything odd) is left to the TypeScript proxy
// (src/adapter/lan/proxy.ts), which stays the reference and does all the counting of skips.
#ifndef CYPHONIC_LAN_PROXY_H
#define CYPHONIC_LAN_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <node_api.h>

// Longest reply the fast path builds: an NA with one option (14 + 40 + 32).
#define LAN_PROXY_REPLY_MAX 128

// Which answer lan_proxy_answer built.
enum { LAN_PROXY_NONE = 0, LAN_PROXY_ARP = 1, LAN_PROXY_ND = 2 };

// If `frame` (an Ethernet frame read from packet socket `fd`) is an ARP request or a Neighbor Solicitation that the
// fast table of `fd` answers, writes the reply into `out` (LAN_PROXY_REPLY_MAX bytes), sets *out_len and returns
// LAN_PROXY_ARP or LAN_PROXY_ND; otherwise LAN_PROXY_NONE. Thread-safe against lanProxySet on another thread.
int lan_proxy_answer(int fd, const uint8_t *frame, size_t flen, uint8_t *out, size_t *out_len);

// Registers lanProxySet, lanProxyClear and lanProxyAnswer.
bool lan_proxy_register(napi_env env, napi_value exports);

#endif
