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
	python3 - "$TMP/fio-$name.json" <<'PY' || fail "fio results on $name"
import json, sys
text = open(sys.argv[1]).read()
jobs = json.loads(text[text.index("{"):])["jobs"]  # fio's nbd engine prints a line first
assert len(jobs) == 4, len(jobs)
for j in jobs:
    assert j["error"] == 0, j["error"]
    assert j["write"]["io_bytes"] == 32 << 20, j["write"]["io_bytes"]
    assert j["read"]["io_bytes"] == 32 << 20, j["read"]["io_bytes"]  # the verify pass
PY
	# Large blocks, mixed read and write, verified.
	fio --name=big --ioengine=nbd --uri="$(uri $name)" --rw=randrw --bs=1M --iodepth=8 \
		--size=64M --verify=crc32c --verify_fatal=1 --runtime=60 >/dev/null 2>"$TMP/fio2.err" ||
		fail "fio 1M randrw verify on $name: $(tail -5 "$TMP/fio2.err")"
done
stop_server
pass
