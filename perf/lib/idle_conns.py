#!/usr/bin/python3
"""Open N NBD connections to HOST:PORT, take each through a minimal fixed
newstyle handshake (NBD_OPT_GO on EXPORT) and then hold them idle.

  idle_conns.py HOST PORT EXPORT N READYFILE

Writes "OK <n_in_transmission> <n_connected_only>" to READYFILE once every
connection is open, then sleeps until it is killed (SIGTERM) or 600 s pass.
A connection whose handshake fails is kept open anyway (counted as
connected-only), so the server still holds N sockets.
"""
import signal
import socket
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLYMAGIC = 0x3E889045565A9
OPT_GO = 7
REP_ACK = 1
FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    return buf


def handshake(s, export):
    magic, opt, hflags = struct.unpack(">QQH", recv_exact(s, 18))
    if magic != NBDMAGIC or opt != IHAVEOPT:
        raise ValueError("not a fixed newstyle NBD server")
    cflags = FLAG_FIXED_NEWSTYLE | (hflags & FLAG_NO_ZEROES)
    name = export.encode()
    payload = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    s.sendall(struct.pack(">IQII", cflags, IHAVEOPT, OPT_GO, len(payload)) + payload)
    while True:
        rmagic, ropt, rtype, rlen = struct.unpack(">QIII", recv_exact(s, 20))
        if rmagic != REPLYMAGIC:
            raise ValueError("bad option reply magic")
        if rlen:
            recv_exact(s, rlen)
        if rtype == REP_ACK:
            return
        if rtype & 0x80000000:
            raise ValueError(f"option GO refused: reply type {rtype:#x}")


def main(argv):
    host, port, export, n, ready = argv[1], int(argv[2]), argv[3], int(argv[4]), argv[5]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    socks = []
    ok = bad = 0
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=10)
        try:
            handshake(s, export)
            ok += 1
        except (OSError, ValueError, ConnectionError) as e:
            bad += 1
            if bad == 1:
                sys.stderr.write(f"idle_conns: handshake failed: {e}\n")
        socks.append(s)
    with open(ready, "w") as f:
        f.write(f"OK {ok} {bad}\n")
    time.sleep(600)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
