#!/bin/bash
# A file on tmpfs: the READs and WRITEs parsed together run on the loop,
# copied to or from the server's mapping of the file where they can be,
# the rest (READs of holes) many per io_submit (storage/file/file.c). Checked
# with a raw client that sends hundreds of requests in one burst (batch.py:
# every reply and every byte of the file) over a file with holes in every
# other 64 KiB of the bursts' range, fio's crc32c verify over four
# connections at QD32 and with 1 MiB blocks (large WRITEs from several
# loops at once), and an nbdcopy of the whole export; strace shows that
# io_submit carried some, the mapping's resident pages that it took others.
. "$NP_SRC/tests/functions.sh"
requires fio nbdcopy python3 strace

[ -d /dev/shm ] || fail "no /dev/shm (tmpfs) to serve from"
IMG=$(mktemp /dev/shm/nbdplex-batch.XXXXXX)
trap 'rm -f "$IMG"; np_cleanup' EXIT
head -c 32M /dev/urandom >"$IMG"
for i in $(seq 0 2 191); do
	fallocate -p -o $((i << 16)) -l 65536 "$IMG" || fail "punch a hole"
done

start_server -e d=file:"$IMG"
strace_on "$SERVER_PID" "$TMP/strace.txt" io_submit
PYTHONPATH="$NP_SRC/tests/integration" python3 "$NP_SRC/tests/integration/batch.py" \
	"$PORT" "$IMG" || fail "burst of requests"
fio --name=verify --ioengine=nbd --uri="$(uri d)" --rw=randwrite --bs=4k --iodepth=32 \
	--numjobs=4 --size=2M --offset_increment=4M --verify=crc32c --verify_fatal=1 \
	--do_verify=1 --runtime=60 >"$TMP/fio.out" 2>&1 || fail "fio verify: $(tail -5 "$TMP/fio.out")"
fio --name=big --ioengine=nbd --uri="$(uri d)" --rw=randrw --bs=1M --iodepth=8 --numjobs=4 \
	--size=8M --offset_increment=8M --verify=crc32c --verify_fatal=1 --runtime=60 \
	>"$TMP/fio2.out" 2>&1 ||
	fail "fio 1M randrw verify: $(tail -5 "$TMP/fio2.out")"
nbdcopy "$(uri d)" "$TMP/copy.img" || fail "nbdcopy"
cmp "$IMG" "$TMP/copy.img" || fail "nbdcopy copy differs from the file"
strace_off
n=$(strace_calls "$TMP/strace.txt" io_submit)
[ "$n" -gt 0 ] || fail "no io_submit call for batches on tmpfs ($(cat "$TMP/strace.txt"))"
kib=$(mapped_kib "$IMG")
[ "$kib" -ge 4096 ] || fail "requests did not go through the mapping ($kib KiB resident)"
assert_serving d
stop_server
pass
