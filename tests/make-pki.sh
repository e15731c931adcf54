#!/bin/bash
# make-pki.sh DIR CLIENTDIR [--client-cert]: a test CA and a server
# certificate for localhost and 127.0.0.1 in DIR (ca-cert.pem,
# server-cert.pem, server-key.pem: what nbdplex serve --tls-certificates
# reads), and the CA certificate in CLIENTDIR for clients; with
# --client-cert also client-cert.pem and client-key.pem there. Quiet on
# success; on failure prints openssl's output and exits 1.
set -eu
dir=$1 client=$2
mkdir -p "$dir" "$client"
log=$dir/openssl.log
(
	cd "$dir"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=nbdplex test CA" \
		-keyout ca-key.pem -out ca-cert.pem
	openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
		-keyout server-key.pem -out server.csr
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >srv.ext
	openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial \
		-days 2 -extfile srv.ext -out server-cert.pem
	if [ "${3:-}" = --client-cert ]; then
		openssl req -newkey rsa:2048 -nodes -subj "/CN=client" \
			-keyout "$client/client-key.pem" -out client.csr
		printf 'extendedKeyUsage=clientAuth\n' >cli.ext
		openssl x509 -req -in client.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial \
			-days 2 -extfile cli.ext -out "$client/client-cert.pem"
	fi
	cp ca-cert.pem "$client/"
) >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
