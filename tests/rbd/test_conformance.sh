#!/bin/bash
# The rbd engine through real clients: the conformance suite the other
# engines pass (qemu-io, nbdcopy, fio verify over 4 connections), nbdinfo
# --map where librbd knows holes, a snapshot served read-only, and RESIZE
# from a client and from the rbd CLI.
. "$NP_SRC/tests/functions.sh"
. "$NP_SRC/tests/rbd/functions.sh"
requires qemu-io nbdcopy nbdinfo nbdsh fio
SIZE=$((64 << 20))

# An image with Ceph's default features (exclusive-lock, object-map,
# fast-diff): one gateway holds the lock and hands it over on request.
conform rbd "$(rbd_image conf 64M)" no 4

# BLOCK_STATUS: untouched objects and a wholly discarded one are holes;
# written ones are data.
spec=$(rbd_image map 64M)
start_server -e d="$spec"
u=$(uri d)
qemu-io -f raw "$u" -c 'write -P 0x11 0 1M' -c 'write -P 0x22 8M 4M' -c 'discard 8M 4M' \
	-c 'write -P 0x33 63M 1M' >/dev/null || fail "map: qemu-io"
nbdinfo --map "$u" >"$TMP/map"
python3 - "$TMP/map" <<'PY' || fail "map: $(cat "$TMP/map")"
import sys
ext = [(int(o), int(n), int(t)) for o, n, t, *_ in (l.split() for l in open(sys.argv[1]))]
def kind(off):
    return [t for o, n, t in ext if o <= off < o + n][0]
assert kind(0) == 0 and kind(63 << 20) == 0, ext
assert kind((8 << 20) + 4096) == 3 and kind(30 << 20) == 3, ext
assert sum(n for o, n, t in ext) == 64 << 20
PY
stop_server

# A snapshot: what the image held then, read-only.
spec=$(rbd_image snap 16M)
start_server -e d="$spec"
qemu-io -f raw "$(uri d)" -c 'write -P 0x44 0 1M' >/dev/null || fail "snap: first write"
rbd snap create "$(rbd_name snap)@s1" >/dev/null 2>&1 || fail "rbd snap create"
qemu-io -f raw "$(uri d)" -c 'write -P 0x55 0 1M' >/dev/null || fail "snap: second write"
stop_server
start_server -e d="$spec" -e s="${spec/,conf=/@s1,conf=}"
nbdinfo "$(uri s)" | grep -q 'is_read_only: true' || fail "snapshot export not read-only"
qemu-io -f raw -r "$(uri s)" -c 'read -P 0x44 0 1M' >/dev/null || fail "snapshot content"
qemu-io -f raw "$(uri d)" -c 'read -P 0x55 0 1M' >/dev/null || fail "head content"
out=$(nbdsh -u "$(uri s)" -c "h.pwrite(b'x' * 4096, 0)" 2>&1) && fail "wrote to a snapshot"
grep -qE "EPERM|EROFS|read-only|Operation not permitted" <<<"$out" || fail "snapshot write: $out"
qemu-io -f raw -r "$(uri s)" -c 'read -P 0x44 0 1M' >/dev/null || fail "snapshot changed"
stop_server

# RESIZE from a client, then from the rbd CLI while served (librbd's
# header watch tells the engine).
spec=$(rbd_image grow 16M)
start_server -e d="$spec"
PYTHONPATH=$NP_SRC/tests/integration python3 - "$PORT" <<'PY' || fail "resize from a client"
import struct, sys
from nbdraw import Client, TYPE_ERROR
CMD_RESIZE = 8
c = Client(int(sys.argv[1]))
c.greeting()
c.go("d")
c.request(CMD_RESIZE, 32 << 20, 0)
for _m, _f, typ, _c, data in c.chunks():
    err = data if typ is None else struct.unpack(">I", data[:4])[0] if typ == TYPE_ERROR else 0
    assert err == 0, f"RESIZE failed: {err}"
PY
[ "$(rbd info --format json "$(rbd_name grow)" | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')" = $((32 << 20)) ] ||
	fail "the image was not resized"
[ "$(nbdinfo --size "$(uri d)")" = $((32 << 20)) ] || fail "size after RESIZE"
qemu-io -f raw "$(uri d)" -c 'write -P 0x66 31M 1M' -c 'read -P 0x66 31M 1M' >/dev/null ||
	fail "writing the grown space"
rbd resize --size 48M "$(rbd_name grow)" >/dev/null 2>&1 || fail "rbd resize"
wait_until 10 eval '[ "$(nbdinfo --size "$(uri d)")" = $((48 << 20)) ]' ||
	fail "size after rbd resize: $(nbdinfo --size "$(uri d)")"
assert_serving d
stop_server
pass
