# Scenario 3: the stock nbd.ko with nbd-client against an NBD server
# (argument: nbdkit, nbd-server or nbdplex): one connection with raw I/O and
# ext4, then four connections (nbd-client -C 4) with raw I/O; nbdplex also
# through its Unix socket (nbd-client -u).
. "$(dirname "$0")/lib.sh"
kind=${1:-nbdkit}
modprobe nbd nbds_max=2
truncate -s 512M /tmp/disk.img
SOCK=/tmp/nbdplex.sock
[ $kind = nbdplex ] && NPVM_SERVE_OPTS="${NPVM_SERVE_OPTS:-} -l unix:$SOCK"
start_server $kind /tmp/disk.img
head -c 64M /dev/urandom >/tmp/data

step "one connection: raw write, read back"
nbd-client -N disk 127.0.0.1 $PORT /dev/nbd0
test "$(blockdev --getsize64 /dev/nbd0)" = 536870912 || die "wrong size"
dd if=/tmp/data of=/dev/nbd0 bs=1M oflag=direct status=none
dd if=/tmp/data of=/dev/nbd0 bs=1M seek=100 status=none conv=fsync
drop_caches
dd if=/dev/nbd0 of=/tmp/back bs=1M count=64 iflag=direct status=none
same /tmp/data /tmp/back
dd if=/dev/nbd0 of=/tmp/back bs=1M skip=100 count=64 status=none
same /tmp/data /tmp/back
cmp -n 67108864 /tmp/data /tmp/disk.img || die "served file differs"

step "one connection: ext4, two writers, remount, compare"
mkfs.ext4 -q -F /dev/nbd0
mkdir -p /mnt/fs
mount /dev/nbd0 /mnt/fs
cp /tmp/data /mnt/fs/a &
w=$!
dd if=/dev/urandom of=/mnt/fs/b bs=1M count=32 status=none
wait $w || die "writer a failed"
umount /mnt/fs
drop_caches
mount /dev/nbd0 /mnt/fs
same /tmp/data /mnt/fs/a
test "$(stat -c %s /mnt/fs/b)" = 33554432 || die "b has the wrong size"
umount /mnt/fs
nbd-client -d /dev/nbd0

step "four connections: raw writes, read back"
nbd-client -C 4 -N disk 127.0.0.1 $PORT /dev/nbd1
dd if=/tmp/data of=/dev/nbd1 bs=256k seek=1024 oflag=direct status=none
dd if=/tmp/data of=/dev/nbd1 bs=1M seek=400 status=none conv=fsync
drop_caches
dd if=/dev/nbd1 of=/tmp/back bs=256k skip=1024 count=256 iflag=direct status=none
same /tmp/data /tmp/back
dd if=/dev/nbd1 of=/tmp/back bs=1M skip=400 count=64 status=none
same /tmp/data /tmp/back
nbd-client -d /dev/nbd1
dd if=/tmp/disk.img of=/tmp/back bs=1M skip=400 count=64 status=none
same /tmp/data /tmp/back

if [ $kind = nbdplex ]; then
	step "a Unix socket (nbd-client -u): raw write, read back"
	test "$(stat -c %a $SOCK)" = 660 || die "$SOCK has mode $(stat -c %a $SOCK), not 660"
	nbd-client -u $SOCK /dev/nbd0 -N disk
	test "$(blockdev --getsize64 /dev/nbd0)" = 536870912 || die "wrong size over the Unix socket"
	dd if=/tmp/data of=/dev/nbd0 bs=1M seek=200 oflag=direct status=none
	drop_caches
	dd if=/dev/nbd0 of=/tmp/back bs=1M skip=200 count=64 iflag=direct status=none
	same /tmp/data /tmp/back
	nbd-client -d /dev/nbd0
	dd if=/tmp/disk.img of=/tmp/back bs=1M skip=200 count=64 status=none
	same /tmp/data /tmp/back
	grep -q "from unix:$SOCK (pid [0-9]*, uid 0): export 'disk'" /tmp/srv.log ||
		die "the server did not log nbd-client's Unix connection"
fi
stop_server
[ ! -e $SOCK ] || die "the server left $SOCK behind"
echo "stock nbd.ko against $kind: ok"
