"""Connections whose state moves with a hand-off (takeover_state.sh): one
with structured replies and base:allocation, one with extended headers, one
still in its handshake when the hand-off starts, one with half a request
header read but not parsed, and one that connects while the listeners are
between processes. The shell replaces the server when this script writes
TMP/readyN, and writes TMP/doneN once the new one serves.
Usage: takeover.py PORT TMP (export d = file of 64M)."""
import os
import struct
import sys
import time

sys.path.insert(0, sys.path[0])
import nbdraw as n
from nbdraw import check

PORT, TMP = int(sys.argv[1]), sys.argv[2]


def step(k):
    open(f"{TMP}/ready{k}", "w").close()
    for _ in range(1200):
        if os.path.exists(f"{TMP}/done{k}"):
            return
        time.sleep(0.05)
    raise SystemExit(f"no takeover {k} within 60 s")


def write(c, off, data):
    ck = c.request(n.CMD_WRITE, off, len(data), n.FLAG_FUA, data)
    r = c.chunks()
    check(r[-1][3] == ck and (r[-1][0] == n.SIMPLE_MAGIC and r[-1][4] == 0 or
                              r[-1][2] == n.TYPE_NONE), f"write at {off}: {r}")


def read(c, off, length):
    """The data of a structured or extended READ, holes as zeroes."""
    ck = c.request(n.CMD_READ, off, length)
    out = bytearray(length)
    for magic, flags, typ, cookie, payload in c.chunks():
        check(cookie == ck, "read cookie")
        if typ == n.TYPE_OFFSET_DATA:
            o = struct.unpack(">Q", payload[:8])[0] - off
            out[o:o + len(payload) - 8] = payload[8:]
        else:
            check(typ in (n.TYPE_OFFSET_HOLE, n.TYPE_NONE), f"read chunk type {typ}")
    return bytes(out)


A, B, C = b"\xa1" * 65536, b"\xb2" * 65536, b"\xc3" * 4096

meta = n.Client(PORT)
meta.greeting()
meta.go("d", meta=True)
write(meta, 1 << 20, A)

ext = n.Client(PORT)
ext.greeting()
ext.go("d", extended=True, meta=False)
write(ext, 2 << 20, B)

half = n.Client(PORT)
half.greeting()
half.go("d", meta=False)
write(half, 3 << 20, C)
half.cookie += 1
hdr = struct.pack(">IHHQQI", n.REQ_MAGIC, 0, n.CMD_READ, half.cookie, 3 << 20, 4096)
half.s.sendall(hdr[:10])

late = n.Client(PORT)
late.greeting()  # and nothing more until the hand-off has begun

open(f"{TMP}/ready1", "w").close()  # the shell starts the new process now
time.sleep(1)  # the old one has stopped parsing and waits for this handshake
late.go("d", meta=False)
step(1)

check(read(meta, 1 << 20, 65536) == A, "structured read after the hand-off")
ck = meta.request(n.CMD_BLOCK_STATUS, 0, 4 << 20)
r = meta.chunks()
check(r[0][2] == n.TYPE_BLOCK_STATUS and r[0][3] == ck, f"block status reply {r[0][:4]}")
ctx = struct.unpack(">I", r[0][4][:4])[0]
descs = [struct.unpack(">II", r[0][4][4 + 8 * i:12 + 8 * i]) for i in range((len(r[0][4]) - 4) // 8)]
check(ctx == 1 and sum(d[0] for d in descs) == 4 << 20, f"block status context {ctx}, {descs}")

check(read(ext, 2 << 20, 65536) == B, "extended read after the hand-off")
ck = ext.request(n.CMD_READ, 2 << 20, 4096)
r = ext.chunks()
check(all(x[0] == n.EXT_REPLY_MAGIC and x[3] == ck for x in r), "replies still extended")

half.s.sendall(hdr[10:])
r = half.chunks()
check(r[-1][3] == half.cookie, "the request split across the hand-off is answered")
data = b"".join(x[4][8:] for x in r if x[2] == n.TYPE_OFFSET_DATA)
check(data == C, "its data")

# A hand-off in which the new process waits before it agrees
# (NP_HANDOFF_TEST_DELAY_MS): a client connecting then waits in the
# listener's queue, and the new process accepts it.
open(f"{TMP}/ready2", "w").close()
for _ in range(1200):  # until the old process has stopped accepting
    if open(f"{TMP}/server.log").read().count("stopping accepting") >= 2:
        break
    time.sleep(0.05)
newc = n.Client(PORT, timeout=30)
newc.greeting()
newc.go("d", meta=False)
step(2)
check(read(newc, 1 << 20, 65536) == A, "the client that connected mid-hand-off")
check(read(late, 3 << 20, 4096) == C, "the client that finished its handshake mid-hand-off")
for c in (meta, ext, half, late, newc):
    c.request(n.CMD_DISC, 0, 0)
n.finish()
