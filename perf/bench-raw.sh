#!/bin/bash
# perf/bench-raw.sh - the raw engine served over NBD, against fio's own
# libaio O_DIRECT jobs on the same loop device (the ceiling: no network, no
# server), and against qemu-nbd serving that device with aio=native and
# cache=none (a peer doing the same job).
#
# The loop device sits on a file in /dev/shm with direct I/O on, so the
# numbers measure software overhead, not a disk. Targets take turns, one at
# a time, in rounds whose order rotates. It builds nothing and writes
# perf/RESULTS-raw.md (or --out); raw fio JSON goes to perf/tmp/raw-<time>/.
set -u

usage() {
    cat <<'EOF'
usage: perf/bench-raw.sh [options]
  --rounds N      rounds of alternation (default 3)
  --runtime S     seconds per fio run (default 8)
  --size SIZE     size of the loop device's backing file (default 1G)
  --targets LIST  comma list from local,nbdplex,qemu-nbd (default: all)
  --out FILE      report (default perf/RESULTS-raw.md)
  --port N        TCP port on 127.0.0.1 (default 21900)
  -h, --help      this text
Needs root (losetup), fio with the nbd engine, python3; qemu-nbd optional.
Uses $NBDPLEX or build/nbdplex.
EOF
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
NBDPLEX=${NBDPLEX:-$ROOT/build/nbdplex}
ROUNDS=3
RUNTIME=8
SIZE=1G
TARGETS=local,nbdplex,qemu-nbd
OUT=$ROOT/perf/RESULTS-raw.md
PORT=21900
ARGS_GIVEN="$*"

. "$ROOT/perf/lib/opts.sh"
bench_args bench-raw.sh --rounds=ROUNDS --runtime=RUNTIME --size=SIZE --targets=TARGETS --out=OUT --port=PORT -- "$@"

[ "$(id -u)" -eq 0 ] || die "needs root for losetup"
fio --enghelp 2>/dev/null | grep -qw nbd || die "fio has no nbd engine"
case ",$TARGETS," in
*,nbdplex,*) "$NBDPLEX" serve --help >/dev/null 2>&1 || die "$NBDPLEX has no serve" ;;
esac
case ",$TARGETS," in
*,qemu-nbd,*) command -v qemu-nbd >/dev/null || die "qemu-nbd missing (drop it from --targets)" ;;
esac

# Job name, then fio options.
JOBS=(
    "randread-4k-qd32 --rw=randread --bs=4k --iodepth=32"
    "randwrite-4k-qd32 --rw=randwrite --bs=4k --iodepth=32"
    "read-1m-qd8 --rw=read --bs=1M --iodepth=8"
    "write-1m-qd8 --rw=write --bs=1M --iodepth=8"
)

RUN=$ROOT/perf/tmp/raw-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN" || exit 1
img=/dev/shm/nbdplex-bench-raw.$$.img
dev=
spid=
cleanup() {
    [ -n "$spid" ] && { kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; }
    [ -n "$dev" ] && { losetup -d "$dev" || echo "bench-raw.sh: could not detach $dev" >&2; }
    rm -f "$img"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Zeroes written out, so that no read hits a hole.
fallocate -l "$SIZE" "$img" && dd if=/dev/zero of="$img" bs=1M count="$(($(stat -c %s "$img") >> 20))" \
    conv=notrunc status=none || die "cannot make $img"
dev=$(losetup -f --show --direct-io=on "$img") || die "losetup failed"

# CPU ticks (user + system) of a process.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

start_server() {
    local t=$1
    rm -f "$RUN/pid"
    case "$t" in
    nbdplex)
        "$NBDPLEX" serve -l "127.0.0.1:$PORT" -e "disk=raw:$dev" --pidfile "$RUN/pid" \
            2>>"$RUN/nbdplex.log" &
        ;;
    qemu-nbd)
        qemu-nbd -f raw --aio=native --cache=none --persistent --shared=16 -b 127.0.0.1 \
            -p "$PORT" -x disk --pid-file="$RUN/pid" "$dev" 2>>"$RUN/qemu-nbd.log" &
        ;;
    esac
    spid=$!
    for _ in $(seq 100); do
        [ -s "$RUN/pid" ] && return 0
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.1
    done
    die "$t did not start (see $RUN/$t.log)"
}

stop_server() {
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    spid=
}

IFS=, read -r -a TLIST <<<"$TARGETS"
: >"$RUN/runs.tsv"
for round in $(seq "$ROUNDS"); do
    n=${#TLIST[@]}
    for i in $(seq 0 $((n - 1))); do
        t=${TLIST[$(((i + round - 1) % n))]}
        [ "$t" = local ] || start_server "$t"
        for job in "${JOBS[@]}"; do
            name=${job%% *}
            opts=${job#* }
            if [ "$t" = local ]; then
                where=(--ioengine=libaio --direct=1 --filename="$dev")
            else
                where=(--ioengine=nbd --uri="nbd://127.0.0.1:$PORT/disk")
            fi
            t0=0
            [ -n "$spid" ] && t0=$(ticks "$spid")
            json=$RUN/$t-$name-$round.json
            # shellcheck disable=SC2086
            timeout $((RUNTIME + 60)) fio --name="$name" $opts "${where[@]}" --size="$SIZE" \
                --time_based --runtime="$RUNTIME" --ramp_time=1 --output-format=json \
                --output="$json" || die "fio $name against $t failed"
            t1=0
            [ -n "$spid" ] && t1=$(ticks "$spid")
            printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$t" "$name" "$((t1 - t0))" "$json" \
                >>"$RUN/runs.tsv"
            echo "round $round: $t $name done"
        done
        [ "$t" = local ] || stop_server
    done
done

"$PY" - "$RUN/runs.tsv" "$(getconf CLK_TCK)" "$OUT" "$ARGS_GIVEN" "$NBDPLEX" "$RUN" <<'EOF'
import json, os, platform, statistics, sys, time

runs, hz, out, args, nbdplex, rundir = sys.argv[1:7]
hz = int(hz)
data = {}  # (target, job) -> list of (iops, MiB/s, cpu us per op)
for line in open(runs):
    rnd, target, job, ticks, path = line.rstrip("\n").split("\t")
    j = json.load(open(path))["jobs"][0]
    iops = j["read"]["iops"] + j["write"]["iops"]
    mibs = (j["read"]["bw_bytes"] + j["write"]["bw_bytes"]) / 2**20
    ops = j["read"]["total_ios"] + j["write"]["total_ios"]
    cpu = int(ticks) / hz * 1e6 / ops if ops and target != "local" else None
    data.setdefault((target, job), []).append((iops, mibs, cpu))

targets = []
jobs = []
for t, j in data:
    if t not in targets:
        targets.append(t)
    if j not in jobs:
        jobs.append(j)

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

lines = ["# The raw engine against fio's own libaio and qemu-nbd", "",
         "Generated by `perf/bench-raw.sh %s` on %s (UTC), kernel %s, %d CPUs." % (
             args, time.strftime("%Y-%m-%d %H:%M", time.gmtime()), platform.release(),
             os.cpu_count()),
         "Server binary: `%s`. Raw data: `%s`." % (nbdplex, os.path.relpath(rundir)), "",
         "A loop device (`--direct-io=on`) on a file in /dev/shm. `local` is fio's libaio",
         "engine with O_DIRECT on the device itself: no network and no server, the ceiling.",
         "The servers are driven by fio's nbd engine (libnbd, one connection) on",
         "127.0.0.1; both serve the device with O_DIRECT through Linux AIO",
         "(qemu-nbd `--aio=native --cache=none`). Medians of the rounds; ratio is",
         "IOPS against `local`; CPU is the server's user+system time per request.", "",
         "| job | target | IOPS | MiB/s | ratio to local | server CPU us/op |",
         "|---|---|---:|---:|---:|---:|"]
for j in jobs:
    base = med([v[0] for v in data.get(("local", j), [])])
    for t in targets:
        v = data.get((t, j))
        if not v:
            continue
        iops, mibs, cpu = med([x[0] for x in v]), med([x[1] for x in v]), med([x[2] for x in v])
        ratio = "%.2f" % (iops / base) if base else "-"
        lines.append("| %s | %s | %.0f | %.1f | %s | %s |" % (
            j, t, iops, mibs, ratio, "%.1f" % cpu if cpu is not None else "-"))
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
