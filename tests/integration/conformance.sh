#!/bin/bash
# One conformance suite, the same client checks against every engine: file,
# mem, raw (a real loop device, O_DIRECT through kernel AIO) and thin (a volume of
# a RocksDB pool): qemu-io patterns (aligned and not), discard and zeroes
# reading back as zeroes, an nbdcopy round trip, fio verify over two
# connections, and nbdinfo --map agreeing with what was written.
. "$NP_SRC/tests/functions.sh"
requires qemu-io nbdcopy nbdinfo fio losetup
SIZE=$((64 << 20))

conform() {
	local name=$1 spec=$2 holes=$3
	start_server -e "d=$spec"
	local u
	u=$(uri d)
	[ "$(nbdinfo --size "$u")" = $SIZE ] || fail "$name: size"

	out=$(qemu-io -f raw "$u" \
		-c 'write -P 0xa1 0 1M' -c 'write -P 0xb2 4097 12345' -c 'write -P 0xc3 63M 1M' \
		-c 'read -P 0xa1 0 4097' -c 'read -P 0xb2 4097 12345' -c 'read -P 0xa1 16442 1032134' \
		-c 'read -P 0xc3 63M 1M' \
		-c 'write -P 0xd4 8M 1M' -c 'discard 8M 1M' -c 'read -P 0 8M 1M' \
		-c 'write -P 0xe5 10M 256k' -c 'write -z 10M 256k' -c 'read -P 0 10M 256k' \
		-c 'write -f -P 0xf6 12M 64k' -c 'read -P 0xf6 12M 64k' -c 'flush' 2>&1) ||
		fail "$name: qemu-io: $out"
	! grep -qiE 'fail|error|mismatch' <<<"$out" || fail "$name: qemu-io: $out"
	[ "$(grep -c '^read ' <<<"$out")" = 7 ] || fail "$name: qemu-io reads: $out"

	if [ "$holes" = yes ]; then
		# The discarded and zeroed megabytes, and the untouched middle,
		# report as holes; the written ends as data.
		nbdinfo --map "$u" >"$TMP/map"
		python3 - "$TMP/map" <<'PY' || fail "$name: map: $(cat "$TMP/map")"
import sys
ext = [(int(o), int(n), int(t)) for o, n, t, *_ in (l.split() for l in open(sys.argv[1]))]
def kind(off):
    return [t for o, n, t in ext if o <= off < o + n][0]
assert kind(0) == 0 and kind(63 << 20) == 0, ext
assert kind((8 << 20) + 4096) & 1 and kind(30 << 20) & 1, ext
assert sum(n for o, n, t in ext) == 64 << 20
PY
	fi

	head -c 6M /dev/urandom >"$TMP/src"
	truncate -s $SIZE "$TMP/src"
	nbdcopy --connections=2 "$TMP/src" "$u" && nbdcopy "$u" "$TMP/back" ||
		fail "$name: nbdcopy"
	cmp "$TMP/src" "$TMP/back" || fail "$name: nbdcopy round trip differs"
	rm -f "$TMP/back"

	fio --name=conf --ioengine=nbd --uri="$u" --rw=randwrite --bsrange=4k-64k --iodepth=16 \
		--numjobs=2 --size=16M --offset_increment=24M --verify=crc32c --verify_fatal=1 \
		--do_verify=1 --runtime=60 >"$TMP/fio.log" 2>&1 ||
		fail "$name: fio verify: $(tail -5 "$TMP/fio.log")"
	grep -q 'err= 0' "$TMP/fio.log" || fail "$name: fio reported errors"
	assert_serving d
	stop_server
	echo "conformance: $name passed"
}

conform file "file:$TMP/disk.img,size=$SIZE" yes
conform mem "mem:$SIZE" yes

# raw: a loop device with direct I/O, detached whatever happens.
truncate -s $SIZE "$TMP/raw.img"
LOOP=$(losetup -f --show --direct-io=on "$TMP/raw.img") || fail "losetup"
trap 'losetup -d "$LOOP" 2>/dev/null || true; np_cleanup' EXIT
conform raw "raw:$LOOP" no
losetup -d "$LOOP"
trap np_cleanup EXIT

"$NBDPLEX" volume init "$TMP/pool" --size 256M >/dev/null || fail "volume init"
"$NBDPLEX" volume create "$TMP/pool" v $SIZE >/dev/null || fail "volume create"
conform thin "thin:$TMP/pool/v" yes
"$NBDPLEX" volume check "$TMP/pool" >/dev/null || fail "thin pool inconsistent after the suite"
pass
