# Helpers for guest scenarios (sourced inside the VM's chroot of the host).
# Every wait is bounded; every server started is remembered by PID and
# stopped by that PID on exit.
set -eu
set -o pipefail
NPVM_BUILD=${NPVM_BUILD:-/work/main/build}
NP=$NPVM_BUILD/nbdplex
NPKO=$NPVM_BUILD/kmod/nbdplex.ko
PORT=10809
step() { echo "--- $*"; }
# die MESSAGE: fails the scenario, with the end of the server's log if any.
die() {
	echo "FAIL: $*"
	[ -s /tmp/srv.log ] && { echo "server log (end):"; tail -20 /tmp/srv.log; }
	exit 1
}
ip link set lo up

# wait_pidfile PIDFILE WHAT: waits up to 10 s for a server (WHAT, in the
# message) to write PIDFILE; fails with the end of its log otherwise.
wait_pidfile() {
	local i
	for i in $(seq 100); do
		[ -s "$1" ] && return 0
		sleep 0.1
	done
	die "$2 did not start"
}

# start_server KIND FILE [PORT]: serves FILE as export "disk" on 127.0.0.1.
# Leaves the server's PID in $SRV_PID.
start_server() {
	local kind=$1 file=$2 port=${3:-$PORT}
	local pidf=/tmp/srv.$kind.$port.pid
	rm -f $pidf
	case $kind in
	nbdkit)
		nbdkit -f -P $pidf -i 127.0.0.1 -p $port file $file >/tmp/srv.log 2>&1 &
		;;
	nbd-server)
		cat >/tmp/nbd-server.conf <<EOC
[generic]
listenaddr = 127.0.0.1
port = $port
[disk]
exportname = $file
EOC
		nbd-server -C /tmp/nbd-server.conf -p $pidf >/tmp/srv.log 2>&1
		;;
	nbdplex)
		[ -x $NP ] || die "no $NP: build the server first"
		# NPVM_SERVE_OPTS: more server options (TLS, say), split on spaces.
		# shellcheck disable=SC2086
		$NP serve -l 127.0.0.1:$port -e disk=file:$file --pidfile $pidf ${NPVM_SERVE_OPTS:-} \
			>/tmp/srv.log 2>&1 &
		;;
	*) die "unknown server $kind" ;;
	esac
	local i
	wait_pidfile $pidf "$kind"
	SRV_PID=$(cat $pidf)
	kill -0 $SRV_PID || die "$kind exited"
	# A pidfile is not a greeting: nbd-server forks per client and is slow
	# to answer in a TCG guest on a busy host. Wait until it greets.
	for i in $(seq 60); do
		timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && head -c 8 <&3" 2>/dev/null |
			grep -q NBDMAGIC && break
		sleep 0.5
	done
	echo "server $kind pid $SRV_PID port $port"
}

stop_server() {
	[ -n "${SRV_PID:-}" ] || return 0
	kill $SRV_PID 2>/dev/null || true
	local i
	for i in $(seq 50); do
		kill -0 $SRV_PID 2>/dev/null || break
		sleep 0.1
	done
	kill -9 $SRV_PID 2>/dev/null || true
	SRV_PID=
}
trap stop_server EXIT

# same FILE1 FILE2 [BYTES]: byte-compare (the first BYTES of) two files.
same() {
	if [ -n "${3:-}" ]; then
		cmp -n $3 "$1" "$2" || die "$1 and $2 differ"
	else
		cmp "$1" "$2" || die "$1 and $2 differ"
	fi
}

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# Loads the freshly built nbdplex.ko (with extra module parameters).
load_nbdplex() {
	[ -f $NPKO ] || die "no $NPKO: build the kmod target first"
	insmod $NPKO "$@" || die "insmod $NPKO failed"
	local i
	for i in $(seq 50); do
		[ -c /dev/nbdplex-ctl ] && return 0
		sleep 0.1
	done
	die "/dev/nbdplex-ctl did not appear"
}

# attach ARGS...: runs nbdplex attach, leaves the device in $DEV.
attach() {
	DEV=$($NP attach --log /tmp/attach.log "$@") || { cat /tmp/attach.log 2>/dev/null; die "attach $* failed"; }
	[ -b "$DEV" ] || die "attach printed '$DEV', not a block device"
	echo "attached $DEV ($*)"
	cat /sys/block/${DEV#/dev/}/nbdplex/channels
}

# The healthy channels of $DEV.
channels_up() { grep -c ' up ' /sys/block/${DEV#/dev/}/nbdplex/channels || true; }

# wait_channels N SECONDS: until $DEV has N healthy channels.
wait_channels() {
	local i
	for i in $(seq $(($2 * 10))); do
		[ "$(channels_up)" -ge $1 ] && return 0
		sleep 0.1
	done
	cat /sys/block/${DEV#/dev/}/nbdplex/channels
	die "$DEV did not get $1 channels within $2 s"
}

# Fails when the kernel logged trouble so far (the host checks again).
check_dmesg() {
	if dmesg | grep -E 'BUG:|Oops|WARNING:|blocked for more than|general protection'; then
		die "kernel reported a problem"
	fi
}

# Reads the device back and compares it, and the served file, with the 96 MiB
# in /tmp/data; then detaches, stops the server, unloads the module and
# checks the kernel log.
verify_96m_and_finish() {
	drop_caches
	dd if=$DEV of=/tmp/back bs=1M count=96 iflag=direct status=none
	same /tmp/data /tmp/back
	$NP detach $DEV
	cmp -n 100663296 /tmp/data /tmp/disk.img || die "served file differs"
	stop_server
	rmmod nbdplex
	check_dmesg
}
