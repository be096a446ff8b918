#!/usr/bin/python3
"""A UDP client through socks5d with PySocks (Debian's python3-socks), the
way its users write one: a socksocket of type SOCK_DGRAM, set_proxy with a
user name and password, bind, then sendto and recvfrom.

Usage: pysocks_udp_client.py PROXY_PORT TARGET_PORT COUNT REMOTE_DNS
The proxy and the target (a UDP echo) are on 127.0.0.1. The user name and
password are in SOCKS_TEST_USER and SOCKS_TEST_PASSWORD. REMOTE_DNS is
"yes" or "no", PySocks' rdns: with "yes" (its default) PySocks sends the
UDP ASSOCIATE request's DST.ADDR as the name "0", with "no" as 0.0.0.0.

Sends COUNT datagrams one at a time, each answer must be the datagram
itself from the target; prints one line per answer, exits 1 on the first
wrong or missing one. tests/udp_bind_clients.rs runs it.
"""

import os
import socket
import sys

import socks

proxy_port, target_port, count = (int(a) for a in sys.argv[1:4])
remote_dns = sys.argv[4] == "yes"
target = ("127.0.0.1", target_port)

s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
s.set_proxy(
    socks.SOCKS5,
    "127.0.0.1",
    proxy_port,
    rdns=remote_dns,
    username=os.environ["SOCKS_TEST_USER"],
    password=os.environ["SOCKS_TEST_PASSWORD"],
)
s.settimeout(10.0)
s.bind(("127.0.0.1", 0))
for i in range(count):
    sent = b"datagram %d through PySocks" % i
    s.sendto(sent, target)
    try:
        data, sender = s.recvfrom(65535)
    except socket.timeout:
        sys.exit(f"no answer to datagram {i} within 10 s")
    if (data, sender) != (sent, target):
        sys.exit(f"datagram {i}: got {data!r} from {sender}")
    print(f"answer {i}: {data.decode()} from {sender[0]}:{sender[1]}")
s.close()
