#!/bin/bash
# perf/bench-bond.sh - channel bonding over two shaped NIC paths (issue 6):
# one single-threaded dd writer and reader (1 MiB, O_DIRECT) through the
# stock nbd.ko over one path and over a balance-rr bond, and through
# nbdplex.ko over one path and over both. Runs tests/vm/bond.sh in "perf"
# mode inside a TCG guest and writes the medians and ratios to
# perf/RESULTS-bond.md, and a short "Bonding" section into perf/RESULTS.md.
#
# It builds nothing: it needs a build directory with nbdplex and
# kmod/nbdplex.ko (see tests/vm/vm.cmake for the VM's packages).
set -u

usage() {
	cat <<'EOF'
usage: perf/bench-bond.sh [--rounds N] [--mib N] [--build DIR] [--out FILE]
  --rounds N    rounds; every configuration once per round (default 5)
  --mib N       MiB per dd transfer (default 64)
  --build DIR   build directory (default build)
  --out FILE    the report (default perf/RESULTS-bond.md); perf/RESULTS.md
                gets a "Bonding" section that links to it
The guest's console log goes to perf/tmp/bond-<UTC time>.log.
EOF
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=5
MIB=64
BUILD=$ROOT/build
OUT=$ROOT/perf/RESULTS-bond.md
ARGS_GIVEN="$*"
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=${2:?--rounds needs a number}; shift ;;
	--mib) MIB=${2:?--mib needs a number}; shift ;;
	--build) BUILD=$(cd "${2:?--build needs a directory}" && pwd) || exit 2; shift ;;
	--out) OUT=${2:?--out needs a file}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done
case $ROUNDS$MIB in *[!0-9]*) echo "bench-bond: --rounds and --mib take numbers" >&2; exit 2 ;; esac
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ] || { echo "bench-bond: --rounds 1..20" >&2; exit 2; }
[ "$MIB" -ge 8 ] && [ "$MIB" -le 512 ] || { echo "bench-bond: --mib 8..512" >&2; exit 2; }
for f in "$BUILD/nbdplex" "$BUILD/kmod/nbdplex.ko"; do
	[ -e "$f" ] || { echo "bench-bond: no $f: build first (cmake --build $BUILD)" >&2; exit 2; }
done

mkdir -p "$ROOT/perf/tmp"
notes=
[ -f "$OUT" ] && notes=$(sed -n '/^## Observations/,$p' "$OUT")
stamp=$(date -u +%Y%m%d-%H%M%S)
log=$ROOT/perf/tmp/bond-$stamp.log
load0=$(cut -d' ' -f1-3 /proc/loadavg)
date0=$(date -u '+%Y-%m-%d %H:%M UTC')
# Every transfer is bounded by the scenario (300 s); this bounds the whole run.
timeout_s=$((600 + ROUNDS * MIB * 12))
echo "bench-bond: $ROUNDS rounds of $MIB MiB, load $load0, log $log (at most ${timeout_s}s)"
# The host's load every 10 s while the VM runs: a starved TCG guest measures
# its own CPU, not the links.
(
	for _ in $(seq $((timeout_s / 10 + 1))); do
		cut -d' ' -f1 /proc/loadavg
		sleep 10
	done
) >"$log.load" &
sampler=$!
NPVM_BUILD=$BUILD NPVM_TIMEOUT=$timeout_s NPVM_LOG=$log \
	"$ROOT/tests/vm/run.sh" bond.sh perf "$ROUNDS" "$MIB" >/dev/null 2>&1
rc=$?
kill $sampler 2>/dev/null
wait $sampler 2>/dev/null
load1=$(cut -d' ' -f1-3 /proc/loadavg)
host_load=$(sort -g "$log.load" | awk '{v[NR] = $1} END {if (NR) printf "min %s, median %s, max %s", v[1], v[int((NR + 1) / 2)], v[NR]}')
# The console log has CRLF line ends: without the CRs, every-round lists
# stay on one line of the table.
grep -a '^BOND ' "$log" | tr -d '\r' >"$log.results" || true
if [ $rc -ne 0 ] || [ ! -s "$log.results" ]; then
	echo "bench-bond: the VM run failed (rc $rc); see $log" >&2
	exit 1
fi

kver=$(grep -ao 'Linux version [^ ]*' "$log" | head -n 1 | cut -d' ' -f3)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$ROOT" status --porcelain -- kmod tools tests/vm 2>/dev/null | grep -q . && echo ", with uncommitted changes in kmod/ tools/ tests/vm/")
shaping=$(grep -E '^(RATE|BURST|LATENCY)=' "$ROOT/tests/vm/bond.sh" | paste -sd' ')
guest_load=$(grep -a '^--- round' "$log" | sed 's/.*load: //' | cut -d' ' -f1 | paste -sd' ')
cmd="perf/bench-bond.sh${ARGS_GIVEN:+ $ARGS_GIVEN}"

# report: medians per configuration and direction, ratios to one path.
table=$(awk '
function median(list,    n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) {
			t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
		}
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
	if (!($2 in seen)) { seen[$2] = 1; order[++nc] = $2 }
	v[$2, $3] = v[$2, $3] " " $4
	every[$2, $3] = every[$2, $3] (every[$2, $3] == "" ? "" : ", ") $4
}
END {
	for (d = 1; d <= 2; d++) {
		dir = d == 1 ? "write" : "read"
		for (c = 1; c <= nc; c++)
			m[order[c], dir] = median(v[order[c], dir])
	}
	print "| configuration | write MB/s | read MB/s | write / own 1 path | read / own 1 path | write / nbd.ko 1 path | read / nbd.ko 1 path | write, every round | read, every round |"
	print "|---|---|---|---|---|---|---|---|---|"
	for (c = 1; c <= nc; c++) {
		k = order[c]
		base = k ~ /^nbd\.ko/ ? "nbd.ko-1path" : "nbdplex.ko-1path"
		printf "| %s | %.2f | %.2f | x%.2f | x%.2f | x%.2f | x%.2f | %s | %s |\n", k,
			m[k, "write"], m[k, "read"],
			m[k, "write"] / m[base, "write"], m[k, "read"] / m[base, "read"],
			m[k, "write"] / m["nbd.ko-1path", "write"], m[k, "read"] / m["nbd.ko-1path", "read"],
			every[k, "write"], every[k, "read"]
	}
}' "$log.results")
echo "$table"

{
	cat <<EOF
# Channel bonding: one writer, one reader, two shaped paths

Written by \`perf/bench-bond.sh\` up to the "Observations" section, which
is written by hand and kept across runs.

- Date: $date0
- Machine: $(nproc) CPUs ($cpu), $mem RAM, host kernel $(uname -r). Host
  load average (1 min) every 10 s during the run: $host_load (1, 5, 15 min:
  $load0 at the start, $load1 at the end). Guest load (1 min) at the start
  of each round: $guest_load. A shared machine where other VMs and builds
  run: above a host load of about 2 the TCG guest is short of CPU and
  measures that more than the links.
- Guest: Debian's kernel $kver under \`qemu-system-x86_64 -accel tcg -smp 2\`
  (tests/vm/run.sh).
- Command: \`$cmd\` (from the repository root), which runs
  \`tests/vm/run.sh bond.sh perf $ROUNDS $MIB\`; nbdplex at commit
  $commit$dirty.
- Setup (tests/vm/bond.sh): client and server network namespaces; two veth
  pairs on two subnets (the paths) and two more veth pairs enslaved to a
  balance-rr bond (miimon 100) in each namespace; every veth end shaped by
  \`tc qdisc ... tbf\` with $shaping(each direction of each path alike).
  One \`nbdplex serve\` in the server namespace listens on both path
  addresses and the bond's, serving a $(( MIB > 128 ? MIB * 2 : 256 )) MiB file on the guest's tmpfs.
- Jobs: \`dd bs=1M count=$MIB oflag=direct\` from a file of random data to
  the device, then \`dd bs=1M count=$MIB iflag=direct\` from it; each
  configuration attached, measured and detached in turn, $ROUNDS rounds.
  nbd.ko: \`nbd-client -L -N disk ADDR\` (one connection). nbdplex.ko:
  \`nbdplex attach --path ... --channels N\` with attach's request size
  (max_sectors_kb = 1024 / (2 x channels), at least 128), and once more with
  4096 KiB requests ("unsplit", the driver's own largest); "1path-128k" is
  one path with the request size attach gives four channels.
- Figures: medians over the rounds, MB/s as dd reports them (10^6 bytes).

$table
EOF
	[ -z "$notes" ] || printf '\n%s\n' "$notes"
} >"$OUT"
echo "bench-bond: wrote $OUT"

# A short section in perf/RESULTS.md, replaced on each run (bench.sh
# rewrites RESULTS.md whole; run this again afterwards to restore it).
res=$ROOT/perf/RESULTS.md
if [ "$OUT" = "$ROOT/perf/RESULTS-bond.md" ] && [ -f "$res" ]; then
	summary=$(echo "$table" | awk -F' *\\| *' '
		$2 == "nbd.ko-bond-rr" || $2 ~ /^nbdplex\.ko-2paths-[0-9]+ch$/ {
			printf "- %s: write %s MB/s (%s of one path), read %s MB/s (%s)\n", $2, $3, $5, $4, $6 }')
	awk '/^## Bonding/ {skip = 1; next} skip && /^## / {skip = 0} !skip' "$res" >"$res.tmp"
	{
		cat "$res.tmp"
		echo
		echo "## Bonding"
		echo
		echo "Two veth paths shaped to $(grep -m1 '^RATE=' "$ROOT/tests/vm/bond.sh" | cut -d= -f2) each way, one dd writer and reader"
		echo "(1 MiB, O_DIRECT), medians of $ROUNDS rounds on $date0 (load $load0);"
		echo "the whole table, setup and command are in [RESULTS-bond.md](RESULTS-bond.md)."
		echo
		echo "$summary"
	} >"$res"
	rm -f "$res.tmp"
	echo "bench-bond: updated the Bonding section of $res"
fi
