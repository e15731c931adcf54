#!/bin/bash
# perf/bench-takeover.sh - what clients see of serve --takeover: fio's nbd
# engine (4k random reads and writes, 4 connections, QD 4 each) logs every
# request's latency with a wall-clock time while the server is replaced
# several times; the report gives the latency percentiles of requests that
# completed during a hand-off (from the start of the new process to the
# end of the old one, plus 200 ms) against those of the rest of the run,
# and the pauses the servers logged. No peer has a hand-off: nbdkit,
# qemu-nbd and nbd-server restarted under fio close its connections (fio
# fails), so there is no ratio to a peer. Writes perf/RESULTS-takeover.md.
set -u

usage() {
	cat <<'EOF2'
usage: perf/bench-takeover.sh [--handoffs N] [--runtime S] [--out FILE]
  --handoffs N  replacements during the run (default 5)
  --runtime S   seconds of fio (default 15)
  --out FILE    report (default perf/RESULTS-takeover.md)
Needs fio with the nbd engine and python3. Uses $NBDPLEX or build/nbdplex.
EOF2
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NBDPLEX=${NBDPLEX:-$ROOT/build/nbdplex}
HANDOFFS=5
RUNTIME=15
OUT=$ROOT/perf/RESULTS-takeover.md
ARGS_GIVEN="$*"
. "$ROOT/perf/lib/opts.sh"
bench_args bench-takeover.sh --handoffs=HANDOFFS --runtime=RUNTIME --out=OUT -- "$@"

W=$(mktemp -d /dev/shm/np-takeover.XXXXXX)
PIDS=()
cleanup() {
	stop_pids
	rm -rf "$W"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SPEC=(-e "d=file:$W/d.img,size=1G" --control "$W/ctl.sock")

"$NBDPLEX" serve -l "127.0.0.1:$PORT" --pidfile "$W/pid.0" "${SPEC[@]}" >>"$W/server.log" 2>&1 &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 100); do [ -s "$W/pid.0" ] && break; sleep 0.1; done
[ -s "$W/pid.0" ] || { echo "server did not start" >&2; exit 1; }

(cd "$W" && fio --name=lat --ioengine=nbd --uri="nbd://127.0.0.1:$PORT/d" --rw=randrw \
	--bs=4k --iodepth=4 --numjobs=4 --size=256M --offset_increment=256M --time_based \
	--runtime="$RUNTIME" --write_lat_log=lat --log_avg_msec=0 --log_unix_epoch=1 \
	--output-format=json >"$W/fio.json" 2>"$W/fio.err") &
FIO=$!
PIDS+=("$FIO")
gap=$(python3 -c "print(($RUNTIME - 4) / $HANDOFFS)")
sleep 2
: >"$W/windows"
for i in $(seq "$HANDOFFS"); do
	t0=$(date +%s%3N)
	old=$SERVER
	"$NBDPLEX" serve --takeover "$W/ctl.sock" --pidfile "$W/pid.$i" "${SPEC[@]}" \
		>>"$W/server.log" 2>&1 &
	SERVER=$!
	PIDS+=("$SERVER")
	for _ in $(seq 600); do [ -s "$W/pid.$i" ] && ! kill -0 "$old" 2>/dev/null && break; sleep 0.01; done
	wait "$old"
	echo "$t0 $(date +%s%3N)" >>"$W/windows"
	sleep "$gap"
done
wait "$FIO" || { echo "fio failed: $(tail -5 "$W/fio.err")" >&2; exit 1; }

python3 - "$W" "$OUT" "$0 $ARGS_GIVEN" "$HANDOFFS" <<'PY'
import glob, json, re, sys, time
w, out, cmd, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
wins = [tuple(map(int, l.split())) for l in open(f"{w}/windows")]
during, rest = [], []
for path in glob.glob(f"{w}/lat_clat.*.log"):
    for line in open(path):
        t, ns = int(line.split(",")[0]), int(line.split(",")[1])
        (during if any(a <= t <= b + 200 for a, b in wins) else rest).append(ns / 1e6)
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p / 100))] if v else float("nan")
pauses = [float(x) for x in re.findall(r"paused clients for ([0-9.]+) ms", open(f"{w}/server.log").read())]
text = open(f"{w}/fio.json").read()  # the nbd engine prints a line first
errs = sum(j["error"] for j in json.loads(text[text.index("{"):])["jobs"])
closed = len(re.findall(r"closing:", open(f"{w}/server.log").read()))
with open(out, "w") as f:
    f.write(f"# serve --takeover: client latency around a hand-off\n\n")
    f.write(f"Made by `{cmd.strip()}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n")
    f.write("fio nbd engine, 4k randrw, 4 connections x QD 4, a 1 GiB file on /dev/shm; "
            f"{n} hand-offs during the run. Target: p99 during a hand-off under 100 ms.\n\n")
    f.write("| requests | count | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n")
    for name, v in (("during a hand-off (+200 ms)", during), ("the rest of the run", rest)):
        f.write(f"| {name} | {len(v)} | {pct(v, 50):.3f} | {pct(v, 99):.3f} | {max(v) if v else 0:.3f} |\n")
    f.write(f"\nPauses the new servers logged (ms): {', '.join(f'{p:.1f}' for p in pauses)}.\n")
    f.write(f"fio errors: {errs}; connections closed on an error in the server logs: {closed}.\n")
    f.write("Hand-off windows (wall clock, ms, start of the new process to the exit of the old): "
            + ", ".join(f"{b - a}" for a, b in wins) + ".\n")
print(open(out).read())
PY
