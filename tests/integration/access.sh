#!/bin/bash
# Allow lists (server-wide and per export), hidden exports and connection
# limits, with refusals logged by peer address.
. "$NP_SRC/tests/functions.sh"
cat >"$TMP/acl.ini" <<'INI'
[export secret]
spec = mem:1M
allow = 127.0.0.2
[export hid]
spec = mem:1M
hidden = yes
INI
start_server -e pub=mem:1M -c "$TMP/acl.ini" --allow 127.0.0.0/30 --max-connections-per-client 3
python3 "$NP_SRC/tests/integration/access.py" "$PORT" || fail "access checks"
grep -q 'refused connection from 127.0.0.5:[0-9]* .*not in the allow list' "$TMP/server.log" ||
	fail "no log line for the refused address"
grep -q 'refused connection from 127.0.0.3:[0-9]* .*too many connections from this address' \
	"$TMP/server.log" || fail "no log line for the per-client limit"
stop_server
pass
