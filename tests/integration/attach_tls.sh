#!/bin/bash
# nbdplex attach's TLS, without the driver: `attach --check` runs the whole
# client side (STARTTLS, the GnuTLS handshake, NBD_OPT_GO over TLS, the
# hand-off of the record layer to kernel TLS) against nbdplex serve --tls
# require, then reads the export's first 64 KiB through the socket. Where
# this kernel has TLS, the bytes must be the served ones; where it has not,
# attach must say so after a completed handshake and never fall back to
# plaintext. Wrong credentials, an unknown CA, a wrong host name, a cipher
# kernel TLS cannot take, a server without TLS and a plain attach against a
# TLS-only server are each refused with a message that names the reason.
. "$NP_SRC/tests/functions.sh"
requires openssl python3 cmp

# Registered only where attach is built (tests/tests.cmake).
"$NBDPLEX" --help | grep -q '^  attach' || fail "this nbdplex has no attach command"

pki=$TMP/pki
"$NP_SRC/tests/make-pki.sh" "$pki" "$TMP/client" || fail "making certificates"
# A CA the server's certificate does not chain to.
"$NP_SRC/tests/make-pki.sh" "$TMP/other" "$TMP/otherca" || fail "making certificates"
echo "alice:$(openssl rand -hex 32)" >"$TMP/keys.psk"
echo "alice:$(openssl rand -hex 32)" >"$TMP/wrong.psk"
head -c 1M /dev/urandom >"$TMP/disk.img"
head -c 65536 "$TMP/disk.img" >"$TMP/head"

# Does this kernel take the "tls" upper layer protocol on a TCP socket?
ktls=$(python3 - <<'PY'
import socket
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(1)
c = socket.create_connection(l.getsockname())
try:
    c.setsockopt(socket.SOL_TCP, 31, b"tls")  # TCP_ULP
    print(1)
except OSError:
    print(0)
PY
)
echo "kernel TLS on this machine: $ktls"

start_server -e d=file:"$TMP/disk.img" --tls require --tls-certificates "$pki" --tls-psk "$TMP/keys.psk"
P=127.0.0.1:$PORT

# check_tls WHAT ARGS...: attach --check must complete the TLS handshake
# and NBD_OPT_GO; then either read the served bytes through kernel TLS or
# stop with the kernel-TLS message.
check_tls() {
	local what=$1 rc=0
	shift
	"$NBDPLEX" attach --check "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	if [ "$ktls" = 1 ]; then
		[ $rc = 0 ] || fail "$what: --check failed: $(cat "$TMP/err")"
		grep -q "record layer in the kernel" "$TMP/err" || fail "$what: $(cat "$TMP/err")"
		cmp "$TMP/out" "$TMP/head" || fail "$what: the bytes read through kernel TLS differ"
	else
		[ $rc = 1 ] || fail "$what: exit $rc without kernel TLS: $(cat "$TMP/err")"
		grep -q "kernel TLS unavailable (TLS1\.[23] .*): .*modprobe tls" "$TMP/err" ||
			fail "$what: $(cat "$TMP/err")"
		grep -q "never falls back to plaintext" "$TMP/err" || fail "$what: $(cat "$TMP/err")"
		[ ! -s "$TMP/out" ] || fail "$what: data came out without kernel TLS"
	fi
	cat "$TMP/err"
}

# refused WHAT WHY ARGS...: attach --check must exit 1 and say WHY.
refused() {
	local what=$1 why=$2 rc=0
	shift 2
	"$NBDPLEX" attach --check "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	[ $rc = 1 ] || fail "$what: exit $rc: $(cat "$TMP/err")"
	grep -q -- "$why" "$TMP/err" || fail "$what: expected '$why', got: $(cat "$TMP/err")"
	[ ! -s "$TMP/out" ] || fail "$what: data came out"
	cat "$TMP/err"
}

n_go() { grep -c "export 'd'" "$TMP/server.log" || true; }

go0=$(n_go)
check_tls "X.509 by address" --path "$P" --tls-certificates "$TMP/client"
check_tls "X.509 by name" --path "localhost:$PORT" --tls-certificates "$TMP/client"
check_tls "PSK" --path "$P" --tls-psk "$TMP/keys.psk" --tls-username alice
check_tls "TLS 1.2" --path "$P" --tls-certificates "$TMP/client" \
	--tls-priority "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM"
grep -q "TLS1.2 AES-128-GCM" "$TMP/err" || fail "TLS 1.2 with AES-128-GCM: $(cat "$TMP/err")"
# Each of those negotiated the export over TLS: the server logged its GO.
[ "$(n_go)" = $((go0 + 4)) ] || fail "the server saw $(($(n_go) - go0)) exports chosen, not 4"
grep -q "TLS up, PSK identity 'alice'" "$TMP/server.log" || fail "no PSK session in the server log"

refused "wrong PSK" "TLS handshake failed.*wrong PSK key or user name" \
	--path "$P" --tls-psk "$TMP/wrong.psk" --tls-username alice
refused "user not in the PSK file" "has no key for user 'bob'" \
	--path "$P" --tls-psk "$TMP/keys.psk" --tls-username bob
refused "unknown CA" "certificate is not accepted.*issuer is unknown" \
	--path "$P" --tls-certificates "$TMP/otherca"
refused "wrong host name" "certificate is not accepted.*name in the certificate does not match" \
	--path "$P" --tls-certificates "$TMP/client" --tls-hostname other.example
refused "no CA file" "cannot read $TMP/nowhere/ca-cert.pem" \
	--path "$P" --tls-certificates "$TMP/nowhere"
refused "a cipher kernel TLS cannot take" "AES-128-CBC, which kernel TLS cannot take" \
	--path "$P" --tls-certificates "$TMP/client" \
	--tls-priority "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC"
refused "a bad priority string" "--tls-priority" --path "$P" --tls-psk "$TMP/keys.psk" \
	--tls-username alice --tls-priority "NORMAL:+NO-SUCH-THING"
refused "both kinds of credentials" "exclude each other" \
	--path "$P" --tls-psk "$TMP/keys.psk" --tls-certificates "$TMP/client"
refused "plain attach, TLS server" "the server requires TLS.*use --tls" --path "$P"
stop_server

# A server without TLS: --tls is refused, never downgraded; plain works.
start_server -e d=file:"$TMP/disk.img"
refused "--tls against a plain server" "the server refused TLS: TLS is not configured" \
	--path "127.0.0.1:$PORT" --tls-psk "$TMP/keys.psk" --tls-username alice
"$NBDPLEX" attach --check --path "127.0.0.1:$PORT" >"$TMP/out" 2>"$TMP/err" ||
	fail "plain --check: $(cat "$TMP/err")"
grep -q "no TLS" "$TMP/err" || fail "plain --check: $(cat "$TMP/err")"
cmp "$TMP/out" "$TMP/head" || fail "plain --check read other bytes"
stop_server
pass
