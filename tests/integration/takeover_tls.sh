#!/bin/bash
# serve --takeover with a TLS client: without kernel TLS its session cannot
# move, so it drains: its request is answered, the session ends with
# close_notify, the log says so, and the client reconnects to the new
# process, which has its data. A plain client beside it moves as usual.
. "$NP_SRC/tests/functions.sh"
requires openssl python3

echo "alice:$(openssl rand -hex 32)" >"$TMP/keys.psk"
CTL=$TMP/ctl.sock
SPEC=(-e "d=file:$TMP/d.img,size=16M" --tls on --tls-psk "$TMP/keys.psk" --control "$CTL")
start_server "${SPEC[@]}"

python3 - "$PORT" "$TMP" <<'PY' >"$TMP/py.out" 2>&1 &
import os, sys, time, nbd
port, tmp = sys.argv[1], sys.argv[2]

def connect(tls):
    h = nbd.NBD()
    if tls:
        h.set_tls(nbd.TLS_REQUIRE)
        h.set_tls_username("alice")
        h.set_tls_psk_file(f"{tmp}/keys.psk")
    h.set_export_name("d")
    h.connect_tcp("localhost", port)
    return h

t, p = connect(True), connect(False)
assert t.get_tls_negotiated()
t.pwrite(b"T" * 4096, 0)
p.pwrite(b"P" * 4096, 4096)
open(f"{tmp}/ready", "w").close()
while not os.path.exists(f"{tmp}/done"):
    time.sleep(0.05)
try:
    t.pread(4096, 0)
    sys.exit("the TLS connection survived a hand-off without kernel TLS")
except nbd.Error as e:
    print("TLS connection ended:", e)
assert p.pread(4096, 4096) == b"P" * 4096, "plain client after the hand-off"
t2 = connect(True)
assert t2.pread(4096, 0) == b"T" * 4096, "reconnected TLS client's data"
for h in (p, t2):
    h.shutdown()
print("ok")
PY
CLIENT=$!
NP_PIDS+=("$CLIENT")
wait_until 30 test -e "$TMP/ready" || fail "client: $(cat "$TMP/py.out")"
takeover "$CTL" "${SPEC[@]}"
touch "$TMP/done"
wait "$CLIENT" || fail "client: $(cat "$TMP/py.out")"
grep -q 'TLS: draining for the hand-off (no kernel TLS' "$TMP/server.log" ||
	fail "the drain of the TLS connection is not logged"
grep -q 'hand-off: 1 connection(s) and 1 listener(s) passed' "$TMP/server.log" ||
	fail "the plain connection did not move alone"
grep -E 'closing:' "$TMP/server.log" && fail "a connection closed on an error"
stop_server
pass
