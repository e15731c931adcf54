#!/bin/bash
# The server core's libnbd protocol checks (tests/integration/protocol.py)
# with a thin volume in place of the file export: structured reads with
# holes, block status, FUA, trim and zero, multi-conn flush.
. "$NP_SRC/tests/functions.sh"
requires nbdsh
python3 -c 'import nbd' || fail "python3-libnbd is missing"

"$NBDPLEX" volume init "$TMP/pool" --size 64M || fail "volume init"
"$NBDPLEX" volume create "$TMP/pool" f 16M || fail "volume create"
truncate -s 1M "$TMP/ro.img"
start_server -e m=mem:64M -e f=thin:"$TMP/pool/f" -e ro=file:"$TMP/ro.img",size=1M \
	-c <(printf '[export ro]\nread-only = yes\n') --max-request 32M
python3 "$NP_SRC/tests/integration/protocol.py" "$PORT" || fail "protocol checks on thin"
stop_server
"$NBDPLEX" volume check "$TMP/pool" >/dev/null || fail "pool inconsistent after the checks"
pass
