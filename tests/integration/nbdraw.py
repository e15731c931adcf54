"""A deliberately small NBD client over a raw socket, for tests that need
what libnbd cannot send: extended headers (libnbd 1.14 predates them) and
malformed input. Not a library for anything else."""
import socket
import struct
import sys

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
EXT_REQ_MAGIC = 0x21E41C71
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668E33EF
EXT_REPLY_MAGIC = 0x6E8A278C

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 2, 3, 5, 6, 7
OPT_STRUCTURED_REPLY, OPT_LIST_META, OPT_SET_META, OPT_EXTENDED_HEADERS = 8, 9, 10, 11
REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = 1, 2, 3, 4
REP_ERR_UNSUP, REP_ERR_POLICY, REP_ERR_INVALID = 0x80000001, 0x80000002, 0x80000003
REP_ERR_UNKNOWN = 0x80000006
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM = 0, 1, 2, 3, 4
CMD_CACHE, CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 5, 6, 7
FLAG_FUA, FLAG_NO_HOLE, FLAG_DF, FLAG_REQ_ONE = 1, 2, 4, 8
TYPE_NONE, TYPE_OFFSET_DATA, TYPE_OFFSET_HOLE = 0, 1, 2
TYPE_BLOCK_STATUS, TYPE_BLOCK_STATUS_EXT, TYPE_ERROR = 5, 6, 32769
REPLY_FLAG_DONE = 1


checks = {"passed": 0, "failed": 0}


def check(cond, what):
    """Records one assertion; a failure is reported and the run goes on."""
    checks["passed" if cond else "failed"] += 1
    if not cond:
        print("check failed:", what, file=sys.stderr)


def finish():
    """Prints the tally and exits non-zero if any check failed."""
    print(f"{checks['passed']} passed, {checks['failed']} failed")
    sys.exit(1 if checks["failed"] else 0)


class Closed(Exception):
    pass


class Client:
    def __init__(self, port, timeout=10, source="127.0.0.1", host="127.0.0.1"):
        self.s = socket.create_connection((host, port), timeout=timeout,
                                          source_address=(source, 0))
        self.extended = False
        self.cookie = 0

    def recv(self, n):
        # Into one buffer: appending chunk by chunk copies a 32 MiB reply
        # thousands of times.
        b = bytearray(n)
        view, got = memoryview(b), 0
        while got < n:
            k = self.s.recv_into(view[got:], n - got)
            if not k:
                raise Closed(f"closed after {got} of {n} bytes")
            got += k
        return bytes(b)

    def closed(self, timeout=5):
        """True when the server closes the connection within timeout."""
        self.s.settimeout(timeout)
        try:
            while True:
                if not self.s.recv(65536):
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def greeting(self, cflags=3):
        magic, opt, hflags = struct.unpack(">QQH", self.recv(18))
        assert magic == NBDMAGIC and opt == IHAVEOPT, (magic, opt)
        self.s.sendall(struct.pack(">I", cflags))
        return hflags

    def option(self, opt, data=b""):
        self.s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def reply(self):
        magic, opt, typ, ln = struct.unpack(">QIII", self.recv(20))
        assert magic == REP_MAGIC, hex(magic)
        return opt, typ, self.recv(ln)

    def replies(self, opt, data=b""):
        """Sends an option; returns its replies up to the ACK or an error."""
        self.option(opt, data)
        out = []
        while True:
            o, typ, payload = self.reply()
            assert o == opt, (o, opt)
            out.append((typ, payload))
            if typ == REP_ACK or typ & 0x80000000:
                return out

    def go(self, name="", extended=False, meta=True):
        if extended:
            assert self.replies(OPT_EXTENDED_HEADERS)[-1][0] == REP_ACK
            self.extended = True
        else:
            assert self.replies(OPT_STRUCTURED_REPLY)[-1][0] == REP_ACK
        if meta:
            q = b"base:allocation"
            d = struct.pack(">I", len(name)) + name.encode() + struct.pack(">II", 1, len(q)) + q
            r = self.replies(OPT_SET_META, d)
            assert r[0][0] == REP_META_CONTEXT, r
        d = struct.pack(">I", len(name)) + name.encode() + struct.pack(">H", 0)
        r = self.replies(OPT_GO, d)
        assert r[-1][0] == REP_ACK, r
        info = [p for t, p in r if t == REP_INFO and p[:2] == b"\0\0"][0]
        self.size, self.tflags = struct.unpack(">QH", info[2:12])

    def export_name(self, name=""):
        """NBD_OPT_EXPORT_NAME: the old way in, with no negotiation at all
        (simple replies, no block sizes); after greeting()'s NO_ZEROES."""
        self.option(OPT_EXPORT_NAME, name.encode())
        self.size, self.tflags = struct.unpack(">QH", self.recv(10))

    def go_mode(self, mode):
        """GO to the default export with "simple" replies (no option
        before it), "structured" or "extended" ones, no meta context."""
        if mode == "simple":
            r = self.replies(OPT_GO, b"\0\0\0\0\0\0")
            check(r[-1][0] == REP_ACK, "GO without structured replies")
        else:
            self.go("", extended=(mode == "extended"), meta=False)

    def request(self, cmd, offset, length, flags=0, payload=b""):
        self.cookie += 1
        if self.extended:
            hdr = struct.pack(">IHHQQQ", EXT_REQ_MAGIC, flags, cmd, self.cookie, offset, length)
        else:
            hdr = struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, self.cookie, offset, length)
        self.s.sendall(hdr + payload)
        return self.cookie

    def chunk(self):
        """Reads one reply or chunk: (magic, flags, type, cookie, payload)."""
        magic = struct.unpack(">I", self.recv(4))[0]
        if magic == SIMPLE_MAGIC:
            err, cookie = struct.unpack(">IQ", self.recv(12))
            return magic, REPLY_FLAG_DONE, None, cookie, err
        if magic == STRUCT_MAGIC:
            flags, typ, cookie, ln = struct.unpack(">HHQI", self.recv(16))
        elif magic == EXT_REPLY_MAGIC:
            flags, typ, cookie, _off, ln = struct.unpack(">HHQQQ", self.recv(28))
        else:
            raise AssertionError(f"bad reply magic {magic:#x}")
        return magic, flags, typ, cookie, self.recv(ln)

    def chunks(self):
        """Reads chunks until one has the DONE flag."""
        out = []
        while True:
            c = self.chunk()
            out.append(c)
            if c[1] & REPLY_FLAG_DONE:
                return out
