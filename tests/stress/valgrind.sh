#!/bin/bash
# stress_valgrind: the server under valgrind's memcheck serves the protocol
# checks, qemu-io, nbdcopy and a short wave of hostile clients, then exits 0
# on SIGTERM: no memory error and no definite leak (valgrind would exit 99).
. "$NP_SRC/tests/functions.sh"
requires valgrind qemu-io nbdcopy nbdsh python3
python3 -c 'import nbd' || fail "python3-libnbd is missing"

truncate -s 1M "$TMP/ro.img"
printf '[export ro]\nread-only = yes\n' >"$TMP/ro.ini"
PORT=$(free_port)
# protocol.py expects requests over 32 MiB refused (libnbd sends none over
# 64 MiB, the default maximum), as tests/integration/protocol.sh sets it.
# jemalloc is the server's allocator: valgrind must intercept it too.
valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	--show-leak-kinds=definite --soname-synonyms='somalloc=*jemalloc*' \
	--log-file="$TMP/valgrind.log" \
	"$NBDPLEX" serve -l "127.0.0.1:$PORT" --pidfile "$TMP/vg.pid" -e m=mem:64M \
	-e f=file:"$TMP/f.img",size=16M -e ro=file:"$TMP/ro.img",size=1M -c "$TMP/ro.ini" \
	--max-request 32M \
	>"$TMP/server.log" 2>&1 &
SERVER_PID=$!
NP_PIDS+=("$SERVER_PID")
wait_pidfile 90 "$SERVER_PID" "$TMP/vg.pid" "$TMP/server.log" "server under valgrind"

timeout 300 python3 -B "$NP_SRC/tests/integration/protocol.py" "$PORT" || fail "protocol checks"
out=$(qemu-io -f raw "$(uri m)" -c 'write -P 0xab 0 1M' -c 'write -P 0xcd 1000 3333' \
	-c 'read -P 0xab 0 1000' -c 'read -P 0xcd 1000 3333' -c 'discard 2M 1M' \
	-c 'read -P 0 2M 1M' -c 'write -z 4M 64k' -c 'flush' 2>&1) || fail "qemu-io: $out"
! grep -qiE 'fail|error|mismatch' <<<"$out" || fail "qemu-io: $out"
head -c 3M /dev/urandom >"$TMP/in.bin"
nbdcopy "$TMP/in.bin" "$(uri f)" || fail "nbdcopy in"
nbdcopy "$(uri f)" "$TMP/out.bin" || fail "nbdcopy out"
cmp -n 3M "$TMP/in.bin" "$TMP/out.bin" || fail "nbdcopy round trip differs"
timeout 300 python3 -B "$NP_SRC/tests/stress/garbage.py" "$PORT" "$SERVER_PID" 1 40 1 ||
	fail "hostile clients under valgrind"

rc=0
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || rc=$?
if [ "$rc" != 0 ]; then
	grep -A 25 -E 'Invalid|uninitialised|definitely lost|Syscall param' "$TMP/valgrind.log" |
		head -n 80 >&2
	fail "server under valgrind exited $rc after SIGTERM (99: memcheck errors)"
fi
grep -q 'ERROR SUMMARY: 0 errors' "$TMP/valgrind.log" ||
	fail "memcheck reported errors: $(grep 'ERROR SUMMARY' "$TMP/valgrind.log")"
grep 'definitely lost\|ERROR SUMMARY\|All heap blocks' "$TMP/valgrind.log"
pass
