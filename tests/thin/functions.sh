# Shared by the thin pool scripts, after tests/functions.sh.

vol() { "$NBDPLEX" volume "$@"; }

# pool_field POOL FIELD: a field of the "# pool" summary line of
# `volume list POOL` (chunks, used, bytes_allocated, limit, ...)
pool_field() {
	vol list "$1" | awk -v f="$2" '$2 == "pool" { for (i = 4; i < NF; i += 2) if ($i == f) print $(i + 1) }'
}

# fills_at URI SIZE: writing SIZE bytes from 0 fits, a 64k write past them
# gets ENOSPC, and the SIZE bytes read back.
fills_at() {
	local out
	qemu-io -f raw "$1" -c "write -P 0x21 0 $2" >/dev/null || fail "$2 did not fit"
	out=$(qemu-io -f raw "$1" -c "write -P 0x22 $(($2 * 2)) 64k" 2>&1) && fail "more than $2 fitted: $out"
	grep -q "No space left on device" <<<"$out" || fail "no ENOSPC past $2: $out"
	qemu-io -f raw "$1" -c "read -P 0x21 0 $2" >/dev/null || fail "data lost when full"
}
