#!/bin/bash
# --max-request: requests up to 64 MiB by default, advertised in
# NBD_INFO_BLOCK_SIZE (nbdinfo); 48 MiB READs and WRITEs from a client
# that negotiates nothing, one past the largest refused with EINVAL
# (maxreq.py), from memory and from a block device (raw: O_DIRECT); set
# lower and higher; out-of-range values refused.
. "$NP_SRC/tests/functions.sh"
requires nbdinfo python3 losetup

truncate -s 66M "$TMP/raw.img"
LOOP=$(losetup -f --show --direct-io=on "$TMP/raw.img") || fail "losetup"
trap 'losetup -d "$LOOP" 2>/dev/null || true; np_cleanup' EXIT

maximum() {
	nbdinfo --json "$(uri d)" | python3 -c \
		'import json, sys; print(json.load(sys.stdin)["exports"][0]["block_size_maximum"])'
}
raw() {
	PYTHONPATH="$NP_SRC/tests/integration" python3 "$NP_SRC/tests/integration/maxreq.py" "$@"
}

for spec in mem:66M raw:"$LOOP"; do
	start_server -e d="$spec"
	[ "$(maximum)" = $((64 << 20)) ] || fail "$spec: advertised maximum $(maximum), not 64 MiB"
	raw "$PORT" $((64 << 20)) || fail "$spec: requests up to 64 MiB without negotiation"
	stop_server
done

# Lower: the 48 MiB WRITE is refused, and so on; the test's own checks
# must then fail.
start_server -e d=mem:66M --max-request 32M
[ "$(maximum)" = $((32 << 20)) ] || fail "advertised maximum $(maximum), not 32 MiB"
! raw "$PORT" $((32 << 20)) >"$TMP/out" 2>&1 || fail "48 MiB requests over --max-request 32M"
grep -q "check failed: 48 MiB WRITE" "$TMP/out" || fail "maxreq.py under 32M: $(cat "$TMP/out")"
assert_serving d
stop_server

printf '[server]\nmax-request = 256M\n[export d]\nspec = mem:1M\n' >"$TMP/conf.ini"
start_server -c "$TMP/conf.ini"
[ "$(maximum)" = $((256 << 20)) ] || fail "max-request = 256M advertised as $(maximum)"
stop_server

for bad in 16M 257M 1G nonsense; do
	rc=0
	"$NBDPLEX" serve -l 127.0.0.1:0 -e d=mem:1M --max-request "$bad" 2>"$TMP/err" || rc=$?
	[ $rc = 2 ] && grep -q "bad value '$bad' for --max-request" "$TMP/err" ||
		fail "--max-request $bad: exit $rc, $(cat "$TMP/err")"
done
printf '[server]\nmax-request = 512M\n' >"$TMP/bad.ini"
rc=0
"$NBDPLEX" serve -l 127.0.0.1:0 -e d=mem:1M -c "$TMP/bad.ini" 2>"$TMP/err" || rc=$?
[ $rc != 0 ] && grep -q "max-request" "$TMP/err" || fail "max-request = 512M: $(cat "$TMP/err")"
pass
