#!/usr/bin/env python3
"""METRICS round trips over SCTP: p50/p99/p99.9 in microseconds.

Usage: metrics_latency.py PORT ROUNDS USER PASSWORD
Logs in (PROTOCOL.md section 2), then sends ROUNDS METRICS requests one at a
time on a one-to-one SCTP socket and prints one line of percentiles.
"""
import socket
import sys
import time


def main():
    port, rounds, user, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    u, p = user.encode(), password.encode()
    s.send(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
    if s.recv(16) != b"\x01\x00":
        sys.exit("log in refused")
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        s.send(b"\x01\x04")
        reply = s.recv(65536)
        times.append((time.perf_counter_ns() - t0) / 1000)
        if reply[:3] != b"\x01\x00\x04":
            sys.exit("bad METRICS reply: %r" % reply[:8])
    times.sort()

    def pct(q):
        return times[min(len(times) - 1, int(q * len(times)))]

    print("mgmt_metrics rounds=%d p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f"
          % (rounds, pct(0.50), pct(0.99), pct(0.999), times[-1]))


if __name__ == "__main__":
    main()
