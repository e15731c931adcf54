"""Malformed and hostile clients; after each, the server must still serve.
Usage: bad_input.py PORT SERVER_PID (export m = mem, handshake timeout 1 s,
max in flight 64M)."""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, sys.path[0])
import nbdraw as n
from nbdraw import check

PORT, PID = int(sys.argv[1]), int(sys.argv[2])
def serving(what):
    """A well-behaved client still gets its data."""
    c = n.Client(PORT)
    c.greeting()
    c.go("m")
    ck = c.request(n.CMD_WRITE, 4096, 5, 0, b"alive")
    c.chunks()
    c.request(n.CMD_READ, 4096, 5, n.FLAG_DF)
    r = c.chunks()
    check(r[0][2] == n.TYPE_OFFSET_DATA and r[0][4][8:] == b"alive", f"serving after {what}")
    c.request(n.CMD_DISC, 0, 0)
    c.s.close()


def rss_kib():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# Garbage instead of a handshake, before and after the greeting.
c = n.Client(PORT)
c.s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 100)
check(c.closed(), "HTTP garbage closes")
c = n.Client(PORT)
c.greeting()
c.s.sendall(b"\xff" * 64)
check(c.closed(), "garbage options close")
serving("garbage")

# A handshake that stalls is timed out (1 s here), whole or mid-option.
t0 = time.monotonic()
c = n.Client(PORT)
check(c.closed(timeout=5), "silent client is closed")
check(time.monotonic() - t0 < 4, "handshake timeout applies")
c = n.Client(PORT)
c.greeting()
c.s.sendall(struct.pack(">QI", n.IHAVEOPT, n.OPT_GO))  # half an option header
check(c.closed(timeout=5), "client stalled mid-option is closed")
serving("stalled handshakes")

# Malformed options get errors and the negotiation goes on.
c = n.Client(PORT)
c.greeting()
r = c.replies(n.OPT_GO, struct.pack(">I", 100) + b"m")  # name length past the end
check(r[-1][0] == n.REP_ERR_INVALID, f"bad GO length: {r}")
r = c.replies(n.OPT_INFO, struct.pack(">I", 1) + b"m" + struct.pack(">H", 3) + b"\0\0")
check(r[-1][0] == n.REP_ERR_INVALID, f"INFO request count mismatch: {r}")
r = c.replies(4242)
check(r[-1][0] == n.REP_ERR_UNSUP, f"unknown option: {r}")
r = c.replies(n.OPT_STARTTLS)
check(r[-1][0] == n.REP_ERR_POLICY, f"STARTTLS: {r}")
r = c.replies(n.OPT_STRUCTURED_REPLY, b"x")
check(r[-1][0] == n.REP_ERR_INVALID, f"STRUCTURED_REPLY with data: {r}")
r = c.replies(n.OPT_GO, struct.pack(">I", 4) + b"nope" + struct.pack(">H", 0))
check(r[-1][0] == n.REP_ERR_UNKNOWN, f"unknown export: {r}")
r = c.replies(n.OPT_LIST)
check([t for t, _ in r] == [n.REP_SERVER, n.REP_ACK], f"LIST after errors: {r}")
c.s.close()
# An option claiming a gigabyte is refused by closing.
c2 = n.Client(PORT)
c2.greeting()
c2.s.sendall(struct.pack(">QII", n.IHAVEOPT, n.OPT_GO, 1 << 30))
check(c2.closed(), "oversized option closes")

# Bad requests in transmission.
c = n.Client(PORT)
c.greeting()
c.go("m", meta=False)
c.request(99, 0, 512)
r = c.chunks()
check(r[0][4] == 22, f"unknown command gets EINVAL: {r}")
c.request(n.CMD_READ, 0, 512, 0x4000)
r = c.chunks()
check(r[-1][2] == n.TYPE_ERROR and struct.unpack(">I", r[-1][4][:4])[0] == 22,
      f"unknown flag gets EINVAL: {r}")
c.request(n.CMD_BLOCK_STATUS, 0, 512)
r = c.chunks()
check(r[-1][2] == n.TYPE_ERROR, f"block status without a context: {r}")
c.s.sendall(b"\x12\x34\x56\x78" + b"\0" * 24)
check(c.closed(), "bad request magic closes")

# A client that leaves in the middle of a write payload.
c = n.Client(PORT)
c.greeting()
c.go("m")
c.s.sendall(struct.pack(">IHHQQI", n.REQ_MAGIC, 0, n.CMD_WRITE, 1, 0, 1 << 20) + b"x" * 1000)
c.s.close()
serving("a client leaving mid-payload")

# A client that sends many reads and never reads the replies: the server
# stops reading from it at the in-flight cap, and its memory stays bounded.
# DF keeps every reply one 1 MiB data chunk: without it the mostly empty
# export's replies shrink to hole chunks, the client's socket never fills,
# and the server answers all thousand reads instead of stopping at the cap.
base = rss_kib()
hog = n.Client(PORT)
hog.greeting()
hog.go("m")
hog.s.setblocking(False)
reqs = b"".join(struct.pack(">IHHQQI", n.REQ_MAGIC, n.FLAG_DF, n.CMD_READ, i, 0, 1 << 20)
                for i in range(1000))  # a gigabyte of replies
sent = 0
deadline = time.monotonic() + 10
while sent < len(reqs) and time.monotonic() < deadline:
    try:
        sent += hog.s.send(reqs[sent:])
    except BlockingIOError:
        time.sleep(0.05)
time.sleep(1.5)
grew = rss_kib() - base
check(grew < 200 * 1024, f"RSS grew {grew} KiB under a client that never reads")
serving("a client that never reads")
hog.s.close()
time.sleep(0.5)
serving("the hog left")
n.finish()
