#!/bin/bash
# Meta contexts over extended headers, through a raw socket (contexts.py):
# 64-bit extents, several contexts in one reply, payload filtering, a
# context that does not exist, a snapshot deleted while its bitmap is
# selected, too many contexts.
. "$NP_SRC/tests/functions.sh"
. "$NP_SRC/tests/thin/functions.sh"
requires qemu-io python3

pool=$TMP/pool
vol init "$pool" --size 256M --chunk-size 64K || fail "volume init"
vol create "$pool" v 8G || fail "create v"
start_server -e v=thin:"$pool/v"
io() { qemu-io -f raw "$(uri v)" "$@" >/dev/null || fail "qemu-io $*"; }
io -c 'write -P 1 0 64k' -c 'write -P 2 5G 64k'
vol snapshot "$pool" v s1 || fail "snapshot s1"
io -c 'write -P 3 6G 64k'
vol snapshot "$pool" v s2 || fail "snapshot s2"
io -c 'write -P 4 7G 64k'
python3 "$NP_SRC/tests/thin/contexts.py" "$PORT" "$NBDPLEX" "$pool" || fail "context checks"
assert_serving v
stop_server
pass
