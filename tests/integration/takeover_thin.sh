#!/bin/bash
# serve --takeover of thin volumes, which the running server holds
# exclusively (the pool's RocksDB lock): the new process finds them busy,
# asks the old one to release them once it is still, and opens them. A
# libnbd client on each of two volumes of one pool writes and reads back
# through 3 hand-offs, then checks everything it wrote; no connection
# closes. Two hand-offs fail after the release: a new process killed with
# SIGKILL, and one whose second export cannot open. The old server then
# reopens the volumes and serves on, the clients' data intact.
. "$NP_SRC/tests/functions.sh"
requires nbdinfo python3

pool=$TMP/pool
"$NBDPLEX" volume init "$pool" --size 128M --chunk-size 64K || fail "volume init"
"$NBDPLEX" volume create "$pool" v1 64M || fail "create v1"
"$NBDPLEX" volume create "$pool" v2 32M || fail "create v2"

CTL=$TMP/ctl.sock
SPEC=(-e "v1=thin:$pool/v1" -e "v2=thin:$pool/v2" --control "$CTL")
start_server "${SPEC[@]}"

# client NAME: takeover_writer.py on volume NAME (2048 blocks of 4 KiB).
client() {
	python3 "$NP_SRC/tests/integration/takeover_writer.py" "$(uri "$1")" "$TMP/stop" 7 2048 \
		>"$TMP/$1.out" 2>&1 &
	NP_PIDS+=("$!")
}
client v1
C1=$!
client v2
C2=$!
wait_until 10 grep -q "export 'v2'" "$TMP/server.log" || fail "the clients did not connect"
# count PATTERN: lines of the server's log that match (0 is no failure).
count() { grep -c "$1" "$TMP/server.log" || true; }
alive() { kill -0 "$C1" && kill -0 "$C2" || fail "a client failed: $(cat "$TMP"/v?.out)"; }

for n in 1 2 3; do
	sleep 0.5
	before=$(count 'released for the new process')
	takeover "$CTL" "${SPEC[@]}"
	[ "$(count 'released for the new process')" = $((before + 2)) ] ||
		fail "hand-off $n: the old server did not release both volumes"
	alive
done
grep -q "hand-off: 2 export(s) released; opening them" "$TMP/server.log" ||
	fail "the new server did not open the released volumes"

# fails_after_release: the old server reopens both volumes and serves on.
fails_after_release() {
	local what=$1
	wait_until 30 failed "$before" || fail "$what: the old server did not notice"
	wait_until 30 reopened_both || fail "$what: the old server did not reopen both: $(tail -5 "$TMP/server.log")"
	kill -0 "$SERVER_PID" || fail "$what: the old server died"
	sleep 0.5
	alive
	nbdinfo --size "$(uri v1)" >/dev/null || fail "$what: the old server does not serve"
}
reopened_both() { [ "$(count "export 'v[12]': reopened")" = $((reopened + 2)) ]; }
failed() { [ "$(count 'hand-off failed')" -gt "$1" ]; }

# SIGKILL of the new process after it opened the released volumes.
before=$(count 'hand-off failed')
reopened=$(count "export 'v[12]': reopened")
takeover_killed "$CTL" "export 'v1': thin:" "${SPEC[@]}"
fails_after_release "SIGKILL after the release"

# A new configuration whose second export cannot open even once released.
before=$(count 'hand-off failed')
reopened=$(count "export 'v[12]': reopened")
rc=0
timeout 60 "$NBDPLEX" serve --takeover "$CTL" -e "v1=thin:$pool/v1" -e "v2=thin:$pool/v2" \
	-e "v3=thin:$pool/nosuch" --control "$CTL" >"$TMP/new.log" 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "a bad configuration: exit $rc: $(cat "$TMP/new.log")"
grep -q "no volume nosuch" "$TMP/new.log" || fail "no reason given: $(cat "$TMP/new.log")"
fails_after_release "an export that cannot open"

# And a hand-off that works after all that.
takeover "$CTL" "${SPEC[@]}"
sleep 0.5
touch "$TMP/stop"
wait "$C1" || fail "client v1: $(cat "$TMP/v1.out")"
wait "$C2" || fail "client v2: $(cat "$TMP/v2.out")"
grep -q 'rounds' "$TMP/v1.out" && grep -q 'rounds' "$TMP/v2.out" || fail "the clients did not finish"
grep -E 'closing:|taken over, but closed' "$TMP/server.log" && fail "a connection closed"
stop_server
"$NBDPLEX" volume check "$pool" >/dev/null || fail "the pool is inconsistent"
pass
