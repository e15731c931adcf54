#!/bin/bash
# unit_layers: the files of engine/ call downward only. Reads which file
# defines and which uses each function (nm over the npcore archive) and
# fails on a call from a file to one at its own level or above it in
# LAYERS, on a file of engine/ missing from LAYERS, and on a call from
# net/ into engine/. Callbacks handed down through function pointers are
# not calls: that is how a lower file answers a higher one.
#   tests/unit/layers.sh LIBNPCORE.a
. "$NP_SRC/tests/functions.sh"

lib=${1:?usage: layers.sh LIBNPCORE.a}
requires nm

# Lowest first; keep docs/design.md's table ("Layers") in step.
LAYERS=(log access config fairq mailbox pool reply export stats tls request sendq loopex options conn
	metrics server)

declare -A rank defined
for i in "${!LAYERS[@]}"; do
	rank[${LAYERS[$i]}]=$i
done

# "archive:member.c.o: ADDR T name" for definitions, "... U name" for uses.
nm -A "$lib" >"$TMP/nm" 2>/dev/null || fail "nm cannot read $lib"
while read -r member type sym; do
	case $type in T | D | B | R) defined[$sym]=$member ;; esac
done < <(sed -n 's/^[^:]*:\([a-z_]*\)\.c\.o: *[0-9a-f]* \([TDBR]\) \(.*\)$/\1 \2 \3/p' "$TMP/nm")

engine_files=$(cd "$NP_SRC/engine" && ls ./*.c | sed 's|^\./||; s|\.c$||' | grep -vx main)
for f in $engine_files; do
	[ -n "${rank[$f]+x}" ] || fail "engine/$f.c has no place in LAYERS (tests/unit/layers.sh)"
done

bad=0
while read -r member sym; do
	to=${defined[$sym]:-}
	[ -n "$to" ] && [ "$to" != "$member" ] || continue
	if [ -n "${rank[$member]+x}" ] && [ -n "${rank[$to]+x}" ]; then
		if [ "${rank[$to]}" -ge "${rank[$member]}" ]; then
			echo "engine/$member.c calls $sym in engine/$to.c, which is not below it" >&2
			bad=1
		fi
	elif [ -n "${rank[$to]+x}" ] && [ -f "$NP_SRC/net/$member.c" ]; then
		echo "net/$member.c calls $sym in engine/$to.c" >&2
		bad=1
	fi
done < <(sed -n 's/^[^:]*:\([a-z_]*\)\.c\.o: *U \(.*\)$/\1 \2/p' "$TMP/nm")
[ "$bad" = 0 ] || fail "calls that go up or sideways in engine/ (order: ${LAYERS[*]})"
pass
