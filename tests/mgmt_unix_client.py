#!/usr/bin/env python3
"""An independent client of the socks5d management protocol over its
Unix-domain socket, written from docs/management-protocol.md with Python's
own socket module (AF_UNIX, SOCK_SEQPACKET) and nothing of socks5d's code,
so that a misreading of the protocol shared by socks5d and socks5dctl
cannot hide itself.

Usage: mgmt_unix_client.py SOCKET ADMIN
The administrator's password is in SOCKS5D_TEST_PASSWORD. The server must
run with a users file (RELOAD then succeeds), ADMIN must be its only
administrator, and no user named "pyuser" may exist.

Prints a PASS or FAIL line per step and "N passed, N failed" at the end;
exits 1 if anything failed. tests/mgmt/local.rs runs it.
"""

import os
import socket
import struct
import sys

TIMEOUT = 10.0
passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {what}")
    else:
        failed += 1
        print(f"FAIL {what}")
    sys.stdout.flush()


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(TIMEOUT)
    s.connect(path)
    return s


def string(b):
    return bytes([len(b)]) + b


def login_msg(user, password):
    return b"\x01" + string(user) + string(password)


def exchange(s, msg):
    s.send(msg)
    return s.recv(70000)


def closed(s):
    """Whether the server has closed: the next read is the end."""
    try:
        return s.recv(70000) == b""
    except ConnectionResetError:
        return True


def u32(b, at):
    return struct.unpack_from(">I", b, at)[0]


def u16(b, at):
    return struct.unpack_from(">H", b, at)[0]


def u64(b, at):
    return struct.unpack_from(">Q", b, at)[0]


def metrics_ids(resp):
    """The IDs of a METRICS response, or None if it is malformed."""
    if resp[:3] != b"\x01\x00\x04" or len(resp) < 4:
        return None
    n = resp[3]
    if len(resp) != 4 + 9 * n:
        return None
    return [resp[4 + 9 * i] for i in range(n)]


def user_metrics_names(resp):
    """(TOTAL, names) of a USER_METRICS response, or None if malformed."""
    if resp[:3] != b"\x01\x00\x09" or len(resp) < 9:
        return None
    total, count, at, names = u32(resp, 3), u16(resp, 7), 9, []
    for _ in range(count):
        ulen = resp[at]
        names.append(resp[at + 1 : at + 1 + ulen])
        at += 1 + ulen
        n = resp[at]
        at += 1 + 9 * n
    return (total, names) if at == len(resp) else None


def main():
    path, admin = sys.argv[1], sys.argv[2].encode()
    password = os.environ["SOCKS5D_TEST_PASSWORD"].encode()

    # Section 3: failed log ins are answered, then the connection closes.
    for what, msg, status in [
        ("log in with VER 2", b"\x02" + login_msg(admin, password)[1:], 0x02),
        ("log in with a wrong password", login_msg(admin, b"not-it"), 0x01),
        ("log in with PLEN 0", b"\x01" + string(admin) + b"\x00", 0x04),
        ("log in of 2000 bytes", login_msg(admin, password) + b"x" * 1990, 0x04),
    ]:
        s = connect(path)
        check(exchange(s, msg) == bytes([1, status]), f"{what} -> 01 {status:02x}")
        check(closed(s), f"{what}: the server closes")
        s.close()

    s = connect(path)
    check(exchange(s, login_msg(admin, password)) == b"\x01\x00", "log in -> 01 00")

    for cmd, name in [(1, "HISTORIC"), (2, "CONCURRENT"), (3, "BYTES")]:
        r = exchange(s, bytes([1, cmd]))
        check(len(r) == 11 and r[:3] == bytes([1, 0, cmd]), f"{name}: a u64")

    ids = metrics_ids(exchange(s, b"\x01\x04"))
    check(ids is not None and all(i in ids for i in range(1, 9)), f"METRICS: IDs {ids}")

    r = exchange(s, b"\x01\x05\x00\x00\x00\x00")
    ok = r[:3] == b"\x01\x00\x05" and u32(r, 3) == 1 and u16(r, 7) == 1
    check(ok and r[9:] == b"\x01" + string(admin), "LIST_USERS: the administrator")

    add = b"\x01\x06\x00" + string(b"pyuser") + string(b"pw1")
    check(exchange(s, add) == b"\x01\x00\x06", "ADD_USER pyuser -> 01 00 06")
    check(exchange(s, add) == b"\x01\x04\x06", "ADD_USER pyuser again -> 01 04 06")
    setpw = b"\x01\x08" + string(b"pyuser") + string(b"pw2")
    check(exchange(s, setpw) == b"\x01\x00\x08", "SET_PASSWORD pyuser -> 01 00 08")

    got = user_metrics_names(exchange(s, b"\x01\x09\x00\x00\x00\x00"))
    check(
        got == (2, sorted([admin, b"pyuser"])),
        f"USER_METRICS: every user, in name order ({got})",
    )
    got = user_metrics_names(exchange(s, b"\x01\x09\x00\x00\x00\x02"))
    check(got == (2, []), "USER_METRICS past the end: COUNT 0")

    delete = b"\x01\x07" + string(b"pyuser")
    check(exchange(s, delete) == b"\x01\x00\x07", "DELETE_USER pyuser -> 01 00 07")
    check(exchange(s, delete) == b"\x01\x05\x07", "DELETE_USER pyuser again -> 01 05 07")
    check(exchange(s, b"\x01\x0a") == b"\x01\x00\x0a", "RELOAD -> 01 00 0a")
    check(exchange(s, b"\x01\x0a\x00") == b"\x01\x03\x0a", "RELOAD with ARGS -> 01 03 0a")

    # Sections 4 and 5: bad requests get a status; the session goes on.
    for what, msg, want in [
        ("CMD X'0B'", b"\x01\x0b", b"\x01\x02\x0b"),
        ("VER 2", b"\x02\x01", b"\x01\x01\x01"),
        ("one byte", b"\x01", b"\x01\x03\x00"),
        ("an empty packet", b"", b"\x01\x03\x00"),
        ("HISTORIC with a trailing byte", b"\x01\x01\x00", b"\x01\x03\x01"),
        ("a request of 1025 bytes", b"\x01\x01" + b"\x00" * 1023, b"\x01\x03\x01"),
        ("a request of 70000 bytes", b"\x01\x04" + b"\x00" * 69998, b"\x01\x03\x04"),
    ]:
        check(exchange(s, msg) == want, f"{what} -> {want.hex(' ')}")
    check(metrics_ids(exchange(s, b"\x01\x04")) is not None, "the session goes on")

    # Pipelined requests are answered in order, one packet each.
    for cmd in (1, 2, 3):
        s.send(bytes([1, cmd]))
    cmds = [s.recv(70000)[2] for _ in range(3)]
    check(cmds == [1, 2, 3], f"three pipelined requests answered in order ({cmds})")
    s.close()

    # A client that shuts its side down after asking still gets its answers.
    s = connect(path)
    s.send(login_msg(admin, password))
    s.send(b"\x01\x01")
    s.shutdown(socket.SHUT_WR)
    r1, r2 = s.recv(70000), s.recv(70000)
    check(r1 == b"\x01\x00" and r2[:3] == b"\x01\x00\x01", "answers after SHUT_WR")
    check(closed(s), "then the server closes")
    s.close()

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
