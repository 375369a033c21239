// The data-plane engine (dataplane.c): registers dpCreate/dpInstall/dpPromote/dpEndpoint/dpSend/dpTurn/dpDestroy.
#ifndef CYPHONIC_DATAPLANE_H
#define CYPHONIC_DATAPLANE_H

#include <stdbool.h>
#include <node_api.h>

bool dataplane_register(napi_env env, napi_value exports);

#endif
