"""Extended headers (64-bit requests and replies), which no client installable
here speaks yet: negotiated, then every command through 32-byte headers.
Usage: extended.py PORT (export m = mem of 64M)."""
import struct
import sys

sys.path.insert(0, sys.path[0])
import nbdraw as n
from nbdraw import check

PORT = int(sys.argv[1])
c = n.Client(PORT)
c.greeting()
c.go("m", extended=True)
check(c.size == 64 << 20, f"size {c.size}")

# WRITE and READ back: replies are extended chunks only.
data = bytes(range(256)) * 64
ck = c.request(n.CMD_WRITE, 1 << 20, len(data), n.FLAG_FUA, data)
r = c.chunks()
check(len(r) == 1 and r[0][0] == n.EXT_REPLY_MAGIC and r[0][2] == n.TYPE_NONE and r[0][3] == ck,
      f"write reply {r[:1]}")

ck = c.request(n.CMD_READ, (1 << 20) - 8192, 8192 + len(data))
r = c.chunks()
check(all(x[0] == n.EXT_REPLY_MAGIC and x[3] == ck for x in r), "read chunks are extended")
types = [x[2] for x in r]
check(types == [n.TYPE_OFFSET_HOLE, n.TYPE_OFFSET_DATA], f"read chunk types {types}")
hole_off, hole_len = struct.unpack(">QI", r[0][4])
check(hole_off == (1 << 20) - 8192 and hole_len == 8192, f"hole {hole_off} {hole_len}")
check(r[1][4][:8] == struct.pack(">Q", 1 << 20) and r[1][4][8:] == data, "read data")

# BLOCK_STATUS answers with 64-bit descriptors.
ck = c.request(n.CMD_BLOCK_STATUS, 0, 4 << 20)
r = c.chunks()
check(len(r) == 1 and r[0][2] == n.TYPE_BLOCK_STATUS_EXT, f"block status type {r[0][2]}")
ctx, count = struct.unpack(">II", r[0][4][:8])
desc = [struct.unpack(">QQ", r[0][4][8 + 16 * i:24 + 16 * i]) for i in range(count)]
check(ctx == 1 and len(r[0][4]) == 8 + 16 * count, "block status layout")
# The mem engine allocates 64 KiB pages.
check(desc[:3] == [(1 << 20, 3), (65536, 0), ((3 << 20) - 65536, 3)], f"extents {desc}")

# A zero over more than 4 GiB is not possible on 64M; past the end is ENOSPC
# (28) in an extended error chunk; a 64-bit length survives the trip.
ck = c.request(n.CMD_WRITE_ZEROES, 0, (1 << 33))
r = c.chunks()
check(r[0][2] == n.TYPE_ERROR and struct.unpack(">I", r[0][4][:4])[0] == 28, f"zero error {r}")
ck = c.request(n.CMD_WRITE_ZEROES, 0, 64 << 20)
check(c.chunks()[0][2] == n.TYPE_NONE, "zero the whole disk")
ck = c.request(n.CMD_READ, 1 << 20, 4096)
r = c.chunks()
check(len(r) == 1 and r[0][2] == n.TYPE_OFFSET_HOLE, "zeroed data reads as a hole")

ck = c.request(n.CMD_FLUSH, 0, 0)
check(c.chunks()[0][2] == n.TYPE_NONE, "flush")
c.request(n.CMD_DISC, 0, 0)
check(c.closed(), "server closes after DISC")
n.finish()
