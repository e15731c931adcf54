#!/bin/bash
# The incremental backup loop against a served volume: a full export of
# s0 through the server's control socket, then three generations
# of seeded random writes (fio), TRIMs and WRITE_ZEROES, each one snapshot
# s(n), `volume export s(n) --since s(n-1)` into the copy of the previous
# generation (a file, then an nbd:// target), delete s(n-1). Each time the
# copy equals the snapshot byte for byte, `volume diff` lists exactly the
# chunks that differ, and the export copied exactly those bytes. Then a
# kill -9 in the middle of an increment leaves a copy that a rerun
# completes.
. "$NP_SRC/tests/functions.sh"
. "$NP_SRC/tests/thin/functions.sh"
requires fio nbdcopy qemu-io cmp python3

pool=$TMP/pool
SIZE=256M
CHUNK=65536
vol init "$pool" --size 1G --chunk-size 64K || fail "volume init"
vol create "$pool" v $SIZE || fail "create v"
start_server -e v=thin:"$pool/v"

# Generation 0 and its full copy, exported while the server holds the pool.
fio --name=gen0 --ioengine=nbd --uri="$(uri v)" --rw=randwrite --bs=64k --size=$SIZE \
	--io_size=16M --randseed=26 --refill_buffers --norandommap >"$TMP/fio0.log" ||
	fail "fio generation 0"
vol snapshot "$pool" v s0 || fail "snapshot s0"
nbdcopy "$(uri v)" "$TMP/ref0.img" || fail "nbdcopy generation 0"
vol export "$pool" s0 "$TMP/backup.img" --no-progress >"$TMP/export0" || fail "full export of s0"
cmp "$TMP/backup.img" "$TMP/ref0.img" || fail "the full copy differs from s0"

# check_increment PREV CUR DIFF_JSON EXPORT_OUTPUT: the chunks in which
# refCUR differs from refPREV are exactly those DIFF_JSON lists, and the
# export copied exactly their bytes.
check_increment() {
	python3 - "$TMP/ref$1.img" "$TMP/ref$2.img" "$3" "$4" "$CHUNK" <<'PY' ||
import json, re, sys
a, b, diff, out, chunk = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
changed = set()
with open(a, "rb") as fa, open(b, "rb") as fb:
    n = 0
    while True:
        x, y = fa.read(chunk), fb.read(chunk)
        if not x and not y:
            break
        if x != y:
            changed.add(n)
        n += 1
listed = set()
for r in json.load(open(diff)):
    assert r["offset"] % chunk == 0 and r["length"] % chunk == 0, r
    listed |= set(range(r["offset"] // chunk, (r["offset"] + r["length"]) // chunk))
assert changed, "the generation changed nothing"
assert listed == changed, f"diff lists {sorted(listed - changed)[:8]} unchanged, misses {sorted(changed - listed)[:8]}"
m = re.search(r": (\d+) bytes changed .*; (\d+) bytes unchanged", open(out).read())
assert m, open(out).read()
assert int(m.group(1)) == len(changed) * chunk, f"copied {m.group(1)}, changed {len(changed) * chunk}"
assert int(m.group(1)) + int(m.group(2)) == n * chunk, m.group(0)
PY
		fail "generation $2: $(cat "$4")"
}

prev=0
for gen in 1 2 3; do
	fio --name=gen$gen --ioengine=nbd --uri="$(uri v)" --rw=randwrite --bs=4k \
		--size=$SIZE --io_size=8M --randseed=$((gen * 7919)) --refill_buffers \
		--norandommap >"$TMP/fio$gen.log" || fail "fio generation $gen"
	# A TRIM of data, a TRIM of what was never written, zeroes over data.
	qemu-io -f raw "$(uri v)" -c "discard $((gen * 16))M 1M" -c "discard $((gen * 32 + 100))M 1M" \
		-c "write -z -u $((gen * 8))M 192k" >/dev/null || fail "qemu-io generation $gen"
	vol snapshot "$pool" v s$gen || fail "snapshot s$gen"
	# Nothing writes v now: it reads as s$gen does.
	nbdcopy "$(uri v)" "$TMP/ref$gen.img" || fail "nbdcopy generation $gen"
	vol diff "$pool" s$prev s$gen --json >"$TMP/diff$gen.json" || fail "diff s$prev s$gen"
	target=$TMP/backup.img
	if [ $gen = 3 ]; then
		# The last increment goes to an NBD server holding the copy.
		bport=$PORT bpid=$SERVER_PID
		start_server -e b=file:"$TMP/backup.img"
		target=$(uri b)
		PORT=$bport
	fi
	vol export "$pool" s$gen "$target" --since s$prev --no-progress >"$TMP/export$gen" ||
		fail "export s$gen --since s$prev"
	if [ $gen = 3 ]; then
		stop_server
		SERVER_PID=$bpid
	fi
	cmp "$TMP/backup.img" "$TMP/ref$gen.img" || fail "the copy differs from s$gen"
	check_increment $prev $gen "$TMP/diff$gen.json" "$TMP/export$gen"
	vol delete "$pool" s$prev || fail "delete s$prev"
	prev=$gen
done
vol list "$pool" | grep -q '^s3 ' || fail "s3 is gone: $(vol list "$pool")"
vol list "$pool" | grep -q '^s2 ' && fail "s2 is still there"

# kill -9 during an increment: most of the volume changes, the export is
# killed once it has begun writing, and a rerun completes the copy.
fio --name=gen4 --ioengine=nbd --uri="$(uri v)" --rw=write --bs=1M --size=192M \
	--randseed=4 --refill_buffers >"$TMP/fio4.log" || fail "fio generation 4"
vol snapshot "$pool" v s4 || fail "snapshot s4"
nbdcopy "$(uri v)" "$TMP/ref4.img" || fail "nbdcopy generation 4"
cp "$TMP/backup.img" "$TMP/backup3.img"
# began: the copy's first MiB (which generation 4 rewrote) has changed
began() { ! cmp -s -n 1048576 "$TMP/backup.img" "$TMP/backup3.img" || ! kill -0 "$1" 2>/dev/null; }
killed=
for _ in 1 2 3 4 5; do
	cp "$TMP/backup3.img" "$TMP/backup.img"
	"$NBDPLEX" volume export "$pool" s4 "$TMP/backup.img" --since s3 --no-progress \
		>"$TMP/export4" 2>&1 &
	exporter=$!
	wait_until 10 began "$exporter" || true
	kill -9 "$exporter" 2>/dev/null || true
	wait "$exporter" 2>/dev/null || true
	if ! grep -q '^exported' "$TMP/export4"; then
		killed=yes
		break
	fi
done
[ "$killed" ] || fail "the export finished before kill -9 in 5 tries"
cmp -s "$TMP/backup.img" "$TMP/ref4.img" && fail "a killed export left a complete copy?"
vol export "$pool" s4 "$TMP/backup.img" --since s3 --no-progress >"$TMP/export4" ||
	fail "rerun after kill -9"
cmp "$TMP/backup.img" "$TMP/ref4.img" || fail "the rerun's copy differs from s4"
assert_serving v
vol check "$pool" >/dev/null || fail "check"
stop_server
pass
