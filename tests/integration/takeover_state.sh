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

# Under systemd the new process says READY=1 with its own MAINPID, so the
# unit follows it; then SIGTERM stops it as any server.
OLD=$SERVER_PID
python3 - "$TMP/notify.sock" "$NBDPLEX" "$CTL" "$TMP" <<'PY' || fail "systemd notification of the new process"
import os, socket, subprocess, sys
path, binary, ctl, tmp = sys.argv[1:5]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(60)
env = dict(os.environ, NOTIFY_SOCKET=path)
p = subprocess.Popen([binary, "serve", "--takeover", ctl, "-e", f"d=file:{tmp}/d.img,size=64M",
                      "--control", ctl], env=env, stderr=open(f"{tmp}/server.log", "a"))
try:
    msg = s.recv(4096).decode()
    assert "READY=1" in msg and f"MAINPID={p.pid}" in msg, msg
    p.terminate()
    assert p.wait(timeout=60) == 0
finally:
    if p.poll() is None:
        p.kill()
        p.wait()
PY
rc=0
wait "$OLD" || rc=$?
[ "$rc" = 0 ] || fail "the old server exited $rc"
pass
