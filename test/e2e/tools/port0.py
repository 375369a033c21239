# Sends UDP datagrams from source port 0 (which no socket can send from: a raw IPv4 socket builds them), as a hostile
# host would: signaling-shaped frames (a 28-byte cyphonic header of TYPE, then junk) that reach a daemon's handlers.
# With SPORT, from that source port instead (e.g. from an overlay address, which is never an underlay endpoint).
#   python3 port0.py SRC DST DPORT TYPE [COUNT [SPORT]]
import os
import socket
import struct
import sys

src, dst, dport, mtype = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
count = min(int(sys.argv[5]) if len(sys.argv) > 5 else 5, 100)
sport = int(sys.argv[6]) if len(sys.argv) > 6 else 0
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(count):
    body = os.urandom(64)
    frame = struct.pack("!BBHIQQHH", 1, mtype, 0, i + 1, (i + 1) << 16, 0x1234, len(body), 0) + body
    udp = struct.pack("!HHHH", sport, dport, 8 + len(frame), 0) + frame
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst)) + udp
    r.sendto(ip, (dst, 0))
