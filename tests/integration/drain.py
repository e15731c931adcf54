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
os.kill(PID, signal.SIGTERM)  # with all of them sent and most in flight
got = {}
while len(got) < N:
    r = c.chunks()
    got[r[-1][3]] = r[-1]
bad = [k for k, v in got.items() if v[2] is not None and v[2] != n.TYPE_NONE or
       (v[2] is None and v[4] != 0)]
print(f"{N - len(bad)} passed, {len(bad)} failed")
check_closed = c.closed()
if not check_closed:
    print("server did not close after draining", file=sys.stderr)
sys.exit(1 if bad or not check_closed else 0)
