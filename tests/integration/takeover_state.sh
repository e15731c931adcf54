#!/bin/bash
# serve --takeover moves each connection's negotiated state and the input
# it had read but not parsed: structured replies with base:allocation,
# extended headers, half a request header, a client mid-handshake (which
# finishes on the old process first) and one connecting while the
# listeners are between processes (takeover.py, a raw client).
. "$NP_SRC/tests/functions.sh"
requires python3

CTL=$TMP/ctl.sock
SPEC=(-e "d=file:$TMP/d.img,size=64M" --control "$CTL")
start_server "${SPEC[@]}"
PYTHONPATH="$NP_SRC/tests/integration" python3 "$NP_SRC/tests/integration/takeover.py" \
	"$PORT" "$TMP" >"$TMP/py.out" 2>&1 &
CLIENT=$!
NP_PIDS+=("$CLIENT")
ready() {
	[ -e "$TMP/ready$1" ] && return 0
	kill -0 "$CLIENT" 2>/dev/null || fail "takeover.py ended early: $(cat "$TMP/py.out")"
	return 1
}
wait_until 30 ready 1 || fail "takeover.py never got ready"
takeover "$CTL" "${SPEC[@]}"
touch "$TMP/done1"
wait_until 30 ready 2 || fail "takeover.py never got to the second hand-off"
NP_HANDOFF_TEST_DELAY_MS=1500 takeover "$CTL" "${SPEC[@]}"
touch "$TMP/done2"
wait "$CLIENT" || fail "takeover.py: $(cat "$TMP/py.out")"

grep -q 'taken over on loop [0-9]* (10 bytes unparsed)' "$TMP/server.log" ||
	fail "the half header did not move as unparsed input: $(grep -E 'hand-off|unparsed' "$TMP/server.log")"
# Both pass the four connections; the one that came mid-hand-off is the
# new process's own.
[ "$(grep -c 'hand-off: 4 connection(s) and 1 listener(s) passed' "$TMP/server.log")" = 2 ] ||
	fail "the hand-offs did not pass 4 connections each"
grep -E 'closing:|hand-off failed|taken over, but closed' "$TMP/server.log" &&
	fail "a connection closed, or a hand-off failed"
stop_server
pass
