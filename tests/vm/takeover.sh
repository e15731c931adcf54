# Scenario: serve --takeover under the kernel's clients. The stock nbd.ko
# (nbd-client, no persist option) and nbdplex.ko (attach, 2 channels), each
# with ext4 and two writers, while the server is replaced 10 times: no I/O
# error in the kernel log, no channel that went down or reconnected, the
# files equal after a remount, and each device's md5 equals its file's.
. "$(dirname "$0")/lib.sh"
ROUNDS=${2:-10}
modprobe nbd nbds_max=1
load_nbdplex
truncate -s 512M /tmp/disk.img /tmp/disk2.img
CTL=/tmp/ctl.sock
SPEC="-e disk=file:/tmp/disk.img -e disk2=file:/tmp/disk2.img --control $CTL"
NPVM_SERVE_OPTS="-e disk2=file:/tmp/disk2.img --control $CTL" start_server nbdplex /tmp/disk.img
head -c 24M /dev/urandom >/tmp/a
head -c 24M /dev/urandom >/tmp/b

step "nbd.ko and nbdplex.ko, ext4 on each"
nbd-client -N disk 127.0.0.1 $PORT /dev/nbd0
attach --path 127.0.0.1:$PORT --channels 2 --export disk2
wait_channels 2 10
mkdir -p /mnt/n /mnt/p
for d in /dev/nbd0 $DEV; do mkfs.ext4 -q -F $d; done
mount /dev/nbd0 /mnt/n
mount $DEV /mnt/p

# writer DIR FILE: copies FILE into DIR again and again (synced each
# time) until /tmp/stop, at most 200 times.
writer() {
	local k
	for k in $(seq 200); do
		[ -e /tmp/stop ] && return 0
		cp $2 $1/$(basename $2).$((k % 3))
		sync $1/$(basename $2).$((k % 3))
	done
}
writers=
for m in /mnt/n /mnt/p; do
	writer $m /tmp/a &
	writers="$writers $!"
	( for k in $(seq 200); do
		[ -e /tmp/stop ] && exit 0
		dd if=/tmp/b of=$m/b bs=1M oflag=direct status=none
	done ) &
	writers="$writers $!"
done

step "$ROUNDS hand-offs while they write"
for i in $(seq $ROUNDS); do
	old=$SRV_PID
	rm -f /tmp/new.$i.pid
	# shellcheck disable=SC2086
	$NP serve --takeover $CTL $SPEC --pidfile /tmp/new.$i.pid >>/tmp/srv.log 2>&1 &
	wait_pidfile /tmp/new.$i.pid "takeover $i"
	wait_gone 60 "old server $old" $old
	grep -q "hand-off: [0-9]* connection(s)" /tmp/srv.log || die "no hand-off logged"
	has_channels 2 || die "a channel went down at hand-off $i"
	for w in $writers; do kill -0 $w 2>/dev/null || die "a writer ended before hand-off $i"; done
	sleep 1
done
touch /tmp/stop
for w in $writers; do
	wait_gone 300 writer $w
	wait $w || die "a writer failed"
done
[ "$(grep -c 'hand-off: 3 connection(s)' /tmp/srv.log)" = $ROUNDS ] ||
	die "not every hand-off moved the 3 connections: $(grep 'hand-off: ' /tmp/srv.log)"

step "remount and compare, then the devices' md5"
umount /mnt/n /mnt/p
drop_caches
mount /dev/nbd0 /mnt/n
mount $DEV /mnt/p
for m in /mnt/n /mnt/p; do
	for f in $m/a.*; do same /tmp/a $f; done
	same /tmp/b $m/b
done
umount /mnt/n /mnt/p
drop_caches
[ "$(md5sum </dev/nbd0)" = "$(md5sum </tmp/disk.img)" ] || die "nbd0 and its file differ"
[ "$(md5sum <$DEV)" = "$(md5sum </tmp/disk2.img)" ] || die "$DEV and its file differ"
# Before the disconnects, which log their own lines: nbdplex.ko logs
# "channel N up" once per channel made and "dropping channel" for one that
# failed; nbd.ko logs timeouts and failed receives.
if dmesg | grep -iE 'I/O error|nbd0: .*(timed out|Receive control failed|Connection)|dropping channel'; then
	die "the kernel logged I/O errors or a dropped channel"
fi
ups=$(dmesg | grep -c "${DEV#/dev/}: channel [0-9]* up" || true)
[ "$ups" = 2 ] || die "nbdplex.ko made $ups channels, not 2: one reconnected"
if grep -aiE 'restored|reconnect' /tmp/attach.log; then die "attach reconnected a channel"; fi
nbd-client -d /dev/nbd0
$NP detach $DEV
# (From the first hand-off on: start_server's greeting probe resets its
# connection before.)
sed -n '/hand-off: process/,$p' /tmp/srv.log | grep -E 'closing:|hand-off failed' &&
	die "a connection closed or a hand-off failed"
stop_server
rmmod nbdplex
check_dmesg
echo "takeover under nbd.ko and nbdplex.ko: ok"
