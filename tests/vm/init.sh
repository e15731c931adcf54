#!/bin/sh
# Guest /init: load 9p, mount the host root read-only, give it writable
# scratch areas and run the scenario in a chroot of it.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do
	insmod /mods/$m.ko || echo "init: insmod $m failed"
done
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose host /host; then
	echo "NPVM-RESULT: FAIL (9p mount)"
	poweroff -f
fi
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm 2>/dev/null
mount -t devpts devpts /host/dev/pts
ln -s /proc/self/fd /host/dev/fd
ln -s /proc/self/fd/0 /host/dev/stdin
ln -s /proc/self/fd/1 /host/dev/stdout
ln -s /proc/self/fd/2 /host/dev/stderr
for a in $(cat /proc/cmdline); do
	case $a in
	npvm_script=*) script=${a#npvm_script=} ;;
	npvm_args=*) args=$(echo "${a#npvm_args=}" | tr ',' ' ') ;;
	npvm_build=*) NPVM_BUILD=${a#npvm_build=} ;;
	esac
done
# The scratch tmpfs mounts below would hide a checkout or build that lives
# under them (a CI clone in /tmp, say): keep a view of the host's own tree
# and bind those two back on top.
mkdir -p /hostview
mount --bind /host /hostview
mount -t tmpfs tmp /host/dev/shm
mount -t tmpfs -o size=1200M tmp /host/tmp
mount -t tmpfs tmp /host/run
mount -t tmpfs tmp /host/var/tmp
mount -t tmpfs tmp /host/mnt
repo=${script%/tests/*}
for d in "$repo" "$NPVM_BUILD"; do
	case $d in
	/tmp/* | /run/* | /var/tmp/* | /mnt/* | /dev/shm/*)
		mkdir -p "/host$d"
		mount --bind "/hostview$d" "/host$d" || echo "init: cannot expose $d"
		;;
	esac
done
# No name server is reachable from the guest: make lookups fail at once
# rather than time out (nbd-server resolves its clients' names).
: >/host/run/resolv.conf
mount --bind /host/run/resolv.conf /host/etc/resolv.conf
# The kernel runs its module loader in this root: hand requests to the host's.
mkdir -p /sbin
printf '#!/bin/sh\nexec /bin/chroot /host /sbin/modprobe "$@"\n' >/sbin/modprobe
chmod +x /sbin/modprobe
echo 30 >/proc/sys/kernel/hung_task_timeout_secs
echo 1 >/proc/sys/kernel/sysrq
echo "NPVM: running $script $args"
chroot /host /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp \
	NPVM_BUILD="$NPVM_BUILD" /bin/bash "$script" $args </dev/null 2>&1
rc=$?
echo "NPVM: dmesg follows"
dmesg
if [ $rc -eq 0 ]; then
	echo "NPVM-RESULT: PASS"
else
	echo "NPVM-RESULT: FAIL rc=$rc"
fi
sync
poweroff -f
