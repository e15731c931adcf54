#!/bin/bash
# A throwaway Ceph cluster for the rbd tests and the bench: one monitor and
# one OSD keeping its objects in memory (memstore), pools of one replica,
# cephx on, on loopback only, everything under DIR.
#   tests/rbd/cluster.sh start DIR    prints DIR/ceph.conf once a pool "rbd"
#                                     takes I/O (about 2-5 s)
#   tests/rbd/cluster.sh stop DIR     stops the daemons by their PIDs, then
#                                     removes DIR
#   tests/rbd/cluster.sh osd-stop DIR / osd-start DIR
#                                     the OSD alone, for the fault tests: it
#                                     saves its objects when stopped and
#                                     loads them when started
#
# Ports: the monitor listens on CEPH_MON_PORT (6850, msgr2) and the next port
# (msgr1); the OSD binds within 6852-6899. The tests' other servers take
# free ports from the kernel's ephemeral range (free_port in
# tests/functions.sh: 32768 and up), so the two never meet. memstore keeps
# every object touched (4 MiB each) in the OSD's memory until its image is
# removed: tests remove their images and write no more than 1-2 GiB.
set -euo pipefail

cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || {
	echo "usage: $0 start|stop|osd-stop|osd-start DIR" >&2
	exit 2
}
MON_PORT=${CEPH_MON_PORT:-6850}
CONF=$DIR/ceph.conf
export CEPH_CONF=$CONF
CEPH_TIMEOUT=20

die() {
	echo "cluster.sh: $*" >&2
	for f in "$DIR"/log/*.log; do
		[ -f "$f" ] || continue
		echo "--- $f (last 15 lines)" >&2
		tail -n 15 "$f" >&2
	done
	exit 1
}

# Every CLI call gives up on its own instead of waiting for a monitor that
# never answers.
ceph_cli() {
	timeout $((CEPH_TIMEOUT + 5)) ceph --connect-timeout "$CEPH_TIMEOUT" "$@"
}

# stop_pid FILE: SIGTERM, then SIGKILL after 10 s, the process named in FILE
stop_pid() {
	local f=$1 pid i
	[ -s "$f" ] || return 0
	pid=$(cat "$f")
	if kill -TERM "$pid" 2>/dev/null; then
		for i in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

port_free() {
	# SO_REUSEADDR, as the daemons bind: connections of a cluster just
	# stopped, in TIME_WAIT, do not hold the port.
	python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen()' "$1" 2>/dev/null
}

osd_start() {
	local pidf=$DIR/run/osd.0.pid
	# A second OSD would overwrite the PID file and outlive stop.
	! { [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; } || die "osd.0 is running already"
	ceph-osd -f -i 0 -c "$CONF" >>"$DIR/log/osd.0.out" 2>&1 &
	echo $! >"$DIR/run/osd.0.pid"
	local i
	for i in $(seq 200); do
		ceph_cli osd dump 2>/dev/null | grep -q '^osd\.0 up' && return 0
		kill -0 "$(cat "$DIR/run/osd.0.pid")" 2>/dev/null || die "ceph-osd exited at start"
		sleep 0.1
	done
	die "osd.0 not up within 20 s"
}

start() {
	local t
	for t in ceph-mon ceph-osd ceph ceph-authtool monmaptool rbd uuidgen; do
		command -v "$t" >/dev/null || die "'$t' is not installed (scripts/install-deps.sh --all)"
	done
	[ ! -e "$DIR/run/mon.a.pid" ] || die "$DIR already holds a cluster: stop it first"
	port_free "$MON_PORT" && port_free $((MON_PORT + 1)) ||
		die "port $MON_PORT or $((MON_PORT + 1)) is taken (another cluster? set CEPH_MON_PORT)"
	rm -rf "$DIR"
	mkdir -p "$DIR"/{mon,osd,run,log}
	local fsid
	fsid=$(uuidgen)
	cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$((MON_PORT + 1))]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind port min = $((MON_PORT + 2))
ms bind port max = $((MON_PORT + 49))
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
paxos propose interval = 0.1
osd objectstore = memstore
# A stopped OSD saves its memstore to osd data and loads it at start,
# so the fault tests can stop and restart it.
osd fast shutdown = false
memstore device bytes = 4G
osd memory target = 939524096
run dir = $DIR/run
log file = $DIR/log/\$name.log
mon cluster log file = $DIR/log/\$cluster.\$channel.log
# The OSD names its host in the CRUSH map: a guest without a hostname
# ("(none)") would be refused.
crush location = root=default host=nbdplex-test
mon data = $DIR/mon
osd data = $DIR/osd
keyring = $DIR/ceph.\$name.keyring
crash dir = $DIR/log
EOF
	ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
	ceph-authtool --create-keyring "$DIR/ceph.client.admin.keyring" --gen-key -n client.admin \
		--cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
	ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/ceph.client.admin.keyring" >/dev/null
	monmaptool --create --fsid "$fsid" \
		--addv a "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$((MON_PORT + 1))]" \
		"$DIR/monmap" >/dev/null
	ceph-mon --mkfs -i a -c "$CONF" --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring" \
		>"$DIR/log/mkfs.out" 2>&1 || die "ceph-mon --mkfs: $(cat "$DIR/log/mkfs.out")"
	ceph-mon -f -i a -c "$CONF" >>"$DIR/log/mon.a.out" 2>&1 &
	echo $! >"$DIR/run/mon.a.pid"

	local uuid
	uuid=$(uuidgen)
	ceph-authtool --create-keyring "$DIR/ceph.osd.0.keyring" --gen-key -n osd.0 >/dev/null
	[ "$(ceph_cli osd new "$uuid" 0)" = 0 ] || die "ceph osd new"
	ceph_cli auth add osd.0 osd 'allow *' mon 'allow profile osd' \
		-i "$DIR/ceph.osd.0.keyring" >/dev/null 2>&1 || die "ceph auth add osd.0"
	ceph-osd -i 0 -c "$CONF" --mkfs --osd-uuid "$uuid" >"$DIR/log/osd-mkfs.out" 2>&1 ||
		die "ceph-osd --mkfs: $(tail -5 "$DIR/log/osd-mkfs.out")"
	osd_start
	ceph_cli osd pool create rbd 8 >/dev/null 2>&1 || die "ceph osd pool create rbd"
	# The first write waits for the pool's placement groups to peer.
	timeout 60 rbd pool init rbd || die "rbd pool init: the pool takes no I/O"
	echo "$CONF"
}

stop() {
	[ -d "$DIR/run" ] || return 0
	stop_pid "$DIR/run/osd.0.pid"
	stop_pid "$DIR/run/mon.a.pid"
	rm -rf "$DIR"
}

case $cmd in
start) start ;;
stop) stop ;;
osd-stop) stop_pid "$DIR/run/osd.0.pid" ;;
osd-start) osd_start ;;
*) die "unknown command '$cmd'" ;;
esac
