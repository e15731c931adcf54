#!/bin/bash
# Online resize: NBD_CMD_RESIZE on file and thin exports, a file grown
# under the server, `nbdplex volume resize` of a served volume, and what
# qemu-img and nbdinfo see afterwards (resize.py has the protocol checks).
. "$NP_SRC/tests/functions.sh"
requires nbdinfo qemu-io python3

pool=$TMP/pool
"$NBDPLEX" volume init "$pool" --size 64M --chunk-size 64K >/dev/null || fail "volume init"
"$NBDPLEX" volume create "$pool" v 4M || fail "volume create"
truncate -s 1M "$TMP/r.img"
cat >"$TMP/conf.ini" <<INI
[export f]
spec = file:$TMP/f.img,size=1M
[export m]
spec = mem:1M
[export r]
spec = file:$TMP/r.img
read-only = true
[export v]
spec = thin:$pool/v
INI
start_server -c "$TMP/conf.ini"
PYTHONPATH="$NP_SRC/tests/integration" python3 "$NP_SRC/tests/integration/resize.py" \
	"$PORT" "$TMP/f.img" v || fail "resize protocol checks"
grep -q "export 'f': size now" "$TMP/server.log" || fail "no log line for the new size"

# The operator's way: a served volume grows through the control socket,
# and the next client sees the new size and can use it.
"$NBDPLEX" volume resize "$pool" v 16M || fail "volume resize while served"
[ "$(nbdinfo --size "nbd://127.0.0.1:$PORT/v")" = $((16 << 20)) ] || fail "nbdinfo size after volume resize"
qemu-io -f raw "nbd://127.0.0.1:$PORT/v" -c 'write -P 0x5a 15M 1M' -c 'read -P 0x5a 15M 1M' \
	>/dev/null || fail "qemu-io at the grown end"
if "$NBDPLEX" volume resize "$pool" v 2M 2>"$TMP/err"; then fail "shrank a served volume"; fi
grep -q "shrink" "$TMP/err" || fail "shrink refusal message: $(cat "$TMP/err")"

# A file grown by another program: qemu-img sees it on its next connection.
truncate -s 6M "$TMP/f.img"
[ "$(nbdinfo --size "nbd://127.0.0.1:$PORT/f")" = $((6 << 20)) ] || fail "nbdinfo size after truncate"
assert_serving f
stop_server
"$NBDPLEX" volume check "$pool" >/dev/null || fail "thin pool inconsistent after resizes"
pass
