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

# retry TIMES PAUSE COMMAND...: runs COMMAND until it succeeds, at most
# TIMES times with PAUSE seconds between tries; returns 1 if it never did.
retry() {
	local _tries=$1 _pause=$2
	shift 2
	until "$@"; do
		_tries=$((_tries - 1))
		[ $_tries -gt 0 ] || return 1
		sleep $_pause
	done
}

# gone PID...: whether every PID has exited.
gone() {
	local p
	for p; do
		! kill -0 $p 2>/dev/null || return 1
	done
}

# wait_gone SECONDS WHAT PID...: waits for every PID to exit; fails with
# "WHAT stuck" after SECONDS.
wait_gone() {
	local _secs=$1 _what=$2
	shift 2
	retry $((_secs * 5)) 0.2 gone "$@" || die "$_what stuck"
}

# wait_pidfile PIDFILE WHAT: waits up to 10 s for a server (WHAT, in the
# message) to write PIDFILE, and leaves its PID in $SRV_PID; fails with the
# end of its log otherwise.
wait_pidfile() {
	retry 100 0.1 test -s "$1" || die "$2 did not start"
	SRV_PID=$(cat "$1")
}

# greets HOST PORT [PREFIX...]: whether an NBD server answers there with its
# greeting; PREFIX runs the check elsewhere (ip netns exec NS, say).
greets() {
	"${@:3}" timeout 5 bash -c "exec 3<>/dev/tcp/$1/$2 && head -c 8 <&3" 2>/dev/null |
		grep -q NBDMAGIC
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
	wait_pidfile $pidf "$kind"
	kill -0 $SRV_PID || die "$kind exited"
	# A pidfile is not a greeting: nbd-server forks per client and is slow
	# to answer in a TCG guest on a busy host. Wait until it greets.
	retry 60 0.5 greets 127.0.0.1 $port || die "$kind does not greet on port $port"
	echo "server $kind pid $SRV_PID port $port"
}

stop_server() {
	[ -n "${SRV_PID:-}" ] || return 0
	kill $SRV_PID 2>/dev/null || true
	retry 50 0.1 gone $SRV_PID || kill -9 $SRV_PID 2>/dev/null || true
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
	retry 50 0.1 test -c /dev/nbdplex-ctl || die "/dev/nbdplex-ctl did not appear"
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
# has_channels N: whether $DEV has N healthy channels or more.
has_channels() { [ "$(channels_up)" -ge $1 ]; }

# wait_channels N SECONDS: until $DEV has N healthy channels.
wait_channels() {
	retry $(($2 * 10)) 0.1 has_channels $1 && return 0
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
