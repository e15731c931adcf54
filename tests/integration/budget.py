"""The server-wide budget: sixteen clients that send 1 MiB reads and never
read the replies may each hold 64 MiB, but together no more than the
server's total (96 MiB here); a well-behaved client still gets served.
Usage: budget.py PORT SERVER_PID."""
import os
import struct
import sys
import time

sys.path.insert(0, sys.path[0])
import nbdraw as n
from nbdraw import check

PORT, PID = int(sys.argv[1]), int(sys.argv[2])


def rss_mib():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0


base = rss_mib()
hogs = []
# DF: each reply is one 1 MiB data chunk, as on a written disk; without it
# the empty export's replies would shrink to hole chunks and never fill
# the clients' sockets, and the budget would not be reached.
reqs = b"".join(struct.pack(">IHHQQI", n.REQ_MAGIC, n.FLAG_DF, n.CMD_READ, i, 0, 1 << 20)
                for i in range(200))
for _ in range(16):
    h = n.Client(PORT)
    h.greeting()
    h.go("m")
    h.s.setblocking(False)
    try:
        h.s.send(reqs)
    except BlockingIOError:
        pass
    hogs.append(h)
time.sleep(6)
grew = rss_mib() - base
# 16 x 64 MiB would be 1 GiB without the total budget.
# The budget plus 64 MiB of slack (buffers, stacks, the allocator's caches);
# under valgrind 40 more: memcheck keeps 20 MB of freed blocks out of use
# and pads every block, and one run there saw 161.
limit = 160 + (40 if os.environ.get("NP_REAL_NBDPLEX") else 0)
print(f"RSS grew {grew:.0f} MiB (limit {limit})", file=sys.stderr)
check(grew < limit, f"RSS grew {grew:.0f} MiB under 16 clients that never read")

good = n.Client(PORT)
good.greeting()
good.go("m")
good.request(n.CMD_WRITE, 0, 4096, 0, b"g" * 4096)
good.chunks()
good.request(n.CMD_READ, 0, 4096, n.FLAG_DF)
r = good.chunks()
check(r[-1][4][8:] == b"g" * 4096, "a good client is served while the budget is spent")
for h in hogs:
    h.s.close()
n.finish()
