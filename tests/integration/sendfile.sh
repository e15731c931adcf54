#!/bin/bash
# Large READs from a file on tmpfs leave with no copy through a buffer of
# the server's: by sendfile (--sendfile on, or a client on another host),
# or, to a client on this host, by writev from the server's mapping of the
# file. When the socket fills, the server waits for it to drain and goes
# on. Data checked with a raw pipelining client (sendfile.py), nbdcopy and
# qemu-img compare; strace counts the sendfile calls, and none with the
# default to a local client, which instead asks mincore whether the pages
# are in memory. A file cut short under waiting replies closes only that
# connection.
. "$NP_SRC/tests/functions.sh"
requires nbdcopy qemu-img python3 strace

[ -d /dev/shm ] || fail "no /dev/shm (tmpfs) to serve from"
IMG=$(mktemp /dev/shm/nbdplex-sendfile.XXXXXX)
trap 'rm -f "$IMG"; np_cleanup' EXIT
# Data, zeroes and a hole: the hole (at 12M) is sent as a hole chunk.
head -c 64M /dev/urandom >"$IMG"
dd if=/dev/zero of="$IMG" bs=1M seek=8 count=2 conv=notrunc status=none
fallocate -p -o $((12 << 20)) -l $((2 << 20)) "$IMG" || fail "punch a hole"

# --sendfile on: the data leaves by sendfile, the full socket included.
start_server --sendfile on -e d=file:"$IMG"
strace_on "$SERVER_PID" "$TMP/strace-on.txt" sendfile
PYTHONPATH="$NP_SRC/tests/integration" python3 "$NP_SRC/tests/integration/sendfile.py" \
	"$PORT" "$IMG" || fail "sendfile reads"
nbdcopy --request-size=4194304 "$(uri d)" "$TMP/copy.img" || fail "nbdcopy"
cmp "$IMG" "$TMP/copy.img" || fail "nbdcopy copy differs"
qemu-img compare -f raw -F raw "$IMG" "$(uri d)" >/dev/null || fail "qemu-img compare"
strace_off
n=$(strace_calls "$TMP/strace-on.txt" sendfile)
[ "$n" -gt 0 ] || fail "--sendfile on: no sendfile call ($(cat "$TMP/strace-on.txt"))"
assert_serving d
stop_server

# The default (auto) sends to a client on this host from the mapping: over
# loopback, sendfile costs the client more than it saves the server.
start_server -e d=file:"$IMG"
strace_on "$SERVER_PID" "$TMP/strace-auto.txt" sendfile,mincore
PYTHONPATH="$NP_SRC/tests/integration" python3 "$NP_SRC/tests/integration/sendfile.py" \
	"$PORT" "$IMG" || fail "reads from the mapping"
rm -f "$TMP/copy.img"
nbdcopy --request-size=4194304 "$(uri d)" "$TMP/copy.img" || fail "nbdcopy (auto)"
cmp "$IMG" "$TMP/copy.img" || fail "nbdcopy copy differs (auto)"
qemu-img compare -f raw -F raw "$IMG" "$(uri d)" >/dev/null ||
	fail "qemu-img compare (auto)"
strace_off
n=$(strace_calls "$TMP/strace-auto.txt" sendfile)
[ "$n" = 0 ] || fail "--sendfile auto: $n sendfile calls to a loopback client"
n=$(strace_calls "$TMP/strace-auto.txt" mincore)
[ "$n" -gt 0 ] || fail "--sendfile auto: no mincore call: large READs did not use the mapping"
[ "$(awk '$6 == "'"$IMG"'"' "/proc/$SERVER_PID/maps" | wc -l)" -gt 0 ] ||
	fail "the server has no mapping of $IMG"

# The file loses its data under replies waiting to leave from the mapping:
# that client gets data or a closed connection, the server serves on.
cp "$IMG" "$TMP/saved.img"
PYTHONPATH="$NP_SRC/tests/integration" timeout 60 python3 \
	"$NP_SRC/tests/integration/sendfile.py" "$PORT" "$IMG" --truncate >"$TMP/trunc.txt" ||
	fail "reads of a truncated file: $(cat "$TMP/trunc.txt")"
assert_serving d
# Replies cut off (rather than all read again after the truncation, as
# zeroes, by a server too slow to have queued them first) say why.
if ! grep -q "truncated: 8 of 8" "$TMP/trunc.txt"; then
	grep -q "closing: a request's data is gone: the export's file was cut short" "$TMP/server.log" ||
		fail "no clear reason for the closed connection: $(tail -n 3 "$TMP/server.log")"
fi
cp "$TMP/saved.img" "$IMG"
nbdcopy --request-size=4194304 "$(uri d)" "$TMP/copy2.img" ||
	fail "nbdcopy after the truncation"
cmp "$IMG" "$TMP/copy2.img" || fail "nbdcopy copy differs after the truncation"
stop_server

# A bad mode is refused, naming the setting.
"$NBDPLEX" serve --sendfile sometimes -e d=file:"$IMG" >"$TMP/bad.log" 2>&1 && fail "bad --sendfile accepted"
grep -q "sendfile" "$TMP/bad.log" || fail "bad --sendfile: unclear error: $(cat "$TMP/bad.log")"
pass
