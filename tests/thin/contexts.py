"""Meta contexts of a thin export over extended headers, through a raw
socket (libnbd 1.14 has no extended headers): listing, selecting several,
64-bit extents of several contexts in one reply, BLOCK_STATUS payload
filtering, a context that does not exist, and the bitmap of a snapshot
deleted while selected (an error, and the connection goes on).
Usage: contexts.py PORT NBDPLEX POOLDIR. The export v (8 GiB) holds 64 KiB
at 0 and at 5 GiB from before s1, at 6 GiB from between s1 and s2, and at
7 GiB from after s2."""
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import nbdraw as n
from nbdraw import check

PORT, NBDPLEX, POOL = int(sys.argv[1]), sys.argv[2], sys.argv[3]
G, K64 = 1 << 30, 65536
SIZE = 8 * G
FLAG_PAYLOAD_LEN = 1 << 5
FLAG_BLOCK_STATUS_PAYLOAD = 1 << 12
REP_ERR_TOO_BIG = 0x80000009
EINVAL = 22


def meta_option(name, queries):
    d = struct.pack(">I", len(name)) + name.encode() + struct.pack(">I", len(queries))
    for q in queries:
        d += struct.pack(">I", len(q)) + q.encode()
    return d


def contexts(replies):
    """(id, name) of each META_CONTEXT reply."""
    return [(struct.unpack(">I", p[:4])[0], p[4:].decode()) for t, p in replies
            if t == n.REP_META_CONTEXT]


def connect(queries):
    c = n.Client(PORT)
    c.greeting()
    assert c.replies(n.OPT_EXTENDED_HEADERS)[-1][0] == n.REP_ACK
    c.extended = True
    r = c.replies(n.OPT_SET_META, meta_option("v", queries))
    d = struct.pack(">I", 1) + b"v" + struct.pack(">H", 0)
    g = c.replies(n.OPT_GO, d)
    assert g[-1][0] == n.REP_ACK, g
    info = [p for t, p in g if t == n.REP_INFO and p[:2] == b"\0\0"][0]
    c.size, c.tflags = struct.unpack(">QH", info[2:12])
    return c, r


def status(c, offset, length, flags=0, ids=None):
    """A BLOCK_STATUS; returns the chunks as (flags, type, context id,
    [(length, value), ...]) or (flags, type, error)."""
    if ids is None:
        c.request(n.CMD_BLOCK_STATUS, offset, length, flags)
    else:
        payload = struct.pack(">Q", length) + b"".join(struct.pack(">I", i) for i in ids)
        c.request(n.CMD_BLOCK_STATUS, offset, len(payload), flags | FLAG_PAYLOAD_LEN, payload)
    out = []
    for magic, fl, typ, _ck, p in c.chunks():
        check(magic == n.EXT_REPLY_MAGIC, f"reply magic {magic:#x}")
        if typ == n.TYPE_BLOCK_STATUS_EXT:
            ctx, count = struct.unpack(">II", p[:8])
            check(len(p) == 8 + 16 * count, "descriptor count matches the length")
            out.append((fl, typ, ctx, [struct.unpack(">QQ", p[8 + 16 * i:24 + 16 * i])
                                       for i in range(count)]))
        else:
            out.append((fl, typ, struct.unpack(">I", p[:4])[0] if typ == n.TYPE_ERROR else p))
    return out


# Listing: everything, then one namespace's prefix; ids are 0.
c = n.Client(PORT)
c.greeting()
r = contexts(c.replies(n.OPT_LIST_META, meta_option("v", [])))
check(sorted(x for _, x in r) == ["base:allocation", "qemu:allocation-depth",
                                  "qemu:dirty-bitmap:s1", "qemu:dirty-bitmap:s2"], f"list {r}")
check(all(i == 0 for i, _ in r), f"listing ids {r}")
r = contexts(c.replies(n.OPT_LIST_META, meta_option("v", ["qemu:dirty-bitmap:"])))
check(sorted(x for _, x in r) == ["qemu:dirty-bitmap:s1", "qemu:dirty-bitmap:s2"], f"prefix {r}")
c.s.close()

# Three contexts selected (a name that does not exist is left out).
c, r = connect(["base:allocation", "qemu:dirty-bitmap:s1", "qemu:allocation-depth",
                "qemu:dirty-bitmap:nosuch"])
sel = contexts(r)
ids = {name: i for i, name in sel}
check(sorted(ids) == ["base:allocation", "qemu:allocation-depth", "qemu:dirty-bitmap:s1"] and
      sorted(ids.values()) == [1, 2, 3], f"selected {sel}")
B, S, D = ids["base:allocation"], ids["qemu:dirty-bitmap:s1"], ids["qemu:allocation-depth"]
check(c.tflags & FLAG_BLOCK_STATUS_PAYLOAD, f"flags {c.tflags:#x} offer the payload")

# One request over all 8 GiB: one chunk per context, the last one DONE,
# lengths past 32 bits.
r = status(c, 0, SIZE)
check([x[:3] for x in r] == [(0, n.TYPE_BLOCK_STATUS_EXT, 1), (0, n.TYPE_BLOCK_STATUS_EXT, 2),
                             (n.REPLY_FLAG_DONE, n.TYPE_BLOCK_STATUS_EXT, 3)],
      f"chunks {[x[:3] for x in r]}")
by_id = {x[2]: x[3] for x in r}
alloc, dirty, depth = by_id.get(B), by_id.get(S), by_id.get(D)
check(alloc[:4] == [(K64, 0), (5 * G - K64, 3), (K64, 0), (G - K64, 3)], f"allocation {alloc[:4]}")
check(dirty == [(6 * G, 0), (K64, 1), (G - K64, 0), (K64, 1), (G - K64, 0)], f"dirty {dirty}")
check(depth == [(K64, 3), (5 * G - K64, 0), (K64, 3), (G - K64, 0), (K64, 2), (G - K64, 0),
                (K64, 1), (G - K64, 0)], f"depth {depth}")
check(dirty and sum(x for x, _ in dirty) == SIZE, "the dirty map covers the request")

# REQ_ONE: one descriptor per context.
r = status(c, 6 * G, G, n.FLAG_REQ_ONE)
check(sorted((x[2], x[3]) for x in r) == sorted([(B, [(K64, 0)]), (S, [(K64, 1)]),
                                                 (D, [(K64, 2)])]), f"req_one {r}")

# Payload filtering: only the contexts named, in the order named, once each.
r = status(c, 0, SIZE, ids=[S])
check(len(r) == 1 and r[0][0] == n.REPLY_FLAG_DONE and r[0][2] == S and r[0][3] == dirty,
      f"filtered to s1's bitmap: {r}")
r = status(c, 5 * G, G, ids=[D, D, B])
check([x[2] for x in r] == [D, B] and r[0][3][0] == (K64, 3) and r[1][3][0] == (K64, 0),
      f"filtered to depth, base: {r}")
# An id not selected, and a range past the end, are EINVAL.
r = status(c, 0, G, ids=[9])
check(r == [(n.REPLY_FLAG_DONE, n.TYPE_ERROR, EINVAL)], f"unknown id: {r}")
r = status(c, 7 * G, 2 * G, ids=[B])
check(r == [(n.REPLY_FLAG_DONE, n.TYPE_ERROR, EINVAL)], f"past the end: {r}")

# The snapshot of a selected bitmap is deleted: its context is an error,
# the others and the connection go on.
subprocess.run([NBDPLEX, "volume", "delete", POOL, "s1"], check=True)
r = status(c, 0, SIZE)
check(len(r) == 1 and r[0][1:] == (n.TYPE_ERROR, EINVAL), f"deleted snapshot: {r}")
r = status(c, 0, SIZE, ids=[B, D])
check([x[2] for x in r] == [B, D], f"other contexts after the delete: {r}")
r = status(c, 0, SIZE, ids=[S])
check(r == [(n.REPLY_FLAG_DONE, n.TYPE_ERROR, EINVAL)], f"the deleted bitmap alone: {r}")
c.request(n.CMD_READ, 7 * G, 4096)
check(c.chunks()[-1][2] == n.TYPE_OFFSET_DATA, "a read after the failed block status")
c.request(n.CMD_DISC, 0, 0)
c.s.close()

# Selecting no existing context: BLOCK_STATUS is refused, the connection
# stays.
c, r = connect(["qemu:dirty-bitmap:s1"])
check(contexts(r) == [], f"a deleted snapshot's bitmap selected: {r}")
r = status(c, 0, G)
check(r == [(n.REPLY_FLAG_DONE, n.TYPE_ERROR, EINVAL)], f"no context: {r}")
c.request(n.CMD_READ, 0, 4096)
check(c.chunks()[-1][2] == n.TYPE_OFFSET_DATA, "a read after it")
c.s.close()

# More than NP_HS_MAX_META (8) contexts: TOO_BIG, and nothing selected.
for i in range(8):
    subprocess.run([NBDPLEX, "volume", "snapshot", POOL, "v", f"t{i}"], check=True)
c = n.Client(PORT)
c.greeting()
assert c.replies(n.OPT_EXTENDED_HEADERS)[-1][0] == n.REP_ACK
r = c.replies(n.OPT_SET_META, meta_option(
    "v", ["base:allocation"] + [f"qemu:dirty-bitmap:t{i}" for i in range(8)]))
check(r[-1][0] == REP_ERR_TOO_BIG and contexts(r) == [], f"nine contexts: {r}")
r = c.replies(n.OPT_SET_META, meta_option("v", [f"qemu:dirty-bitmap:t{i}" for i in range(8)]))
check(len(contexts(r)) == 8 and r[-1][0] == n.REP_ACK, f"eight contexts: {r}")
c.s.close()
n.finish()
