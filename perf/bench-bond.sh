#!/bin/bash
# perf/bench-bond.sh - channel bonding over two shaped NIC paths (issues 6
# and 29): one single-threaded dd writer and reader (1 MiB, O_DIRECT)
# through nbdplex.ko over each path alone and over both, and through the
# stock nbd.ko over a balance-rr bond of the same links, with paths of 40
# and 20 Mbit/s, 40 and 40, and 40 and 40 behind 1 and 20 ms of delay; and
# a write during which path 1 drops from 40 to 10 Mbit/s. Runs
# tests/vm/bond.sh in "perf" mode inside a TCG guest and writes the medians
# and ratios to perf/RESULTS-bond.md, and a short "Bonding" section into
# perf/RESULTS.md.
#
# It builds nothing: it needs a build directory with nbdplex and
# kmod/nbdplex.ko (see tests/vm/vm.cmake for the VM's packages).
set -u

usage() {
	cat <<'EOF'
usage: perf/bench-bond.sh [--rounds N] [--mib N] [--build DIR] [--out FILE] [SETUP...]
  --rounds N    rounds; every configuration once per round (default 3)
  --mib N       MiB per dd transfer (default 64)
  --build DIR   build directory (default build)
  --out FILE    the report (default perf/RESULTS-bond.md); perf/RESULTS.md
                gets a "Bonding" section that links to it
  SETUP...      what to measure (default all): 40-20 40-40 40-40-1ms-20ms
                drop, and alt=DIR to run them with another version too, in
                the same rounds (DIR under the build directory, holding
                nbdplex and kmod/nbdplex.ko; see tests/vm/bond.sh)
The guest's console log goes to perf/tmp/bond-<UTC time>.log.
EOF
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3
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
	40-20 | 40-40 | 40-40-1ms-20ms | drop | alt=?*) break ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done
SETUPS=("$@")
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
timeout_s=$((600 + ROUNDS * MIB * 15))
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
	"$ROOT/tests/vm/run.sh" bond.sh perf "$ROUNDS" "$MIB" "${SETUPS[@]}" >/dev/null 2>&1
rc=$?
kill $sampler 2>/dev/null
wait $sampler 2>/dev/null
load1=$(cut -d' ' -f1-3 /proc/loadavg)
host_load=$(sort -g "$log.load" | awk '{v[NR] = $1} END {if (NR) printf "min %s, median %s, max %s", v[1], v[int((NR + 1) / 2)], v[NR]}')
# The console log has CRLF line ends: without the CRs, every-round lists
# stay on one line of the table.
grep -a '^BOND ' "$log" | tr -d '\r' >"$log.results" || true
grep -a '^BONDT ' "$log" | tr -d '\r' >"$log.drop" || true
if [ $rc -ne 0 ] || [ ! -s "$log.results" ]; then
	echo "bench-bond: the VM run failed (rc $rc); see $log" >&2
	exit 1
fi

kver=$(grep -ao 'Linux version [^ ]*' "$log" | head -n 1 | cut -d' ' -f3)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$ROOT" status --porcelain -- kmod tools tests/vm 2>/dev/null | grep -q . && echo ", with uncommitted changes in kmod/ tools/ tests/vm/")
shaping=$(grep -E '^(BURST|LATENCY)=' "$ROOT/tests/vm/bond.sh" | paste -sd' ')
guest_load=$(grep -a '^--- round' "$log" | sed 's/.*load: //' | cut -d' ' -f1 | paste -sd' ')
cmd="perf/bench-bond.sh${ARGS_GIVEN:+ $ARGS_GIVEN}"

# report: medians per configuration and direction.
median_awk='
function median(list,    n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) {
			t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
		}
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}'
table=$(awk "$median_awk"'
{
	if (!($2 in seen)) { seen[$2] = 1; order[++nc] = $2 }
	v[$2, $3] = v[$2, $3] " " $4
	every[$2, $3] = every[$2, $3] (every[$2, $3] == "" ? "" : ", ") $4
}
END {
	print "| setup/configuration | write MB/s | read MB/s | write, every round | read, every round |"
	print "|---|---|---|---|---|"
	for (c = 1; c <= nc; c++) {
		k = order[c]
		printf "| %s | %.2f | %.2f | %s | %s |\n", k, median(v[k, "write"]),
			median(v[k, "read"]), every[k, "write"], every[k, "read"]
	}
}' "$log.results")
# Per setup: both paths, and the bond, against the sum of the two paths
# measured alone in the same run (medians), with the issue's targets. An
# other version's "DIR:SETUP" has only "both": it is set against this
# build's paths alone and bond.
ratios=$(awk "$median_awk"'
{
	split($2, sc, "/")
	if (!(sc[1] in seen)) { seen[sc[1]] = 1; order[++ns] = sc[1] }
	v[$2, $3] = v[$2, $3] " " $4
}
END {
	print "| setup | dir | path 0 alone | path 1 alone | sum | both | both / sum | bond-rr | bond-rr / sum | target |"
	print "|---|---|---|---|---|---|---|---|---|---|"
	for (i = 1; i <= ns; i++)
		for (d = 1; d <= 2; d++) {
			s = order[i]; dir = d == 1 ? "write" : "read"
			a = s; sub(/^[^:]*:/, "", a)
			p0 = median(v[a "/path0", dir]); p1 = median(v[a "/path1", dir])
			b = median(v[s "/both", dir]); r = median(v[a "/bond-rr", dir])
			t = a == "40-20" ? "both >= 0.95 x sum, > bond-rr" : a == "40-40" ? "both / path 0 >= 1.95" : "both >= 0.9 x sum"
			printf "| %s | %s | %.2f | %.2f | %.2f | %.2f | **%.3f** | %.2f | %.3f | %s (both / path 0: %.2f) |\n",
				s, dir, p0, p1, p0 + p1, b, p0 + p1 ? b / (p0 + p1) : 0, r,
				p0 + p1 ? r / (p0 + p1) : 0, t, p0 ? b / p0 : 0
		}
}' "$log.results")
# The drop: throughput over each window of at least one second from the
# change on, against 0.9 of the new sum: path 0 alone at 40 Mbit/s (the
# median of 40-40/path0 writes) times 1.25, path 1 being at a quarter of
# that. "settled" is the time from the change after which every window
# stays above it; the last window ends where the write did.
p0=$(awk '$2 == "40-40/path0" && $3 == "write" {print $4}' "$log.results" | sort -g |
	awk '{v[NR] = $1} END {print NR ? v[int((NR + 1) / 2)] : 0}')
# (No drop runs: no table.)
drop=
[ -s "$log.drop" ] && drop=$(awk -v p0="$p0" '
$3 == "change" { tc[$2] = last[$2]; next }
{
	if (!($2 in n)) order[++nr] = $2
	n[$2]++; t[$2, n[$2]] = $3 / 1000; b[$2, n[$2]] = $4; last[$2] = $3 / 1000
}
function win(r, j,    k) {
	for (k = j + 1; k < n[r] && t[r, k] - t[r, j] < 1; k++) ;
	return (b[r, k] - b[r, j]) / (t[r, k] - t[r, j]) / 1e6
}
END {
	goal = 0.9 * p0 * 1.25
	printf "New sum %.2f MB/s (path 0 alone %.2f x 1.25); 0.9 of it: %.2f MB/s.\n\n", p0 * 1.25, p0, goal
	print "| round | MB/s before the change | settled after (s) | MB/s from then to the end | lowest window after settling | seconds written after the change |"
	print "|---|---|---|---|---|---|"
	for (i = 1; i <= nr; i++) {
		r = order[i]; m = n[r]; c = tc[r]
		for (k = 1; k <= m && t[r, k] <= c; k++) ;
		before = k > 2 ? (b[r, k - 1] - b[r, 1]) / (t[r, k - 1] - t[r, 1]) / 1e6 : 0
		settle = -1
		for (j = k - 1; j < m && t[r, m] - t[r, j] >= 1; j++) {
			if (win(r, j) < goal) settle = -1
			else if (settle < 0) { settle = t[r, j] - c; s0 = j }
		}
		low = 1e9
		for (j = s0; settle >= 0 && j < m && t[r, m] - t[r, j] >= 1; j++)
			if (win(r, j) < low) low = win(r, j)
		if (settle >= 0)
			printf "| %s | %.2f | %.1f | %.2f | %.2f | %.1f |\n", r, before, settle,
				(b[r, m] - b[r, s0]) / (t[r, m] - t[r, s0]) / 1e6, low, t[r, m] - c
		else
			printf "| %s | %.2f | never | - | - | %.1f |\n", r, before, t[r, m] - c
	}
}' "$log.drop")
echo "$table"
echo "$ratios"
echo "$drop"

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
  \`tc qdisc ... tbf\` with $shaping, each direction alike, path 0 and the
  bond's first link at the first rate of the setup's name (Mbit/s), path 1
  and its second link at the second; in "40-40-1ms-20ms" a \`netem delay\`
  in front of the tbf adds 1 ms to each direction of path 0 and 20 ms to
  path 1 (and to the bond's links alike). One \`nbdplex serve\` in the
  server namespace listens on both path addresses and the bond's, serving
  a $(( MIB > 128 ? MIB * 2 : 256 )) MiB file on the guest's tmpfs.
- Jobs: \`dd bs=1M count=$MIB oflag=direct\` from a file of random data to
  the device, then \`dd bs=1M count=$MIB iflag=direct\` from it; each
  configuration attached, measured and detached in turn, $ROUNDS rounds.
  "path0", "path1": \`nbdplex attach --channels 2\` on that path alone;
  "both": \`nbdplex attach --channels 4\` over both (two each), attach's
  request size (max_sectors_kb = 1024 / (4 x channels), at least 64);
  "bond-rr": nbd.ko, \`nbd-client -L -N disk\` over the bond (one
  connection). "drop": a write of $((MIB * 2)) MiB (the data twice) over both paths at 40/40, where
  \`tc qdisc change ... tbf rate 10mbit\` on both ends of path 1 comes two
  seconds in; the bytes both paths moved are read from sysfs about every
  0.25 s.
- Figures: medians over the rounds, MB/s as dd reports them (10^6 bytes).

$ratios

${drop:+The drop, 40/40 to 40/10 two seconds into a write. $drop}

$table
EOF
	[ -z "$notes" ] || printf '\n%s\n' "$notes"
} >"$OUT"
echo "bench-bond: wrote $OUT"

# A short section in perf/RESULTS.md, replaced on each run (bench.sh
# rewrites RESULTS.md whole; run this again afterwards to restore it).
res=$ROOT/perf/RESULTS.md
if [ "$OUT" = "$ROOT/perf/RESULTS-bond.md" ] && [ -f "$res" ]; then
	summary=$(echo "$ratios" | awk -F' *\\| *' '
		$2 ~ /^40-/ {
			printf "- %s %s: both paths %s MB/s, %s of the two alone (%s MB/s); bond-rr %s of the two alone\n", $2, $3, $7, $8, $6, $10 }')
	awk '/^## Bonding/ {skip = 1; next} skip && /^## / {skip = 0} !skip' "$res" >"$res.tmp"
	{
		cat "$res.tmp"
		echo
		echo "## Bonding"
		echo
		echo "Two veth paths shaped by tbf (Mbit/s in the setup's name), one dd writer and reader"
		echo "(1 MiB, O_DIRECT), medians of $ROUNDS rounds on $date0 (load $load0);"
		echo "the whole table, setup and command are in [RESULTS-bond.md](RESULTS-bond.md)."
		echo
		echo "$summary"
	} >"$res"
	rm -f "$res.tmp"
	echo "bench-bond: updated the Bonding section of $res"
fi
