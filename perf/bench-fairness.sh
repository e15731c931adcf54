#!/bin/bash
# perf/bench-fairness.sh - a well-behaved client beside 200 hostile ones
# (issue 28): fio's nbd engine at QD1 (p99 completion latency) and QD16
# (IOPS), alone and while 120 clients flood 4 KiB WRITEs and never read a
# reply, 40 send their handshake a byte a second and 40 send garbage
# (tests/stress/fairness.py, the same workload the stress test asserts on).
# nbdplex against nbdkit (memory plugin) and qemu-nbd (a file on /dev/shm),
# each on its defaults, in rounds whose order rotates. The figures that
# matter are each server's ratios, beside/alone; they are reported with
# nbdplex's over each peer's. Builds nothing; writes perf/RESULTS-fairness.md
# (or --out); raw JSON goes to perf/tmp/fairness-<time>/.
set -u

usage() {
    cat <<'EOF'
usage: perf/bench-fairness.sh [options]
  --rounds N       rounds (default 2)
  --servers LIST   comma list from nbdplex,nbdkit,qemu-nbd (default: all)
  --out FILE       report (default perf/RESULTS-fairness.md)
  --port N         TCP port on 127.0.0.1 (default 21950)
  -h, --help       this text
Needs fio with the nbd engine and python3; nbdkit and qemu-nbd optional.
Uses $NBDPLEX or build/nbdplex. About 70 s per server and round.
EOF
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
NBDPLEX=${NBDPLEX:-$ROOT/build/nbdplex}
ROUNDS=2
SERVERS=nbdplex,nbdkit,qemu-nbd
OUT=$ROOT/perf/RESULTS-fairness.md
PORT=21950
ARGS_GIVEN="$*"

. "$ROOT/perf/lib/opts.sh"
bench_args bench-fairness.sh --rounds=ROUNDS --servers=SERVERS --out=OUT --port=PORT -- "$@"

fio --enghelp 2>/dev/null | grep -qw nbd || die "fio has no nbd engine"
"$NBDPLEX" serve --help >/dev/null 2>&1 || die "$NBDPLEX has no serve"
ulimit -n 4096 || die "cannot raise the descriptor limit to 4096"
LIST=()
for s in ${SERVERS//,/ }; do
    case $s in
    nbdplex) LIST+=(nbdplex) ;;
    nbdkit | qemu-nbd)
        if command -v "$s" >/dev/null; then LIST+=("$s"); else echo "skipping $s: not installed"; fi ;;
    *) die "unknown server '$s'" ;;
    esac
done
[ "${#LIST[@]}" -gt 0 ] || die "no server to run"

RUN=$ROOT/perf/tmp/fairness-$(date -u +%Y%m%dT%H%M%S)
mkdir -p "$RUN"
IMG=/dev/shm/np-fairness-$$.img
SRV=
cleanup() {
    [ -n "$SRV" ] && kill "$SRV" 2>/dev/null && wait "$SRV" 2>/dev/null
    rm -f "$IMG"
}
trap cleanup EXIT
truncate -s 256M "$IMG"

# start NAME: one server on $PORT exporting "m" (256 MiB); sets SRV.
start() {
    local log=$RUN/$1.log
    case $1 in
    nbdplex) "$NBDPLEX" serve -l "127.0.0.1:$PORT" -e m=mem:256M >"$log" 2>&1 & ;;
    nbdkit) nbdkit -f -i 127.0.0.1 -p "$PORT" -e m memory 256M >"$log" 2>&1 & ;;
    qemu-nbd) qemu-nbd -f raw -x m -b 127.0.0.1 -p "$PORT" -e 1000 -t "$IMG" >"$log" 2>&1 & ;;
    esac
    SRV=$!
    for _ in $(seq 100); do
        nbdinfo --size "nbd://127.0.0.1:$PORT/m" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "$1 did not start: $(tail -3 "$log")"
}
stop() {
    kill "$SRV" 2>/dev/null
    wait "$SRV" 2>/dev/null
    SRV=
}

for r in $(seq "$ROUNDS"); do
    n=${#LIST[@]}
    for i in $(seq 0 $((n - 1))); do
        s=${LIST[$(((i + r) % n))]}
        echo "round $r: $s"
        start "$s"
        if ! "$PY" -B "$ROOT/tests/stress/fairness.py" "$PORT" "$SRV" --report "$RUN/$s-$r.json" \
            >"$RUN/$s-$r.out" 2>&1; then
            # A server that died under the load is a result, not a failure
            # of the bench: the report says so, with its last words.
            kill -0 "$SRV" 2>/dev/null && die "$s round $r: $(tail -3 "$RUN/$s-$r.out")"
            "$PY" -c 'import json, sys; json.dump({"died": sys.argv[1]}, open(sys.argv[2], "w"))' \
                "$(tail -1 "$RUN/$s.log")" "$RUN/$s-$r.json"
            echo "  $s died: $(tail -1 "$RUN/$s.log")"
        fi
        stop
    done
done

"$PY" - "$RUN" "$OUT" "$ROUNDS" "$ARGS_GIVEN" "${LIST[@]}" <<'PY'
import json, statistics, sys, time
run, out, rounds, args, servers = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
med = {}
rows = []
died = {}
for s in servers:
    rs = [json.load(open(f"{run}/{s}-{r}.json")) for r in range(1, rounds + 1)]
    dead = [x["died"].replace("`", "'") for x in rs if "died" in x]
    rs = [x for x in rs if "died" not in x]
    if dead:
        died[s] = dead
    if not rs:
        rows.append(f"| {s} | died in every round: {dead[0]} |||||||")
        continue
    m = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
    m["p99_ratio"] = statistics.median(x["with_p99_us"] / x["alone_p99_us"] for x in rs)
    m["iops_ratio"] = statistics.median(x["with_iops"] / x["alone_iops"] for x in rs)
    med[s] = m
    rows.append(f"| {s} | {m['alone_p99_us']:.0f} | {m['with_p99_us']:.0f} | {m['p99_ratio']:.2f}x "
                f"| {m['alone_iops']:.0f} | {m['with_iops']:.0f} | {m['iops_ratio']:.2f}x "
                f"| {m['flooded_mib']:.0f} |")
lines = [
    "# nbdplex beside 200 hostile clients, against its peers",
    "",
    f"`perf/bench-fairness.sh {args}`".replace(" `", "`"),
    f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {rounds} rounds, medians; raw data in "
    f"`{run.split('/perf/')[-1]}`).",
    "",
    "The good client is fio's nbd engine, 4 KiB random writes: p99 completion latency at QD1, IOPS",
    "at QD16, each the better of two 5 s runs, alone and beside 120 clients that flood 4 KiB",
    "WRITEs and never read a reply, 40 slow handshakes and 40 garbage senders",
    "(tests/stress/fairness.py). Issue 28's target: p99 within 3x and IOPS at least 0.7x of alone.",
    "",
    "| server | QD1 p99 alone µs | beside µs | ratio | QD16 IOPS alone | beside | ratio | flooded MiB |",
    "|---|---|---|---|---|---|---|---|",
    *rows,
]
for s, dead in died.items():
    lines += ["", f"{s} died under the hostile load in {len(dead)} of {rounds} rounds: `{dead[0]}`"]
if "nbdplex" in med:
    lines += ["", "nbdplex's ratios over each peer's (p99: lower is better; IOPS: higher is better):", ""]
    for s in servers:
        if s != "nbdplex" and s in med:
            lines.append(f"- {s}: p99 ratio {med['nbdplex']['p99_ratio'] / med[s]['p99_ratio']:.2f}, "
                         f"IOPS ratio {med['nbdplex']['iops_ratio'] / med[s]['iops_ratio']:.2f}")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
