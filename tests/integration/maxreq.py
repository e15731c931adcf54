"""READs and WRITEs of 48 MiB from a client that negotiates nothing
(NBD_OPT_EXPORT_NAME, simple replies), as the kernel's nbd.ko sends them;
a READ of exactly the largest size; a WRITE and a READ one byte or more
past it answered EINVAL, the WRITE's payload read and dropped, with the
connection still usable and the data unchanged after.

usage: maxreq.py PORT MAX (the server's largest request; the export
must hold MAX + 2 MiB)"""
import random
import sys

sys.path.insert(0, sys.path[0])
import nbdraw as n
from nbdraw import check

port, big = int(sys.argv[1]), int(sys.argv[2])
M, EINVAL = 1 << 20, 22
c = n.Client(port, timeout=60)
c.greeting()
c.export_name("d")
check(c.size >= big + 2 * M, f"export size {c.size}")


def answer(cookie):
    """The error of the simple reply to cookie (a READ's data follows)."""
    magic, _flags, _typ, got, err = c.chunk()
    check(magic == n.SIMPLE_MAGIC and got == cookie, f"reply {magic:#x} to {got}, not {cookie}")
    return err


def read(offset, length):
    err = answer(c.request(n.CMD_READ, offset, length))
    return c.recv(length) if err == 0 else err


data = random.Random(48).randbytes(48 * M)
off = M + 512  # unaligned, as nothing was negotiated
check(answer(c.request(n.CMD_WRITE, off, len(data), n.FLAG_FUA, data)) == 0, "48 MiB WRITE")
check(read(off, len(data)) == data, "48 MiB READ after it")
whole = read(0, big)
check(isinstance(whole, bytes) and whole[off:off + len(data)] == data,
      f"READ of exactly {big} bytes")

check(answer(c.request(n.CMD_WRITE, 0, big + 1, 0, bytes([7]) * (big + 1))) == EINVAL,
      "WRITE one byte over the largest")
check(read(0, big + 4096) == EINVAL, "READ over the largest")
check(read(off, len(data)) == data, "48 MiB READ after the refused requests")
c.request(n.CMD_DISC, 0, 0)
check(c.closed(), "the server closes after DISC")
n.finish()
