# Benchmark (not a test): nbdplex.ko against the stock nbd.ko on the same
# server and file, alternating, inside the TCG guest. Prints one line per
# measurement: "PERF driver channels job value unit". Argument: the server.
. "$(dirname "$0")/lib.sh"
kind=${1:-nbdplex}
rounds=${2:-2}
load_nbdplex
modprobe nbd nbds_max=1
truncate -s 1G /tmp/disk.img
start_server $kind /tmp/disk.img
# Make the file's blocks exist, so reads are not served from holes.
dd if=/dev/urandom of=/tmp/disk.img bs=1M count=256 conv=notrunc status=none

measure() { # driver channels device
	local mbs iops
	mbs=$(dd if=/dev/zero of=$3 bs=1M count=256 oflag=direct 2>&1 | awk '/copied/ {print $(NF-1), $NF}')
	echo "PERF $1 $2 dd-write-1M $mbs"
	mbs=$(dd if=$3 of=/dev/null bs=1M count=256 iflag=direct 2>&1 | awk '/copied/ {print $(NF-1), $NF}')
	echo "PERF $1 $2 dd-read-1M $mbs"
	iops=$(fio --name=r --filename=$3 --ioengine=libaio --direct=1 --rw=randread --bs=4k \
		--iodepth=32 --size=256M --runtime=15 --time_based --output-format=terse \
		--terse-version=3 2>/dev/null | awk -F';' '{print $8}')
	echo "PERF $1 $2 fio-randread-4k-qd32 $iops IOPS"
}

for r in $(seq $rounds); do
	for ch in 1 4; do
		nbd-client -C $ch -N disk 127.0.0.1 $PORT /dev/nbd0 >/dev/null
		measure nbd.ko $ch /dev/nbd0
		nbd-client -d /dev/nbd0 >/dev/null
		attach --path 127.0.0.1:$PORT --channels $ch >/dev/null
		measure nbdplex.ko $ch $DEV
		$NP detach $DEV
	done
done
stop_server
rmmod nbdplex
