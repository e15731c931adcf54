#!/bin/bash
# perf/bench-rbd.sh - the rbd engine served over NBD, against `rbd bench`
# on the same image (librbd with no network hop and no server: the ceiling)
# and against qemu-nbd serving `rbd:POOL/IMAGE` through qemu's rbd driver (a
# peer doing the same job), with librbd's cache off for all three.
#
# It starts a throwaway cluster of its own (tests/rbd/cluster.sh: one
# monitor, one in-memory OSD, ports 6850-6899, so no rbd test may run at
# the same time), makes a 1 GiB image written end to end, and runs each job
# against each target in rounds whose order rotates. Besides IOPS it records
# the server's CPU per request, the OSD's, and how busy the whole machine
# was (from /proc/stat): on a small machine the OSD is the bottleneck and
# other work shares the cores, so the ratios within one run are what count.
# It builds nothing and writes perf/RESULTS-rbd.md (or --out); raw fio JSON
# goes to perf/tmp/rbd-<time>/.
set -u

usage() {
    cat <<'EOF'
usage: perf/bench-rbd.sh [options]
  --rounds N      rounds of alternation (default 2)
  --runtime S     seconds per fio run (default 6)
  --conns LIST    comma list of connection counts (default 1,4)
  --targets LIST  comma list from rbd-bench,nbdplex,qemu-nbd (default: all)
  --out FILE      report (default perf/RESULTS-rbd.md)
  --port N        TCP port on 127.0.0.1 for the NBD servers (default 21910)
  -h, --help      this text
Needs Ceph's mon, osd and CLIs (scripts/install-deps.sh --all), fio with the
nbd engine, python3; qemu-nbd with qemu-block-extra's rbd driver. Uses
$NBDPLEX or build/nbdplex.
EOF
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
PROC=$ROOT/perf/lib/proc.py
NBDPLEX=${NBDPLEX:-$ROOT/build/nbdplex}
ROUNDS=2
RUNTIME=6
CONNS=1,4
TARGETS=rbd-bench,nbdplex,qemu-nbd
OUT=$ROOT/perf/RESULTS-rbd.md
PORT=21910
ARGS_GIVEN="$*"

. "$ROOT/perf/lib/opts.sh"
bench_args bench-rbd.sh --rounds=ROUNDS --runtime=RUNTIME --conns=CONNS --targets=TARGETS --out=OUT --port=PORT -- "$@"

fio --enghelp 2>/dev/null | grep -qw nbd || die "fio has no nbd engine"
command -v rbd >/dev/null || die "rbd missing (scripts/install-deps.sh --all)"
case ",$TARGETS," in
*,nbdplex,*) "$NBDPLEX" serve --help 2>&1 | grep -q 'rbd:' || die "$NBDPLEX has no rbd engine" ;;
esac
case ",$TARGETS," in
*,qemu-nbd,*) command -v qemu-nbd >/dev/null || die "qemu-nbd missing (drop it from --targets)" ;;
esac

# Job name, total queue depth, fio options. With N connections each gets
# an Nth of the queue depth, so every target sees the same number of
# requests in flight as rbd bench's --io-threads.
JOBS=(
    "randread-4k-qd32 32 --rw=randread --bs=4k"
    "randwrite-4k-qd32 32 --rw=randwrite --bs=4k"
    "read-1m-qd8 8 --rw=read --bs=1M"
    "write-1m-qd8 8 --rw=write --bs=1M"
)
# rbd bench's own names for the same jobs
declare -A RBD_BENCH=(
    [randread-4k-qd32]="--io-type read --io-pattern rand --io-size 4K --io-total 192M"
    [randwrite-4k-qd32]="--io-type write --io-pattern rand --io-size 4K --io-total 192M"
    [read-1m-qd8]="--io-type read --io-pattern seq --io-size 1M --io-total 3G"
    [write-1m-qd8]="--io-type write --io-pattern seq --io-size 1M --io-total 3G"
)

RUN=$ROOT/perf/tmp/rbd-$(date -u +%Y%m%dT%H%M%SZ)
CEPH=$RUN/ceph
mkdir -p "$RUN" || exit 1
spid=
cleanup() {
    [ -n "$spid" ] && { kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; }
    bash "$ROOT/tests/rbd/cluster.sh" stop "$CEPH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CONF=$(bash "$ROOT/tests/rbd/cluster.sh" start "$CEPH") || die "the cluster did not start"
export CEPH_CONF=$CONF
OSD_PID=$(cat "$CEPH/run/osd.0.pid")
IMG=rbd/bench
rbd create --size 1G --image-feature layering "$IMG" || die "rbd create"
# Written end to end, so that no read finds a missing object.
rbd bench --io-type write --io-pattern seq --io-size 4M --io-total 1G "$IMG" >/dev/null ||
    die "filling the image"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

ticks() { "$PY" "$PROC" cpu "$1"; }
machine() { "$PY" "$PROC" machine; }

start_server() {
    local t=$1
    rm -f "$RUN/pid"
    case "$t" in
    nbdplex)
        "$NBDPLEX" serve -l "127.0.0.1:$PORT" -e "disk=rbd:$IMG,conf=$CONF" \
            --pidfile "$RUN/pid" 2>>"$RUN/nbdplex.log" &
        ;;
    qemu-nbd)
        # cache=none: qemu's rbd driver then turns librbd's cache off.
        qemu-nbd -f raw --cache=none --persistent --shared=16 -b 127.0.0.1 -p "$PORT" \
            -x disk --pid-file="$RUN/pid" "rbd:$IMG:conf=$CONF" 2>>"$RUN/qemu-nbd.log" &
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

# run_one ROUND TARGET JOB CONNS: one measurement, a line of runs.tsv
run_one() {
    local round=$1 t=$2 job=$3 conns=$4 name qd opts s0 o0 m0 s1 o1 m1 out
    name=${job%% *}
    qd=${job#* }
    opts=${qd#* }
    qd=${qd%% *}
    out=$RUN/$t-$name-c$conns-$round
    s0=0
    [ -n "$spid" ] && s0=$(ticks "$spid")
    o0=$(ticks "$OSD_PID")
    m0=$(machine)
    if [ "$t" = rbd-bench ]; then
        # shellcheck disable=SC2086
        "$PY" -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.stdout)
print("cpu_seconds", u.ru_utime + u.ru_stime)
sys.exit(r.returncode)' rbd bench ${RBD_BENCH[$name]} --io-threads "$qd" "$IMG" >"$out.txt" ||
            die "rbd bench $name failed"
    else
        # shellcheck disable=SC2086
        timeout $((RUNTIME + 60)) fio --name="$name" $opts --iodepth=$((qd / conns)) \
            --numjobs="$conns" --group_reporting --ioengine=nbd \
            --uri="nbd://127.0.0.1:$PORT/disk" --size=1G --time_based --runtime="$RUNTIME" \
            --ramp_time=1 --output-format=json --output="$out.json" ||
            die "fio $name against $t failed"
    fi
    s1=0
    [ -n "$spid" ] && s1=$(ticks "$spid")
    o1=$(ticks "$OSD_PID")
    m1=$(machine)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$t" "$name" "$conns" "$((s1 - s0))" \
        "$((o1 - o0))" "$m0 $m1" "$out" >>"$RUN/runs.tsv"
    echo "round $round: $t $name x$conns done"
}

IFS=, read -r -a TLIST <<<"$TARGETS"
IFS=, read -r -a CLIST <<<"$CONNS"
: >"$RUN/runs.tsv"
for round in $(seq "$ROUNDS"); do
    n=${#TLIST[@]}
    for i in $(seq 0 $((n - 1))); do
        t=${TLIST[$(((i + round - 1) % n))]}
        [ "$t" = rbd-bench ] || start_server "$t"
        for job in "${JOBS[@]}"; do
            if [ "$t" = rbd-bench ]; then
                run_one "$round" "$t" "$job" 1
                continue
            fi
            for c in "${CLIST[@]}"; do
                run_one "$round" "$t" "$job" "$c"
            done
        done
        [ "$t" = rbd-bench ] || stop_server
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

"$PY" - "$RUN/runs.tsv" "$("$PY" "$PROC" clk)" "$OUT" "$ARGS_GIVEN" "$NBDPLEX" "$RUN" \
    "$LOAD_BEFORE" "$LOAD_AFTER" <<'EOF'
import json, os, platform, re, statistics, sys, time

runs, hz, out, args, nbdplex, rundir, load0, load1 = sys.argv[1:9]
hz = int(hz)
data = {}  # (target, job, conns) -> list of (iops, server us/op, osd us/op, busy)
for line in open(runs):
    rnd, target, job, conns, sticks, oticks, mach, path = line.rstrip("\n").split("\t")
    b0, a0, b1, a1 = map(int, mach.split())
    busy = (b1 - b0) / (a1 - a0) if a1 > a0 else 0
    if target == "rbd-bench":
        text = open(path + ".txt").read()
        m = re.search(r"elapsed:\s*([\d.]+)\s+ops:\s*(\d+)\s+ops/sec:\s*([\d.]+)", text)
        ops, iops = int(m.group(2)), float(m.group(3))
        cpu = float(re.search(r"cpu_seconds ([\d.]+)", text).group(1)) * 1e6 / ops
    else:
        j = json.load(open(path + ".json"))["jobs"][0]
        iops = j["read"]["iops"] + j["write"]["iops"]
        # ticks cover the ramp too: per request of the whole run
        ops = (j["read"]["total_ios"] + j["write"]["total_ios"]) * (
            1 + 1 / max(1, j["job_runtime"] / 1000))
        cpu = int(sticks) / hz * 1e6 / ops if ops else None
    osd = int(oticks) / hz * 1e6 / ops if ops else None
    data.setdefault((target, job, int(conns)), []).append((iops, cpu, osd, busy))

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

keys = list(data)
jobs = []
for t, j, c in keys:
    if j not in jobs:
        jobs.append(j)
lines = ["# The rbd engine against rbd bench and qemu-nbd", "",
         "Generated by `perf/bench-rbd.sh %s` on %s (UTC), kernel %s, %d CPUs." % (
             args, time.strftime("%Y-%m-%d %H:%M", time.gmtime()), platform.release(),
             os.cpu_count()),
         "Server binary: `%s`. Raw data: `%s`." % (nbdplex, os.path.relpath(rundir)),
         "Load average before and after: %s / %s (the machine is shared)." % (load0, load1), "",
         "One monitor and one OSD (memstore) on this machine, a 1 GiB image written",
         "end to end, librbd's cache off everywhere. `rbd-bench` is `rbd bench`",
         "(librbd in-process, --io-threads = the queue depth): the ceiling. The servers",
         "are driven by fio's nbd engine on 127.0.0.1 with the queue depth split over",
         "the connections. Medians of the rounds. CPU columns are user+system time",
         "per request: the server's (for rbd-bench: the rbd process, client and",
         "librbd) and the OSD's; busy is the share of the whole machine's CPU time",
         "that was not idle during the run.", "",
         "| job | target | conns | IOPS | vs rbd bench | vs qemu-nbd | server CPU us/op | OSD CPU us/op | machine busy |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
for j in jobs:
    base = med([v[0] for v in data.get(("rbd-bench", j, 1), [])])
    for (t, jj, c) in sorted((k for k in keys if k[1] == j), key=lambda k: (k[2], k[0])):
        v = data[(t, jj, c)]
        iops, cpu, osd, busy = (med([x[i] for x in v]) for i in range(4))
        q = med([x[0] for x in data.get(("qemu-nbd", j, c), [])])
        lines.append("| %s | %s | %d | %.0f | %s | %s | %s | %s | %.0f%% |" % (
            j, t, c, iops, "%.2f" % (iops / base) if base else "-",
            "%.2f" % (iops / q) if q and t != "qemu-nbd" and t != "rbd-bench" else "-",
            "%.1f" % cpu if cpu is not None else "-", "%.1f" % osd if osd is not None else "-",
            busy * 100))
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
