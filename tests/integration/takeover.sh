#!/bin/bash
# serve --takeover: new processes take the listeners and live connections
# over from the running one, and no client sees a closed socket. fio's nbd
# engine verifies crc32c over four connections while the server is replaced
# 20 times; qemu-io (aio writes, over the Unix socket) and nbdcopy (reading
# a pipe that stalls mid-copy) each span a hand-off.
. "$NP_SRC/tests/functions.sh"
requires fio qemu-io nbdcopy nbdinfo python3

CTL=$TMP/ctl.sock
SPEC=(-e "d=file:$TMP/d.img,size=256M")
# Under valgrind (the second pass) every start takes seconds.
ROUNDS=20 RATE=300
[ -z "${NP_REAL_NBDPLEX:-}" ] || ROUNDS=3 RATE=200

start_server "${SPEC[@]}" -l "unix:$TMP/nbd.sock" --control "$CTL"
# fio: four connections, random writes then the verify pass, slowed so that
# all the replacements happen while it runs.
fio --name=verify --ioengine=nbd --uri="$(uri d)" --rw=randwrite --bs=4k --iodepth=8 \
	--numjobs=4 --size=32M --offset_increment=64M --rate_iops=$RATE \
	--verify=crc32c --verify_fatal=1 --do_verify=1 --runtime=300 \
	--output-format=json >"$TMP/fio.json" 2>"$TMP/fio.err" &
FIO=$!
NP_PIDS+=("$FIO")
sleep 1
for _ in $(seq "$ROUNDS"); do
	takeover "$CTL" "${SPEC[@]}" --control "$CTL"
	gone "$FIO" && fail "fio ended before hand-off $TAKEOVERS of $ROUNDS: slow it down"
	sleep 0.2
done
wait "$FIO" || fail "fio: $(tail -5 "$TMP/fio.err")"
fio_check "$TMP/fio.json" 4 $((32 << 20)) >/dev/null
grep -qi 'error' "$TMP/fio.err" && fail "fio reported: $(grep -i error "$TMP/fio.err")"
moved=$(grep -c 'taken over on loop' "$TMP/server.log" || true)
[ "$moved" = $((4 * ROUNDS)) ] || fail "$moved connections taken over, expected $((4 * ROUNDS))"
grep -E 'closing:|hand-off failed|taken over, but closed' "$TMP/server.log" &&
	fail "a connection closed, or a hand-off failed"
[ "$(grep -c 'hand-off: 4 connection(s) and 2 listener(s) passed' "$TMP/server.log")" = "$ROUNDS" ] ||
	fail "hand-offs did not pass 4 connections and 2 listeners each"

# The pause histogram goes on from process to process.
"$NBDPLEX" stats --control "$CTL" >"$TMP/stats" || fail "stats"
grep -q "^nbdplex_handoff_pause_seconds_count $ROUNDS\$" "$TMP/stats" ||
	fail "pause histogram: $(grep handoff_pause_seconds_count "$TMP/stats")"

# With no connection open, the count of connections accepted still goes
# on from the old process's.
nbdinfo --size "$(uri d)" >/dev/null || fail "nbdinfo"
takeover "$CTL" "${SPEC[@]}" --control "$CTL"
last=$(grep -o 'conn [0-9]* from' "$TMP/server.log" | awk '{print $2}' | sort -n | tail -1)
accepted() {
	"$NBDPLEX" stats --control "$CTL" 2>/dev/null | grep -q "^nbdplex_connections_accepted_total $1\$"
}
wait_until 30 accepted "$last" ||
	fail "connections accepted: $("$NBDPLEX" stats --control "$CTL" | grep accepted_total), expected $last"

# qemu-io over the Unix socket: aio writes before and after a hand-off,
# read back in the same session. Its commands come through a pipe that
# waits for the hand-off in the middle.
{
	for i in 0 1 2 3; do echo "aio_write -P 0x1$i ${i}M 1M"; done
	echo "aio_flush"
	for _ in $(seq 3000); do [ -e "$TMP/handed" ] && break; sleep 0.05; done
	for i in 4 5 6 7; do echo "aio_write -P 0x1$i ${i}M 1M"; done
	echo "aio_flush"
	for i in 0 1 2 3 4 5 6 7; do echo "read -P 0x1$i ${i}M 1M"; done
	sleep 1
} | qemu-io -f raw "nbd+unix:///d?socket=$TMP/nbd.sock" >"$TMP/qemu.out" 2>&1 &
QEMU=$!
NP_PIDS+=("$QEMU")
# Its first writes may still be in flight at the hand-off.
wait_until 60 grep -q "from unix:.*export 'd'" "$TMP/server.log" ||
	fail "qemu-io did not connect: $(cat "$TMP/qemu.out")"
takeover "$CTL" "${SPEC[@]}" --control "$CTL"
grep -q 'hand-off: 1 connection(s) and 2 listener(s) passed' "$TMP/server.log" ||
	fail "qemu-io's connection did not move: $(grep 'passed' "$TMP/server.log" | tail -2)"
touch "$TMP/handed"
wait "$QEMU" || fail "qemu-io: $(tail -5 "$TMP/qemu.out")"
grep -qiE 'fail|error|mismatch' "$TMP/qemu.out" && fail "qemu-io: $(cat "$TMP/qemu.out")"
[ "$(grep -o "wrote 1048576" "$TMP/qemu.out" | wc -l)" = 8 ] || fail "qemu-io writes: $(cat "$TMP/qemu.out")"
[ "$(grep -o "read 1048576" "$TMP/qemu.out" | wc -l)" = 8 ] || fail "qemu-io reads: $(cat "$TMP/qemu.out")"

# nbdcopy from a pipe that stalls while the server is replaced.
head -c 64M /dev/urandom >"$TMP/src"
{
	head -c 32M "$TMP/src"
	sleep 2
	tail -c +$((32 * 1024 * 1024 + 1)) "$TMP/src"
} | nbdcopy - "$(uri d)" &
COPY=$!
NP_PIDS+=("$COPY")
sleep 1
takeover "$CTL" "${SPEC[@]}" --control "$CTL"
wait "$COPY" || fail "nbdcopy into the export across a hand-off"
nbdcopy "$(uri d)" "$TMP/back" || fail "nbdcopy back"
cmp -n $((64 << 20)) "$TMP/src" "$TMP/back" || fail "nbdcopy: data differs after the hand-off"
tail -n 30 "$TMP/server.log" | grep -q 'passed' || fail "no hand-off logged"
grep -E 'closing:|hand-off failed|taken over, but closed' "$TMP/server.log" &&
	fail "a connection closed, or a hand-off failed"
# The socket file outlived every replaced process; the last one removes it.
stop_server
[ ! -e "$TMP/nbd.sock" ] || fail "the last server left its Unix socket file behind"
pass
