#!/bin/bash
# systemd socket activation, played by systemd-socket-activate: the server
# serves on the sockets passed (a TCP port and a Unix socket together, then
# a Unix socket alone), not on its -l address, to nbdinfo, qemu-io and
# nbdcopy, and exits 0 on SIGTERM; a connected socket (Accept=yes) is
# refused with a clear error.
. "$NP_SRC/tests/functions.sh"
requires systemd-socket-activate nbdinfo nbdcopy qemu-io timeout

# activate LOG ARGS...: systemd-socket-activate ARGS in the background, its
# output (and the server's, once it execs) in LOG; sets ACT_PID once it
# listens. It passes on only the variables named with -E: those of the
# valgrind wrapper too, when set.
activate() {
	local log=$1 v env=()
	shift
	for v in PATH NP_REAL_NBDPLEX NP_VALGRIND_LOG; do
		[ -z "${!v:-}" ] || env+=(-E "$v=${!v}")
	done
	systemd-socket-activate "${env[@]}" "$@" >"$log" 2>&1 &
	ACT_PID=$!
	NP_PIDS+=("$ACT_PID")
	wait_until 30 grep -q '^Listening on' "$log" ||
		fail "systemd-socket-activate did not listen: $(cat "$log")"
}

PORT=$(free_port)
NOT=$(free_port) # the -l address, which socket activation overrides
S=$TMP/act.sock
LOG=$TMP/server.log
activate "$LOG" -l "127.0.0.1:$PORT" -l "$S" \
	"$NBDPLEX" serve -l "127.0.0.1:$NOT" -e d=mem:16M --pidfile "$TMP/pid"
[ -S "$S" ] || fail "systemd-socket-activate made no socket at $S"
# The first connection starts the server, which answers it.
[ "$(timeout 60 nbdinfo --size "$(uri d)")" = 16777216 ] || fail "nbdinfo over the passed TCP socket"
wait_pidfile 30 "$ACT_PID" "$TMP/pid" "$LOG" server
# systemd-socket-activate execs the server: the same process.
[ "$(cat "$TMP/pid")" = "$ACT_PID" ] || fail "the server is pid $(cat "$TMP/pid"), not $ACT_PID"
SERVER_PID=$ACT_PID
grep -q "listening on 127.0.0.1:$PORT (socket activation)" "$LOG" || fail "no passed TCP listener in the log"
grep -q "listening on unix:$S (socket activation)" "$LOG" || fail "no passed Unix listener in the log"
! nbdinfo --size "nbd://127.0.0.1:$NOT/d" 2>/dev/null || fail "the server listened on -l too"

head -c 2M /dev/urandom >"$TMP/data"
truncate -s 16M "$TMP/data"
for u in "$(uri d)" "nbd+unix:///d?socket=$S"; do
	out=$(timeout 60 qemu-io -f raw "$u" -c 'write -P 0x3c 8M 64k' -c 'read -P 0x3c 8M 64k' 2>&1) ||
		fail "qemu-io on $u: $out"
	grep -q '^read 65536/65536' <<<"$out" || fail "qemu-io on $u: $out"
	timeout 60 nbdcopy "$TMP/data" "$u" || fail "nbdcopy into $u"
	timeout 60 nbdcopy "$u" "$TMP/back" || fail "nbdcopy out of $u"
	cmp "$TMP/data" "$TMP/back" || fail "data differs after a round trip through $u"
	rm -f "$TMP/back"
done
[ "$(nbdinfo --size "nbd+unix:///d?socket=$S")" = 16777216 ] || fail "nbdinfo over the passed Unix socket"
grep -Eq "conn [0-9]+ from unix:$S \(pid [0-9]+, uid $(id -u)\): export 'd'" "$LOG" ||
	fail "a client of the passed Unix socket is not named by it"
stop_server
[ -S "$S" ] || fail "the server removed a socket it did not make"

# A Unix socket alone, whose first client starts the server.
S=$TMP/only.sock
rm -f "$TMP/pid"
activate "$LOG" -l "$S" "$NBDPLEX" serve -e d=mem:4M --pidfile "$TMP/pid"
[ "$(timeout 60 nbdinfo --size "nbd+unix:///d?socket=$S")" = 4194304 ] ||
	fail "nbdinfo over a passed Unix socket alone"
wait_pidfile 30 "$ACT_PID" "$TMP/pid" "$LOG" server
SERVER_PID=$ACT_PID
stop_server

# Accept=yes passes a connection, not a listener: refused, by name.
PORT=$(free_port)
activate "$TMP/accept.log" --accept -l "127.0.0.1:$PORT" "$NBDPLEX" serve -e d=mem:1M
! timeout 60 nbdinfo --size "$(uri d)" 2>/dev/null || fail "a server given a connection served it"
wait_until 30 grep -q 'is not a listening TCP or Unix stream socket (Accept=yes is not supported)' \
	"$TMP/accept.log" || fail "no clear error for Accept=yes: $(cat "$TMP/accept.log")"
pass
