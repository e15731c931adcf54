"""Waves of hostile connections, hundreds at once, while a good client keeps
writing and verifying data. Usage: garbage.py PORT SERVER_PID [WAVES
PER_WAVE HOGS] (export m = mem:64M, max in flight 32M; 3 waves of 300, 4 of
them hogs, unless told).

Kinds of connection: random bytes before or after the greeting, closes at
once or with a reset, partial handshakes, options cut short, a WRITE cut off
mid-payload, bad requests after GO (with extended headers too), a
half-closed socket, and clients that send reads and never read the
replies. Afterwards the server must be up,
serve a fresh client, have freed every descriptor and kept its memory
bounded."""
import random
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, sys.path[0])
from stresslib import n, check, finish, log, rss_mib, fd_count, alive, settle_fds  # noqa: E402
from stresslib import baseline_with_good_client, connect_go, run_threads, send_for  # noqa: E402
from stresslib import serving_check  # noqa: E402

PORT, PID = int(sys.argv[1]), int(sys.argv[2])
WAVES, PER_WAVE = 3, 300
HOGS_PER_WAVE = 4  # clients that never read: each may hold max in flight (32M)
if len(sys.argv) > 3:
    WAVES, PER_WAVE, HOGS_PER_WAVE = (int(a) for a in sys.argv[3:6])
RSS_PEAK_MIB = 512
GOOD_ROUND_MAX_S = 30


def reset(s):
    """Closes with a TCP reset instead of a FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def random_bytes(c, rnd):
    c.s.sendall(rnd.randbytes(rnd.randrange(1, 65536)))


def greeting_then_garbage(c, rnd):
    c.recv(18)
    c.s.sendall(struct.pack(">I", 3) + rnd.randbytes(rnd.randrange(1, 4096)))


def close_at_once(c, rnd):
    pass


def partial_handshake(c, rnd):
    c.greeting()
    msg = struct.pack(">QII", n.IHAVEOPT, n.OPT_GO, 7) + struct.pack(">I", 1) + b"m\0\0"
    c.s.sendall(msg[:rnd.randrange(1, len(msg))])


def option_cut_short(c, rnd):
    c.greeting()
    c.s.sendall(struct.pack(">QII", n.IHAVEOPT, n.OPT_INFO, 60000) + b"\0" * 1000)


def options_then_half_close(c, rnd):
    c.greeting()
    c.option(n.OPT_LIST)
    c.option(n.OPT_STRUCTURED_REPLY)
    c.s.shutdown(socket.SHUT_WR)
    while c.s.recv(65536):
        pass


def mid_payload(c, rnd):
    c.greeting()
    c.go("m", meta=False)
    c.s.sendall(struct.pack(">IHHQQI", n.REQ_MAGIC, 0, n.CMD_WRITE, 1, 0, 1 << 20)
                + rnd.randbytes(rnd.randrange(0, 1 << 19)))


def garbage_after_go(c, rnd):
    c.greeting()
    c.go("m", meta=False)
    c.s.sendall(rnd.randbytes(rnd.randrange(28, 4096)))


def bad_requests(c, rnd):
    c.greeting()
    c.go("m", meta=False)
    for _ in range(rnd.randrange(1, 20)):
        c.request(rnd.choice((n.CMD_READ, n.CMD_WRITE, 99, n.CMD_TRIM)),
                  rnd.choice((0, 1 << 40, (64 << 20) - 1)), rnd.choice((0, 1, 1 << 26)),
                  rnd.randrange(0, 1 << 16))


def extended_junk(c, rnd):
    """Extended headers: requests with random flags (PAYLOAD_LEN among them),
    lengths and payloads that may or may not match."""
    c.greeting()
    c.go("m", extended=True, meta=rnd.random() < 0.5)
    for _ in range(rnd.randrange(1, 30)):
        length = rnd.choice((0, 1, 512, 1 << 20, 1 << 33, rnd.getrandbits(64)))
        c.request(rnd.randrange(0, 10), rnd.choice((0, 4096, (64 << 20) - 512, 1 << 63)),
                  length, rnd.getrandbits(16), rnd.randbytes(rnd.choice((0, 16, 4096))))


def never_reads(c, rnd):
    """Reads of 1 MiB, never reading a reply, past the in-flight cap."""
    c.greeting()
    c.go("m", meta=False)
    send_for(c.s, b"".join(struct.pack(">IHHQQI", n.REQ_MAGIC, 0, n.CMD_READ, i, 0, 1 << 20)
                           for i in range(100)), 2)
    time.sleep(1)


KINDS = [random_bytes, greeting_then_garbage, close_at_once, partial_handshake,
         option_cut_short, options_then_half_close, mid_payload, garbage_after_go,
         bad_requests, extended_junk]
done = {k.__name__: 0 for k in KINDS + [never_reads]}
refused = []
lock = threading.Lock()


def hostile(i, wave, barrier):
    rnd = random.Random(wave * 100003 + i)
    kind = never_reads if i < HOGS_PER_WAVE else KINDS[i % len(KINDS)]
    try:
        c = n.Client(PORT)
    except OSError as e:
        with lock:
            refused.append(f"connect: {e}")
        return
    try:
        barrier.wait(30)  # every connection of the wave is open at once
        kind(c, rnd)
    except (OSError, n.Closed, threading.BrokenBarrierError):
        pass  # the server may close or reset a hostile client: that is fine
    finally:
        if rnd.random() < 0.3:
            reset(c.s)
        else:
            c.s.close()
    with lock:
        done[kind.__name__] += 1


peak = [0.0]
monitoring = threading.Event()


def monitor():
    while not monitoring.is_set():
        try:
            peak[0] = max(peak[0], rss_mib(PID))
        except (OSError, AssertionError):
            return
        time.sleep(0.05)




def zero_length_writes():
    """WRITEs of length 0 are refused, and a refusal is still a reply: each
    request gets one, the FLUSH after them too."""
    c = connect_go(PORT, timeout=5)
    sent = [c.request(n.CMD_WRITE, 0, 0), c.request(n.CMD_WRITE, 4096, 0),
            c.request(n.CMD_FLUSH, 0, 0)]
    got = {}
    try:
        while len(got) < len(sent):
            m, flags, typ, cookie, payload = c.chunk()
            got[cookie] = payload if typ is None else struct.unpack(">I", payload[:4])[0]
    except (OSError, n.Closed):
        pass
    c.s.close()
    check(got == {sent[0]: 22, sent[1]: 22, sent[2]: 0},
          f"WRITEs of length 0 get EINVAL and a FLUSH after them 0: replies {got} "
          f"for cookies {sent}")


good, base_fds, base_rss = baseline_with_good_client(PORT, PID)
zero_length_writes()
mon = threading.Thread(target=monitor, daemon=True)
mon.start()
t0 = time.monotonic()
for wave in range(WAVES):
    barrier = threading.Barrier(PER_WAVE)
    check(run_threads(hostile, [(i, wave, barrier) for i in range(PER_WAVE)], 60),
          f"wave {wave}: hostile clients finished")
    check(alive(PID), f"server alive after wave {wave}")
    check(good.error is None, f"good client during wave {wave}: {good.error}")
    log(f"wave {wave}: {PER_WAVE} connections; good client at {good.rounds} rounds; "
        f"server {fd_count(PID)} fds, {rss_mib(PID):.1f} MiB RSS")
log(f"{WAVES * PER_WAVE} hostile connections in {time.monotonic() - t0:.1f} s: {done}")
check(not refused, f"every hostile client could connect: {refused[:3]}")
check(sum(done.values()) == WAVES * PER_WAVE - len(refused), f"every hostile client ran: {done}")

serving_check(PORT, "after the hostile waves")
check(good.stop() and good.error is None, f"good client stopped cleanly: {good.error}")
check(good.rounds > 0, "good client verified data")
# Not a measure of speed: a round stuck this long means a hang.
check(good.worst < GOOD_ROUND_MAX_S, f"slowest good round {good.worst:.1f} s < {GOOD_ROUND_MAX_S} s")
log(f"good client: {good.rounds} verified write+read rounds, slowest {good.worst:.2f} s")
monitoring.set()
mon.join()

# The good client has left too: back to the listener and the server's own.
fds = settle_fds(PID, base_fds - 1)
check(fds <= base_fds - 1, f"descriptors freed: {fds} open, {base_fds - 1} before (less the good client)")
rss = rss_mib(PID)
log(f"after: {fds} fds; RSS {rss:.1f} MiB (peak {peak[0]:.1f}, baseline {base_rss:.1f})")
check(peak[0] < RSS_PEAK_MIB, f"RSS peak {peak[0]:.1f} MiB < {RSS_PEAK_MIB} MiB")
check(alive(PID), "server alive at the end")
finish()
