#!/bin/bash
# TLS: X.509 and PSK through libnbd (nbds:// URIs, nbdcopy, nbdsh) and
# qemu-io's tls-creds objects; --tls require refuses plain clients with
# NBD_REP_ERR_TLS_REQD; a TLS-only export is refused without TLS; client
# certificates are checked with --tls-verify-peer.
. "$NP_SRC/tests/functions.sh"
requires openssl nbdinfo nbdcopy qemu-io

# A CA, a server certificate for localhost and a client certificate.
pki=$TMP/pki
"$NP_SRC/tests/make-pki.sh" "$pki" "$TMP/client" --client-cert || fail "making certificates"
echo "alice:$(openssl rand -hex 32)" >"$TMP/keys.psk"
echo "alice:$(openssl rand -hex 32)" >"$TMP/wrong.psk"

cat >"$TMP/tls.ini" <<'INI'
[export secure]
spec = mem:16M
tls-only = yes
INI
start_server -e plain=mem:16M -c "$TMP/tls.ini" --tls on --tls-certificates "$pki" --tls-psk "$TMP/keys.psk"

# X.509 with libnbd.
x509="nbds://localhost:$PORT/secure?tls-certificates=$TMP/client"
nbdinfo --size "$x509" >"$TMP/out" 2>&1 && [ "$(cat "$TMP/out")" = 16777216 ] ||
	fail "nbdinfo over X.509: $(cat "$TMP/out")"
head -c 5M /dev/urandom >"$TMP/data"
truncate -s 16M "$TMP/data"
nbdcopy "$TMP/data" "$x509" && nbdcopy "$x509" "$TMP/back" || fail "nbdcopy over TLS"
cmp "$TMP/data" "$TMP/back" || fail "data differs after a TLS round trip"

# PSK with libnbd.
psk="nbds://alice@localhost:$PORT/secure?tls-psk-file=$TMP/keys.psk"
nbdinfo --size "$psk" >/dev/null || fail "nbdinfo over PSK"
out=$(python3 - "$PORT" "$TMP/keys.psk" <<'PY'
import sys, nbd
h = nbd.NBD()
h.set_tls(nbd.TLS_REQUIRE)
h.set_tls_username("alice")
h.set_tls_psk_file(sys.argv[2])
h.set_export_name("secure")
h.connect_tcp("localhost", sys.argv[1])
h.pwrite(b"psk!", 0)
print(h.get_tls_negotiated(), h.pread(4, 0) == b"psk!")
PY
) || fail "nbdsh binding over PSK"
[ "$out" = "True True" ] || fail "PSK session through the binding: $out"
! nbdinfo --size "nbds://alice@localhost:$PORT/secure?tls-psk-file=$TMP/wrong.psk" 2>/dev/null ||
	fail "a wrong PSK was accepted"

# qemu-io with X.509 and with PSK credentials.
qemu-io --object tls-creds-x509,id=tls0,dir="$TMP/client",endpoint=client \
	--image-opts "driver=nbd,host=localhost,port=$PORT,export=secure,tls-creds=tls0" \
	-c 'write -P 0x5c 1M 64k' -c 'read -P 0x5c 1M 64k' >"$TMP/qio" 2>&1 ||
	fail "qemu-io over X.509: $(cat "$TMP/qio")"
grep -q '^read 65536/65536' "$TMP/qio" || fail "qemu-io over X.509: $(cat "$TMP/qio")"
mkdir -p "$TMP/qpsk" && cp "$TMP/keys.psk" "$TMP/qpsk/keys.psk"
qemu-io --object tls-creds-psk,id=tls1,dir="$TMP/qpsk",username=alice,endpoint=client \
	--image-opts "driver=nbd,host=localhost,port=$PORT,export=secure,tls-creds=tls1" \
	-c 'read -P 0x5c 1M 64k' >"$TMP/qio" 2>&1 || fail "qemu-io over PSK: $(cat "$TMP/qio")"

grep -q "TLS up, PSK identity 'alice'" "$TMP/server.log" || fail "no PSK session in the log"
grep -q "TLS up (TLS1" "$TMP/server.log" || fail "no X.509 session in the log"

# Without TLS: the plain export works, the TLS-only one is refused and hidden.
[ "$(nbdinfo --size "nbd://localhost:$PORT/plain")" = 16777216 ] || fail "plain export in clear"
! nbdinfo --size "nbd://localhost:$PORT/secure" 2>"$TMP/err" || fail "TLS-only export served in clear"
nbdinfo --list --json "nbd://localhost:$PORT" | grep -q '"secure"' && fail "TLS-only export listed in clear"
stop_server

# --tls require: a plain client gets NBD_REP_ERR_TLS_REQD and nothing else.
start_server -e d=mem:1M --tls require --tls-psk "$TMP/keys.psk"
python3 - "$PORT" "$NP_SRC" <<'PY' || fail "plain client against --tls require"
import struct, sys
sys.path.insert(0, sys.argv[2] + "/tests/integration")
import nbdraw as n
c = n.Client(int(sys.argv[1]))
c.greeting()
for opt, data in ((n.OPT_LIST, b""), (n.OPT_STRUCTURED_REPLY, b""),
                  (n.OPT_GO, struct.pack(">IH", 0, 0)), (n.OPT_INFO, struct.pack(">IH", 0, 0))):
    r = c.replies(opt, data)
    assert [t for t, _ in r] == [0x80000005], (opt, r)  # NBD_REP_ERR_TLS_REQD only
c.option(n.OPT_EXPORT_NAME, b"d")
assert c.closed(), "EXPORT_NAME without TLS must close"
PY
nbdinfo --size "nbds://alice@localhost:$PORT/d?tls-psk-file=$TMP/keys.psk" >/dev/null ||
	fail "PSK client against --tls require"
stop_server

# Client certificates: required and checked against the CA.
start_server -e d=mem:1M --tls require --tls-certificates "$pki" --tls-verify-peer
nbdinfo --size "nbds://localhost:$PORT/d?tls-certificates=$TMP/client" >/dev/null ||
	fail "client with a CA-signed certificate refused"
mkdir -p "$TMP/nocert" && cp "$pki/ca-cert.pem" "$TMP/nocert/"
! nbdinfo --size "nbds://localhost:$PORT/d?tls-certificates=$TMP/nocert" 2>/dev/null ||
	fail "client without a certificate accepted under --tls-verify-peer"
assert_serving_tls() { nbdinfo --size "nbds://localhost:$PORT/d?tls-certificates=$TMP/client" >/dev/null; }
assert_serving_tls || fail "server stopped serving after a refused client"
stop_server

# Bad TLS configuration: a clear message and a non-zero exit.
rc=0
"$NBDPLEX" serve -l 127.0.0.1:0 -e d=mem:1M --tls require 2>"$TMP/err" || rc=$?
[ $rc != 0 ] && grep -q 'needs --tls-certificates DIR or --tls-psk FILE' "$TMP/err" || fail "TLS without credentials: $(cat "$TMP/err")"
rc=0
"$NBDPLEX" serve -l 127.0.0.1:0 -e d=mem:1M --tls-certificates "$TMP/nowhere" 2>"$TMP/err" || rc=$?
[ $rc != 0 ] && grep -q "nowhere/server-cert.pem" "$TMP/err" || fail "missing certificates: $(cat "$TMP/err")"
pass
