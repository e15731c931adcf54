#!/bin/bash
# One conformance suite, the same client checks against every engine: file,
# mem, raw (a real loop device, O_DIRECT through kernel AIO) and thin (a volume of
# a RocksDB pool): qemu-io patterns (aligned and not), discard and zeroes
# reading back as zeroes, an nbdcopy round trip, fio verify over two
# connections, and nbdinfo --map agreeing with what was written.
. "$NP_SRC/tests/functions.sh"
requires qemu-io nbdcopy nbdinfo fio losetup
SIZE=$((64 << 20))

conform file "file:$TMP/disk.img,size=$SIZE" yes
conform mem "mem:$SIZE" yes

# raw: a loop device with direct I/O, detached whatever happens.
truncate -s $SIZE "$TMP/raw.img"
LOOP=$(losetup -f --show --direct-io=on "$TMP/raw.img") || fail "losetup"
trap 'losetup -d "$LOOP" 2>/dev/null || true; np_cleanup' EXIT
conform raw "raw:$LOOP" no
losetup -d "$LOOP"
trap np_cleanup EXIT

"$NBDPLEX" volume init "$TMP/pool" --size 256M >/dev/null || fail "volume init"
"$NBDPLEX" volume create "$TMP/pool" v $SIZE >/dev/null || fail "volume create"
conform thin "thin:$TMP/pool/v" yes
"$NBDPLEX" volume check "$TMP/pool" >/dev/null || fail "thin pool inconsistent after the suite"
pass
