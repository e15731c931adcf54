#!/bin/bash
# Limits hold: fio's nbd engine against an export limited to 500 IOPS, and
# one limited to 20 MiB/s, lands within 10% of the limit over 10 s, with 1
# and with 4 connections (the limit is the export's, shared), while an
# unlimited export served at the same time keeps at least 0.9x of its IOPS
# alone. A change from 500 to 2000 IOPS through the control socket, and
# back by SIGHUP, shows in fio's per-second log within 2 s, on the same
# connection. A [client] limit holds across that client's connections from
# 127.0.0.1 and not for another address, 127.0.0.2 (qos_client.py).
#
# The margins are the issue's; the figures are printed. Not registered
# under valgrind (tests/tests.cmake), where rates mean nothing.
. "$NP_SRC/tests/functions.sh"
requires fio python3

conf() { # $1: iops-limit of "lim"; $2: of client local1
	cat <<INI
[export lim]
spec = mem:256M
iops-limit = $1
[export bw]
spec = mem:256M
bps-limit = 20M
[export free]
spec = mem:256M
[export shared]
spec = mem:256M
[client local1]
address = 127.0.0.1
iops-limit = $2
INI
}
# The [client] section names 127.0.0.1, where fio connects from, with no
# limit (0) until the last part.
conf 500 0 >"$TMP/q.ini"
start_server -c "$TMP/q.ini" --control "$TMP/ctl.sock"

# fio_run NAME EXPORT JOBS BS SECONDS [EXTRA...]: random 4k/BS reads; the
# JSON goes to $TMP/NAME.json.
fio_run() {
	local name=$1 export=$2 jobs=$3 bs=$4 secs=$5
	shift 5
	fio --name="$name" --ioengine=nbd --uri="$(uri "$export")" --rw=randread --bs="$bs" \
		--iodepth=16 --numjobs="$jobs" --group_reporting=1 --size=64M --time_based=1 \
		--ramp_time=2 --runtime="$secs" "$@" --output-format=json \
		>"$TMP/$name.json" 2>"$TMP/$name.err" || fail "fio $name: $(tail -3 "$TMP/$name.err")"
}
# fio_get NAME iops|bw: the group's read IOPS, or bytes per second
fio_get() {
	python3 - "$TMP/$1.json" "$2" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
r = json.loads(t[t.index("{"):])["jobs"][0]["read"]
print(r["iops"] if sys.argv[2] == "iops" else r["bw_bytes"])
PY
}
# within NAME VALUE TARGET PCT: fails unless VALUE is within PCT% of TARGET
within() {
	python3 -c "import sys; v, t, p = map(float, sys.argv[1:]); sys.exit(abs(v - t) > t * p / 100)" \
		"$2" "$3" "$4" || fail "$1: $2, not within $4% of $3"
	echo "  $1: $2 (limit $3, within $4%)"
}

# The unlimited export alone, then beside each limited run; the best of
# each, as other work on a small machine only ever slows a run down.
free_best=0
best() { python3 -c "import sys; print(max(map(float, sys.argv[1:])))" "$@"; }
echo "IOPS alone on the unlimited export:"
for i in 1 2; do
	fio_run free_alone$i free 1 4k 4
	free_best=$(best "$free_best" "$(fio_get free_alone$i iops)")
done
echo "  $free_best"
free_with=0
for jobs in 1 4; do
	fio_run lim$jobs lim "$jobs" 4k 10 &
	f1=$!
	fio_run bw$jobs bw "$jobs" 64k 10 &
	f2=$!
	sleep 3
	fio_run free_with$jobs free 1 4k 4
	free_with=$(best "$free_with" "$(fio_get free_with$jobs iops)")
	wait "$f1" || fail "fio on lim with $jobs connection(s)"
	wait "$f2" || fail "fio on bw with $jobs connection(s)"
	within "IOPS on lim, $jobs connection(s)" "$(fio_get lim$jobs iops)" 500 10
	within "bytes/s on bw, $jobs connection(s)" "$(fio_get bw$jobs bw)" $((20 << 20)) 10
done
ratio() { python3 -c "import sys; print(round(float(sys.argv[1]) / float(sys.argv[2]), 3))" "$@"; }
at_least() { python3 -c "import sys; sys.exit(float(sys.argv[1]) < float(sys.argv[2]))" "$@"; }
r=$(ratio "$free_with" "$free_best")
echo "  unlimited export beside them: $free_with IOPS (${r}x alone)"
# Other work on a shared machine can slow one run: a miss is measured
# again as pairs, beside then alone a moment later, at most three times.
for try in 1 2 3; do
	at_least "$r" 0.9 && break
	fio_run lim_again lim 1 4k 8 &
	f1=$!
	sleep 2
	fio_run free_with_again free 1 4k 4
	wait "$f1" || fail "fio on lim, again"
	fio_run free_alone_again free 1 4k 4
	r=$(ratio "$(fio_get free_with_again iops)" "$(fio_get free_alone_again iops)")
	echo "  measured again ($try): ${r}x alone"
done
at_least "$r" 0.9 || fail "unlimited export beside the limited ones: ${r}x of its IOPS alone, under 0.9x"

# Live: 500, then 2000 through the control socket at 3 s, then 500 again
# by SIGHUP at 6 s, read from fio's per-second IOPS log.
t0=$(date +%s.%N)
fio --name=live --ioengine=nbd --uri="$(uri lim)" --rw=randread --bs=4k --iodepth=16 \
	--size=64M --time_based=1 --runtime=9 --write_iops_log="$TMP/live" --log_avg_msec=1000 \
	>"$TMP/live.out" 2>&1 &
FIO=$!
sleep 3
t1=$(date +%s.%N)
"$NBDPLEX" qos set --control "$TMP/ctl.sock" lim iops-limit=2000 >/dev/null || fail "qos set lim"
sleep 3
conf 500 0 >"$TMP/q.ini"
t2=$(date +%s.%N)
kill -HUP "$SERVER_PID"
# wait_until counts its sleeps: 20 of 0.05 s, a second.
lim_is() { "$NBDPLEX" qos show --control "$TMP/ctl.sock" | grep -q "^export lim: iops-limit=$1 "; }
wait_until 1 lim_is 500 ||
	fail "SIGHUP's limit not in force within a second"
wait "$FIO" || fail "fio live: $(tail -3 "$TMP/live.out")"
python3 - "$TMP"/live_iops*.log "$t0" "$t1" "$t2" <<'PY' || fail "live change not seen in fio's log"
import sys
log, t0, t1, t2 = sys.argv[1], *map(float, sys.argv[2:])
secs = []  # (end of the second, relative to the change of t, IOPS)
for line in open(log):
    f = [x.strip() for x in line.split(",")]
    secs.append((int(f[0]) / 1000.0, int(f[1])))
print("  per second:", " ".join(str(v) for _, v in secs))
def first(after, test):
    for end, v in secs:
        if end > after - t0 and test(v):
            return end - (after - t0)
    return None
up = first(t1, lambda v: v >= 1800)
down = first(t2, lambda v: v <= 600)
print(f"  500 -> 2000 (control socket) seen {up} s after; 2000 -> 500 (SIGHUP) seen {down} s after")
# The first whole second of fio's log after a change ends within 2 s of
# it; 0.5 s more for fio's clock, which starts a little after t0, and for
# its log windows, which stretch on a busy machine (the SIGHUP's own
# deadline, a second, is checked above through qos show).
sys.exit(up is None or down is None or up > 2.5 or down > 3.5)
PY
grep -q "closing" "$TMP/server.log" && fail "a connection was closed during the changes"

# Per client: two connections from 127.0.0.1 share its 300 IOPS, while one
# from 127.0.0.2 to the same export is not held to them.
"$NBDPLEX" qos set --control "$TMP/ctl.sock" --client local1 iops-limit=300 >/dev/null ||
	fail "qos set client local1"
fio_run client1 shared 2 4k 6 &
F=$!
sleep 2
python3 "$NP_SRC/tests/integration/qos_client.py" 127.0.0.2 "$PORT" shared 4 >"$TMP/other" ||
	fail "qos_client.py from 127.0.0.2"
wait "$F" || fail "fio from 127.0.0.1"
within "IOPS of client local1 (127.0.0.1), 2 connections" "$(fio_get client1 iops)" 300 10
other=$(cat "$TMP/other")
echo "  IOPS from 127.0.0.2 at the same time: $other"
python3 -c "import sys; sys.exit(float(sys.argv[1]) < 600)" "$other" ||
	fail "127.0.0.2 made $other IOPS: held to 127.0.0.1's limit"
"$NBDPLEX" qos show --control "$TMP/ctl.sock" | grep -q '^client local1: iops-limit=300' ||
	fail "qos show does not show the client's limit"
stop_server
pass
