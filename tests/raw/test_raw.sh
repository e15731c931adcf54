#!/usr/bin/env bash
# Runs the raw engine's unit test (test_raw) on a plain file, on a loop
# device with 512-byte sectors and on one with 4096-byte sectors.
#
#   test_raw.sh PATH/TO/test_raw
#
# Loop devices are detached on every exit path; the plain-file run happens
# even where loop devices are unavailable. Exit 77 (skip) when nothing can run.
set -u

bin=${1:?usage: test_raw.sh PATH/TO/test_raw}
[ -x "$bin" ] || { echo "test_raw.sh: $bin is not executable" >&2; exit 2; }

# O_DIRECT needs a filesystem that supports it, which tmpfs may not: prefer
# /var/tmp, which is usually on disk.
tmp=$(mktemp -d "${RAW_TMPDIR:-/var/tmp}/nbdplex-raw.XXXXXX") || exit 1
attached=
cleanup()
{
	if [ -n "$attached" ]; then
		losetup -d "$attached" || echo "test_raw.sh: could not detach $attached" >&2
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail=0
ran=0

truncate -s 64M "$tmp/file.img" || exit 1
# Block size 0: a file's O_DIRECT alignment is the filesystem's to choose.
if "$bin" "$tmp/file.img" "$tmp/file.img" 0; then
	ran=$((ran + 1))
else
	fail=1
fi

if [ "$(id -u)" -ne 0 ] || ! command -v losetup >/dev/null; then
	echo "test_raw.sh: not root or no losetup: loop device runs skipped"
else
	for ss in 512 4096; do
		img="$tmp/loop$ss.img"
		truncate -s 64M "$img" || exit 1
		# As root with losetup, a loop device that cannot be had is a
		# failure: the runs on real block devices are the point.
		dev=$(losetup -f --show --direct-io=on --sector-size "$ss" "$img") || {
			echo "test_raw.sh: FAIL: losetup of a $ss-byte-sector loop device" >&2
			fail=1
			break
		}
		attached=$dev
		if "$bin" "$dev" "$img" "$ss"; then
			ran=$((ran + 1))
		else
			fail=1
		fi
		losetup -d "$dev" && attached=
	done
fi

[ "$fail" -eq 0 ] || exit 1
[ "$ran" -gt 0 ] || exit 77
exit 0
