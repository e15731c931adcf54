#!/bin/bash
# Bad input loses nothing: hostile clients (bad_input.py) while the server
# keeps serving, and bad command lines and config files that exit non-zero
# with a message naming what was wrong.
. "$NP_SRC/tests/functions.sh"

start_server -e m=mem:64M --handshake-timeout 1 --max-inflight 64M
python3 "$NP_SRC/tests/integration/bad_input.py" "$PORT" "$SERVER_PID" || fail "hostile clients"
assert_serving m
grep -q 'from 127.0.0.1:[0-9]*: closing: bad request magic' "$TMP/server.log" ||
	fail "no log line naming the peer of a bad request"
grep -q 'handshake timed out' "$TMP/server.log" || fail "no log line for the handshake timeout"
# The client that never read closed with its replies unread: the server,
# waiting for its socket to drain, sees a reset and says so.
grep -q 'closing: connection reset by peer' "$TMP/server.log" ||
	fail "no log line naming the reset of the client that never read"
! grep -q 'bad file descriptor' "$TMP/server.log" || fail "a reset logged as a bad descriptor"
stop_server

# The server-wide budget bounds clients that each stay under their own cap.
start_server -e m=mem:64M --max-inflight 64M --max-inflight-total 96M
python3 "$NP_SRC/tests/integration/budget.py" "$PORT" "$SERVER_PID" || fail "total budget"
assert_serving m
stop_server

# expect_error WANT ARGS...: serve must exit non-zero, saying WANT.
expect_error() {
	local want=$1 rc=0
	shift
	timeout 10 "$NBDPLEX" serve -l 127.0.0.1:0 "$@" >"$TMP/err.out" 2>&1 || rc=$?
	[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "serve $* exited $rc"
	grep -qF -- "$want" "$TMP/err.out" || fail "serve $*: no '$want' in: $(cat "$TMP/err.out")"
}
printf '[server]\nthreads = 4\nbogus = 1\n' >"$TMP/bad.ini"
expect_error "bad.ini:3: unknown key 'bogus' in [server]" -c "$TMP/bad.ini"
printf '[export a]\nspec = mem:1M\n[server]\nthreads = many\n' >"$TMP/bad2.ini"
expect_error "bad.ini" -c "$TMP/bad.ini" -e x=mem:1M
expect_error "bad2.ini:4: bad value 'many' for 'threads'" -c "$TMP/bad2.ini"
printf '[export a]\ndescription = no spec\n' >"$TMP/bad3.ini"
expect_error "[export a] has no spec" -c "$TMP/bad3.ini"
printf '[exports]\nspec = mem:1M\n' >"$TMP/bad4.ini"
expect_error "unknown section [exports]" -c "$TMP/bad4.ini"
expect_error "$TMP/none.ini: No such file" -c "$TMP/none.ini"
expect_error "$TMP/missing.img: no such file" -e d=file:"$TMP/missing.img"
expect_error "unknown engine 'nope'" -e d=nope:x
expect_error "bad export 'dmem:1M'" -e dmem:1M
expect_error "given twice" -e d=mem:1M -e d=mem:2M
expect_error "bad size 'lots'" -e d=mem:lots
expect_error "bad option 'sz=1M'" -e d=file:"$TMP/x.img",sz=1M
expect_error "no export given"
expect_error "bad value '0' for --threads" -e d=mem:1M --threads 0
expect_error "bad value 'loud' for --log-level" -e d=mem:1M --log-level loud
expect_error "bad value '1M' for --max-inflight-total" -e d=mem:1M --max-inflight-total 1M
expect_error "bad value '5000' for --coalesce-us" -e d=mem:1M --coalesce-us 5000
truncate -s 2M "$TMP/small.img"
expect_error "refusing to shrink" -e d=file:"$TMP/small.img",size=1M
expect_error "listen address 'nonsense'" -e d=mem:1M -l nonsense
start_server -e d=mem:1M
expect_error "Address already in use" -e d=mem:1M -l 127.0.0.1:"$PORT"
stop_server
pass
