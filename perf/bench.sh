#!/bin/bash
# perf/bench.sh - side-by-side benchmark of nbdplex against nbdkit (file
# plugin), nbd-server and qemu-nbd, all serving the same data, in
# alternating rounds, with fio's nbd engine (libnbd). --case picks the
# medium: a file on tmpfs (the default), a raw loop device, a file on ext4
# or XFS, or thin volumes against qcow2 (perf/lib/cases.sh).
#
# It builds nothing: it uses an existing build/nbdplex.  See perf/README.md.
set -u

usage() {
    cat <<'EOF'
usage: perf/bench.sh [--quick] [options]
  --case LIST         comma list from tmpfs,raw,ext4,xfs,thin, or all
                      (tmpfs,raw,ext4,thin); default tmpfs. Every case but
                      tmpfs needs root (losetup, mount)
  --quick             2 s per fio run, 2 rounds, fewer requests in the
                      syscall count; the extras only for tmpfs
  --servers LIST      comma list from nbdplex,nbdkit,nbd-server,qemu-nbd
                      (raw: also fio-local; thin: nbdplex,qemu-nbd,nbdplex-file)
                      (default: the case's; the first one is the base of ratios)
  --rounds N          rounds of alternation (default 3, --quick 2)
  --runtime S         seconds per fio run (default 8, --quick 2)
  --jobs LIST         comma list of job names to run (default: all the case's)
  --no-extras         skip the syscall count and the RSS measurements
  --out FILE          where to write the report (default perf/RESULTS.md)
  --port-base N       first TCP port to use on 127.0.0.1 (default 21000)
  -h, --help          this text
Raw fio JSON, perf stat counts and server logs go to perf/tmp/run-<time>/.
EOF
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIB=$ROOT/perf/lib
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)

QUICK=0
ROUNDS=
RUNTIME=
SERVERS=
CASES=tmpfs
JOBS_WANTED=
EXTRAS=1
OUT=$ROOT/perf/RESULTS.md
PORT_BASE=21000
ARGS_GIVEN="$*"

. "$ROOT/perf/lib/opts.sh"
bench_args bench.sh --quick:QUICK=1 --case=CASES --servers=SERVERS --rounds=ROUNDS --runtime=RUNTIME --jobs=JOBS_WANTED --no-extras:EXTRAS=0 --out=OUT --port-base=PORT_BASE -- "$@"

if [ -z "$RUNTIME" ]; then
    if [ $QUICK = 1 ]; then RUNTIME=2; else RUNTIME=8; fi
fi
if [ -z "$ROUNDS" ]; then
    if [ $QUICK = 1 ]; then ROUNDS=2; else ROUNDS=3; fi
fi
if [ $QUICK = 1 ]; then
    SYSCALL_IOS=50000; SYSCALL_IOS_1M=1000; RSS_RUNTIME=3
else
    SYSCALL_IOS=200000; SYSCALL_IOS_1M=5000; RSS_RUNTIME=5
fi
# Writes to new space (thin case) stop at these counts, or at --runtime:
# a fresh qcow2 takes a 64 KiB cluster per 4 KiB write.
NEW4K=$((RUNTIME * 10000)); NEW4K4=$((RUNTIME * 2500)); NEW1M=$((RUNTIME * 512)); NEWCOW=8000
IDLE_CONNS=1000
EXPORT=bench

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

case "$ROUNDS" in ''|*[!0-9]*|0) die "--rounds wants a positive integer, got '$ROUNDS'" ;; esac
case "$RUNTIME" in ''|*[!0-9]*|0) die "--runtime wants a positive integer, got '$RUNTIME'" ;; esac

. "$LIB/cases.sh"
case "$CASES" in all) CASES=tmpfs,raw,ext4,thin ;; esac
IFS=, read -r -a CASE_LIST <<<"$CASES"
[ ${#CASE_LIST[@]} -ge 1 ] || die "--case is empty"
[ ${#CASE_LIST[@]} = 1 ] || [ -z "$SERVERS" ] || die "--servers goes with one --case only"
NBDPLEX=$ROOT/build/nbdplex
for CASE in "${CASE_LIST[@]}"; do
    case_defaults
    IFS=, read -r -a SERVER_LIST <<<"${SERVERS:-$CASE_SERVERS}"
    [ ${#SERVER_LIST[@]} -ge 1 ] || die "--servers is empty"
    for s in "${SERVER_LIST[@]}"; do
        case_check_server "$s"
        case "$s" in
            nbdplex|nbdplex-file)
                [ -x "$NBDPLEX" ] || die "$NBDPLEX not found: build nbdplex first (bench.sh builds nothing), or leave it out with --servers nbdkit,nbd-server,qemu-nbd"
                timeout 10 "$NBDPLEX" serve --help >/dev/null 2>&1 \
                    || die "'$NBDPLEX serve --help' failed: this build has no working 'serve' subcommand" ;;
            nbdkit) command -v nbdkit >/dev/null || die "nbdkit not installed (apt-get install nbdkit)" ;;
            nbd-server) command -v nbd-server >/dev/null || die "nbd-server not installed (apt-get install nbd-server)" ;;
            qemu-nbd) command -v qemu-nbd >/dev/null || die "qemu-nbd not installed (apt-get install qemu-utils)" ;;
        esac
    done
    case "$CASE" in
        tmpfs) ;;
        *) [ "$(id -u)" = 0 ] || die "--case $CASE needs root (losetup, mount)" ;;
    esac
    case "$CASE" in
        xfs) command -v mkfs.xfs >/dev/null || die "mkfs.xfs not installed (apt-get install xfsprogs)" ;;
        thin) command -v qemu-img >/dev/null || die "qemu-img not installed (apt-get install qemu-utils)" ;;
    esac
done
command -v fio >/dev/null || die "fio not installed (apt-get install fio)"
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd engine (Debian's fio has it)"
command -v qemu-img >/dev/null || die "qemu-img not installed (apt-get install qemu-utils): the FUA writes at QD1 use qemu-img bench"
[ $EXTRAS = 0 ] || perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1 ||
    die "'perf stat -e raw_syscalls:sys_enter' does not work (apt-get install linux-perf; needs root), or use --no-extras"
[ -d /dev/shm ] && [ -w /dev/shm ] || die "/dev/shm is not writable"

RUN_TOP=$ROOT/perf/tmp/run-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN_TOP" || die "cannot create $RUN_TOP"
# pin the binary: others may rebuild build/nbdplex while the rounds run
if [ -x "$NBDPLEX" ]; then
    NBDPLEX_BUILT=$(date -u -r "$NBDPLEX" '+%Y-%m-%d %H:%M UTC')
    cp "$NBDPLEX" "$RUN_TOP/nbdplex" || die "cannot copy $NBDPLEX to $RUN_TOP"
    NBDPLEX=$RUN_TOP/nbdplex
    timeout 10 "$NBDPLEX" serve --help >/dev/null 2>&1 || die "the copy of build/nbdplex does not run (rebuilt just now?); try again"
fi
CLK=$("$PY" "$LIB/proc.py" clk)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((IDLE_CONNS + 100)) ] \
    || { log "ulimit -n is $(ulimit -n): skipping the $IDLE_CONNS idle connections test"; IDLE_CONNS=0; }

# ---- process bookkeeping: everything we start is stopped by its PID ----
SRV_PID=
HELPER_PIDS=()

stop_pid() {   # stop_pid PID: TERM, wait up to 10 s, then KILL
    local pid=$1 i
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 100); do
        [ -d "/proc/$pid" ] || return 0
        # reap it if it is our child (zombies keep /proc/PID)
        if grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
            wait "$pid" 2>/dev/null; return 0
        fi
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

stop_server() {
    local pid=$SRV_PID kids k
    [ -n "$pid" ] || return 0
    # nbd-server forks a child per client: stop any that are left, by PID
    kids=$(for k in /proc/"$pid"/task/*/children; do cat "$k" 2>/dev/null; done)
    stop_pid "$pid"
    for k in $kids; do stop_pid "$k"; done
    SRV_PID=
}

cleanup() {
    local p
    for p in "${HELPER_PIDS[@]}"; do stop_pid "$p"; done
    stop_server
    case_cleanup
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- servers ----
# start_server NAME PORT: sets SRV_PID, returns non-zero if it did not come up.
# fio-local is no server: SRV_PID stays empty.
start_server() {
    local name=$1 port=$2 pidfile=$RUN/logs/$1-$2.pid logf=$RUN/logs/$1-$2.log cmd i
    SRV_PID=
    [ "$name" = fio-local ] && return 0
    rm -f "$pidfile"
    if [ "$name" = nbd-server ]; then
        cat >"$RUN/nbd-server-$port.conf" <<EOC
[generic]
    listenaddr = 127.0.0.1
    port = $port
    allowlist = false
[$EXPORT]
    exportname = $IMG
EOC
    fi
    cmd=$(case_server_cmd "$name" "$port" "$pidfile")
    echo "$name: $cmd" >>"$RUN/commands.txt"
    if [ "$name" = nbd-server ]; then
        # nbd-server daemonises; its PID comes from the pidfile
        $cmd >"$logf" 2>&1 </dev/null
    else
        $cmd >"$logf" 2>&1 </dev/null &
        SRV_PID=$!
    fi
    for i in $(seq 150); do
        if [ -z "$SRV_PID" ] && [ -s "$pidfile" ]; then SRV_PID=$(cat "$pidfile"); fi
        if [ -n "$SRV_PID" ] && ! [ -d "/proc/$SRV_PID" ]; then
            log "$name exited at start; log: $logf"; tail -5 "$logf" >&2; SRV_PID=; return 1
        fi
        if [ -n "$SRV_PID" ] && "$PY" "$LIB/proc.py" listening "$port"; then
            # servers that write a pidfile once ready: wait for it too
            for i in $(seq 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
            [ -s "$pidfile" ] || log "warning: $name wrote no pidfile $pidfile"
            if [ -s "$pidfile" ] && [ "$(cat "$pidfile")" != "$SRV_PID" ]; then
                log "warning: $name pidfile says $(cat "$pidfile"), started PID $SRV_PID"
            fi
            return 0
        fi
        sleep 0.1
    done
    log "$name did not listen on 127.0.0.1:$port within 15 s; log: $logf"
    stop_server
    return 1
}

# wait (up to 5 s) for the per-client children of the server to go away, so
# that their CPU time has been folded into the parent's cutime/cstime
settle_children() {
    local i
    [ -n "$SRV_PID" ] || return 0
    for i in $(seq 50); do
        [ "$("$PY" "$LIB/proc.py" children "$SRV_PID")" = 0 ] && return 0
        sleep 0.1
    done
}

srv_cpu() { if [ -n "$SRV_PID" ]; then "$PY" "$LIB/proc.py" cpu "$SRV_PID"; else echo 0; fi; }

# fio_args NAME RW BS QD NJ PORT [SRV] -> the fio arguments shared by all runs
fio_args() {
    local name=$1 rw=$2 bs=$3 qd=$4 nj=$5 port=$6 srv=${7:-}
    if [ "$srv" = fio-local ]; then
        echo "--name=$name --ioengine=libaio --direct=1 --filename=$IMG"
    else
        echo "--name=$name --ioengine=nbd --uri=nbd://127.0.0.1:$port/$EXPORT"
    fi
    echo "--rw=$rw --bs=$bs --iodepth=$qd --numjobs=$nj --group_reporting --norandommap --thread"
    [ "$qd" = 1 ] && echo "--lat_percentiles=1"
    # sequential jobs on 4 connections: each its own quarter of the disk
    if [ "$nj" -gt 1 ] && { [ "$rw" = read ] || [ "$rw" = write ]; }; then
        echo "--size=$((1024 / nj))m --offset_increment=$((1024 / nj))m"
    fi
}

# fua_bench SRV PORT JSON OFFSET: 4 KiB writes with FUA at QD1 by qemu-img
# bench (writethrough: FUA on every write), sequential from OFFSET, for
# about RUNTIME s; writes a fio-shaped JSON (mean latency only).
fua_bench() {
    local srv=$1 port=$2 json=$3 off=$4 n=$((RUNTIME * 4000)) t0 t1 out
    t0=$(date +%s%N)
    out=$(timeout -k 10 $((RUNTIME * 10 + 60)) qemu-img bench -f raw -w -t writethrough -d 1 \
        -c "$n" -s 4096 -o "$off" "nbd://127.0.0.1:$port/$EXPORT" 2>&1) || { echo "$out" >>"$RUN/logs/fio.log"; return 1; }
    t1=$(date +%s%N)
    "$PY" - "$json" "$n" "$((t1 - t0))" <<'PY'
import json, sys
n, ns = int(sys.argv[2]), int(sys.argv[3])
w = {"total_ios": n, "iops": n / (ns / 1e9), "bw_bytes": n * 4096 / (ns / 1e9),
     "lat_ns": {"mean": ns / n}}
json.dump({"jobs": [{"job_runtime": ns / 1e6, "write": w}]}, open(sys.argv[1], "w"))
PY
}

# prep_job SRV PORT NAME: what a thin job needs first. Returns 1 to skip it.
FILLED=
prep_job() {
    local srv=$1 port=$2 name=$3
    [ "$CASE" = thin ] || return 0
    [ "$srv" = fio-local ] && return 0
    case "$name" in
        *-cow-*) case_snapshot "$srv" "$port" || return 1 ;;
        *-written-*|*-qd1-*)
            [ "$FILLED" = "$srv" ] && return 0
            # shellcheck disable=SC2046
            timeout -k 10 300 fio $(fio_args fill write 1M 8 1 "$port" "$srv") --offset=48g --size=2g \
                --output-format=json --output="$RUN/fio/fill-$srv.json" >>"$RUN/logs/fio.log" 2>&1 \
                || log "filling [48G, 50G) for $srv failed"
            FILLED=$srv ;;
    esac
}

# run_job ROUND SERVER PORT JOBSPEC: one fio run, CPU time of the server and
# of the whole machine (server, fio and the kernel's TCP work) around it
run_job() {
    local round=$1 srv=$2 port=$3 name rw bs qd nj extra json t0 t1 m0 m1 rc tb=--time_based off
    read -r name rw bs qd nj extra <<<"$4"
    extra=${extra//NEW4K4/$NEW4K4}
    extra=${extra//NEW4K/$NEW4K}
    extra=${extra//NEW1M/$NEW1M}
    extra=${extra//NEWCOW/$NEWCOW}
    [[ "$extra" == *--number_ios* ]] && tb=
    prep_job "$srv" "$port" "$name" || return 0
    json=$RUN/fio/r$round-$srv-$name.json
    t0=$(srv_cpu)
    m0=$("$PY" "$LIB/proc.py" machine)
    # fio-local's FUA writes: O_SYNC on the device (FUA, or a flush after each)
    [[ "$name" == fuawrite-* ]] && [ "$srv" = fio-local ] && extra="$extra --sync=1"
    if [[ "$name" == fuawrite-* ]] && [ "$srv" != fio-local ]; then
        off=0; [[ "$extra" == *--offset=48g* ]] && off=48G
        fua_bench "$srv" "$port" "$json" "$off"
        rc=$?
    else
        # shellcheck disable=SC2046,SC2086
        timeout -k 10 $((RUNTIME + 60)) fio $(fio_args "$name" "$rw" "$bs" "$qd" "$nj" "$port" "$srv") \
            $extra $tb --runtime="$RUNTIME" --output-format=json --output="$json" \
            >>"$RUN/logs/fio.log" 2>&1
        rc=$?
    fi
    settle_children
    m1=$("$PY" "$LIB/proc.py" machine)
    t1=$(srv_cpu)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$srv" "$name" "$rc" "$((t1 - t0))" "$CLK" "$json" \
        "$((${m1% *} - ${m0% *}))" "$((${m1#* } - ${m0#* }))" >>"$RUN/runs.tsv"
    [ $rc = 0 ] || log "run failed (rc=$rc) for $srv $name round $round: see $RUN/logs/fio.log"
}

# ---- one case ----
run_case() {
    local k srv port j name rw bs qd nj nios json pf rc perf_pid ipid fpid ready base rss note peak r hwm i t
    RUN=$RUN_TOP/$CASE
    mkdir -p "$RUN/fio" "$RUN/logs" "$RUN/syscalls" || die "cannot create $RUN"
    local -n case_jobs=$CASE_JOBS
    JOBS=()
    for j in "${case_jobs[@]}"; do
        name=${j%% *}
        if [ -z "$JOBS_WANTED" ] || [[ ",$JOBS_WANTED," == *",$name,"* ]]; then
            JOBS+=("$j")
        fi
    done
    [ ${#JOBS[@]} -ge 1 ] || { log "--jobs matched no job of case $CASE"; return 0; }
    IFS=, read -r -a SERVER_LIST <<<"${SERVERS:-$CASE_SERVERS}"
    local extras=$EXTRAS
    if [ "$CASE" = thin ] || { [ $QUICK = 1 ] && [ "$CASE" != tmpfs ]; }; then extras=0; fi
    LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
    case_setup

    # ---- the rounds ----
    printf 'round\tserver\tjob\trc\tcpu_ticks\tclk_tck\tjson\tbusy_ticks\tall_ticks\n' >"$RUN/runs.tsv"
    : >"$RUN/commands.txt"
    : >"$RUN/load.txt"
    port=$PORT_BASE
    local nsrv=${#SERVER_LIST[@]}
    for round in $(seq "$ROUNDS"); do
        echo "round $round: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RUN/load.txt"
        for k in $(seq 0 $((nsrv - 1))); do
            # rotate the order each round so no server always goes first
            srv=${SERVER_LIST[$(( (k + round - 1) % nsrv ))]}
            port=$((port + 1))
            log "$CASE round $round/$ROUNDS: $srv on port $port"
            FILLED=
            case_fresh "$srv"
            start_server "$srv" "$port" || continue
            for j in "${JOBS[@]}"; do run_job "$round" "$srv" "$port" "$j"; done
            stop_server
        done
    done
    PORT_BASE=$((port + 1))
    # ---- syscalls per request, and RSS ----
    # Counted at full speed with perf stat (kernel tracepoints, no slowdown):
    # under strace a server runs so slowly that requests pile up, and one that
    # batches would show batches it never forms at full speed.
    printf 'server\tjob\tfio_json\tperf_file\tfio_rc\n' >"$RUN/syscalls.tsv"
    printf 'server\ttest\tconnections\tidle_rss_kib\tpeak_rss_kib\tnote\n' >"$RUN/rss.tsv"
    if [ $extras = 1 ]; then
        SC_EVENTS=raw_syscalls:sys_enter
        for t in /sys/kernel/tracing /sys/kernel/debug/tracing; do
            [ -d "$t/events/syscalls" ] || continue
            for c in read write readv writev recvfrom sendto recvmsg sendmsg pread64 pwrite64 \
                     preadv2 pwritev2 io_submit io_getevents io_uring_enter epoll_wait epoll_pwait \
                     poll ppoll futex sendfile64 splice; do
                [ -d "$t/events/syscalls/sys_enter_$c" ] && SC_EVENTS+=",syscalls:sys_enter_$c"
            done
            break
        done
        for srv in "${SERVER_LIST[@]}"; do
            [ "$srv" = fio-local ] && continue
            for j in "randread-4k-qd32-c1 randread 4k 32 1 $SYSCALL_IOS" \
                     "randread-4k-qd32-c4 randread 4k 32 4 $SYSCALL_IOS" \
                     "randwrite-4k-qd32-c1 randwrite 4k 32 1 $SYSCALL_IOS" \
                     "randwrite-4k-qd32-c4 randwrite 4k 32 4 $SYSCALL_IOS" \
                     "read-1m-qd8-c1 read 1M 8 1 $SYSCALL_IOS_1M" \
                     "write-1m-qd8-c1 write 1M 8 1 $SYSCALL_IOS_1M"; do
                read -r name rw bs qd nj nios <<<"$j"
                port=$((port + 1))
                log "syscalls: $srv $name ($nios requests per connection, perf stat)"
                start_server "$srv" "$port" || continue
                json=$RUN/fio/syscalls-$srv-$name.json
                pf=$RUN/syscalls/$srv-$name.csv
                # Counters attached to the server's threads are inherited by the
                # threads and processes it makes for each client.
                perf stat -x, -e "$SC_EVENTS" -p "$("$PY" "$LIB/proc.py" pids "$SRV_PID")" -o "$pf" \
                    >>"$RUN/logs/perf.log" 2>&1 &
                perf_pid=$!
                HELPER_PIDS+=("$perf_pid")
                sleep 1
                # shellcheck disable=SC2046
                timeout -k 10 120 fio $(fio_args "$name" "$rw" "$bs" "$qd" "$nj" "$port") \
                    --number_ios="$nios" --runtime=90 --output-format=json --output="$json" \
                    >>"$RUN/logs/fio.log" 2>&1
                rc=$?
                settle_children
                kill -INT "$perf_pid" 2>/dev/null
                for i in $(seq 100); do [ -d "/proc/$perf_pid" ] || break; sleep 0.1; done
                stop_pid "$perf_pid"
                printf '%s\t%s\t%s\t%s\t%s\n' "$srv" "$name" "$json" "$pf" "$rc" >>"$RUN/syscalls.tsv"
                stop_server
            done
        done

        # RSS with many idle connections (nbdplex only: the peers spend a thread
        # or a process per connection, which is not what this test is about)
        for srv in "${SERVER_LIST[@]}"; do
            [ "$srv" = fio-local ] && continue
            [ "$srv" = nbdplex ] && [ "$IDLE_CONNS" -gt 0 ] || continue
            port=$((port + 1))
            log "RSS: $srv with $IDLE_CONNS idle connections"
            start_server "$srv" "$port" || continue
            sleep 0.5
            base=$("$PY" "$LIB/proc.py" rss "$SRV_PID")
            ready=$RUN/idle-$srv.ready
            rm -f "$ready"
            "$PY" "$LIB/idle_conns.py" 127.0.0.1 "$port" "$EXPORT" "$IDLE_CONNS" "$ready" \
                2>>"$RUN/logs/idle_conns.log" &
            ipid=$!
            HELPER_PIDS+=("$ipid")
            for i in $(seq 600); do [ -s "$ready" ] && break; [ -d "/proc/$ipid" ] || break; sleep 0.1; done
            sleep 1
            if [ -s "$ready" ]; then
                rss=$("$PY" "$LIB/proc.py" rss "$SRV_PID")
                note=$(cat "$ready")
            else
                rss=; note="idle_conns.py did not finish in 60 s; see logs/idle_conns.log"
            fi
            printf '%s\tidle\t%s\t%s\t%s\t%s\n' "$srv" "$IDLE_CONNS" "$base" "$rss" "$note" >>"$RUN/rss.tsv"
            stop_pid "$ipid"
            stop_server
        done

        # RSS under 64 connections writing 1 MiB requests at QD32 (every server)
        for srv in "${SERVER_LIST[@]}"; do
            [ "$srv" = fio-local ] && continue
            port=$((port + 1))
            log "RSS: $srv under 64 connections x QD32 x 1 MiB writes"
            start_server "$srv" "$port" || continue
            sleep 0.5
            base=$("$PY" "$LIB/proc.py" rss "$SRV_PID")
            # shellcheck disable=SC2046
            # --zero_buffers: spare the 2 CPUs fio's random fill of 64 x 32 MiB
            timeout -k 10 $((RSS_RUNTIME + 60)) fio $(fio_args rss-write-1m-qd32-c64 write 1M 32 64 "$port") \
                --zero_buffers --time_based --runtime="$RSS_RUNTIME" \
                --output-format=json --output="$RUN/fio/rss-$srv.json" >>"$RUN/logs/fio.log" 2>&1 &
            fpid=$!
            HELPER_PIDS+=("$fpid")
            peak=0
            while [ -d "/proc/$fpid" ] && ! grep -q '^State:.*Z' "/proc/$fpid/status" 2>/dev/null; do
                r=$("$PY" "$LIB/proc.py" rss "$SRV_PID")
                [ "$r" -gt "$peak" ] && peak=$r
                sleep 0.2
            done
            wait "$fpid"; rc=$?
            hwm=$("$PY" "$LIB/proc.py" hwm "$SRV_PID")
            case $rc in 124|137) rc="$rc (fio did not finish within $((RSS_RUNTIME + 60)) s of a ${RSS_RUNTIME} s run: too slow or stuck)" ;; esac
            printf '%s\twrite-1m-qd32-c64\t64\t%s\t%s\tfio rc=%s, VmHWM at end %s KiB\n' \
                "$srv" "$base" "$peak" "$rc" "$hwm" >>"$RUN/rss.tsv"
            stop_server
        done
    fi

    # ---- the report ----
    {
        echo "root=$ROOT"
        echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "nproc=$(nproc)"
        echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
        echo "kernel=$(uname -r)"
        echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
        echo "load=$LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
        echo "load_rounds=$(paste -sd';' "$RUN/load.txt")"
        echo "case=$CASE"
        echo "case_desc=$CASE_DESC"
        echo "command=perf/bench.sh${ARGS_GIVEN:+ $ARGS_GIVEN}"
        echo "rounds=$ROUNDS"
        echo "runtime=$RUNTIME"
        echo "servers=${SERVERS:-$CASE_SERVERS}"
        echo "syscall_ios=$SYSCALL_IOS"
        echo "syscall_ios_1m=$SYSCALL_IOS_1M"
        echo "rss_runtime=$RSS_RUNTIME"
        echo "fio=$(fio --version)"
        echo "nbdkit=$(nbdkit --version 2>/dev/null | head -1)"
        echo "nbd-server=$(nbd-server -V 2>&1 | grep -o 'version [0-9.]*' | head -1)"
        echo "qemu-nbd=$(qemu-nbd --version 2>/dev/null | head -1)"
        echo "nbdplex=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)${NBDPLEX_BUILT:+ (build/nbdplex built $NBDPLEX_BUILT, copied to the run directory)}"
    } >"$RUN/meta.txt"
    "$PY" "$LIB/report.py" "$RUN" "$RUN/RESULTS.md" || die "report failed; raw data in $RUN"
    case_cleanup
}

for CASE in "${CASE_LIST[@]}"; do
    case_defaults
    run_case
done
for CASE in "${CASE_LIST[@]}"; do
    cat "$RUN_TOP/$CASE/RESULTS.md"
    echo
done >"$OUT" || die "cannot write $OUT"
log "wrote $OUT (raw data in $RUN_TOP)"
