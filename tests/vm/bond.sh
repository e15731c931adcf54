# Channel bonding over two NIC paths (issues 6 and 29). A client and a
# server network namespace are joined by two veth pairs on two subnets (the
# paths) and by two more veth pairs enslaved to a balance-rr bond in each
# namespace (Linux's own bonding, for comparison). Every veth end is shaped
# by tbf, both directions alike: path 0 (and the bond's first link) to
# 40 Mbit/s, path 1 (and the bond's second link) to RATE1, optionally behind
# netem delays.
#
# "test" mode checks what can fail, with path 1 at half the rate of path 0:
# the driver learns each path's rate, so each path carries a share of a
# write and a read in proportion to its rate (within 15%); `nbdplex attach
# --status` shows both paths up with their rates; a path taken down in the
# middle of a write and of a read costs no I/O error and the data compares
# equal to the served file; status shows the path down, then up again once
# it is back; and both paths carry traffic afterwards.
#
# "perf" mode measures one single-threaded dd writer and reader (1 MiB,
# O_DIRECT) per round in four setups, and prints "BOND SETUP/CONFIG DIR
# MB/s" lines, never asserted (perf/bench-bond.sh records them): 40/20 and
# 40/40 Mbit/s (each path alone, both, the balance-rr bond); 40/40 with 1
# and 20 ms of delay; and 40/40 where path 1 drops to 10 Mbit/s two seconds
# into a write ("BONDT" lines: the throughput every half second).
#
# usage: bond.sh [test|perf] [ROUNDS] [MIB] [SETUP...]
#   defaults: test 1 16; perf/bench-bond.sh runs "perf 3 64"; SETUPs (perf
#   only; default all): 40-20 40-40 40-40-1ms-20ms drop. A SETUP of the
#   form alt=DIR (DIR under $NPVM_BUILD, holding nbdplex and
#   kmod/nbdplex.ko: another version) also runs the other setups with that
#   version in every round, right after this build's, both paths only
#   (labelled DIR:SETUP/both, and DIR:ROUND for the drop), so that two
#   drivers compare on the same host load.
. "$(dirname "$0")/lib.sh"
mode=${1:-test}
case $mode in test | perf) ;; *) die "mode is test or perf, not $mode" ;; esac
rounds=${2:-1}
mib=${3:-$([ $mode = perf ] && echo 64 || echo 16)}
setups=
alts=
alt=
for a in "${@:4}"; do
	case $a in
	alt=*) alts="$alts ${a#alt=}" ;;
	*) setups="$setups $a" ;;
	esac
done
setups="$setups "
[ "$setups" != " " ] || setups=" 40-20 40-40 40-40-1ms-20ms drop "
for a in $alts; do
	[ -f $NPVM_BUILD/$a/nbdplex ] && [ -f $NPVM_BUILD/$a/kmod/nbdplex.ko ] ||
		die "alt=$a: no $NPVM_BUILD/$a/nbdplex and kmod/nbdplex.ko"
done
# want SETUP: whether this run measures SETUP.
want() { [[ $setups == *" $1 "* ]]; }
# 40 Mbit/s is 5 MB/s. The bucket holds one full-size (64 KiB) TSO burst,
# and the queue about 50 ms of traffic: enough that one TCP flow fills its
# path, little enough that requests are not stuck behind seconds of queue.
RATE0=40mbit
RATE1=20mbit
BURST=64kb
LATENCY=50ms
CLI="ip netns exec npcli"
SRV="ip netns exec npsrv"
XFER_TIMEOUT=300

modprobe bonding max_bonds=0 || die "no bonding module"
modprobe sch_tbf || die "no tbf qdisc"
modprobe sch_netem || die "no netem qdisc"
modprobe nbd nbds_max=1 || die "no nbd module"
# A request stuck on a dead path moves to the other after 5 s.
load_nbdplex io_timeout=5

step "namespaces, two shaped paths and a balance-rr bond"
ip netns add npcli
ip netns add npsrv
ip -n npcli link set lo up
ip -n npsrv link set lo up
# shape NS DEV RATE [DELAY]: tbf at RATE, behind a netem DELAY when given.
# Replacing the root each time also takes an earlier delay away; a delay
# starts from an empty root, since netem's tbf child of an earlier delay
# would refuse the new one.
shape() {
	if [ -n "${4:-}" ]; then
		ip netns exec $1 tc qdisc del dev $2 root 2>/dev/null || :
		ip netns exec $1 tc qdisc add dev $2 root handle 1: netem delay $4 limit 10000
		ip netns exec $1 tc qdisc add dev $2 parent 1:1 handle 10: tbf rate $3 burst $BURST latency $LATENCY
	else
		ip netns exec $1 tc qdisc replace dev $2 root tbf rate $3 burst $BURST latency $LATENCY
	fi
}
# links RATE0 RATE1 [DELAY0 DELAY1]: shapes path 0 and the bond's first link
# (both ends) like each other, path 1 and the bond's second link likewise.
links() {
	local r=($1 $2) d=(${3:-} ${4:-}) i ns
	for i in 0 1; do
		for ns in npcli npsrv; do
			shape $ns ${ns:2:1}$i ${r[$i]} ${d[$i]:-}
			shape $ns b${ns:2:1}$i ${r[$i]} ${d[$i]:-}
		done
	done
}
for i in 0 1; do
	ip link add c$i netns npcli type veth peer name s$i netns npsrv
	ip -n npcli addr add 10.77.$i.1/24 dev c$i
	ip -n npsrv addr add 10.77.$i.2/24 dev s$i
	ip -n npcli link set c$i up
	ip -n npsrv link set s$i up
done
for ns in npcli npsrv; do
	ip -n $ns link add bond0 type bond mode balance-rr miimon 100
done
for i in 0 1; do
	ip link add bc$i netns npcli type veth peer name bs$i netns npsrv
	ip -n npcli link set bc$i master bond0
	ip -n npsrv link set bs$i master bond0
	ip -n npcli link set bc$i up
	ip -n npsrv link set bs$i up
done
links $RATE0 $RATE1
ip -n npcli addr add 10.77.9.1/24 dev bond0
ip -n npsrv addr add 10.77.9.2/24 dev bond0
ip -n npcli link set bond0 up
ip -n npsrv link set bond0 up
$CLI grep -q balance-rr /sys/class/net/bond0/bonding/mode || die "bond0 is not balance-rr"
$CLI tc qdisc show | grep -c tbf | grep -qx 4 || { $CLI tc qdisc show; die "client side not shaped"; }
$SRV tc qdisc show | grep -c tbf | grep -qx 4 || { $SRV tc qdisc show; die "server side not shaped"; }
$CLI tc qdisc show dev c1 | grep -q 'rate 20Mbit' || { $CLI tc qdisc show dev c1; die "path 1 not at 20 Mbit/s"; }
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
# setup NAME RATE0 RATE1 [DELAY0 DELAY1]: reshapes the links, then measures
# each path alone (two channels), both (two channels each) and the bond;
# with another version loaded ($alt), both paths only.
setup() {
	local n=$1
	shift
	links "$@"
	if [ -n "$alt" ]; then
		measure_plex $alt:$n/both 4 - $P0 $P1
		return
	fi
	measure_plex $n/path0 2 - $P0
	measure_plex $n/path1 2 - $P1
	measure_plex $n/both 4 - $P0 $P1
	measure_nbd $n/bond-rr $PB
}
# drop ROUND: 40/40, path 1 falls to 10 Mbit/s two seconds into a write of
# twice $mib MiB over both paths (the data file twice: some 9 s after the
# change at 32 MiB, enough to see whether it settles within 3 s). About every quarter second a "BONDT ROUND MS
# BYTES" line: milliseconds since the write began, bytes both paths moved.
# Builtins only in the loop: a fork costs a TCG guest a tenth of a second.
drop() {
	local t0 el w i=0 changed=0 tot f n k
	links $RATE0 $RATE0
	cattach --channels 4 --path $P0 --path $P1
	wait_channels 4 30
	cat /tmp/data /tmp/data |
		dd of=$DEV bs=1M iflag=fullblock oflag=direct status=none 2>/tmp/xfer.err &
	w=$!
	t0=${EPOCHREALTIME/./}
	while kill -0 $w 2>/dev/null && [ $i -lt 2400 ]; do
		el=$(((${EPOCHREALTIME/./} - t0) / 1000))
		# One read of the whole file: sysfs makes it anew on each seek,
		# which reading line by line does.
		f=()
		read -r -d '' -a f </sys/block/${DEV#/dev/}/nbdplex/paths || :
		n=0
		while [ $n -lt ${#f[@]} ] && ! [[ ${f[n]} =~ ^[0-9]+$ ]]; do n=$((n + 1)); done
		tot=0
		for ((k = n + 6; n && k < ${#f[@]}; k += n)); do tot=$((tot + f[k])); done
		echo "BONDT $1 $el $tot"
		if [ $changed = 0 ] && [ $el -ge 2000 ]; then
			for ns in npcli npsrv; do
				ip netns exec $ns tc qdisc change dev ${ns:2:1}1 root tbf rate 10mbit \
					burst $BURST latency $LATENCY
			done
			echo "BONDT $1 change"
			changed=1
		fi
		i=$((i + 1))
		sleep 0.25
	done
	wait_xfer $w "writer during the rate drop"
	[ $changed = 1 ] || die "the write ended before path 1 slowed down"
	ch
	$NP detach $DEV
}

: >/tmp/bond.results
for r in $(seq $rounds); do
	[ $mode = perf ] || break
	step "round $r of $rounds: ${mib} MiB per transfer; load: $(cat /proc/loadavg)"
	for alt in "" $alts; do
		# Each version in turn, loaded afresh with the same parameters.
		rmmod nbdplex || die "rmmod nbdplex failed"
		NP=$NPVM_BUILD/${alt:+$alt/}nbdplex
		NPKO=$NPVM_BUILD/${alt:+$alt/}kmod/nbdplex.ko
		load_nbdplex io_timeout=5
		! want 40-20 || setup 40-20 $RATE0 $RATE1
		! want 40-40 || setup 40-40 $RATE0 $RATE0
		! want 40-40-1ms-20ms || setup 40-40-1ms-20ms $RATE0 $RATE0 1ms 20ms
		! want drop || drop ${alt:+$alt:}$r
	done
done
alt=
if [ $mode = perf ]; then
	links $RATE0 $RATE1
	stop_server
	exit 0
fi

# mark: both paths' byte totals now, in $m0 and $m1.
mark() { m0=$(path_col 0 7); m1=$(path_col 1 7); }
# The driver shares the load between paths by their rates, not by channels:
# path 0 here is the slow path (20 Mbit/s) with two channels, path 1 the
# fast one (40 Mbit/s) with one. By rate the fast path moves two thirds of
# a write and a read; by bytes in flight alone (the driver before issue 29)
# each path moved half, and by channel it would move one third.
step "3 channels, 2 on the slow path: each path carries its rate's share"
cattach --channels 3 --path $P1 --path $P0
wait_channels 3 30
[ "$(path_col 0 3)" = 2 ] && [ "$(path_col 1 3)" = 1 ] || { sysp; die "not 2 + 1 channels"; }
# The rates are learnt from the first completions: measure after them.
dd if=/tmp/data of=$DEV bs=1M count=4 oflag=direct status=none || die "warm-up write failed"
sysp
mark
dd if=/tmp/data of=$DEV bs=1M count=$mib oflag=direct status=none || die "write on 3 channels failed"
dd if=$DEV of=/dev/null bs=1M count=$mib iflag=direct status=none || die "read on 3 channels failed"
sysp
d0=$(($(path_col 0 7) - m0))
d1=$(($(path_col 1 7) - m1))
fast=$((1000 * d1 / (d0 + d1)))
echo "3 channels: slow path moved $d0 bytes, fast path $d1: fast path has ${fast} per mille"
# Each share within 15% of its rate's: the fast one's 667 +-100, the slow
# one's 333 +-50, so the fast path's 617..717.
[ $fast -ge 617 ] && [ $fast -le 717 ] ||
	die "paths split $((1000 - fast)):$fast per mille, not 333:667 within 15%"
r0=$(path_col 0 8)
r1=$(path_col 1 8)
echo "learnt rates: slow path $r0 kB/s, fast path $r1 kB/s"
[ "$r0" -gt 0 ] && [ "$r1" -gt "$r0" ] || die "the driver's rates do not rank the paths"
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
[ "$(st 0 9)" = 10.77.0.2:$PORT ] && [ "$(st 1 9)" = 10.77.1.2:$PORT ] || die "status shows wrong addresses"
# The driver's estimate of each path's rate, in MB/s: path 0 has twice the rate.
awk 'NR > 2 && $7 > 0' /tmp/status | wc -l | grep -qx 2 || die "status shows no rate for a path"
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
