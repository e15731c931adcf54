"""Writes numbered blocks with FUA or write+FLUSH until killed, logging each
block only after the server acknowledged it durably. Usage: durable.py PORT
LOG SEED.

durable.py check IMAGE LOG: checks that IMAGE holds, in every block, the
last write LOG says was acknowledged, or a later one."""
import random
import struct
import sys

sys.path.insert(0, sys.path[0])
import nbdraw as n


def check(image, log):
    img = open(image, "rb").read()
    last = {}
    for line in open(log):
        blk, seed, i = map(int, line.split())
        last[blk] = (seed, i)  # later lines are later writes
    # Rounds run one after another, so (round, sequence) orders every
    # write. A block may hold a later write that was sent but not
    # acknowledged when the server died; holding anything older than its
    # last acknowledged durable write is a loss.
    bad = [b for b, want in last.items()
           if struct.unpack(">QQ", img[b * 4096:b * 4096 + 16]) < want]
    assert not bad, [(b, last[b], struct.unpack(">QQ", img[b * 4096:b * 4096 + 16]))
                     for b in bad[:5]]
    print(f"{len(last)} blocks checked")


if sys.argv[1] == "check":
    check(sys.argv[2], sys.argv[3])
    sys.exit(0)

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
            # A FLUSH makes durable only the writes that succeeded (an
            # rbd export fails them while its cluster is away).
            ok = success(c.chunks())
            c.request(n.CMD_FLUSH, 0, 0)
            ok = success(c.chunks()) and ok
        if ok:
            out.write(f"{blk} {seed} {i}\n")
except (n.Closed, ConnectionError, OSError):
    pass  # the server was killed
