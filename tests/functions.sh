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
