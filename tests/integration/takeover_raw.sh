#!/bin/bash
# serve --takeover of a raw export: a loop device the running server opened
# O_EXCL (kernel AIO, a handle per loop). The new process finds it busy and
# has the old one release it; a libnbd client writes and reads back across
# two hand-offs and a failed one (the new process killed after the
# release: the old one reopens the device and serves on), then checks all
# it wrote, also in the loop device's backing file. Skipped (77) without
# root or losetup.
. "$NP_SRC/tests/functions.sh"
requires nbdinfo python3
[ "$(id -u)" = 0 ] || { echo "skipped: needs root for losetup"; exit 77; }
command -v losetup >/dev/null || { echo "skipped: no losetup"; exit 77; }

# The backing file: O_DIRECT needs a file system that has it (not tmpfs).
img=$(mktemp "${RAW_TMPDIR:-/var/tmp}/nbdplex-takeover-raw.XXXXXX")
head -c $((32 << 20)) /dev/zero >"$img"
dev=$(losetup -f --show --direct-io=on "$img") || {
	rm -f "$img"
	echo "skipped: losetup failed"
	exit 77
}
# Attached until the end: detached early (autoclear), the device would go
# in the moment between the old process's close and the new one's open.
cleanup() {
	np_cleanup
	losetup -d "$dev" || echo "could not detach $dev" >&2
	rm -f "$img"
}
trap cleanup EXIT

CTL=$TMP/ctl.sock
SPEC=(-e "disk=raw:$dev" --control "$CTL")
start_server "${SPEC[@]}"

python3 "$NP_SRC/tests/integration/takeover_writer.py" "$(uri disk)" "$TMP/stop" 5 4096 \
	"$TMP/expect" >"$TMP/client.out" 2>&1 &
CLIENT=$!
NP_PIDS+=("$CLIENT")
wait_until 10 grep -q "export 'disk'" "$TMP/server.log" || fail "the client did not connect"
count() { grep -c "$1" "$TMP/server.log" || true; }
alive() { kill -0 "$CLIENT" || fail "the client failed: $(cat "$TMP/client.out")"; }

sleep 0.5
takeover "$CTL" "${SPEC[@]}"
[ "$(count "export 'disk': released for the new process")" = 1 ] || fail "no release"
alive

# The new process killed once it has opened the released device.
reopened() { [ "$(count "export 'disk': reopened")" = 1 ]; }
sleep 0.5
takeover_killed "$CTL" "export 'disk': raw:" "${SPEC[@]}"
wait_until 30 reopened || fail "the old server did not reopen the device"
sleep 0.5
alive
kill -0 "$SERVER_PID" || fail "the old server died"

takeover "$CTL" "${SPEC[@]}"
sleep 0.5
touch "$TMP/stop"
wait "$CLIENT" || fail "the client: $(cat "$TMP/client.out")"
grep -q rounds "$TMP/client.out" || fail "the client: $(cat "$TMP/client.out")"
grep -E 'closing:|taken over, but closed' "$TMP/server.log" && fail "a connection closed"
stop_server
# What the client last wrote to each block is in the backing file.
python3 - "$img" "$TMP/expect" <<'PY' || fail "the backing file differs"
import sys
with open(sys.argv[1], 'rb') as f:
    for line in open(sys.argv[2]):
        off, byte = map(int, line.split())
        f.seek(off)
        assert f.read(4096) == bytes([byte]) * 4096, off
PY
pass
