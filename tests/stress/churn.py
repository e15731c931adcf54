"""10,000 connect/disconnect cycles from several threads: close at once,
after the greeting, mid-negotiation, after GO, and after GO with a clean
NBD_CMD_DISC. Usage: churn.py PORT SERVER_PID (export m). A good client
writes and verifies data throughout; afterwards the server holds no
descriptor for any of them and its RSS is bounded."""
import socket
import sys
import threading
import time

sys.path.insert(0, sys.path[0])
from stresslib import n, check, finish, log, rss_mib, alive, settle_fds  # noqa: E402
from stresslib import baseline_with_good_client, connect_go, run_threads, serving_check  # noqa: E402

PORT, PID = int(sys.argv[1]), int(sys.argv[2])
CYCLES, THREADS = 10000, 8
DEADLINE_S = 100
RSS_MAX_MIB = 128


def at_once():
    socket.create_connection(("127.0.0.1", PORT), timeout=10).close()


def after_greeting():
    c = n.Client(PORT)
    c.recv(18)
    c.s.close()


def mid_negotiation():
    c = n.Client(PORT)
    c.greeting()
    c.replies(n.OPT_STRUCTURED_REPLY)
    c.option(n.OPT_LIST)
    c.s.close()


def after_go():
    connect_go(PORT).s.close()


def after_disc():
    c = connect_go(PORT)
    c.request(n.CMD_DISC, 0, 0)
    closed = c.closed()
    c.s.close()
    if not closed:
        raise AssertionError("the server did not close after NBD_CMD_DISC")


KINDS = [at_once, after_greeting, mid_negotiation, after_go, after_disc]
counts = [0] * len(KINDS)
errors = []
lock = threading.Lock()
stop_at = time.monotonic() + DEADLINE_S


def worker(w):
    for i in range(w, CYCLES, THREADS):
        if time.monotonic() > stop_at:
            return
        k = i % len(KINDS)
        try:
            KINDS[k]()
        except (OSError, n.Closed, AssertionError) as e:
            with lock:
                errors.append(f"{KINDS[k].__name__}: {type(e).__name__}: {e}")
            continue
        with lock:
            counts[k] += 1


good, base_fds, base_rss = baseline_with_good_client(PORT, PID)
t0 = time.monotonic()
check(run_threads(worker, [(w,) for w in range(THREADS)], DEADLINE_S + 30), "workers finished")
elapsed = time.monotonic() - t0
log(f"{sum(counts)} cycles in {elapsed:.1f} s: "
    + ", ".join(f"{k.__name__} {c}" for k, c in zip(KINDS, counts)))
check(not errors, f"{len(errors)} cycles failed: {errors[:3]}")
check(sum(counts) == CYCLES, f"all {CYCLES} cycles done within {DEADLINE_S} s: {sum(counts)}")
check(alive(PID), "server alive after the churn")
check(good.error is None, f"good client during the churn: {good.error}")
serving_check(PORT, "after the churn")
fds = settle_fds(PID, base_fds)
rss = rss_mib(PID)
log(f"after: {fds} fds (baseline {base_fds}), {rss:.1f} MiB RSS")
check(fds <= base_fds, f"descriptors freed: {fds} open, {base_fds} before")
check(rss < RSS_MAX_MIB, f"RSS {rss:.1f} MiB < {RSS_MAX_MIB} MiB")
check(good.stop() and good.error is None, f"good client stopped cleanly: {good.error}")
check(good.rounds > 0, "good client verified data")
log(f"good client: {good.rounds} rounds, slowest {good.worst:.2f} s")
finish()
