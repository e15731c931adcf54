#!/bin/bash
# Lifecycle: a config file with two listeners; SIGTERM finishes the
# requests in flight, flushes and exits 0; the data is on disk afterwards.
. "$NP_SRC/tests/functions.sh"
requires nbdinfo

P1=$(free_port)
P2=$(free_port)
cat >"$TMP/np.ini" <<INI
[server]
listen = 127.0.0.1:$P1
listen = 127.0.0.2:$P2
threads = 3
handshake-timeout = 5

[export d]
spec = file:$TMP/d.img,size=16M
description = drained disk

[export ro]
spec = mem:1M
read-only = yes
INI
"$NBDPLEX" serve -c "$TMP/np.ini" --pidfile "$TMP/pid" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
NP_PIDS+=("$SERVER_PID")
wait_until 5 test -s "$TMP/pid" || fail "no pidfile within 5 s"
[ "$(cat "$TMP/pid")" = "$SERVER_PID" ] || fail "pidfile"

# Both listeners serve the same exports.
[ "$(nbdinfo --size nbd://127.0.0.1:$P1/d)" = 16777216 ] || fail "first listener"
[ "$(nbdinfo --size nbd://127.0.0.2:$P2/d)" = 16777216 ] || fail "second listener"
nbdinfo --json nbd://127.0.0.2:$P2/d | grep -q '"description": "drained disk"' || fail "description"
nbdinfo --json nbd://127.0.0.1:$P1/ro | grep -q '"is_read_only": true' || fail "read-only from config"

PORT=$P1
python3 "$NP_SRC/tests/integration/drain.py" "$P1" "$SERVER_PID" || fail "drain on SIGTERM"
rc=0
wait "$SERVER_PID" || rc=$?
[ "$rc" = 0 ] || fail "server exited $rc after SIGTERM"
[ ! -e "$TMP/pid" ] || fail "pidfile left behind"
grep -q 'flushing exports' "$TMP/server.log" || fail "no flush at exit"
python3 - "$TMP/d.img" <<'PY' || fail "drained writes are not in the file"
import sys
f = open(sys.argv[1], "rb")
for i in range(200):
    f.seek(i * 65536)
    assert f.read(65536) == bytes([i % 251 + 1]) * 65536, i
PY

# SIGINT the same way, idle; --log-level warn keeps info lines out.
LOG=$TMP/quiet.log start_server -e d=file:"$TMP/d.img" --log-level warn
nbdinfo --size "$(uri d)" >/dev/null
[ -e "$TMP/quiet.log" ] && ! grep -q "nbdplex info:" "$TMP/quiet.log" ||
	fail "--log-level warn still logs info lines: $(head -3 "$TMP/quiet.log")"
kill -INT "$SERVER_PID"
rc=0
wait "$SERVER_PID" || rc=$?
[ "$rc" = 0 ] || fail "server exited $rc after SIGINT"
pass
