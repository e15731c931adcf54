#!/bin/bash
# nbdsh's libnbd binding drives the protocol: error codes, structured reads
# with OFFSET_HOLE chunks, block status, FUA, multi-conn, simple replies.
. "$NP_SRC/tests/functions.sh"
requires nbdsh
python3 -c 'import nbd' || fail "python3-libnbd is missing"

truncate -s 1M "$TMP/ro.img"
# libnbd sends no request over 64 MiB (ERANGE): for protocol.py to see the
# server refuse one, the largest is set lower (maxreq.sh: the default).
start_server -e m=mem:64M -e f=file:"$TMP/f.img",size=16M -e ro=file:"$TMP/ro.img",size=1M \
	-c <(printf '[export ro]\nread-only = yes\n') --max-request 32M
python3 "$NP_SRC/tests/integration/protocol.py" "$PORT" || fail "protocol checks"
# nbdsh itself, as a user would run it.
out=$(nbdsh -u "$(uri m)" -c 'h.pwrite(b"hello", 0); print(h.pread(5, 0).decode())')
[ "$out" = hello ] || fail "nbdsh one-liner printed '$out'"
assert_serving m
stop_server
pass
