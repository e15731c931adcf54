#!/bin/bash
# Boots Debian's kernel under TCG with the host root shared read-only over
# 9p, runs one guest scenario script in a chroot of it, and fails when the
# script fails, the VM times out, or the guest kernel logged a BUG, an Oops,
# a WARNING or a hung task.
#
# usage: run.sh SCENARIO [ARGS...]
#   env: NPVM_BUILD   build directory holding nbdplex and kmod/nbdplex.ko
#        NPVM_TIMEOUT seconds before the VM is killed (default 600)
#        NPVM_MEM     guest memory (default 2G)
#        NPVM_SMP     guest CPUs (default 2)
#        NPVM_CPU     qemu's -cpu model (default qemu's own; "max" for guests
#                     running programs built for newer CPUs, such as Ceph)
#        NPVM_MONITOR a unix socket for the qemu monitor, to debug a stuck guest
#        NPVM_STALL   seconds of console silence taken as a hang (default 300)
#        NPVM_LOG     where to keep the console log (default a temp file)
set -u
here=$(cd "$(dirname "$0")" && pwd)
scenario=${1:?usage: run.sh SCENARIO [ARGS...]}
shift
case $scenario in
/*) ;;
*) scenario=$here/$scenario ;;
esac
[ -f "$scenario" ] || { echo "run.sh: no scenario $scenario" >&2; exit 2; }
build=${NPVM_BUILD:-$(cd "$here/../.." && pwd)/build}
timeout_s=${NPVM_TIMEOUT:-600}
stall_s=${NPVM_STALL:-300}

# The kernel nbdplex.ko was built for (kmod/kmod.cmake picks the newest
# supported headers), else the newest that has both an image and modules.
kver=
if [ -f "$build/kmod/nbdplex.ko" ] && command -v modinfo >/dev/null; then
	v=$(modinfo -F vermagic "$build/kmod/nbdplex.ko" | cut -d' ' -f1)
	[ -r "/boot/vmlinuz-$v" ] && [ -d "/lib/modules/$v/kernel/fs/9p" ] && kver=$v
fi
[ -n "$kver" ] || for d in $(ls -d /lib/modules/*/kernel/fs/9p 2>/dev/null | sort -V); do
	v=${d#/lib/modules/}
	v=${v%%/*}
	[ -r "/boot/vmlinuz-$v" ] && kver=$v
done
[ -n "$kver" ] || { echo "run.sh: no /boot/vmlinuz-* with 9p modules (apt-get install linux-image-amd64)" >&2; exit 2; }
for t in qemu-system-x86_64 busybox cpio; do
	command -v $t >/dev/null || { echo "run.sh: $t missing (apt-get install qemu-system-x86 busybox-static cpio)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/npvm.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/initramfs
mkdir -p $root/bin $root/mods $root/proc $root/sys $root/dev $root/host
cp "$(command -v busybox)" $root/bin/busybox
ln -s busybox $root/bin/sh
mods="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p"
for m in $mods; do
	f=$(find /lib/modules/$kver/kernel -name "$m.ko*" | head -n 1)
	[ -n "$f" ] || { echo "run.sh: module $m not found for $kver" >&2; exit 2; }
	case $f in
	*.xz) xz -dc "$f" >$root/mods/$m.ko ;;
	*.zst) zstd -qdc "$f" >$root/mods/$m.ko ;;
	*) cp "$f" $root/mods/$m.ko ;;
	esac
done
echo "$mods" >$root/mods/order
cp "$here/init.sh" $root/init
chmod +x $root/init
(cd $root && find . | cpio -o -H newc --quiet) | gzip -1 >$work/initrd.gz

log=${NPVM_LOG:-$work/console.log}
: >"$log"
monitor=(-monitor none)
[ -n "${NPVM_MONITOR:-}" ] && monitor=(-monitor "unix:$NPVM_MONITOR,server,nowait")
# A second monitor, on a pipe, for the watchdog below.
mkfifo $work/wd.in
: >$work/wd.out
monitor+=(-chardev "pipe,id=wd,path=$work/wd" -mon chardev=wd,mode=readline)

# A hung guest is often silent: tasks in killable sleeps, or waiting for
# direct I/O (which wakes up every half hung-task timeout on purpose), never
# trip the hung-task detector (init.sh sets it to 30 s). When the console
# stays silent for stall_s seconds, or the VM is about to time out, ask the
# guest's kernel for its blocked tasks, all tasks and every CPU's stack
# (SysRq through the keyboard; 9 first raises the console log level so that
# the dumps show), then stop it.
watchdog() {
	local t=0 quiet=0 size last=-1 k
	while [ $t -lt $timeout_s ]; do
		sleep 5
		t=$((t + 5))
		size=$(stat -c %s "$log" 2>/dev/null || echo 0)
		if [ "$size" = "$last" ]; then quiet=$((quiet + 5)); else quiet=0; last=$size; fi
		[ $quiet -ge $stall_s ] || [ $t -ge $((timeout_s - 40)) ] || continue
		echo "guest console silent for ${quiet}s after ${t}s" >$work/stalled
		for k in 9 w t l; do
			echo "sendkey alt-sysrq-$k" >$work/wd.in
			sleep 3
		done
		sleep 20
		echo quit >$work/wd.in
		return
	done
}
# Scenario arguments travel on the kernel command line as one word.
args=$(printf '%s' "$*" | tr ' ' ',')
echo "run.sh: kernel $kver, scenario $(basename "$scenario") ${*:-}, log $log"
watchdog &
wd_pid=$!
timeout --foreground -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg ${NPVM_CPU:+-cpu "$NPVM_CPU"} -m "${NPVM_MEM:-2G}" -smp "${NPVM_SMP:-2}" \
	-kernel /boot/vmlinuz-$kver -initrd $work/initrd.gz \
	-append "console=ttyS0 nokaslr nowatchdog cryptomgr.notests rcupdate.rcu_cpu_stall_suppress=1 panic=-1 loglevel=5 npvm_script=$scenario npvm_args=$args npvm_build=$build" \
	-virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
	-nic none -nographic "${monitor[@]}" -serial file:"$log" -no-reboot </dev/null >$work/qemu.out 2>&1
qrc=$?
kill $wd_pid 2>/dev/null
wait $wd_pid 2>/dev/null
cat "$log"
fail=0
if [ -f $work/stalled ]; then
	echo "run.sh: FAIL: $(cat $work/stalled): stopped it (blocked tasks and CPU stacks above)"
	fail=1
fi
if [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then
	echo "run.sh: FAIL: VM timed out after ${timeout_s}s"
	fail=1
elif [ $qrc -ne 0 ]; then
	echo "run.sh: FAIL: qemu exited $qrc"; cat $work/qemu.out
	fail=1
fi
# loglevel=5 puts warnings (a request timed out, a channel dropped) on the
# console as they happen, not only in the dmesg at the end.
# The soft-lockup and RCU-stall detectors are off (nowatchdog above): a TCG
# guest on a busy host loses whole seconds of CPU and they fire on that.
# Crypto self-tests are skipped (cryptomgr.notests): one hung a TCG boot.
# Kernel lines carry a [seconds] stamp, which keeps tool output out of this.
if grep -aE '^\[ *[0-9]+\.[0-9]+\].*(BUG:|Oops|WARNING:|blocked for more than|general protection|Kernel panic|Call Trace)' "$log"; then
	echo "run.sh: FAIL: guest kernel reported a problem (see above)"
	fail=1
fi
if ! grep -aq '^NPVM-RESULT: PASS' "$log"; then
	echo "run.sh: FAIL: scenario did not report PASS"
	fail=1
fi
[ $fail -eq 0 ] && echo "run.sh: PASS $(basename "$scenario") ${*:-}"
exit $fail
