#!/bin/bash
# WRITEs to a file on tmpfs land in the server's mapping of the file: large
# ones are received straight into it, with no buffer and no pwrite between,
# the others are copied into it from their buffers, with FUA or without.
# Data checked with a raw client that cuts payloads up on the wire
# (mapping.py), with nbdcopy, qemu-io and fio's verify; the mapping's
# resident pages (and for FUA, no pwrite call) show that the writes went
# through it. A file cut short under an arriving payload closes
# only that connection (which shows the payload was being received into
# place); WRITEs after the cut, which the mapping cannot take, are written
# the usual way; a client that leaves mid-payload changes nothing outside
# its WRITE. Small READs are copied out of the mapping where the file is
# known to hold data, and READs of holes (found at open, or made by TRIM)
# allocate nothing; READs past a cut are read by pread. A read-only export
# maps the file read-only; TLS payloads, decrypted in a buffer, are copied
# in.
. "$NP_SRC/tests/functions.sh"
requires nbdcopy nbdsh qemu-io qemu-img fio python3 openssl

[ -d /dev/shm ] || fail "no /dev/shm (tmpfs) to serve from"
IMG=$(mktemp /dev/shm/nbdplex-mapwrite.XXXXXX)
trap 'rm -f "$IMG"; np_cleanup' EXIT
head -c 64M /dev/urandom >"$IMG"
raw() {
	PYTHONPATH="$NP_SRC/tests/integration" timeout 120 python3 \
		"$NP_SRC/tests/integration/mapping.py" "$PORT" "$IMG" "$@"
}

start_server -e d=file:"$IMG"
grep -q "rw-s .*$IMG" "/proc/$SERVER_PID/maps" || fail "no writable shared mapping of $IMG"
[ "$(mapped_kib "$IMG")" = 0 ] || fail "the mapping is resident before any request"
# pages_in CHAR BASE KIB WHAT: the file holds 64 pages of CHAR 64 KiB apart
# from BASE MiB on, and at least KIB of the mapping is resident.
pages_in() {
	python3 - "$IMG" "$1" "$2" <<'PY' || fail "the file does not hold the $4"
import sys
d, c, base = open(sys.argv[1], "rb").read(), sys.argv[2].encode(), int(sys.argv[3]) << 20
assert all(d[base + i * 65536:base + i * 65536 + 4096] == c * 4096 for i in range(64))
PY
	kib=$(mapped_kib "$IMG")
	[ "$kib" -ge "$3" ] || fail "$4 did not land in the mapping ($kib KiB resident)"
}
# 64 WRITEs of 4 KiB, 64 KiB apart, without FUA (nbdsh): copied into the
# mapping, one page each (a write fault maps just its page).
nbdsh -u "$(uri d)" \
	-c 'for i in range(64): h.pwrite(b"a" * 4096, (56 << 20) + i * 65536)' ||
	fail "small writes"
pages_in a 56 256 "small WRITEs"
# 64 more with FUA (qemu-io in writethrough mode, its default, sets it on
# every write): memory is all the storage tmpfs has, so they are copied in
# too, with no pwrite for them (before, a worker's pwritev2 with RWF_DSYNC).
fua=()
for i in $(seq 0 63); do fua+=(-c "write -P 0x6b $(((52 << 20) + i * 65536)) 4k"); done
strace_on "$SERVER_PID" "$TMP/strace.txt" pwrite64,pwritev,pwritev2
qemu-io -f raw -t writethrough "$(uri d)" "${fua[@]}" >"$TMP/qemu-fua.log" 2>&1 ||
	fail "qemu-io FUA writes: $(tail -n 3 "$TMP/qemu-fua.log")"
strace_off
n=$(($(strace_calls "$TMP/strace.txt" pwrite64) + $(strace_calls "$TMP/strace.txt" pwritev) +
	$(strace_calls "$TMP/strace.txt" pwritev2)))
[ "$n" = 0 ] || fail "FUA WRITEs on tmpfs were written by pwrite ($n calls): $(cat "$TMP/strace.txt")"
pages_in k 52 512 "FUA WRITEs"
raw data || fail "raw writes"
# Pages in the mapping's page tables were touched through it: by the
# WRITEs (8.8 MiB) and by one READ of 2 MiB inside their range (from the
# mapping too, with the pages the kernel maps around a fault: 2176 KiB
# when WRITEs do not use the mapping).
kib=$(mapped_kib "$IMG")
[ "$kib" -ge 6144 ] || fail "large WRITEs did not land in the mapping ($kib KiB resident)"

# nbdcopy: several connections and requests of 1 MiB in flight.
head -c 64M /dev/urandom >"$TMP/src.img"
nbdcopy --connections=4 --request-size=1048576 "$TMP/src.img" "$(uri d)" ||
	fail "nbdcopy in"
cmp "$TMP/src.img" "$IMG" || fail "the file differs from what nbdcopy wrote"
qemu-img compare -f raw -F raw "$TMP/src.img" "$(uri d)" >/dev/null ||
	fail "qemu-img compare after nbdcopy"

# qemu-io: patterns at odd offsets and lengths (with FUA).
# nbdsh: 1 MiB without FUA, half over a hole, where receiving it into place
# could not answer ENOSPC (file.c, file_map_write): copied in after.
fallocate -p -o $((48 << 20)) -l $((2 << 20)) "$IMG" || fail "punch a hole"
nbdsh -u "$(uri d)" -c 'h.pwrite(b"\x77" * (1 << 20), 48640 << 10)' ||
	fail "a write over a hole"
qemu-io -f raw "$(uri d)" \
	-c 'write -P 0x5a 12345 777k' -c 'write -f -P 0xa5 8M 2M' -c 'write -P 0x3c 33M 255k' \
	-c 'read -P 0x5a 12345 777k' -c 'read -P 0xa5 8M 2M' -c 'read -P 0x3c 33M 255k' \
	-c 'read -P 0x77 48640k 1M' -c 'read -P 0 49664k 512k' \
	>"$TMP/qemu-io.log" 2>&1 || fail "qemu-io: $(cat "$TMP/qemu-io.log")"
grep -q "Pattern verification failed" "$TMP/qemu-io.log" && fail "qemu-io read back other data"
python3 - "$IMG" <<'PY' || fail "the file does not hold qemu-io's patterns"
import sys
d = open(sys.argv[1], "rb").read()
K, M = 1024, 1 << 20
assert d[12345:12345 + 777 * K] == b"\x5a" * (777 * K)
assert d[8 * M:10 * M] == b"\xa5" * (2 * M)
assert d[33 * M:33 * M + 255 * K] == b"\x3c" * (255 * K)
assert d[47 * M + 512 * K:48 * M + 512 * K] == b"\x77" * M
assert d[48 * M + 512 * K:50 * M] == bytes(M + 512 * K)
PY

# fio: 1 MiB writes at QD8 on 2 connections, each verified after.
fio --name=mw --ioengine=nbd --uri="$(uri d)" --rw=write --bs=1M --iodepth=8 \
	--numjobs=2 --offset_increment=32M --size=32M --verify=crc32c --do_verify=1 \
	--output-format=json --output="$TMP/fio.json" >"$TMP/fio.log" 2>&1 ||
	fail "fio: $(tail -n 5 "$TMP/fio.log")"
fio_check "$TMP/fio.json" 2 $((32 << 20)) >/dev/null

# A client leaves mid-payload: part of its WRITE may stay (it was never
# answered), the rest of the file does not change, the server serves on.
cp "$IMG" "$TMP/before.img"
raw leave || fail "leaving mid-payload"
wait_until 5 grep -q "closing: client left mid-request" "$TMP/server.log" ||
	fail "no log line for the client that left mid-payload"
cmp -s <(head -c $((40 << 20)) "$IMG") <(head -c $((40 << 20)) "$TMP/before.img") ||
	fail "the file changed before the abandoned WRITE's range"
cmp -s <(tail -c +$(((41 << 20) + 1)) "$IMG") <(tail -c +$(((41 << 20) + 1)) "$TMP/before.img") ||
	fail "the file changed after the abandoned WRITE's range"
assert_serving d

# The file is cut to nothing under an arriving payload: the rest cannot
# land (the kernel's copy fails, no signal), that connection closes with a
# clear reason, the others go on. A small WRITE to a lost page meanwhile
# faults in the mapping and is written by pwrite instead (mapping.py).
raw truncate || fail "WRITEs to a truncated file"
wait_until 5 grep -q "closing: a request's data is gone: the export's file was cut short" \
	"$TMP/server.log" || fail "no clear reason for the closed connection: $(tail -n 3 "$TMP/server.log")"
assert_serving d
cp "$TMP/src.img" "$IMG"
qemu-io -f raw "$(uri d)" -c 'write -P 0x11 1M 1M' -c 'read -P 0x11 1M 1M' \
	>"$TMP/qemu-io2.log" 2>&1 || fail "qemu-io after the truncation"
grep -q "Pattern verification failed" "$TMP/qemu-io2.log" && fail "wrong data after the truncation"
stop_server

# Small READs: copied out of the mapping where the file is known to hold
# data, read by pread where it may hold a hole, since touching a hole in
# the mapping would allocate a page. A file of 8 MiB of data and 8 MiB of
# hole; READs alone first, so the resident pages are theirs.
RIMG=$(mktemp /dev/shm/nbdplex-mapread.XXXXXX)
trap 'rm -f "$IMG" "$RIMG"; np_cleanup' EXIT
head -c 8M /dev/urandom >"$RIMG"
truncate -s 16M "$RIMG"
blocks=$(stat -c %b "$RIMG")
start_server -e d=file:"$RIMG"
nbdsh -u "$(uri d)" -c '
import random
img = open("'"$RIMG"'", "rb").read()
rng = random.Random(3)
for _ in range(400):
    off = rng.randrange(0, (16 << 20) - 4096)
    n = rng.choice([512, 4096, 4096, 60 << 10])
    n = min(n, (16 << 20) - off)
    assert h.pread(n, off) == img[off:off + n], off
' || fail "small READs"
kib=$(mapped_kib "$RIMG")
[ "$kib" -ge 64 ] || fail "small READs of data did not come from the mapping ($kib KiB resident)"
[ "$(stat -c %b "$RIMG")" = "$blocks" ] || fail "READs of holes allocated pages"
# A TRIM makes a hole: READs of it then take pread too, and allocate
# nothing.
nbdsh -u "$(uri d)" -c 'h.trim(1 << 20, 2 << 20)' || fail "trim"
trimmed=$(stat -c %b "$RIMG")
[ "$trimmed" -lt "$blocks" ] || fail "the TRIM punched nothing"
nbdsh -u "$(uri d)" -c '
for i in range(256):
    assert h.pread(4096, (2 << 20) + i * 4096) == bytes(4096)
' || fail "READs of the trimmed range"
[ "$(stat -c %b "$RIMG")" = "$trimmed" ] || fail "READs of the trimmed range allocated pages"
# The file cut short under a client that still sees the old size: its
# READs past the cut fault in the mapping and are read by pread instead
# (zeroes past the end), and the server serves on.
nbdsh -u "$(uri d)" -c '
import os
assert h.pread(4096, 5 << 20) != bytes(4096)
os.truncate("'"$RIMG"'", 4 << 20)
assert h.pread(4096, 5 << 20) == bytes(4096)
assert h.pread(4096, 7 << 20) == bytes(4096)
' || fail "READs past a cut"
assert_serving d
stop_server

# Read-only: the mapping is read-only too, and WRITEs are refused.
start_server -r -e d=file:"$IMG"
grep -q "r--s .*$IMG" "/proc/$SERVER_PID/maps" || fail "read-only export: no read-only mapping"
grep -q "rw-s .*$IMG" "/proc/$SERVER_PID/maps" && fail "read-only export: a writable mapping"
qemu-io -f raw "$(uri d)" -c 'write -P 1 0 1M' >/dev/null 2>&1 &&
	fail "a WRITE to a read-only export succeeded"
stop_server

# TLS: the payload is decrypted into a buffer, and copied in from there.
echo "alice:$(openssl rand -hex 32)" >"$TMP/keys.psk"
start_server -e d=file:"$IMG" --tls-psk "$TMP/keys.psk"
psk="nbds://alice@localhost:$PORT/d?tls-psk-file=$TMP/keys.psk"
head -c 8M /dev/urandom >"$TMP/tls.img"
nbdcopy --request-size=1048576 "$TMP/tls.img" "$psk" || fail "nbdcopy over TLS"
cmp "$TMP/tls.img" <(head -c 8M "$IMG") || fail "the file differs from what came over TLS"
stop_server
pass
