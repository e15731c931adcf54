"""1,000 connections that complete the handshake and stay idle, then all
close. Usage: idle.py PORT SERVER_PID (export m). While they are open the
server must hold one descriptor for each, keep its RSS under a bound and
serve a good client; once they have closed it must hold none of them."""
import sys
import threading
import time

sys.path.insert(0, sys.path[0])
from stresslib import n, check, finish, log, rss_mib, fd_count, alive, settle_fds  # noqa: E402
from stresslib import connect_go, GoodClient, run_threads, serving_check, warm_up  # noqa: E402

PORT, PID = int(sys.argv[1]), int(sys.argv[2])
CONNS, THREADS = 1000, 8
RSS_MAX_MIB = 128
IDLE_S = 3

warm_up(PORT)
base_fds, base_rss = fd_count(PID), rss_mib(PID)
log(f"baseline: {base_fds} fds, {base_rss:.1f} MiB RSS")
conns, errors = [], []
lock = threading.Lock()


def opener(k):
    for _ in range(k):
        try:
            c = connect_go(PORT, timeout=30)
        except (OSError, n.Closed, AssertionError) as e:
            with lock:
                errors.append(f"{type(e).__name__}: {e}")
            return
        with lock:
            conns.append(c)


t0 = time.monotonic()
check(run_threads(opener, [(CONNS // THREADS,)] * THREADS, 120), "openers finished")
check(not errors, f"every connection got through the handshake: {errors[:3]}")
check(len(conns) == CONNS, f"{len(conns)} of {CONNS} connections open")
log(f"{len(conns)} connections past GO in {time.monotonic() - t0:.1f} s")

good = GoodClient(PORT, 16 << 20)
good.start()
time.sleep(IDLE_S)
fds, rss = fd_count(PID), rss_mib(PID)
log(f"with {len(conns)} idle connections and a good client: {fds} fds, {rss:.1f} MiB RSS")
check(fds >= base_fds + CONNS, f"server holds a descriptor per connection: {fds}")
check(rss < RSS_MAX_MIB, f"RSS {rss:.1f} MiB < {RSS_MAX_MIB} MiB with {CONNS} idle connections")
check(good.stop() and good.error is None, f"good client among the idle: {good.error}")
check(good.rounds > 0, "good client verified data among the idle connections")

# A sample of the idle connections still works after sitting there.
for c in conns[::100]:
    try:
        c.request(n.CMD_FLUSH, 0, 0)
        r = c.chunks()
        check(r[-1][2] != n.TYPE_ERROR and r[-1][4] in (0, b""), f"FLUSH on an idle conn: {r}")
    except (OSError, n.Closed) as e:
        check(False, f"idle connection was dropped: {e}")
for c in conns:
    c.s.close()
fds = settle_fds(PID, base_fds)
log(f"all closed: {fds} fds (baseline {base_fds}), {rss_mib(PID):.1f} MiB RSS")
check(fds <= base_fds, f"descriptors freed: {fds} open, {base_fds} before")
check(alive(PID), "server alive")
serving_check(PORT, "after 1,000 idle connections closed")
finish()
