# Scenario 5: detach an idle device, detach during writes and reads, detach
# with the background process killed; then rmmod.
#
# The server is nbdplex serve: Debian's nbdkit 1.32 aborts when a client
# drops its connection while several of its threads are still sending
# replies ("raw_send_socket: Assertion `sock >= 0' failed"), which killed
# this scenario's server in 3 of 8 runs on 2026-11-24.
. "$(dirname "$0")/lib.sh"
load_nbdplex
truncate -s 1G /tmp/disk.img
start_server nbdplex /tmp/disk.img

step "detach idle"
attach --path 127.0.0.1:$PORT --channels 2
owner=$(cat /sys/block/${DEV#/dev/}/nbdplex/owner)
kill -0 $owner || die "background process $owner not running"
timeout 30 $NP detach $DEV || die "detach failed"
[ ! -e /sys/block/${DEV#/dev/} ] || die "$DEV still in sysfs"
! kill -0 $owner 2>/dev/null || grep -q '^State:.Z' /proc/$owner/status || die "background process survived detach"
$NP detach $DEV 2>/tmp/err && die "second detach succeeded"
grep -q "no such device" /tmp/err || die "unclear error: $(cat /tmp/err)"
# Module-wide messages carry the module's prefix (pr_fmt); a disk's are
# dev_*() on the disk, which names it once.
dmesg >/tmp/dmesg
grep -q "nbdplex: loaded (major " /tmp/dmesg || die "no 'loaded' line"
grep -q "block ${DEV#/dev/}: channel 0 up (path 0)" /tmp/dmesg || die "no 'channel 0 up' line for $DEV"
grep -q "block ${DEV#/dev/}: removed" /tmp/dmesg || die "no 'removed' line for $DEV"
! grep "nbdplex: nbdplex[0-9]" /tmp/dmesg || die "a message names its disk twice"

step "detach during I/O"
attach --path 127.0.0.1:$PORT --channels 3
dd if=/dev/urandom of=$DEV bs=1M count=400 oflag=direct status=none 2>/tmp/dd-w.err &
w=$!
dd if=$DEV of=/dev/null bs=64k count=16000 iflag=direct status=none 2>/tmp/dd-r.err &
r=$!
sleep 3
timeout 60 $NP detach $DEV || die "detach under I/O failed or hung"
wait_gone 60 "I/O after detach" $w $r
wait $w && die "writer finished without error although detached"
wait $r || true
cat /tmp/dd-w.err

step "detach with the background process gone"
attach --path 127.0.0.1:$PORT --channels 1
owner=$(cat /sys/block/${DEV#/dev/}/nbdplex/owner)
kill $owner
dd if=/dev/zero of=$DEV bs=1M count=8 oflag=direct status=none || die "I/O failed without the background process"
timeout 30 $NP detach $DEV || die "detach failed"

step "rmmod with a device still attached"
attach --path 127.0.0.1:$PORT --channels 2
owner=$(cat /sys/block/${DEV#/dev/}/nbdplex/owner)
kill $owner
retry 50 0.1 gone $owner || true
rmmod nbdplex || die "rmmod failed"
[ ! -e /sys/block/${DEV#/dev/} ] || die "$DEV survived rmmod"
[ ! -e /dev/nbdplex-ctl ] || die "control device still there"
stop_server
check_dmesg
echo "detach: ok"
