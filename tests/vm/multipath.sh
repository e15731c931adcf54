# Two network paths (veth pairs into a server namespace): attach spreads
# channels over both; one path goes down in the middle of a write, its
# requests time out and move to the other path with no I/O error; the path
# comes back and attach restores its channel.
. "$(dirname "$0")/lib.sh"
load_nbdplex io_timeout=5
ip netns add srv
for i in 0 1; do
	ip link add p$i type veth peer name s$i
	ip link set s$i netns srv
	ip addr add 10.9.$i.1/24 dev p$i
	ip link set p$i up
	ip -n srv addr add 10.9.$i.2/24 dev s$i
	ip -n srv link set s$i up
done
ip -n srv link set lo up
truncate -s 512M /tmp/disk.img
pidf=/tmp/srv.pid
ip netns exec srv nbdkit -f -P $pidf -p $PORT file /tmp/disk.img >/tmp/srv.log 2>&1 &
wait_pidfile $pidf "nbdkit in the namespace"
head -c 96M /dev/urandom >/tmp/data

step "channels over both paths"
attach --path 10.9.0.2:$PORT --path 10.9.1.2:$PORT --channels 4
wait_channels 4 10
ch=/sys/block/${DEV#/dev/}/nbdplex/channels
[ "$(awk 'NR > 1 && $2 == 1' $ch | wc -l)" = 2 ] || die "path 1 does not have 2 channels"
dd if=/tmp/data of=$DEV bs=1M count=16 oflag=direct status=none
cat $ch
[ "$(awk 'NR > 1 && $6 > 0 {print $2}' $ch | sort -u | wc -l)" = 2 ] || die "not both paths carried data"

step "path 1 down mid-write"
# Three passes of the same data: long enough that the path goes down in
# the middle on a fast host too, and the device still ends up equal to it.
(
	set -e
	for pass in 1 2 3; do
		dd if=/tmp/data of=$DEV bs=256k oflag=direct status=none
	done
) 2>/tmp/dd.err &
w=$!
sleep 1
kill -0 $w || die "writer finished before the path went down; nothing tested"
ip link set p1 down
wait_gone 240 writer $w
wait $w || { cat /tmp/dd.err; die "writer saw an error"; }
cat $ch
[ "$(awk 'NR > 1 && $2 == 1' $ch | wc -l)" = 0 ] || die "path 1 channels still listed"
dmesg | grep -q "timed out" || die "no request timed out on the dead path"

step "path 1 back"
ip link set p1 up
wait_channels 4 60
cat $ch
verify_96m_and_finish
echo "multipath: ok"
