#!/bin/bash
# kill -9 of an rbd gateway while a client writes with FUA and FLUSH, three
# times: every acknowledged durable write is in the image afterwards.
. "$NP_SRC/tests/functions.sh"
. "$NP_SRC/tests/rbd/functions.sh"

# exclusive-lock off, as for an image shared by gateways: with it, each
# restart would wait for the killed holder's watch to time out (30 s).
spec=$(rbd_image durable 4M --image-feature layering)
kill_while_writing "$spec" 3
rbd export "$(rbd_name durable)" "$TMP/d.img" >/dev/null 2>&1 || fail "rbd export"
durable_check "$TMP/d.img"
pass
