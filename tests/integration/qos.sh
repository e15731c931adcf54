#!/bin/bash
# Limits (qos.c) without timing: bad input is refused with a clear error
# and changes nothing (a config file at start and on SIGHUP, the control
# socket); a request over its limit waits and is answered, never failed;
# a connection open across changes of its limits keeps working; a
# [client] section names a TLS PSK identity; `nbdplex stats` shows the
# limits and what they held back. The rates themselves: qos_rate.sh.
. "$NP_SRC/tests/functions.sh"
requires nbdsh python3 openssl

# ---- a config file with a mistake: serve refuses to start, naming it
bad_conf() { # $1: lines of [export a]; $2: an extra section
	printf '[export a]\nspec = mem:16M\n%b\n%b\n' "$1" "${2:-}" >"$TMP/bad.ini"
	local rc=0
	"$NBDPLEX" serve -l 127.0.0.1:1 -c "$TMP/bad.ini" >"$TMP/bad.out" 2>&1 || rc=$?
	[ "$rc" = 2 ] || fail "serve with '$1' '${2:-}' exited $rc, not 2: $(cat "$TMP/bad.out")"
	grep -q "$3" "$TMP/bad.out" || fail "serve with '$1': no '$3' in: $(cat "$TMP/bad.out")"
}
bad_conf "iops-limit = -5" "" "bad value '-5' for 'iops-limit'"
bad_conf "bps-limit = fast" "" "bad value 'fast' for 'bps-limit'"
bad_conf "burst-seconds = 0" "" "bad value '0' for 'burst-seconds'"
bad_conf "iops-limt = 5" "" "unknown key 'iops-limt'"
bad_conf "" "[client c]\niops-limit = 5" "names no address"
bad_conf "" "[client c]\naddress = 300.1.1.1" "bad value '300.1.1.1' for 'address'"

# held_reads EXPORT HOST TLS-ARGS...: 16 reads over TLS (libnbd; the
# arguments: psk USER FILE, or cert DIR) take at least 0.4 s when a group
# limited to 20 IOPS with a bucket of 2 holds them.
held_reads() {
	python3 - "$PORT" "$@" <<'PY'
import sys, time, nbd
port, export, host, how = sys.argv[1:5]
h = nbd.NBD()
h.set_tls(nbd.TLS_REQUIRE)
if how == "psk":
    h.set_tls_username(sys.argv[5])
    h.set_tls_psk_file(sys.argv[6])
else:
    h.set_tls_certificates(sys.argv[5])
h.set_export_name(export)
h.connect_tcp(host, port)
t = time.monotonic()
b = nbd.Buffer(4096)
for i in range(16):
    h.aio_pread(b, 0)
while h.aio_in_flight():
    h.poll(1)
took = time.monotonic() - t
assert took >= 0.4, f"16 reads at 20/s, bucket 2, took {took:.2f} s"
PY
}

# ---- a server with limits, a control socket and TLS PSK
echo "alice:$(openssl rand -hex 32)" >"$TMP/keys.psk"
conf() { # $1: iops-limit of "a"
	cat <<INI
[export a]
spec = mem:16M
iops-limit = $1
burst-seconds = 0.1
[export b]
spec = mem:16M
[client alice]
tls-identity = alice
iops-limit = 20
burst-seconds = 0.1
INI
}
conf 50 >"$TMP/q.ini"
start_server -c "$TMP/q.ini" --control "$TMP/ctl.sock" --tls on --tls-psk "$TMP/keys.psk"
CTL=(--control "$TMP/ctl.sock")
show() { "$NBDPLEX" qos show "${CTL[@]}"; }
show >"$TMP/show0" || fail "qos show"
grep -q '^export a: iops-limit=50 burst-seconds=0.1;' "$TMP/show0" || fail "qos show: $(cat "$TMP/show0")"
grep -q '^export b: no limit;' "$TMP/show0" || fail "qos show: $(cat "$TMP/show0")"
grep -q '^client alice: iops-limit=20 ' "$TMP/show0" || fail "qos show: $(cat "$TMP/show0")"

# ---- the control socket refuses mistakes and changes nothing
bad_set() { # $1: expected message; the rest: qos set's arguments
	local msg=$1 rc=0
	shift
	"$NBDPLEX" qos set "${CTL[@]}" "$@" >"$TMP/set.out" 2>&1 || rc=$?
	[ "$rc" = 1 ] || fail "qos set $*: exit $rc, not 1: $(cat "$TMP/set.out")"
	grep -q "$msg" "$TMP/set.out" || fail "qos set $*: no '$msg' in: $(cat "$TMP/set.out")"
	show | sed 's/; waiting.*//' >"$TMP/show1"
	sed 's/; waiting.*//' "$TMP/show0" | cmp -s - "$TMP/show1" ||
		fail "qos set $* changed the limits: $(cat "$TMP/show1")"
}
bad_set "bad value '-1' for 'iops-limit'" a iops-limit=-1
bad_set "bad value '1x' for 'write-bps-limit'" a write-bps-limit=1x
bad_set "unknown key 'speed'" a iops-limit=100 speed=3
bad_set "want KEY=VALUE" a iops-limit=100,oops
bad_set "no export 'nope'" nope iops-limit=100
bad_set "no client 'bob'" --client bob iops-limit=100

# ---- requests over the limit wait and succeed, on a connection that stays
# open while its limit changes: by the control socket, then by SIGHUP, and
# a SIGHUP with a bad file keeps the limits as they were.
python3 - "$PORT" "$TMP" "$NBDPLEX" <<'PY' || fail "requests under a limit"
import subprocess, sys, time
import nbd
port, tmp, nbdplex = sys.argv[1:4]
h = nbd.NBD()
h.connect_uri(f"nbd://127.0.0.1:{port}/a")
def burst(n):
    """n 4 KiB writes and reads, 16 in flight; each must succeed."""
    t = time.monotonic()
    bufs = []
    for i in range(n):
        while h.aio_in_flight() >= 16:
            h.poll(1)
        bufs.append(nbd.Buffer.from_bytearray(bytearray([i % 256]) * 4096))
        h.aio_pwrite(bufs[-1], i * 4096)
    while h.aio_in_flight():
        h.poll(1)
    for i in range(n):
        assert h.pread(4096, i * 4096) == bytes([i % 256]) * 4096, f"block {i}"
    return time.monotonic() - t
# 2n requests at 50/s with a bucket of 5: at least (2n - 5) / 50 s.
took = burst(40)
assert took >= 1.3, f"80 requests under a limit of 50/s took {took:.2f} s"
subprocess.run([nbdplex, "qos", "set", "--control", f"{tmp}/ctl.sock", "a",
                "iops-limit=0"], check=True, stdout=subprocess.DEVNULL)
def throttled():
    out = subprocess.run([nbdplex, "qos", "show", "--control", f"{tmp}/ctl.sock"], check=True,
                         capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("export a:"))
    return int(line.split("throttled ")[1].split()[0])
n = throttled()
burst(40)
assert throttled() == n, "requests waited with the limit lifted"
PY
conf 40 >"$TMP/q.ini"
kill -HUP "$SERVER_PID"
a_is() { show | grep -q "^export a: iops-limit=$1 "; }
wait_until 1 a_is 40 || fail "SIGHUP did not apply within a second: $(show)"
printf '[export a]\nspec = mem:16M\niops-limit = -3\n' >"$TMP/q.ini"
kill -HUP "$SERVER_PID"
wait_until 5 grep -q "bad value '-3'" "$TMP/server.log" || fail "bad file on SIGHUP not reported"
show | grep -q '^export a: iops-limit=40 ' || fail "a bad file on SIGHUP changed the limits: $(show)"
grep -q "closing" "$TMP/server.log" && fail "a connection was closed"

# ---- a [client] names a TLS identity: alice's requests over PSK wait in
# her group, a plain connection from the same address does not.
before=$(show | sed -n 's/^client alice: .*throttled \([0-9]*\) requests.*/\1/p')
nbdsh -u "nbd://127.0.0.1:$PORT/b" -c '
for i in range(40): h.pread(4096, 0)' || fail "plain reads"
mid=$(show | sed -n 's/^client alice: .*throttled \([0-9]*\) requests.*/\1/p')
[ "$mid" = "$before" ] || fail "a plain connection waited in alice's group ($before -> $mid)"
held_reads b 127.0.0.1 psk alice "$TMP/keys.psk" || fail "reads as alice over TLS"
after=$(show | sed -n 's/^client alice: .*throttled \([0-9]*\) requests.*/\1/p')
[ "$after" -gt "$mid" ] || fail "alice's reads were not held in her group ($mid -> $after)"

# ---- a client that leaves with requests held back: they are dropped at
# once (np_qos_cancel), not let go at the limit's pace (200 at 20/s: 10 s).
"$NBDPLEX" qos set "${CTL[@]}" b iops-limit=20,burst-seconds=0.05 >/dev/null || fail "qos set b"
PYTHONPATH="$NP_SRC/tests/integration" python3 - "$PORT" <<'PY' || fail "a client leaving mid-wait"
import struct, sys, time
import nbdraw as n
c = n.Client(int(sys.argv[1]))
c.greeting()
c.go("b", meta=False)
c.s.sendall(b"".join(struct.pack(">IHHQQI", n.REQ_MAGIC, 0, n.CMD_READ, i, 0, 4096)
                     for i in range(200)))
time.sleep(0.5)
c.s.close()
PY
b_idle() { show | grep -q '^export b: .*; waiting 0;'; }
wait_until 2 b_idle || fail "requests of a closed connection still wait: $(show)"
assert_serving b
"$NBDPLEX" qos set "${CTL[@]}" b iops-limit=0 >/dev/null || fail "qos set b"

# ---- the metrics
"$NBDPLEX" stats "${CTL[@]}" >"$TMP/stats" || fail "nbdplex stats"
for m in 'nbdplex_qos_limit{export="a",kind="iops",class="all"} 40' \
	'nbdplex_qos_limit{client="alice",kind="iops",class="all"} 20' \
	'nbdplex_qos_waiting{export="a"} 0' 'nbdplex_qos_throttled_total{client="alice"} '; do
	grep -qF "$m" "$TMP/stats" || fail "no '$m' in the metrics"
done
grep -q '^nbdplex_qos_throttled_seconds_total{export="a"} [0-9.]*[1-9]' "$TMP/stats" ||
	fail "no time throttled counted for export a"
stop_server

# ---- a [client] names a certificate's subject (RFC 2253 form, as
# `openssl x509 -subject -nameopt RFC2253` prints it): with
# --tls-verify-peer its holder's requests wait in that group.
"$NP_SRC/tests/make-pki.sh" "$TMP/pki" "$TMP/cli" --client-cert || fail "making certificates"
dn=$(openssl x509 -in "$TMP/cli/client-cert.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
printf '[export c]\nspec = mem:16M\n[client carol]\ntls-identity = %s\niops-limit = 20\nburst-seconds = 0.1\n' \
	"$dn" >"$TMP/dn.ini"
start_server -c "$TMP/dn.ini" --control "$TMP/ctl.sock" --tls require \
	--tls-certificates "$TMP/pki" --tls-verify-peer
held_reads c localhost cert "$TMP/cli" || fail "reads with a client certificate"
show | grep -q '^client carol: .*throttled [1-9][0-9]* requests' ||
	fail "the certificate's holder was not held in its group ($dn): $(show)"
stop_server
pass
