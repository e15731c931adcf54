#!/bin/bash
# Coalescing (server.c): a loop waits briefly before it polls only while a
# client keeps several requests in flight. strace counts the waits (the
# loop's only nanosleep): at most one per 64 requests for a client with one
# request in flight, several requests per wait for fio at queue depth 32,
# none with --coalesce-us 0; and every byte reads back as written.
. "$NP_SRC/tests/functions.sh"
requires fio nbdsh strace python3

SLEEPS=clock_nanosleep,nanosleep

waits() {
	echo $(($(strace_calls "$1" clock_nanosleep) + $(strace_calls "$1" nanosleep)))
}

# fio_qd32 NAME: 16 MiB of 4k random writes at queue depth 32, then the
# same read back and verified; prints how many requests fio made.
fio_qd32() {
	fio --name=qd32 --ioengine=nbd --uri="$(uri)" --rw=randwrite --bs=4k --iodepth=32 \
		--size=16M --verify=crc32c --verify_fatal=1 --do_verify=1 --runtime=120 \
		--output-format=json >"$TMP/fio-$1.json" 2>"$TMP/fio-$1.err" ||
		fail "fio $1: $(tail -5 "$TMP/fio-$1.err")"
	fio_check "$TMP/fio-$1.json" 1 $((16 << 20))
}

start_server -e d=file:"$TMP/disk.img",size=64M

# One request in flight: nbdsh waits for each reply before the next request.
strace_on "$SERVER_PID" "$TMP/qd1.txt" "$SLEEPS"
nbdsh -u "$(uri)" -c '
import os
data = os.urandom(64 * 4096)
h.pwrite(data, 0)
for i in range(640):
    off = (i * 7 % 64) * 4096
    assert h.pread(4096, off) == data[off:off + 4096], i
' || fail "nbdsh: reads at queue depth 1"
strace_off
n=$(waits "$TMP/qd1.txt")
# 641 requests: one trial wait per 64 turns that served requests.
[ "$n" -le 11 ] || fail "$n waits for 641 requests at queue depth 1 (at most 11)"
echo "queue depth 1: 641 requests, $n waits"

# Many requests in flight: the waits pay, so they go on.
strace_on "$SERVER_PID" "$TMP/qd32.txt" "$SLEEPS"
reqs=$(fio_qd32 on)
strace_off
n=$(waits "$TMP/qd32.txt")
[ "$n" -gt 0 ] || fail "no wait for $reqs requests at queue depth 32"
[ $((reqs * 2)) -ge $((n * 3)) ] ||
	fail "$n waits for $reqs requests at queue depth 32: fewer than 1.5 requests per wait"
echo "queue depth 32: $reqs requests, $n waits"
assert_serving
stop_server

# Turned off: no wait at all.
start_server -e d=file:"$TMP/disk.img" --coalesce-us 0
strace_on "$SERVER_PID" "$TMP/off.txt" "$SLEEPS"
reqs=$(fio_qd32 off)
strace_off
n=$(waits "$TMP/off.txt")
[ "$n" = 0 ] || fail "$n waits with --coalesce-us 0"
stop_server
pass
