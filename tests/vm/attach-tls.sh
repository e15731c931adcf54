# Scenario: nbdplex attach over TLS with the record layer in the kernel,
# against nbdplex serve --tls require. Without the tls module attach fails
# clearly and leaves no device; --check reads through kTLS in TLS 1.3 and
# 1.2 with each cipher kTLS takes; X.509 with two channels carries ext4 and
# the device's checksum equals the served file's; a restarted server gets
# fresh TLS channels from the background process; PSK works, a wrong PSK
# and a plain attach are refused with no device left behind.
. "$(dirname "$0")/lib.sh"
load_nbdplex
T=/tmp/tls
"$(dirname "$0")/../make-pki.sh" $T/pki $T/client || die "making certificates"
echo "alice:$(openssl rand -hex 32)" >$T/keys.psk
echo "alice:$(openssl rand -hex 32)" >$T/wrong.psk
truncate -s 256M /tmp/disk.img
head -c 1M /dev/urandom | dd of=/tmp/disk.img conv=notrunc status=none

# start_server passes these to nbdplex serve.
NPVM_SERVE_OPTS="--tls require --tls-certificates $T/pki --tls-psk $T/keys.psk"
ndev() { ls /sys/block | grep -c '^nbdplex' || true; }

# refused WHY ARGS...: attach must fail, say WHY, and leave no device.
refused() {
	local why=$1 before
	shift
	before=$(ndev)
	if $NP attach --path 127.0.0.1:$PORT "$@" >$T/out 2>$T/err; then
		die "attach $* succeeded: $(cat $T/out)"
	fi
	cat $T/err
	grep -q "$why" $T/err || die "attach $*: expected '$why'"
	[ "$(ndev)" = "$before" ] || die "attach $* left a device behind"
}

start_server nbdplex /tmp/disk.img

step "no kernel TLS: a clear error, no device"
lsmod | grep -q '^tls ' && die "tls loaded before the test"
saved=$(cat /proc/sys/kernel/modprobe)
echo /nonexistent >/proc/sys/kernel/modprobe
refused "kernel TLS unavailable" --tls-certificates $T/client
refused "kernel TLS unavailable" --check --tls-psk $T/keys.psk --tls-username alice
echo "$saved" >/proc/sys/kernel/modprobe
modprobe tls || die "modprobe tls"

step "--check reads through kernel TLS, each version and cipher"
head -c 65536 /tmp/disk.img >$T/head
for prio in "" TLS1.3:AES-128-GCM TLS1.3:CHACHA20-POLY1305 TLS1.2:AES-256-GCM \
	TLS1.2:AES-128-GCM TLS1.2:CHACHA20-POLY1305; do
	opt=()
	[ -n "$prio" ] && opt=(--tls-priority "NORMAL:-VERS-ALL:+VERS-${prio%%:*}:-CIPHER-ALL:+${prio#*:}")
	$NP attach --check --path 127.0.0.1:$PORT --tls-certificates $T/client "${opt[@]}" \
		>$T/check 2>$T/err || { cat $T/err; die "--check ${prio:-default}"; }
	cat $T/err
	grep -q "record layer in the kernel" $T/err || die "--check ${prio:-default}: no kTLS"
	[ -z "$prio" ] || grep -q "${prio%%:*} ${prio#*:}" $T/err || die "not $prio"
	cmp $T/check $T/head || die "--check ${prio:-default}: data differs"
done

step "X.509, two channels, ext4"
head -c 48M /dev/urandom >/tmp/a
attach --path 127.0.0.1:$PORT --channels 2 --dead-timeout 120 --tls-certificates $T/client
wait_channels 2 10
mkfs.ext4 -q -F $DEV
mkdir -p /mnt/fs
mount $DEV /mnt/fs
cp /tmp/a /mnt/fs/a
umount /mnt/fs
drop_caches
mount $DEV /mnt/fs
same /tmp/a /mnt/fs/a
umount /mnt/fs
drop_caches
[ "$(md5sum <$DEV)" = "$(md5sum </tmp/disk.img)" ] || die "device and served file differ"
used=$(awk 'NR > 1 && $6 > 0' /sys/block/${DEV#/dev/}/nbdplex/channels | wc -l)
[ "$used" -ge 2 ] || die "only $used channel(s) carried requests"

step "the server restarts: the channels come back over TLS"
stop_server
sleep 2
[ "$(channels_up)" = 0 ] || die "channels still up with the server gone"
start_server nbdplex /tmp/disk.img
wait_channels 2 60
grep -a "restored" /tmp/attach.log || die "attach log shows no reconnection"
# The restarted server's log: both new channels came in over TLS.
[ "$(grep -c "TLS up (TLS1.3)" /tmp/srv.log)" -ge 2 ] || die "the new channels did not negotiate TLS"
mount $DEV /mnt/fs
same /tmp/a /mnt/fs/a
head -c 8M /dev/urandom >/tmp/b
cp /tmp/b /mnt/fs/b
umount /mnt/fs
drop_caches
mount $DEV /mnt/fs
same /tmp/b /mnt/fs/b
umount /mnt/fs
$NP detach $DEV
[ ! -b $DEV ] || die "$DEV still there after detach"

step "PSK (TLS 1.2, ChaCha20-Poly1305), one channel, raw writes"
head -c 16M /dev/urandom >/tmp/c
attach --path 127.0.0.1:$PORT --tls-psk $T/keys.psk --tls-username alice \
	--tls-priority "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+CHACHA20-POLY1305:+ECDHE-PSK:+PSK"
wait_channels 1 10
dd if=/tmp/c of=$DEV bs=1M seek=100 oflag=direct status=none
drop_caches
dd if=$DEV of=/tmp/c.back bs=1M skip=100 count=16 iflag=direct status=none
same /tmp/c /tmp/c.back
cmp -n 16777216 -i 104857600:0 /tmp/disk.img /tmp/c || die "served file lacks the PSK write"
$NP detach $DEV
grep -q "PSK identity 'alice'" /tmp/srv.log || die "no PSK session in the server log"

step "refusals: wrong PSK, no TLS, unknown CA"
refused "TLS handshake failed" --tls-psk $T/wrong.psk --tls-username alice
refused "the server requires TLS" --channels 1
"$(dirname "$0")/../make-pki.sh" $T/other $T/otherca || die "making certificates"
refused "certificate is not accepted" --tls-certificates $T/otherca

stop_server
rmmod nbdplex
check_dmesg
echo "nbdplex attach over TLS: ok"
