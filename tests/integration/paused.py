"""A connection that reaches an in-flight budget stops reading; once its
replies drain it must go on with the requests it has already received,
though the client sends nothing more. First the issue's case: READs of
32 MiB, all their headers in one send (over TLS: one record), then only
reads; then WRITEs with FUA and FLUSHes mixed with them, and the written
data read back. Every reply is checked, by cookie.

With --hup PID, the server is sent SIGHUP once the first READ is
answered, with its export removed from the configuration: the server
must still answer every READ it had received, then close.

usage: paused.py PORT IMAGE READS [--ca FILE | --psk FILE] [--hup PID] [--mib N]
  READS: how many READs of N MiB (32) in the first send. --ca: X.509, trusting
  FILE's CA; --psk: PSK from FILE (psktool's USER:HEXKEY); neither: no
  TLS. The export is IMAGE: 80 MiB, READs come from the first 64."""
import argparse
import os
import random
import signal
import struct
import sys

sys.path.insert(0, sys.path[0])
import nbdraw as n
from nbdraw import check
import tlsraw

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("image")
ap.add_argument("reads", type=int)
ap.add_argument("--ca")
ap.add_argument("--psk")
ap.add_argument("--hup", type=int)
ap.add_argument("--mib", type=int, default=32)
args = ap.parse_args()
image = bytearray(open(args.image, "rb").read())
M = 1 << 20
BIG = args.mib * M
rng = random.Random(22)

c = n.Client(args.port, timeout=30)
c.greeting()
if args.ca:
    tlsraw.starttls(c, cafile=args.ca)
elif args.psk:
    user, key = open(args.psk, "rb").read().strip().split(b":")
    tlsraw.starttls(c, psk=(user, key))
c.go("d", meta=False)


def header(cmd, offset, length, flags=0):
    c.cookie += 1
    return c.cookie, struct.pack(">IHHQQI", n.REQ_MAGIC, flags, cmd, c.cookie, offset, length)


def data_of(chunks, offset, length):
    """A READ's data from its chunks, or None if one is an error."""
    out = bytearray(length)
    for _magic, _flags, typ, _cookie, payload in chunks:
        if typ == n.TYPE_OFFSET_DATA:
            o = int.from_bytes(payload[:8], "big") - offset
            out[o:o + len(payload) - 8] = payload[8:]
        elif typ != n.TYPE_OFFSET_HOLE:  # holes stay zero, as in the image
            return None
    return bytes(out)


def answers(sent, hup=None):
    """Reads one reply for each request in sent ({cookie: (cmd, offset,
    length)}) and checks it; WRITEs are checked by the later READs. With
    hup, sends it SIGHUP after the first."""
    for i in range(len(sent)):
        if hup and i == 1:
            os.kill(hup, signal.SIGHUP)
        try:
            chunks = c.chunks()
        except (OSError, n.Closed) as e:  # a stalled server: the rest never comes
            check(False, f"{len(sent)} replies missing: {e!r}")
            n.finish()
        cookie = chunks[0][3]
        if cookie not in sent:
            check(False, f"reply to unknown cookie {cookie}")
            return
        cmd, offset, length = sent.pop(cookie)
        if cmd == n.CMD_READ:
            got = data_of(chunks, offset, length)
            check(got == image[offset:offset + length],
                  f"READ at {offset} of {length}: {'error' if got is None else 'wrong data'}")
        else:
            check(chunks[-1][2] in (None, n.TYPE_NONE) and chunks[-1][4] in (0, b""),
                  f"{cmd} at {offset}: {chunks[-1][2:]}")


# The case: READs of 32 MiB, headers in one send, then only reads.
sent, wire = {}, b""
for i in range(args.reads):
    off = rng.randrange(0, 64 * M - BIG, 512)
    cookie, h = header(n.CMD_READ, off, BIG)
    sent[cookie], wire = (n.CMD_READ, off, BIG), wire + h
c.s.sendall(wire)
answers(sent, args.hup)
if args.hup:
    check(c.closed(), "the server closes once it has answered, its export removed")
    n.finish()

# WRITEs (FUA and not) to the last 16 MiB, sent whole while the server
# still reads; then READs and FLUSHes in one send (one record) that pass
# the cap, a small FUA WRITE among them.
sent, wire = {}, b""
for off, length, flags in ((64 * M, 8 * M, n.FLAG_FUA), (72 * M + 4096, 3 * M, 0)):
    new = rng.randbytes(length)
    image[off:off + length] = new
    cookie, h = header(n.CMD_WRITE, off, length, flags)
    sent[cookie], wire = (n.CMD_WRITE, off, length), wire + h + new
c.s.sendall(wire)
wire = b""
for cmd, off, length, flags in ((n.CMD_READ, 512, BIG, 0), (n.CMD_FLUSH, 0, 0, 0),
                                (n.CMD_READ, 64 * M - BIG, BIG, 0),
                                (n.CMD_READ, 7 * M, BIG // 2, 0),
                                (n.CMD_WRITE, 79 * M, 4096, n.FLAG_FUA), (n.CMD_FLUSH, 0, 0, 0),
                                (n.CMD_READ, 3, 1 * M, 0)):
    cookie, h = header(cmd, off, length, flags)
    sent[cookie] = (cmd, off, length)
    if cmd == n.CMD_WRITE:
        new = rng.randbytes(length)
        image[off:off + length] = new
        h += new
    wire += h
c.s.sendall(wire)
answers(sent)

# What was written, read back.
cookie, h = header(n.CMD_READ, 64 * M, 16 * M)
c.s.sendall(h)
answers({cookie: (n.CMD_READ, 64 * M, 16 * M)})
c.request(n.CMD_DISC, 0, 0)
check(c.closed(), "the server closes after DISC")
n.finish()
