#!/bin/bash
# fio's nbd engine: random writes verified with crc32c over four connections
# at once, and a mixed verify job, on the file and mem engines.
. "$NP_SRC/tests/functions.sh"
requires fio

start_server -e disk=file:"$TMP/disk.img",size=256M -e m=mem:256M
for name in disk m; do
	# Four jobs, each its own connection and its own 32 MiB region.
	fio --name=verify --ioengine=nbd --uri="$(uri $name)" --rw=randwrite --bs=4k \
		--iodepth=32 --numjobs=4 --size=32M --offset_increment=64M \
		--verify=crc32c --verify_fatal=1 --do_verify=1 --runtime=60 \
		--output-format=json >"$TMP/fio-$name.json" 2>"$TMP/fio-$name.err" ||
		fail "fio verify on $name: $(tail -5 "$TMP/fio-$name.err")"
	fio_check "$TMP/fio-$name.json" 4 $((32 << 20)) >/dev/null
	# Large blocks, mixed read and write, verified.
	fio --name=big --ioengine=nbd --uri="$(uri $name)" --rw=randrw --bs=1M --iodepth=8 \
		--size=64M --verify=crc32c --verify_fatal=1 --runtime=60 >/dev/null 2>"$TMP/fio2.err" ||
		fail "fio 1M randrw verify on $name: $(tail -5 "$TMP/fio2.err")"
done
stop_server
pass
