#!/bin/bash
# The thin engine through real clients: qemu-io patterns, nbdinfo --map
# holes, an nbdcopy round trip, two volumes of one pool in one server, and
# `nbdplex volume` snapshot/clone/list/delete through the control socket
# while the server runs, then after a kill -9.
. "$NP_SRC/tests/functions.sh"
requires qemu-io nbdinfo nbdcopy cmp

pool=$TMP/pool
vol() { "$NBDPLEX" volume "$@"; }
alloc_of() { vol list "$pool" | awk -v n="$1" '$1 == n { print $4 }'; }

vol init "$pool" --size 128M --chunk-size 64K || fail "volume init"
vol create "$pool" v1 256M || fail "create v1"
vol create "$pool" v2 64M || fail "create v2"

start_server -e v1=thin:"$pool/v1" -e v2=thin:"$pool/v2"
[ -S "$pool/control.sock" ] || fail "no control socket while serving"
[ "$(nbdinfo --size "$(uri v1)")" = 268435456 ] || fail "size of v1"
[ "$(nbdinfo --size "$(uri v2)")" = 67108864 ] || fail "size of v2"

# Patterns, including a write that covers part of a chunk.
qemu-io -f raw "$(uri v1)" -c 'write -P 0x11 1M 64k' -c 'write -P 0x22 40M 1M' \
	-c 'write -P 0x33 100M 4k' >/dev/null || fail "qemu-io write"
qemu-io -f raw "$(uri v1)" -c 'read -P 0x11 1M 64k' -c 'read -P 0x22 40M 1M' \
	-c 'read -P 0x33 100M 4k' -c 'read -P 0 104861696 60k' -c 'read -P 0 0 1M' \
	>/dev/null || fail "qemu-io read back"

# Unwritten chunks are holes; written ones are data, at chunk granularity.
nbdinfo --map "$(uri v1)" >"$TMP/map1"
python3 - "$TMP/map1" <<'PY' || fail "map of v1: $(cat "$TMP/map1")"
import sys
ext = [l.split() for l in open(sys.argv[1])]
data = [(int(o), int(n)) for o, n, t, *_ in ext if t == "0"]
M = 1 << 20
assert data == [(1 * M, 65536), (40 * M, M), (100 * M, 65536)], data
holes = sum(int(n) for o, n, t, *_ in ext if t == "3")
assert holes == 256 * M - 65536 * 2 - M, holes
PY

# nbdcopy round trip through the second volume of the same pool.
head -c 8M /dev/urandom >"$TMP/in.img"
truncate -s 64M "$TMP/in.img"
nbdcopy "$TMP/in.img" "$(uri v2)" || fail "nbdcopy to v2"
nbdcopy "$(uri v2)" "$TMP/out.img" || fail "nbdcopy from v2"
cmp "$TMP/in.img" "$TMP/out.img" || fail "nbdcopy round trip differs"
[ "$(alloc_of v2)" -le $((9 * 1024 * 1024)) ] || fail "nbdcopy allocated the zero tail of v2"

# Catalog changes while the server runs go through its control socket.
vol snapshot "$pool" v1 s1 || fail "snapshot while serving"
vol clone "$pool" s1 c1 || fail "clone while serving"
vol list "$pool" >"$TMP/list" || fail "list while serving"
grep -Eq '^s1 +snapshot +268435456 +[0-9]+ +v1$' "$TMP/list" || fail "list: $(cat "$TMP/list")"
grep -Eq '^c1 +volume +268435456 +0 +s1$' "$TMP/list" || fail "list: $(cat "$TMP/list")"
if vol delete "$pool" v1 2>"$TMP/err"; then fail "deleted an exported volume"; fi
grep -q "exported" "$TMP/err" || fail "delete message: $(cat "$TMP/err")"
if vol delete "$pool" s1 2>"$TMP/err"; then fail "deleted a snapshot with two dependents"; fi
grep -q "c1" "$TMP/err" || fail "delete message does not name c1: $(cat "$TMP/err")"

# The served volume continues after its snapshot: writes copy, the snapshot
# keeps the old data (the server read 1M before, so it had that chunk's
# mapping cached as the volume's own).
qemu-io -f raw "$(uri v1)" -c 'write -P 0x44 1052672 4k' -c 'read -P 0x11 1M 4k' \
	-c 'read -P 0x44 1052672 4k' -c 'discard 40M 1M' -c 'read -P 0 40M 1M' \
	-c flush >/dev/null || fail "write after snapshot"
# A trimmed chunk reads as zeroes, not as what its cached mapping held.
qemu-io -f raw "$(uri v1)" -c 'write -P 0x55 60M 64k' -c 'read -P 0x55 60M 64k' \
	-c 'discard 60M 64k' -c 'read -P 0 60M 64k' -c 'write -P 0x66 60M 4k' \
	-c 'read -P 0x66 60M 4k' -c 'read -P 0 62918656 60k' >/dev/null ||
	fail "trim of a cached chunk"
# The same on v2, with no other catalog change in between: the mappings the
# server cached must not outlive the snapshot (s2 is read after the restart).
qemu-io -f raw "$(uri v2)" -c 'write -P 0x77 0 64k' -c 'read -P 0x77 0 64k' >/dev/null ||
	fail "write v2"
vol snapshot "$pool" v2 s2 || fail "snapshot of v2 while serving"
qemu-io -f raw "$(uri v2)" -c 'write -P 0x78 4k 4k' -c 'read -P 0x77 0 4k' \
	-c 'read -P 0x78 4k 4k' -c 'read -P 0x77 8k 56k' >/dev/null || fail "write after snapshot of v2"
nbdinfo --map "$(uri v1)" >"$TMP/map2"
python3 - "$TMP/map2" <<'PY' || fail "trimmed range is not a hole: $(cat "$TMP/map2")"
import sys
M = 1 << 20
ext = [l.split() for l in open(sys.argv[1])]
assert any(int(o) <= 40 * M and int(o) + int(n) >= 41 * M and t == "3" for o, n, t, *_ in ext)
PY
vol check "$pool" >/dev/null || fail "check while serving"

# A kill -9 of the server leaves a stale socket; the tool then opens the
# pool itself, and the pool is consistent.
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
vol check "$pool" >/dev/null || fail "check after kill -9"
vol list "$pool" >/dev/null || fail "list after kill -9"

start_server -r -e v1=thin:"$pool/v1" -e s1=thin:"$pool/s1" -e c1=thin:"$pool/c1" \
	-e s2=thin:"$pool/s2"
qemu-io -r -f raw "$(uri v1)" -c 'read -P 0x11 1M 4k' -c 'read -P 0x44 1052672 4k' \
	-c 'read -P 0 40M 1M' -c 'read -P 0x33 100M 4k' -c 'read -P 0x66 60M 4k' \
	-c 'read -P 0 62918656 60k' >/dev/null || fail "v1 after restart"
for v in s1 c1; do
	qemu-io -r -f raw "$(uri $v)" -c 'read -P 0x11 1M 64k' -c 'read -P 0x22 40M 1M' \
		-c 'read -P 0x33 100M 4k' >/dev/null || fail "$v keeps the data of the snapshot"
done
qemu-io -r -f raw "$(uri s2)" -c 'read -P 0x77 0 64k' >/dev/null || fail "s2 keeps its data"
vol list "$pool" | grep -q '^c1 ' || fail "list through a read-only server"
stop_server
[ ! -e "$pool/control.sock" ] || fail "control socket left after a clean stop"

# Deleting the clone, then the snapshot, folds it into v1; space comes back.
vol delete "$pool" c1 || fail "delete c1"
vol delete "$pool" s1 || fail "delete s1"
vol delete "$pool" v2 || fail "delete v2"
vol delete "$pool" s2 || fail "delete s2"
vol check "$pool" >/dev/null || fail "check after deletes"
[ "$(alloc_of v1)" = $((3 * 65536)) ] || fail "v1 allocation after fold: $(vol list "$pool")"
pass
