#!/bin/bash
# A pool on a small file system (ext4 on a loop device made here) grows until
# the file system is full: then writes get ENOSPC, the server keeps serving,
# what was written stays, `volume check` passes, and space a TRIM frees is
# used for new writes. A pool on a block device (another loop device) keeps
# the device's size.
. "$NP_SRC/tests/functions.sh"
. "$NP_SRC/tests/thin/functions.sh"
requires qemu-io nbdsh losetup mkfs.ext4 mount umount blockdev
[ "$(id -u)" = 0 ] || fail "needs root for losetup and mount"

truncate -s 256M "$TMP/fs.img"
truncate -s 8M "$TMP/raw.img"
loopdev=$(losetup -f --show "$TMP/fs.img") || fail "losetup"
rawdev=$(losetup -f --show "$TMP/raw.img") || { losetup -d "$loopdev"; fail "losetup"; }
mkdir -p "$TMP/mnt"
# The server must let go of the file system before it can be unmounted,
# and that before np_cleanup removes $TMP.
cleanup() {
	local pid
	for pid in "${NP_PIDS[@]}"; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	umount "$TMP/mnt" 2>/dev/null || true
	losetup -d "$loopdev" 2>/dev/null || true
	losetup -d "$rawdev" 2>/dev/null || true
	np_cleanup
}
trap cleanup EXIT
mkfs.ext4 -q -m 0 "$loopdev" || fail "mkfs.ext4"
mount "$loopdev" "$TMP/mnt" || fail "mount"

pool=$TMP/mnt/pool
vol init "$pool" || fail "volume init on a 256M file system"
vol create "$pool" v 1G || fail "create"
start_server -e v=thin:"$pool/v"
u=$(uri v)

qemu-io -f raw "$u" -c 'write -P 0x42 0 64M' >/dev/null || fail "first 64M"
out=$(qemu-io -f raw "$u" -c 'write -P 0x43 128M 256M' 2>&1) && fail "256M more fitted: $out"
grep -q "No space left on device" <<<"$out" || fail "no ENOSPC with FUA: $out"
assert_serving v
# The requests that failed left their chunks free: fill them, a chunk at a
# time, until none is left (bounded: 256M of 64K chunks).
nbdsh -u "$u" -c '
import errno
for i in range(4096):
    try:
        h.pwrite(b"\x46" * 65536, (512 << 20) + i * 65536)
    except nbd.Error as e:
        assert e.errnum == errno.ENOSPC, e
        break
else:
    raise SystemExit("256M of chunks fitted")
' || fail "filling the pool chunk by chunk"
assert_serving v
# Without FUA too, small or large.
for len in 4096 $((4 << 20)); do
	out=$(nbdsh -u "$u" -c "h.pwrite(b'x' * $len, 900 << 20)" 2>&1) && fail "$len more bytes fitted"
	grep -q "No space left on device" <<<"$out" || fail "no ENOSPC without FUA: $out"
	assert_serving v
done
qemu-io -f raw "$u" -c 'read -P 0x42 0 64M' -c 'read -P 0 900M 4M' >/dev/null ||
	fail "data wrong after ENOSPC"
vol check "$pool" >"$TMP/check" || fail "check when full: $(cat "$TMP/check")"
used=$(pool_field "$pool" bytes_used) allocated=$(pool_field "$pool" bytes_allocated)
# Full: what the pool holds is in use, and it took the file system but for
# what it leaves the database (48M here).
[ "$used" = "$allocated" ] || fail "full pool with free chunks: $(vol list "$pool")"
[ "$allocated" -gt $((150 << 20)) ] && [ "$allocated" -lt $((256 << 20)) ] ||
	fail "a pool of $allocated bytes on a 256M file system"

# A TRIM frees chunks; new writes use them.
qemu-io -f raw "$u" -c 'discard 0 64M' >/dev/null || fail "discard"
qemu-io -f raw "$u" -c 'write -P 0x44 900M 32M' -c 'read -P 0x44 900M 32M' \
	-c 'read -P 0 0 64M' >/dev/null || fail "writing after a TRIM freed space"
out=$(qemu-io -f raw "$u" -c 'write -P 0x45 960M 64M' 2>&1) && fail "more than was trimmed fitted"
grep -q "No space left on device" <<<"$out" || fail "no ENOSPC after reuse: $out"
assert_serving v
[ "$(pool_field "$pool" bytes_allocated)" = "$allocated" ] || fail "the pool grew instead of reusing: $(vol list "$pool")"
vol check "$pool" >/dev/null || fail "check after reuse"
stop_server
vol check "$pool" >/dev/null || fail "check after stop"

# A block device: its size from the start, and no more.
pool=$TMP/rawpool
vol init "$pool" --data "$rawdev" || fail "volume init on a block device"
[ "$(pool_field "$pool" limit)" = device ] && [ "$(pool_field "$pool" bytes_allocated)" = $((8 << 20)) ] &&
	[ "$(pool_field "$pool" bytes_max)" = $((8 << 20)) ] || fail "block device pool: $(vol list "$pool")"
vol create "$pool" r 64M || fail "create on the block device pool"
start_server -e r=thin:"$pool/r"
fills_at "$(uri r)" $((8 << 20))
stop_server
[ "$(blockdev --getsize64 "$rawdev")" = $((8 << 20)) ] || fail "the device changed size"
vol check "$pool" >/dev/null || fail "check of the block device pool"
pass
