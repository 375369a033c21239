# Probes for the policy e2e test (test/e2e/policy.test.ts), run inside a node's namespace:
#   python3 policy-probe.py serve SECS SPEC[,SPEC...]   listens on [::] (both families) on tcp:N / udp:N for SECS seconds,
#                                                       then prints {"tcp:N": connections, "udp:N": datagrams}
#   python3 policy-probe.py connect ADDR PORT           exit 0 when a TCP connection opens within 2 s, else 1
#   python3 policy-probe.py udp ADDR PORT COUNT         sends COUNT datagrams
#   python3 policy-probe.py raw SRC4 DST4 SRC6 DST6 PORT COUNT
#       an insider with a valid session writes packets the policy must refuse into its own TUN (raw sockets, our own
#       source addresses): a TCP SYN and a reply-shaped TCP ACK (from port 2222) to PORT, a UDP datagram from port 53
#       to PORT, an ICMP echo reply nobody asked for, per family
import json
import select
import socket
import struct
import sys
import time

mode = sys.argv[1]

if mode == "serve":
    secs = float(sys.argv[2])
    socks = {}
    for spec in sys.argv[3].split(","):
        proto, port = spec.split(":")
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", int(port)))
        if proto == "tcp":
            s.listen(16)
        socks[s] = spec
    counts = {spec: 0 for spec in socks.values()}
    print("ready", file=sys.stderr, flush=True)
    end = time.time() + secs
    while time.time() < end:
        r, _, _ = select.select(list(socks), [], [], max(0.0, end - time.time()))
        for s in r:
            spec = socks[s]
            if spec.startswith("tcp"):
                c, _ = s.accept()
                c.close()
            else:
                s.recvfrom(2048)
            counts[spec] += 1
    print(json.dumps(counts))
elif mode == "connect":
    try:
        socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=2).close()
        sys.exit(0)
    except OSError:
        sys.exit(1)
elif mode == "udp":
    fam = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    for _ in range(min(int(sys.argv[4]), 100)):
        s.sendto(b"probe", (sys.argv[2], int(sys.argv[3])))
        time.sleep(0.01)
elif mode == "raw":
    s4, d4, s6, d6, port, count = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
    tcp_syn = struct.pack("!HHIIBBHHH", 40000, port, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    tcp_ack = struct.pack("!HHIIBBHHH", 2222, port, 1, 1, 5 << 4, 0x10, 65535, 0, 0)
    udp = struct.pack("!HHHH", 53, port, 8 + 5, 0) + b"probe"
    def ip4(proto, body):
        return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0x4000, 64, proto, 0, socket.inet_aton(s4), socket.inet_aton(d4)) + body
    def ip6(nh, body):
        return struct.pack("!IHBB16s16s", 6 << 28, len(body), nh, 64, socket.inet_pton(socket.AF_INET6, s6), socket.inet_pton(socket.AF_INET6, d6)) + body
    r4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    r6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    packets4 = [ip4(6, tcp_syn), ip4(6, tcp_ack), ip4(17, udp), ip4(1, struct.pack("!BBHHH", 0, 0, 0, 4242, 1))]
    packets6 = [ip6(6, tcp_syn), ip6(6, tcp_ack), ip6(17, udp), ip6(58, struct.pack("!BBHHH", 129, 0, 0, 4242, 1))]
    for _ in range(min(count, 100)):
        for p in packets4:
            r4.sendto(p, (d4, 0))
        for p in packets6:
            r6.sendto(p, (d6, 0))
    print(json.dumps({"sent": 8 * min(count, 100)}))
