#!/bin/bash
# rbd exports that cannot be served are refused at startup with a message
# naming what is wrong, within a bounded time, and the server exits
# non-zero: a bad spec, a missing config, keyring, pool, image or snapshot,
# a user without a key, a wrong key, a monitor that never answers, and
# settings that make an image unsafe to share between gateways.
. "$NP_SRC/tests/functions.sh"
. "$NP_SRC/tests/rbd/functions.sh"
requires ceph-authtool timeout qemu-io

# refused SPEC TEXT: serving SPEC fails within 30 s and says TEXT
refused() {
	local rc=0 out
	out=$(timeout 30 "$NBDPLEX" serve -l "127.0.0.1:$(free_port)" -e d="$1" 2>&1) || rc=$?
	[ "$rc" != 0 ] || fail "served $1"
	[ "$rc" != 124 ] || fail "still starting after 30 s: $1"
	grep -qF -- "$2" <<<"$out" || fail "serving $1 did not say '$2': $out"
}

c=conf=$CEPH_CONF
spec=$(rbd_image img 16M)
img=$(rbd_name img)
refused "rbd:rbd" "expected POOL/IMAGE"
refused "rbd:$img,size=1G" "unknown option 'size'"
refused "rbd:rbd/x,conf=$TMP/none.conf" "config $TMP/none.conf: No such file"
refused "rbd:rbd/x,$c,keyring=$TMP/none.keyring" "keyring $TMP/none.keyring: No such file"
refused "rbd:nopool/x,$c" "pool 'nopool': no such pool"
refused "rbd:rbd/nope,$c" "image 'nope' in pool 'rbd': no such image"
refused "${spec/,conf=/@nosnap,conf=}" "snapshot 'nosnap'"
refused "rbd:$img,$c,id=nobody" "client.nobody: no keyring found"
ceph-authtool --create-keyring "$TMP/wrong.keyring" --gen-key -n client.admin >/dev/null
refused "rbd:$img,$c,keyring=$TMP/wrong.keyring" "client.admin: the monitor refused"

# A monitor that never answers: a port nothing listens on, and a short
# mount timeout (the engine's own bound is 10 s).
sed "s/^mon host = .*/mon host = 127.0.0.1:$(free_port)/" "$CEPH_CONF" >"$TMP/dead.conf"
printf '[client]\nclient mount timeout = 3\n' >>"$TMP/dead.conf"
refused "rbd:$img,conf=$TMP/dead.conf" "no monitor answered"

# A write-back cache would keep acknowledged writes in one gateway; a
# write-through one is fine. The image's own settings count too.
{ cat "$CEPH_CONF"; printf '[client]\nrbd cache = true\nrbd cache policy = writeback\n'; } >"$TMP/cache.conf"
refused "rbd:$img,conf=$TMP/cache.conf" "write-back cache"
sed -i 's/^rbd cache policy = writeback$/rbd cache policy = writethrough/' "$TMP/cache.conf"
start_server -e d="rbd:$img,conf=$TMP/cache.conf"
qemu-io -f raw "$(uri d)" -c 'write -P 0x12 0 64k' -c 'read -P 0x12 0 64k' >/dev/null ||
	fail "writethrough cache"
stop_server
rbd config image set "$img" rbd_cache true >/dev/null || fail "rbd config image set"
rbd config image set "$img" rbd_cache_policy writeback >/dev/null || fail "rbd config image set"
refused "$spec" "write-back cache"
rbd config image rm "$img" rbd_cache >/dev/null || fail "rbd config image rm"
# exclusive-lock without fencing a lost gateway
{ cat "$CEPH_CONF"; printf '[client]\nrbd blocklist on break lock = false\n'; } >"$TMP/nofence.conf"
refused "rbd:$img,conf=$TMP/nofence.conf" "rbd_blocklist_on_break_lock"
# ...which an image without exclusive-lock does not need
spec=$(rbd_image shared 16M --image-feature layering)
start_server -e d="${spec/,conf=*/,conf=$TMP/nofence.conf}"
assert_serving d
stop_server
pass
