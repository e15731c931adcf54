#!/bin/bash
# Installs what nbdplex needs from Debian's packages (run as root).
#   scripts/install-deps.sh          build dependencies only
#   scripts/install-deps.sh --all    also every peer the tests drive, and what
#                                    the kernel-driver VM tests boot
set -euo pipefail

build=(cmake gcc make pkg-config libuv1-dev libjemalloc-dev libinih-dev
       librocksdb-dev libgnutls28-dev libsystemd-dev
       libmicrohttpd-dev libnbd-dev valgrind librbd-dev librados-dev)
# (valgrind for <valgrind/valgrind.h>: storage/lib/aio.c asks whether it runs
# under valgrind, so it must be there at the first build)
tests=(libnbd-bin python3-libnbd qemu-utils fio nbdkit nbd-server nbd-client
       util-linux e2fsprogs strace procps openssl dpkg-dev groff-base man-db
       systemd clang libclang-rt-14-dev linux-perf
       ceph-mon ceph-osd ceph-common uuid-runtime qemu-block-extra)
# (ceph-mon, ceph-osd and ceph-common's rbd and ceph CLIs run the rbd tests'
# throwaway cluster, tests/rbd/cluster.sh; qemu-block-extra is qemu-nbd's rbd
# driver, for perf/bench-rbd.sh)
vm=(qemu-system-x86 linux-image-amd64 linux-headers-amd64 busybox-static kmod cpio
    mdadm)

pkgs=("${build[@]}")
if [ "${1:-}" = "--all" ]; then
	pkgs+=("${tests[@]}" "${vm[@]}")
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: everything is installed"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: need root to install: ${missing[*]}" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
