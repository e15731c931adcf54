# Scenario 6: md RAID-1 over a RAM disk and an nbdplex device. The server
# stops: the nbdplex half fails after the dead timeout, the array runs
# degraded and writes go on. The server comes back: attach reconnects, the
# half is re-added and resynced, and both halves hold the same data.
. "$(dirname "$0")/lib.sh"
command -v mdadm >/dev/null || die "mdadm missing (apt-get install mdadm)"
load_nbdplex
modprobe brd rd_nr=1 rd_size=131072
modprobe raid1
truncate -s 128M /tmp/disk.img
start_server nbdkit /tmp/disk.img
head -c 32M /dev/urandom >/tmp/d1
head -c 32M /dev/urandom >/tmp/d2
attach --path 127.0.0.1:$PORT --channels 2 --dead-timeout 3
# Both halves start out zero, so they are in sync already.
mdadm --create /dev/md0 --run --quiet --level=1 --raid-devices=2 --metadata=1.2 \
	--bitmap=internal --assume-clean /dev/ram0 $DEV
mdstat() { cat /proc/mdstat; }

step "both halves up"
dd if=/tmp/d1 of=/dev/md0 bs=1M oflag=direct status=none
mdstat | grep -q '\[UU\]' || { mdstat; die "array not complete"; }

step "server stopped: degraded, writes go on"
stop_server
dd if=/tmp/d2 of=/dev/md0 bs=1M seek=32 oflag=direct status=none || die "write to degraded array failed"
mdstat
mdstat | grep -q '\[U_\]' || die "array not degraded"
mdadm --detail /dev/md0 | grep -q faulty || die "nbdplex half not faulty"

step "server back: re-add, resync"
start_server nbdkit /tmp/disk.img
wait_channels 2 30
mdadm /dev/md0 --remove failed
mdadm /dev/md0 --re-add $DEV
in_sync() { mdstat | grep -q '\[UU\]' && ! mdstat | grep -q recovery; }
retry 240 0.5 in_sync || true
mdstat
mdstat | grep -q '\[UU\]' || die "array did not recover"
dd if=/dev/md0 of=/tmp/back bs=1M count=64 iflag=direct status=none
same <(cat /tmp/d1 /tmp/d2) /tmp/back

step "halves equal"
off=$(mdadm --examine /dev/ram0 | awk '/Data Offset/ {print $4}')
off2=$(mdadm --examine $DEV | awk '/Data Offset/ {print $4}')
[ -n "$off" ] && [ "$off" = "$off2" ] || die "data offsets '$off' '$off2'"
size=$(blockdev --getsize64 /dev/md0)
half() { dd if=$1 bs=1M skip=$((off * 512)) count=$size iflag=direct,skip_bytes,count_bytes status=none | md5sum; }
a=$(half /dev/ram0)
b=$(half $DEV)
[ "$a" = "$b" ] || die "halves differ: $a $b"
mdadm --stop /dev/md0
$NP detach $DEV
stop_server
rmmod nbdplex
check_dmesg
echo "raid1: ok"
