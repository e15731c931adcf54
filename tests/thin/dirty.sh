#!/bin/bash
# The meta contexts of a thin export, read by libnbd (nbdinfo) and by
# qemu's own NBD client (qemu-img map): qemu:dirty-bitmap:SNAP shows
# exactly the chunks written since SNAP, after writes, TRIMs and
# WRITE_ZEROES (with and without unmap), and nothing else;
# qemu:allocation-depth tells a volume's own chunks from those its
# snapshots and a clone's origin hold.
. "$NP_SRC/tests/functions.sh"
. "$NP_SRC/tests/thin/functions.sh"
requires qemu-io qemu-img nbdinfo nbdsh python3

pool=$TMP/pool
K=1024
M=$((1024 * 1024))
vol init "$pool" --size 256M --chunk-size 64K || fail "volume init"
vol create "$pool" v 64M || fail "create v"
start_server -e v=thin:"$pool/v"

io() { qemu-io -f raw "$(uri v)" "$@" >/dev/null || fail "qemu-io $*"; }

# What s1 holds: 0-4M and 16-17M.
io -c 'write -P 1 0 4M' -c 'write -P 2 16M 1M'
vol snapshot "$pool" v s1 || fail "snapshot s1"
io -c 'write -P 3 68k 4k' `# part of a chunk s1 has: the chunk` \
	-c 'write -P 4 20M 64k' `# a chunk s1 lacks` \
	-c 'discard 16M 128k' `# TRIM of s1's data` \
	-c 'discard 40M 1M' `# TRIM of what s1 never had: no change` \
	-c 'write -z -u 2M 64k' `# WRITE_ZEROES that may unmap, over data` \
	-c 'write -z -u 48M 1M' `# the same over zeroes: no change` \
	-c 'write -z 3M 64k' `# WRITE_ZEROES that allocates (NO_HOLE)`
s1_changed="$((64 * K)):$((64 * K)) $((2 * M)):$((64 * K)) $((3 * M)):$((64 * K))"
s1_changed="$s1_changed $((16 * M)):$((128 * K)) $((20 * M)):$((64 * K))"
vol snapshot "$pool" v s2 || fail "snapshot s2"
io -c 'write -P 5 60M 64k'
s1_changed="$s1_changed $((60 * M)):$((64 * K))"
s2_changed="$((60 * M)):$((64 * K))"

# expect_ranges FILE FORMAT "OFF:LEN ...": the dirty ranges FILE shows,
# merged, are exactly those.
expect_ranges() {
	python3 - "$@" <<'PY' || fail "$2 map of $1: $(cat "$1")"
import json, sys
path, fmt, want = sys.argv[1], sys.argv[2], sys.argv[3]
runs = []
if fmt == "nbdinfo":  # offset length value description
    for line in open(path):
        off, n, v = (int(x) for x in line.split()[:3])
        assert v in (0, 1), line
        if v == 1:
            runs.append((off, n))
else:  # qemu-img map: qemu reports dirty as not present (x-dirty-bitmap)
    for e in json.load(open(path)):
        if not e["data"]:
            runs.append((e["start"], e["length"]))
merged = []
for off, n in sorted(runs):
    if merged and merged[-1][0] + merged[-1][1] == off:
        merged[-1] = (merged[-1][0], merged[-1][1] + n)
    else:
        merged.append((off, n))
expect = []
for off, n in sorted(tuple(int(x) for x in r.split(":")) for r in want.split()):
    if expect and expect[-1][0] + expect[-1][1] == off:
        expect[-1] = (expect[-1][0], expect[-1][1] + n)
    else:
        expect.append((off, n))
assert merged == expect, f"dirty {merged}, expected {expect}"
PY
}

nbdinfo --list --content "$(uri v)" >"$TMP/list" || fail "nbdinfo --list"
for c in base:allocation qemu:allocation-depth qemu:dirty-bitmap:s1 qemu:dirty-bitmap:s2; do
	grep -q "^[[:space:]]*$c\$" "$TMP/list" || fail "context $c not listed: $(cat "$TMP/list")"
done

for s in s1 s2; do
	want=${s}_changed
	nbdinfo --map="qemu:dirty-bitmap:$s" "$(uri v)" >"$TMP/$s.nbdinfo" ||
		fail "nbdinfo --map=qemu:dirty-bitmap:$s"
	expect_ranges "$TMP/$s.nbdinfo" nbdinfo "${!want}"
	qemu-img map --output=json --image-opts \
		"driver=nbd,host=127.0.0.1,port=$PORT,export=v,x-dirty-bitmap=qemu:dirty-bitmap:$s" \
		>"$TMP/$s.qemu" || fail "qemu-img map x-dirty-bitmap=$s"
	expect_ranges "$TMP/$s.qemu" qemu "${!want}"
done
# A range that starts and ends inside chunks is answered for that range.
URI=$(uri v) nbdsh -c '
import os
h.add_meta_context("qemu:dirty-bitmap:s1")
h.connect_uri(os.environ["URI"])
got = []
h.block_status(8192, 20 * 2**20 + 4096, lambda ctx, off, ents, err: got.append((ctx, off, list(ents))))
assert got == [("qemu:dirty-bitmap:s1", 20 * 2**20 + 4096, [8192, 1])], got
' || fail "part of a dirty chunk"

# Allocation depth on the origin and on a clone of s2, read with nbdinfo.
vol clone "$pool" s2 c || fail "clone"
stop_server
start_server -e v=thin:"$pool/v" -e c=thin:"$pool/c"
qemu-io -f raw "$(uri c)" -c 'write -P 6 8M 64k' >/dev/null || fail "write c"
# depth_at EXPORT OFFSET: the depth nbdinfo shows at OFFSET
depth_at() {
	nbdinfo --map=qemu:allocation-depth "$(uri "$1")" |
		awk -v o="$2" '$1 <= o && o < $1 + $2 { print $3 }'
}
# On v: its own chunk (60M), what s2 holds (20M, 64k), s1's (0), a TRIM
# over s1's data (16M), never written (40M).
for want in 60:1 20:2 0:3 1:3 16:0 40:0 8:0; do
	d=$(depth_at v $((${want%:*} * M))) || fail "nbdinfo depth of v"
	[ "$d" = "${want#*:}" ] || fail "depth of v at ${want%:*}M: $d, expected ${want#*:}"
done
[ "$(depth_at v $((64 * K)))" = 2 ] || fail "depth of v at 64k (copied after s1)"
# On the clone: its own write (8M), its origin's (20M from s2, 0 from s1),
# not what v wrote after the clone's snapshot (60M).
for want in 8:1 20:2 0:3 60:0 16:0; do
	d=$(depth_at c $((${want%:*} * M))) || fail "nbdinfo depth of c"
	[ "$d" = "${want#*:}" ] || fail "depth of c at ${want%:*}M: $d, expected ${want#*:}"
done

# A clone offers the bitmaps of its origin's snapshots; only s2 changed c.
nbdinfo --map="qemu:dirty-bitmap:s2" "$(uri c)" >"$TMP/c.s2" || fail "c's bitmap of s2"
expect_ranges "$TMP/c.s2" nbdinfo "$((8 * M)):$((64 * K))"

# A deleted snapshot's bitmap is no longer offered; the others stay right
# (s1's changes fold into s2's level, which c still sees).
stop_server
vol delete "$pool" c || fail "delete c"
vol delete "$pool" s1 || fail "delete s1"
start_server -e v=thin:"$pool/v"
if nbdinfo --map="qemu:dirty-bitmap:s1" "$(uri v)" >/dev/null 2>&1; then
	fail "a deleted snapshot's bitmap was served"
fi
nbdinfo --map="qemu:dirty-bitmap:s2" "$(uri v)" >"$TMP/s2.after" || fail "s2 after s1 went"
expect_ranges "$TMP/s2.after" nbdinfo "$s2_changed"
# A volume grown since the snapshot: the new space is called changed (s2
# never had it), and `volume diff` says the same as the bitmap.
vol resize "$pool" v 80M || fail "grow v"
nbdinfo --map="qemu:dirty-bitmap:s2" "$(uri v)" >"$TMP/s2.grown" || fail "s2 after the grow"
expect_ranges "$TMP/s2.grown" nbdinfo "$s2_changed $((64 * M)):$((16 * M))"
vol diff "$pool" s2 v >"$TMP/diff" || fail "volume diff"
[ "$(cat "$TMP/diff")" = "$((60 * M)) $((64 * K))
$((64 * M)) $((16 * M))" ] || fail "volume diff s2 v: $(cat "$TMP/diff")"
assert_serving v
stop_server
pass
