#!/bin/bash
# nbdcopy round trips, byte for byte, through several connections, and
# sparse copies that leave holes on the server.
. "$NP_SRC/tests/functions.sh"
requires nbdcopy nbdinfo

start_server -e disk=file:"$TMP/disk.img",size=96M -e m=mem:96M
python3 - "$TMP/src.img" <<'PY'
import os, sys
# Random data with zero runs in between, so holes and data both travel.
with open(sys.argv[1], "wb") as f:
    f.truncate(96 << 20)
    for off in range(0, 96 << 20, 8 << 20):
        f.seek(off)
        f.write(os.urandom(3 << 20))
PY
for name in disk m; do
	nbdcopy --connections=4 "$TMP/src.img" "$(uri $name)" || fail "nbdcopy into $name"
	nbdcopy --connections=4 "$(uri $name)" "$TMP/out.img" || fail "nbdcopy out of $name"
	cmp "$TMP/src.img" "$TMP/out.img" || fail "round trip through $name differs"
	rm -f "$TMP/out.img"
	# Server to server through the client.
done
nbdcopy "$(uri disk)" "$(uri m)" || fail "nbdcopy between exports"
nbdcopy "$(uri m)" "$TMP/out2.img" && cmp "$TMP/src.img" "$TMP/out2.img" || fail "export to export copy differs"

# nbdcopy skips zeroes, so the server's file stays sparse.
alloc=$(du -k "$TMP/disk.img" | cut -f1)
[ "$alloc" -lt $((60 * 1024)) ] || fail "disk.img is not sparse: ${alloc} KiB allocated"
nbdinfo --map "$(uri disk)" | grep -q 'hole,zero' || fail "no holes reported after a sparse copy"
stop_server
pass
