# Scenario 2: nbdplex.ko against a server (argument: nbdkit, nbd-server or
# nbdplex): raw writes and reads at several sizes, FUA, trim and
# write-zeroes when the export offers them, checked against the served file.
. "$(dirname "$0")/lib.sh"
kind=${1:-nbdkit}
load_nbdplex
truncate -s 512M /tmp/disk.img
start_server $kind /tmp/disk.img
head -c 48M /dev/urandom >/tmp/data

step "channels"
if ! DEV=$($NP attach --path 127.0.0.1:$PORT --export disk --channels 2 2>/tmp/err); then
	# Only a server without CAN_MULTI_CONN may refuse, and it must say why.
	grep -q CAN_MULTI_CONN /tmp/err || die "attach failed: $(cat /tmp/err)"
	echo "refused as expected: $(cat /tmp/err)"
	attach --path 127.0.0.1:$PORT --export disk --channels 1
fi
name=${DEV#/dev/}
flags=$(cat /sys/block/$name/nbdplex/flags)
echo "transmission flags $flags"
test "$(blockdev --getsize64 $DEV)" = 536870912 || die "wrong size"
echo "max_sectors_kb $(cat /sys/block/$name/queue/max_sectors_kb)"
# The driver takes 4 MiB requests; attach may set the soft limit lower, to
# spread one large request over several channels.
[ "$(cat /sys/block/$name/queue/max_hw_sectors_kb)" -ge 4096 ] || die "requests limited below 4 MiB"

step "writes of 4 KiB to 4 MiB, read back"
dd if=/tmp/data of=$DEV bs=4k count=2048 oflag=direct status=none
dd if=/tmp/data of=$DEV bs=4M skip=2 seek=2 count=10 oflag=direct status=none
dd if=/tmp/data of=$DEV bs=64k skip=768 seek=768 oflag=direct,sync status=none
dd if=$DEV of=/tmp/back bs=1M count=48 iflag=direct status=none
same /tmp/data /tmp/back
cmp -n 50331648 /tmp/data /tmp/disk.img || die "served file differs"

if [ $((flags & 0x20)) -ne 0 ]; then
	step "trim"
	[ "$(cat /sys/block/$name/queue/discard_max_bytes)" -gt 0 ] || die "trim offered but discard off"
	blkdiscard -o 1048576 -l 1048576 $DEV
	# A trimmed range reads back as zeroes or as the old data; never garbage.
	dd if=$DEV of=/tmp/back bs=1M skip=1 count=1 iflag=direct status=none
	cmp -n 1048576 /tmp/back /dev/zero >/dev/null ||
		cmp -n 1048576 /tmp/back <(dd if=/tmp/data bs=1M skip=1 count=1 status=none) ||
		die "trimmed range holds something else"
fi
if [ $((flags & 0x40)) -ne 0 ]; then
	step "write zeroes"
	blkdiscard -z -o 4194304 -l 2097152 $DEV
	dd if=$DEV of=/tmp/back bs=1M skip=4 count=2 iflag=direct status=none
	cmp -n 2097152 /tmp/back /dev/zero || die "write-zeroes range not zero"
fi
step "flush, detach, file matches"
blockdev --flushbufs $DEV
drop_caches
dsum=$(md5sum <$DEV)
$NP detach $DEV
fsum=$(md5sum </tmp/disk.img)
[ "$dsum" = "$fsum" ] || die "device $dsum, file $fsum"
stop_server

step "a server without CAN_MULTI_CONN gets one channel only"
rm -f /tmp/mc.pid
nbdkit -f -P /tmp/mc.pid -i 127.0.0.1 -p $PORT --filter=multi-conn file /tmp/disk.img \
	multi-conn-mode=disable >/tmp/mc.log 2>&1 &
wait_pidfile /tmp/mc.pid nbdkit
$NP attach --path 127.0.0.1:$PORT --channels 2 2>/tmp/err && die "2 channels accepted without CAN_MULTI_CONN"
cat /tmp/err
grep -q "CAN_MULTI_CONN" /tmp/err || die "refusal does not say why"
! ls /sys/block | grep -q nbdplex || die "a refused attach left a device"
attach --path 127.0.0.1:$PORT --channels 1
$NP detach $DEV
stop_server
rmmod nbdplex
check_dmesg
echo "nbdplex.ko against $kind: ok"
