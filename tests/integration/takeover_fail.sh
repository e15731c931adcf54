#!/bin/bash
# serve --takeover when it fails: a new process that cannot open an export
# exits with a message before it asks; one whose configuration lacks an
# export with clients, or serves it from memory, is refused; one killed
# with SIGKILL mid-hand-off leaves the old process serving as before; a
# second takeover while one runs is refused. Through all of it one libnbd
# client writes and reads back without an error.
. "$NP_SRC/tests/functions.sh"
requires nbdsh nbdinfo

CTL=$TMP/ctl.sock
SPEC=(-e "d=file:$TMP/d.img,size=64M" -e "m=mem:16M" --control "$CTL")
start_server "${SPEC[@]}"
OLD=$SERVER_PID

# The client: a write and its read-back every 20 ms until told to stop.
nbdsh -u "$(uri d)" -c "
import os, time
i = 0
while not os.path.exists('$TMP/stop'):
    b = bytes([i % 251]) * 4096
    h.pwrite(b, (i % 1024) * 4096)
    assert h.pread(4096, (i % 1024) * 4096) == b, i
    i += 1
    time.sleep(0.02)
print(i, 'rounds', flush=True)
" >"$TMP/client.out" 2>&1 &
CLIENT=$!
NP_PIDS+=("$CLIENT")
wait_until 10 grep -q "conn 1 from .*: export 'd'" "$TMP/server.log" ||
	fail "the client did not connect: $(cat "$TMP/client.out")"

# new_fails WHAT PATTERN ARGS...: serve --takeover ARGS exits non-zero,
# saying PATTERN, and the old server still serves.
new_fails() {
	local what=$1 pattern=$2 rc=0
	shift 2
	timeout 60 "$NBDPLEX" serve --takeover "$CTL" "$@" >"$TMP/new.log" 2>&1 || rc=$?
	[ "$rc" != 0 ] || fail "$what: the new process exited 0"
	[ "$rc" != 124 ] || fail "$what: the new process hung; client: $(cat "$TMP/client.out")"
	grep -q "$pattern" "$TMP/new.log" || fail "$what: no '$pattern' in: $(cat "$TMP/new.log")"
	kill -0 "$OLD" || fail "$what: the old server died"
	# (Not while another hand-off holds the listener.)
	[ -n "${BUSY:-}" ] || nbdinfo --size "$(uri d)" >/dev/null ||
		fail "$what: the old server does not accept"
	kill -0 "$CLIENT" || fail "$what: the client failed: $(cat "$TMP/client.out")"
}

new_fails "an export that cannot open" "no such file" \
	-e "d=file:$TMP/no/such/dir/d.img" --control "$CTL"
new_fails "an export with clients missing" "export 'd' has clients but is not in the new" \
	-e "other=file:$TMP/o.img,size=1M"
grep -q 'hand-off failed: the new process refused' "$TMP/server.log" ||
	fail "the old server did not say why it serves on"

# A client of a mem export: its data cannot move.
nbdsh -u "$(uri m)" -c "
import os, time
h.pwrite(b'x' * 512, 0)
open('$TMP/m-ready', 'w').close()
for _ in range(1200):
    if os.path.exists('$TMP/m-stop'):
        break
    time.sleep(0.05)
assert h.pread(512, 0) == b'x' * 512
" >"$TMP/m.out" 2>&1 &
MCLIENT=$!
NP_PIDS+=("$MCLIENT")
wait_until 10 test -e "$TMP/m-ready" || fail "the mem client did not connect"
new_fails "a mem export with clients" "is in memory" "${SPEC[@]}"
touch "$TMP/m-stop"
wait "$MCLIENT" || fail "the mem client: $(cat "$TMP/m.out")"

# SIGKILL of the new process while the old one waits for its answer.
NP_HANDOFF_TEST_DELAY_MS=20000 "$NBDPLEX" serve --takeover "$CTL" "${SPEC[@]}" \
	>"$TMP/killed.log" 2>&1 &
KILLED=$!
NP_PIDS+=("$KILLED")
wait_until 30 grep -q 'waiting 20000 ms' "$TMP/killed.log" || fail "no hand-off to kill"
# Meanwhile, a second takeover is refused.
BUSY=1 new_fails "a second takeover" "refused: a hand-off is already under way" "${SPEC[@]}"
# And a client that connects now waits in the listener's queue.
nbdinfo --size "$(uri d)" >"$TMP/queued.out" 2>&1 &
QUEUED=$!
NP_PIDS+=("$QUEUED")
sleep 0.5
gone "$QUEUED" && fail "a client got in while the listener was being handed off"
failed() { [ "$(grep -c 'hand-off failed' "$TMP/server.log")" -gt "$1" ]; }
before=$(grep -c 'hand-off failed' "$TMP/server.log")
kill -KILL "$KILLED"
wait "$KILLED" 2>/dev/null || true
wait_until 30 failed "$before" || fail "the old server did not notice the kill"
grep -q 'hand-off failed: the new process did not answer' "$TMP/server.log" ||
	fail "the old server's reason: $(grep 'hand-off failed' "$TMP/server.log" | tail -1)"
wait "$QUEUED" || fail "the client queued during the hand-off: $(cat "$TMP/queued.out")"
[ "$(cat "$TMP/queued.out")" = $((64 << 20)) ] || fail "queued client: $(cat "$TMP/queued.out")"
sleep 0.5
kill -0 "$CLIENT" || fail "the client failed after the kill: $(cat "$TMP/client.out")"

# And a hand-off that works after all that.
LOG=$TMP/server.log takeover "$CTL" "${SPEC[@]}"
sleep 0.5
touch "$TMP/stop"
wait "$CLIENT" || fail "the client: $(cat "$TMP/client.out")"
grep -q 'rounds' "$TMP/client.out" || fail "the client: $(cat "$TMP/client.out")"
grep -E 'closing:|taken over, but closed' "$TMP/server.log" && fail "a connection closed"

# SIGTERM during a hand-off waits for its end: here the new process is
# killed, so the server resumes, then shuts down as asked, and exits 0.
NP_HANDOFF_TEST_DELAY_MS=20000 "$NBDPLEX" serve --takeover "$CTL" "${SPEC[@]}" \
	>"$TMP/killed2.log" 2>&1 &
KILLED=$!
NP_PIDS+=("$KILLED")
wait_until 30 grep -q 'waiting 20000 ms' "$TMP/killed2.log" || fail "no hand-off to interrupt"
kill -TERM "$SERVER_PID"
wait_until 10 grep -q 'shutting down once the hand-off under way ends' "$TMP/server.log" ||
	fail "SIGTERM during a hand-off was not deferred"
kill -KILL "$KILLED"
wait "$KILLED" 2>/dev/null || true
rc=0
wait_until 30 gone "$SERVER_PID" || fail "the server did not shut down after the hand-off failed"
wait "$SERVER_PID" || rc=$?
[ "$rc" = 0 ] || fail "the server exited $rc"
pass
