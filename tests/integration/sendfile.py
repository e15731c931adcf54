"""Large READs of a file on tmpfs leave by sendfile or from the server's
mapping of the file (conn.c): check what arrives, through a raw client
that pipelines many of them and reads late (so the socket fills and the
rest leaves when it drains), with structured, simple and extended replies.
With --truncate, the image is cut to nothing while such replies wait, and
the client must get its data or see the connection close, not hang.

usage: sendfile.py PORT IMAGE [--truncate]"""
import os
import sys
import time

from nbdraw import Client, Closed, check, finish, CMD_READ, TYPE_ERROR

port, path = int(sys.argv[1]), sys.argv[2]
image = open(path, "rb").read()
K, M = 1024, 1 << 20


def payload(c, chunks, offset, length):
    out = bytearray(length)
    for _magic, _flags, typ, _cookie, data in chunks:
        if typ is None:  # simple reply: the data follows
            check(data == 0, f"simple reply error {data}")
            return c.recv(length)
        if typ == 1:
            o = int.from_bytes(data[:8], "big") - offset
            out[o:o + len(data) - 8] = data[8:]
        elif typ == 2:
            o = int.from_bytes(data[:8], "big") - offset
            n = int.from_bytes(data[8:12], "big")
            out[o:o + n] = bytes(n)
        elif typ == TYPE_ERROR:
            check(False, f"error chunk at {offset}")
    return bytes(out)


def reads(mode, ranges, late):
    c = Client(port)
    c.greeting()
    c.go_mode(mode)
    # Replies may come in any order (a READ from memory is answered at
    # once, one with a hole after a worker has read it): by cookie.
    pending = {c.request(CMD_READ, o, n): (o, n) for o, n in ranges}
    if late:
        time.sleep(1)  # the replies pile up: the socket fills
    for _ in ranges:
        if mode == "simple":
            magic = int.from_bytes(c.recv(4), "big")
            err = int.from_bytes(c.recv(4), "big")
            cookie = int.from_bytes(c.recv(8), "big")
            check(magic == 0x67446698 and err == 0 and cookie in pending, "simple header")
            if cookie not in pending:
                break
            o, n = pending.pop(cookie)
            data = c.recv(n)
        else:
            chunks = c.chunks()
            cookie = chunks[0][3]
            check(cookie in pending, f"unknown cookie {cookie}")
            if cookie not in pending:
                break
            o, n = pending.pop(cookie)
            data = payload(c, chunks, o, n)
        check(data == image[o:o + n], f"{mode}: data of [{o}, +{n})")
    c.s.close()


def truncated():
    """32 MiB READs pile up in the socket; then the file loses its data."""
    c = Client(port, timeout=20)
    c.greeting()
    c.go("", meta=False)
    cookies = [c.request(CMD_READ, 16 * M, 32 * M) for _ in range(8)]
    time.sleep(1)
    os.truncate(path, 0)
    got = 0
    try:
        for cookie in cookies:
            chunks = c.chunks()
            check(chunks[0][3] == cookie, f"cookie {chunks[0][3]} != {cookie}")
            payload(c, chunks, 16 * M, 32 * M)
            got += 1
    except (Closed, ConnectionError):
        pass
    print(f"truncated: {got} of {len(cookies)} replies whole before the end")
    c.s.close()


ranges = [(0, M), (64 * K, 64 * K), (3 * M + 512, 2 * M - 1024), (5 * M, 8 * M),
          (len(image) - M, M), (20 * M, 32 * M)]
if sys.argv[3:] == ["--truncate"]:
    truncated()
else:
    for mode in ("structured", "simple", "extended"):
        reads(mode, ranges, late=False)
        reads(mode, ranges * 3, late=True)
finish()
