"""A client that floods the negotiation with options whose replies are far
larger than the options, and never reads a reply. Usage: hs_flood.py PORT
SERVER_PID (export m, max in flight 32M, handshake timeout 30 s).

Each NBD_OPT_INFO here asks for the export's name 32,000 times: 64 KB in,
about 740 KB of NBD_REP_INFO replies out. The per-connection cap on bytes in
flight (README: "past it the server stops reading from that client until
replies drain") must bound what the server queues for this client, as it
does in transmission; so its RSS must stay within a bound for as long as
the client keeps sending."""
import struct
import sys
import time

sys.path.insert(0, sys.path[0])
from stresslib import n, check, finish, log, rss_mib, fd_count, alive, settle_fds  # noqa: E402
from stresslib import send_for, serving_check, warm_up  # noqa: E402

PORT, PID = int(sys.argv[1]), int(sys.argv[2])
FLOOD_S = 12
GROWTH_MAX_MIB = 160  # the 32M cap, with room for buffers and the allocator

warm_up(PORT)
base_fds, base_rss = fd_count(PID), rss_mib(PID)
c = n.Client(PORT)
c.greeting()
nreq = 32000
data = struct.pack(">I", 1) + b"m" + struct.pack(">H", nreq) + struct.pack(">H", 1) * nreq
opt = struct.pack(">QII", n.IHAVEOPT, n.OPT_INFO, len(data)) + data
peak = 0.0


def watch():
    """Tracks the peak; stops the flood once growth is clearly unbounded,
    with no need to push the machine further."""
    global peak
    peak = max(peak, rss_mib(PID))
    return peak - base_rss > 2 * GROWTH_MAX_MIB


t0 = time.monotonic()
sent = send_for(c.s, opt * 2000, FLOOD_S, watch)  # 128 MB at the most
elapsed = time.monotonic() - t0
log(f"sent {sent / 2**20:.1f} MiB of options in {elapsed:.1f} s; server RSS {base_rss:.1f} "
    f"-> peak {peak:.1f} MiB")
check(alive(PID), "server alive under the flood")
check(peak - base_rss < GROWTH_MAX_MIB,
      f"RSS grew {peak - base_rss:.0f} MiB (< {GROWTH_MAX_MIB} MiB) while a client sent "
      f"{sent / 2**20:.1f} MiB of NBD_OPT_INFO and read no reply")
c.s.close()
serving_check(PORT, "after the handshake flood")
fds = settle_fds(PID, base_fds)
check(fds <= base_fds, f"descriptors freed: {fds} open, {base_fds} before")
finish()
