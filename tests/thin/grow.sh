#!/bin/bash
# Thin pools grow on demand: a pool made without --size starts empty and its
# data file grows as chunks are needed, so a 64G volume takes 2 GiB of
# writes (fio, verified) that the old 1 GiB default refused; `volume list`
# and `volume check` account for the space, through the control socket and
# without it. A pool made with --size grows up to that size and no further.
. "$NP_SRC/tests/functions.sh"
. "$NP_SRC/tests/thin/functions.sh"
requires fio qemu-io

# The data go to tmpfs, so that 2 GiB take seconds.
SHM=$(mktemp -d /dev/shm/nbdplex-grow.XXXXXX)
trap 'rm -rf "$SHM"; np_cleanup' EXIT
pool=$SHM/pool
G=$((1 << 30))

vol init "$pool" || fail "volume init"
[ "$(stat -c %s "$pool/data")" = 0 ] || fail "a new pool's data file is not empty"
vol create "$pool" v 64G || fail "create a 64G volume"
[ "$(pool_field "$pool" bytes_allocated)" = 0 ] || fail "an empty pool has space allocated: $(vol list "$pool")"
[ "$(pool_field "$pool" limit)" = fs ] || fail "a pool without --size is not bounded by its file system"

start_server -e v=thin:"$pool/v"
fio --name=grow --ioengine=nbd --uri="$(uri v)" --rw=write --bs=4M --iodepth=8 --size=2G \
	--verify=crc32c --do_verify=1 --output-format=json --output="$TMP/fio.json" \
	>"$TMP/fio.out" 2>&1 || fail "fio: $(tail -5 "$TMP/fio.out") $(tail -5 "$TMP/fio.json")"
fio_check "$TMP/fio.json" 1 $((2 * G)) >/dev/null
# Served: list goes through the control socket.
used=$(pool_field "$pool" bytes_used) allocated=$(pool_field "$pool" bytes_allocated) max=$(pool_field "$pool" bytes_max) file=$(pool_field "$pool" data_file)
[ "$used" = $((2 * G)) ] || fail "used $used after 2 GiB of writes: $(vol list "$pool")"
# Steps of 1 GiB: allocated covers what is used, by less than a step.
[ "$allocated" -ge "$used" ] && [ "$allocated" -lt $((used + G)) ] ||
	fail "allocated $allocated for $used used"
[ "$file" -ge "$allocated" ] || fail "data file of $file bytes, $allocated allocated"
[ "$max" -ge "$allocated" ] || fail "maximum $max below allocated $allocated"
vol check "$pool" >"$TMP/check" || fail "check while serving: $(cat "$TMP/check")"
grep -q "^ok: 32768 chunks mapped, 1 volumes and snapshots; $used of $allocated bytes" \
	"$TMP/check" || fail "check: $(cat "$TMP/check")"
qemu-io -f raw "$(uri v)" -c 'write -P 0x5a 60G 1M' -c 'read -P 0x5a 60G 1M' >/dev/null ||
	fail "write far into the volume"
allocated=$(pool_field "$pool" bytes_allocated)
stop_server
# The growth is recorded: reopened without a server, the pool has the space.
vol check "$pool" >"$TMP/check" || fail "check after stop: $(cat "$TMP/check")"
grep -q "^ok: 32784 chunks mapped" "$TMP/check" || fail "check after stop: $(cat "$TMP/check")"
[ "$(pool_field "$pool" bytes_used)" = $((2 * G + (1 << 20))) ] || fail "used after restart: $(vol list "$pool")"
[ "$(pool_field "$pool" bytes_allocated)" = "$allocated" ] || fail "allocated changed: $(vol list "$pool")"
rm -rf "$pool"

# --size is a maximum, not a preallocation.
vol init "$pool" --size 2M || fail "volume init --size 2M"
[ "$(stat -c %s "$pool/data")" = 0 ] || fail "--size preallocated the data file"
[ "$(pool_field "$pool" bytes_max)" = $((2 << 20)) ] && [ "$(pool_field "$pool" limit)" = size ] ||
	fail "maximum of a 2M pool: $(vol list "$pool")"
vol create "$pool" w 16M || fail "create w"
start_server -e w=thin:"$pool/w"
fills_at "$(uri w)" $((2 << 20))
stop_server
[ "$(stat -c %s "$pool/data")" = $((2 << 20)) ] || fail "data file past --size"
vol check "$pool" >/dev/null || fail "check of the full 2M pool"
pass
