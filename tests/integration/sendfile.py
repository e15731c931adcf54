"""Large READs of a file on tmpfs leave by sendfile (conn.c): check what
arrives, through a raw client that pipelines many of them and reads late
(so the socket fills and the rest goes through the buffered path), with
structured, simple and extended replies.

usage: sendfile.py PORT IMAGE"""
import sys
import time

from nbdraw import Client, check, finish, CMD_READ, TYPE_ERROR

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
    if mode == "simple":
        d = b"\0\0\0\0\0\0"
        r = c.replies(7, d)
        check(r[-1][0] == 1, "GO without structured replies")
    else:
        c.go("", extended=(mode == "extended"), meta=False)
    cookies = [c.request(CMD_READ, o, n) for o, n in ranges]
    if late:
        time.sleep(1)  # the replies pile up: the socket fills
    for cookie, (o, n) in zip(cookies, ranges):
        if mode == "simple":
            magic = int.from_bytes(c.recv(4), "big")
            err = int.from_bytes(c.recv(4), "big")
            got_cookie = int.from_bytes(c.recv(8), "big")
            check(magic == 0x67446698 and err == 0 and got_cookie == cookie, "simple header")
            data = c.recv(n)
        else:
            chunks = c.chunks()
            check(chunks[0][3] == cookie, f"cookie {chunks[0][3]} != {cookie}")
            data = payload(c, chunks, o, n)
        check(data == image[o:o + n], f"{mode}: data of [{o}, +{n})")
    c.s.close()


ranges = [(0, M), (64 * K, 64 * K), (3 * M + 512, 2 * M - 1024), (5 * M, 8 * M),
          (len(image) - M, M), (20 * M, 32 * M)]
for mode in ("structured", "simple", "extended"):
    reads(mode, ranges, late=False)
    reads(mode, ranges * 3, late=True)
finish()
