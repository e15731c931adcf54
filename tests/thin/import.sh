#!/bin/bash
# `nbdplex volume import` and `export` against real peers: a sparse image
# with data islands, a written zero region and an odd tail goes into a
# volume; holes and zero chunks stay unallocated (the pool's counts, and
# nbdinfo --map through `nbdplex serve`); the data reads back equal
# (export + cmp, nbdcopy, qemu-img compare). NBD sources and targets are
# nbdkit (Unix socket, with filters that take away block status and
# WRITE_ZEROES, delay or fail reads) and nbdplex serve (TCP). The progress
# bar shows under a pty and not in a pipe. Bad input fails with a message
# and leaves nothing behind.
. "$NP_SRC/tests/functions.sh"
requires nbdinfo nbdcopy nbdkit qemu-img script cmp python3

K=1024
M=$((1024 * 1024))
CHUNK=$((64 * K))
pool=$TMP/pool
vol() { "$NBDPLEX" volume "$@"; }
alloc_of() { vol list "${2:-$pool}" | awk -v n="$1" '$1 == n { print $4 }'; }
size_of() { vol list "${2:-$pool}" | awk -v n="$1" '$1 == n { print $3 }'; }
used_of() { vol list "$1" | sed -n 's/^# .* used \([0-9]*\) .*/\1/p'; }
has_vol() { vol list "${2:-$pool}" | awk -v n="$1" '$1 == n { f = 1 } END { exit !f }'; }

# start_nbdkit SOCKET ARGS...: nbdkit on a Unix socket, stopped by PID.
start_nbdkit() {
	local sock=$1 pidfile=$TMP/nbdkit.pid.$RANDOM
	shift
	rm -f "$sock" # a socket of an nbdkit stopped before
	nbdkit -f -U "$sock" -P "$pidfile" "$@" >>"$TMP/nbdkit.log" 2>&1 &
	NBDKIT_PID=$!
	NP_PIDS+=("$NBDKIT_PID")
	wait_pidfile 10 "$NBDKIT_PID" "$pidfile" "$TMP/nbdkit.log" nbdkit
}
stop_nbdkit() {
	kill "$NBDKIT_PID"
	wait "$NBDKIT_PID" 2>/dev/null || true
}
unix_uri() { echo "nbd+unix:///?socket=$1"; }

# ------------------------------------------------------------ the image
# 64 MiB + 100 bytes (not a multiple of 512): random islands at 4M (1M)
# and 20M+8K (4K, inside one chunk), 8M of written zeroes at 30M (data to
# SEEK_DATA, zeroes to the copy), and 100 random bytes at the very end.
img=$TMP/src.img
truncate -s $((64 * M + 100)) "$img"
put() { dd if=/dev/urandom of="$img" bs="$1" count=1 seek="$2" oflag=seek_bytes conv=notrunc status=none; }
put $M $((4 * M))
put $((4 * K)) $((20 * M + 8 * K))
dd if=/dev/zero of="$img" bs=$M count=8 seek=30 conv=notrunc status=none
put 100 $((64 * M))
python3 - "$img" <<'PY' || fail "the source image has no allocated zero region"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
assert os.lseek(fd, 30 << 20, os.SEEK_DATA) == 30 << 20
PY
# Chunks with data: 16 + 1 + 1 (the tail).
want_alloc=$((18 * CHUNK))
padded=$((64 * M + 512))

vol init "$pool" --size 256M || fail "volume init"

# ------------------------------------------------------------ file import
vol import "$pool" v1 "$img" >"$TMP/out" 2>"$TMP/err" || fail "import: $(cat "$TMP/err")"
[ ! -s "$TMP/err" ] || fail "import wrote to a piped stderr: $(od -c "$TMP/err" | head)"
grep -q "^imported $img to $pool/v1: " "$TMP/out" || fail "import summary: $(cat "$TMP/out")"
[ "$(wc -l <"$TMP/out")" = 1 ] || fail "import summary is not one line"
[ "$(size_of v1)" = $padded ] || fail "v1 is $(size_of v1) bytes, want $padded (padded to 512)"
[ "$(alloc_of v1)" = $want_alloc ] || fail "v1 allocated $(alloc_of v1), want $want_alloc: holes or zeroes were written"

# Export to a new file: equal to the source (and the padding zero), sparse.
vol export "$pool" v1 "$TMP/out.img" >"$TMP/out" 2>"$TMP/err" || fail "export: $(cat "$TMP/err")"
grep -q "^exported $pool/v1 to $TMP/out.img: " "$TMP/out" || fail "export summary: $(cat "$TMP/out")"
[ "$(stat -c %s "$TMP/out.img")" = $padded ] || fail "exported file size"
cmp -n $((64 * M + 100)) "$img" "$TMP/out.img" || fail "exported data differs"
cmp -i $((64 * M + 100)) -n $((512 - 100)) "$TMP/out.img" /dev/zero || fail "padding is not zero"
blocks=$(($(stat -c %b "$TMP/out.img") * 512))
[ "$blocks" -le $((want_alloc + 256 * K)) ] || fail "exported file is not sparse: $blocks bytes allocated"

# Through the server: nbdinfo --map shows the holes, nbdcopy and qemu-img
# see the same data.
start_server -r -e v1=thin:"$pool/v1"
nbdinfo --map "$(uri v1)" >"$TMP/map"
python3 - "$TMP/map" <<'PY' || fail "map of v1: $(cat "$TMP/map")"
import sys
M, C = 1 << 20, 65536
ext = [l.split() for l in open(sys.argv[1])]
data = [(int(o), int(n)) for o, n, t, *_ in ext if t == "0"]
assert data == [(4 * M, M), (20 * M, C), (64 * M, 512)], data
hole = lambda a, b: any(int(o) <= a and int(o) + int(n) >= b and t == "3" for o, n, t, *_ in ext)
assert hole(0, 4 * M) and hole(30 * M, 38 * M) and hole(21 * M, 64 * M)
PY
nbdcopy "$(uri v1)" "$TMP/copy.img" || fail "nbdcopy from the served volume"
cmp "$TMP/out.img" "$TMP/copy.img" || fail "nbdcopy read differs from export"
cp --sparse=always "$img" "$TMP/src-padded.img" && truncate -s $padded "$TMP/src-padded.img"
qemu-img compare -f raw -F raw "$TMP/src-padded.img" "$(uri v1)" >/dev/null ||
	fail "qemu-img compare: source and served volume differ"

# An import into a pool held by a server is refused, with the way around;
# an export from it reads through the server's control socket.
if vol import "$pool" v9 "$img" 2>"$TMP/err"; then fail "import into a served pool"; fi
grep -q "running nbdplex server" "$TMP/err" || fail "served-pool message: $(cat "$TMP/err")"
grep -q "nbdcopy" "$TMP/err" || fail "served-pool message says no way around: $(cat "$TMP/err")"
vol export "$pool" v1 "$TMP/x.img" >/dev/null || fail "export from a served pool"
cmp "$TMP/out.img" "$TMP/x.img" || fail "export from a served pool differs"
[ "$(du -k "$TMP/x.img" | cut -f1)" -le $((3 * 1024)) ] || fail "export from a served pool is not sparse"

# ------------------------------------------------------------ NBD sources
# nbdplex serve (TCP, nbd://) of the source image as a file export.
stop_server
start_server -r -e img=file:"$img"
vol import "$pool" v2 "$(uri img)" >/dev/null || fail "import from nbd:// (nbdplex)"
stop_server
[ "$(alloc_of v2)" = $want_alloc ] || fail "v2 allocated $(alloc_of v2), want $want_alloc"
vol export "$pool" v2 "$TMP/v2.img" >/dev/null || fail "export v2"
cmp "$TMP/out.img" "$TMP/v2.img" || fail "v2 differs"

# nbdkit over a Unix socket without block status: everything is data to
# the copy, and zero chunks still stay unallocated.
start_nbdkit "$TMP/k.sock" --filter=noextents file "$img"
vol import "$pool" v3 "$(unix_uri "$TMP/k.sock")" >/dev/null || fail "import from nbdkit"
stop_nbdkit
[ "$(alloc_of v3)" = $want_alloc ] || fail "v3 allocated $(alloc_of v3), want $want_alloc"
vol export "$pool" v3 "$TMP/v3.img" >/dev/null || fail "export v3"
cmp "$TMP/out.img" "$TMP/v3.img" || fail "v3 differs"

# ------------------------------------------------------------ NBD targets
# A larger target full of 0xff: the volume's range becomes the volume
# (holes zeroed), the rest stays. Once with WRITE_ZEROES, once without.
for filter in "" nozero; do
	python3 -c "import sys; sys.stdout.buffer.write(b'\xff' * (80 << 20))" >"$TMP/tgt.img"
	if [ "$filter" = nozero ]; then
		start_nbdkit "$TMP/t.sock" --filter=nozero file "$TMP/tgt.img" zeromode=none
	else
		start_nbdkit "$TMP/t.sock" file "$TMP/tgt.img"
	fi
	vol export "$pool" v1 "$(unix_uri "$TMP/t.sock")" >/dev/null ||
		fail "export to nbdkit ($filter)"
	stop_nbdkit
	cmp -n $padded "$TMP/out.img" "$TMP/tgt.img" || fail "nbd target differs ($filter)"
	python3 - "$TMP/tgt.img" $padded <<'PY' || fail "bytes past the volume changed ($filter)"
import sys
d = open(sys.argv[1], "rb").read()
assert d[int(sys.argv[2]):] == b"\xff" * (len(d) - int(sys.argv[2]))
PY
done
# nbdplex serve as the target, a mem export (reads as zeroes: no zeroing).
start_server -e t=mem:80M
vol export "$pool" v1 "$(uri t)" >/dev/null || fail "export to nbdplex"
nbdcopy "$(uri t)" "$TMP/t.img" || fail "read back the nbdplex target"
stop_server
cmp -n $padded "$TMP/out.img" "$TMP/t.img" || fail "nbdplex target differs"

# ------------------------------------------------------------ progress
script -qfec "'$NBDPLEX' volume import '$pool' p1 '$img'" "$TMP/tty.log" >/dev/null ||
	fail "import under a pty"
grep -Eq $'\r100% (\\[#*\\] )?[0-9.]+ MiB / [0-9.]+ MiB  .*/s  [0-9:]+ total' "$TMP/tty.log" || fail "no progress bar on a pty: $(od -c "$TMP/tty.log" | head)"
grep -q "^imported " "$TMP/tty.log" || fail "no summary on a pty"
script -qfec "'$NBDPLEX' volume import '$pool' p2 '$img' --no-progress --quiet" "$TMP/tty2.log" \
	>/dev/null || fail "quiet import under a pty"
! grep -q '%' "$TMP/tty2.log" || fail "--no-progress drew a bar"
! grep -q "imported" "$TMP/tty2.log" || fail "--quiet printed a summary"
vol export "$pool" v1 "$TMP/p.img" --progress --quiet >"$TMP/out" 2>"$TMP/err" ||
	fail "export --progress"
grep -q '100% \[' "$TMP/err" || fail "--progress drew no bar into a pipe"
[ ! -s "$TMP/out" ] || fail "--quiet printed: $(cat "$TMP/out")"

# ------------------------------------------------------------ overwrite
# An existing volume is refused; --overwrite makes it the new image, its
# old data unmapped where the new image has holes.
head -c $((2 * M)) /dev/urandom >"$TMP/small.img"
truncate -s $((16 * M)) "$TMP/small.img"
if vol import "$pool" v1 "$TMP/small.img" 2>"$TMP/err"; then fail "import over an existing volume"; fi
grep -q "already exists" "$TMP/err" || fail "exists message: $(cat "$TMP/err")"
[ "$(alloc_of v1)" = $want_alloc ] || fail "a refused import changed v1"
vol import "$pool" v1 "$TMP/small.img" --overwrite >/dev/null || fail "import --overwrite"
# 2M of data in the first 16M, and the 4K island at 20M+8K kept past the end.
[ "$(alloc_of v1)" = $((2 * M + CHUNK + CHUNK)) ] || fail "v1 after --overwrite: $(alloc_of v1)"
vol export "$pool" v1 "$TMP/ow.img" >/dev/null || fail "export after --overwrite"
cmp -n $((16 * M)) "$TMP/small.img" "$TMP/ow.img" || fail "--overwrite data differs"
cmp -i $((16 * M)) -n $((48 * M)) "$img" "$TMP/ow.img" || fail "--overwrite touched the rest"
if vol import "$pool" v3 "$img" --overwrite --size 1G 2>/dev/null; then fail "--size with --overwrite"; fi
vol create "$pool" tiny 1M || fail "create tiny"
if vol import "$pool" tiny "$img" --overwrite 2>"$TMP/err"; then fail "import into a too small volume"; fi
grep -q "smaller" "$TMP/err" || fail "too-small message: $(cat "$TMP/err")"
vol import "$pool" big "$TMP/small.img" --size 1G >/dev/null || fail "import --size"
[ "$(size_of big)" = $((1024 * M)) ] || fail "--size: $(size_of big)"

# ------------------------------------------------------------ errors
# Each fails with exit 1, names what is wrong, and leaves nothing behind.
expect_fail() { # WHAT PATTERN CMD...
	local what=$1 pat=$2 rc=0
	shift 2
	"$@" >/dev/null 2>"$TMP/err" || rc=$?
	[ "$rc" = 1 ] || fail "$what: exit $rc, want 1 ($(cat "$TMP/err"))"
	grep -q -- "$pat" "$TMP/err" || fail "$what: message $(cat "$TMP/err")"
}
expect_fail "missing file" "$TMP/nope.img: No such file" vol import "$pool" e1 "$TMP/nope.img"
expect_fail "unknown pool" "$TMP/nopool" vol import "$TMP/nopool" e1 "$img"
expect_fail "not a pool" "not a thin pool" vol import "$TMP" e1 "$img"
expect_fail "unknown volume" "no volume nope" vol export "$pool" nope "$TMP/e.img"
[ ! -e "$TMP/e.img" ] || fail "an export of an unknown volume made its file"
dead=$(free_port)
expect_fail "unreachable server" "127.0.0.1:$dead" vol import "$pool" e1 "nbd://127.0.0.1:$dead/"
rc=0
vol import "$pool" .x "$img" 2>"$TMP/err" || rc=$?
[ "$rc" = 2 ] && grep -q "bad volume name" "$TMP/err" || fail "bad name: exit $rc, $(cat "$TMP/err")"
: >"$TMP/empty.img"
expect_fail "empty source" "is empty" vol import "$pool" e1 "$TMP/empty.img"
cp "$TMP/small.img" "$TMP/keep.img"
expect_fail "existing target" "overwrite" vol export "$pool" v1 "$TMP/keep.img"
cmp "$TMP/small.img" "$TMP/keep.img" || fail "a refused export changed the file"
start_nbdkit "$TMP/r.sock" -r file "$TMP/small.img"
expect_fail "read-only target" "read-only" vol export "$pool" v1 "$(unix_uri "$TMP/r.sock")"
stop_nbdkit
start_nbdkit "$TMP/s.sock" file "$TMP/keep.img"
expect_fail "small target" "smaller" vol export "$pool" v2 "$(unix_uri "$TMP/s.sock")"
stop_nbdkit
# A read error half way: the new volume is deleted.
start_nbdkit "$TMP/f.sock" --filter=error file "$img" error-pread=EIO error-pread-rate=100%
expect_fail "read error" "reading" vol import "$pool" e1 "$(unix_uri "$TMP/f.sock")"
stop_nbdkit
for n in e1 nope; do ! has_vol $n || fail "a failed command left volume $n"; done
# The pool fills up: ENOSPC, said as such; the volume goes, the space
# comes back.
vol init "$TMP/small" --size 2M || fail "init small pool"
head -c $((4 * M)) /dev/urandom >"$TMP/rand.img"
expect_fail "full pool" "No space left" vol import "$TMP/small" r "$TMP/rand.img"
grep -q "pool is full" "$TMP/err" || fail "ENOSPC message: $(cat "$TMP/err")"
! has_vol r "$TMP/small" || fail "the import that ran out of space left its volume"
[ "$(used_of "$TMP/small")" = 0 ] || fail "chunks still used after the failed import"
vol check "$TMP/small" >/dev/null || fail "small pool inconsistent"
# SIGINT part way through a slow copy (4 MiB reads, each 1 s late, 16 s in
# all): the volume goes. It shows in `volume list` meanwhile, through the
# control socket of the importing process. Waits are in seconds, not
# tries: on a loaded machine each `volume list` may take a while.
head -c $((64 * M)) /dev/urandom >"$TMP/slow.img"
start_nbdkit "$TMP/d.sock" --filter=delay file "$TMP/slow.img" rdelay=1000ms
"$NBDPLEX" volume import "$pool" slow "$(unix_uri "$TMP/d.sock")" >/dev/null 2>"$TMP/err" &
pid=$!
deadline=$((SECONDS + 60))
while [ $SECONDS -lt $deadline ]; do
	has_vol slow && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
has_vol slow || fail "the volume being imported does not show in volume list: $(cat "$TMP/err")"
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
stop_nbdkit
[ "$rc" = 1 ] || fail "interrupted import exited $rc"
grep -q "interrupted" "$TMP/err" || fail "interrupt message: $(cat "$TMP/err")"
! has_vol slow || fail "an interrupted import left its volume"

vol check "$pool" >/dev/null || fail "pool inconsistent at the end"
pass
