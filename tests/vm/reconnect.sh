# Scenario 4: the server is killed and restarted in the middle of a write;
# attach's background process reconnects, the writer sees no error, and
# the data is all there.
. "$(dirname "$0")/lib.sh"
kind=${1:-nbdkit}
load_nbdplex
truncate -s 512M /tmp/disk.img
start_server $kind /tmp/disk.img
head -c 96M /dev/urandom >/tmp/data
attach --path 127.0.0.1:$PORT --channels 2 --dead-timeout 60
wait_channels 2 10

step "kill the server mid-write"
dd if=/tmp/data of=$DEV bs=256k oflag=direct status=none 2>/tmp/dd.err &
w=$!
# Kill once the writer has moved 8 MiB, not after a fixed time: on a fast
# host 96 MiB can be done in seconds.
ch=/sys/block/${DEV#/dev/}/nbdplex/channels
moved_8m() { [ "$(awk 'NR > 1 {s += $7} END {print s + 0}' $ch)" -ge 8388608 ]; }
retry 100 0.05 moved_8m || true
kill -0 $w || die "writer finished before the server was killed; nothing tested"
kill -9 $SRV_PID
SRV_PID=
sleep 2
channels_up | grep -qx 0 || die "channels still up with the server gone"
start_server $kind /tmp/disk.img
wait_channels 2 30
wait_gone 240 writer $w
wait $w || { cat /tmp/dd.err; die "writer saw an error"; }
grep -a "restored" /tmp/attach.log || die "attach log shows no reconnection"

step "verify"
verify_96m_and_finish
echo "reconnect against $kind: ok"
