#!/bin/bash
# Runs one Python stress test against a server of its own:
#   run.sh NAME [SERVE OPTIONS...]
# starts `nbdplex serve` on a free loopback port with the options (export m
# among them), runs NAME.py PORT PID, then checks that the server still
# serves and exits 0 on SIGTERM. stress.cmake says which test gets which
# options; each NAME.py says what it checks.
. "$NP_SRC/tests/functions.sh"
requires python3 nbdinfo
name=${1:?usage: run.sh NAME [SERVE OPTIONS...]}
shift
# Both ends of up to 1,000 connections live on this machine.
ulimit -n 4096 || fail "cannot raise the descriptor limit to 4096"

start_server "$@"
timeout 240 python3 -B "$NP_SRC/tests/stress/$name.py" "$PORT" "$SERVER_PID" ||
	fail "$name.py (see the checks above)"
assert_serving m
stop_server
pass
