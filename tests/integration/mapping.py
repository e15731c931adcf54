"""Large WRITEs to a file on tmpfs land in the server's mapping of the file
as they arrive (conn.c, try_map_write): check what the file holds after
them, through a raw client that controls how the payload is cut up on the
wire, with simple, structured and extended headers.

usage: mapping.py PORT IMAGE data      writes, then compares the file
       mapping.py PORT IMAGE truncate  the file is cut to nothing while
                                         a payload is arriving, and a
                                         small WRITE follows
       mapping.py PORT IMAGE leave     a client leaves mid-payload"""
import os
import random
import sys
import time

from nbdraw import (Client, Closed, check, finish, CMD_WRITE, CMD_READ, FLAG_FUA, FLAG_DF,
                    TYPE_ERROR)

port, path, what = int(sys.argv[1]), sys.argv[2], sys.argv[3]
K, M = 1024, 1 << 20
rng = random.Random(7)


def connect(mode):
    c = Client(port, timeout=30)
    c.greeting()
    c.go_mode(mode)
    return c


def answer(c):
    """Error of the next reply to a WRITE, and its cookie (a simple reply's
    header only: a READ's data follows it)."""
    _magic, _flags, typ, cookie, data = c.chunk()
    if typ is None:  # simple reply: chunk() gives its error
        return data, cookie
    return (int.from_bytes(data[:4], "big") if typ == TYPE_ERROR else 0), cookie


def send_cut(c, offset, data, pieces, flags=0):
    """A WRITE whose payload leaves in the given number of pieces, with
    pauses between them, so that the server sees a header with part of the
    payload and then the rest in several reads."""
    c.request(CMD_WRITE, offset, len(data), flags, b"")
    cuts = sorted(rng.sample(range(1, len(data)), pieces - 1)) if pieces > 1 else []
    start = 0
    for end in cuts + [len(data)]:
        c.s.sendall(data[start:end])
        start = end
        time.sleep(0.01)
    return c.cookie


if what == "data":
    model = bytearray(open(path, "rb").read())
    for mode in ("simple", "structured", "extended"):
        c = connect(mode)
        cases = [
            (1000, 300 * K),            # unaligned offset, odd length
            (3 * M, 1 * M),             # aligned
            (5 * M + 1, 256 * K),       # exactly the threshold
            (7 * M, 256 * K - 1),       # just under it: the usual path
            (9 * M - 5, 2 * M + 11),    # across several MiB, unaligned ends
            (len(model) - M, M),        # the last MiB of the file
        ]
        pending = {}
        for offset, length in cases:
            data = rng.randbytes(length)
            # Header and payload in one send: the server's first read
            # brings part of the payload with the header (the head).
            cookie = c.request(CMD_WRITE, offset, length, 0, data)
            pending[cookie] = (offset, data)
        for _ in cases:
            err, cookie = answer(c)
            check(err == 0 and cookie in pending, f"{mode}: WRITE answered without error")
            offset, data = pending.pop(cookie, (0, b""))
            model[offset:offset + len(data)] = data
        # Payloads cut into pieces with pauses: reads that end mid-payload.
        for offset, length, pieces, flags in ((20 * M + 3, M, 5, 0), (22 * M, 3 * M, 9, FLAG_FUA)):
            data = rng.randbytes(length)
            cookie = send_cut(c, offset, data, pieces, flags)
            err, got = answer(c)
            check(err == 0 and got == cookie, f"{mode}: WRITE in {pieces} pieces answered")
            model[offset:offset + length] = data
        # Read back through the server too (DF: one data chunk).
        c.request(CMD_READ, 9 * M - 5, 2 * M + 11, FLAG_DF if mode != "simple" else 0)
        if mode == "simple":
            err, _ = answer(c)
            back = c.recv(2 * M + 11)
        else:
            _m, _f, typ, _ck, data = c.chunk()
            back = data[8:]
        check(back == bytes(model[9 * M - 5:9 * M + 2 * M + 6]), f"{mode}: read back")
        c.s.close()
    check(open(path, "rb").read() == bytes(model), "the file holds every WRITE, nothing else")

elif what == "truncate":
    # Header and 4 KiB of a 1 MiB payload; then the file goes to nothing;
    # then a small WRITE on another connection, made before the cut (so it
    # still sees the old size): its page is gone from the mapping, and the
    # server writes it by pwrite instead, which grows the file back. Then
    # the rest of the payload, which has nowhere to land: the connection
    # closes (the server says why), with no reply that claims success.
    c = connect("structured")
    small = connect("structured")
    c.request(CMD_WRITE, 32 * M, M, 0, rng.randbytes(4 * K))
    time.sleep(0.5)
    os.truncate(path, 0)
    data = rng.randbytes(4 * K)
    small.request(CMD_WRITE, 8 * M, 4 * K, 0, data)
    err, _ = answer(small)
    check(err == 0, f"a small WRITE after the cut: error {err}")
    check(os.path.getsize(path) == 8 * M + 4 * K, "the small WRITE grew the file back")
    with open(path, "rb") as f:
        f.seek(8 * M)
        check(f.read() == data, "the small WRITE after the cut is in the file")
    try:
        c.s.sendall(rng.randbytes(M - 4 * K))
        err, _ = answer(c)
        check(err != 0, f"a WRITE into a file cut short got error {err}, not success")
    except (Closed, ConnectionResetError, BrokenPipeError):
        check(True, "the connection closed")

elif what == "leave":
    c = connect("structured")
    c.request(CMD_WRITE, 40 * M, M, 0, rng.randbytes(300 * K))
    time.sleep(0.3)
    c.s.close()
    check(True, "left")

finish()
