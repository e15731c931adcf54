#!/bin/bash
# stress_garbage: hundreds of hostile connections at once (garbage.py) while
# a good client reads and writes; the server stays up, frees every
# descriptor, keeps its memory bounded and exits 0 on SIGTERM.
. "$NP_SRC/tests/functions.sh"
requires python3 nbdinfo
ulimit -n 4096 || fail "cannot raise the descriptor limit to 4096"

start_server -e m=mem:64M --max-inflight 32M --handshake-timeout 5
timeout 240 python3 -B "$NP_SRC/tests/stress/garbage.py" "$PORT" "$SERVER_PID" ||
	fail "hostile connections (see the checks above)"
assert_serving m
stop_server
pass
