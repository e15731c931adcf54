#!/bin/bash
# unit_layers: the files of engine/ call downward only. Reads which file
# defines and which uses each function (nm over npcore's object files) and
# fails on a call from a file to one at its own level or above it in
# LAYERS, on a file of engine/ missing from LAYERS, and on a call from
# net/ into engine/. Callbacks handed down through function pointers are
# not calls: that is how a lower file answers a higher one.
#   tests/unit/layers.sh 'OBJ.c.o;OBJ.c.o;...'   ($<TARGET_OBJECTS:npcore>)
# The objects, not the archive: an archive names its members without their
# folder, and npcore holds two pool.c (engine/ and storage/thin/).
. "$NP_SRC/tests/functions.sh"

objs=${1:?usage: layers.sh 'OBJ.c.o;OBJ.c.o;...'}
requires nm

# Lowest first; keep docs/design.md's table ("Layers") in step.
LAYERS=(log access config fairq mailbox qos pool reply export tls request sendq loopex options conns conn loopconns stats
	handoff metrics server)

declare -A rank defined
for i in "${!LAYERS[@]}"; do
	rank[engine/${LAYERS[$i]}]=$i
done

# Each object's source, as a path in the tree (engine/pool, storage/thin/pool,
# storage/engines for the generated table): "FILE T name" for definitions,
# "FILE U name" for uses.
IFS=';' read -r -a files <<<"$objs"
[ "${#files[@]}" -gt 1 ] || fail "no object files given: $objs"
: >"$TMP/syms"
for o in "${files[@]}"; do
	src=${o##*.dir/}
	src=${src%.c.o}
	nm "$o" >"$TMP/one" 2>/dev/null || fail "nm cannot read $o"
	sed -n "s|^ *[0-9a-f]* *\([TDBRU]\) \(.*\)\$|$src \1 \2|p" "$TMP/one" >>"$TMP/syms"
done
grep -q '^engine/conn T ' "$TMP/syms" || fail "no engine/conn.c among the objects"
while read -r member type sym; do
	case $type in T | D | B | R) defined[$sym]=$member ;; esac
done <"$TMP/syms"

engine_files=$(cd "$NP_SRC/engine" && ls ./*.c | sed 's|^\./||; s|\.c$||')
for f in $engine_files; do
	[ -n "${rank[engine/$f]+x}" ] || fail "engine/$f.c has no place in LAYERS (tests/unit/layers.sh)"
done

bad=0
# A connection's struct and a loop's are their own files' (docs/design.md,
# "Layers"): no other file includes their private headers.
declare -A own=([conn_int.h]="conn conns loopconns request sendq options tls" [loop_int.h]="loopex server")
for h in "${!own[@]}"; do
	while read -r f; do
		base=${f##*/}
		case " ${own[$h]} " in
		*" ${base%.[ch]} "*) [[ $f == engine/*.c ]] && continue ;;
		esac
		[ "$base" = "$h" ] && continue
		echo "$f includes engine/$h, which is only for engine/{${own[$h]// /,}}.c" >&2
		bad=1
	done < <(cd "$NP_SRC" && grep -rl --include='*.[ch]' "#include \"engine/$h\"" \
		engine net storage util tools cmd tests fuzz 2>/dev/null)
done
while read -r member sym; do
	to=${defined[$sym]:-}
	[ -n "$to" ] && [ "$to" != "$member" ] || continue
	if [ -n "${rank[$member]+x}" ] && [ -n "${rank[$to]+x}" ]; then
		if [ "${rank[$to]}" -ge "${rank[$member]}" ]; then
			echo "$member.c calls $sym in $to.c, which is not below it" >&2
			bad=1
		fi
	elif [ -n "${rank[$to]+x}" ] && [[ $member == net/* ]]; then
		echo "$member.c calls $sym in $to.c" >&2
		bad=1
	fi
done < <(sed -n 's/^\([^ ]*\) U \(.*\)$/\1 \2/p' "$TMP/syms")
[ "$bad" = 0 ] || fail "calls that go up or sideways in engine/ (order: ${LAYERS[*]}), or private structs seen"
pass
