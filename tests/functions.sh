# Shared by the integration tests: a scratch folder, servers started on free
# ports and stopped by PID, and checks that fail loudly.
#   . "$NP_SRC/tests/functions.sh"
set -euo pipefail

NBDPLEX=${NBDPLEX:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/nbdplex}
NP_SRC=${NP_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export PATH=/usr/bin:/bin:/usr/sbin:/sbin:$PATH  # python3 with the nbd module
TMP=$(mktemp -d /tmp/nbdplex-test.XXXXXX)
NP_PIDS=()
cd "$TMP"  # tools that drop state files (fio verify) drop them here

np_cleanup() {
	local pid
	for pid in "${NP_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${NP_PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$TMP"
}
trap np_cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	if [ -f "$TMP/server.log" ]; then
		echo "--- server log (last 30 lines)" >&2
		tail -n 30 "$TMP/server.log" >&2
	fi
	exit 1
}

# Every tool a test drives must be there: the suite installs them, so a
# missing one is a failure, not a skip.
requires() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null || fail "required tool '$t' is not installed"
	done
}

# wait_until SECONDS COMMAND...: runs COMMAND now and after every 0.05 s
# sleep until it succeeds; returns 1 once it has slept SECONDS (a whole
# number) in vain. The sleeps are counted, not the clock, so slow checks
# stretch the wait.
wait_until() {
	local tries=$(($1 * 20))
	shift
	until "$@"; do
		[ "$tries" -gt 0 ] || return 1
		tries=$((tries - 1))
		sleep 0.05
	done
}

# fio_check JSON JOBS BYTES: fails unless fio's --output-format=json file
# JSON reports JOBS jobs, each without error, that wrote BYTES and read
# them back (the verify pass); prints how many requests the jobs made.
fio_check() {
	python3 - "$@" <<'PY' || fail "fio results in $(basename "$1")"
import json, sys
path, njobs, nbytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
text = open(path).read()
jobs = json.loads(text[text.index("{"):])["jobs"]  # fio's nbd engine prints a line first
if len(jobs) != njobs:
    sys.exit(f"{len(jobs)} fio jobs, expected {njobs}")
ios = 0
for n, job in enumerate(jobs, 1):
    if job["error"] != 0:
        sys.exit(f"fio job {n}: error {job['error']}")
    for rw in "write", "read":  # the read is the verify pass
        if job[rw]["io_bytes"] != nbytes:
            sys.exit(f"fio job {n}: {rw} io_bytes {job[rw]['io_bytes']}, expected {nbytes}")
        ios += job[rw]["total_ios"]
print(ios)
PY
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server ARGS...: starts nbdplex serve on a free loopback port with
# the given exports and options; sets PORT and SERVER_PID. The log goes to
# $TMP/server.log (or $LOG).
start_server() {
	PORT=$(free_port)
	local log=${LOG:-$TMP/server.log} pidfile=$TMP/server.pid.$PORT
	"$NBDPLEX" serve -l "127.0.0.1:$PORT" --pidfile "$pidfile" "$@" >>"$log" 2>&1 &
	SERVER_PID=$!
	NP_PIDS+=("$SERVER_PID")
	# Generous: under valgrind on a loaded machine a start takes seconds.
	wait_pidfile 30 "$SERVER_PID" "$pidfile" "$log" server
}

# wait_pidfile SECONDS PID PIDFILE LOG WHAT: waits until process PID
# (named WHAT in messages) writes PIDFILE; fails, with the end of LOG, if
# it exits first, and if it takes longer than SECONDS.
wait_pidfile() {
	wait_until "$1" pidfile_written "${@:2}" ||
		fail "$5 did not write its pidfile within $1 s"
}

# pidfile_written PID PIDFILE LOG WHAT: whether PID wrote PIDFILE yet;
# fails if it exited instead.
pidfile_written() {
	[ -s "$2" ] && return 0
	kill -0 "$1" 2>/dev/null || fail "$4 exited at start: $(tail -n 5 "$3")"
	return 1
}

# stop_server: SIGTERM and wait; fails unless the server exits 0.
stop_server() {
	local pid=${1:-$SERVER_PID} rc=0
	kill -TERM "$pid"
	wait "$pid" || rc=$?
	[ "$rc" = 0 ] || fail "server exited $rc after SIGTERM"
}

# gone PID: whether PID has exited (a zombie not yet waited for counts).
gone() {
	[ ! -e "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

# takeover CONTROL ARGS...: a new server (serve --takeover CONTROL ARGS...)
# takes the sockets of SERVER_PID over; fails unless the old one exits 0.
# SERVER_PID becomes the new one's; TAKEOVERS counts them.
takeover() {
	local ctl=$1 old=$SERVER_PID pidfile rc=0
	shift
	TAKEOVERS=$((${TAKEOVERS:-0} + 1))
	pidfile=$TMP/takeover.pid.$TAKEOVERS
	# valgrind's --log-file=/dev/stderr would truncate the shared log.
	NP_VALGRIND_LOG=${NP_VALGRIND_LOG:-$TMP/valgrind.takeover.$TAKEOVERS} \
		"$NBDPLEX" serve --takeover "$ctl" --pidfile "$pidfile" "$@" \
		>>"${LOG:-$TMP/server.log}" 2>&1 &
	SERVER_PID=$!
	NP_PIDS+=("$SERVER_PID")
	wait_pidfile 60 "$SERVER_PID" "$pidfile" "${LOG:-$TMP/server.log}" "takeover $TAKEOVERS"
	wait_until 60 gone "$old" || fail "old server $old still runs after takeover $TAKEOVERS"
	wait "$old" || rc=$?
	[ "$rc" = 0 ] || fail "old server exited $rc after takeover $TAKEOVERS"
}

# takeover_killed CONTROL OPENED ARGS...: a new server (serve --takeover
# CONTROL ARGS...) killed with SIGKILL once it has everything and waits to
# agree (NP_HANDOFF_TEST_DELAY_MS), after its log says OPENED (grep -E).
takeover_killed() {
	local ctl=$1 opened=$2 pid
	shift 2
	NP_HANDOFF_TEST_DELAY_MS=20000 "$NBDPLEX" serve --takeover "$ctl" "$@" \
		>"$TMP/killed.log" 2>&1 &
	pid=$!
	NP_PIDS+=("$pid")
	wait_until 30 grep -qs 'waiting 20000 ms' "$TMP/killed.log" || fail "no hand-off to kill"
	grep -Eq "$opened" "$TMP/killed.log" ||
		fail "the new process did not say '$opened': $(cat "$TMP/killed.log")"
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
}

# Asserts the server is alive and still serves export NAME.
assert_serving() {
	local name=${1:-}
	kill -0 "$SERVER_PID" 2>/dev/null || fail "server died"
	nbdinfo --size "nbd://127.0.0.1:$PORT/$name" >/dev/null || fail "server stopped serving"
}

# mapped_kib FILE: KiB of the server's shared mapping of FILE (the file
# engine maps files on tmpfs) that are in its page tables: pages that
# requests copied to or from through the mapping.
mapped_kib() {
	awk -v f="$1" '$6 == f {m = 1; next} /^[0-9a-f]+-/ {m = 0}
		m && $1 == "Rss:" {s += $2} END {print s + 0}' "/proc/$SERVER_PID/smaps"
}

# strace_on PID FILE CALLS: counts the system calls CALLS (a comma list) of
# every thread of PID into FILE until strace_off; returns once every thread
# is traced.
strace_on() {
	strace -f -qq -c -e trace="$3" -o "$2" -p "$1" &
	STRACE_PID=$!
	NP_PIDS+=("$STRACE_PID")
	wait_until 10 all_traced "$1" || fail "strace did not attach within 10 s"
}

# all_traced PID: whether a tracer holds every thread of PID
all_traced() {
	local t
	for t in /proc/"$1"/task/*/status; do
		[ "$(awk '/^TracerPid/ {print $2}' "$t")" != 0 ] || return 1
	done
	return 0
}

strace_off() {
	kill -INT "$STRACE_PID"
	wait "$STRACE_PID" 2>/dev/null || true
}

# strace_calls FILE CALL: how many CALL calls strace counted into FILE
strace_calls() {
	awk -v c="$2" '$NF == c {print $4; found = 1} END {if (!found) print 0}' "$1"
}

uri() {
	echo "nbd://127.0.0.1:$PORT/${1:-}"
}

pass() {
	echo "PASS: $(basename "$0")"
}

# conform NAME SPEC HOLES [JOBS]: the conformance checks every engine passes,
# against a server exporting SPEC (SIZE bytes) as "d": qemu-io patterns
# (aligned and not), discard and zeroes reading back as zeroes, an nbdcopy
# round trip, fio crc32c verify over JOBS connections (2), and, with HOLES
# "yes", nbdinfo --map showing the discarded and untouched space as holes.
# Needs qemu-io, nbdcopy, nbdinfo and fio; stops the server at the end.
conform() {
	local name=$1 spec=$2 holes=$3 jobs=${4:-2}
	start_server -e "d=$spec"
	local u
	u=$(uri d)
	[ "$(nbdinfo --size "$u")" = $SIZE ] || fail "$name: size"

	out=$(qemu-io -f raw "$u" \
		-c 'write -P 0xa1 0 1M' -c 'write -P 0xb2 4097 12345' -c 'write -P 0xc3 63M 1M' \
		-c 'read -P 0xa1 0 4097' -c 'read -P 0xb2 4097 12345' -c 'read -P 0xa1 16442 1032134' \
		-c 'read -P 0xc3 63M 1M' \
		-c 'write -P 0xd4 8M 1M' -c 'discard 8M 1M' -c 'read -P 0 8M 1M' \
		-c 'write -P 0xe5 10M 256k' -c 'write -z 10M 256k' -c 'read -P 0 10M 256k' \
		-c 'write -f -P 0xf6 12M 64k' -c 'read -P 0xf6 12M 64k' -c 'flush' 2>&1) ||
		fail "$name: qemu-io: $out"
	! grep -qiE 'fail|error|mismatch' <<<"$out" || fail "$name: qemu-io: $out"
	[ "$(grep -c '^read ' <<<"$out")" = 7 ] || fail "$name: qemu-io reads: $out"

	if [ "$holes" = yes ]; then
		# The discarded and zeroed megabytes, and the untouched middle,
		# report as holes; the written ends as data.
		nbdinfo --map "$u" >"$TMP/map"
		python3 - "$TMP/map" <<'PY' || fail "$name: map: $(cat "$TMP/map")"
import sys
ext = [(int(o), int(n), int(t)) for o, n, t, *_ in (l.split() for l in open(sys.argv[1]))]
def kind(off):
    return [t for o, n, t in ext if o <= off < o + n][0]
assert kind(0) == 0 and kind(63 << 20) == 0, ext
assert kind((8 << 20) + 4096) & 1 and kind(30 << 20) & 1, ext
assert sum(n for o, n, t in ext) == 64 << 20
PY
	fi

	head -c 6M /dev/urandom >"$TMP/src"
	truncate -s $SIZE "$TMP/src"
	nbdcopy --connections=2 "$TMP/src" "$u" && nbdcopy "$u" "$TMP/back" ||
		fail "$name: nbdcopy"
	cmp "$TMP/src" "$TMP/back" || fail "$name: nbdcopy round trip differs"
	rm -f "$TMP/back"

	fio --name=conf --ioengine=nbd --uri="$u" --rw=randwrite --bsrange=4k-64k --iodepth=16 \
		--numjobs="$jobs" --size=16M --offset_increment=$((SIZE / jobs)) --verify=crc32c --verify_fatal=1 \
		--do_verify=1 --runtime=60 >"$TMP/fio.log" 2>&1 ||
		fail "$name: fio verify: $(tail -5 "$TMP/fio.log")"
	grep -q 'err= 0' "$TMP/fio.log" || fail "$name: fio reported errors"
	assert_serving d
	stop_server
	echo "conformance: $name passed"
}

# kill_while_writing SPEC ROUNDS: ROUNDS times, serves SPEC (4 MiB or more)
# as "d", lets tests/integration/durable.py write 4 KiB blocks with FUA or
# FLUSH into its first 4 MiB and kill -9s the server at a random moment;
# durable.py logs each acknowledged durable write to $TMP/acked.
kill_while_writing() {
	local spec=$1 rounds=$2 round writer before
	: >"$TMP/acked"
	for round in $(seq "$rounds"); do
		start_server -e d="$spec"
		python3 "$NP_SRC/tests/integration/durable.py" "$PORT" "$TMP/acked" "$round" &
		writer=$!
		# Kill only once the writer is in (its first durable write
		# was acknowledged): on a loaded machine Python may take
		# longer to start than the random delay. After 10 s, kill
		# anyway.
		before=$(wc -l <"$TMP/acked")
		wait_until 10 writer_in_or_gone "$before" "$writer" || true
		sleep "0.$((RANDOM % 8 + 2))"
		kill -9 "$SERVER_PID"
		wait "$SERVER_PID" 2>/dev/null || true
		wait "$writer" || fail "writer failed in round $round"
	done
	[ "$(wc -l <"$TMP/acked")" -gt 50 ] ||
		fail "too few acknowledged writes to judge: $(wc -l <"$TMP/acked")"
}

# writer_in_or_gone BEFORE PID: whether the writer PID has had a write
# acknowledged since $TMP/acked had BEFORE lines, or has ended (its wait
# reports how).
writer_in_or_gone() {
	[ "$(wc -l <"$TMP/acked")" -gt "$1" ] || ! kill -0 "$2" 2>/dev/null
}

# durable_check IMAGE: fails unless IMAGE (a copy of the export's first 4
# MiB) holds, in every block, the last write kill_while_writing logged as
# acknowledged, or a later one.
durable_check() {
	python3 "$NP_SRC/tests/integration/durable.py" check "$1" "$TMP/acked" ||
		fail "acknowledged writes lost"
}
