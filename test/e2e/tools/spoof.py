# Sends UDP packets with a forged source into the overlay, as an insider would: run inside a node's namespace, it
# writes raw IPv4 and IPv6 packets (src = another node's virtual address) that the kernel routes into the node's TUN,
# so its data plane seals them for the peer like any packet. The peer must drop them after decryption.
#   python3 spoof.py SRC4 DST4 SRC6 DST6 [COUNT]
import socket
import struct
import sys

s4, d4, s6, d6 = sys.argv[1:5]
count = int(sys.argv[5]) if len(sys.argv) > 5 else 3
udp = struct.pack("!HHHH", 40000, 9, 8 + 5, 0) + b"spoof"
ip4 = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, socket.inet_aton(s4), socket.inet_aton(d4)) + udp
ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(udp), 17, 64, socket.inet_pton(socket.AF_INET6, s6), socket.inet_pton(socket.AF_INET6, d6)) + udp
r4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
r6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
for _ in range(min(count, 100)):
    r4.sendto(ip4, (d4, 0))
    r6.sendto(ip6, (d6, 0))
