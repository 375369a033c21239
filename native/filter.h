// The policy filter of the data-plane engine (filter.c): what a node lets in from its tunnels. Stateful: flows the
// node opened (recorded on the send path) get their replies; new flows must match the ports the policy allows from
// that peer. Registers filterCreate/filterSet/filterPacket; dataplane.c calls filter_in/filter_out per packet.
#ifndef CYPHONIC_FILTER_H
#define CYPHONIC_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <node_api.h>

typedef struct filter filter_t;

// The filter behind a filterCreate handle; NULL (no exception) for undefined or anything else.
filter_t *filter_from_value(napi_env env, napi_value v);
// An opened packet from the peer in `slot`: true = deliver it, false = drop (counted by reason).
bool filter_in(filter_t *f, int slot, const uint8_t *pkt, size_t n, uint64_t now_ms);
// A packet we send to the peer in `slot`: records (or refreshes) its flow so the replies pass. false = do not send
// it (the peer was revoked; counted).
bool filter_out(filter_t *f, int slot, const uint8_t *pkt, size_t n, uint64_t now_ms);
bool filter_register(napi_env env, napi_value exports);

#endif
