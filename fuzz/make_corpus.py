#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/NAME/: a few small valid (and a few
nearly valid) messages per target. Run it again after changing it; the files
are checked in so that the fuzzers start from them without Python."""
import os
import struct
import sys

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import nbdraw as n  # noqa: E402  (the protocol's numbers, defined once)


def opt(code, data=b""):
    return struct.pack(">QII", n.IHAVEOPT, code, len(data)) + data


def name(s):
    return struct.pack(">I", len(s)) + s.encode()


def go(export, infos=()):
    return name(export) + struct.pack(">H", len(infos)) + b"".join(
        struct.pack(">H", i) for i in infos)


def meta(export, *queries):
    return name(export) + struct.pack(">I", len(queries)) + b"".join(name(q) for q in queries)


FLAGS = struct.pack(">I", 3)
handshake = {
    "go_structured": FLAGS + opt(n.OPT_STRUCTURED_REPLY)
    + opt(n.OPT_SET_META, meta("", "base:allocation")) + opt(n.OPT_GO, go("")),
    "list_info_export_name": FLAGS + opt(n.OPT_LIST) + opt(n.OPT_INFO, go("disk", (1, 2, 3)))
    + opt(n.OPT_EXPORT_NAME, b"disk"),
    "extended_list_meta": struct.pack(">I", 1) + opt(n.OPT_EXTENDED_HEADERS)
    + opt(n.OPT_LIST_META, meta("disk", "base:")) + opt(n.OPT_GO, go("ro", (0,))),
    "abort": FLAGS + opt(n.OPT_ABORT),
    "errors": FLAGS + opt(n.OPT_STARTTLS) + opt(99, b"xyz") + opt(n.OPT_GO, go("nope"))
    + opt(n.OPT_SET_META, meta("disk", "base:allocation")) + opt(n.OPT_EXPORT_NAME),
    "bad_flags": struct.pack(">I", 4),
    "hidden_go": FLAGS + opt(n.OPT_INFO, go("hidden", (2,))) + opt(n.OPT_GO, go("hidden")),
    "meta_contexts": FLAGS + opt(n.OPT_EXTENDED_HEADERS)
    + opt(n.OPT_LIST_META, meta("disk", "qemu:dirty-bitmap:"))
    + opt(n.OPT_SET_META, meta("disk", *(f"qemu:dirty-bitmap:b{i}" for i in range(9))))
    + opt(n.OPT_SET_META, meta("disk", "qemu:allocation-depth", "base:allocation",
                               "qemu:dirty-bitmap:b1", "nope")) + opt(n.OPT_GO, go("disk")),
}


def req(cmd, off, ln, flags=0, cookie=1):
    return struct.pack(">IHHQQI", n.REQ_MAGIC, flags, cmd, cookie, off, ln)


def ext_req(cmd, off, ln, flags=0, cookie=1):
    return struct.pack(">IHHQQQ", n.EXT_REQ_MAGIC, flags, cmd, cookie, off, ln)


codec = {
    "read": req(n.CMD_READ, 4096, 512),
    "ext_write": ext_req(n.CMD_WRITE, 1 << 40, 1 << 33, n.FLAG_FUA, 7),
    "simple_reply": struct.pack(">IIQ", n.SIMPLE_MAGIC, 22, 5),
    "chunk": struct.pack(">IHHQI", n.STRUCT_MAGIC, 1, n.TYPE_OFFSET_DATA, 9, 520),
    "ext_chunk": struct.pack(">IHHQQQ", n.EXT_REPLY_MAGIC, 1, n.TYPE_BLOCK_STATUS_EXT, 3,
                             4096, 24),
    "stream": b"\0" + req(n.CMD_WRITE, 0, 4) + req(n.CMD_FLUSH, 0, 0) + req(n.CMD_DISC, 0, 0),
    "ext_stream": b"\1" + ext_req(n.CMD_BLOCK_STATUS, 0, 1 << 20, n.FLAG_REQ_ONE)
    + ext_req(n.CMD_TRIM, 512, 512),
}

config = {
    "full.ini": b"""[server]
listen = 127.0.0.1:10809
listen = [::1]:10810
threads = 8
loops = 2
read-only = no
pidfile = /run/nbdplex.pid
handshake-timeout = 10
max-inflight = 128M
max-request = 48M
listen = unix:/run/nbdplex.sock
socket-mode = 0600

[export disk]
spec = file:/var/lib/disk.img,size=1G
description = the main disk
read-only = yes

[export scratch]
spec = mem:64M
""",
    "bad_key.ini": b"[server]\nthreads = 4\nbogus = 1\n",
    "no_spec.ini": b"[export a]\ndescription = no spec\n",
    "redefine_cli.ini": b"; comment\n[export cli]\nspec = mem:2M\n# another\n[export b]\n"
    b"spec=thin:/pool/vol\nread-only=true\n",
    "bad_values.ini": b"[server]\nmax-inflight = 1K\nthreads = -1\nmax-request = 512M\n"
    b"socket-mode = 999\n",
    "access.ini": b"[server]\nallow = 127.0.0.1, 10.0.0.0/8 ::1 fd00::/8\nmax-connections = 100\n"
    b"max-connections-per-client = 4\n[export cli]\nhidden = yes\nallow = 192.168.1.0/24\n",
    "bad_allow.ini": b"[server]\nallow = 10.0.0.0/33\n[export x]\nspec = mem:1M\nallow = ::1/129\n",
}

# reply: options (bit 0 structured, 1 extended, 2 REQ_ONE), the READ's
# offset / 97 (2 bytes) and length (3 bytes), then runs of data (top bit:
# zeroes), reused as extents for BLOCK_STATUS.
reply = {
    "simple": bytes([0, 0, 0, 0, 0x10, 0]) + b"\x01\x02\x03",
    "structured-holes": bytes([1, 0, 1, 0, 0x40, 0]) + bytes([0x10, 0x88, 0x20, 0xff, 0x01]),
    "extended-alternating": bytes([2, 0, 0, 1, 0, 0]) + bytes([0x3f, 0xbf] * 16),
    "extended-req-one": bytes([6, 0x12, 0x34, 0, 0x20, 0x01]) + bytes([0x80, 0x02, 0x00, 0x10]),
    "all-zero": bytes([3, 0, 0, 0, 0x80, 0]) + b"\xff",
}


def write(target, files):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for fname, data in files.items():
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data)


write("handshake", handshake)
write("codec", codec)
write("config", config)
write("reply", reply)
