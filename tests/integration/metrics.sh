#!/bin/bash
# Metrics: Prometheus text at /metrics and from `nbdplex stats` after known
# traffic: request, byte and error counts, latency histograms, per
# connection lines, export size and allocation.
. "$NP_SRC/tests/functions.sh"
requires qemu-io
MPORT=$(free_port)
start_server -e d=mem:64M -e idle=mem:1M --metrics 127.0.0.1:$MPORT --control "$TMP/ctl.sock"

# 10 writes of 64 KiB and 5 reads of 4 KiB, then one refused read.
cmds=()
for i in $(seq 0 9); do cmds+=(-c "write -P 7 $((i * 65536)) 64k"); done
for i in $(seq 0 4); do cmds+=(-c "read -P 7 $((i * 4096)) 4k"); done
qemu-io -f raw "$(uri d)" "${cmds[@]}" >/dev/null || fail "qemu-io traffic"
python3 - "$PORT" <<'PY' || fail "refused read"
import nbd, sys
h = nbd.NBD(); h.set_strict_mode(0); h.set_export_name("d")
h.connect_tcp("127.0.0.1", sys.argv[1])
try:
    h.pread(4096, 1 << 40)
except nbd.Error:
    pass
h.shutdown()
PY

python3 - "$MPORT" "$PORT" "$NBDPLEX" "$TMP/ctl.sock" <<'PY' || fail "metrics content"
import nbd, re, subprocess, sys, urllib.error, urllib.request
mport, port, binary, ctl = sys.argv[1:]

def parse(text):
    m = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            m[k] = float(v)
    return m

# A connection held open shows up with its peer.
h = nbd.NBD(); h.set_export_name("d"); h.connect_tcp("127.0.0.1", port)
h.pread(512, 0)
m = parse(urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10).read().decode())
s = parse(subprocess.run([binary, "stats", "--control", ctl], capture_output=True, text=True,
                         check=True).stdout)
h.shutdown()

def get(d, key):
    assert key in d, (key, sorted(d)[:40])
    return d[key]

w = 'export="d",command="write"'
r = 'export="d",command="read"'
assert get(m, "nbdplex_requests_total{%s}" % w) == 10, m
assert get(m, "nbdplex_bytes_total{%s}" % w) == 10 * 65536
assert get(m, "nbdplex_requests_total{%s}" % r) >= 6       # qemu-io may probe too
assert get(m, "nbdplex_errors_total{%s}" % r) == 1
assert get(m, 'nbdplex_request_duration_seconds_count{%s}' % w) == 10
assert get(m, 'nbdplex_request_duration_seconds_bucket{%s,le="+Inf"}' % w) == 10
assert get(m, 'nbdplex_request_duration_seconds_sum{%s}' % w) > 0
assert get(m, 'nbdplex_export_size_bytes{export="d"}') == 64 << 20
assert get(m, 'nbdplex_export_allocated_bytes{export="d"}') == 10 * 65536
assert get(m, 'nbdplex_export_allocated_bytes{export="idle"}') == 0
assert get(m, 'nbdplex_connections{export="d"}') == 1
conn = [k for k in m if k.startswith("nbdplex_connection_requests_total{")]
assert len(conn) == 1 and 'peer="127.0.0.1:' in conn[0] and 'export="d"' in conn[0], conn
assert m[conn[0]] == 1, conn
assert get(m, "nbdplex_connections_accepted_total") >= 3
# The control socket says the same.
assert get(s, "nbdplex_requests_total{%s}" % w) == 10
assert get(s, "nbdplex_bytes_total{%s}" % w) == 10 * 65536
try:
    urllib.request.urlopen(f"http://127.0.0.1:{mport}/other", timeout=10)
    raise AssertionError("404 expected")
except urllib.error.HTTPError as e:
    assert e.code == 404
print("16 passed, 0 failed")
PY

# Bad settings are named.
rc=0
"$NBDPLEX" serve -l 127.0.0.1:0 -e d=mem:1M --metrics nonsense 2>"$TMP/err" || rc=$?
[ $rc != 0 ] && grep -q "metrics 'nonsense': want HOST:PORT" "$TMP/err" || fail "bad --metrics: $(cat "$TMP/err")"
rc=0
"$NBDPLEX" stats --control "$TMP/none.sock" 2>"$TMP/err" || rc=$?
[ $rc != 0 ] && grep -q "none.sock" "$TMP/err" || fail "stats without a server"
stop_server
[ ! -e "$TMP/ctl.sock" ] || fail "control socket left behind"
pass
