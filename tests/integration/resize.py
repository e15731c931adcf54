"""Online resize (the RESIZE extension) through a raw-socket client:
NBD_FLAG_SEND_RESIZE, NBD_CMD_RESIZE growing and shrinking an export, a
backing file grown underneath a running server, and bad requests.

usage: resize.py PORT FILE_EXPORT_PATH THIN_EXPORT"""
import os
import struct
import sys

from nbdraw import Client, check, finish, CMD_READ, CMD_WRITE, FLAG_FUA, TYPE_ERROR

CMD_RESIZE = 8
FLAG_SEND_RESIZE = 1 << 9
EINVAL, EPERM, ENOSPC = 22, 1, 28
K, M = 1024, 1 << 20

port, path, thin = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def connect(name, extended=False):
    c = Client(port)
    c.greeting()
    c.go(name, extended=extended)
    return c


def error_of(c, cmd, offset, length, flags=0, payload=b""):
    """Sends one request; returns its error (0 for success)."""
    c.request(cmd, offset, length, flags, payload)
    for _magic, _flags, typ, _cookie, data in c.chunks():
        if typ is None:
            return data
        if typ == TYPE_ERROR:
            return struct.unpack(">I", data[:4])[0]
    return 0


def read(c, offset, length):
    c.request(CMD_READ, offset, length)
    out = bytearray(length)
    for _magic, _flags, typ, _cookie, data in c.chunks():
        if typ == 1:  # OFFSET_DATA
            off = struct.unpack(">Q", data[:8])[0] - offset
            out[off:off + len(data) - 8] = data[8:]
        elif typ == TYPE_ERROR:
            return None
    return bytes(out)


def resize(c, size, length=0, flags=0):
    return error_of(c, CMD_RESIZE, size, length, flags)


# A file export offers RESIZE; the size follows the file.
a = connect("f")
check(a.tflags & FLAG_SEND_RESIZE, "file export lacks NBD_FLAG_SEND_RESIZE")
check(a.size == 1 * M, f"file export size {a.size}")
pat = os.urandom(4 * K)
check(error_of(a, CMD_WRITE, 0, len(pat), payload=pat) == 0, "write at 0")

# Grown underneath: connections are held to the old size until a handshake
# sees the new one, then every connection may use it.
os.truncate(path, 2 * M)
check(error_of(a, CMD_WRITE, 1536 * K, 4 * K, payload=pat) == ENOSPC,
      "write past the old end before any handshake saw the growth")
b = connect("f")
check(b.size == 2 * M, f"new handshake after truncate: size {b.size}")
check(error_of(a, CMD_WRITE, 1536 * K, 4 * K, payload=pat) == 0,
      "write past the old end on the old connection after the growth")
check(read(b, 1536 * K, 4 * K) == pat, "the other connection reads it back")

# NBD_CMD_RESIZE grows the file; the new space reads as zeroes.
check(resize(a, 3 * M) == 0, "RESIZE to 3M")
check(os.stat(path).st_size == 3 * M, f"file is {os.stat(path).st_size} bytes after RESIZE")
check(connect("f").size == 3 * M, "a new handshake sees 3M")
check(read(b, 2 * M, 64 * K) == bytes(64 * K), "grown space reads as zeroes")
check(error_of(b, CMD_WRITE, 3 * M - 4 * K, 4 * K, FLAG_FUA, pat) == 0, "write at the new end")

# ... and shrinks it: past the end is refused, the rest is intact.
check(resize(b, 1 * M) == 0, "RESIZE to 1M")
check(os.stat(path).st_size == 1 * M, "file shrunk")
check(read(a, 1536 * K, 4 * K) is None, "read past the shrunk end refused")
check(read(a, 0, 4 * K) == pat, "data below the new end intact")

# Bad RESIZE requests.
check(resize(a, 2 * M, length=1) == EINVAL, "RESIZE with a length")
check(resize(a, 2 * M, flags=FLAG_FUA) == EINVAL, "RESIZE with a flag")
check(os.stat(path).st_size == 1 * M, "refused RESIZEs changed nothing")

# Extended headers carry the same request; a big sparse size works.
e = connect("f", extended=True)
check(resize(e, 5 << 30) == 0, "RESIZE to 5 GiB with extended headers")
check(connect("f").size == 5 << 30, "a new handshake sees 5 GiB")
check(resize(e, 1 * M) == 0, "RESIZE back to 1M")

# Engines that cannot resize do not offer it and refuse it.
m = connect("m")
check(not m.tflags & FLAG_SEND_RESIZE, "mem export offers RESIZE")
check(resize(m, 2 * M) == EINVAL, "RESIZE on mem")
r = connect("r")
check(not r.tflags & FLAG_SEND_RESIZE, "read-only export offers RESIZE")
check(resize(r, 2 * M) == EPERM, "RESIZE on a read-only export")

# A thin volume grows online; it does not shrink while exported.
t = connect(thin)
check(t.tflags & FLAG_SEND_RESIZE, "thin export lacks NBD_FLAG_SEND_RESIZE")
check(resize(t, 8 * M) == 0, "thin RESIZE to 8M")
check(connect(thin).size == 8 * M, "thin size after RESIZE")
check(error_of(t, CMD_WRITE, 8 * M - 4 * K, 4 * K, payload=pat) == 0, "write at the thin end")
check(resize(t, 1 * M) != 0, "thin shrink while exported refused")
check(read(t, 8 * M - 4 * K, 4 * K) == pat, "thin data after the refused shrink")

for c in (a, b, e, m, r, t):
    c.s.close()
finish()
