#!/bin/bash
# The cluster's only OSD stopped and restarted under load: requests to the
# rbd export wait up to rados_osd_op_timeout and then fail with EIO, another
# export keeps serving meanwhile, the rbd export serves again once the OSD
# is back, and no acknowledged durable write is lost nor any data wrong.
# Stops the fixture's OSD: runs alone (RUN_SERIAL).
. "$NP_SRC/tests/functions.sh"
. "$NP_SRC/tests/rbd/functions.sh"
requires qemu-io nbdsh

# osd stop|start: the fixture's OSD; a test that fails with it stopped
# starts it again on exit, and only then (a second OSD would outlive the
# cluster).
OSD_DOWN=
osd() {
	bash "$NP_SRC/tests/rbd/cluster.sh" "osd-$1" "$NP_CEPH_DIR" >/dev/null
	if [ "$1" = stop ]; then OSD_DOWN=1; else OSD_DOWN=; fi
}
trap '[ -z "$OSD_DOWN" ] || osd start || true; rbd_cleanup; np_cleanup' EXIT

TIMEOUT=4
{ cat "$CEPH_CONF"; printf '[client]\nrados osd op timeout = %s\n' $TIMEOUT; } >"$TMP/ceph.conf"
spec=$(rbd_image out 8M --image-feature layering)
start_server -e d="${spec/,conf=*/,conf=$TMP/ceph.conf}" -e m=mem:16M
u=$(uri d)
qemu-io -f raw "$u" -c 'write -P 0x77 4M 4M' >/dev/null || fail "first write"

# A client writing durably into the first 4 MiB all along.
: >"$TMP/acked"
python3 "$NP_SRC/tests/integration/durable.py" "$PORT" "$TMP/acked" 1 &
writer=$!
NP_PIDS+=("$writer")
wait_until 10 writer_in_or_gone 0 "$writer" || fail "the writer never got an answer"
kill -0 "$writer" || fail "the writer ended"

osd stop
start=$SECONDS
out=$(nbdsh -u "$u" -c "h.pwrite(b'x' * 4096, 5 << 20)" 2>&1) && fail "a write succeeded with no OSD"
grep -qE "EIO|Input/output error" <<<"$out" || fail "no EIO with the OSD gone: $out"
[ $((SECONDS - start)) -le $((TIMEOUT + 10)) ] || fail "EIO came after $((SECONDS - start)) s"
out=$(qemu-io -f raw -r "$u" -c 'read 4M 4k' 2>&1) && fail "a read succeeded with no OSD: $out"
# Everyone else is served meanwhile.
qemu-io -f raw "$(uri m)" -c 'write -P 0x31 0 1M' -c 'read -P 0x31 0 1M' >/dev/null ||
	fail "the mem export stopped serving during the outage"
osd start

# Back: the export serves again, with what it held.
wait_until 60 qemu-io -f raw "$u" -c 'write -P 0x78 6M 4k' >/dev/null 2>&1 ||
	fail "no write succeeded within 60 s of the OSD's return"
before=$(wc -l <"$TMP/acked")
wait_until 20 writer_in_or_gone "$before" "$writer" || fail "the writer did not resume"
kill "$writer"
wait "$writer" 2>/dev/null || true
qemu-io -f raw "$u" -c 'read -P 0x77 4M 2M' -c 'read -P 0x78 6M 4k' \
	-c "read -P 0x77 $((6 * 1048576 + 4096)) $((2 * 1048576 - 4096))" >/dev/null ||
	fail "data wrong after the outage"
assert_serving d
stop_server
rbd export "$(rbd_name out)" "$TMP/d.img" >/dev/null 2>&1 || fail "rbd export"
durable_check "$TMP/d.img"
pass
