# Shared by the thin pool scripts, after tests/functions.sh.

vol() { "$NBDPLEX" volume "$@"; }

# pool_field POOL FIELD: a field of the "# pool" summary line of
# `volume list POOL` (chunks, used, bytes_allocated, limit, ...)
pool_field() {
	vol list "$1" | awk -v f="$2" '$2 == "pool" { for (i = 4; i < NF; i += 2) if ($i == f) print $(i + 1) }'
}
