#!/bin/bash
# stress_churn: 10,000 connect/disconnect cycles (churn.py) while a good
# client reads and writes; every descriptor freed, RSS bounded.
. "$NP_SRC/tests/functions.sh"
requires python3 nbdinfo

start_server -e m=mem:64M
timeout 240 python3 -B "$NP_SRC/tests/stress/churn.py" "$PORT" "$SERVER_PID" ||
	fail "connect/disconnect churn (see the checks above)"
assert_serving m
stop_server
pass
