"""Shared by the stress tests: the server's resources from /proc, a good
client that keeps writing and verifying data in the background, and checks
that are counted and reported. The protocol itself is tests/integration's
nbdraw."""
import os
import random
import struct
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import nbdraw as n  # noqa: E402,F401  (re-exported for the tests)

ok = bad = 0


def check(cond, what):
    global ok, bad
    if cond:
        ok += 1
    else:
        bad += 1
        print("check failed:", what, file=sys.stderr, flush=True)
    return cond


def finish():
    print(f"{ok} passed, {bad} failed", flush=True)
    sys.exit(1 if bad or not ok else 0)


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] not in "ZX"
    except FileNotFoundError:
        return False


def settle_fds(pid, want, timeout=15):
    """Waits until the server holds at most want descriptors; returns the
    last count seen."""
    deadline = time.monotonic() + timeout
    while True:
        cnt = fd_count(pid)
        if cnt <= want or time.monotonic() > deadline:
            return cnt
        time.sleep(0.2)


def connect_go(port, export="m", timeout=10):
    """A client past the handshake, with structured replies."""
    c = n.Client(port, timeout=timeout)
    c.greeting()
    c.go(export, meta=False)
    return c


class GoodClient(threading.Thread):
    """Writes a pattern to its own region, reads it back and compares, in a
    loop, until stopped. Counts rounds; records the first error."""

    def __init__(self, port, region, export="m"):
        super().__init__(daemon=True)
        self.port, self.region, self.export = port, region, export
        self.rounds = 0
        self.worst = 0.0  # seconds, the slowest write+read round
        self.error = None
        self.stopping = threading.Event()

    def one_round(self, c, rnd):
        length = rnd.choice((512, 4096, 65536, 1 << 20))
        off = self.region + rnd.randrange(0, (4 << 20) - length, 512)
        data = rnd.randbytes(length)
        ck = c.request(n.CMD_WRITE, off, length, 0, data)
        r = c.chunks()
        if r[-1][3] != ck or r[-1][2] == n.TYPE_ERROR:
            raise AssertionError(f"write at {off}: {r[-1][:4]}")
        ck = c.request(n.CMD_READ, off, length, n.FLAG_DF)
        r = c.chunks()
        got = b"".join(p[8:] for m, f, t, cookie, p in r if t == n.TYPE_OFFSET_DATA)
        if r[-1][3] != ck or got != data:
            raise AssertionError(f"read back at {off} length {length}: wrong data")

    def run(self):
        rnd = random.Random(self.region)
        try:
            c = connect_go(self.port, self.export, timeout=30)
            while not self.stopping.is_set():
                t = time.monotonic()
                self.one_round(c, rnd)
                self.worst = max(self.worst, time.monotonic() - t)
                self.rounds += 1
            c.request(n.CMD_DISC, 0, 0)
            c.s.close()
        except Exception as e:  # any failure of the good client is the test's failure
            self.error = f"{type(e).__name__}: {e}"

    def stop(self):
        self.stopping.set()
        self.join(60)
        return not self.is_alive()


def warm_up(port, loops=2, export="m"):
    """Connects once per event loop (they take turns), so that every loop
    has opened what it keeps for good (libuv holds one descriptor per loop,
    opened with its first connection) before descriptors are counted."""
    for _ in range(2 * loops):
        c = connect_go(port, export)
        c.request(n.CMD_DISC, 0, 0)
        c.s.close()


def serving_check(port, what, export="m"):
    """A fresh client connects and gets its data back."""
    try:
        c = connect_go(port, export)
        data = struct.pack(">Q", time.monotonic_ns()) * 64
        c.request(n.CMD_WRITE, 8 << 20, len(data), 0, data)
        c.chunks()
        c.request(n.CMD_READ, 8 << 20, len(data), n.FLAG_DF)
        r = c.chunks()
        c.request(n.CMD_DISC, 0, 0)
        c.s.close()
        return check(r[0][2] == n.TYPE_OFFSET_DATA and r[0][4][8:] == data,
                     f"fresh client reads its data {what}")
    except Exception as e:
        return check(False, f"fresh client {what}: {type(e).__name__}: {e}")


def baseline_with_good_client(port, pid, region=16 << 20):
    """Warms up the loops, starts a good client and measures the server's
    descriptors and RSS with it connected; returns (good, fds, rss)."""
    warm_up(port)
    good = GoodClient(port, region)
    good.start()
    time.sleep(1)
    fds, rss = fd_count(pid), rss_mib(pid)
    log(f"baseline with the good client connected: {fds} fds, {rss:.1f} MiB RSS")
    return good, fds, rss


def run_threads(target, args_list, timeout):
    """Runs target once per argument tuple, all at once; returns whether
    every thread finished within timeout seconds."""
    threads = [threading.Thread(target=target, args=a, daemon=True) for a in args_list]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)


def send_for(sock, data, seconds, poll=None):
    """Sends data on a non-blocking socket for at most seconds, never
    reading; calls poll() between tries. Stops early when the server
    closes the connection (a fair answer to a flood). Returns the bytes
    sent."""
    sock.setblocking(False)
    view = memoryview(data)
    sent, deadline = 0, time.monotonic() + seconds
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += sock.send(view[sent:])
        except BlockingIOError:
            time.sleep(0.01)
        except (ConnectionResetError, BrokenPipeError):
            break
        if poll and poll():
            break
    return sent
