"""READs and WRITEs sent in one burst reach the server as one batch, which
it runs on the loop (for a file on tmpfs: many per io_submit, storage/file/file.c).
Check that every reply is right and every write lands where it was aimed:
hundreds of requests of mixed sizes and alignments in one send, FUA WRITEs,
large WRITEs and a READ too big for the loop among them, with structured,
simple and extended replies.

usage: batch.py PORT IMAGE (of 32 MiB)"""
import random
import struct
import sys

from nbdraw import (Client, check, finish, CMD_READ, CMD_WRITE, FLAG_FUA,
                    REQ_MAGIC, EXT_REQ_MAGIC)

port, path = int(sys.argv[1]), sys.argv[2]
K, M = 1024, 1 << 20
rng = random.Random(7)


def image():
    with open(path, "rb") as f:
        return f.read()


def burst(mode, base, big_base):
    """One send of requests; returns after every reply is checked."""
    before = image()
    c = Client(port)
    c.greeting()
    c.go_mode(mode)
    reqs, wire, written = [], bytearray(), {}
    # Disjoint slots of 64 KiB from base on, so the writes in the burst do
    # not overlap one another (their order is the server's to choose).
    slots = rng.sample(range(64), 48)
    for i, slot in enumerate(slots):
        off = base + slot * 64 * K + rng.choice([0, 512, 4096, 777])
        n = rng.choice([1, 512, 4096, 4096, 4096, 16 * K, 60 * K])
        if i % 3 == 0:
            cmd, data, flags = CMD_READ, b"", 0
        else:
            cmd, data = CMD_WRITE, rng.randbytes(n)
            flags = FLAG_FUA if i == 10 else 0
            written[off] = data
        reqs.append((cmd, off, n, flags, data))
    # a READ larger than the loop runs, over data no write in the burst touches
    reqs.append((CMD_READ, 14 * M, 200 * K, 0, b""))
    # large WRITEs (their payloads span several socket reads), one with FUA
    for off, n, flags in ((big_base + 777, M, 0), (big_base + 2 * M + 4096, 200 * K, 0),
                          (big_base + 3 * M, 128 * K, FLAG_FUA)):
        data = rng.randbytes(n)
        written[off] = data
        reqs.append((CMD_WRITE, off, n, flags, data))
    for cookie, (cmd, off, n, flags, data) in enumerate(reqs, 1):
        if mode == "extended":
            hdr = struct.pack(">IHHQQQ", EXT_REQ_MAGIC, flags, cmd, cookie, off, n)
        else:
            hdr = struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, off, n)
        wire += hdr + data
    c.s.sendall(wire)
    seen = set()
    for _ in reqs:
        if mode == "simple":
            magic, err, cookie = struct.unpack(">IIQ", c.recv(16))
            check(magic == 0x67446698 and err == 0, f"simple reply {magic:#x} error {err}")
            cmd, off, n, _f, _d = reqs[cookie - 1]
            data = c.recv(n) if cmd == CMD_READ else b""
        else:
            chunks = c.chunks()
            cookie = chunks[0][3]
            cmd, off, n, _f, _d = reqs[cookie - 1]
            data = bytearray(n) if cmd == CMD_READ else b""
            for _m, _fl, typ, _c, payload in chunks:
                # a WRITE may be answered with a simple reply
                check(typ in (0, 1, 2) or (typ is None and cmd == CMD_WRITE and payload == 0),
                      f"{mode}: chunk type {typ} for cookie {cookie}")
                if typ == 1:
                    o = int.from_bytes(payload[:8], "big") - off
                    data[o:o + len(payload) - 8] = payload[8:]
        seen.add(cookie)
        if cmd == CMD_READ:
            check(bytes(data) == before[off:off + n], f"{mode}: READ [{off}, +{n})")
    check(len(seen) == len(reqs), f"{mode}: {len(seen)} distinct replies for {len(reqs)}")
    c.s.close()
    after = image()
    for off, data in written.items():
        check(after[off:off + len(data)] == data, f"{mode}: WRITE [{off}, +{len(data)}) in file")
    untouched = bytearray(after)
    expect = bytearray(before)
    for off, data in written.items():
        untouched[off:off + len(data)] = expect[off:off + len(data)] = b"\0" * len(data)
    check(untouched == expect, f"{mode}: bytes outside the WRITEs changed")


for i, mode in enumerate(("structured", "simple", "extended")):
    burst(mode, i * 4 * M, 16 * M + i * 4 * M)
finish()
