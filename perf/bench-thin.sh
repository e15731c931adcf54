#!/bin/bash
# perf/bench-thin.sh - the thin engine against the file engine, both served
# by build/nbdplex, with fio's nbd engine: 4k random writes to fresh space,
# to written space, and (thin) to chunks shared with a snapshot; then the
# time `nbdplex volume snapshot` takes on a fully mapped 1 GiB and 64 GiB
# volume, through the running server's control socket.
#
# It builds nothing. Results go to perf/RESULTS-thin.md (or --out); raw fio
# output and server logs to perf/tmp/thin-<time>/.
set -u

usage() {
	cat <<'EOF'
usage: perf/bench-thin.sh [--runtime S] [--rounds N] [--dir DIR] [--out FILE] [--no-64g]
  --runtime S   seconds per fio run (default 8)
  --rounds N    alternating rounds of each write job (default 2; 0: snapshots only)
  --dir DIR     where pools and files live (default /dev/shm)
  --out FILE    report (default perf/RESULTS-thin.md)
  --no-64g      skip populating a 64 GiB volume (1M writes, about a minute)
EOF
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NBDPLEX=${NBDPLEX:-$ROOT/build/nbdplex}
RUNTIME=8
ROUNDS=2
DIR=/dev/shm
OUT=$ROOT/perf/RESULTS-thin.md
BIG=1
ARGS_GIVEN="$*"
. "$ROOT/perf/lib/opts.sh"
bench_args bench-thin.sh --runtime=RUNTIME --rounds=ROUNDS --dir=DIR --out=OUT --no-64g:BIG=0 -- "$@"
[ -x "$NBDPLEX" ] || { echo "bench-thin.sh: no $NBDPLEX; build first" >&2; exit 1; }
command -v fio >/dev/null || { echo "bench-thin.sh: fio is required" >&2; exit 1; }

RAW=$ROOT/perf/tmp/thin-$(date -u +%Y%m%dT%H%M%S)
WORK=$(mktemp -d "$DIR/nbdplex-bench-thin.XXXXXX")
mkdir -p "$RAW"
PIDS=()
cleanup() {
	stop_pids
	rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

PORT=$((22000 + RANDOM % 1000))
SERVER_PID=

# start NAME=ENGINE:SPEC...: one server on a fresh port.
start() {
	PORT=$((PORT + 1))
	rm -f "$WORK/pid"
	"$NBDPLEX" serve -l "127.0.0.1:$PORT" --pidfile "$WORK/pid" "$@" >>"$RAW/server.log" 2>&1 &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	for _ in $(seq 100); do
		[ -s "$WORK/pid" ] && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || die "server exited: $(tail -3 "$RAW/server.log")"
		sleep 0.05
	done
	die "server did not start"
}

stop() {
	kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }

# fio_run TAG EXPORT SIZE EXTRA...: prints "iops cpu_us_per_op".
fio_run() {
	local tag=$1 export=$2 size=$3
	shift 3
	local t0 t1 iops ios hz
	hz=$(getconf CLK_TCK)
	t0=$(cpu_ticks)
	fio --name="$tag" --ioengine=nbd --uri="nbd://127.0.0.1:$PORT/$export" --bs=4k \
		--iodepth=16 --size="$size" --norandommap --randrepeat=0 --output-format=json \
		"$@" >"$RAW/$tag.json" 2>"$RAW/$tag.err" || die "fio $tag failed: $(cat "$RAW/$tag.err")"
	t1=$(cpu_ticks)
	python3 - "$RAW/$tag.json" "$((t1 - t0))" "$hz" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):])["jobs"][0]["write"]  # fio's nbd engine prints first
ios = j["total_ios"] or 1
print("%.0f %.1f" % (j["iops"], int(sys.argv[2]) / int(sys.argv[3]) * 1e6 / ios))
PY
}

declare -A SUM CPU N
# measure KEY TAG EXPORT SIZE EXTRA...: fio_run, its figures added to KEY.
# A failed run ends the bench (die in fio_run only leaves its subshell).
measure() {
	local key=$1 r
	shift
	r=$(fio_run "$@") || exit 1
	set -- $r
	SUM[$key]=$(python3 -c "print(${SUM[$key]:-0} + $1)")
	CPU[$key]=$(python3 -c "print(${CPU[$key]:-0} + $2)")
	N[$key]=$((${N[$key]:-0} + 1))
}

for round in $(seq "$ROUNDS"); do
	# file engine: fresh sparse file, then a written 1 GiB region.
	rm -f "$WORK/file.img"
	start -e f=file:"$WORK/file.img",size=64G
	log "round $round: file"
	measure file_fresh file-fresh-$round f 64G --rw=randwrite --runtime="$RUNTIME" --time_based
	fio_run file-fill-$round f 1G --rw=write --bs=1M >/dev/null
	measure file_written file-written-$round f 1G --rw=randwrite --runtime="$RUNTIME" --time_based
	stop
	rm -f "$WORK/file.img"

	# thin engine: a fresh 64 GiB volume, a written 1 GiB one, and the
	# same after a snapshot (first writes copy chunks).
	# The data file is sparse and as large as the fresh volume and more:
	# a fresh run maps a 64 KiB chunk per write (30k writes per second is
	# 14 GiB in 8 s), of which only the 4 KiB written take memory.
	rm -rf "$WORK/pool" "$WORK/data"
	truncate -s 80G "$WORK/data" || die "truncate"
	"$NBDPLEX" volume init "$WORK/pool" --data "$WORK/data" >/dev/null || die "volume init"
	"$NBDPLEX" volume create "$WORK/pool" fresh 64G || die "create"
	"$NBDPLEX" volume create "$WORK/pool" w 1G || die "create"
	start -e fresh=thin:"$WORK/pool/fresh" -e w=thin:"$WORK/pool/w"
	log "round $round: thin"
	measure thin_fresh thin-fresh-$round fresh 64G --rw=randwrite --runtime="$RUNTIME" --time_based
	fio_run thin-fill-$round w 1G --rw=write --bs=1M >/dev/null
	measure thin_written thin-written-$round w 1G --rw=randwrite --runtime="$RUNTIME" --time_based
	"$NBDPLEX" volume snapshot "$WORK/pool" w snap >/dev/null || die "snapshot"
	measure thin_cow thin-cow-$round w 1G --rw=randwrite --runtime="$RUNTIME" --time_based
	stop
	rm -rf "$WORK/pool" "$WORK/data"
done

# Snapshot time on fully mapped volumes: one 4k write per 64k chunk maps
# every chunk without writing 64 GiB of data (--io_size stops fio after one
# pass; it would otherwise wrap around until it had written --size).
# cmd_ms CMD...: min and median wall time of 5 runs, "min / median" in ms.
# The min is the figure least disturbed by other load on the machine.
cmd_ms() {
	local i t0 t1 all=()
	for i in 1 2 3 4 5; do
		t0=$(date +%s%N)
		"$@" "$i" >/dev/null || die "$* failed"
		t1=$(date +%s%N)
		all+=($(((t1 - t0) / 1000)))
	done
	printf '%s\n' "${all[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f / %.1f", v[1] / 1000, v[3] / 1000 }'
}
snap() { "$NBDPLEX" volume snapshot "$WORK/pool" "$1" "$1-$2-s$3"; }
startup() { "$NBDPLEX" volume --help; }
rm -rf "$WORK/pool"
# 80 GiB of chunks from the start, sparse: init takes an existing data
# file at its size (a pool grows past it only as writes need more).
truncate -s 80G "$WORK/data80" || die "truncate"
"$NBDPLEX" volume init "$WORK/pool" --data "$WORK/data80" >/dev/null || die "volume init"
"$NBDPLEX" volume create "$WORK/pool" v1g 1G
"$NBDPLEX" volume create "$WORK/pool" v64g 64G
start -e v1g=thin:"$WORK/pool/v1g" -e v64g=thin:"$WORK/pool/v64g"
log "mapping every chunk of v1g"
fio_run map-1g v1g 1G --rw=write:60k --io_size=64M --iodepth=32 >/dev/null
BASE=$(cmd_ms startup)
SNAP1=$(cmd_ms snap v1g live)
SNAP64=skipped
if [ "$BIG" = 1 ]; then
	log "mapping every chunk of v64g (1M writes)"
	fio_run map-64g v64g 64G --rw=write:60k --io_size=4G --iodepth=32 >/dev/null
	SNAP64=$(cmd_ms snap v64g live)
fi
"$NBDPLEX" volume list "$WORK/pool" >"$RAW/list.txt"
stop
# Without a server the tool opens the pool itself: the figure includes
# opening RocksDB and loading the allocation bitmap.
DSNAP1=$(cmd_ms snap v1g direct)
DSNAP64=skipped
[ "$BIG" = 1 ] && DSNAP64=$(cmd_ms snap v64g direct)

avg() { [ -n "${N[$1]:-}" ] && python3 -c "print('%.0f' % (${SUM[$1]} / ${N[$1]}))" || echo -; }
cpu() { [ -n "${N[$1]:-}" ] && python3 -c "print('%.1f' % (${CPU[$1]} / ${N[$1]}))" || echo -; }
ratio() { [ -n "${N[$1]:-}" ] && python3 -c "print('%.2f' % (${SUM[$1]} / ${SUM[$2]}))" || echo -; }
{
	echo "# Thin engine vs file engine"
	echo
	echo "Command: \`perf/bench-thin.sh $ARGS_GIVEN\` on $(date -u +%Y-%m-%d), $(nproc) CPUs,"
	echo "pool and files in $DIR, 64 KiB chunks. fio $(fio --version) --ioengine=nbd, 4k"
	echo "random writes, iodepth 16, ${RUNTIME}s per run, mean of $ROUNDS alternating rounds."
	echo "Server CPU per op = (utime + stime of nbdplex over the run) / writes."
	echo
	echo "| job | file IOPS | thin IOPS | thin/file | file CPU us/op | thin CPU us/op |"
	echo "|---|---:|---:|---:|---:|---:|"
	echo "| randwrite 4k, fresh space (64 GiB) | $(avg file_fresh) | $(avg thin_fresh) |" \
		"$(ratio thin_fresh file_fresh) |" \
		"$(cpu file_fresh) | $(cpu thin_fresh) |"
	echo "| randwrite 4k, written 1 GiB | $(avg file_written) | $(avg thin_written) |" \
		"$(ratio thin_written file_written) |" \
		"$(cpu file_written) | $(cpu thin_written) |"
	echo "| randwrite 4k, 1 GiB just snapshotted (copy on write) | - | $(avg thin_cow) | - | - | $(cpu thin_cow) |"
	echo
	echo "Snapshot of a volume whose every chunk is mapped (\`nbdplex volume snapshot\`"
	echo "wall time, min / median of 5 successive snapshots, in ms; each adds a level"
	echo "to the volume's chain). Live: through the running server's control socket."
	echo "Direct: no server, the tool opens the pool. Process start alone"
	echo "(\`nbdplex volume --help\`): $BASE ms."
	echo
	echo "| volume | chunks mapped | live | direct |"
	echo "|---|---:|---:|---:|"
	echo "| 1 GiB | 16384 | $SNAP1 | $DSNAP1 |"
	echo "| 64 GiB | $([ "$BIG" = 1 ] && echo 1048576 || echo -) | $SNAP64 | $DSNAP64 |"
	echo
	echo "Group commit: $(grep '^#' "$RAW/list.txt" | sed 's/.*commits/commits/') while mapping"
	echo "(metadata batches written / writes that allocated, since the server started)."
	echo
	echo "Raw output: \`${RAW#"$ROOT"/}\`."
} >"$OUT"
cat "$OUT"
