#!/bin/bash
# SIGHUP rereads the configuration: added exports appear, removed and
# changed ones drain and close (a raw export's per-loop engine handles
# too), exports that stay keep their clients, and a bad file changes
# nothing. The clients are libnbd's (reload.py).
. "$NP_SRC/tests/functions.sh"
requires nbdinfo python3 losetup

truncate -s 16M "$TMP/raw.img"
LOOP=$(losetup -f --show --direct-io=on "$TMP/raw.img") || fail "losetup"
trap 'losetup -d "$LOOP" 2>/dev/null || true; np_cleanup' EXIT
"$NBDPLEX" volume init "$TMP/pool" --size 64M --chunk-size 64K >/dev/null || fail "volume init"
"$NBDPLEX" volume create "$TMP/pool" v 16M || fail "volume create"

conf() { # $1: the [export v] extra line; $2: "new" for the second config
	cat <<INI
[export a]
spec = file:$TMP/a.img,size=16M
description = ${2:-first} description
INI
	if [ "${2:-}" = new ]; then
		printf '[export c]\nspec = mem:16M\n'
	else
		printf '[export b]\nspec = file:%s,size=16M\n' "$TMP/b.img"
		printf '[export d]\nspec = raw:%s\n' "$LOOP"
	fi
	printf '[export v]\nspec = thin:%s/pool/v\n%s\n' "$TMP" "$1"
}
conf "" >"$TMP/conf.ini"
start_server -c "$TMP/conf.ini" --control "$TMP/ctl.sock"

PYTHONPATH="$NP_SRC/tests/integration" python3 "$NP_SRC/tests/integration/reload.py" \
	"$PORT" "$TMP" &
CLIENT=$!
NP_PIDS+=("$CLIENT")
client_ready() {
	[ -e "$TMP/ready" ] && return 0
	kill -0 "$CLIENT" 2>/dev/null || fail "reload.py ended before the reload"
	return 1
}
wait_until 30 client_ready || fail "reload.py never got ready"

conf "read-only = true" new >"$TMP/conf.ini"
kill -HUP "$SERVER_PID"
wait_until 10 grep -q "reload: " "$TMP/server.log" || fail "no reload summary within 10 s"
grep -q "reload: 1 export(s) kept (1 with new settings), 1 added, 3 removed" "$TMP/server.log" ||
	fail "reload summary: $(grep reload "$TMP/server.log")"
touch "$TMP/reloaded"
wait "$CLIENT" || fail "client checks across the reload"

nbdinfo --json "nbd://127.0.0.1:$PORT/a" | grep -q '"description": "new description"' ||
	fail "description of a not reloaded"
nbdinfo --list "nbd://127.0.0.1:$PORT" >"$TMP/list"
grep -q 'export="c"' "$TMP/list" || fail "c not listed: $(cat "$TMP/list")"
if grep -q 'export="b"' "$TMP/list"; then fail "b still listed"; fi
grep -q "export 'd': closed" "$TMP/server.log" || fail "raw export d not closed"
grep -q "export 'v': closed" "$TMP/server.log" || fail "old v not closed"
"$NBDPLEX" stats --control "$TMP/ctl.sock" >"$TMP/stats" || fail "stats after reload"
grep -q 'nbdplex_export_size_bytes{export="c"}' "$TMP/stats" || fail "no metrics for c"
if grep -q 'export="b"' "$TMP/stats"; then fail "metrics still name b"; fi

# A broken file is refused as a whole; everything goes on as it was.
echo "this is not a config line" >>"$TMP/conf.ini"
kill -HUP "$SERVER_PID"
wait_until 10 grep -q "keeping the one in use" "$TMP/server.log" || fail "bad config not reported"
assert_serving a
assert_serving c
stop_server
losetup -d "$LOOP"
trap np_cleanup EXIT
"$NBDPLEX" volume check "$TMP/pool" >/dev/null || fail "thin pool inconsistent after the reload"
pass
