#!/bin/bash
# Faults under the file engine: the file system filling up (ENOSPC replies,
# the server stays up, nothing else is lost, trimmed space is usable again),
# and kill -9 at random moments while a client writes with FUA and FLUSH
# (every acknowledged durable write is there after a restart).
. "$NP_SRC/tests/functions.sh"
requires qemu-io nbdsh

# 1. A 4 MiB file system under a 64 MiB sparse export.
mkdir -p "$TMP/small"
mount -t tmpfs -o size=4M tmpfs "$TMP/small" || fail "cannot mount a small tmpfs"
trap 'umount "$TMP/small" 2>/dev/null || true; np_cleanup' EXIT
start_server -e d=file:"$TMP/small/d.img",size=64M
u=$(uri d)
qemu-io -f raw "$u" -c 'write -P 0x42 0 1M' >/dev/null || fail "first megabyte"
out=$(qemu-io -f raw "$u" -c 'write -P 0x43 8M 8M' 2>&1) && fail "8 MiB fitted in 4: $out"
grep -q "No space left on device" <<<"$out" || fail "no ENOSPC reported: $out"
assert_serving d
# A WRITE runs on the loop and is copied into the server's mapping of the
# file, with FUA (qemu-io sets it) or without (nbdsh): a page that cannot
# be had there is still ENOSPC, small or large, not a dead server.
for len in 4096 $((4 << 20)); do
	out=$(nbdsh -u "$u" -c "h.pwrite(b'x' * $len, 40 << 20)" 2>&1) && fail "$len more bytes fitted"
	grep -q "No space left on device" <<<"$out" || fail "no ENOSPC without FUA: $out"
	assert_serving d
	out=$(qemu-io -f raw "$u" -c "write -P 0x45 40M $len" 2>&1) && fail "$len more fitted (FUA)"
	grep -q "No space left on device" <<<"$out" || fail "no ENOSPC with FUA: $out"
	assert_serving d
done
out=$(qemu-io -f raw "$u" -c 'read -P 0x42 0 1M' 2>&1) || fail "data lost after ENOSPC: $out"
# Freeing space by trimming makes writes work again.
qemu-io -f raw "$u" -c 'discard 8M 8M' -c 'discard 0 1M' >/dev/null || fail "discard"
qemu-io -f raw "$u" -c 'write -P 0x44 20M 2M' -c 'read -P 0x44 20M 2M' >/dev/null ||
	fail "writing after space was freed"
stop_server
umount "$TMP/small"
trap np_cleanup EXIT

# 2. kill -9 while writing durably, five times; then every block's last
# acknowledged write must be on disk.
truncate -s 4M "$TMP/d.img"
kill_while_writing "file:$TMP/d.img" 5
durable_check "$TMP/d.img"
pass
