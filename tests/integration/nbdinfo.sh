#!/bin/bash
# nbdinfo: size, transmission flags, the export list, and --map showing the
# holes and data of a sparse file.
. "$NP_SRC/tests/functions.sh"
requires nbdinfo qemu-io

start_server -e disk=file:"$TMP/disk.img",size=64M -e small=mem:1M

[ "$(nbdinfo --size "$(uri disk)")" = 67108864 ] || fail "size of disk"
[ "$(nbdinfo --size "$(uri)")" = 67108864 ] || fail "the default export is the first"
[ "$(nbdinfo --size "$(uri small)")" = 1048576 ] || fail "size of small"

nbdinfo --json "$(uri disk)" >"$TMP/info.json"
python3 - "$TMP/info.json" <<'PY' || fail "flags in nbdinfo --json"
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
want = {"can_flush": True, "can_fua": True, "can_trim": True, "can_zero": True,
        "can_fast_zero": True, "can_multi_conn": True, "can_cache": True,
        "can_df": True, "is_read_only": False, "block_size_maximum": 67108864}
bad = {k: e.get(k) for k, v in want.items() if e.get(k) != v}
assert not bad, bad
assert "base:allocation" in e["contexts"], e["contexts"]
PY

nbdinfo --list --json "$(uri)" >"$TMP/list.json"
python3 - "$TMP/list.json" <<'PY' || fail "nbdinfo --list"
import json, sys
names = [e["export-name"] for e in json.load(open(sys.argv[1]))["exports"]]
assert names == ["disk", "small"], names
PY

# A fresh file is one hole; data written at 1M and 40M shows up as data.
nbdinfo --map "$(uri disk)" >"$TMP/map0"
grep -Eq '^ *0 +67108864 +3 +hole,zero' "$TMP/map0" || fail "fresh file is not one hole: $(cat "$TMP/map0")"
qemu-io -f raw "$(uri disk)" -c 'write -P 0x11 1M 64k' -c 'write -P 0x22 40M 1M' >/dev/null
nbdinfo --map "$(uri disk)" >"$TMP/map1"
python3 - "$TMP/map1" <<'PY' || fail "map after writes: $(cat "$TMP/map1")"
import sys
ext = [l.split() for l in open(sys.argv[1])]
data = [(int(o), int(n)) for o, n, t, *_ in ext if t == "0"]
# File systems allocate in blocks; the written ranges must be data.
def covered(off, ln):
    return any(o <= off and off + ln <= o + n for o, n in data)
assert covered(1 << 20, 65536) and covered(40 << 20, 1 << 20), data
assert sum(n for o, n in data) < 8 << 20, data
assert sum(int(n) for o, n, *_ in ext) == 64 << 20
PY

# Read-only servers say so.
stop_server
start_server -r -e disk=file:"$TMP/disk.img"
nbdinfo --json "$(uri)" | python3 -c 'import json,sys; e=json.load(sys.stdin)["exports"][0]; assert e["is_read_only"] and not e["can_trim"]' ||
	fail "read-only flags"
stop_server
pass
