"""A well-behaved client beside 200 hostile ones keeps most of its speed.
Usage: fairness.py PORT SERVER_PID [--export NAME] [--report FILE]
(export m = mem:256M; stress.cmake gives the in-flight caps). With
--report, the figures go to FILE as JSON and the targets are not asserted:
perf/bench-fairness.sh runs it against nbdplex and its peers.

The good client is fio's nbd engine: 4 KiB random writes at QD1 (its p99
completion latency) and at QD16 (its IOPS), alone, then while 200 hostile
connections run: 120 that flood 4 KiB WRITEs and never read a reply, so
each sits at its in-flight cap and together they hold the server's total
budget; 40 that send their handshake a byte a second; 40 that connect and
send garbage or bad requests, over and over. The issue's target is p99
within 3x and IOPS at least 0.7x of alone; the assertions are that loose,
the figures are printed. Each measurement is the better of two runs, as
other work on a small machine only ever slows a run down, and a miss is
measured once more before it fails."""
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, sys.path[0])
from stresslib import n, check, finish, log, alive, connect_go  # noqa: E402

PORT, PID = int(sys.argv[1]), int(sys.argv[2])
opts = dict(zip(sys.argv[3::2], sys.argv[4::2]))
EXPORT, REPORT = opts.get("--export", "m"), opts.get("--report")
FLOODERS, SLOW, GARBAGE = 120, 40, 40
SECONDS = 5
stop = threading.Event()
counts = {"flood_bytes": 0, "slow": 0, "garbage": 0}
lock = threading.Lock()


def fio(qd):
    """One fio run of 4 KiB random writes at queue depth qd; returns (IOPS,
    p99 completion latency in µs)."""
    out = subprocess.run(
        ["fio", "--name=good", "--ioengine=nbd", f"--uri=nbd://127.0.0.1:{PORT}/{EXPORT}",
         "--rw=randwrite", "--bs=4k", f"--iodepth={qd}", "--size=64M", "--offset=128M",
         "--time_based=1", "--ramp_time=1", f"--runtime={SECONDS}", "--output-format=json"],
        capture_output=True, text=True, timeout=SECONDS + 60)
    if out.returncode != 0:
        raise AssertionError(f"fio at QD{qd}: {out.stderr[-300:]}")
    w = json.loads(out.stdout[out.stdout.index("{"):])["jobs"][0]["write"]
    return w["iops"], w["clat_ns"]["percentile"]["99.000000"] / 1000


def measure(what, rounds=2):
    """The best of runs at QD1 (lowest p99) and at QD16 (most IOPS), taken
    in turns, so that a spell of other work on the machine spoils one of
    each at most."""
    p99, iops = float("inf"), 0.0
    for _ in range(rounds):
        p99 = min(p99, fio(1)[1])
        iops = max(iops, fio(16)[0])
    log(f"{what}: QD1 p99 {p99:.0f} µs; QD16 {iops:.0f} IOPS")
    return p99, iops


def flooder(i):
    """WRITEs of 4 KiB, never reading a reply: the server stops reading it
    at its cap, and its socket's buffers fill."""
    try:
        c = connect_go(PORT, EXPORT)
    except (OSError, n.Closed):
        return
    # A small receive buffer: the replies it never reads back up into the
    # server soon, and it sits at its in-flight cap, as a client on a slow
    # or stuck link would.
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.s.settimeout(0.5)
    req = b"".join(struct.pack(">IHHQQI", n.REQ_MAGIC, 0, n.CMD_WRITE, k, (k % 4096) * 4096, 4096)
                   + b"\xa5" * 4096 for k in range(16))
    view, sent = memoryview(req), 0
    while not stop.is_set():
        try:
            sent += c.s.send(view[sent % len(req):])
        except socket.timeout:
            continue
        except OSError:
            break
    with lock:
        counts["flood_bytes"] += sent
    c.s.close()


def slow_handshake(i):
    """The handshake a byte a second, again when the server gives up."""
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
            msg = (struct.pack(">I", 3) + struct.pack(">QII", n.IHAVEOPT, n.OPT_GO, 6 + len(EXPORT))
                   + struct.pack(">I", len(EXPORT)) + EXPORT.encode() + b"\0\0")
            for b in msg:
                if stop.wait(1):
                    break
                s.send(bytes([b]))
            s.close()
        except OSError:
            stop.wait(0.5)
        with lock:
            counts["slow"] += 1


def garbage(i):
    """Connects, sends random bytes or bad requests, leaves; again."""
    rnd = random.Random(i)
    while not stop.is_set():
        try:
            c = n.Client(PORT, timeout=5)
            if rnd.random() < 0.5:
                c.s.sendall(rnd.randbytes(rnd.randrange(1, 8192)))
            else:
                c.greeting()
                c.go(EXPORT, meta=False)
                for _ in range(20):
                    c.request(rnd.choice((n.CMD_READ, 99, n.CMD_WRITE)), 1 << 40, 4096, 0)
                c.s.sendall(rnd.randbytes(64))
            c.s.close()
        except (OSError, n.Closed):
            pass
        with lock:
            counts["garbage"] += 1
        stop.wait(0.2)


alone = measure("alone")
threads = ([threading.Thread(target=flooder, args=(i,), daemon=True) for i in range(FLOODERS)]
           + [threading.Thread(target=slow_handshake, args=(i,), daemon=True) for i in range(SLOW)]
           + [threading.Thread(target=garbage, args=(i,), daemon=True) for i in range(GARBAGE)])
for t in threads:
    t.start()
time.sleep(3)  # the flooders reach their caps
with_hostile = measure(f"beside {len(threads)} hostile clients")
if not REPORT and (with_hostile[0] > 3 * alone[0] or with_hostile[1] < 0.7 * alone[1]):
    # The machine is shared (other engineers' builds, VMs and benches run
    # on its 2 cores): a miss gets one more look before it counts.
    again = measure("beside them, once more", 1)
    with_hostile = (min(with_hostile[0], again[0]), max(with_hostile[1], again[1]))
stop.set()
for t in threads:
    t.join(10)
check(not any(t.is_alive() for t in threads), "hostile clients stopped")
log(f"hostile: {counts['flood_bytes'] >> 20} MiB flooded, {counts['slow']} slow handshakes, "
    f"{counts['garbage']} garbage connections")
ratio_p99 = with_hostile[0] / alone[0]
ratio_iops = with_hostile[1] / alone[1]
log(f"good client beside them: p99 {ratio_p99:.2f}x alone (target <= 3), "
    f"IOPS {ratio_iops:.2f}x alone (target >= 0.7)")
if REPORT:
    with open(REPORT, "w") as f:
        json.dump({"alone_p99_us": alone[0], "alone_iops": alone[1], "with_p99_us": with_hostile[0],
                   "with_iops": with_hostile[1], "flooded_mib": counts["flood_bytes"] >> 20}, f)
else:
    check(ratio_p99 <= 3, f"QD1 p99 {with_hostile[0]:.0f} µs within 3x of {alone[0]:.0f} µs alone")
    check(ratio_iops >= 0.7, f"QD16 {with_hostile[1]:.0f} IOPS at least 0.7x of {alone[1]:.0f} alone")
check(alive(PID), "server alive")
finish()
