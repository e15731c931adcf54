"""Access control seen by clients from two loopback addresses.
Usage: access.py PORT. The server: --allow 127.0.0.0/30 (so .1 and .2, not
.5), --max-connections-per-client 3; exports pub, secret (allow =
127.0.0.2), hid (hidden = yes)."""
import struct
import sys
import time

sys.path.insert(0, sys.path[0])
import nbdraw as n
from nbdraw import check

PORT = int(sys.argv[1])
def listing(src):
    c = n.Client(PORT, source=src)
    c.greeting()
    r = c.replies(n.OPT_LIST)
    names = [p[4:4 + struct.unpack(">I", p[:4])[0]].decode() for t, p in r if t == n.REP_SERVER]
    return c, names


def go(c, name):
    d = struct.pack(">I", len(name)) + name.encode() + struct.pack(">H", 0)
    return c.replies(n.OPT_GO, d)[-1][0]


c, names = listing("127.0.0.1")
check(names == ["pub"], f"127.0.0.1 lists {names}")
check(go(c, "secret") == n.REP_ERR_UNKNOWN, "secret is unknown to 127.0.0.1")
c, names = listing("127.0.0.1")
check(go(c, "hid") == n.REP_ACK, "a hidden export is still reachable by name")
c, names = listing("127.0.0.2")
check(names == ["pub", "secret"], f"127.0.0.2 lists {names}")
check(go(c, "secret") == n.REP_ACK, "127.0.0.2 may use secret")

# Outside the server's allow list: closed before the greeting.
c = n.Client(PORT, source="127.0.0.5")
check(c.closed(timeout=3), "127.0.0.5 is refused")

# Three connections per address (127.0.0.3 has none open yet); the fourth
# is closed, other addresses are unaffected.
held = [n.Client(PORT, source="127.0.0.3") for _ in range(3)]
for h in held:
    h.greeting()
extra = n.Client(PORT, source="127.0.0.3")
check(extra.closed(timeout=3), "a fourth connection from 127.0.0.3 is refused")
other = n.Client(PORT, source="127.0.0.2")
other.greeting()
check(go(other, "pub") == n.REP_ACK, "127.0.0.2 is not limited by 127.0.0.3's count")
for h in held:
    h.s.close()
# The server notices the closes asynchronously: retry for a while.
released = False
deadline = time.monotonic() + 10
while not released and time.monotonic() < deadline:
    again = n.Client(PORT, source="127.0.0.3")
    try:
        again.greeting()
        released = go(again, "pub") == n.REP_ACK
    except n.Closed:
        time.sleep(0.2)
check(released, "the count is released when connections close")
n.finish()
