#!/bin/bash
# Unix sockets: -l unix:PATH and listen = unix:PATH make a socket of mode
# 0660 (--socket-mode, socket-mode =) that nbdinfo, nbdcopy, nbdsh and
# qemu-io read and write through, TLS included; the file goes at exit; a
# stale one left by a killed server is replaced, a live one is refused and
# anything else is left alone. allow = does not apply to Unix peers, which
# logs name by path, pid and uid, and max-connections-per-client counts per
# user.
. "$NP_SRC/tests/functions.sh"
requires nbdinfo nbdcopy nbdsh qemu-io openssl stat timeout

S=$TMP/nbd.sock
# unix_uri PATH [EXPORT]: the libnbd URI of EXPORT behind socket PATH
unix_uri() {
	echo "nbd+unix:///${2:-}?socket=$1"
}
echo "alice:$(openssl rand -hex 32)" >"$TMP/keys.psk"

start_server -l "unix:$S" -e d=mem:16M --tls on --tls-psk "$TMP/keys.psk"
[ -S "$S" ] || fail "no socket at $S"
[ "$(stat -c %a "$S")" = 660 ] || fail "the socket's mode is $(stat -c %a "$S"), not 660"

# Every client reads and writes through it.
[ "$(nbdinfo --size "$(unix_uri "$S" d)")" = 16777216 ] || fail "nbdinfo over the Unix socket"
head -c 3M /dev/urandom >"$TMP/data"
truncate -s 16M "$TMP/data"
nbdcopy "$TMP/data" "$(unix_uri "$S" d)" || fail "nbdcopy into the Unix socket"
nbdcopy "$(unix_uri "$S" d)" "$TMP/back" || fail "nbdcopy out of the Unix socket"
cmp "$TMP/data" "$TMP/back" || fail "data differs after a round trip through the Unix socket"
cmp "$TMP/data" <(nbdcopy "$(uri d)" -) || fail "what went in through the Unix socket differs over TCP"
out=$(nbdsh -u "$(unix_uri "$S" d)" -c 'h.pwrite(b"unix!", 5 << 20)' -c 'print(bytes(h.pread(5, 5 << 20)))') ||
	fail "nbdsh over the Unix socket"
[ "$out" = "b'unix!'" ] || fail "nbdsh read back $out"
out=$(qemu-io -f raw "$(unix_uri "$S" d)" -c 'write -P 0x5c 6M 64k' -c 'read -P 0x5c 6M 64k' \
	-c 'read -P 0x5c 6M 64k' 2>&1) || fail "qemu-io over the Unix socket: $out"
[ "$(grep -c '^read 65536/65536' <<<"$out")" = 2 ] || fail "qemu-io over the Unix socket: $out"
qemu-io -f raw "$(uri d)" -c 'read -P 0x5c 6M 64k' >/dev/null || fail "qemu-io's write is not there over TCP"

# TLS (PSK) over the Unix socket.
out=$(nbdsh -c 'h.set_uri_allow_local_file(True)' \
	-c "h.connect_uri('nbds+unix://alice@/d?socket=$S&tls-psk-file=$TMP/keys.psk')" \
	-c 'print(h.get_tls_negotiated(), bytes(h.pread(5, 5 << 20)))') || fail "nbdsh with TLS over the Unix socket"
[ "$out" = "True b'unix!'" ] || fail "TLS over the Unix socket: $out"

# Unix peers are named by the socket, with the pid and uid of the client.
grep -Eq "conn [0-9]+ from unix:$S \(pid [0-9]+, uid $(id -u)\): export 'd'" "$TMP/server.log" ||
	fail "the log does not name a Unix peer by path, pid and uid"
grep -Eq "from unix:$S \(pid [0-9]+, uid $(id -u)\): TLS up, PSK identity 'alice'" "$TMP/server.log" ||
	fail "no TLS session from a Unix peer in the log"

# A second server on the same path is refused, and the first keeps serving.
rc=0
timeout 60 "$NBDPLEX" serve -l "unix:$S" -e x=mem:1M >"$TMP/second.log" 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "a second server on a live socket exited $rc"
grep -q "listen on unix:$S: another server is listening on it" "$TMP/second.log" ||
	fail "no clear error for a live socket: $(cat "$TMP/second.log")"
[ "$(nbdinfo --size "$(unix_uri "$S" d)")" = 16777216 ] || fail "the first server stopped serving"
stop_server
[ ! -e "$S" ] || fail "the socket file is still there after the server exited"

# A server killed with -9 leaves its socket; the next one replaces it.
start_server -l "unix:$S" -e d=mem:1M
kill -9 "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
[ -S "$S" ] || fail "kill -9 left no stale socket to test with"
! nbdinfo --size "$(unix_uri "$S" d)" 2>/dev/null || fail "a stale socket answered"
start_server -l "unix:$S" -e d=mem:2M
[ "$(nbdinfo --size "$(unix_uri "$S" d)")" = 2097152 ] || fail "the stale socket was not replaced"
grep -q "unix:$S: replacing the stale socket" "$TMP/server.log" || fail "no note of the stale socket"
stop_server

# What is not a socket is never removed.
echo keep >"$TMP/file"
rc=0
timeout 60 "$NBDPLEX" serve -l "unix:$TMP/file" -e d=mem:1M >"$TMP/file.log" 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "a server on a regular file exited $rc"
grep -q "the file exists and is not a socket" "$TMP/file.log" || fail "no clear error: $(cat "$TMP/file.log")"
[ "$(cat "$TMP/file")" = keep ] || fail "the regular file was touched"
rc=0
"$NBDPLEX" serve -l "unix:" -e d=mem:1M 2>"$TMP/bad.log" || rc=$?
[ "$rc" = 2 ] && grep -q "bad listen address 'unix:'" "$TMP/bad.log" ||
	fail "-l unix: without a path: exit $rc, $(cat "$TMP/bad.log")"
rc=0
"$NBDPLEX" serve -l "unix:$S" --socket-mode 0999 -e d=mem:1M 2>"$TMP/bad.log" || rc=$?
[ "$rc" = 2 ] || fail "--socket-mode 0999 was taken (exit $rc)"

# The config file's listen = unix: and socket-mode =; allow = leaves Unix
# peers out of its reach; one connection per user.
S2=$TMP/conf.sock
cat >"$TMP/unix.conf" <<INI
[server]
listen = unix:$S2
socket-mode = 0600
allow = 192.0.2.1
max-connections-per-client = 1
control = $TMP/ctl.sock
INI
start_server -c "$TMP/unix.conf" -e d=mem:1M
[ "$(stat -c %a "$S2")" = 600 ] || fail "socket-mode = 0600 made mode $(stat -c %a "$S2")"
! nbdinfo --size "$(uri d)" 2>/dev/null || fail "a TCP client outside allow = got in"
[ "$(nbdinfo --size "$(unix_uri "$S2" d)")" = 1048576 ] || fail "allow = kept a Unix client out"
out=$(python3 - "$(unix_uri "$S2" d)" "$NBDPLEX" "$TMP/ctl.sock" "$S2" <<'PY'
import os, re, subprocess, sys, time, nbd
first = nbd.NBD()
first.connect_uri(sys.argv[1])
# Its metrics lines name it as the log does.
stats = subprocess.run([sys.argv[2], "stats", "--control", sys.argv[3]], check=True,
                       capture_output=True, text=True).stdout
peer = re.escape(f'peer="unix:{sys.argv[4]} (pid {os.getpid()}, uid {os.getuid()})"')
print("stats", "named" if re.search(r"^nbdplex_connection_bytes_total\{conn=\"\d+\"," + peer,
                                    stats, re.M) else stats)
second = nbd.NBD()
try:
    second.connect_uri(sys.argv[1])
    print("second connection let in")
except nbd.Error:
    print("second refused")
first.shutdown()
# The server counts the first out once it has seen it go.
for attempt in range(100):
    try:
        third = nbd.NBD()
        third.connect_uri(sys.argv[1])
        break
    except nbd.Error:
        time.sleep(0.1)
print("third", third.get_size())
PY
) || fail "connections per user over the Unix socket: $out"
[ "$out" = $'stats named\nsecond refused\nthird 1048576' ] ||
	fail "metrics or max-connections-per-client on a Unix socket: $out"
grep -Eq "refused connection from unix:$S2 \(pid [0-9]+, uid $(id -u)\) on unix:$S2: too many" \
	"$TMP/server.log" || fail "the refusal does not name the Unix peer"
stop_server
[ ! -e "$S2" ] || fail "the config's socket file is still there after the server exited"
pass
