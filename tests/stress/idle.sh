#!/bin/bash
# stress_idle: 1,000 concurrent connections complete the handshake and stay
# idle (idle.py), then all close; RSS bounded, every descriptor freed.
. "$NP_SRC/tests/functions.sh"
requires python3 nbdinfo
# The client side holds the 1,000 sockets; so does the server.
ulimit -n 4096 || fail "cannot raise the descriptor limit to 4096"

start_server -e m=mem:64M
timeout 240 python3 -B "$NP_SRC/tests/stress/idle.py" "$PORT" "$SERVER_PID" ||
	fail "1,000 idle connections (see the checks above)"
assert_serving m
stop_server
pass
