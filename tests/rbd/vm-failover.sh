# Two gateways, one image (a guest scenario, tests/vm/run.sh): a throwaway
# cluster in the guest, two `nbdplex serve` of one rbd image, and `nbdplex
# attach` spreading the disk over both. One gateway is killed (-9) in the
# middle of a write: its requests move to the other, the writer sees no
# error, and the device and the image hold the data.
. "$(dirname "$0")/../vm/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
CEPH=/tmp/ceph
load_nbdplex io_timeout=5
trap 'stop_server; kill -9 ${GW2:-} 2>/dev/null || true; bash $SRC/tests/rbd/cluster.sh stop $CEPH' EXIT

step "cluster"
CONF=$(bash "$SRC/tests/rbd/cluster.sh" start $CEPH) || die "the cluster did not start"
export CEPH_CONF=$CONF
# exclusive-lock off, as the README says for an image two gateways share
rbd create --size 128M --image-feature layering rbd/fo || die "rbd create"

step "two gateways"
# gateway serve PORT: one `nbdplex serve` of the image; its PID in SRV_PID
gateway() {
	local pidf=/tmp/gw.$1.pid
	rm -f $pidf
	$NP serve -l 127.0.0.1:$1 -e disk=rbd:rbd/fo,conf=$CONF --pidfile $pidf >>/tmp/srv.log 2>&1 &
	wait_pidfile $pidf "gateway on port $1"
	retry 60 0.5 greets 127.0.0.1 $1 || die "gateway on port $1 does not greet"
}
gateway $((PORT + 1))
GW2=$SRV_PID
gateway $PORT
head -c 96M /dev/urandom >/tmp/data
attach --path 127.0.0.1:$PORT --path 127.0.0.1:$((PORT + 1)) --channels 4 --dead-timeout 120
wait_channels 4 30
ch=/sys/block/${DEV#/dev/}/nbdplex/channels

step "kill one gateway mid-write"
dd if=/tmp/data of=$DEV bs=256k oflag=direct status=none 2>/tmp/dd.err &
w=$!
moved_8m() { [ "$(awk 'NR > 1 {s += $7} END {print s + 0}' $ch)" -ge 8388608 ]; }
retry 200 0.05 moved_8m || true
kill -0 $w || die "writer finished before the gateway was killed; nothing tested"
kill -9 $SRV_PID
SRV_PID=
wait_gone 300 writer $w
wait $w || { cat /tmp/dd.err; die "writer saw an error"; }
cat $ch

step "verify"
drop_caches
dd if=$DEV of=/tmp/back bs=1M count=96 iflag=direct status=none
same /tmp/data /tmp/back
$NP detach $DEV
SRV_PID=$GW2
stop_server
rbd export rbd/fo /tmp/image >/dev/null 2>&1 || die "rbd export"
same /tmp/data /tmp/image 100663296
rmmod nbdplex
check_dmesg
echo "rbd failover: ok"
