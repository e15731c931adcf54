#!/bin/bash
# stress_hs_flood: a client floods the handshake with options whose replies
# it never reads (hs_flood.py); the server's memory must stay bounded by
# the per-connection in-flight cap, and it must go on serving.
. "$NP_SRC/tests/functions.sh"
requires python3 nbdinfo

start_server -e m=mem:64M --max-inflight 32M
timeout 120 python3 -B "$NP_SRC/tests/stress/hs_flood.py" "$PORT" "$SERVER_PID" ||
	fail "handshake flood (see the checks above)"
assert_serving m
stop_server
pass
