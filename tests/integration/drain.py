"""Pipelines writes, has the caller signal the server, then checks that
every write was answered with success. Usage: drain.py PORT PID."""
import os
import signal
import struct
import sys

sys.path.insert(0, sys.path[0])
import nbdraw as n

PORT, PID = int(sys.argv[1]), int(sys.argv[2])
c = n.Client(PORT)
c.greeting()
c.go("d")
N = 200
for i in range(N):
    c.request(n.CMD_WRITE, i * 65536, 65536, 0, bytes([i % 251 + 1]) * 65536)
# The FLUSH is parsed after every write before it, so its reply says the
# server has read them all (a request still in the socket is not in flight:
# a slow server, under valgrind say, may not have read it at the signal).
flush = c.request(n.CMD_FLUSH, 0, 0)
got = {}
while flush not in got:
    r = c.chunks()
    got[r[-1][3]] = r[-1]
del got[flush]
while len(got) < N:
    r = c.chunks()
    got[r[-1][3]] = r[-1]

# 40 reads of 1 MiB in one send: the first reply proves the server read all
# 40 headers (they arrived in one segment); the signal then comes with
# some 39 MiB of replies not yet delivered, and every one must arrive.
R = 40
reads = {c.request(n.CMD_READ, (i % 12) << 20, 1 << 20, n.FLAG_DF): i % 12 for i in range(R)}
first = c.chunks()
os.kill(PID, signal.SIGTERM)
answered = [first] + [c.chunks() for _ in range(R - 1)]
for r in answered:
    k = reads[r[-1][3]] << 20
    want = b"".join(bytes([(k + j) // 65536 % 251 + 1]) * 65536 for j in range(0, 1 << 20, 65536))
    if r[-1][2] != n.TYPE_OFFSET_DATA or r[-1][4][8:] != want:
        got[r[-1][3]] = (0, 0, -1, 0, b"")  # counted as bad below
bad = [k for k, v in got.items() if v[2] is not None and v[2] != n.TYPE_NONE or
       (v[2] is None and v[4] != 0)]
print(f"{N + R - len(bad)} passed, {len(bad)} failed")
check_closed = c.closed()
if not check_closed:
    print("server did not close after draining", file=sys.stderr)
sys.exit(1 if bad or not check_closed else 0)
