# Channel bonding over two NIC paths (issue 6). A client and a server
# network namespace are joined by two veth pairs on two subnets (the paths)
# and by two more veth pairs enslaved to a balance-rr bond in each namespace
# (Linux's own bonding, for comparison); every veth end is shaped by tbf to
# the same rate, so each direction of each path has the same bandwidth.
#
# It measures one single-threaded dd writer and reader (1 MiB, O_DIRECT):
# the stock nbd.ko over one path and over the bond, nbdplex.ko over one path
# and over both. Speeds are printed ("BOND config dir MB/s"), never asserted.
#
# In "test" mode it then checks what can fail: three channels over the two
# paths split the bytes about evenly between the paths; `nbdplex attach
# --status` shows both paths up; a path taken down in the middle of a write
# and of a read costs no I/O error and the data compares equal to the served
# file; status shows the path down, then up again once it is back; and both
# paths carry traffic afterwards.
#
# usage: bond.sh [test|perf] [ROUNDS] [MIB]
#   defaults: test 1 16 (short transfers: the test is the failover part);
#   perf/bench-bond.sh runs "perf 5 64".
. "$(dirname "$0")/lib.sh"
mode=${1:-test}
case $mode in test | perf) ;; *) die "mode is test or perf, not $mode" ;; esac
rounds=${2:-1}
mib=${3:-$([ $mode = perf ] && echo 64 || echo 16)}
# 40 Mbit/s is 5 MB/s. The bucket holds one full-size (64 KiB) TSO burst,
# and the queue about 50 ms of traffic: enough that one TCP flow fills its
# path, little enough that requests are not stuck behind seconds of queue.
RATE=40mbit
BURST=64kb
LATENCY=50ms
CLI="ip netns exec npcli"
SRV="ip netns exec npsrv"
XFER_TIMEOUT=300

modprobe bonding max_bonds=0 || die "no bonding module"
modprobe sch_tbf || die "no tbf qdisc"
modprobe nbd nbds_max=1 || die "no nbd module"
# A request stuck on a dead path moves to the other after 5 s.
load_nbdplex io_timeout=5

step "namespaces, two shaped paths and a balance-rr bond"
ip netns add npcli
ip netns add npsrv
ip -n npcli link set lo up
ip -n npsrv link set lo up
shape() { # NS DEV
	ip -n $1 link set $2 up
	ip netns exec $1 tc qdisc replace dev $2 root tbf rate $RATE burst $BURST latency $LATENCY
}
for i in 0 1; do
	ip link add c$i netns npcli type veth peer name s$i netns npsrv
	ip -n npcli addr add 10.77.$i.1/24 dev c$i
	ip -n npsrv addr add 10.77.$i.2/24 dev s$i
	shape npcli c$i
	shape npsrv s$i
done
for ns in npcli npsrv; do
	ip -n $ns link add bond0 type bond mode balance-rr miimon 100
done
for i in 0 1; do
	ip link add bc$i netns npcli type veth peer name bs$i netns npsrv
	ip -n npcli link set bc$i master bond0
	ip -n npsrv link set bs$i master bond0
	shape npcli bc$i
	shape npsrv bs$i
done
ip -n npcli addr add 10.77.9.1/24 dev bond0
ip -n npsrv addr add 10.77.9.2/24 dev bond0
ip -n npcli link set bond0 up
ip -n npsrv link set bond0 up
$CLI grep -q balance-rr /sys/class/net/bond0/bonding/mode || die "bond0 is not balance-rr"
$CLI tc qdisc show | grep -c tbf | grep -qx 4 || { $CLI tc qdisc show; die "client side not shaped"; }
$SRV tc qdisc show | grep -c tbf | grep -qx 4 || { $SRV tc qdisc show; die "server side not shaped"; }
P0=10.77.0.2:$PORT
P1=10.77.1.2:$PORT
PB=10.77.9.2

step "server in npsrv on both paths and the bond"
size_mib=$((mib > 128 ? mib * 2 : 256))
dd if=/dev/urandom of=/tmp/disk.img bs=1M count=$size_mib status=none
head -c ${mib}M /dev/urandom >/tmp/data
pidf=/tmp/srv.pid
$SRV $NP serve -l $P0 -l $P1 -l $PB:$PORT -e disk=file:/tmp/disk.img --pidfile $pidf \
	>/tmp/srv.log 2>&1 &
wait_pidfile $pidf server
for a in 10.77.0.2 10.77.1.2 $PB; do
	retry 40 0.5 greets $a $PORT $CLI || die "no greeting from $a"
done

# cattach ARGS...: nbdplex attach from the client namespace, device in $DEV.
cattach() {
	DEV=$($CLI $NP attach --log /tmp/attach.log "$@") ||
		{ cat /tmp/attach.log 2>/dev/null; die "attach $* failed"; }
	[ -b "$DEV" ] || die "attach printed '$DEV', not a block device"
}
ch() { cat /sys/block/${DEV#/dev/}/nbdplex/channels; }

# xfer CONFIG write|read DEVICE: one dd of $mib MiB, prints "BOND CONFIG DIR MB/s".
xfer() {
	local out
	if [ $2 = write ]; then
		out=$(timeout $XFER_TIMEOUT dd if=/tmp/data of=$3 bs=1M count=$mib oflag=direct 2>&1) ||
			{ echo "$out"; die "$1: dd write failed"; }
	else
		out=$(timeout $XFER_TIMEOUT dd if=$3 of=/dev/null bs=1M count=$mib iflag=direct 2>&1) ||
			{ echo "$out"; die "$1: dd read failed"; }
	fi
	echo "$out" | awk -v c=$1 -v d=$2 '/ copied, / {
		for (i = 1; i <= NF; i++) if ($i == "copied,") s = $(i + 1)
		printf "BOND %s %s %.2f\n", c, d, $1 / s / 1e6 }' | tee -a /tmp/bond.results
}

measure_nbd() { # CONFIG HOST
	$CLI nbd-client -L -N disk $2 $PORT /dev/nbd0 >/dev/null || die "nbd-client $2 failed"
	xfer $1 write /dev/nbd0
	xfer $1 read /dev/nbd0
	nbd-client -d /dev/nbd0 >/dev/null
}

measure_plex() { # CONFIG CHANNELS MAX_SECTORS_KB|- PATH...
	local c=$1 n=$2 kb=$3
	shift 3
	cattach --channels $n "${@/#/--path=}"
	wait_channels $n 30
	[ $kb = - ] || echo $kb >/sys/block/${DEV#/dev/}/queue/max_sectors_kb
	echo "$c: max_sectors_kb $(cat /sys/block/${DEV#/dev/}/queue/max_sectors_kb)"
	xfer $c write $DEV
	xfer $c read $DEV
	ch
	$NP detach $DEV
}

: >/tmp/bond.results
for r in $(seq $rounds); do
	step "round $r of $rounds: ${mib} MiB per transfer; load: $(cat /proc/loadavg)"
	measure_nbd nbd.ko-1path 10.77.0.2
	measure_plex nbdplex.ko-1path 1 - $P0
	# One path with the request size attach gives four channels: how much
	# of the two-path gain is the pipelining of smaller requests alone.
	[ $mode = test ] || measure_plex nbdplex.ko-1path-128k 1 128 $P0
	measure_nbd nbd.ko-bond-rr $PB
	# attach's own request size, then the driver's largest (4 MiB): one
	# 1 MiB request then goes whole to one channel, so to one path.
	measure_plex nbdplex.ko-2paths-2ch 2 - $P0 $P1
	measure_plex nbdplex.ko-2paths-4ch 4 - $P0 $P1
	measure_plex nbdplex.ko-2paths-4ch-unsplit 4 4096 $P0 $P1
done

# Medians over the rounds, and the ratios the issue asks for.
median() { # CONFIG DIR
	awk -v c=$1 -v d=$2 '$2 == c && $3 == d {print $4}' /tmp/bond.results | sort -g |
		awk '{v[NR] = $1} END {if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; else print 0}'
}
step "summary: medians of $rounds round(s), MB/s, ratio to one path of the same driver"
for dir in write read; do
	base_nbd=$(median nbd.ko-1path $dir)
	base_plex=$(median nbdplex.ko-1path $dir)
	for c in $(awk '{print $2}' /tmp/bond.results | awk '!seen[$0]++'); do
		m=$(median $c $dir)
		case $c in nbd.ko*) b=$base_nbd ;; *) b=$base_plex ;; esac
		awk -v c=$c -v d=$dir -v m=$m -v b=$b -v n=$base_nbd \
			'BEGIN {printf "BONDSUM %-22s %-5s %7.2f MB/s  x%.2f of own 1 path  x%.2f of nbd.ko 1 path\n", c, d, m, b ? m / b : 0, n ? m / n : 0}'
	done
done

[ $mode = test ] || { stop_server; exit 0; }

sysp() { cat /sys/block/${DEV#/dev/}/nbdplex/paths; }
# path_col PATH COLUMN: a column of the driver's per-path line (empty if none).
path_col() { sysp | awk -v p=$1 -v c=$2 'NR > 1 && $1 == p {print $c}'; }
# status [MS]: nbdplex attach --status, kept in /tmp/status.
status() {
	$NP attach --status $DEV --interval ${1:-1000} >/tmp/status || die "attach --status failed"
	cat /tmp/status
}
st() { awk -v p=$1 -v c=$2 'NR > 2 && $1 == p {print $c}' /tmp/status; }
no_channels_on() { [ -z "$(path_col $1 3)" ]; }
# wait_path_gone PATH SECONDS: until the driver dropped every channel of PATH.
wait_path_gone() {
	retry $(($2 * 10)) 0.1 no_channels_on $1 && return 0
	sysp
	die "path $1 still has channels after $2 s"
}
# wait_xfer PID WHAT: bounded wait for a background transfer, which must succeed.
wait_xfer() {
	wait_gone 300 "$2" $1
	wait $1 || { cat /tmp/xfer.err; die "$2 saw an I/O error"; }
}
# The driver shares the load between paths, not channels: with three
# channels over two equal paths (two on path 0, one on path 1), each path
# still moves about half of a write and of a read. Sharing by channel gave
# path 0 two thirds.
step "3 channels on 2 equal paths: each path carries about half"
cattach --channels 3 --path $P0 --path $P1
wait_channels 3 30
[ "$(path_col 0 3)" = 2 ] && [ "$(path_col 1 3)" = 1 ] || { sysp; die "not 2 + 1 channels"; }
dd if=/tmp/data of=$DEV bs=1M count=$mib oflag=direct status=none || die "write on 3 channels failed"
dd if=$DEV of=/dev/null bs=1M count=$mib iflag=direct status=none || die "read on 3 channels failed"
sysp
t0=$(path_col 0 7)
t1=$(path_col 1 7)
share=$((100 * t0 / (t0 + t1)))
echo "3 channels: path 0 moved $t0 bytes, path 1 $t1: path 0 has ${share}%"
[ $share -ge 40 ] && [ $share -le 60 ] || die "paths split ${share}:$((100 - share)), not about even"
$NP detach $DEV

fo_mib=96
head -c ${fo_mib}M /dev/urandom >/tmp/fo

step "status: both paths up, both carrying a write"
cattach --channels 4 --path $P0 --path $P1
wait_channels 4 30
kb=$(cat /sys/block/${DEV#/dev/}/queue/max_sectors_kb)
[ $kb -lt 1024 ] || die "attach left requests at $kb KiB: one 1 MiB request would use one path"
dd if=/tmp/fo of=$DEV bs=1M count=$mib oflag=direct status=none &
w=$!
sleep 0.5
status
busy=0
kill -0 $w 2>/dev/null && busy=1
wait $w || die "writer failed"
[ "$(st 0 2)" = up ] && [ "$(st 1 2)" = up ] || die "status does not show both paths up"
[ "$(st 0 3)" = 2/2 ] && [ "$(st 1 3)" = 2/2 ] || die "status does not show 2 of 2 channels per path"
[ "$(st 0 8)" = 10.77.0.2:$PORT ] && [ "$(st 1 8)" = 10.77.1.2:$PORT ] || die "status shows wrong addresses"
if [ $busy = 1 ]; then
	awk 'NR > 2 && $6 > 0' /tmp/status | wc -l | grep -qx 2 ||
		die "status shows no throughput on a path during the write"
fi

step "path 1 down in the middle of a write, then up again"
md5_fo=$(md5sum </tmp/fo | cut -d' ' -f1)
(dd if=/tmp/fo of=$DEV bs=1M oflag=direct status=none) 2>/tmp/xfer.err &
w=$!
sleep 2
kill -0 $w || die "writer finished before the path went down; nothing tested"
ip -n npcli link set c1 down
wait_path_gone 1 60
status 200
[ "$(st 1 2)" = down ] && [ "$(st 1 3)" = 0/2 ] || die "status does not show path 1 down"
[ "$(st 0 2)" = up ] || die "status does not show path 0 up"
writing=0
kill -0 $w 2>/dev/null && writing=1
ip -n npcli link set c1 up
wait_xfer $w writer
echo "writer was still running when path 1 came back: $writing"
wait_channels 4 60
drop_caches
[ "$(dd if=$DEV bs=1M count=$fo_mib iflag=direct status=none | md5sum | cut -d' ' -f1)" = $md5_fo ] ||
	die "device differs from what was written"
[ "$(head -c ${fo_mib}M /tmp/disk.img | md5sum | cut -d' ' -f1)" = $md5_fo ] ||
	die "served file differs from what was written"

step "path 0 down in the middle of a read, then up again"
(dd if=$DEV bs=1M count=$fo_mib iflag=direct status=none | md5sum >/tmp/read.md5) 2>/tmp/xfer.err &
r=$!
sleep 2
kill -0 $r || die "reader finished before the path went down; nothing tested"
ip -n npcli link set c0 down
wait_path_gone 0 60
ip -n npcli link set c0 up
wait_xfer $r reader
[ "$(cut -d' ' -f1 /tmp/read.md5)" = $md5_fo ] || die "read during failover differs from the served file"

step "both paths carry traffic again"
wait_channels 4 60
b0=$(path_col 0 7)
b1=$(path_col 1 7)
dd if=/tmp/data of=$DEV bs=1M count=16 oflag=direct status=none || die "write after failover failed"
sysp
d0=$(($(path_col 0 7) - b0))
d1=$(($(path_col 1 7) - b1))
echo "moved after failover: path 0 $d0 bytes, path 1 $d1 bytes"
[ $d0 -ge 1048576 ] && [ $d1 -ge 1048576 ] || die "not both paths carried the write after failover"
status 0
[ "$(st 0 2)" = up ] && [ "$(st 1 2)" = up ] || die "status does not show both paths up again"

$NP detach $DEV
stop_server
rmmod nbdplex
check_dmesg
echo "bond: ok"
