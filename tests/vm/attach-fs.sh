# Scenario 1: nbdplex attach with 4 channels, ext4, two writers of 72 MiB
# of random data at once, umount, remount, compare; then the device's
# checksum equals the served file's. Argument: the server (default nbdkit).
. "$(dirname "$0")/lib.sh"
kind=${1:-nbdkit}
load_nbdplex
truncate -s 1G /tmp/disk.img
start_server $kind /tmp/disk.img
head -c 72M /dev/urandom >/tmp/a
head -c 72M /dev/urandom >/tmp/b

step "attach, mkfs, two writers"
attach --path 127.0.0.1:$PORT --channels 4
test "$(blockdev --getsize64 $DEV)" = 1073741824 || die "wrong size"
wait_channels 4 10
mkfs.ext4 -q -F $DEV
mkdir -p /mnt/fs
mount $DEV /mnt/fs
cp /tmp/a /mnt/fs/a &
w1=$!
dd if=/tmp/b of=/mnt/fs/b bs=1M oflag=direct status=none &
w2=$!
wait $w1 || die "writer a failed"
wait $w2 || die "writer b failed"
umount /mnt/fs
drop_caches
mount $DEV /mnt/fs
same /tmp/a /mnt/fs/a
same /tmp/b /mnt/fs/b
umount /mnt/fs
cat /sys/block/${DEV#/dev/}/nbdplex/channels
# Every channel carried part of the load.
used=$(awk 'NR > 1 && $6 > 0' /sys/block/${DEV#/dev/}/nbdplex/channels | wc -l)
[ "$used" -ge 2 ] || die "only $used channel(s) carried requests"

step "device checksum equals the served file's"
drop_caches
dsum=$(md5sum <$DEV)
fsum=$(md5sum </tmp/disk.img)
[ "$dsum" = "$fsum" ] || die "device $dsum, file $fsum"
$NP detach $DEV
[ ! -b $DEV ] || die "$DEV still there after detach"
stop_server
rmmod nbdplex
check_dmesg
echo "nbdplex attach against $kind: ok"
