#!/usr/bin/env python3
"""METRICS round trips over SCTP: p50/p99/p99.9 in microseconds.

Usage: metrics_latency.py PORT ROUNDS USER PASSWORD [PACE_MS]
Logs in (docs/management-protocol.md section 3), then sends ROUNDS METRICS requests one at a
time on a one-to-one SCTP socket and prints one line of percentiles. With
PACE_MS, each request is sent that long after the previous one was sent (a
monitoring poller's way), not at once after its answer.
"""
import socket
import sys
import time


def main():
    port, rounds, user, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    pace = float(sys.argv[5]) / 1000 if len(sys.argv) > 5 else 0.0
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    u, p = user.encode(), password.encode()
    s.send(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
    if s.recv(16) != b"\x01\x00":
        sys.exit("log in refused")
    times = []
    next_at = time.monotonic()
    for _ in range(rounds):
        if pace:
            next_at += pace
            time.sleep(max(0.0, next_at - time.monotonic()))
        t0 = time.perf_counter_ns()
        s.send(b"\x01\x04")
        reply = s.recv(65536)
        times.append((time.perf_counter_ns() - t0) / 1000)
        if reply[:3] != b"\x01\x00\x04":
            sys.exit("bad METRICS reply: %r" % reply[:8])
    times.sort()

    def pct(q):
        return times[min(len(times) - 1, int(q * len(times)))]

    # How the slow ones spread: inside UML (HZ=100) a wait for the CPU
    # comes in steps of the 10 ms scheduler tick.
    edges = [1000, 2000, 5000, 10000, 20000]
    over = " ".join("over_%dms=%d" % (e // 1000, sum(t > e for t in times)) for e in edges)
    print("mgmt_metrics rounds=%d pace_ms=%g p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f %s"
          % (rounds, pace * 1000, pct(0.50), pct(0.99), pct(0.999), times[-1], over))


if __name__ == "__main__":
    main()
