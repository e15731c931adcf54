#!/bin/bash
# perf/bench-diff.sh - the cost of the dirty-map walk behind
# qemu:dirty-bitmap:SNAP, `volume diff` and `export --since` (issue 26).
#
# 1. build/diff_walk (perf/diff_walk.c) on generated maps: a 64 GiB volume
#    with 1% and with 50% of its chunks changed since a snapshot, and 1 GiB,
#    64 GiB and 1 TiB volumes with the same 1000 changed chunks, to show
#    how the walk grows with what changed and with the volume.
# 2. End to end against the peer a user would pick, qemu-nbd serving a
#    qcow2 with a persistent dirty bitmap (qemu-img bitmap --add): the same
#    64 KiB writes at the same random chunks of a 16 GiB disk, 1% of it, on
#    both, then `nbdinfo --map=qemu:dirty-bitmap:...` of the whole disk,
#    timed in alternating rounds (median), and `nbdplex volume diff`.
#
# It builds nothing (diff_walk is built with the thin engine). Results are
# appended to perf/RESULTS-thin.md (or --out) as their own section.
set -u

usage() {
	cat <<'EOF'
usage: perf/bench-diff.sh [--dir DIR] [--out FILE] [--rounds N] [--no-e2e]
  --dir DIR     where pools and images live (default /dev/shm)
  --out FILE    report to append to (default perf/RESULTS-thin.md)
  --rounds N    timed rounds of each end-to-end map (default 5)
  --no-e2e      only the generated maps (part 1)
EOF
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
NBDPLEX=${NBDPLEX:-$BUILD/nbdplex}
DIFF_WALK=${DIFF_WALK:-$BUILD/diff_walk}
DIR=/dev/shm
OUT=$ROOT/perf/RESULTS-thin.md
ROUNDS=5
E2E=1
ARGS_GIVEN="$*"
. "$ROOT/perf/lib/opts.sh"
bench_args bench-diff.sh --dir=DIR --out=OUT --rounds=ROUNDS --no-e2e:E2E=0 -- "$@"
for t in "$NBDPLEX" "$DIFF_WALK"; do
	[ -x "$t" ] || { echo "bench-diff.sh: $t is not built" >&2; exit 1; }
done
WORK=$(mktemp -d "$DIR/bench-diff.XXXXXX")
PIDS=() # the two servers this script starts
trap '[ ${#PIDS[@]} = 0 ] || { kill "${PIDS[@]}"; wait "${PIDS[@]}"; } 2>/dev/null; rm -rf "$WORK"' EXIT

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ---- 1. generated maps
walk_rows=()
for c in "64 1%" "64 50%" "1 1000" "64 1000" "1024 1000"; do
	rm -rf "$WORK/walk"
	# shellcheck disable=SC2086
	row=$("$DIFF_WALK" "$WORK/walk" $c) || { echo "diff_walk $c failed" >&2; exit 1; }
	echo "$row"
	walk_rows+=("$row")
done
rm -rf "$WORK/walk"

# ---- 2. end to end against qemu-nbd
e2e_rows=()
if [ "$E2E" = 1 ]; then
	for t in qemu-img qemu-io qemu-nbd nbdinfo; do
		command -v $t >/dev/null || { echo "bench-diff.sh: $t missing" >&2; exit 1; }
	done
	SIZE_G=16
	CHANGED=$((SIZE_G * 16384 / 100)) # 1% of the 64 KiB chunks
	python3 - "$SIZE_G" "$CHANGED" >"$WORK/cmds" <<'PY'
import random, sys
size_g, k = int(sys.argv[1]), int(sys.argv[2])
rnd = random.Random(26)
for c in sorted(rnd.sample(range(size_g * 16384), k)):
    print(f"write -P {c % 251 + 1} {c * 65536} 64k")
PY
	mapfile -t cmds <"$WORK/cmds"
	qargs=()
	for c in "${cmds[@]}"; do qargs+=(-c "$c"); done

	pool=$WORK/pool
	"$NBDPLEX" volume init "$pool" --chunk-size 64K >/dev/null || exit 1
	"$NBDPLEX" volume create "$pool" v ${SIZE_G}G || exit 1
	"$NBDPLEX" volume snapshot "$pool" v s1 || exit 1
	port=$(free_port)
	"$NBDPLEX" serve -l "127.0.0.1:$port" -e v=thin:"$pool/v" --pidfile "$WORK/np.pid" \
		>"$WORK/np.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do [ -s "$WORK/np.pid" ] && break; sleep 0.1; done
	qemu-io -f raw "nbd://127.0.0.1:$port/v" "${qargs[@]}" >/dev/null || exit 1

	img=$WORK/q.qcow2
	qemu-img create -q -f qcow2 "$img" ${SIZE_G}G || exit 1
	qemu-img bitmap --add --granularity 64k "$img" b0 || exit 1
	qemu-io -f qcow2 "$img" "${qargs[@]}" >/dev/null || exit 1
	qport=$(free_port)
	qemu-nbd -t -r -f qcow2 -B b0 -p "$qport" -x q "$img" >"$WORK/qemu.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do nbdinfo --size "nbd://127.0.0.1:$qport/q" >/dev/null 2>&1 && break; sleep 0.1; done

	# map URI CONTEXT: seconds of one nbdinfo --map, and the dirty bytes
	map() {
		local t0 t1
		t0=$(date +%s.%N)
		nbdinfo --map="$2" "$1" >"$WORK/map" || exit 1
		t1=$(date +%s.%N)
		echo "$t0 $t1 $(awk '$3 == 1 { s += $2 } END { print s + 0 }' "$WORK/map")"
	}
	np_t=() q_t=()
	for r in $(seq "$ROUNDS"); do
		read -r a b np_dirty < <(map "nbd://127.0.0.1:$port/v" qemu:dirty-bitmap:s1)
		np_t+=("$(awk -v a="$a" -v b="$b" 'BEGIN { print b - a }')")
		read -r a b q_dirty < <(map "nbd://127.0.0.1:$qport/q" qemu:dirty-bitmap:b0)
		q_t+=("$(awk -v a="$a" -v b="$b" 'BEGIN { print b - a }')")
	done
	[ "$np_dirty" = $((CHANGED * 65536)) ] && [ "$q_dirty" = "$np_dirty" ] || {
		echo "bench-diff.sh: dirty bytes nbdplex $np_dirty, qemu-nbd $q_dirty, expected $((CHANGED * 65536))" >&2
		exit 1
	}
	median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
	np_med=$(median "${np_t[@]}")
	q_med=$(median "${q_t[@]}")
	t0=$(date +%s.%N)
	"$NBDPLEX" volume diff "$pool" s1 v >"$WORK/diff" || exit 1
	t1=$(date +%s.%N)
	diff_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
	ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
	secs() { awk -v a="$1" 'BEGIN { printf "%.4f s", a }'; }
	e2e_rows+=("| nbdplex, thin volume, qemu:dirty-bitmap:s1 | $(secs "$np_med") | $(ratio "$np_med" "$q_med") |")
	e2e_rows+=("| qemu-nbd, qcow2 with bitmap b0 | $(secs "$q_med") | 1.00 |")
	e2e_rows+=("| \`nbdplex volume diff\` (a process and the control socket, $(wc -l <"$WORK/diff") ranges) | $(secs "$diff_s") | $(ratio "$diff_s" "$q_med") |")
	printf '%s\n' "${e2e_rows[@]}"
fi

{
	echo
	echo "## Dirty-map walk (issue 26)"
	echo
	echo "\`perf/bench-diff.sh${ARGS_GIVEN:+ $ARGS_GIVEN}\` on $(date -u +%Y-%m-%d), $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), in $DIR."
	echo "Generated maps (perf/diff_walk.c: mappings put straight into RocksDB, the pool reopened,"
	echo "\`thin_admin_diff\` over the whole volume, median of 5):"
	echo
	echo "| volume | changed chunks (64 KiB) | ranges | walk | per changed chunk |"
	echo "|---|---|---|---|---|"
	for r in "${walk_rows[@]}"; do
		IFS=$'\t' read -r v ch rg s per <<<"$r"
		echo "| $v | ${ch% chunks changed*}${ch#*changed} | ${rg% ranges} | $s | ${per%% *} ns |"
	done
	if [ "$E2E" = 1 ]; then
		echo
		echo "End to end, 16 GiB disk, the same $CHANGED random 64 KiB chunks (1%) written on both,"
		echo "\`nbdinfo --map\` of the whole disk, median of $ROUNDS alternating rounds:"
		echo
		echo "| server | seconds | ratio to qemu-nbd |"
		echo "|---|---|---|"
		printf '%s\n' "${e2e_rows[@]}"
	fi
} >>"$OUT"
echo "appended to $OUT"
