#!/bin/bash
# perf/bench.sh - side-by-side benchmark of nbdplex against nbdkit (file
# plugin), nbd-server and qemu-nbd, all serving the same 1 GiB file on
# /dev/shm, in alternating rounds, with fio's nbd engine (libnbd).
#
# It builds nothing: it uses an existing build/nbdplex.  See perf/README.md.
set -u

usage() {
    cat <<'EOF'
usage: perf/bench.sh [--quick] [options]
  --quick             2 s per fio run, fewer requests in the syscall count
  --servers LIST      comma list from nbdplex,nbdkit,nbd-server,qemu-nbd
                      (default: all four; the first one is the base of ratios)
  --rounds N          rounds of alternation (default 3)
  --runtime S         seconds per fio run (default 8, --quick 2)
  --jobs LIST         comma list of job names to run (default: all 8)
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
ROUNDS=3
RUNTIME=
SERVERS=nbdplex,nbdkit,nbd-server,qemu-nbd
JOBS_WANTED=
EXTRAS=1
OUT=$ROOT/perf/RESULTS.md
PORT_BASE=21000
ARGS_GIVEN="$*"

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --servers) SERVERS=${2:?--servers needs a list}; shift ;;
        --servers=*) SERVERS=${1#*=} ;;
        --rounds) ROUNDS=${2:?--rounds needs a number}; shift ;;
        --rounds=*) ROUNDS=${1#*=} ;;
        --runtime) RUNTIME=${2:?--runtime needs seconds}; shift ;;
        --runtime=*) RUNTIME=${1#*=} ;;
        --jobs) JOBS_WANTED=${2:?--jobs needs a list}; shift ;;
        --jobs=*) JOBS_WANTED=${1#*=} ;;
        --no-extras) EXTRAS=0 ;;
        --out) OUT=${2:?--out needs a file}; shift ;;
        --out=*) OUT=${1#*=} ;;
        --port-base) PORT_BASE=${2:?--port-base needs a number}; shift ;;
        --port-base=*) PORT_BASE=${1#*=} ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ -z "$RUNTIME" ]; then
    if [ $QUICK = 1 ]; then RUNTIME=2; else RUNTIME=8; fi
fi
if [ $QUICK = 1 ]; then
    SYSCALL_IOS=50000; SYSCALL_IOS_1M=1000; RSS_RUNTIME=3
else
    SYSCALL_IOS=200000; SYSCALL_IOS_1M=5000; RSS_RUNTIME=5
fi
IDLE_CONNS=1000
EXPORT=bench

die() { echo "bench.sh: $*" >&2; exit 1; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

case "$ROUNDS" in ''|*[!0-9]*|0) die "--rounds wants a positive integer, got '$ROUNDS'" ;; esac
case "$RUNTIME" in ''|*[!0-9]*|0) die "--runtime wants a positive integer, got '$RUNTIME'" ;; esac

IFS=, read -r -a SERVER_LIST <<<"$SERVERS"
[ ${#SERVER_LIST[@]} -ge 1 ] || die "--servers is empty"
NBDPLEX=$ROOT/build/nbdplex
for s in "${SERVER_LIST[@]}"; do
    case "$s" in
        nbdplex)
            [ -x "$NBDPLEX" ] || die "$NBDPLEX not found: build nbdplex first (bench.sh builds nothing), or leave it out with --servers nbdkit,nbd-server,qemu-nbd"
            timeout 10 "$NBDPLEX" serve --help >/dev/null 2>&1 \
                || die "'$NBDPLEX serve --help' failed: this build has no working 'serve' subcommand" ;;
        nbdkit) command -v nbdkit >/dev/null || die "nbdkit not installed (apt-get install nbdkit)" ;;
        nbd-server) command -v nbd-server >/dev/null || die "nbd-server not installed (apt-get install nbd-server)" ;;
        qemu-nbd) command -v qemu-nbd >/dev/null || die "qemu-nbd not installed (apt-get install qemu-utils)" ;;
        *) die "unknown server '$s' (known: nbdplex, nbdkit, nbd-server, qemu-nbd)" ;;
    esac
done
command -v fio >/dev/null || die "fio not installed (apt-get install fio)"
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd engine (Debian's fio has it)"
[ $EXTRAS = 0 ] || perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1 ||
    die "'perf stat -e raw_syscalls:sys_enter' does not work (apt-get install linux-perf; needs root), or use --no-extras"
[ -d /dev/shm ] && [ -w /dev/shm ] || die "/dev/shm is not writable"

# job table: name rw bs iodepth numjobs
ALL_JOBS=(
    "randread-4k-qd32-c1 randread 4k 32 1"
    "randread-4k-qd32-c4 randread 4k 32 4"
    "randwrite-4k-qd32-c1 randwrite 4k 32 1"
    "randwrite-4k-qd32-c4 randwrite 4k 32 4"
    "read-1m-qd8-c1 read 1M 8 1"
    "read-1m-qd8-c4 read 1M 8 4"
    "write-1m-qd8-c1 write 1M 8 1"
    "write-1m-qd8-c4 write 1M 8 4"
)
JOBS=()
for j in "${ALL_JOBS[@]}"; do
    name=${j%% *}
    if [ -z "$JOBS_WANTED" ] || [[ ",$JOBS_WANTED," == *",$name,"* ]]; then
        JOBS+=("$j")
    fi
done
[ ${#JOBS[@]} -ge 1 ] || die "--jobs matched no job (names: randread-4k-qd32-c1, ..., write-1m-qd8-c4)"

RUN=$ROOT/perf/tmp/run-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN/fio" "$RUN/logs" "$RUN/syscalls" || die "cannot create $RUN"
IMG=/dev/shm/nbdplex-bench-$$.img
# pin the binary: others may rebuild build/nbdplex while the rounds run
if [[ ",$SERVERS," == *",nbdplex,"* ]]; then
    NBDPLEX_BUILT=$(date -u -r "$NBDPLEX" '+%Y-%m-%d %H:%M UTC')
    cp "$NBDPLEX" "$RUN/nbdplex" || die "cannot copy $NBDPLEX to $RUN"
    NBDPLEX=$RUN/nbdplex
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
    rm -f "$IMG"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- servers ----
# server_cmd NAME PORT PIDFILE -> prints the command line (one string)
server_cmd() {
    local name=$1 port=$2 pidfile=$3
    case "$name" in
        nbdplex) echo "$NBDPLEX serve -l 127.0.0.1:$port -e $EXPORT=file:$IMG --pidfile $pidfile" ;;
        nbdkit) echo "nbdkit -f -p $port -i 127.0.0.1 --pidfile $pidfile -e $EXPORT file $IMG" ;;
        nbd-server) echo "nbd-server -C $RUN/nbd-server-$port.conf -p $pidfile" ;;
        qemu-nbd) echo "qemu-nbd -f raw -x $EXPORT -b 127.0.0.1 -p $port --persistent --shared=128 --pid-file $pidfile $IMG" ;;
    esac
}

# start_server NAME PORT: sets SRV_PID, returns non-zero if it did not come up
start_server() {
    local name=$1 port=$2 pidfile=$RUN/logs/$1-$2.pid logf=$RUN/logs/$1-$2.log cmd i
    rm -f "$pidfile"
    if [ "$name" = nbd-server ]; then
        cat >"$RUN/nbd-server-$port.conf" <<EOF
[generic]
    listenaddr = 127.0.0.1
    port = $port
    allowlist = false
[$EXPORT]
    exportname = $IMG
EOF
    fi
    cmd=$(server_cmd "$name" "$port" "$pidfile")
    echo "$name: $cmd" >>"$RUN/commands.txt"
    if [ "$name" = nbd-server ]; then
        # nbd-server daemonises; its PID comes from the pidfile
        $cmd >"$logf" 2>&1 </dev/null
        SRV_PID=
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
    for i in $(seq 50); do
        [ "$("$PY" "$LIB/proc.py" children "$SRV_PID")" = 0 ] && return 0
        sleep 0.1
    done
}

# fio_args NAME RW BS QD NJ PORT -> the fio arguments shared by all runs
fio_args() {
    local name=$1 rw=$2 bs=$3 qd=$4 nj=$5 port=$6
    echo "--name=$name --ioengine=nbd --uri=nbd://127.0.0.1:$port/$EXPORT --rw=$rw --bs=$bs --iodepth=$qd --numjobs=$nj --group_reporting --norandommap --thread"
    # sequential jobs on 4 connections: each its own quarter of the disk
    if [ "$nj" -gt 1 ] && { [ "$rw" = read ] || [ "$rw" = write ]; }; then
        echo "--size=$((1024 / nj))m --offset_increment=$((1024 / nj))m"
    fi
}

# run_job ROUND SERVER PORT JOBSPEC: one fio run, CPU time of the server and
# of the whole machine (server, fio and the kernel's TCP work) around it
run_job() {
    local round=$1 srv=$2 port=$3 name rw bs qd nj json t0 t1 m0 m1 rc
    read -r name rw bs qd nj <<<"$4"
    json=$RUN/fio/r$round-$srv-$name.json
    t0=$("$PY" "$LIB/proc.py" cpu "$SRV_PID")
    m0=$("$PY" "$LIB/proc.py" machine)
    # shellcheck disable=SC2046
    timeout -k 10 $((RUNTIME + 60)) fio $(fio_args "$name" "$rw" "$bs" "$qd" "$nj" "$port") \
        --time_based --runtime="$RUNTIME" --output-format=json --output="$json" \
        >>"$RUN/logs/fio.log" 2>&1
    rc=$?
    settle_children
    m1=$("$PY" "$LIB/proc.py" machine)
    t1=$("$PY" "$LIB/proc.py" cpu "$SRV_PID")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$srv" "$name" "$rc" "$((t1 - t0))" "$CLK" "$json" \
        "$((${m1% *} - ${m0% *}))" "$((${m1#* } - ${m0#* }))" >>"$RUN/runs.tsv"
    [ $rc = 0 ] || log "fio failed (rc=$rc) for $srv $name round $round: see $RUN/logs/fio.log"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the file ----
log "writing the 1 GiB file $IMG"
# Random data, 64 MiB of it repeated: no holes, and no zeroes that a
# server could send as hole chunks instead of data (nbdplex does).
head -c 64M /dev/urandom >"$RUN/random.bin" || die "cannot write $RUN/random.bin"
for i in $(seq 16); do cat "$RUN/random.bin"; done >"$IMG" || die "cannot write $IMG"
rm -f "$RUN/random.bin"

# ---- the rounds ----
printf 'round\tserver\tjob\trc\tcpu_ticks\tclk_tck\tjson\tbusy_ticks\tall_ticks\n' >"$RUN/runs.tsv"
: >"$RUN/commands.txt"
port=$PORT_BASE
nsrv=${#SERVER_LIST[@]}
for round in $(seq "$ROUNDS"); do
    for k in $(seq 0 $((nsrv - 1))); do
        # rotate the order each round so no server always goes first
        srv=${SERVER_LIST[$(( (k + round - 1) % nsrv ))]}
        port=$((port + 1))
        log "round $round/$ROUNDS: $srv on port $port"
        start_server "$srv" "$port" || continue
        for j in "${JOBS[@]}"; do run_job "$round" "$srv" "$port" "$j"; done
        stop_server
    done
done

# ---- syscalls per request, and RSS ----
# Counted at full speed with perf stat (kernel tracepoints, no slowdown):
# under strace a server runs so slowly that requests pile up, and one that
# batches would show batches it never forms at full speed.
printf 'server\tjob\tfio_json\tperf_file\tfio_rc\n' >"$RUN/syscalls.tsv"
printf 'server\ttest\tconnections\tidle_rss_kib\tpeak_rss_kib\tnote\n' >"$RUN/rss.tsv"
if [ $EXTRAS = 1 ]; then
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
    echo "command=perf/bench.sh${ARGS_GIVEN:+ $ARGS_GIVEN}"
    echo "rounds=$ROUNDS"
    echo "runtime=$RUNTIME"
    echo "servers=$SERVERS"
    echo "syscall_ios=$SYSCALL_IOS"
    echo "syscall_ios_1m=$SYSCALL_IOS_1M"
    echo "rss_runtime=$RSS_RUNTIME"
    echo "fio=$(fio --version)"
    echo "nbdkit=$(nbdkit --version 2>/dev/null | head -1)"
    echo "nbd-server=$(nbd-server -V 2>&1 | grep -o 'version [0-9.]*' | head -1)"
    echo "qemu-nbd=$(qemu-nbd --version 2>/dev/null | head -1)"
    echo "nbdplex=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)${NBDPLEX_BUILT:+ (build/nbdplex built $NBDPLEX_BUILT, copied to the run directory)}"
} >"$RUN/meta.txt"
"$PY" "$LIB/report.py" "$RUN" "$OUT" || die "report failed; raw data in $RUN"
log "wrote $OUT (raw data in $RUN)"
