# Online resize: nbdplex serves a file, attach makes the disk, the file grows
# underneath and attach's background process (which asks the server for the
# size every 2 s when it advertises SEND_RESIZE) grows the disk; a write
# beyond the old end reads back, from the device and from the file. Then
# the file shrinks and so does the disk.
. "$(dirname "$0")/lib.sh"
load_nbdplex
truncate -s 64M /tmp/disk.img
start_server nbdplex /tmp/disk.img
sectors() { cat /sys/block/${DEV#/dev/}/size; }
# wait_size SECTORS: until the disk has that size, at most 60 s.
has_sectors() { [ "$(sectors)" = $1 ]; }
wait_size() {
	retry 300 0.2 has_sectors $1 && return 0
	cat /tmp/attach.log
	die "$DEV has $(sectors) sectors, not $1"
}

step "attach"
attach --path 127.0.0.1:$PORT --channels 2
[ "$(sectors)" = $((64 * 2048)) ] || die "$DEV has $(sectors) sectors, not 64 MiB"
flags=$(cat /sys/block/${DEV#/dev/}/nbdplex/flags)
[ $((flags & (1 << 9))) != 0 ] || die "server did not advertise SEND_RESIZE (flags $flags)"

step "the served file grows to 96 MiB"
truncate -s 96M /tmp/disk.img
wait_size $((96 * 2048))
[ "$(blockdev --getsize64 $DEV)" = $((96 << 20)) ] || die "blockdev sees $(blockdev --getsize64 $DEV)"
grep "resized" /tmp/attach.log || die "attach did not log the resize"

step "write and read back beyond the old end"
head -c 4M /dev/urandom >/tmp/tail
dd if=/tmp/tail of=$DEV bs=1M seek=80 oflag=direct status=none
drop_caches
dd if=$DEV of=/tmp/back bs=1M skip=80 count=4 iflag=direct status=none
same /tmp/tail /tmp/back
cmp -i 0:$((80 << 20)) -n $((4 << 20)) /tmp/tail /tmp/disk.img || die "served file differs"

step "the served file shrinks to 48 MiB"
truncate -s 48M /tmp/disk.img
wait_size $((48 * 2048))
[ "$(blockdev --getsize64 $DEV)" = $((48 << 20)) ] || die "blockdev sees $(blockdev --getsize64 $DEV)"
dd if=$DEV of=/tmp/back bs=1M skip=47 count=1 iflag=direct status=none
cmp -i $((47 << 20)):0 -n $((1 << 20)) /tmp/disk.img /tmp/back || die "last MiB differs"

$NP detach $DEV
stop_server
rmmod nbdplex
check_dmesg
echo "resize: ok"
