#!/bin/bash
# qemu-io and qemu-img: pattern writes and verified reads (aligned and not),
# discard, write -z, and a qemu-img convert round trip, on file and mem.
. "$NP_SRC/tests/functions.sh"
requires qemu-io qemu-img

start_server -e disk=file:"$TMP/disk.img",size=32M -e m=mem:32M

for name in disk m; do
	u=$(uri $name)
	out=$(qemu-io -f raw "$u" \
		-c 'write -P 0xab 0 1M' \
		-c 'write -P 0xcd 1000 3333' \
		-c 'write -P 0xef 31M 1M' \
		-c 'read -P 0xab 0 1000' \
		-c 'read -P 0xcd 1000 3333' \
		-c 'read -P 0xab 4333 1044243' \
		-c 'read -P 0xef 31M 1M' \
		-c 'discard 2M 2M' \
		-c 'read -P 0 2M 2M' \
		-c 'write -P 0x5a 8M 64k' \
		-c 'write -z 8M 64k' \
		-c 'read -P 0 8M 64k' \
		-c 'write -P 0x77 9M 4k' \
		-c 'write -z -u 9M 4k' \
		-c 'read -P 0 9M 4k' \
		-c 'write -f -P 0x66 10M 128k' \
		-c 'read -P 0x66 10M 128k' \
		-c 'flush' 2>&1) || fail "qemu-io on $name: $out"
	! grep -qiE 'fail|error|mismatch' <<<"$out" || fail "qemu-io on $name: $out"
	[ "$(grep -c "^read " <<<"$out")" = 8 ] || fail "qemu-io on $name ran $(grep -c '^read ' <<<"$out") reads: $out"

	# A mismatch must be noticed (the check itself can fail).
	! qemu-io -f raw "$u" -c 'read -P 0x99 0 4k' 2>&1 | grep -q '^read ' ||
		fail "qemu-io did not notice a wrong pattern"
done

# qemu-img convert out and back in, compared.
head -c 3M /dev/urandom >"$TMP/src.raw"
truncate -s 32M "$TMP/src.raw"
qemu-img convert -n -f raw -O raw "$TMP/src.raw" "$(uri m)" || fail "qemu-img convert in"
qemu-img convert -f raw -O raw "$(uri m)" "$TMP/back.raw" || fail "qemu-img convert out"
cmp "$TMP/src.raw" "$TMP/back.raw" || fail "qemu-img round trip differs"
qemu-img compare -f raw -F raw "$TMP/src.raw" "$(uri m)" >/dev/null || fail "qemu-img compare"
qemu-img info "$(uri disk)" | grep -q 'virtual size: 32 MiB' || fail "qemu-img info"
stop_server
pass
