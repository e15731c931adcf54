# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are read by bench.sh, which sources this
# perf/lib/cases.sh - the media perf/bench.sh serves, sourced by it.
#
# A case says what the servers serve and which jobs run:
#   tmpfs  a 1 GiB file of random data on /dev/shm (the original bench)
#   raw    a loop device with direct I/O on such a file (a fast disk)
#   ext4   a 1 GiB file of random data on ext4 on a loop device
#   xfs    the same on XFS
#   thin   fresh volumes of a thin pool on /dev/shm, against a fresh qcow2
#          under qemu-nbd and the file engine on a fresh sparse file there
# Each defines: its servers (the first is the base of the ratios), its jobs,
# case_setup / case_cleanup, case_server_cmd NAME PORT PIDFILE, and
# case_fresh NAME (before a server starts: for thin a fresh target).
# Uses RUN, EXPORT, NBDPLEX, log and die from bench.sh.

# The job tables: name rw bs iodepth numjobs [fio options...]. A job whose
# options hold --number_ios stops there or at --runtime, whichever comes
# first (no --time_based): writes to new space take memory per request.
# fuawrite-* jobs run qemu-img bench instead of fio (fio has no FUA).
JOBS_FILE=(
    "randread-4k-qd32-c1 randread 4k 32 1"
    "randread-4k-qd32-c4 randread 4k 32 4"
    "randwrite-4k-qd32-c1 randwrite 4k 32 1"
    "randwrite-4k-qd32-c4 randwrite 4k 32 4"
    "read-1m-qd8-c1 read 1M 8 1"
    "read-1m-qd8-c4 read 1M 8 4"
    "write-1m-qd8-c1 write 1M 8 1"
    "write-1m-qd8-c4 write 1M 8 4"
    "randread-4k-qd1-c1 randread 4k 1 1"
    "randwrite-4k-qd1-c1 randwrite 4k 1 1"
    "fuawrite-4k-qd1-c1 write 4k 1 1"
)
# Thin: new space in [0, 32G) (4k) and [32G, 48G) (1M); written space is
# [48G, 50G), filled with 1 MiB writes before the first job that names it
# (untimed); the cow job snapshots the volume first and stops after
# NEWCOW writes, a quarter of the 32,768 chunks there, so that most of
# its writes copy a chunk rather than write one already copied.
JOBS_THIN=(
    "randwrite-4k-new-c1 randwrite 4k 32 1 --size=32g --number_ios=NEW4K"
    "randwrite-4k-new-c4 randwrite 4k 32 4 --size=32g --number_ios=NEW4K4"
    "write-1m-new-c1 write 1M 8 1 --offset=32g --size=16g --number_ios=NEW1M"
    "randwrite-4k-written-c1 randwrite 4k 32 1 --offset=48g --size=1g"
    "randread-4k-written-c1 randread 4k 32 1 --offset=48g --size=1g"
    "randread-4k-qd1-c1 randread 4k 1 1 --offset=48g --size=1g"
    "randwrite-4k-qd1-c1 randwrite 4k 1 1 --offset=48g --size=1g"
    "fuawrite-4k-qd1-c1 write 4k 1 1 --offset=48g"
    "randwrite-4k-cow-c1 randwrite 4k 32 1 --offset=48g --size=2g --number_ios=NEWCOW"
)

case_defaults() {   # sets CASE_SERVERS, CASE_JOBS (an array name), CASE_DESC
    case "$CASE" in
        tmpfs)
            CASE_SERVERS=nbdplex,nbdkit,nbd-server,qemu-nbd
            CASE_DESC="the same 1 GiB file on /dev/shm (filled with random data first: no holes, and no zeroes to send as hole chunks)" ;;
        raw)
            CASE_SERVERS=nbdplex,qemu-nbd,nbdkit,nbd-server,fio-local
            CASE_DESC="the same loop device (losetup --direct-io=on) on a 1 GiB file of random data on /dev/shm, standing in for a fast disk; nbdplex's raw engine, qemu-nbd --cache=none --aio=native, nbdkit's file plugin and nbd-server on the device, and fio-local: fio's own libaio job with O_DIRECT on the device (no server, no network: the ceiling)" ;;
        ext4|xfs)
            CASE_SERVERS=nbdplex,nbdkit,nbd-server,qemu-nbd
            CASE_DESC="the same 1 GiB file of random data on $CASE, made on a 2 GiB loop device (--direct-io=on) on /dev/shm; qemu-nbd with --cache=writeback" ;;
        thin)
            CASE_SERVERS=nbdplex,qemu-nbd,nbdplex-file
            CASE_DESC="fresh targets of 64 GiB on /dev/shm, made anew for each server in each round: nbdplex a thin volume of a fresh pool (64 KiB chunks, sparse 80 GiB data file), qemu-nbd a fresh qcow2 (qemu-img create defaults: 64 KiB clusters), nbdplex-file the file engine on a fresh sparse file. Jobs *-new-* write to new space, *-written-* to [48G, 49G) after [48G, 50G) was filled with 1 MiB writes (untimed), *-cow-* (8,000 writes over [48G, 50G), mostly to chunks not yet copied) after a snapshot of the volume (qcow2: an internal snapshot, qemu-img snapshot -c, taken with the server stopped; the file engine has none)" ;;
        *) die "unknown --case '$CASE' (tmpfs, raw, ext4, xfs, thin)" ;;
    esac
    if [ "$CASE" = thin ]; then CASE_JOBS=JOBS_THIN; else CASE_JOBS=JOBS_FILE; fi
}

case_check_server() {
    case "$CASE:$1" in
        thin:nbdplex|thin:nbdplex-file|thin:qemu-nbd|raw:fio-local) ;;
        thin:*) die "the thin case knows nbdplex, qemu-nbd and nbdplex-file, not '$1'" ;;
        *:nbdplex|*:nbdkit|*:nbd-server|*:qemu-nbd) ;;
        *) die "unknown server '$1' for --case $CASE" ;;
    esac
}

DEV=
MNT=
BACKING=

fill_random() {   # fill_random FILE MIB: random data, 64 MiB repeated
    head -c 64M /dev/urandom >"$RUN/random.bin" || die "cannot write $RUN/random.bin"
    for i in $(seq $(($2 / 64))); do cat "$RUN/random.bin"; done >"$1" || die "cannot write $1"
    rm -f "$RUN/random.bin"
}

case_setup() {
    case "$CASE" in
        tmpfs)
            IMG=/dev/shm/nbdplex-bench-$$.img
            log "writing the 1 GiB file $IMG"
            fill_random "$IMG" 1024 ;;
        raw)
            BACKING=/dev/shm/nbdplex-bench-$$.img
            log "writing 1 GiB to $BACKING, then a loop device with direct I/O on it"
            fill_random "$BACKING" 1024
            DEV=$(losetup -f --show --direct-io=on "$BACKING") || die "losetup failed (needs root)"
            IMG=$DEV ;;
        ext4|xfs)
            BACKING=/dev/shm/nbdplex-bench-$$.fs
            truncate -s 2G "$BACKING" || die "truncate $BACKING"
            DEV=$(losetup -f --show --direct-io=on "$BACKING") || die "losetup failed (needs root)"
            "mkfs.$CASE" -q "$DEV" >"$RUN/logs/mkfs.log" 2>&1 || die "mkfs.$CASE failed: $(cat "$RUN/logs/mkfs.log")"
            MNT=$RUN/mnt
            mkdir -p "$MNT" && mount "$DEV" "$MNT" || die "cannot mount $DEV"
            IMG=$MNT/bench.img
            log "writing the 1 GiB file $IMG on $CASE on $DEV"
            fill_random "$IMG" 1024
            sync ;;
        thin)
            IMG=/dev/shm/nbdplex-bench-thin-$$
            mkdir -p "$IMG" || die "mkdir $IMG" ;;
    esac
}

case_cleanup() {
    [ -n "$MNT" ] && { umount "$MNT" || log "could not unmount $MNT"; MNT=; }
    [ -n "$DEV" ] && { losetup -d "$DEV" || log "could not detach $DEV"; DEV=; }
    [ -n "$BACKING" ] && rm -f "$BACKING"
    case "$CASE" in
        thin) rm -rf "$IMG" ;;
        *) [ -f "$IMG" ] && rm -f "$IMG" ;;
    esac
}

# case_fresh NAME: a fresh target for NAME (thin case: the last one goes).
case_fresh() {
    [ "$CASE" = thin ] || return 0
    rm -rf "${IMG:?}"/*
    case "$1" in
        nbdplex)
            truncate -s 80G "$IMG/data" || die "truncate"
            "$NBDPLEX" volume init "$IMG/pool" --data "$IMG/data" >/dev/null || die "volume init"
            "$NBDPLEX" volume create "$IMG/pool" "$EXPORT" 64G || die "volume create" ;;
        qemu-nbd) qemu-img create -q -f qcow2 "$IMG/v.qcow2" 64G || die "qemu-img create" ;;
        nbdplex-file) truncate -s 64G "$IMG/v.img" || die "truncate" ;;
    esac
}

# case_snapshot NAME PORT: before a *-cow-* job; returns 1 if NAME has none.
# May restart the server (SRV_PID changes).
case_snapshot() {
    case "$1" in
        nbdplex) "$NBDPLEX" volume snapshot "$IMG/pool" "$EXPORT" "snap-$RANDOM" >/dev/null ;;
        qemu-nbd)
            stop_server
            qemu-img snapshot -c snap "$IMG/v.qcow2" || return 1
            start_server "$1" "$2" ;;
        *) return 1 ;;
    esac
}

case_server_cmd() {
    local name=$1 port=$2 pidfile=$3
    case "$CASE:$name" in
        thin:nbdplex) echo "$NBDPLEX serve -l 127.0.0.1:$port -e $EXPORT=thin:$IMG/pool/$EXPORT --pidfile $pidfile" ;;
        thin:nbdplex-file) echo "$NBDPLEX serve -l 127.0.0.1:$port -e $EXPORT=file:$IMG/v.img --pidfile $pidfile" ;;
        thin:qemu-nbd) echo "qemu-nbd -f qcow2 -x $EXPORT -b 127.0.0.1 -p $port --persistent --shared=128 --pid-file $pidfile $IMG/v.qcow2" ;;
        raw:nbdplex) echo "$NBDPLEX serve -l 127.0.0.1:$port -e $EXPORT=raw:$IMG --pidfile $pidfile" ;;
        raw:qemu-nbd) echo "qemu-nbd -f raw --cache=none --aio=native -x $EXPORT -b 127.0.0.1 -p $port --persistent --shared=128 --pid-file $pidfile $IMG" ;;
        ext4:qemu-nbd|xfs:qemu-nbd) echo "qemu-nbd -f raw --cache=writeback -x $EXPORT -b 127.0.0.1 -p $port --persistent --shared=128 --pid-file $pidfile $IMG" ;;
        *:nbdplex) echo "$NBDPLEX serve -l 127.0.0.1:$port -e $EXPORT=file:$IMG --pidfile $pidfile" ;;
        *:nbdkit) echo "nbdkit -f -p $port -i 127.0.0.1 --pidfile $pidfile -e $EXPORT file $IMG" ;;
        *:nbd-server) echo "nbd-server -C $RUN/nbd-server-$port.conf -p $pidfile" ;;
        *:qemu-nbd) echo "qemu-nbd -f raw -x $EXPORT -b 127.0.0.1 -p $port --persistent --shared=128 --pid-file $pidfile $IMG" ;;
    esac
}
