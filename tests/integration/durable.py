"""Writes numbered blocks with FUA or write+FLUSH until killed, logging each
block only after the server acknowledged it durably. Usage: durable.py PORT
LOG SEED."""
import random
import struct
import sys

sys.path.insert(0, sys.path[0])
import nbdraw as n

port, log, seed = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rnd = random.Random(seed)
c = n.Client(port)
c.greeting()
c.go("d")
out = open(log, "a", buffering=1)


def success(reply):
    """A simple reply with error 0, or a structured NONE chunk."""
    last = reply[-1]
    return last[4] == 0 if last[2] is None else last[2] == n.TYPE_NONE


try:
    for i in range(100000):
        blk = rnd.randrange(0, 1024)
        data = struct.pack(">QQ", seed, i) * 256  # 4 KiB naming its writer
        if i % 2:
            c.request(n.CMD_WRITE, blk * 4096, 4096, n.FLAG_FUA, data)
            ok = success(c.chunks())
        else:
            c.request(n.CMD_WRITE, blk * 4096, 4096, 0, data)
            c.chunks()
            c.request(n.CMD_FLUSH, 0, 0)
            ok = success(c.chunks())
        if ok:
            out.write(f"{blk} {seed} {i}\n")
except (n.Closed, ConnectionError, OSError):
    pass  # the server was killed
