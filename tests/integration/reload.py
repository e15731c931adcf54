"""Clients across a SIGHUP reload (driven by reload.sh through two files):
connections to an export that stays keep working, connections to removed
or changed exports are drained and closed, new exports appear.

usage: reload.py PORT DIR   (DIR/ready is written here, DIR/reloaded waited for)"""
import os
import sys
import time

import nbd

port, d = sys.argv[1], sys.argv[2]
failed = []


def check(cond, what):
    if not cond:
        failed.append(what)
        print("check failed:", what, file=sys.stderr)


def connect(name):
    h = nbd.NBD()
    h.connect_uri(f"nbd://127.0.0.1:{port}/{name}")
    return h


def works(h, off=0):
    try:
        h.pwrite(b"\x5a" * 4096, off)
        return h.pread(4096, off) == b"\x5a" * 4096
    except nbd.Error:
        return False


def closed(h):
    try:
        h.pread(512, 0)
        return False
    except nbd.Error:
        return True


def eventually(fn, seconds=15):
    end = time.time() + seconds
    while time.time() < end:
        try:
            if fn():
                return True
        except nbd.Error:
            pass
        time.sleep(0.1)
    return False


a, b, v, raw = connect("a"), connect("b"), connect("v"), connect("d")
pat = os.urandom(65536)
a.pwrite(pat, 1 << 20)
check(works(b) and works(v) and works(raw), "exports before the reload")
open(os.path.join(d, "ready"), "w").close()
check(eventually(lambda: os.path.exists(os.path.join(d, "reloaded")), 60), "reload.sh signalled")

# a stayed: the same connection goes on, its data intact.
check(a.pread(65536, 1 << 20) == pat, "data on the kept connection")
check(works(a, 2 << 20), "the kept connection still writes")
# b and d were removed, v changed (now read-only): their clients are closed.
check(eventually(lambda: closed(b)), "connection to removed b closed")
check(eventually(lambda: closed(raw)), "connection to removed raw export d closed")
check(eventually(lambda: closed(v)), "connection to changed v closed")
# New clients: c is new; b is gone; v came back read-only once drained.
check(works(connect("c")), "new export c")
try:
    connect("b")
    check(False, "removed export b still accepts clients")
except nbd.Error:
    pass
check(eventually(lambda: connect("v").is_read_only()), "v reopened read-only")
check(works(a, 3 << 20), "the kept connection after everything")
a.shutdown()
if failed:
    sys.exit(1)
print("reload.py: all checks passed")
