#!/bin/bash
# serve --takeover of an rbd export: the new gateway opens the image beside
# the old one (librbd holds no lock that stops a second open; with
# exclusive-lock on, the old gateway, still and flushed, lets the lock go
# when the new one first writes, or when it exits). For an image with
# librbd's default features and one with exclusive-lock off: a libnbd
# client writes and reads back through 3 hand-offs, then checks every
# block it wrote; no connection closes.
. "$NP_SRC/tests/functions.sh"
. "$NP_SRC/tests/rbd/functions.sh"
requires python3

for kind in default nolock; do
	if [ $kind = default ]; then
		spec=$(rbd_image "tk-$kind" 16M)
	else
		spec=$(rbd_image "tk-$kind" 16M --image-feature layering)
	fi
	LOG=$TMP/server-$kind.log
	CTL=$TMP/ctl-$kind.sock
	SPEC=(-e "d=$spec" --control "$CTL")
	start_server "${SPEC[@]}"
	rm -f "$TMP/stop"
	python3 "$NP_SRC/tests/integration/takeover_writer.py" "$(uri d)" "$TMP/stop" 7 1024 \
		>"$TMP/client-$kind.out" 2>&1 &
	client=$!
	NP_PIDS+=("$client")
	wait_until 30 grep -q "export 'd'" "$LOG" || fail "$kind: the client did not connect"
	for n in 1 2 3; do
		sleep 1
		takeover "$CTL" "${SPEC[@]}"
		kill -0 "$client" || fail "$kind: the client failed: $(cat "$TMP/client-$kind.out")"
	done
	[ "$(grep -c 'hand-off: 1 connection(s) and 1 listener(s) passed' "$LOG")" = 3 ] ||
		fail "$kind: not every hand-off moved the connection: $(grep hand-off "$LOG")"
	touch "$TMP/stop"
	wait "$client" || fail "$kind: client: $(cat "$TMP/client-$kind.out")"
	grep -q 'rounds' "$TMP/client-$kind.out" || fail "$kind: the client did not finish"
	grep -E 'closing:|taken over, but closed' "$LOG" && fail "$kind: a connection closed"
	stop_server
done
pass
