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
#        NPVM_MONITOR a unix socket for the qemu monitor, to debug a stuck guest
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

# The newest kernel that has both an image and its modules.
kver=
for d in $(ls -d /lib/modules/*/kernel/fs/9p 2>/dev/null | sort -V); do
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
monitor=(-monitor none)
[ -n "${NPVM_MONITOR:-}" ] && monitor=(-monitor "unix:$NPVM_MONITOR,server,nowait")
# Scenario arguments travel on the kernel command line as one word.
args=$(printf '%s' "$*" | tr ' ' ',')
echo "run.sh: kernel $kver, scenario $(basename "$scenario") ${*:-}, log $log"
timeout --foreground -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg -m "${NPVM_MEM:-2G}" -smp "${NPVM_SMP:-2}" \
	-kernel /boot/vmlinuz-$kver -initrd $work/initrd.gz \
	-append "console=ttyS0 nokaslr nowatchdog cryptomgr.notests rcupdate.rcu_cpu_stall_suppress=1 panic=-1 loglevel=4 npvm_script=$scenario npvm_args=$args npvm_build=$build" \
	-virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
	-nic none -nographic "${monitor[@]}" -serial file:"$log" -no-reboot </dev/null >$work/qemu.out 2>&1
qrc=$?
cat "$log"
fail=0
if [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then
	echo "run.sh: FAIL: VM timed out after ${timeout_s}s"
	fail=1
elif [ $qrc -ne 0 ]; then
	echo "run.sh: FAIL: qemu exited $qrc"; cat $work/qemu.out
	fail=1
fi
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
