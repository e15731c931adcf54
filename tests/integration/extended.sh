#!/bin/bash
# Extended headers through a raw-socket client (see extended.py).
. "$NP_SRC/tests/functions.sh"
start_server -e m=mem:64M
python3 "$NP_SRC/tests/integration/extended.py" "$PORT" || fail "extended header checks"
assert_serving m
stop_server
pass
