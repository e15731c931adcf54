"""Protocol behaviour through libnbd (the module nbdsh runs): error codes,
structured reads with holes, block status, FUA, cache, multi-conn flush and
simple replies. Usage: protocol.py PORT (exports: m=mem, f=file, ro=read-only)."""
import errno
import sys

import nbd

sys.path.insert(0, sys.path[0])
from nbdraw import check, finish  # noqa: E402

PORT = int(sys.argv[1])


def connect(name, structured=True, strict=True):
    h = nbd.NBD()
    h.set_export_name(name)
    h.set_request_structured_replies(structured)
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    if not strict:
        h.set_strict_mode(0)  # let bad requests reach the server
    h.connect_tcp("127.0.0.1", str(PORT))
    return h


def expect_errno(fn, want, what):
    try:
        fn()
    except nbd.Error as e:
        # libnbd gives the errno's name.
        got = e.errno if isinstance(e.errno, int) else getattr(errno, str(e.errno), e.errno)
        check(got == want, f"{what}: errno {e.errno}, want {errno.errorcode[want]}")
        return
    check(False, f"{what}: no error")


def errors():
    h = connect("m", strict=False)
    size = h.get_size()
    expect_errno(lambda: h.pread(4096, size - 1024), errno.EINVAL, "read past the end")
    expect_errno(lambda: h.pwrite(b"x" * 4096, size - 1024), errno.ENOSPC, "write past the end")
    expect_errno(lambda: h.zero(8192, size - 4096), errno.ENOSPC, "zero past the end")
    expect_errno(lambda: h.trim(8192, size), errno.EINVAL, "trim past the end")
    expect_errno(lambda: h.pread(4096, 1 << 62), errno.EINVAL, "read at a huge offset")
    expect_errno(lambda: h.pread((32 << 20) + 1, 0), errno.EINVAL, "read over the maximum")
    # A write over the maximum is refused and its payload skipped: the
    # connection keeps working.
    expect_errno(lambda: h.pwrite(b"\1" * ((32 << 20) + 4096), 0), errno.EINVAL,
                 "write over the maximum")
    expect_errno(lambda: h.pread(0, 0), errno.EINVAL, "zero-length read")
    expect_errno(lambda: h.pread(512, 0, nbd.CMD_FLAG_FAST_ZERO), errno.EINVAL,
                 "FAST_ZERO on a read")
    h.pwrite(b"ok" * 2048, 4096)
    check(h.pread(4096, 4096) == b"ok" * 2048, "connection works after errors")
    h.shutdown()

    r = connect("ro", strict=False)
    check(r.is_read_only(), "ro is read-only")
    expect_errno(lambda: r.pwrite(b"x" * 512, 0), errno.EPERM, "write to read-only")
    expect_errno(lambda: r.trim(512, 0), errno.EPERM, "trim on read-only")
    expect_errno(lambda: r.zero(512, 0), errno.EPERM, "zero on read-only")
    check(r.pread(512, 0) == bytes(512), "read from read-only")
    r.shutdown()


def structured_reads():
    h = connect("m")
    check(h.get_structured_replies_negotiated(), "structured replies negotiated")
    base = 1 << 20
    data = bytes(range(256)) * 16  # 4 KiB
    h.pwrite(data, base + 64 * 1024)
    chunks = []

    def cb(buf, offset, status, err):
        chunks.append((offset, len(buf), status))
        return 0

    buf = h.pread_structured(256 * 1024, base, cb)
    check(buf == bytes(64 * 1024) + data + bytes(188 * 1024), "structured read contents")
    holes = [c for c in chunks if c[2] == nbd.READ_HOLE]
    datas = [c for c in chunks if c[2] == nbd.READ_DATA]
    check(len(holes) == 2 and len(datas) == 1, f"hole/data chunks: {chunks}")
    check(datas and datas[0][0] == base + 64 * 1024 and datas[0][1] == 4096,
          f"data chunk: {datas}")
    check(sum(c[1] for c in chunks) == 256 * 1024, "chunks cover the read")

    # Alternating data and zero blocks: at most 8 chunks, contiguous, and
    # the same bytes as a plain read.
    alt = 4 << 20
    for i in range(0, 40, 2):
        h.pwrite(bytes([i + 1]) * 4096, alt + i * 4096)
    chunks.clear()
    got = h.pread_structured(40 * 4096, alt, cb)
    want = b"".join(bytes([i + 1]) * 4096 if i % 2 == 0 else bytes(4096) for i in range(40))
    check(got == want, "alternating blocks read back")
    check(len(chunks) <= 8, f"chunk count capped: {len(chunks)}")
    pos = alt
    for off, ln, st in sorted(chunks):
        check(off == pos, f"chunks contiguous at {off}")
        pos = off + ln
    check(pos == alt + 40 * 4096, "chunks cover the read")

    chunks.clear()
    h.pread_structured(256 * 1024, base, cb, nbd.CMD_FLAG_DF)
    check(len(chunks) == 1 and chunks[0][2] == nbd.READ_DATA, f"DF gives one chunk: {chunks}")

    # Block status: hole, data, hole around the written block.
    ext = []

    def bs(meta, offset, entries, err):
        check(meta == nbd.CONTEXT_BASE_ALLOCATION, f"context {meta}")
        ext.extend(entries)
        return 0

    h.block_status(256 * 1024, base, bs)
    pairs = list(zip(ext[0::2], ext[1::2]))
    check(pairs[:3] == [(64 * 1024, 3), (64 * 1024, 0), (128 * 1024, 3)],
          f"block status extents: {pairs}")
    check(sum(p[0] for p in pairs) <= 256 * 1024, "extents stay within the request")
    ext.clear()
    h.block_status(256 * 1024, base, bs, nbd.CMD_FLAG_REQ_ONE)
    check(len(ext) == 2 and ext[0] == 64 * 1024, f"REQ_ONE gives one extent: {ext}")

    # FUA, flush, cache, zero with FAST_ZERO and NO_HOLE, trim.
    h.pwrite(b"\xaa" * 65536, 0, nbd.CMD_FLAG_FUA)
    h.flush()
    h.cache(65536, 0)
    check(h.pread(65536, 0) == b"\xaa" * 65536, "FUA write")
    h.zero(65536, 0, nbd.CMD_FLAG_FAST_ZERO)
    check(h.pread(65536, 0) == bytes(65536), "fast zero")
    h.pwrite(b"\xbb" * 65536, 0)
    h.zero(65536, 0, nbd.CMD_FLAG_NO_HOLE)
    check(h.pread(65536, 0) == bytes(65536), "zero without holes")
    h.pwrite(b"\xcc" * 65536, 0)
    h.trim(65536, 0)
    check(h.pread(65536, 0) == bytes(65536), "trim on mem reads zeroes")
    h.shutdown()


def multi_conn():
    a = connect("f")
    b = connect("f")
    check(a.can_multi_conn(), "file export offers multi-conn")
    a.pwrite(b"\x42" * 8192, 12288)
    b.flush()  # covers a's completed write
    check(b.pread(8192, 12288) == b"\x42" * 8192, "second connection sees the first's write")
    a.shutdown()
    b.shutdown()


def simple_replies():
    h = connect("m", structured=False, strict=False)
    check(not h.get_structured_replies_negotiated(), "simple replies only")
    h.pwrite(b"s" * 1000, 777)
    check(h.pread(1000, 777) == b"s" * 1000, "simple reply read")
    expect_errno(lambda: h.pread(4096, h.get_size()), errno.EINVAL, "simple reply error")
    check(h.pread(1, 777) == b"s", "connection works after a simple error reply")
    h.shutdown()


errors()
structured_reads()
multi_conn()
simple_replies()
finish()
