# node-gyp recipe for cyphonic_native.node (TUN ioctl/read/write + reused AES-256-GCM contexts).
# OpenSSL comes from the node binary's exported symbols; headers from the Node include dir.
{
  "targets": [
    {
      "target_name": "cyphonic_native",
      "sources": ["cyphonic_native.c", "napi_util.c", "batch_io.c", "offload.c", "dataplane.c", "pmtu.c", "filter.c", "lan_frames.c", "lan_proxy.c", "lan_fast.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_c": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
