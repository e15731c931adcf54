#!/usr/bin/env bash
# Serves a loop device through the raw engine and drives real clients at it:
# qemu-io (pattern writes and verified reads, zero, discard, FUA, flush),
# libnbd with alignment checks off (requests smaller than a block, many at
# once sharing blocks), nbdcopy (a round trip, compared byte for byte), and
# fio's nbd engine with crc32c verification. What the clients wrote is also
# checked in the loop device's backing file.
#
#   raw_clients.sh [PATH/TO/nbdplex]     (or NBDPLEX=... in the environment)
#
# Exit 77 (skipped, as CTest reports it) when not root or a client is missing;
# a CI run fails on any skip: the suite installs every client and runs as root.
set -eu

nbdplex=${1:-${NBDPLEX:-build/nbdplex}}
SIZE=$((64 * 1024 * 1024))
# Every client gets this long, so that a server that stops answering fails
# the test instead of hanging it.
T=(timeout 120)

skip()
{
	echo "raw_clients.sh: skipped: $*"
	exit 77
}
die()
{
	echo "raw_clients.sh: FAIL: $*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || skip "needs root for losetup"
for tool in losetup qemu-io nbdcopy nbdinfo fio cmp; do
	command -v "$tool" >/dev/null || skip "$tool is not installed"
done
fio --enghelp 2>/dev/null | grep -qw nbd || skip "fio has no nbd engine"
# libnbd's Python module may live only under the system interpreter.
py=
for p in python3 /usr/bin/python3; do
	if "$p" -c 'import nbd' 2>/dev/null; then
		py=$p
		break
	fi
done
[ -n "$py" ] || skip "no python3 with libnbd's nbd module"
"$nbdplex" serve --help >/dev/null 2>&1 || skip "$nbdplex serve does not run"

tmp=$(mktemp -d "${RAW_TMPDIR:-/var/tmp}/nbdplex-raw-clients.XXXXXX")
dev=
spid=
cleanup()
{
	if [ -n "$spid" ]; then
		kill "$spid" 2>/dev/null || true
		wait "$spid" 2>/dev/null || true
	fi
	if [ -n "$dev" ]; then
		losetup -d "$dev" || echo "raw_clients.sh: could not detach $dev" >&2
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

img=$tmp/backing.img
head -c "$SIZE" /dev/urandom >"$img"
dev=$(losetup -f --show --direct-io=on "$img") || skip "losetup failed"

# A port of our own: try a few random ones until the server starts.
for attempt in 1 2 3 4 5; do
	port=$((20000 + RANDOM % 20000))
	rm -f "$tmp/pid"
	"$nbdplex" serve -l "127.0.0.1:$port" -e "disk=raw:$dev" --pidfile "$tmp/pid" \
		2>"$tmp/server.log" &
	spid=$!
	for _ in $(seq 100); do
		[ -s "$tmp/pid" ] && break
		kill -0 "$spid" 2>/dev/null || break
		sleep 0.1
	done
	[ -s "$tmp/pid" ] && break
	wait "$spid" 2>/dev/null || true
	spid=
done
[ -n "$spid" ] || { cat "$tmp/server.log" >&2; die "the server did not start"; }
uri="nbd://127.0.0.1:$port/disk"
echo "serving $dev at $uri (server pid $spid)"
# The server holds the device open from now on: detach it already, and the
# kernel removes it when the server exits, even if this script is killed
# (CTest kills a test that times out with SIGKILL, and no trap runs then).
losetup -d "$dev" && dev=

alive()
{
	kill -0 "$spid" 2>/dev/null || { cat "$tmp/server.log" >&2; die "the server died $1"; }
}

# Runs qemu-io commands on TARGET (opened as raw; OPTS such as -r before the
# commands) and fails on any error: qemu-io reports a failed pattern check
# on its output, not always in its exit status.
qio()
{
	local target=$1 out c
	shift
	local args=(-f raw)
	while [ "${1:-}" = -r ]; do
		args+=("$1")
		shift
	done
	for c in "$@"; do
		args+=(-c "$c")
	done
	out=$("${T[@]}" qemu-io "${args[@]}" "$target" 2>&1) || { echo "$out" >&2; die "qemu-io $*"; }
	if grep -Eiq "fail|error|mismatch" <<<"$out"; then
		echo "$out" >&2
		die "qemu-io $*"
	fi
}

# ---- what the server tells clients ----
"${T[@]}" nbdinfo --json "$uri" >"$tmp/info.json" || die "nbdinfo"
"${T[@]}" "$py" - "$SIZE" "$tmp/info.json" <<'EOF' || { cat "$tmp/info.json" >&2; die "nbdinfo says otherwise"; }
import json, sys
e = json.load(open(sys.argv[2]))["exports"][0]
assert e["export-size"] == int(sys.argv[1]), e["export-size"]
for cap in ("can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn"):
    assert e.get(cap) is True, cap
assert e.get("is_read_only") is False
EOF
alive "after nbdinfo"

# ---- qemu-io: patterns, aligned and not, zero, discard, FUA, flush ----
qio "$uri" \
	"write -P 0xa5 0 1M" "read -P 0xa5 0 1M" \
	"write -P 0x5c 4097 12345" "read -P 0x5c 4097 12345" \
	"read -P 0xa5 0 4097" "read -P 0xa5 16442 16" \
	"write -f -P 0x3d 1M 256k" "read -P 0x3d 1M 256k" \
	"write -z 2M 1M" "read -P 0 2M 1M" \
	"write -P 0x77 3M 64k" "write -z 3145739 1000" \
	"read -P 0x77 3M 11" "read -P 0 3145739 1000" "read -P 0x77 3146739 64525" \
	"discard 4M 1M" "read -P 0 4M 1M" \
	"flush"
alive "after qemu-io"
# The same bytes, straight from the backing file.
qio "$img" -r \
	"read -P 0xa5 0 4097" "read -P 0x5c 4097 12345" "read -P 0x3d 1M 256k" \
	"read -P 0 2M 1M" "read -P 0x77 3M 11" "read -P 0 3145739 1000" "read -P 0 4M 1M"

# ---- libnbd: requests smaller than a block, many in flight at once ----
"${T[@]}" "$py" - "$uri" <<'EOF' || die "unaligned requests through libnbd"
import random, sys, nbd

h = nbd.NBD()
h.connect_uri(sys.argv[1])
# Send requests exactly as asked, so that the engine's read-modify-write
# is what handles them rather than libnbd's alignment check refusing them.
h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
rnd = random.Random(1234)
base = 40 << 20

data = rnd.randbytes(10000)
h.pwrite(data, base + 3)
assert h.pread(10000, base + 3) == data, "unaligned write/read"

# Byte-disjoint pieces sharing blocks, all in flight together: a lost
# update in the server's read-modify-write would show in the read back.
pos = start = base + (1 << 20) + 1
pieces = []
for _ in range(400):
    n = rnd.randint(1, 700)
    pieces.append((pos, rnd.randbytes(n)))
    pos += n
cookies = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(d)), off) for off, d in pieces]
for _ in range(600):
    if h.aio_in_flight() == 0:
        break
    h.poll(100)
assert h.aio_in_flight() == 0, "writes still in flight after 60 s"
for c in cookies:
    assert h.aio_command_completed(c)
got = h.pread(pos - start, start)
assert got == b"".join(d for _, d in pieces), "concurrent unaligned writes lost an update"

h.zero(1000, base + 7)
assert h.pread(1000, base + 7) == bytes(1000), "unaligned zero"
assert h.pread(3, base + 3) == data[:3], "bytes before an unaligned zero"
h.pwrite(b"x" * 3, base + 5, nbd.CMD_FLAG_FUA)
assert h.pread(3, base + 5) == b"xxx", "FUA write"
h.flush()
h.shutdown()
EOF
alive "after libnbd"

# ---- nbdcopy: a whole-device round trip over several connections ----
head -c "$SIZE" /dev/urandom >"$tmp/src.bin"
"${T[@]}" nbdcopy --connections=4 "$tmp/src.bin" "$uri" || die "nbdcopy to the server"
"${T[@]}" nbdcopy --connections=4 "$uri" "$tmp/out.bin" || die "nbdcopy from the server"
cmp "$tmp/src.bin" "$tmp/out.bin" || die "nbdcopy round trip differs"
cmp "$tmp/src.bin" "$img" || die "the backing file differs from what nbdcopy wrote"
alive "after nbdcopy"

# ---- fio: random writes verified with crc32c, then a 4 KiB-unaligned mix ----
"${T[@]}" fio --name=raw-verify --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=32 \
	--size=16M --verify=crc32c --do_verify=1 --verify_fatal=1 >"$tmp/fio1.log" 2>&1 ||
	{ cat "$tmp/fio1.log" >&2; die "fio crc32c verify (4k)"; }
"${T[@]}" fio --name=raw-verify-odd --ioengine=nbd --uri="$uri" --rw=randwrite --bsrange=512-33k \
	--blockalign=512 --offset=20M --iodepth=16 --size=16M --verify=crc32c --do_verify=1 \
	--verify_fatal=1 >"$tmp/fio2.log" 2>&1 ||
	{ cat "$tmp/fio2.log" >&2; die "fio crc32c verify (512-33k)"; }
alive "after fio"

echo "raw_clients.sh: ok"
