#!/bin/bash
# Large READs from a file on tmpfs leave by sendfile, with no copy through
# the server; when the socket fills they finish from a buffer. Data checked
# with a raw pipelining client (sendfile.py), nbdcopy and qemu-img compare.
. "$NP_SRC/tests/functions.sh"
requires nbdcopy qemu-img python3

[ -d /dev/shm ] || fail "no /dev/shm (tmpfs) to serve from"
IMG=$(mktemp /dev/shm/nbdplex-sendfile.XXXXXX)
trap 'rm -f "$IMG"; np_cleanup' EXIT
# Data, zeroes and a hole: the hole (at 12M) is sent as a hole chunk.
head -c 64M /dev/urandom >"$IMG"
dd if=/dev/zero of="$IMG" bs=1M seek=8 count=2 conv=notrunc status=none
fallocate -p -o $((12 << 20)) -l $((2 << 20)) "$IMG" || fail "punch a hole"
start_server -e d=file:"$IMG"
PYTHONPATH="$NP_SRC/tests/integration" python3 "$NP_SRC/tests/integration/sendfile.py" \
	"$PORT" "$IMG" || fail "sendfile reads"
nbdcopy --request-size=4194304 "nbd://127.0.0.1:$PORT/d" "$TMP/copy.img" || fail "nbdcopy"
cmp "$IMG" "$TMP/copy.img" || fail "nbdcopy copy differs"
qemu-img compare -f raw -F raw "$IMG" "nbd://127.0.0.1:$PORT/d" >/dev/null || fail "qemu-img compare"
assert_serving d
stop_server
pass
